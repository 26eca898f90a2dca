//! The [`Context`] (Spark's SparkContext): an ordinary value. Several may live in one process;
//! each owns its backend, its ids, its listeners and its cleaner.

use crate::core::cancel::CancelToken;
use crate::core::codec::Data;
use crate::core::error::{EngineError, Result};
use crate::core::events::{Event, Listener, ListenerFactories};
use crate::core::plan::ShuffleId;
use crate::driver::backend::{LocalBackend, SchedulerBackend};
use crate::driver::cleaner::Cleaner;
use crate::driver::listener_bus::ListenerBus;
use crate::driver::map_output::MapOutputTracker;
use crate::exec::accumulator::{Accumulator, AccumulatorParam, DriverAccumulator};
use crate::exec::broadcast::{Broadcast, BroadcastHandle, BroadcastManager};
use crate::exec::executor::{ExecutorEnv, MemoryBudgets};
use crate::exec::storage::BlockStats;
use dashmap::DashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How a context is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `local`, `local[N]`, `local[*]` or `local-cluster[N,C]` (N executor processes of C
    /// slots on loopback). Contexts on a running cluster come from [`Context::on_cluster`].
    pub master: String,
    /// The application's name, in events, status and the progress bar.
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
    pub cluster: ClusterTimings,
    /// The `executor` program a `local-cluster` master starts (default: found next to this
    /// program, or `$DISCNN_EXECUTOR_BIN`).
    pub executor_binary: Option<PathBuf>,
    /// Set to cancel the running job (it fails with [`EngineError::Cancelled`]).
    pub cancel: CancelToken,
    /// Listeners each context makes for itself when it starts (an event log, a UI's page);
    /// they hear everything from the application's start on.
    pub listeners: ListenerFactories,
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
            cluster: ClusterTimings::default(),
            executor_binary: None,
            cancel: CancelToken::new(),
            listeners: ListenerFactories::default(),
        }
    }
}

/// How a cluster's driver times its executors: settings of the cluster layer that a
/// `local-cluster` master takes from [`Config`], kept here so that the config names nothing of
/// that layer.
#[derive(Debug, Clone, Copy)]
pub struct ClusterTimings {
    /// How often executors heartbeat.
    pub heartbeat_interval: Duration,
    /// An executor silent for longer is declared lost.
    pub heartbeat_timeout: Duration,
    /// How long tasks wait for an executor when none is alive before the job fails.
    pub no_executor_grace: Duration,
    /// How long a task waits for a busy executor that holds its cached input.
    pub locality_wait: Duration,
}

impl Default for ClusterTimings {
    fn default() -> Self {
        ClusterTimings {
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(10),
            no_executor_grace: Duration::from_secs(30),
            locality_wait: Duration::from_secs(3),
        }
    }
}

/// Executor processes a master started for one context, stopped when the context ends.
pub(crate) trait StartedExecutors: Send + Sync {
    /// The last `lines` lines of each one's log.
    fn log_tails(&self, lines: usize) -> String;
}

/// Where a context's tasks will run, as a master URL resolves it.
pub(crate) struct Deployment {
    pub backend: Arc<dyn SchedulerBackend>,
    pub started: Option<Box<dyn StartedExecutors>>,
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

pub(crate) struct ContextInner {
    pub config: Config,
    ids: AtomicU64,
    pub backend: Arc<dyn SchedulerBackend>,
    pub env: Arc<ExecutorEnv>,
    pub broadcasts: Arc<BroadcastManager>,
    pub tracker: Arc<MapOutputTracker>,
    /// Every task result looks its accumulators up here: a sharded map.
    pub accumulators: DashMap<u64, Weak<dyn DriverAccumulator>>,
    pub bus: Arc<ListenerBus>,
    pub cleaner: Arc<Cleaner>,
    pub job_lock: Mutex<()>,
    pub shuffle_stages: Arc<DashMap<ShuffleId, u64>>,
    /// Dropped last, with the context: stops the executors a `local-cluster` master started.
    started: Option<Box<dyn StartedExecutors>>,
}

impl ContextInner {
    /// One id space for rdds, shuffles, jobs, stages, tasks, broadcasts and accumulators: every
    /// id is unique within a context, which keeps logs unambiguous.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn post(&self, event: Event) {
        self.bus.post(event);
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        // What the last handles queued is freed before the end is announced, so a listener
        // hears the application's unpersists before its end.
        self.cleaner.run_now();
        self.bus.post(Event::ApplicationEnd);
    }
}

/// Counts of what a context holds, for tests and for watching memory stay flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextStats {
    /// The block manager's counts.
    pub blocks: BlockStats,
    /// Map outputs held by the executor's shuffle store.
    pub shuffle_outputs: usize,
    /// Bytes held by the executor's shuffle store, in memory or on disk.
    pub shuffle_bytes: u64,
    /// Of those, bytes spilled to disk.
    pub shuffle_spilled_bytes: u64,
    /// Bytes of the map outputs the driver knows of.
    pub tracked_shuffle_bytes: u64,
    /// Shuffles the map-output tracker knows of.
    pub tracked_shuffles: usize,
    /// Broadcast values the driver holds for executors to fetch.
    pub broadcasts_on_driver: usize,
    /// Broadcast values decoded on the (local) executor.
    pub broadcasts_on_executor: usize,
    /// Broadcast values fetched from the driver so far.
    pub broadcast_fetches: u64,
}

