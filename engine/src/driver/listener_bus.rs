//! The listener bus (Spark's LiveListenerBus): the scheduler, the cluster layer and jobs post
//! typed events; every listener hears each one, stamped with the time it was posted, in the
//! order posted. Delivery is synchronous, so what a job reads right after an action (say, the
//! bytes its tasks sent) has been delivered by then.

use crate::core::events::{Event, Listener, Posted};
use crate::core::sync::Locked;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A new application id: the start time in milliseconds and a count within the process, so two
/// contexts started in the same millisecond (a test, a busy `driver serve`) differ.
fn new_app_id(start_ms: u64) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("app-{start_ms}-{:04}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub struct ListenerBus {
    listeners: Mutex<Vec<Arc<dyn Listener>>>,
    /// Replayed to each listener when it is added, so that one added late still starts from
    /// the application's start and knows the executors.
    replay: Mutex<Vec<Posted>>,
}

impl ListenerBus {
    pub(crate) fn new(app: &str, master: &str) -> Self {
        let time_ms = crate::core::events::now_ms();
        let start = Posted {
            time_ms,
            event: Event::ApplicationStart {
                app_id: new_app_id(time_ms),
                app: app.to_string(),
                master: master.to_string(),
            },
        };
        ListenerBus {
            listeners: Mutex::new(Vec::new()),
            replay: Mutex::new(vec![start]),
        }
    }

    /// The application's id (from its start event).
    pub fn app_id(&self) -> String {
        match self.replay.locked().first().map(|p| &p.event) {
            Some(Event::ApplicationStart { app_id, .. }) => app_id.clone(),
            _ => String::new(),
        }
    }

    pub fn add(&self, listener: Arc<dyn Listener>) {
        // Both locks, in post's order: an event posted meanwhile is either replayed here or
        // delivered live, never both.
        let replay = self.replay.locked();
        let mut listeners = self.listeners.locked();
        for p in replay.iter() {
            listener.on_posted(p);
        }
        listeners.push(listener);
    }

    /// Delivers `event` to every listener, on this thread, outside any lock (a listener may
    /// post in turn).
    pub fn post(&self, event: Event) {
        let posted = Posted::now(event);
        let listeners = {
            // The snapshot is taken under the replay lock: a listener being added now either
            // is in it or finds the event in its replay, never both.
            let mut replay = self.replay.locked();
            if matches!(
                posted.event,
                Event::ExecutorAdded { .. }
                    | Event::ExecutorRemoved { .. }
                    | Event::ExecutorDraining { .. }
                    | Event::EnvironmentUpdate { .. }
            ) {
                replay.push(posted.clone());
            }
            self.listeners.locked().clone()
        };
        for l in listeners {
            l.on_posted(&posted);
        }
    }
}
