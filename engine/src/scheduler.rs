//! The DAG scheduler and the task loop. A job's final RDD is cut into stages at shuffle
//! dependencies; missing parent stages run first (a shuffle whose outputs all exist is reused,
//! and lineage behind a fully cached RDD is not visited at all); each stage's tasks are encoded,
//! handed to the executor's slots, retried on retryable failures, and a fetch failure re-runs
//! the lost map outputs and then the reading stage.

use crate::codec;
use crate::context::{Context, MapStatus};
use crate::error::{EngineError, Result, TaskFailure};
use crate::events::Event;
use crate::executor::Launch;
use crate::plan::{self, NodeKind, RddId, ResultSink, ShuffleId, WireNode};
use crate::rdd::{RddNode, ReducePlacement, ShuffleDep};
use crate::task::{TaskDescription, TaskKind, TaskOutput, TaskResult};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Why a stage attempt stopped early.
enum StageError {
    /// A map output was missing; the lost outputs were unregistered and must be recomputed.
    FetchFailed(TaskFailure),
    Failed(EngineError),
}

impl From<EngineError> for StageError {
    fn from(e: EngineError) -> Self {
        StageError::Failed(e)
    }
}

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
        let inner = &self.inner;
        let _one_job_at_a_time = inner.job_lock.lock().unwrap_or_else(|p| p.into_inner());
        inner.cleaner.run_now();
        let job = inner.next_id();
        inner.post(Event::JobStart {
            job,
            description: description.to_string(),
        });
        let result = self.run_result_stage(job, rdd, partitions, &sink);
        inner.post(Event::JobEnd {
            job,
            error: result.as_ref().err().map(|e| e.to_string()),
        });
        inner.cleaner.run_now();
        result
    }

    fn run_result_stage(
        &self,
        job: u64,
        rdd: &Arc<RddNode>,
        partitions: &[usize],
        sink: &ResultSink,
    ) -> Result<Vec<Vec<u8>>> {
        let stage = self.inner.next_id();
        let mut results: Vec<Option<Vec<u8>>> = vec![None; partitions.len()];
        let max = self.inner.config.max_stage_attempts;
        for attempt in 0.. {
            self.forget_lost_executors();
            self.run_missing_parents(job, rdd)?;
            let todo: Vec<(usize, usize)> = partitions
                .iter()
                .enumerate()
                .filter(|(i, _)| results[*i].is_none())
                .map(|(i, &p)| (i, p))
                .collect();
            let kind = TaskKind::Result(sink.clone());
            match self.run_stage(
                job,
                stage,
                attempt,
                rdd,
                &kind,
                &todo,
                &mut |idx, _, out| {
                    if let TaskOutput::Value(v) = out {
                        if results[idx].is_none() {
                            results[idx] = Some(v);
                            return true;
                        }
                    }
                    false
                },
            ) {
                Ok(()) => break,
                Err(StageError::Failed(e)) => return Err(e),
                Err(StageError::FetchFailed(f)) => {
                    if attempt + 1 >= max {
                        return Err(EngineError::StageAborted {
                            job,
                            stage,
                            attempts: attempt + 1,
                            failure: f,
                        });
                    }
                    tracing::warn!(
                        stage,
                        attempt,
                        "fetch failure: {f}; recomputing lost map outputs"
                    );
                    std::thread::sleep(RESUBMIT_DELAY);
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| EngineError::Codec("a partition produced no result".into())))
            .collect()
    }

    /// Runs, in dependency order, every shuffle-map stage `rdd` needs whose outputs are missing.
    fn run_missing_parents(&self, job: u64, rdd: &Arc<RddNode>) -> Result<()> {
        for dep in self.missing_shuffles(rdd) {
            self.run_map_stage(job, &dep)?;
        }
        Ok(())
    }

    fn run_map_stage(&self, job: u64, dep: &Arc<ShuffleDep>) -> Result<()> {
        let stage = *self
            .inner
            .shuffle_stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(dep.id)
            .or_insert_with(|| self.inner.next_id());
        let max = self.inner.config.max_stage_attempts;
        for attempt in 0.. {
            self.forget_lost_executors();
            self.run_missing_parents(job, &dep.parent)?;
            self.inner
                .tracker
                .register(dep.id, dep.parent.num_partitions);
            let missing = self.inner.tracker.missing(dep.id).unwrap_or_default();
            if missing.is_empty() {
                return Ok(());
            }
            let todo: Vec<(usize, usize)> = missing.iter().map(|&p| (p, p)).collect();
            let kind = TaskKind::ShuffleMap {
                shuffle: dep.id,
                writer: dep.writer.clone(),
            };
            let tracker = self.inner.tracker.clone();
            match self.run_stage(
                job,
                stage,
                attempt,
                &dep.parent,
                &kind,
                &todo,
                &mut |p, executor, out| {
                    if let TaskOutput::MapOutput { bytes, buckets } = out {
                        tracker.add_output(
                            dep.id,
                            p,
                            MapStatus {
                                executor: executor.to_string(),
                                bytes,
                                buckets,
                                finished: 0,
                            },
                        );
                    }
                    true
                },
            ) {
                Ok(()) => {}
                Err(StageError::Failed(e)) => return Err(e),
                Err(StageError::FetchFailed(f)) => {
                    if attempt + 1 >= max {
                        return Err(EngineError::StageAborted {
                            job,
                            stage,
                            attempts: attempt + 1,
                            failure: f,
                        });
                    }
                    std::thread::sleep(RESUBMIT_DELAY);
                }
            }
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
            if n.storage().is_some() && self.cached_partitions(n.id).len() == n.num_partitions {
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

    /// Runs one attempt of a stage over `todo` = (result index, partition) pairs. `on_success`
    /// stores an output and says whether the attempt's accumulator updates apply.
    #[allow(clippy::too_many_arguments)]
    fn run_stage(
        &self,
        job: u64,
        stage: u64,
        stage_attempt: u32,
        rdd: &Arc<RddNode>,
        kind: &TaskKind,
        todo: &[(usize, usize)],
        on_success: &mut dyn FnMut(usize, &str, TaskOutput) -> bool,
    ) -> std::result::Result<(), StageError> {
        let inner = &self.inner;
        let shuffle_map = matches!(kind, TaskKind::ShuffleMap { .. });
        inner.post(Event::StageSubmitted {
            job,
            stage,
            attempt: stage_attempt,
            name: rdd.callsite.clone(),
            num_tasks: todo.len(),
            shuffle_map,
        });
        let started = std::time::Instant::now();
        let (nodes, leader_reads) = stage_nodes(rdd);
        let (tx, rx) = channel::<(u64, Vec<u8>)>();
        let mut running: HashMap<u64, (usize, usize, u32)> = HashMap::new();
        let cluster = inner.backend.cluster();
        let launch = |idx: usize,
                      partition: usize,
                      attempt: u32,
                      avoid: Vec<String>,
                      running: &mut HashMap<u64, (usize, usize, u32)>| {
            let task_id = inner.next_id();
            let reach = plan::reachable(&nodes, rdd.id, partition);
            let task_nodes = task_nodes(&nodes, &reach);
            let (shuffle_locations, executors) = self.shuffle_locations(&task_nodes);
            let preferred = match cluster {
                Some(c) => {
                    let mut at: Vec<String> = reach
                        .iter()
                        .filter(|(id, _)| nodes.get(id).is_some_and(|n| n.storage.is_some()))
                        .flat_map(|(id, parts)| parts.iter().flat_map(|p| c.block_holders(*id, *p)))
                        .collect();
                    for (node, shuffle) in &leader_reads {
                        for p in reach.get(node).into_iter().flatten() {
                            at.extend(inner.tracker.leader(*shuffle, *p));
                        }
                    }
                    at
                }
                None => Vec::new(),
            };
            let desc = TaskDescription {
                task_id,
                job,
                stage,
                stage_attempt,
                partition: partition as u32,
                attempt,
                nodes: task_nodes,
                root: rdd.id,
                kind: kind.clone(),
                shuffle_locations,
                executors,
            };
            let bytes = codec::encode(&desc).map_err(EngineError::from)?;
            inner.post(Event::TaskStart {
                stage,
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
                    reply: tx.clone(),
                    preferred,
                    avoid,
                })
                .map_err(EngineError::from)
        };
        for &(idx, p) in todo {
            launch(idx, p, 0, Vec::new(), &mut running)?;
        }
        let mut outcome: std::result::Result<(), StageError> = Ok(());
        while !running.is_empty() {
            let (task_id, bytes) = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    if inner.config.cancel.load(Ordering::SeqCst) && outcome.is_ok() {
                        outcome = Err(StageError::Failed(EngineError::Cancelled { job }));
                        break;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(StageError::Failed(EngineError::Task(
                        TaskFailure::ExecutorLost {
                            executor: inner.env.executor_id.clone(),
                        },
                    )));
                }
            };
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
            if let (Some(c), Ok(_)) = (cluster, &result.outcome) {
                c.blocks_stored(&result.executor, &result.cached);
            }
            inner.post(Event::TaskEnd {
                stage,
                stage_attempt,
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
                    if on_success(idx, &result.executor, out) {
                        self.apply_accumulators(&result.accumulators);
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
                    outcome = Err(StageError::FetchFailed(f));
                }
                Err(f) if f.retryable() && attempt + 1 < inner.config.max_task_attempts => {
                    tracing::warn!(stage, partition, attempt, "task failed, retrying: {f}");
                    let avoid = vec![result.executor.clone()];
                    if let Err(e) = launch(idx, partition, attempt + 1, avoid, &mut running) {
                        outcome = Err(StageError::Failed(e));
                    }
                }
                Err(failure) => {
                    outcome = Err(StageError::Failed(EngineError::JobFailed {
                        job,
                        stage,
                        partition,
                        attempts: attempt + 1,
                        failure,
                    }));
                }
            }
        }
        if !running.is_empty() {
            // Cancelled: tasks not started yet never will be; running ones finish unread.
            let ids: Vec<u64> = running.keys().copied().collect();
            inner.backend.abandon(&ids);
        }
        tracing::debug!(
            stage,
            stage_attempt,
            tasks = todo.len(),
            shuffle_map,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "{} finished",
            rdd.callsite
        );
        inner.post(Event::StageCompleted {
            stage,
            attempt: stage_attempt,
            failure: outcome.as_ref().err().map(|e| match e {
                StageError::FetchFailed(f) => f.to_string(),
                StageError::Failed(e) => e.to_string(),
            }),
        });
        outcome
    }

    pub(crate) fn cached_partitions(&self, rdd: RddId) -> Vec<usize> {
        match self.inner.backend.cluster() {
            Some(c) => c.cached_partitions(rdd),
            None => self.inner.env.blocks.cached_partitions(rdd),
        }
    }

    /// Map outputs held by executors that are gone must be recomputed: forget them before a
    /// stage decides what is missing.
    fn forget_lost_executors(&self) {
        if let Some(c) = self.inner.backend.cluster() {
            let gone = c.gone_executors();
            if !gone.is_empty() {
                let n = self.inner.tracker.remove_executors(&gone);
                if n > 0 {
                    tracing::info!("{n} map output(s) were on lost executors; recomputing");
                }
            }
        }
    }

    /// For the shuffles `nodes` read: who holds each map output, and their addresses.
    #[allow(clippy::type_complexity)]
    fn shuffle_locations(
        &self,
        nodes: &[WireNode],
    ) -> (Vec<(ShuffleId, Vec<String>)>, Vec<(String, String, String)>) {
        let mut shuffles = Vec::new();
        for n in nodes {
            match &n.kind {
                NodeKind::Shuffled { shuffle, .. } => shuffles.push(*shuffle),
                NodeKind::CoGrouped { inputs, .. } => shuffles.extend(inputs.iter().map(|i| i.0)),
                _ => {}
            }
        }
        let locations: Vec<(ShuffleId, Vec<String>)> = shuffles
            .into_iter()
            .map(|s| (s, self.inner.tracker.locations(s)))
            .collect();
        let mut executors = Vec::new();
        if let Some(c) = self.inner.backend.cluster() {
            let ids: std::collections::BTreeSet<&String> =
                locations.iter().flat_map(|(_, l)| l.iter()).collect();
            for id in ids {
                if let Some((address, instance)) = c.address_of(id) {
                    executors.push((id.clone(), address, instance));
                }
            }
        }
        (locations, executors)
    }

    fn apply_accumulators(&self, updates: &[(u64, serde_bytes::ByteBuf)]) {
        let accs = self
            .inner
            .accumulators
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (id, bytes) in updates {
            if let Some(acc) = accs.get(id).and_then(|w| w.upgrade()) {
                if let Err(e) = acc.merge_encoded(bytes) {
                    tracing::warn!("accumulator {id}: {e}");
                }
            }
        }
    }
}

/// The wire nodes of a stage: `rdd` and its narrow ancestors, down to shuffle boundaries.
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
