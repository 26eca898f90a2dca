//! The DAG scheduler. A job's final RDD is cut into stages at shuffle dependencies; missing
//! parent stages run first (a shuffle whose outputs all exist is reused, and lineage behind a
//! fully cached RDD is not visited at all); each stage runs attempts ([`task_set`]) until its
//! tasks have all succeeded, and a fetch failure re-runs the lost map outputs and then the
//! reading stage. It talks to executors only through the context's `SchedulerBackend`.

mod stage;
mod task_set;

use crate::core::error::{Result, TaskFailure};
use crate::core::events::Event;
use crate::core::plan::{RddId, ResultSink};
use crate::core::sync::Locked;
use crate::driver::context::{Context, ContextInner};
use crate::driver::rdd::{RddNode, ShuffleDep};
use stage::{Stage, StageState};
use std::sync::Arc;
use std::time::Duration;
use task_set::{AttemptError, TaskSet};

/// Spark waits a moment before resubmitting after a fetch failure, so that several failures
/// from one lost executor are handled together.
const RESUBMIT_DELAY: Duration = Duration::from_millis(50);

impl Context {
    /// Runs `sink` over `partitions` of `rdd` and returns each partition's encoded result.
    pub(crate) fn run_job(
        &self,
        rdd: &Arc<RddNode>,
        partitions: &[usize],
        sink: ResultSink,
        description: &str,
    ) -> Result<Vec<Vec<u8>>> {
        DagScheduler { inner: &self.inner }.run_job(rdd, partitions, sink, description)
    }

    pub(crate) fn cached_partitions(&self, rdd: RddId) -> Vec<usize> {
        self.inner.backend.cached_partitions(rdd)
    }
}

/// The scheduler of one context's jobs (Spark's DAGScheduler): one job at a time, its stages
/// as [`Stage`] values, each stage's attempts as [`TaskSet`]s.
pub(crate) struct DagScheduler<'c> {
    inner: &'c ContextInner,
}

impl DagScheduler<'_> {
    fn run_job(
        &self,
        rdd: &Arc<RddNode>,
        partitions: &[usize],
        sink: ResultSink,
        description: &str,
    ) -> Result<Vec<Vec<u8>>> {
        let inner = self.inner;
        let _one_job_at_a_time = inner.job_lock.locked();
        inner.cleaner.run_now();
        let job = inner.next_id();
        inner.post(Event::JobStart {
            job,
            description: description.to_string(),
        });
        let mut stage = Stage::result(inner.next_id(), rdd.clone(), partitions, sink);
        let result = self
            .run_stage(job, &mut stage)
            .and_then(|()| stage.into_results());
        inner.post(Event::JobEnd {
            job,
            error: result.as_ref().err().map(|e| e.to_string()),
        });
        inner.cleaner.run_now();
        result
    }

    /// One lifecycle for result and shuffle-map stages: its missing parents first, then an
    /// attempt over its pending tasks; again after a fetch failure (up to the context's stage
    /// attempts), and for a map stage again until no output is missing (an executor lost during
    /// the attempt takes its outputs with it).
    fn run_stage(&self, job: u64, stage: &mut Stage) -> Result<()> {
        let max = self.inner.config.max_stage_attempts;
        for attempt in 0.. {
            self.forget_lost_executors();
            if let Err(e) = self.run_missing_parents(job, &stage.rdd) {
                stage.state = StageState::Failed;
                return Err(e);
            }
            let todo = stage.pending_tasks(&self.inner.tracker);
            if todo.is_empty() && stage.is_shuffle_map() {
                stage.state = StageState::Succeeded;
                return Ok(());
            }
            stage.state = StageState::Running { attempt };
            match TaskSet::run(self, job, stage, attempt, &todo) {
                Ok(()) if stage.is_shuffle_map() => {}
                Ok(()) => {
                    stage.state = StageState::Succeeded;
                    return Ok(());
                }
                Err(AttemptError::Failed(e)) => {
                    stage.state = StageState::Failed;
                    return Err(e);
                }
                Err(AttemptError::FetchFailed(f)) => {
                    self.after_fetch_failure(job, stage, attempt, max, f)?
                }
            }
        }
        Ok(())
    }

    /// A stage attempt lost shuffle input: fails the stage once it has had `max` attempts,
    /// else waits a moment so that the other failures of one lost executor are seen together.
    fn after_fetch_failure(
        &self,
        job: u64,
        stage: &mut Stage,
        attempt: u32,
        max: u32,
        failure: TaskFailure,
    ) -> Result<()> {
        if attempt + 1 >= max {
            stage.state = StageState::Failed;
            return Err(stage.aborted(job, attempt + 1, failure));
        }
        tracing::warn!(
            stage = stage.id,
            attempt,
            "fetch failure: {failure}; recomputing lost map outputs"
        );
        std::thread::sleep(RESUBMIT_DELAY);
        Ok(())
    }

    /// Runs, in dependency order, every shuffle-map stage `rdd` needs whose outputs are missing.
    fn run_missing_parents(&self, job: u64, rdd: &Arc<RddNode>) -> Result<()> {
        for dep in self.missing_shuffles(rdd) {
            let id = *self
                .inner
                .shuffle_stages
                .entry(dep.id)
                .or_insert_with(|| self.inner.next_id());
            self.run_stage(job, &mut Stage::shuffle_map(id, dep))?;
        }
        Ok(())
    }

    /// Shuffle dependencies reachable through narrow lineage whose outputs are incomplete.
    /// Lineage behind an RDD whose partitions are all cached is not needed, as in Spark.
    fn missing_shuffles(&self, rdd: &Arc<RddNode>) -> Vec<Arc<ShuffleDep>> {
        let mut out: Vec<Arc<ShuffleDep>> = Vec::new();
        let mut stack = vec![rdd.clone()];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.id) {
                continue;
            }
            if n.storage().is_some()
                && self.inner.backend.cached_partitions(n.id).len() == n.num_partitions
            {
                continue;
            }
            for s in &n.shuffles {
                let missing = self
                    .inner
                    .tracker
                    .missing(s.id)
                    .is_none_or(|m| !m.is_empty());
                if missing && !out.iter().any(|o| o.id == s.id) {
                    out.push(s.clone());
                }
            }
            stack.extend(n.parents.iter().cloned());
        }
        out
    }

    /// Map outputs held by executors that are gone must be recomputed: forget them before a
    /// stage decides what is missing.
    fn forget_lost_executors(&self) {
        let gone = self.inner.backend.lost_executors();
        if !gone.is_empty() {
            let n = self.inner.tracker.remove_executors(&gone);
            if n > 0 {
                tracing::info!("{n} map output(s) were on lost executors; recomputing");
            }
        }
    }

    fn apply_accumulators(&self, updates: &[(u64, serde_bytes::ByteBuf)]) {
        for (id, bytes) in updates {
            let acc = self.inner.accumulators.get(id).and_then(|w| w.upgrade());
            if let Some(acc) = acc {
                if let Err(e) = acc.merge_encoded(bytes) {
                    tracing::warn!("accumulator {id}: {e}");
                }
            }
        }
    }
}
