//! The [`Context`] (Spark's SparkContext): an ordinary value. Several may live in one process;
//! each owns its executor, its ids, its listeners and its cleaner.

use crate::accumulator::{Accumulator, AccumulatorParam, DriverAccumulator};
use crate::backend::Backend;
use crate::broadcast::{Broadcast, BroadcastHandle, BroadcastManager};
use crate::cluster::local_cluster::{self, LocalCluster};
use crate::cluster::{ClusterBackend, ClusterConfig, ExecutorSummary};
use crate::codec::Data;
use crate::error::{EngineError, Result};
use crate::events::{Event, Listener};
use crate::executor::{ExecutorEnv, LocalBackend, MemoryBudgets};
use crate::plan::{RddId, ShuffleId};
use crate::storage::BlockStats;
use discnn_proto::pb::cleanup::What;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// How a context is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `local`, `local[N]`, `local[*]` or `local-cluster[N,C]` (N executor processes of C
    /// slots on loopback). Contexts on a running cluster come from [`Context::on_cluster`].
    pub master: String,
    pub app_name: String,
    /// Bytes the block manager may hold in memory before it evicts.
    pub memory_budget: usize,
    /// Bytes of map output an executor keeps in memory before it writes new ones to disk.
    pub shuffle_memory_budget: usize,
    /// Attempts per task before the job fails (Spark's `spark.task.maxFailures`).
    pub max_task_attempts: u32,
    /// Consecutive attempts per stage after fetch failures.
    pub max_stage_attempts: u32,
    /// Draw Spark's progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
    /// Heartbeat and grace settings of a `local-cluster` master.
    pub cluster: ClusterConfig,
    /// The `executor` program a `local-cluster` master starts (default: found next to this
    /// program, or `$DISCNN_EXECUTOR_BIN`).
    pub executor_binary: Option<PathBuf>,
    /// Set to cancel the running job (it fails with [`EngineError::Cancelled`]).
    pub cancel: Arc<AtomicBool>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            master: "local[*]".into(),
            app_name: "discnn".into(),
            memory_budget: 1 << 30,
            shuffle_memory_budget: 1 << 30,
            max_task_attempts: 4,
            max_stage_attempts: 4,
            progress: false,
            cluster: ClusterConfig::default(),
            executor_binary: None,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Parses `local`, `local[N]`, `local[*]` into a slot count.
