//! The application status store (Spark's AppStatusListener and its store): a listener that
//! folds an application's events into [`AppState`]. The live UI feeds it from the context's
//! bus; the history server feeds it from an event log. Same events, same fold, same answers.

pub mod model;

use crate::metrics::Metrics;
use discnn_engine::events::{Event, Listener, Posted};
pub use model::*;
use std::sync::{Arc, Mutex, MutexGuard};

/// Jobs an application's store keeps listed (Spark's `spark.ui.retainedJobs`); older ones are
/// counted in [`Forgotten`].
pub const RETAINED_JOBS: usize = 1000;

/// One application's state, updated as its events arrive.
pub struct AppStore {
    state: Mutex<AppState>,
    metrics: Option<Arc<Metrics>>,
}

impl AppStore {
    /// An empty store; durations go to `metrics` when given.
    pub fn new(metrics: Option<Arc<Metrics>>) -> Self {
        AppStore {
            state: Mutex::new(AppState::default()),
            metrics,
        }
    }

    /// The state now (held while the guard lives: copy what a page needs and let go).
    pub fn state(&self) -> MutexGuard<'_, AppState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The application's id (empty until its start is heard).
    pub fn id(&self) -> String {
        self.state().id.clone()
    }
}

impl Listener for AppStore {
    fn on_posted(&self, posted: &Posted) {
        let mut st = self.state();
        let timed = st.apply(posted);
        let app = st.id.clone();
        drop(st);
        if let (Some(m), Some((what, secs))) = (&self.metrics, timed) {
            m.record_duration(&app, what, secs);
        }
    }
}

