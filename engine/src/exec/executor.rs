//! An executor: the services tasks run against (block manager, shuffle store, broadcast cache)
//! and the slots that run them. In local mode one executor lives inside the driver process.

use crate::core::codec;
use crate::core::codec::Frames;
use crate::core::error::TaskFailure;
use crate::core::plan::ShuffleId;
use crate::core::sync::Locked;
use crate::core::task::{TaskDescription, TaskKind, TaskMetrics, TaskOutput, TaskResult};
use crate::exec::broadcast::{BroadcastCache, BroadcastSource};
use crate::exec::compute::Plan;
use crate::exec::shuffle::{self, Bucket};
use crate::exec::shuffle_store::ShuffleStore;
use crate::exec::storage::BlockManager;
use crate::exec::task_context::TaskContext;
use crate::exec::typed_shuffle::PairTypes;
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

pub(crate) struct ExecutorEnv {
    pub executor_id: String,
    pub blocks: BlockManager,
    pub shuffle: ShuffleStore,
    pub broadcasts: BroadcastCache,
    /// Reads map outputs held by other executors (cluster mode).
    pub fetcher: Option<Arc<dyn ShuffleFetcher>>,
    /// The pair types this process's map tasks may keep typed (`typed_shuffle`).
    pub pair_types: PairTypes,
}

/// Fetches one bucket of a map output from another executor.
pub(crate) trait ShuffleFetcher: Send + Sync {
    /// Bucket `reduce` of map output `map` from executor `holder` at `address`, whose instance
    /// id (the audience of the request's token) is `instance`.
    fn fetch(
        &self,
        holder: &str,
        address: &str,
        instance: &str,
        shuffle: ShuffleId,
        map: u32,
        reduce: u32,
    ) -> Result<Arc<Frames>, TaskFailure>;

    /// The driver declared executor `id` lost: fetches from it end now, in flight or later.
    fn peer_lost(&self, _id: &str) {}
}

/// Bytes an executor keeps in memory before it spills to its work directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryBudgets {
    /// Cached RDD blocks (past it, LRU eviction).
    pub blocks: usize,
    /// Map output waiting for its reducers (past it, new outputs are written to disk).
    pub shuffle: usize,
}

/// Where a task's shuffle inputs live: the executor of every map output, and their addresses.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShuffleLocations {
    pub maps: HashMap<ShuffleId, Vec<String>>,
    /// (shuffle, reduce, map) of the buckets the driver knows to be empty.
    pub empty: HashSet<(ShuffleId, u32, u32)>,
    /// Executor id → (address, instance).
    pub addresses: HashMap<String, (String, String)>,
}

impl ExecutorEnv {
    pub fn new(
        executor_id: String,
        budgets: MemoryBudgets,
        source: Arc<dyn BroadcastSource>,
    ) -> std::io::Result<Self> {
        Self::new_in(executor_id, budgets, source, &std::env::temp_dir())
    }

    /// An executor whose spilled blocks and map outputs live under `work_dir`; cached blocks
    /// and map outputs each have their own in-memory budget.
    pub fn new_in(
        executor_id: String,
        budgets: MemoryBudgets,
        source: Arc<dyn BroadcastSource>,
        work_dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        Ok(ExecutorEnv {
            executor_id,
            blocks: BlockManager::new_in(budgets.blocks, work_dir)?,
            shuffle: ShuffleStore::new_in(budgets.shuffle, work_dir)?,
            broadcasts: BroadcastCache::new(source),
            fetcher: None,
            pair_types: PairTypes::default(),
        })
    }

