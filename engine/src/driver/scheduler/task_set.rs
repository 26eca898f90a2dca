//! One attempt of a stage (Spark's TaskSet): its tasks encoded and launched with their
//! preferred executors, results read as they come, retryable failures retried elsewhere, and the
//! attempt ended early by a fetch failure, a task out of attempts, or a cancel.

use super::stage::Stage;
use super::DagScheduler;
use crate::core::codec;
use crate::core::error::{EngineError, TaskFailure};
use crate::core::events::Event;
use crate::core::plan::{self, NodeKind, RddId, ShuffleId, WireNode};
use crate::core::sync::Locked;
use crate::core::task::{TaskDescription, TaskKind, TaskResult};
use crate::driver::map_output::Empty;
use crate::driver::rdd::{RddNode, ReducePlacement};
use crate::exec::executor::Launch;
use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

/// Why a stage attempt stopped early.
pub(super) enum AttemptError {
    /// A map output was missing; the lost outputs were unregistered and must be recomputed.
    FetchFailed(TaskFailure),
    Failed(EngineError),
}

impl From<EngineError> for AttemptError {
    fn from(e: EngineError) -> Self {
        AttemptError::Failed(e)
    }
}

/// What the attempt's channel carries besides results: the cancel waker's message. Task ids
/// come from the context's id counter and never reach it.
const CANCELLED: u64 = u64::MAX;

/// A running task: (result index, partition, attempt).
type Running = HashMap<u64, (usize, usize, u32)>;

pub(super) struct TaskSet<'a, 'c> {
    sched: &'a DagScheduler<'c>,
    job: u64,
    stage_attempt: u32,
    kind: TaskKind,
    /// The stage's wire nodes, and the leader-placed shuffles among their inputs.
    nodes: HashMap<RddId, WireNode>,
    leader_reads: Vec<(RddId, ShuffleId)>,
    reply: Sender<(u64, Vec<u8>)>,
}

impl<'a, 'c> TaskSet<'a, 'c> {
    /// Runs attempt `stage_attempt` of `stage` over `todo` = (result index, partition) pairs.
    pub fn run(
        sched: &'a DagScheduler<'c>,
        job: u64,
        stage: &mut Stage,
        stage_attempt: u32,
        todo: &[(usize, usize)],
    ) -> Result<(), AttemptError> {
        let inner = sched.inner;
        let shuffle_map = stage.is_shuffle_map();
        inner.post(Event::StageSubmitted {
            job,
            stage: stage.id,
            attempt: stage_attempt,
            name: stage.rdd.callsite.clone(),
            num_tasks: todo.len(),
            shuffle_map,
        });
        let started = std::time::Instant::now();
        let (nodes, leader_reads) = stage_nodes(&stage.rdd);
        let (tx, rx) = channel::<(u64, Vec<u8>)>();
        let wake = std::sync::Mutex::new(tx.clone());
        let _cancel = inner.config.cancel.on_cancel(move || {
            let _ = wake.locked().send((CANCELLED, Vec::new()));
        });
        let set = TaskSet {
            sched,
            job,
            stage_attempt,
            kind: stage.task_kind(),
            nodes,
            leader_reads,
            reply: tx,
        };
        let mut running = Running::new();
        for &(idx, p) in todo {
            set.launch(stage, idx, p, 0, Vec::new(), &mut running)?;
        }
        let outcome = set.collect(stage, &rx, &mut running);
        if !running.is_empty() {
            // Ended early: tasks not started yet never will be; running ones finish unread.
            let ids: Vec<u64> = running.keys().copied().collect();
            inner.backend.abandon(&ids);
        }
        tracing::debug!(
            stage = stage.id,
            stage_attempt,
            tasks = todo.len(),
            shuffle_map,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "{} finished",
            stage.rdd.callsite
        );
        inner.post(Event::StageCompleted {
            stage: stage.id,
            attempt: stage_attempt,
            failure: outcome.as_ref().err().map(|e| match e {
                AttemptError::FetchFailed(f) => f.to_string(),
                AttemptError::Failed(e) => e.to_string(),
            }),
        });
        outcome
    }

