//! An executor's tasks: the task channel to the driver (tasks down, results and refusals up),
//! and the slot threads that run them.

use super::{Shared, Work};
use crate::cluster::backend::{task_parts, TASKS_METHOD};
use crate::cluster::chunks;
use crate::cluster::remote::DriverRpc;
use crate::cluster::ClusterError;
use crate::core::sync::Locked;
use crate::exec::executor::{run_task, ExecutorEnv};
use discnn_proto::pb;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Streaming;

/// N slot threads, each running the queued tasks one at a time and sending their results.
pub(super) fn start_slots(
    shared: &Arc<Shared>,
    rx: Receiver<Work>,
    n: usize,
) -> Result<(), ClusterError> {
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("discnn-slot-{i}"))
            .spawn(move || loop {
                let next = rx.locked().recv();
                let Ok(w) = next else { return };
                let result = run_task(&w.env, w.task_id, &w.bytes);
                shared.tasks_run.fetch_add(1, Ordering::Relaxed);
                report(&shared, w.task_id, result);
                shared.busy.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(ClusterError::Runtime)?;
    }
    Ok(())
}

/// Sends a task's result up the task channel. Without one (the channel broke, or this executor
/// is registering anew) the result is dropped: the driver has declared this executor lost and
/// re-runs the task elsewhere.
fn report(shared: &Shared, task_id: u64, result: Vec<u8>) {
    let sent = send(
        shared,
        task_parts(task_id, result)
            .into_iter()
            .map(pb::from_executor::What::Result),
    );
    if !sent {
        tracing::warn!("the result of task {task_id} was not sent: no task channel to the driver");
    }
}

/// Sends messages up the task channel; false when there is none.
fn send(shared: &Shared, what: impl IntoIterator<Item = pb::from_executor::What>) -> bool {
    let Some(tx) = shared.channel.locked().clone() else {
        return false;
    };
    what.into_iter()
        .all(|w| tx.send(pb::FromExecutor { what: Some(w) }).is_ok())
}

/// The task channel of registration `id` (the driver's `Tasks`): opened, with retries while the
/// driver cannot be reached; then tasks come down it until it closes. A channel that breaks
/// is not reopened: the driver has declared this executor lost, and its next heartbeat reply
/// says to register anew, which starts a new channel.
pub(super) async fn task_channel(
    shared: Arc<Shared>,
    mut driver: DriverRpc,
    id: String,
    env: Arc<ExecutorEnv>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut attempts = 0u32;
    loop {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let hello = pb::from_executor::What::ExecutorId(id.clone());
        let _ = tx.send(pb::FromExecutor { what: Some(hello) });
        *shared.channel.locked() = Some(tx);
        let opened = driver
            .tasks(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await;
        match opened {
            Ok(r) => return serve_channel(&shared, &env, r.into_inner()).await,
            Err(s) => {
                shared.channel.locked().take();
                attempts += 1;
                if attempts == 1 || attempts.is_multiple_of(20) {
                    tracing::warn!("opening the task channel failed: {}", s.message());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Takes the tasks that come down an open task channel, after checking that the driver holds
/// the cluster's secret.
async fn serve_channel(
    shared: &Shared,
    env: &Arc<ExecutorEnv>,
    mut inbound: Streaming<pb::ToExecutor>,
) {
    use pb::to_executor::What;
    match inbound.message().await {
        Ok(Some(pb::ToExecutor {
            what: Some(What::Token(t)),
        })) => {
            let token = (!t.is_empty()).then_some(t.as_str());
            if let Err(why) = shared.auth.verify(token, TASKS_METHOD) {
                tracing::error!("refusing the driver's task channel: {why}");
                return;
            }
        }
        Ok(_) => {
            tracing::error!("the driver's task channel did not start with its token");
            return;
        }
        Err(s) => {
            tracing::warn!("the task channel broke: {}", s.message());
            return;
        }
    }
    let mut parts = chunks::Assembler::new(None);
    loop {
        let m = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(s) => {
                tracing::warn!("the task channel broke: {}", s.message());
                return;
            }
        };
        match m.what {
            Some(What::Broadcast(b)) => env.broadcasts.offer(b.id, b.data),
            Some(What::Task(p)) => match parts.push(p.task_id, p.data, p.last) {
                Ok(Some(bytes)) => accept(shared, env, p.task_id, bytes),
                Ok(None) => {}
                Err(s) => {
                    tracing::error!("task {} refused: {}", p.task_id, s.message());
                    refuse(shared, p.task_id, s.message(), false);
                }
            },
            Some(What::Token(_)) | None => {
                tracing::warn!("an unexpected message on the task channel: ignored");
            }
        }
    }
}

/// Queues a task for a slot, or refuses it.
fn accept(shared: &Shared, env: &Arc<ExecutorEnv>, task_id: u64, bytes: Vec<u8>) {
    if shared.draining.load(Ordering::SeqCst) {
        return refuse(shared, task_id, "executor is draining", true);
    }
    shared.busy.fetch_add(1, Ordering::SeqCst);
    let queued = shared.queue.locked().send(Work {
        env: env.clone(),
        task_id,
        bytes,
    });
    if queued.is_err() {
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        refuse(shared, task_id, "executor slots stopped", false);
    }
}

fn refuse(shared: &Shared, task_id: u64, reason: &str, draining: bool) {
    let r = pb::TaskRefused {
        task_id,
        reason: reason.to_string(),
        draining,
    };
    send(shared, [pb::from_executor::What::Refused(r)]);
}
