//! Jobs submitted to a long-lived driver (`driver serve`): run one at a time, in arrival order
//! (later submissions wait in the queue and show as `queued`), each on a fresh [`Context`] over
//! the cluster's executors, with its output and progress streamed to the submitting client.
//! A client that goes away (Ctrl-C) cancels its job.

use super::backend::ClusterBackend;
use crate::core::cancel::CancelToken;
use crate::core::sync::Locked;
use crate::driver::context::{Config, Context};
use discnn_proto::pb;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tonic::Status;

/// What a driver knows how to run; the binaries implement it over their job catalogue.
pub trait JobRunner: Send + Sync {
    /// A short name for `driver status`, or an error if the JSON names no known job.
    fn name(&self, job_json: &str) -> Result<String, String>;
    /// Runs the job on `ctx`, writing its stdout lines through `out`.
    fn run(&self, ctx: &Context, job_json: &str, out: &JobOutput) -> JobOutcome;
}

/// How a job submitted to `driver serve` ended.
pub struct JobOutcome {
    /// 0 success, 1 the job failed, 2 bad input.
    pub exit_code: i32,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The submitting client's end of a running job.
pub struct JobOutput {
    tx: mpsc::Sender<Result<pb::JobEvent, Status>>,
}

impl JobOutput {
    fn send(&self, e: pb::job_event::Event) {
        // A closed stream means the client left; the job is being cancelled anyway.
        let _ = self.tx.blocking_send(Ok(pb::JobEvent { event: Some(e) }));
    }

    /// Sends a line of the job's standard output to the client.
    pub fn println(&self, line: impl Into<String>) {
        self.send(pb::job_event::Event::Stdout(line.into()));
    }

    /// Sends a log line to the client (its standard error).
    pub fn log(&self, line: impl Into<String>) {
        self.send(pb::job_event::Event::Log(line.into()));
    }
}

/// Finished jobs `driver status` keeps (the most recent); queued and running ones always show.
pub const KEEP_FINISHED_JOBS: usize = 100;

fn finished(state: &str) -> bool {
    !matches!(state, "queued" | "running")
}

/// Drops the oldest finished jobs beyond `keep`: a long-lived driver's list stays bounded.
fn forget_old_jobs(jobs: &mut Vec<pb::JobInfo>, keep: usize) {
    let done = jobs.iter().filter(|j| finished(&j.state)).count();
    let mut extra = done.saturating_sub(keep);
    jobs.retain(|j| {
        if extra > 0 && finished(&j.state) {
            extra -= 1;
            false
        } else {
            true
        }
    });
}

pub(crate) struct JobQueue {
    runner: Option<Arc<dyn JobRunner>>,
    config: Config,
    turn: Mutex<()>,
    jobs: Mutex<Vec<pb::JobInfo>>,
    ids: AtomicU64,
}

impl JobQueue {
    pub fn new(runner: Option<Arc<dyn JobRunner>>, config: Config) -> Self {
        JobQueue {
            runner,
            config,
            turn: Mutex::new(()),
            jobs: Mutex::new(Vec::new()),
            ids: AtomicU64::new(1),
        }
    }

    pub fn list(&self) -> Vec<pb::JobInfo> {
        self.jobs.locked().clone()
    }

    fn set(&self, id: u64, state: &str, error: Option<String>) {
        let mut jobs = self.jobs.locked();
        if let Some(j) = jobs.iter_mut().find(|j| j.id == id) {
            j.state = state.into();
            j.error = error.unwrap_or_default();
        }
        forget_old_jobs(&mut jobs, KEEP_FINISHED_JOBS);
    }