    /// Reads results until every task has one, or the attempt fails; after a failure, results
    /// still arriving are drained (their events posted) until a cancel or the last one.
    fn collect(
        &self,
        stage: &mut Stage,
        rx: &std::sync::mpsc::Receiver<(u64, Vec<u8>)>,
        running: &mut Running,
    ) -> Result<(), AttemptError> {
        let inner = self.sched.inner;
        let mut outcome: Result<(), AttemptError> = Ok(());
        while !running.is_empty() {
            // The attempt holds a sender, so the channel cannot close under it.
            let Ok((task_id, bytes)) = rx.recv() else {
                break;
            };
            if task_id == CANCELLED {
                if outcome.is_ok() {
                    outcome = Err(AttemptError::Failed(EngineError::Cancelled {
                        job: self.job,
                    }));
                    break;
                }
                continue;
            }
            let Some((idx, partition, attempt)) = running.remove(&task_id) else {
                continue;
            };
            let result = codec::decode::<TaskResult>(&bytes).unwrap_or_else(|e| TaskResult {
                task_id,
                executor: inner.env.executor_id.clone(),
                outcome: Err(e),
                accumulators: Vec::new(),
                metrics: Default::default(),
                cached: Vec::new(),
            });
            if result.outcome.is_ok() {
                let blocks: Vec<_> = result.cached.iter().map(|b| (b.rdd, b.partition)).collect();
                inner.backend.blocks_stored(&result.executor, &blocks);
                for b in &result.cached {
                    inner.post(Event::BlockUpdated {
                        executor: result.executor.clone(),
                        rdd: b.rdd,
                        partition: b.partition,
                        memory_bytes: b.memory_bytes,
                        disk_bytes: b.disk_bytes,
                    });
                }
            }
            inner.post(Event::TaskEnd {
                stage: stage.id,
                stage_attempt: self.stage_attempt,
                partition,
                attempt,
                task_id,
                executor: result.executor.clone(),
                failure: result.outcome.as_ref().err().cloned(),
                metrics: result.metrics.clone(),
            });
            if outcome.is_err() {
                continue; // draining after the stage already failed
            }
            match result.outcome {
                Ok(out) => {
                    if stage.task_succeeded(idx, &result.executor, out, &inner.tracker) {
                        self.sched.apply_accumulators(&result.accumulators);
                    }
                }
                Err(f @ TaskFailure::FetchFailed { .. }) => {
                    if let TaskFailure::FetchFailed { shuffle, map, .. } = &f {
                        let n = inner
                            .tracker
                            .remove_outputs_of_executor_holding(*shuffle, *map as usize);
                        if n == 0 {
                            inner.tracker.remove_output(*shuffle, *map as usize);
                        }
                    }
                    outcome = Err(AttemptError::FetchFailed(f));
                }
                Err(f) if f.retryable() && attempt + 1 < inner.config.max_task_attempts => {
                    tracing::warn!(
                        stage = stage.id,
                        partition,
                        attempt,
                        "task failed, retrying: {f}"
                    );
                    let avoid = vec![result.executor.clone()];
                    if let Err(e) = self.launch(stage, idx, partition, attempt + 1, avoid, running)
                    {
                        outcome = Err(AttemptError::Failed(e));
                    }
                }
                Err(failure) => {
                    outcome = Err(AttemptError::Failed(EngineError::JobFailed {
                        job: self.job,
                        stage: stage.id,
                        partition,
                        attempts: attempt + 1,
                        failure,
                    }));
                }
            }
        }
        outcome
    }

    /// Encodes and launches one task of the attempt.
    fn launch(
        &self,
        stage: &Stage,
        idx: usize,
        partition: usize,
        attempt: u32,
        avoid: Vec<String>,
        running: &mut Running,
    ) -> Result<(), EngineError> {
        let inner = self.sched.inner;
        let task_id = inner.next_id();
        let reach = plan::reachable(&self.nodes, stage.rdd.id, partition);
        let task_nodes = task_nodes(&self.nodes, &reach);
        let (shuffle_locations, executors, empty_buckets) =
            self.shuffle_locations(&task_nodes, &reach);
        let preferred = self.preferred_executors(&reach);
        let desc = TaskDescription {
            task_id,
            job: self.job,
            stage: stage.id,
            stage_attempt: self.stage_attempt,
            partition: partition as u32,
            attempt,
            nodes: task_nodes,
            root: stage.rdd.id,
            kind: self.kind.clone(),
            shuffle_locations,
            executors,
            empty_buckets,
        };
        let bytes = codec::encode(&desc).map_err(EngineError::from)?;
        inner.post(Event::TaskStart {
            stage: stage.id,
            partition,
            attempt,
            task_id,
        });
        running.insert(task_id, (idx, partition, attempt));
        inner
            .backend
            .launch(Launch {
                task_id,
                bytes,
                reply: self.reply.clone(),
                preferred,
                avoid,
            })
            .map_err(EngineError::from)
    }

