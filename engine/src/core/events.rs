//! What happens in an application, as typed events: the application, its jobs, stages and
//! tasks, executors, cached blocks, and events a job defines (an epoch's metrics). The driver's
//! listener bus posts them to listeners (the progress bar, tests, a UI, an event log). They are
//! serde types with stable names (`"event": "TaskEnd"`), so an event log written by one build
//! reads in another.

use crate::core::error::TaskFailure;
use crate::core::sync::Locked;
use crate::core::task::TaskMetrics;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum Event {
    /// The context started (delivered first to every listener, however late it is added).
    ApplicationStart {
        app: String,
        master: String,
    },
    /// The context's last handle went.
    ApplicationEnd,
    JobStart {
        job: u64,
        description: String,
    },
    JobEnd {
        job: u64,
        error: Option<String>,
    },
    StageSubmitted {
        job: u64,
        stage: u64,
        attempt: u32,
        name: String,
        num_tasks: usize,
        shuffle_map: bool,
    },
    StageCompleted {
        stage: u64,
        attempt: u32,
        failure: Option<String>,
    },
    TaskStart {
        stage: u64,
        partition: usize,
        attempt: u32,
        task_id: u64,
    },
    TaskEnd {
        stage: u64,
        stage_attempt: u32,
        partition: usize,
        attempt: u32,
        task_id: u64,
        executor: String,
        failure: Option<TaskFailure>,
        metrics: TaskMetrics,
    },
    /// An executor can take tasks (in local mode: the driver's own, `driver`).
    ExecutorAdded {
        executor: String,
        address: String,
        cores: usize,
    },
    /// An executor was declared lost (or left); its blocks and map outputs are gone.
    ExecutorLost {
        executor: String,
        reason: String,
    },
    /// A task cached a partition on an executor.
    BlockUpdated {
        executor: String,
        rdd: u64,
        partition: u32,
    },
    /// An event the job defines: `kind` names it (`epoch`), `json` is its body.
    Custom {
        kind: String,
        json: String,
    },
}

/// An event as the bus delivers it: when it was posted (milliseconds since the Unix epoch)
/// beside what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Posted {
    pub time_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

impl Posted {
    pub fn now(event: Event) -> Self {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Posted { time_ms, event }
    }
}

/// Hears a context's events, synchronously, on the thread that posts them: an event posted
/// during an action has been delivered when the action returns. A listener that does real work
/// (drawing, writing a file) hands the event to a thread of its own, as the progress bar does.
pub trait Listener: Send + Sync {
    fn on_event(&self, _event: &Event) {}

    /// The event with the time it was posted; by default, [`on_event`](Self::on_event).
    fn on_posted(&self, posted: &Posted) {
        self.on_event(&posted.event)
    }
}

/// Keeps every event; for tests and small tools.
#[derive(Default)]
pub struct EventLog {
    events: std::sync::Mutex<Vec<Event>>,
}

impl EventLog {
    pub fn events(&self) -> Vec<Event> {
        self.events.locked().clone()
    }

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