    pub fn submit(
        self: &Arc<Self>,
        backend: Arc<ClusterBackend>,
        job_json: String,
    ) -> Result<mpsc::Receiver<Result<pb::JobEvent, Status>>, Status> {
        let runner = self.runner.clone().ok_or_else(|| {
            Status::unimplemented(
                "this driver runs one program's jobs only; it takes no submissions",
            )
        })?;
        let name = runner.name(&job_json).map_err(Status::invalid_argument)?;
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.jobs.locked().push(pb::JobInfo {
            id,
            name: name.clone(),
            state: "queued".into(),
            error: String::new(),
        });
        let (tx, rx) = mpsc::channel(1024);
        let cancel = CancelToken::new();
        let done = Arc::new(AtomicBool::new(false));
        // The watcher's sender must go when the job ends: the stream ends only when every
        // sender has, and a generic client reads until it does.
        let finished = Arc::new(tokio::sync::Notify::new());
        {
            let (tx, cancel, done) = (tx.clone(), cancel.clone(), done.clone());
            let finished = finished.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tx.closed() => {
                        if !done.load(Ordering::SeqCst) && !cancel.cancel() {
                            tracing::warn!("job {id}: the client went away; cancelling");
                        }
                    }
                    _ = finished.notified() => {}
                }
            });
        }
        let queue = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("discnn-job-{id}"))
            .spawn(move || {
                let end = queue.run_one(id, &name, backend, runner, job_json, &tx, cancel);
                done.store(true, Ordering::SeqCst);
                if let Some(end) = end {
                    let _ = tx.blocking_send(Ok(pb::JobEvent {
                        event: Some(pb::job_event::Event::Done(end)),
                    }));
                }
                // notify_one keeps the wake-up if the watcher has not polled yet.
                finished.notify_one();
            });
        spawned.map_err(|e| Status::internal(format!("cannot start the job thread: {e}")))?;
        Ok(rx)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_one(
        &self,
        id: u64,
        name: &str,
        backend: Arc<ClusterBackend>,
        runner: Arc<dyn JobRunner>,
        job_json: String,
        tx: &mpsc::Sender<Result<pb::JobEvent, Status>>,
        cancel: CancelToken,
    ) -> Option<pb::JobDone> {
        let _turn = self.turn.locked();
        if cancel.is_cancelled() {
            self.set(id, "cancelled", None);
            return None;
        }
        self.set(id, "running", None);
        tracing::info!("job {id} ({name}) started");
        let out = JobOutput { tx: tx.clone() };
        let config = Config {
            cancel: cancel.clone(),
            progress: false,
            app_name: name.to_string(),
            master: backend.address().to_string(),
            ..self.config.clone()
        };
        let outcome = match Context::on_cluster(config, backend) {
            Ok(ctx) => {
                let ptx = tx.clone();
                ctx.add_listener(crate::driver::progress::ConsoleProgressBar::start_with(
                    move |d| {
                        let line = match d {
                            crate::driver::progress::Draw::Line(l) => l,
                            crate::driver::progress::Draw::Clear => String::new(),
                        };
                        let _ = ptx.try_send(Ok(pb::JobEvent {
                            event: Some(pb::job_event::Event::Progress(line)),
                        }));
                    },
                ));
                runner.run(&ctx, &job_json, &out)
            }
            Err(e) => JobOutcome {
                exit_code: 1,
                error: Some(e.to_string()),
            },
        };
        let state = if outcome.exit_code == 0 {
            "succeeded"
        } else if cancel.is_cancelled() {
            "cancelled"
        } else {
            "failed"
        };
        tracing::info!("job {id} ({name}) {state}");
        self.set(id, state, outcome.error.clone());
        Some(pb::JobDone {
            exit_code: outcome.exit_code,
            error: outcome.error.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_most_recent_finished_jobs_are_kept() {
        let job = |id: u64, state: &str| pb::JobInfo {
            id,
            name: "wordcount".into(),
            state: state.into(),
            error: String::new(),
        };
        let mut jobs: Vec<pb::JobInfo> = (1..=5).map(|i| job(i, "succeeded")).collect();
        jobs.insert(1, job(9, "running"));
        jobs.push(job(10, "queued"));
        forget_old_jobs(&mut jobs, 2);
        let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
        assert_eq!(ids, [9, 4, 5, 10]);
    }
}