    /// Where a task would rather run: executors caching partitions it reads, and the leaders of
    /// the leader-placed shuffles it reduces.
    fn preferred_executors(&self, reach: &HashMap<RddId, Vec<usize>>) -> Vec<String> {
        let inner = self.sched.inner;
        let mut at: Vec<String> = reach
            .iter()
            .filter(|(id, _)| self.nodes.get(id).is_some_and(|n| n.storage.is_some()))
            .flat_map(|(id, parts)| {
                parts
                    .iter()
                    .flat_map(|p| inner.backend.block_holders(*id, *p))
            })
            .collect();
        for (node, shuffle) in &self.leader_reads {
            for p in reach.get(node).into_iter().flatten() {
                at.extend(inner.tracker.leader(*shuffle, *p));
            }
        }
        at
    }

    /// For the shuffles `nodes` read (the partitions of each in `reach`): who holds each map
    /// output, their addresses, and which buckets the task reads are empty.
    #[allow(clippy::type_complexity)]
    fn shuffle_locations(
        &self,
        nodes: &[WireNode],
        reach: &HashMap<RddId, Vec<usize>>,
    ) -> (
        Vec<(ShuffleId, Vec<String>)>,
        Vec<(String, String, String)>,
        Vec<Empty>,
    ) {
        let inner = self.sched.inner;
        let mut shuffles = Vec::new();
        for n in nodes {
            // A shuffled node's partition is the reduce partition it reads.
            let reduces = reach.get(&n.id).cloned().unwrap_or_default();
            match &n.kind {
                NodeKind::Shuffled { shuffle, .. } => shuffles.push((*shuffle, reduces)),
                NodeKind::CoGrouped { inputs, .. } => {
                    shuffles.extend(inputs.iter().map(|i| (i.0, reduces.clone())))
                }
                _ => {}
            }
        }
        let mut empty = Vec::new();
        let locations: Vec<(ShuffleId, Vec<String>)> = shuffles
            .into_iter()
            .map(|(s, reduces)| {
                let (at, e) = inner.tracker.locations(s, &reduces);
                empty.extend(e);
                (s, at)
            })
            .collect();
        let ids: BTreeSet<&String> = locations.iter().flat_map(|(_, l)| l.iter()).collect();
        let executors = ids
            .into_iter()
            .filter_map(|id| {
                let (address, instance) = inner.backend.address_of(id)?;
                Some((id.clone(), address, instance))
            })
            .collect();
        (locations, executors, empty)
    }
}

/// The nodes of the stage ending at `rdd` (narrow lineage), and the shuffles among their
/// inputs whose reduce tasks run at their partition's leader, as (reading node, shuffle).
fn stage_nodes(rdd: &Arc<RddNode>) -> (HashMap<RddId, WireNode>, Vec<(RddId, ShuffleId)>) {
    let mut out = HashMap::new();
    let mut leaders = Vec::new();
    let mut stack = vec![rdd.clone()];
    while let Some(n) = stack.pop() {
        if out.contains_key(&n.id) {
            continue;
        }
        out.insert(n.id, n.wire());
        for s in &n.shuffles {
            if s.placement == ReducePlacement::Leader {
                leaders.push((n.id, s.id));
            }
        }
        stack.extend(n.parents.iter().cloned());
    }
    (out, leaders)
}

/// The nodes one task needs (`reach`: what it reads of each), with parallelized data trimmed
/// to the slices it reads.
fn task_nodes(
    nodes: &HashMap<RddId, WireNode>,
    reach: &HashMap<RddId, Vec<usize>>,
) -> Vec<WireNode> {
    nodes
        .values()
        .filter(|n| reach.contains_key(&n.id))
        .map(|n| match &n.kind {
            NodeKind::Parallelize { slices } => {
                let wanted = &reach[&n.id];
                let slices = slices
                    .iter()
                    .enumerate()
                    .map(|(i, s)| if wanted.contains(&i) { s.clone() } else { None })
                    .collect();
                WireNode {
                    id: n.id,
                    num_partitions: n.num_partitions,
                    storage: n.storage,
                    kind: NodeKind::Parallelize { slices },
                }
            }
            _ => n.clone(),
        })
        .collect()
}
