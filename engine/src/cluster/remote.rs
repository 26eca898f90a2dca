//! Clients of the cluster's services as the engine's executor-side traits: shuffle buckets
//! fetched from other executors, broadcasts fetched from the driver. Both are called from task
//! slot threads (plain threads, not the RPC runtime's), which block on the runtime.

use super::auth::ClientAuth;
use super::chunks::MAX_MESSAGE;
use super::tls::endpoint;
use super::Credentials;
use crate::broadcast::BroadcastSource;
use crate::codec::Frames;
use crate::error::TaskFailure;
use crate::executor::ShuffleFetcher;
use crate::plan::ShuffleId;
use discnn_proto::pb;
use pb::driver_client::DriverClient;
use pb::executor_client::ExecutorClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(crate) type DriverRpc = DriverClient<InterceptedService<Channel, ClientAuth>>;
pub(crate) type PeerRpc = ExecutorClient<InterceptedService<Channel, ClientAuth>>;

pub(crate) fn driver_client(address: &str, creds: &Credentials) -> Result<DriverRpc, String> {
    let channel = endpoint(address, creds.tls.as_deref())?.connect_lazy();
    Ok(
        DriverClient::with_interceptor(channel, ClientAuth(creds.secret.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
}

/// Fetches buckets from other executors' `FetchShuffle`, each under a deadline, so a reducer
/// whose peer is gone or cut off sees a fetch failure, never a hang.
pub(crate) struct RemoteFetcher {
    pub runtime: tokio::runtime::Handle,
    pub creds: Credentials,
    pub deadline: Duration,
    pub peers: Mutex<HashMap<String, PeerRpc>>,
}

impl RemoteFetcher {
    fn peer(&self, address: &str) -> Result<PeerRpc, String> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get(address) {
            return Ok(p.clone());
        }
        let _guard = self.runtime.enter();
        let channel = endpoint(address, self.creds.tls.as_deref())?
            .timeout(self.deadline)
            .connect_lazy();
        let rpc = ExecutorClient::with_interceptor(channel, ClientAuth(self.creds.secret.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        peers.insert(address.to_string(), rpc.clone());
        Ok(rpc)
    }
}

impl ShuffleFetcher for RemoteFetcher {
    fn fetch(
        &self,
        address: &str,
        shuffle: ShuffleId,
        map: u32,
        reduce: u32,
    ) -> Result<Arc<Frames>, TaskFailure> {
        let failed = |message: String| TaskFailure::FetchFailed {
            shuffle,
            map,
            message: format!("fetching from {address}: {message}"),
        };
        let mut rpc = self.peer(address).map_err(failed)?;
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
            .block_on(async { tokio::time::timeout(self.deadline, fetch).await })
            .map_err(|_| failed(format!("no answer within {:?}", self.deadline)))?
            .map_err(|s| failed(s.message().to_string()))?;
        Ok(Arc::new(Frames::from_pair_chunks(chunks)?))
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
