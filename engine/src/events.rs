//! Job, stage and task events, published to listeners (the progress bar, tests, and later the
//! UI and the event log).

use crate::error::TaskFailure;
use crate::task::TaskMetrics;

#[derive(Debug, Clone)]
pub enum Event {
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
}

pub trait Listener: Send + Sync {
    fn on_event(&self, event: &Event);
}

/// Keeps every event; for tests and small tools.
#[derive(Default)]
pub struct EventLog {
    events: std::sync::Mutex<Vec<Event>>,
}

impl EventLog {
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn clear(&self) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
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
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
    }
}
