//! Executors' task channels: one long-lived `Tasks` stream per registered executor, opened by
//! the executor once it has registered. Tasks go down it and results come up it as one-way
//! messages (Spark's `LaunchTask` and `StatusUpdate` over its RPC connection), so a task costs
//! no RPC, no headers and no token of its own — on a loopback cluster the RPCs' per-call work
//! and thread hand-offs were most of a small job's time. An executor takes tasks only while its
//! channel is open; a channel that breaks means the executor is lost.

use super::*;
use pb::to_executor::What as Down;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tonic::{Status, Streaming};

/// The method a driver's token on a task channel names (see `auth`).
pub(crate) const TASKS_METHOD: &str = "/discnn.Driver/Tasks";

/// The driver's end of a task channel.
pub(crate) type ChannelTx = UnboundedSender<Result<pb::ToExecutor, Status>>;

/// A payload as task-channel pieces, the last one marked; an empty payload is one empty piece.
/// A payload that fits one chunk moves into it uncopied.
pub(crate) fn task_parts(task_id: u64, bytes: Vec<u8>) -> Vec<pb::TaskPart> {
    let pieces = if bytes.len() <= chunks::CHUNK {
        vec![bytes]
    } else {
        chunks::split(&bytes)
    };
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, data)| pb::TaskPart {
            task_id,
            data,
            last: i + 1 == n,
        })
        .collect()
}

impl ClusterBackend {
    /// Opens executor `id`'s task channel: the stream the driver answers its `Tasks` call with.
    pub(crate) fn open_channel(
        &self,
        id: &str,
    ) -> Result<UnboundedReceiver<Result<pb::ToExecutor, Status>>, Status> {
        let (tx, rx) = unbounded_channel();
        {
            let mut st = self.lock();
            let e = st.executors.get_mut(id).ok_or_else(|| {
                Status::not_found(format!("no executor `{id}` is registered with this driver"))
            })?;
            if e.state != ExecutorState::Alive {
                return Err(Status::failed_precondition(format!(
                    "executor {id} is {}: it gets no tasks",
                    e.state.as_str()
                )));
            }
            if e.channel.is_some() {
                return Err(Status::already_exists(format!(
                    "executor {id} has a task channel open already"
                )));
            }
            let token = self
                .config
                .secret
                .as_ref()
                .map(|s| s.token(&e.instance, TASKS_METHOD))
                .unwrap_or_default();
            let _ = tx.send(Ok(pb::ToExecutor {
                what: Some(Down::Token(token)),
            }));
            e.channel = Some(tx);
        }
        tracing::debug!("executor {id} opened its task channel");
        self.dispatch();
        Ok(rx)
    }

    /// Reads executor `id`'s results and refusals until its channel closes.
    pub(crate) async fn read_channel(
        self: Arc<Self>,
        id: String,
        peer: Option<std::net::IpAddr>,
        mut stream: Streaming<pb::FromExecutor>,
    ) {
        use pb::from_executor::What as Up;
        let mut parts = chunks::Assembler::new(peer);
        let end = loop {
            let m = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break Ok(()),
                Err(s) => break Err(s.message().to_string()),
            };
            self.traffic.channel_message();
            match m.what {
                // Routed undecoded: the scheduler decodes it once, and turns a result that does
                // not decode into a task failure, so the task is retried rather than lost.
                Some(Up::Result(p)) => match parts.push(p.task_id, p.data, p.last) {
                    Ok(Some(bytes)) => self.task_finished(&id, p.task_id, bytes),
                    Ok(None) => {}
                    Err(s) => break Err(s.message().to_string()),
                },
                Some(Up::Refused(r)) => {
                    tracing::info!("executor {id} refused task {}: {}", r.task_id, r.reason);
                    self.requeue(&id, r.task_id, r.draining);
                }
                Some(Up::ExecutorId(_)) | None => {
                    break Err("a message that is not a result or a refusal".into())
                }
            }
        };
        self.channel_closed(&id, end);
    }

    /// Executor `id`'s channel has closed: cleanly (it is leaving), or not (it is lost).
    fn channel_closed(&self, id: &str, end: Result<(), String>) {
        let (channel, running) = {
            let mut st = self.lock();
            let running = st.running.values().filter(|r| r.executor == id).count();
            let channel = st.executors.get_mut(id).and_then(|e| e.channel.take());
            (channel, running)
        };
        // Ends the executor's inbound stream: it has all we will send, and we all it sent.
        drop(channel);
        match end {
            Ok(()) if running == 0 => tracing::debug!("executor {id} closed its task channel"),
            Ok(()) => self.declare_lost(
                id,
                &format!("it closed its task channel with {running} task(s) running"),
            ),
            Err(why) => self.declare_lost(id, &format!("its task channel broke: {why}")),
        }
    }

    /// Places what is pending on free slots and sends it down the executors' channels.
    pub(crate) fn dispatch(&self) {
        for (executor, tx, task_id, bytes, push) in self.place_tasks() {
            let broadcasts = push.into_iter().map(|(id, b)| {
                Down::Broadcast(pb::BroadcastValue {
                    id,
                    data: b.to_vec(),
                })
            });
            let task = task_parts(task_id, bytes.to_vec())
                .into_iter()
                .map(Down::Task);
            let sent = broadcasts
                .chain(task)
                .all(|what| tx.send(Ok(pb::ToExecutor { what: Some(what) })).is_ok());
            if !sent {
                self.declare_lost(&executor, "its task channel is closed");
            }
        }
    }
}
