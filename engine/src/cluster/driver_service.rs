//! The driver's gRPC service: executors register, heartbeat, open their task channels and fetch
//! broadcasts; clients submit jobs and ask for the cluster's status.

use super::backend::ClusterBackend;
use super::chunks;
use super::jobs::JobQueue;
use discnn_proto::pb;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

pub(crate) struct DriverService {
    pub backend: Arc<ClusterBackend>,
    pub jobs: Arc<JobQueue>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::Chunk, Status>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;
type ToExecutorStream = Pin<Box<dyn Stream<Item = Result<pb::ToExecutor, Status>> + Send>>;

/// Refuses a peer built from different code: it could not decode our plans (or we its results).
pub(crate) fn check_fingerprint(theirs: &str, who: &str) -> Result<(), Status> {
    let ours = crate::exec::op::fingerprint();
    if theirs == ours {
        return Ok(());
    }
    tracing::error!("refusing {who}: its build is `{theirs}`, this driver's is `{ours}`");
    Err(Status::failed_precondition(format!(
        "build mismatch: the driver runs `{ours}` but this {who} runs `{theirs}`; a driver, its \
         executors and its clients must be built from the same crate, with the same ops \
         linked in (a driver built with your own ops needs the executor built beside it)"
    )))
}

#[tonic::async_trait]
impl pb::driver_server::Driver for DriverService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let peer = req.remote_addr();
        let r = req.into_inner();
        check_fingerprint(&r.fingerprint, "executor")?;
        // An executor that listens on 0.0.0.0 advertises the address it reached us from.
        let address = match (r.address.parse::<std::net::SocketAddr>(), peer) {
            (Ok(a), Some(p)) if a.ip().is_unspecified() => format!("{}:{}", p.ip(), a.port()),
            _ => r.address,
        };
        let id = self
            .backend
            .register(address, r.instance, r.cores, r.pid)
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(pb::RegisterResponse {
            executor_id: id,
            heartbeat_interval_ms: self.backend.config.timings.heartbeat_interval.as_millis()
                as u32,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let reply = match self.backend.heartbeat(&r.executor_id, r.draining) {
            Some(cleanups) => pb::HeartbeatResponse {
                reregister: false,
                cleanups,
            },
            None => pb::HeartbeatResponse {
                reregister: true,
                cleanups: Vec::new(),
            },
        };
        Ok(Response::new(reply))
    }

    async fn deregister(
        &self,
        req: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.backend.deregister(&req.into_inner().executor_id);
        Ok(Response::new(pb::Empty {}))
    }

    type TasksStream = ToExecutorStream;

    async fn tasks(
        &self,
        req: Request<Streaming<pb::FromExecutor>>,
    ) -> Result<Response<ToExecutorStream>, Status> {
        let peer = req.remote_addr().map(|a| a.ip());
        let mut stream = req.into_inner();
        let id = match stream.message().await? {
            Some(pb::FromExecutor {
                what: Some(pb::from_executor::What::ExecutorId(id)),
            }) => id,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "a task channel's first message names its executor",
                ))
            }
            None => return Err(Status::invalid_argument("empty stream: no header message")),
        };
        let rx = self.backend.open_channel(&id)?;
        tokio::spawn(self.backend.clone().read_channel(id, peer, stream));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        )))
    }

    type FetchBroadcastStream = ChunkStream;

    async fn fetch_broadcast(
        &self,
        req: Request<pb::BroadcastRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let id = req.into_inner().id;
        let bytes = self
            .backend
            .broadcast_bytes(id)
            .ok_or_else(|| Status::not_found(format!("broadcast {id} was destroyed")))?;
        let parts: Vec<Result<pb::Chunk, Status>> = chunks::split(&bytes)
            .into_iter()
            .map(|data| Ok(pb::Chunk { data }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(parts))))
    }

    type SubmitStream = EventStream;

    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        check_fingerprint(&r.fingerprint, "client")?;
        let rx = self.jobs.submit(self.backend.clone(), r.job_json)?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn status(&self, _req: Request<pb::Empty>) -> Result<Response<pb::StatusReply>, Status> {
        let executors = self
            .backend
            .executors()
            .into_iter()
            .map(|e| pb::ExecutorInfo {
                id: e.id,
                address: e.address,
                cores: e.cores,
                state: e.state.as_str().into(),
                ms_since_heartbeat: e.since_heartbeat.as_millis() as u64,
                running_tasks: e.running_tasks,
                tasks_finished: e.tasks_finished,
            })
            .collect();
        Ok(Response::new(pb::StatusReply {
            fingerprint: crate::exec::op::fingerprint(),
            executors,
            jobs: self.jobs.list(),
        }))
    }
}