    pub fn fetch_bucket(
        &self,
        locations: &ShuffleLocations,
        shuffle: ShuffleId,
        map: u32,
        reduce: u32,
    ) -> Result<Bucket, TaskFailure> {
        let holder = locations
            .maps
            .get(&shuffle)
            .and_then(|m| m.get(map as usize));
        let remote = match (holder, &self.fetcher) {
            (Some(h), Some(f)) if *h != self.executor_id => Some((h, f)),
            _ => None,
        };
        if let Some((holder, fetcher)) = remote {
            if locations.empty.contains(&(shuffle, reduce, map)) {
                return Ok(Bucket::Encoded(Arc::new(Frames::default())));
            }
            let (address, instance) =
                locations
                    .addresses
                    .get(holder)
                    .ok_or_else(|| TaskFailure::FetchFailed {
                        shuffle,
                        map,
                        message: format!("no address for executor {holder}"),
                    })?;
            return fetcher
                .fetch(holder, address, instance, shuffle, map, reduce)
                .map(Bucket::Encoded);
        }
        self.shuffle.read(shuffle, map, reduce)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Decodes and runs one encoded task; always returns an encoded [`TaskResult`].
pub(crate) fn run_task(env: &Arc<ExecutorEnv>, task_id: u64, bytes: &[u8]) -> Vec<u8> {
    let start = Instant::now();
    let mut metrics = TaskMetrics::default();
    let mut accumulators = Vec::new();
    let mut cached = Vec::new();
    let outcome = match codec::decode::<TaskDescription>(bytes) {
        Err(e) => Err(e),
        Ok(task) => {
            metrics.decode_micros = start.elapsed().as_micros() as u64;
            let locations = ShuffleLocations {
                maps: task.shuffle_locations.iter().cloned().collect(),
                empty: task
                    .empty_buckets
                    .iter()
                    .flat_map(|(s, r, maps)| maps.iter().map(move |m| (*s, *r, *m)))
                    .collect(),
                addresses: task
                    .executors
                    .iter()
                    .map(|(id, address, instance)| {
                        (id.clone(), (address.clone(), instance.clone()))
                    })
                    .collect(),
            };
            let tc = Arc::new(TaskContext::new(
                task.stage,
                task.partition as usize,
                task.attempt,
                env.clone(),
                locations,
            ));
            let outcome = {
                let _current = TaskContext::enter(&tc);
                match catch_unwind(AssertUnwindSafe(|| execute(&task, &tc))) {
                    Ok(r) => r,
                    Err(payload) => Err(TaskFailure::UserPanic {
                        message: panic_message(payload.as_ref()),
                    }),
                }
            };
            // An iterator may have recorded a failure that the sink never saw.
            let outcome = match (outcome, tc.take_failure()) {
                (Ok(_), Some(f)) => Err(f),
                (o, _) => o,
            };
            if let Ok(TaskOutput::MapOutput { bytes, records, .. }) = &outcome {
                metrics.shuffle_write_bytes = *bytes;
                metrics.shuffle_write_records = *records;
            }
            (metrics.shuffle_read_bytes, metrics.shuffle_read_records) = *tc.shuffle_read.locked();
            let partials = std::mem::take(&mut *tc.accumulators.locked());
            for (id, p) in partials {
                match p.encode() {
                    Ok(b) => accumulators.push((id, serde_bytes::ByteBuf::from(b))),
                    Err(e) => tracing::warn!("dropping accumulator {id} update: {e}"),
                }
            }
            if outcome.is_ok() {
                cached = std::mem::take(&mut *tc.cached.locked());
            }
            outcome
        }
    };
    if let Ok(TaskOutput::Value(v)) = &outcome {
        metrics.result_bytes = v.len() as u64;
    }
    metrics.run_micros = start.elapsed().as_micros() as u64;
    let result = TaskResult {
        task_id,
        executor: env.executor_id.clone(),
        outcome,
        accumulators,
        metrics,
        cached,
    };
    match codec::encode(&result) {
        Ok(b) => b,
        Err(e) => {
            let fallback = TaskResult {
                task_id,
                executor: env.executor_id.clone(),
                outcome: Err(e),
                accumulators: Vec::new(),
                metrics: TaskMetrics::default(),
                cached: Vec::new(),
            };
            codec::encode(&fallback).unwrap_or_default()
        }
    }
}

fn execute(task: &TaskDescription, tc: &Arc<TaskContext>) -> Result<TaskOutput, TaskFailure> {
    let plan = Plan::new(task.nodes.clone());
    let split = task.partition as usize;
    match &task.kind {
        TaskKind::ShuffleMap { shuffle, writer } => {
            let records = plan.compute(task.root, split, tc)?;
            let out = shuffle::write(records, writer, task.partition, tc)?;
            tc.check()?;
            let bytes = out.bytes();
            let records = out.buckets.iter().map(|b| b.count() as u64).sum();
            // Never 0 for a bucket with records (a typed one's size is an estimate): reducers
            // skip fetching the buckets whose size is 0.
            let buckets = out
                .buckets
                .iter()
                .map(|b| match b.count() {
                    0 => 0,
                    _ => b.byte_len().max(1),
                })
                .collect();
            tc.env.shuffle.put(*shuffle, task.partition, out)?;
            Ok(TaskOutput::MapOutput {
                bytes,
                records,
                buckets,
            })
        }
        TaskKind::Result(sink) => Ok(TaskOutput::Value(
            plan.run_sink(task.root, split, sink, tc)?,
        )),
    }
}

/// An encoded task handed to a slot, and where its encoded result goes.
pub(crate) struct Launch {
    pub task_id: u64,
    pub bytes: Vec<u8>,
    pub reply: Sender<(u64, Vec<u8>)>,
    /// Executors holding the task's cached input (cluster mode places it there if it can).
    pub preferred: Vec<String>,
    /// Executors a retry should not go back to when another one is alive.
    pub avoid: Vec<String>,
}

/// N slot threads running tasks for one in-process executor.
pub(crate) struct LocalExecutor {
    pub env: Arc<ExecutorEnv>,
    queue: Option<Sender<Launch>>,
    /// Queued tasks of a cancelled job, skipped when a slot takes them.
    abandoned: Arc<Mutex<HashSet<u64>>>,
    slots: Vec<JoinHandle<()>>,
}

impl LocalExecutor {
    pub fn start(env: Arc<ExecutorEnv>, slots: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Launch>();
        let rx: Arc<Mutex<Receiver<Launch>>> = Arc::new(Mutex::new(rx));
        let abandoned: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let mut handles = Vec::new();
        for i in 0..slots.max(1) {
            let rx = rx.clone();
            let env = env.clone();
            let abandoned = abandoned.clone();
            let h = std::thread::Builder::new()
                .name(format!("discnn-slot-{i}"))
                .spawn(move || loop {
                    let next = rx.locked().recv();
                    let Ok(launch) = next else { return };
                    let skip = abandoned.locked().remove(&launch.task_id);
                    if skip {
                        continue;
                    }
                    let result = run_task(&env, launch.task_id, &launch.bytes);
                    let _ = launch.reply.send((launch.task_id, result));
                })?;
            handles.push(h);
        }
        Ok(LocalExecutor {
            env,
            queue: Some(tx),
            abandoned,
            slots: handles,
        })
    }

    pub fn launch(&self, launch: Launch) -> Result<(), TaskFailure> {
        match &self.queue {
            Some(q) => q.send(launch).map_err(|_| TaskFailure::ExecutorLost {
                executor: self.env.executor_id.clone(),
            }),
            None => Err(TaskFailure::ExecutorLost {
                executor: self.env.executor_id.clone(),
            }),
        }
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    pub fn abandon(&self, task_ids: &[u64]) {
        self.abandoned.locked().extend(task_ids.iter().copied());
    }
}

impl Drop for LocalExecutor {
    fn drop(&mut self) {
        self.queue.take();
        for h in self.slots.drain(..) {
            let _ = h.join();
        }
    }
}