/// The entry point: makes RDDs, broadcasts and accumulators, and runs jobs.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

impl Context {
    /// A context on the in-process executor of a `local`, `local[N]` or `local[*]` master.
    pub(crate) fn local_mode(config: Config) -> Result<Self> {
        let slots = parse_local_master(&config.master)?;
        Self::with_backend(config, |env| {
            let backend = LocalBackend::start(env.clone(), slots)
                .map_err(|e| EngineError::io("slot threads", e))?;
            Ok(Deployment {
                backend: Arc::new(backend),
                started: None,
            })
        })
    }

    /// A context whose tasks run where `deploy` says; `deploy` gets the driver's own
    /// executor environment (local mode runs tasks in it).
    pub(crate) fn with_backend(
        config: Config,
        deploy: impl FnOnce(&Arc<ExecutorEnv>) -> Result<Deployment>,
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
        let Deployment { backend, started } = deploy(&env)?;
        backend.attach_broadcasts(&broadcasts);
        let first_id = backend.first_id();
        let tracker = Arc::new(MapOutputTracker::default());
        let shuffle_stages = Arc::new(DashMap::new());
        let bus = Arc::new(ListenerBus::new(&config.app_name, &config.master));
        for l in config.listeners.make() {
            bus.add(l);
        }
        let cleaner = Arc::new(Cleaner::new(
            env.clone(),
            broadcasts.clone(),
            tracker.clone(),
            shuffle_stages.clone(),
            backend.clone(),
            Arc::downgrade(&bus),
        ));
        backend.subscribe(&bus);
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
                accumulators: DashMap::new(),
                bus,
                cleaner,
                job_lock: Mutex::new(()),
                shuffle_stages,
                started,
            }),
        };
        if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ctx.add_listener(crate::driver::progress::ConsoleProgressBar::start());
        }
        tracing::debug!(slots, "context started");
        Ok(ctx)
    }

    /// Where this context's tasks run.
    pub(crate) fn backend(&self) -> &Arc<dyn SchedulerBackend> {
        &self.inner.backend
    }

    /// The last lines of each `local-cluster` executor's log (for failing tests).
    pub fn executor_log_tails(&self, lines: usize) -> String {
        self.inner
            .started
            .as_ref()
            .map(|s| s.log_tails(lines))
            .unwrap_or_default()
    }

    /// Cancels the running job, if any, and every later one of this context.
    pub fn cancel(&self) {
        self.inner.config.cancel.cancel();
    }

    /// A local context with `slots` task slots.
    pub fn local(slots: usize) -> Result<Self> {
        Context::new(Config {
            master: format!("local[{slots}]"),
            ..Config::default()
        })
    }

    /// Tasks that can run at once (Spark's `defaultParallelism`): the backend's slots.
    pub fn default_parallelism(&self) -> usize {
        self.inner.backend.slots()
    }

    /// The configuration the context was made with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Adds a listener to the context's bus: it hears the application's start and the
    /// executors known so far at once, then every later event.
    pub fn add_listener(&self, l: Arc<dyn Listener>) {
        self.inner.bus.add(l);
    }

    /// The application's id (`app-<start ms>-<n>`), as its events and a UI name it.
    pub fn app_id(&self) -> String {
        self.inner.bus.app_id()
    }

    /// Tells the listeners what the application was started with (the Environment page of a
    /// UI). Give no secret: listeners write it to event logs.
    pub fn set_environment(&self, properties: std::collections::BTreeMap<String, String>) {
        self.inner.post(Event::EnvironmentUpdate { properties });
    }

    /// Posts an event of the job's own (`kind` names it, `json` is its body) to the listeners.
    pub fn post_event(&self, kind: &str, json: String) {
        self.inner.post(Event::Custom {
            kind: kind.to_string(),
            json,
        });
    }

    /// Ships `value` once per executor; tasks read it through the returned handle.
    pub fn broadcast<T: Data>(&self, value: T) -> Result<Broadcast<T>> {
        let id = self.inner.next_id();
        let bytes = crate::core::codec::encode(&value)?;
        self.inner.broadcasts.put(id, bytes);
        Ok(Broadcast::new(Arc::new(BroadcastHandle {
            id,
            value: Arc::new(value),
            owner: self.inner.cleaner.clone(),
        })))
    }

    /// A counter tasks add to and the driver reads; each successful task's adds count once.
    pub fn accumulator<P: AccumulatorParam>(&self) -> Accumulator<P> {
        let id = self.inner.next_id();
        let (acc, driver) = Accumulator::<P>::new(id);
        let map = &self.inner.accumulators;
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

    /// Counts of what the context holds now.
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