pub fn parse_local_master(master: &str) -> Result<usize> {
    let cores = || {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    };
    match master {
        "local" => Ok(1),
        "local[*]" => Ok(cores()),
        m if m.starts_with("local[") && m.ends_with(']') => {
            let n: usize = m[6..m.len() - 1].parse().map_err(|_| {
                EngineError::InvalidArgument(format!(
                    "bad master `{m}`: expected local[N] with N a positive number"
                ))
            })?;
            if n == 0 {
                return Err(EngineError::InvalidArgument("local[0] has no slots".into()));
            }
            Ok(n)
        }
        m => Err(EngineError::InvalidArgument(format!(
            "unsupported master `{m}`: expected local, local[N], local[*] or local-cluster[N,C]"
        ))),
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MapStatus {
    pub executor: String,
    pub bytes: u64,
    /// Bytes per reduce partition.
    pub buckets: Vec<u64>,
    /// Order of arrival among this tracker's outputs (set by `add_output`).
    pub finished: u64,
}

/// Which map outputs of each shuffle exist (Spark's MapOutputTracker).
#[derive(Default)]
pub(crate) struct MapOutputTracker {
    shuffles: Mutex<HashMap<ShuffleId, Vec<Option<MapStatus>>>>,
    arrivals: std::sync::atomic::AtomicU64,
}

impl MapOutputTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ShuffleId, Vec<Option<MapStatus>>>> {
        self.shuffles.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(&self, shuffle: ShuffleId, num_maps: usize) {
        self.lock()
            .entry(shuffle)
            .or_insert_with(|| vec![None; num_maps]);
    }

    pub fn add_output(&self, shuffle: ShuffleId, map: usize, mut status: MapStatus) {
        status.finished = self
            .arrivals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(v) = self.lock().get_mut(&shuffle) {
            if map < v.len() {
                v[map] = Some(status);
            }
        }
    }

    /// The leader of a reduce partition: the executor of the first map output to arrive
    /// with records for it.
    pub fn leader(&self, shuffle: ShuffleId, reduce: usize) -> Option<String> {
        self.lock()
            .get(&shuffle)?
            .iter()
            .flatten()
            .filter(|s| s.buckets.get(reduce).is_some_and(|&b| b > 0))
            .min_by_key(|s| s.finished)
            .map(|s| s.executor.clone())
    }

    pub fn remove_output(&self, shuffle: ShuffleId, map: usize) {
        if let Some(v) = self.lock().get_mut(&shuffle) {
            if map < v.len() {
                v[map] = None;
            }
        }
    }

    /// After a fetch failure: the executor that held `map`'s output is assumed to have lost
    /// all its shuffle output (Spark does the same without an external shuffle service).
    pub fn remove_outputs_of_executor_holding(&self, shuffle: ShuffleId, map: usize) -> usize {
        let mut all = self.lock();
        let Some(executor) = all
            .get(&shuffle)
            .and_then(|v| v.get(map).cloned().flatten())
            .map(|s| s.executor)
        else {
            return 0;
        };
        let mut removed = 0;
        for outputs in all.values_mut() {
            for o in outputs.iter_mut() {
                if o.as_ref().is_some_and(|s| s.executor == executor) {
                    *o = None;
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Forgets every output held by an executor in `gone`.
    pub fn remove_executors(&self, gone: &HashSet<String>) -> usize {
        let mut removed = 0;
        for outputs in self.lock().values_mut() {
            for o in outputs.iter_mut() {
                if o.as_ref().is_some_and(|s| gone.contains(&s.executor)) {
                    *o = None;
                    removed += 1;
                }
            }
        }
        removed
    }

    /// The executor holding each map output of `shuffle` ("" where missing).
    pub fn locations(&self, shuffle: ShuffleId) -> Vec<String> {
        self.lock()
            .get(&shuffle)
            .map(|v| {
                v.iter()
                    .map(|s| s.as_ref().map(|s| s.executor.clone()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn missing(&self, shuffle: ShuffleId) -> Option<Vec<usize>> {
        self.lock()
            .get(&shuffle)
            .map(|v| (0..v.len()).filter(|&i| v[i].is_none()).collect())
    }

    /// Bytes written by all registered map outputs.
    pub fn bytes(&self) -> u64 {
        self.lock()
            .values()
            .flat_map(|v| v.iter().flatten())
            .map(|s| s.bytes)
            .sum()
    }

    pub fn remove(&self, shuffle: ShuffleId) {
        self.lock().remove(&shuffle);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

pub(crate) enum Cleanup {
    Rdd(RddId),
    Shuffle(ShuffleId),
    Broadcast(u64),
    UnpersistBroadcast(u64),
}

/// Frees what no live handle refers to (Spark's ContextCleaner). Handles push work from `Drop`
/// (touching only this queue, so a drop can never deadlock); the queue is drained at every job
/// boundary and on request.
pub(crate) struct Cleaner {
    queue: Mutex<Vec<Cleanup>>,
    env: Arc<ExecutorEnv>,
    broadcasts: Arc<BroadcastManager>,
    tracker: Arc<MapOutputTracker>,
    shuffle_stages: Arc<Mutex<HashMap<ShuffleId, u64>>>,
    /// Executors of a cluster hear of each cleanup with their next heartbeat.
    cluster: Option<Arc<ClusterBackend>>,
}

impl Cleaner {
    pub fn push(&self, c: Cleanup) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    pub fn run_now(&self) {
        let work = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        for c in work {
            if let Some(cluster) = &self.cluster {
                cluster.cleanup(match c {
                    Cleanup::Rdd(id) => What::Rdd(id),
                    Cleanup::Shuffle(id) => What::Shuffle(id),
                    Cleanup::Broadcast(id) | Cleanup::UnpersistBroadcast(id) => What::Broadcast(id),
                });
            }
            match c {
                Cleanup::Rdd(id) => self.env.blocks.remove_rdd(id),
                Cleanup::Shuffle(id) => {
                    self.env.shuffle.remove_shuffle(id);
                    self.tracker.remove(id);
                    self.shuffle_stages
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                }
                Cleanup::Broadcast(id) => {
                    self.broadcasts.remove(id);
                    self.env.broadcasts.remove(id);
                }
                Cleanup::UnpersistBroadcast(id) => self.env.broadcasts.remove(id),
            }
        }
    }
}

/// The last handle of a context gone (a job of `driver serve` ended, however it ended): what
/// its handles queued is freed now — on a cluster, the executors hear of it with their next
/// heartbeat — instead of waiting for a job boundary that will never come.
impl Drop for Cleaner {
    fn drop(&mut self) {
        self.run_now();
    }
}

pub(crate) struct ContextInner {
    pub config: Config,
    ids: AtomicU64,
    pub backend: Backend,
    pub env: Arc<ExecutorEnv>,
    pub broadcasts: Arc<BroadcastManager>,
    pub tracker: Arc<MapOutputTracker>,
    pub accumulators: Mutex<HashMap<u64, Weak<dyn DriverAccumulator>>>,
    pub listeners: Mutex<Vec<Arc<dyn Listener>>>,
    pub cleaner: Arc<Cleaner>,
    pub job_lock: Mutex<()>,
    pub shuffle_stages: Arc<Mutex<HashMap<ShuffleId, u64>>>,
}

impl ContextInner {
    /// One id space for rdds, shuffles, jobs, stages, tasks, broadcasts and accumulators: every
    /// id is unique within a context, which keeps logs unambiguous.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn post(&self, event: Event) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for l in listeners {
            l.on_event(&event);
        }
    }
}

/// Counts of what a context holds, for tests and for watching memory stay flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextStats {
    pub blocks: BlockStats,
    pub shuffle_outputs: usize,
    /// Bytes held by the executor's shuffle store, in memory or on disk.
    pub shuffle_bytes: u64,
    /// Of those, bytes spilled to disk.
    pub shuffle_spilled_bytes: u64,
    /// Bytes of the map outputs the driver knows of.
    pub tracked_shuffle_bytes: u64,
    pub tracked_shuffles: usize,
    pub broadcasts_on_driver: usize,
    pub broadcasts_on_executor: usize,
    pub broadcast_fetches: u64,
}

/// The entry point: makes RDDs, broadcasts and accumulators, and runs jobs.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

impl Context {
    pub fn new(config: Config) -> Result<Self> {
        if let Some(parsed) = local_cluster::parse(&config.master) {
            let (n, cores) = parsed.map_err(EngineError::InvalidArgument)?;
            let local = LocalCluster::start(n, cores, &config)?;
            let backend = local.driver.backend().clone();
            return Self::build(config, |_| {
                Ok(Backend::Cluster {
                    backend,
                    local: Some(local),
                })
            });
        }
        let slots = parse_local_master(&config.master)?;
        Self::build(config, |env| {
            LocalBackend::start(env.clone(), slots)
                .map(Backend::Local)
                .map_err(|e| EngineError::io("slot threads", e))
        })
    }

    /// A context whose jobs run on the executors of a running cluster driver (`driver serve`
    /// makes one per submitted job).
    pub fn on_cluster(config: Config, backend: Arc<ClusterBackend>) -> Result<Self> {
        Self::build(config, |_| {
            Ok(Backend::Cluster {
                backend,
                local: None,
            })
        })
    }

    fn build(
        config: Config,
        backend: impl FnOnce(&Arc<ExecutorEnv>) -> Result<Backend>,
    ) -> Result<Self> {
        let broadcasts = Arc::new(BroadcastManager::default());
        let env = Arc::new(
            ExecutorEnv::new(
                "driver".into(),
                MemoryBudgets {
                    blocks: config.memory_budget,
                    shuffle: config.shuffle_memory_budget,
                },
                broadcasts.clone(),
            )
            .map_err(|e| EngineError::io(std::env::temp_dir(), e))?,
        );
        let backend = backend(&env)?;
        let cluster = backend.cluster().cloned();
        let first_id = match &cluster {
            Some(c) => {
                c.attach_broadcasts(&broadcasts);
                c.next_id_base() + 1
            }
            None => 1,
        };
        let tracker = Arc::new(MapOutputTracker::default());
        let shuffle_stages = Arc::new(Mutex::new(HashMap::new()));
        let cleaner = Arc::new(Cleaner {
            queue: Mutex::new(Vec::new()),
            env: env.clone(),
            broadcasts: broadcasts.clone(),
            tracker: tracker.clone(),
            shuffle_stages: shuffle_stages.clone(),
            cluster,
        });
        let progress = config.progress;
        let slots = backend.slots();
        let ctx = Context {
            inner: Arc::new(ContextInner {
                config,
                ids: AtomicU64::new(first_id),
                backend,
                env,
                broadcasts,
                tracker,
                accumulators: Mutex::new(HashMap::new()),
                listeners: Mutex::new(Vec::new()),
                cleaner,
                job_lock: Mutex::new(()),
                shuffle_stages,
            }),
        };
        if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ctx.add_listener(crate::progress::ConsoleProgressBar::start());
        }
        tracing::debug!(slots, "context started");
        Ok(ctx)
    }

    /// The cluster's executors (empty in local mode).
    pub fn executors(&self) -> Vec<ExecutorSummary> {
        self.inner
            .backend
            .cluster()
            .map(|c| c.executors())
            .unwrap_or_default()
    }

    /// The cluster driver, in cluster mode: executors, traffic, executor counters.
    pub fn cluster(&self) -> Option<&Arc<ClusterBackend>> {
        self.inner.backend.cluster()
    }

    /// The driver service's address in cluster mode.
    pub fn driver_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.backend.cluster().map(|c| c.address())
    }

    /// The last lines of each `local-cluster` executor's log (for failing tests).
    pub fn executor_log_tails(&self, lines: usize) -> String {
        self.inner
            .backend
            .local_cluster()
            .map(|l| l.log_tails(lines))
            .unwrap_or_default()
    }

    /// Cancels the running job, if any, and every later one of this context.
    pub fn cancel(&self) {
        self.inner.config.cancel.store(true, Ordering::SeqCst);
    }

    /// A local context with `slots` task slots.
    pub fn local(slots: usize) -> Result<Self> {
        Context::new(Config {
            master: format!("local[{slots}]"),
            ..Config::default()
        })
    }

    pub fn default_parallelism(&self) -> usize {
        self.inner.backend.slots()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn add_listener(&self, l: Arc<dyn Listener>) {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(l);
    }

    pub fn broadcast<T: Data>(&self, value: T) -> Result<Broadcast<T>> {
        let id = self.inner.next_id();
        let bytes = crate::codec::encode(&value)?;
        self.inner.broadcasts.put(id, bytes);
        Ok(Broadcast::new(Arc::new(BroadcastHandle {
            id,
            value: Arc::new(value),
            cleaner: self.inner.cleaner.clone(),
        })))
    }

    pub fn accumulator<P: AccumulatorParam>(&self) -> Accumulator<P> {
        let id = self.inner.next_id();
        let (acc, driver) = Accumulator::<P>::new(id);
        let mut map = self
            .inner
            .accumulators
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(id, Arc::downgrade(&driver));
        // The handle owns the driver value; the registry only points at it.
        drop(driver);
        acc
    }

    /// Frees shuffle outputs, cached blocks and broadcasts whose handles are gone.
    pub fn clean_up(&self) {
        self.inner.cleaner.run_now();
    }

    pub fn stats(&self) -> ContextStats {
        let i = &self.inner;
        ContextStats {
            blocks: i.env.blocks.stats(),
            shuffle_outputs: i.env.shuffle.len(),
            shuffle_bytes: i.env.shuffle.bytes(),
            shuffle_spilled_bytes: i.env.shuffle.spilled_bytes(),
            tracked_shuffle_bytes: i.tracker.bytes(),
            tracked_shuffles: i.tracker.len(),
            broadcasts_on_driver: i.broadcasts.len(),
            broadcasts_on_executor: i.env.broadcasts.len(),
            broadcast_fetches: i.broadcasts.fetch_count(),
        }
    }

    /// Drops every cached block and shuffle output of the executor, as if it had been lost;
    /// later jobs recompute what they need from lineage.
    pub fn simulate_executor_loss(&self) {
        self.inner.env.blocks.clear();
        self.inner.env.shuffle.clear();
    }
}
