//! A tower layer on the driver's gRPC server that counts every inbound RPC and every byte of
//! its request bodies (gRPC framing included), below every service: what a driver receives is
//! measured where it arrives, not by the code that sends it. A task channel is one RPC that
//! carries many messages; its reader counts each one it receives after the first.

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Inbound messages and request bytes since the server started.
#[derive(Debug, Default)]
pub struct Traffic {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// A reading of [`Traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// Messages received: each RPC, and each result or refusal on a task channel.
    pub messages: u64,
    /// Bytes sent in them.
    pub bytes: u64,
}

impl std::ops::Sub for TrafficSnapshot {
    type Output = TrafficSnapshot;
    fn sub(self, o: TrafficSnapshot) -> TrafficSnapshot {
        TrafficSnapshot {
            messages: self.messages - o.messages,
            bytes: self.bytes - o.bytes,
        }
    }
}

impl Traffic {
    /// The counts now.
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// One more message on a task channel (its bytes are counted with the RPC's body).
    pub(crate) fn channel_message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub(crate) struct CountLayer(pub Arc<Traffic>);

impl<S> tower_layer::Layer<S> for CountLayer {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            traffic: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Counted<S> {
    inner: S,
    traffic: Arc<Traffic>,
}

impl<S, B> tower_service::Service<http::Request<B>> for Counted<S>
where
    S: tower_service::Service<http::Request<CountedBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.traffic.messages.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        let body = CountedBody {
            inner: body,
            traffic: self.traffic.clone(),
        };
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

pub(crate) struct CountedBody<B> {
    inner: B,
    traffic: Arc<Traffic>,
}

impl<B> Body for CountedBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.traffic
                    .bytes
                    .fetch_add(data.remaining() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
