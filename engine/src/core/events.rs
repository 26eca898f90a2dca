//! What happens in an application, as typed events: the application, its jobs, stages and
//! tasks, executors, cached blocks, and events a job defines (an epoch's metrics). The driver's
//! listener bus posts them to listeners (the progress bar, tests, a UI, an event log). They are
//! serde types with stable names (`"event": "TaskEnd"`), so an event log written by one build
//! reads in another.

use crate::core::error::TaskFailure;
use crate::core::sync::Locked;
use crate::core::task::TaskMetrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// One thing that happened. Ids are the engine's: jobs, stages and tasks count up from 0 in
/// a context; an executor's id is the one it registered with (`driver` in local mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum Event {
    /// The context started (delivered first to every listener, however late it is added).
    ApplicationStart {
        /// The application's id, unique in the process and across restarts
        /// (`app-<start ms>-<n>`): an event log's file name and the UI's URL segment.
        #[serde(default)]
        app_id: String,
        /// The application's name (`Config::app_name`).
        app: String,
        /// The master URL it runs on.
        master: String,
    },
    /// The context's last handle went.
    ApplicationEnd,
    /// What the application was started with (its job's options, the build), for the UI's
    /// Environment page. Never holds a secret.
    EnvironmentUpdate {
        /// Name → value.
        properties: BTreeMap<String, String>,
    },
    /// An action started a job.
    JobStart {
        /// The job's id.
        job: u64,
        /// What the action was (`collect at src/main.rs:12`).
        description: String,
    },
    /// A job ended.
    JobEnd {
        /// The job's id.
        job: u64,
        /// Why it failed; `None` when it succeeded.
        error: Option<String>,
    },
    /// A stage attempt's tasks were handed to the backend.
    StageSubmitted {
        /// The job that needed it.
        job: u64,
        /// The stage's id.
        stage: u64,
        /// Its attempt, 0 first (a map stage is attempted again when its outputs are lost).
        attempt: u32,
        /// The RDD and call site it computes.
        name: String,
        /// The tasks it runs (the partitions still missing).
        num_tasks: usize,
        /// Whether it writes shuffle output (a map stage) rather than results.
        shuffle_map: bool,
    },
    /// A stage attempt ended.
    StageCompleted {
        /// The stage's id.
        stage: u64,
        /// The attempt that ended.
        attempt: u32,
        /// Why it failed; `None` when every task succeeded.
        failure: Option<String>,
    },
    /// A task attempt was launched.
    TaskStart {
        /// The stage it belongs to.
        stage: u64,
        /// The partition it computes.
        partition: usize,
        /// The partition's attempt, 0 first.
        attempt: u32,
        /// The task's id, unique in the context.
        task_id: u64,
    },
    /// A task attempt ended.
    TaskEnd {
        /// The stage it belongs to.
        stage: u64,
        /// The stage attempt it ran in.
        stage_attempt: u32,
        /// The partition it computed.
        partition: usize,
        /// The partition's attempt, 0 first.
        attempt: u32,
        /// The task's id.
        task_id: u64,
        /// The executor that ran it.
        executor: String,
        /// Why it failed; `None` when it succeeded.
        failure: Option<TaskFailure>,
        /// What it measured (run time, records, shuffle bytes).
        metrics: TaskMetrics,
    },
    /// An executor can take tasks (in local mode: the driver's own, `driver`).
    ExecutorAdded {
        /// The executor's id.
        executor: String,
        /// Where its block and shuffle service listens (`local` in local mode).
        address: String,
        /// The tasks it runs at once.
        cores: usize,
    },
    /// An executor is draining (SIGTERM): it finishes its tasks and takes no new ones.
    ExecutorDraining {
        /// The executor's id.
        executor: String,
    },
    /// An executor heartbeat reached the driver. Live only: event logs leave it out (as
    /// Spark's leave out executor metrics updates).
    ExecutorHeartbeat {
        /// The executor's id.
        executor: String,
    },
    /// An executor was declared lost, or left; its blocks and map outputs are gone.
    ExecutorRemoved {
        /// The executor's id.
        executor: String,
        /// Why (missed heartbeats, a lost stream, a clean exit).
        reason: String,
        /// Lost (a failure) rather than left after draining.
        #[serde(default)]
        lost: bool,
    },
    /// A task cached a partition on an executor.
    BlockUpdated {
        /// The executor holding the block.
        executor: String,
        /// The cached RDD.
        rdd: u64,
        /// The partition cached.
        partition: u32,
        /// Bytes it holds in memory (estimated).
        #[serde(default)]
        memory_bytes: u64,
        /// Bytes it holds on disk.
        #[serde(default)]
        disk_bytes: u64,
    },
    /// An RDD was marked for caching.
    RddPersisted {
        /// The RDD's id.
        rdd: u64,
        /// Its name and call site, as the lineage prints it.
        name: String,
        /// Its partitions.
        num_partitions: u32,
        /// The storage level (`MemoryOnly`, …).
        level: String,
    },
    /// An RDD's cached blocks were dropped (unpersisted, or its last handle went).
    RddUnpersisted {
        /// The RDD's id.
        rdd: u64,
    },
    /// An event the job defines: `kind` names it (`epoch`), `json` is its body.
    Custom {
        /// The event's name.
        kind: String,
        /// Its body, a JSON document.
        json: String,
    },
}

