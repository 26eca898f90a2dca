//! A stage as a state value: what it computes (a job's results, or a shuffle's map outputs),
//! which of its tasks are still to run, and where it is in its life.

use crate::core::error::{EngineError, Result, TaskFailure};
use crate::core::plan::ResultSink;
use crate::core::task::{TaskKind, TaskOutput};
use crate::driver::map_output::{MapOutputTracker, MapStatus};
use crate::driver::rdd::{RddNode, ShuffleDep};
use std::sync::Arc;

/// Where a stage is in its life. A stage runs an attempt after another (each after a fetch
/// failure, or for map outputs lost with an executor) until it succeeds or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StageState {
    /// Waiting for its parents.
    Pending,
    Running {
        attempt: u32,
    },
    Succeeded,
    Failed,
}

pub(super) enum StageKind {
    /// The job's last stage: one encoded result per requested partition.
    Result {
        sink: ResultSink,
        partitions: Vec<usize>,
        results: Vec<Option<Vec<u8>>>,
    },
    /// A stage whose tasks write a shuffle's map outputs.
    ShuffleMap { dep: Arc<ShuffleDep> },
}

pub(super) struct Stage {
    pub id: u64,
    /// The stage's last RDD: its tasks compute partitions of it.
    pub rdd: Arc<RddNode>,
    pub kind: StageKind,
    pub state: StageState,
}

impl Stage {
    pub fn result(id: u64, rdd: Arc<RddNode>, partitions: &[usize], sink: ResultSink) -> Self {
        Stage {
            id,
            rdd,
            kind: StageKind::Result {
                sink,
                partitions: partitions.to_vec(),
                results: vec![None; partitions.len()],
            },
            state: StageState::Pending,
        }
    }

    pub fn shuffle_map(id: u64, dep: Arc<ShuffleDep>) -> Self {
        Stage {
            id,
            rdd: dep.parent.clone(),
            kind: StageKind::ShuffleMap { dep },
            state: StageState::Pending,
        }
    }

    pub fn is_shuffle_map(&self) -> bool {
        matches!(self.kind, StageKind::ShuffleMap { .. })
    }

    /// The tasks still to run, as (result index, partition): partitions without a result, or
    /// map outputs the tracker does not have (never computed, or lost with their executor).
    pub fn pending_tasks(&self, tracker: &MapOutputTracker) -> Vec<(usize, usize)> {
        match &self.kind {
            StageKind::Result {
                partitions,
                results,
                ..
            } => partitions
                .iter()
                .enumerate()
                .filter(|(i, _)| results[*i].is_none())
                .map(|(i, &p)| (i, p))
                .collect(),
            StageKind::ShuffleMap { dep } => {
                tracker.register(dep.id, dep.parent.num_partitions);
                tracker
                    .missing(dep.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| (p, p))
                    .collect()
            }
        }
    }

    pub fn task_kind(&self) -> TaskKind {
        match &self.kind {
            StageKind::Result { sink, .. } => TaskKind::Result(sink.clone()),
            StageKind::ShuffleMap { dep } => TaskKind::ShuffleMap {
                shuffle: dep.id,
                writer: dep.writer.clone(),
            },
        }
    }

    /// Records a task's output. Returns whether its accumulator updates apply: a result
    /// partition counts its first success only, a map output every success (it replaces the
    /// lost one it recomputes).
    pub fn task_succeeded(
        &mut self,
        idx: usize,
        executor: &str,
        out: TaskOutput,
        tracker: &MapOutputTracker,
    ) -> bool {
        match (&mut self.kind, out) {
            (StageKind::Result { results, .. }, TaskOutput::Value(v)) => {
                if results[idx].is_none() {
                    results[idx] = Some(v);
                    return true;
                }
                false
            }
            (StageKind::Result { .. }, _) => false,
            (StageKind::ShuffleMap { dep }, TaskOutput::MapOutput { bytes, buckets, .. }) => {
                tracker.add_output(
                    dep.id,
                    idx,
                    MapStatus {
                        executor: executor.to_string(),
                        bytes,
                        buckets,
                        finished: 0,
                    },
                );
                true
            }
            (StageKind::ShuffleMap { .. }, _) => true,
        }
    }

    /// The error that ends a stage whose attempts kept failing on lost shuffle output.
    pub fn aborted(&self, job: u64, attempts: u32, failure: TaskFailure) -> EngineError {
        EngineError::StageAborted {
            job,
            stage: self.id,
            attempts,
            failure,
        }
    }

    /// A finished result stage's results, in the order its partitions were asked for.
    pub fn into_results(self) -> Result<Vec<Vec<u8>>> {
        match self.kind {
            StageKind::Result { results, .. } => results
                .into_iter()
                .map(|r| {
                    r.ok_or_else(|| EngineError::Codec("a partition produced no result".into()))
                })
                .collect(),
            StageKind::ShuffleMap { .. } => Ok(Vec::new()),
        }
    }
}
