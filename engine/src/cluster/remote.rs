//! Clients of the cluster's services as the engine's executor-side traits: shuffle buckets
//! fetched from other executors, broadcasts fetched from the driver. Both are called from task
//! slot threads (plain threads, not the RPC runtime's), which block on the runtime.

use super::auth::ClientAuth;
use super::chunks::MAX_MESSAGE;
use super::tls::endpoint;
use super::Credentials;
use crate::core::codec::Frames;
use crate::core::error::TaskFailure;
use crate::core::plan::ShuffleId;
use crate::exec::broadcast::BroadcastSource;
use crate::exec::executor::ShuffleFetcher;
use dashmap::{DashMap, DashSet};
use discnn_proto::pb;
use pb::driver_client::DriverClient;
use pb::executor_client::ExecutorClient;
use std::sync::Arc;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(crate) type DriverRpc = DriverClient<InterceptedService<Channel, ClientAuth>>;
pub(crate) type PeerRpc = ExecutorClient<InterceptedService<Channel, ClientAuth>>;

pub(crate) fn driver_client(address: &str, creds: &Credentials) -> Result<DriverRpc, String> {
    let channel = endpoint(address, creds.tls.as_deref())?.connect_lazy();
    Ok(DriverClient::with_interceptor(
        channel,
        ClientAuth::new(creds.secret.clone(), super::auth::DRIVER),
    )
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE))
}

/// Fetches buckets from other executors' `FetchShuffle`, each under a deadline, so a reducer
/// whose peer is gone or cut off sees a fetch failure, never a hang; and sooner than the
/// deadline when the driver declares that peer lost.
pub(crate) struct RemoteFetcher {
    pub runtime: tokio::runtime::Handle,
    pub creds: Credentials,
    pub deadline: Duration,
    /// Clients by (address, instance). Every reduce task looks its peers up here: a sharded map.
    pub peers: DashMap<(String, String), PeerRpc>,
    pub lost: LostPeers,
}

/// The executors (by id) the driver has declared lost, and a signal when one is added. An id is
/// never reused (an executor that comes back registers under a new one), so a fetch from a
/// lost id fails at once, and one in flight fails when its holder joins the set.
pub(crate) struct LostPeers {
    ids: DashSet<String>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for LostPeers {
    fn default() -> Self {
        LostPeers {
            ids: DashSet::new(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl LostPeers {
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn declare(&self, id: &str) {
        self.ids.insert(id.to_string());
        self.changed.send_modify(|g| *g += 1);
    }

    /// Resolves once `id` has been declared lost.
    async fn wait_for(&self, id: &str) {
        let mut rx = self.changed.subscribe();
        while !self.contains(id) {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl RemoteFetcher {
    fn peer(&self, address: &str, instance: &str) -> Result<PeerRpc, String> {
        let key = (address.to_string(), instance.to_string());
        if let Some(p) = self.peers.get(&key) {
            return Ok(p.clone());
        }
        // Made outside the map's lock (connect_lazy does no I/O); two tasks that race here
        // make two equal clients, and the map keeps the first.
        let _guard = self.runtime.enter();
        let channel = endpoint(address, self.creds.tls.as_deref())?
            .timeout(self.deadline)
            .connect_lazy();
        let auth = ClientAuth::new(self.creds.secret.clone(), instance);
        let rpc = ExecutorClient::with_interceptor(channel, auth)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(self.peers.entry(key).or_insert(rpc).clone())
    }
}

impl ShuffleFetcher for RemoteFetcher {
    fn fetch(
        &self,
        holder: &str,
        address: &str,
        instance: &str,
        shuffle: ShuffleId,
        map: u32,
        reduce: u32,
    ) -> Result<Arc<Frames>, TaskFailure> {
        let failed = |message: String| TaskFailure::FetchFailed {
            shuffle,
            map,
            message: format!("fetching from {holder} at {address}: {message}"),
        };
        let lost = || failed("the driver declared that executor lost".into());
        if self.lost.contains(holder) {
            return Err(lost());
        }
        let mut rpc = self.peer(address, instance).map_err(failed)?;

        let fetch = async {
            let mut stream = rpc
                .fetch_shuffle(pb::FetchRequest {
                    shuffle,
                    map,
                    reduce,
                })
                .await?
                .into_inner();
            let mut chunks = Vec::new();
            while let Some(c) = stream.message().await? {
                chunks.push(c.data);
            }
            Ok::<_, tonic::Status>(chunks)
        };
        let chunks = self
            .runtime
            .block_on(async {
                tokio::select! {
                    r = tokio::time::timeout(self.deadline, fetch) => Some(r),
                    _ = self.lost.wait_for(holder) => None,
                }
            })
            .ok_or_else(lost)?
            .map_err(|_| failed(format!("no answer within {:?}", self.deadline)))?
            .map_err(|s| failed(s.message().to_string()))?;
        Ok(Arc::new(Frames::from_pair_chunks(chunks)?))
    }

    fn peer_lost(&self, id: &str) {
        self.lost.declare(id);
    }
}

/// Broadcast bytes from the driver's `FetchBroadcast`.
pub(crate) struct RemoteBroadcasts {
    pub runtime: tokio::runtime::Handle,
    pub driver: DriverRpc,
    pub executor_id: String,
}

impl BroadcastSource for RemoteBroadcasts {
    fn fetch(&self, id: u64) -> Result<Arc<Vec<u8>>, TaskFailure> {
        let mut rpc = self.driver.clone();
        let req = pb::BroadcastRequest {
            id,
            executor_id: self.executor_id.clone(),
        };
        let got = self.runtime.block_on(async {
            let mut stream = rpc.fetch_broadcast(req).await?.into_inner();
            let mut out = Vec::new();
            while let Some(c) = stream.message().await? {
                out.extend_from_slice(&c.data);
            }
            Ok::<_, tonic::Status>(out)
        });
        match got {
            Ok(b) => Ok(Arc::new(b)),
            Err(s) if s.code() == tonic::Code::NotFound => Err(TaskFailure::BadInput {
                message: s.message().to_string(),
            }),
            Err(s) => Err(TaskFailure::Io {
                path: format!("broadcast {id} from the driver"),
                message: s.message().to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that accepts connections and never answers (a stopped process): a fetch from it
    /// ends as soon as the peer is declared lost, not at the deadline, and later ones at once.
    #[test]
    fn a_fetch_from_a_peer_declared_lost_fails_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let held = std::thread::spawn(move || {
            let conns: Vec<_> = listener.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(5));
            drop(conns);
        });
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let fetcher = Arc::new(RemoteFetcher {
            runtime: rt.handle().clone(),
            creds: Credentials::default(),
            deadline: Duration::from_secs(60),
            peers: DashMap::new(),
            lost: LostPeers::default(),
        });
        let f = fetcher.clone();
        let a = address.clone();
        let start = std::time::Instant::now();
        let fetch = std::thread::spawn(move || f.fetch("exec-9", &a, "peer", 1, 0, 0));
        std::thread::sleep(Duration::from_millis(300));
        fetcher.peer_lost("exec-9");
        let r = fetch.join().expect("fetch thread");
        assert!(
            matches!(&r, Err(TaskFailure::FetchFailed { message, .. }) if message.contains("lost")),
            "{:?}",
            r.err()
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        // A later fetch from that executor fails without trying.
        let again = std::time::Instant::now();
        assert!(fetcher.fetch("exec-9", &address, "peer", 1, 1, 0).is_err());
        assert!(again.elapsed() < Duration::from_secs(1));
        drop(held);
    }
}