/// What a finished job or stage took, for the duration histograms.
type Timed = Option<(&'static str, f64)>;

fn secs(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e3
}

impl AppState {
    /// Folds one event in; returns the duration of a job or stage it ended.
    pub fn apply(&mut self, p: &Posted) -> Timed {
        let t = p.time_ms;
        self.last_event_ms = self.last_event_ms.max(t);
        match &p.event {
            Event::ApplicationStart {
                app_id,
                app,
                master,
            } => {
                self.id = app_id.clone();
                self.name = app.clone();
                self.master = master.clone();
                self.start_ms = t;
            }
            Event::ApplicationEnd => {
                self.end_ms = Some(t);
                for r in &mut self.training {
                    r.ended = true;
                }
            }
            Event::EnvironmentUpdate { properties } => {
                self.environment.extend(properties.clone());
            }
            Event::JobStart { job, description } => {
                self.jobs.insert(
                    *job,
                    JobData {
                        id: *job,
                        description: description.clone(),
                        status: "RUNNING",
                        error: None,
                        submission_ms: t,
                        completion_ms: None,
                        stage_ids: Vec::new(),
                        num_tasks: 0,
                        completed_tasks: 0,
                        failed_tasks: 0,
                    },
                );
                self.forget_old_jobs();
            }
            Event::JobEnd { job, error } => {
                if error.is_some() {
                    self.totals.jobs_failed += 1;
                } else {
                    self.totals.jobs_succeeded += 1;
                }
                if let Some(j) = self.jobs.get_mut(job) {
                    j.status = if error.is_some() {
                        "FAILED"
                    } else {
                        "SUCCEEDED"
                    };
                    j.error = error.clone();
                    j.completion_ms = Some(t);
                    return Some(("job", secs(j.submission_ms, t)));
                }
            }
            Event::StageSubmitted {
                job,
                stage,
                attempt,
                name,
                num_tasks,
                shuffle_map,
            } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    if !j.stage_ids.contains(stage) {
                        j.stage_ids.push(*stage);
                    }
                    j.num_tasks += num_tasks;
                }
                let prior = self.stages.remove(stage);
                let retried = prior.as_ref().map_or(0, |s| s.retried_tasks);
                self.stages.insert(
                    *stage,
                    StageData {
                        id: *stage,
                        job: *job,
                        attempt: *attempt,
                        name: name.clone(),
                        shuffle_map: *shuffle_map,
                        status: "ACTIVE",
                        failure: None,
                        submission_ms: t,
                        completion_ms: None,
                        num_tasks: *num_tasks,
                        active_tasks: 0,
                        completed_tasks: 0,
                        failed_tasks: 0,
                        retried_tasks: retried,
                        task_micros: Vec::new(),
                        run_micros: 0,
                        shuffle_read_bytes: 0,
                        shuffle_read_records: 0,
                        shuffle_write_bytes: 0,
                        shuffle_write_records: 0,
                    },
                );
            }
            Event::StageCompleted {
                stage,
                attempt,
                failure,
            } => {
                if let Some(s) = self.stages.get_mut(stage).filter(|s| s.attempt == *attempt) {
                    s.status = if failure.is_some() {
                        "FAILED"
                    } else {
                        "COMPLETE"
                    };
                    s.failure = failure.clone();
                    s.completion_ms = Some(t);
                    return Some(("stage", secs(s.submission_ms, t)));
                }
            }
            Event::TaskStart { stage, attempt, .. } => {
                if let Some(s) = self.stages.get_mut(stage) {
                    s.active_tasks += 1;
                    if *attempt > 0 {
                        s.retried_tasks += 1;
                    }
                }
            }
            Event::TaskEnd {
                stage,
                stage_attempt,
                executor,
                failure,
                metrics,
                ..
            } => self.task_end(*stage, *stage_attempt, executor, failure.is_some(), metrics),
            Event::ExecutorAdded {
                executor,
                address,
                cores,
            } => {
                self.executors.retain(|e| &e.id != executor);
                self.executors.push(ExecutorData {
                    id: executor.clone(),
                    address: address.clone(),
                    cores: *cores,
                    state: "alive",
                    added_ms: t,
                    removed_ms: None,
                    remove_reason: None,
                    last_heartbeat_ms: None,
                    completed_tasks: 0,
                    failed_tasks: 0,
                    task_micros: 0,
                    shuffle_read_bytes: 0,
                    shuffle_write_bytes: 0,
                });
            }
            Event::ExecutorDraining { executor } => {
                if let Some(e) = self.executor_mut(executor) {
                    e.state = "draining";
                }
            }
            Event::ExecutorHeartbeat { executor } => {
                if let Some(e) = self.executor_mut(executor) {
                    e.last_heartbeat_ms = Some(t);
                }
            }
            Event::ExecutorRemoved {
                executor,
                reason,
                lost,
            } => {
                if let Some(e) = self.executor_mut(executor) {
                    e.state = if *lost { "lost" } else { "exited" };
                    e.removed_ms = Some(t);
                    e.remove_reason = Some(reason.clone());
                }
                self.blocks.retain(|k, _| &k.2 != executor);
            }
            Event::BlockUpdated {
                executor,
                rdd,
                partition,
                memory_bytes,
                disk_bytes,
            } => {
                self.blocks.insert(
                    (*rdd, *partition, executor.clone()),
                    BlockData {
                        memory_bytes: *memory_bytes,
                        disk_bytes: *disk_bytes,
                    },
                );
            }
            Event::RddPersisted {
                rdd,
                name,
                num_partitions,
                level,
            } => {
                self.rdds.insert(
                    *rdd,
                    RddData {
                        id: *rdd,
                        name: name.clone(),
                        num_partitions: *num_partitions,
                        level: level.clone(),
                    },
                );
            }
            Event::RddUnpersisted { rdd } => {
                self.rdds.remove(rdd);
                self.blocks.retain(|k, _| k.0 != *rdd);
            }
            Event::Custom { kind, json } => self.custom(kind, json, t),
            // Events this build does not know of (a newer log) change nothing.
            #[allow(unreachable_patterns)]
            _ => {}
        }
        None
    }

    fn executor_mut(&mut self, id: &str) -> Option<&mut ExecutorData> {
        self.executors.iter_mut().find(|e| e.id == id)
    }

    fn task_end(
        &mut self,
        stage: u64,
        stage_attempt: u32,
        executor: &str,
        failed: bool,
        m: &discnn_engine::task::TaskMetrics,
    ) {
        if failed {
            self.totals.tasks_failed += 1;
        } else {
            self.totals.tasks_finished += 1;
        }
        self.totals.shuffle_read_bytes += m.shuffle_read_bytes;
        self.totals.shuffle_write_bytes += m.shuffle_write_bytes;
        let mut job = None;
        if let Some(s) = self.stages.get_mut(&stage) {
            s.active_tasks = s.active_tasks.saturating_sub(1);
            if s.attempt == stage_attempt {
                if failed {
                    s.failed_tasks += 1;
                } else {
                    s.completed_tasks += 1;
                    s.task_micros.push(m.run_micros);
                }
                s.run_micros += m.run_micros;
                s.shuffle_read_bytes += m.shuffle_read_bytes;
                s.shuffle_read_records += m.shuffle_read_records;
                s.shuffle_write_bytes += m.shuffle_write_bytes;
                s.shuffle_write_records += m.shuffle_write_records;
            }
            job = Some(s.job);
        }
        if let Some(j) = job.and_then(|j| self.jobs.get_mut(&j)) {
            if failed {
                j.failed_tasks += 1;
            } else {
                j.completed_tasks += 1;
            }
        }
        if let Some(e) = self.executor_mut(executor) {
            if failed {
                e.failed_tasks += 1;
            } else {
                e.completed_tasks += 1;
            }
            e.task_micros += m.run_micros;
            e.shuffle_read_bytes += m.shuffle_read_bytes;
            e.shuffle_write_bytes += m.shuffle_write_bytes;
        }
    }

    /// Drops the oldest finished jobs (and their stages) beyond [`RETAINED_JOBS`].
    fn forget_old_jobs(&mut self) {
        while self.jobs.len() > RETAINED_JOBS {
            let Some(old) = self
                .jobs
                .values()
                .find(|j| j.status != "RUNNING")
                .map(|j| j.id)
            else {
                return;
            };
            if let Some(j) = self.jobs.remove(&old) {
                if j.status == "FAILED" {
                    self.forgotten.failed += 1;
                } else {
                    self.forgotten.succeeded += 1;
                }
                for s in j.stage_ids {
                    self.stages.remove(&s);
                }
            }
        }
    }

    /// The training events cnn-job posts: `TrainingStart`, `ConfusionMatrix`, `EpochEnd`.
    fn custom(&mut self, kind: &str, json: &str, t: u64) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            return;
        };
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        match kind {
            "TrainingStart" => self.training.push(TrainingRun {
                output: text("output"),
                model: text("model"),
                epochs: v.get("epochs").and_then(|x| x.as_u64()),
                started_ms: t,
                ..TrainingRun::default()
            }),
            "ConfusionMatrix" | "EpochEnd" => {
                if self.training.is_empty() {
                    self.training.push(TrainingRun {
                        started_ms: t,
                        ..TrainingRun::default()
                    });
                }
                let run = self.training.last_mut().expect("a run was just ensured");
                if kind == "EpochEnd" {
                    run.rows.push(v);
                    return;
                }
                run.classes = serde_json::from_value(v["classes"].clone()).unwrap_or_default();
                run.confusion = serde_json::from_value(v["counts"].clone()).unwrap_or_default();
            }
            "TrainingEnd" => {
                if let Some(r) = self.training.last_mut() {
                    r.ended = true;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(st: &mut AppState, event: Event) {
        st.apply(&Posted::now(event));
    }

    #[test]
    fn the_last_thousand_jobs_are_kept_and_older_ones_counted() {
        let mut st = AppState::default();
        for job in 0..(RETAINED_JOBS as u64 + 5) {
            post(
                &mut st,
                Event::JobStart {
                    job,
                    description: "count".into(),
                },
            );
            post(
                &mut st,
                Event::StageSubmitted {
                    job,
                    stage: 10_000 + job,
                    attempt: 0,
                    name: "count".into(),
                    num_tasks: 2,
                    shuffle_map: false,
                },
            );
            let error = (job == 1).then(|| "boom".to_string());
            post(&mut st, Event::JobEnd { job, error });
        }
        assert_eq!(st.jobs.len(), RETAINED_JOBS);
        assert_eq!(st.jobs.keys().next(), Some(&5));
        assert_eq!((st.forgotten.succeeded, st.forgotten.failed), (4, 1));
        assert!(
            !st.stages.contains_key(&10_004),
            "a forgotten job's stages go too"
        );
        assert!(st.stages.contains_key(&10_005));
        assert_eq!(st.totals.jobs_succeeded + st.totals.jobs_failed, 1005);
    }

    #[test]
    fn a_running_job_is_never_forgotten() {
        let mut st = AppState::default();
        post(
            &mut st,
            Event::JobStart {
                job: 0,
                description: "long".into(),
            },
        );
        for job in 1..=(RETAINED_JOBS as u64 + 1) {
            post(
                &mut st,
                Event::JobStart {
                    job,
                    description: "short".into(),
                },
            );
            post(&mut st, Event::JobEnd { job, error: None });
        }
        assert_eq!(st.jobs.get(&0).map(|j| j.status), Some("RUNNING"));
        assert_eq!(st.jobs.len(), RETAINED_JOBS);
    }
}