/// An event as the bus delivers it: when it was posted (milliseconds since the Unix epoch)
/// beside what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Posted {
    /// When it was posted, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Posted {
    /// Stamps `event` with the current time.
    pub fn now(event: Event) -> Self {
        Posted {
            time_ms: now_ms(),
            event,
        }
    }
}

/// Hears a context's events, synchronously, on the thread that posts them: an event posted
/// during an action has been delivered when the action returns. A listener that does real work
/// (drawing, writing a file) hands the event to a thread of its own, as the progress bar does.
pub trait Listener: Send + Sync {
    /// Called for every event; by default ignores it.
    fn on_event(&self, _event: &Event) {}

    /// The event with the time it was posted; by default, [`on_event`](Self::on_event).
    fn on_posted(&self, posted: &Posted) {
        self.on_event(&posted.event)
    }
}

/// Makes a context's own listeners when the context starts: a [`Config`] carries these, so that
/// each application of a long-lived driver gets fresh ones (its own event log file, its own
/// page in a UI).
///
/// [`Config`]: crate::driver::context::Config
#[derive(Clone, Default)]
pub struct ListenerFactories(pub Vec<Arc<dyn Fn() -> Arc<dyn Listener> + Send + Sync>>);

impl ListenerFactories {
    /// Adds a factory.
    pub fn push(&mut self, f: impl Fn() -> Arc<dyn Listener> + Send + Sync + 'static) {
        self.0.push(Arc::new(f));
    }

    /// One new listener of each factory.
    pub fn make(&self) -> Vec<Arc<dyn Listener>> {
        self.0.iter().map(|f| f()).collect()
    }
}

impl std::fmt::Debug for ListenerFactories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListenerFactories({})", self.0.len())
    }
}

/// Keeps every event; for tests and small tools.
#[derive(Default)]
pub struct EventLog {
    events: std::sync::Mutex<Vec<Event>>,
}

impl EventLog {
    /// Every event heard so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.locked().clone()
    }

    /// Forgets the events heard so far.
    pub fn clear(&self) {
        self.events.locked().clear();
    }

    /// Stages submitted (run), as (stage, attempt).
    pub fn stages_run(&self) -> Vec<(u64, u32)> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::StageSubmitted { stage, attempt, .. } => Some((*stage, *attempt)),
                _ => None,
            })
            .collect()
    }

    /// Task ends, as (partition, attempt, failure).
    pub fn task_ends(&self) -> Vec<(usize, u32, Option<TaskFailure>)> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::TaskEnd {
                    partition,
                    attempt,
                    failure,
                    ..
                } => Some((*partition, *attempt, failure.clone())),
                _ => None,
            })
            .collect()
    }
}

impl Listener for EventLog {
    fn on_event(&self, event: &Event) {
        self.events.locked().push(event.clone());
    }
}
