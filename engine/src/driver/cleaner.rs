//! Frees what no live handle refers to (Spark's ContextCleaner).

use crate::core::events::Event;
use crate::core::plan::{RddId, ShuffleId};
use crate::core::sync::Locked;
use crate::driver::backend::SchedulerBackend;
use crate::driver::listener_bus::ListenerBus;
use crate::driver::map_output::MapOutputTracker;
use crate::exec::broadcast::{BroadcastManager, BroadcastOwner, Release};
use crate::exec::executor::ExecutorEnv;
use dashmap::DashMap;
use std::sync::{Arc, Mutex, Weak};

/// What the cleaner frees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    shuffle_stages: Arc<DashMap<ShuffleId, u64>>,
    /// Where the executors hear of each cleanup (on a cluster, with their next heartbeat).
    /// Held strongly: the cleaner's last run, when the context is gone, still reaches them.
    backend: Arc<dyn SchedulerBackend>,
    /// Hears of RDDs unpersisted; weak, as the context's end is no news to its listeners.
    bus: Weak<ListenerBus>,
}

impl Cleaner {
    pub fn new(
        env: Arc<ExecutorEnv>,
        broadcasts: Arc<BroadcastManager>,
        tracker: Arc<MapOutputTracker>,
        shuffle_stages: Arc<DashMap<ShuffleId, u64>>,
        backend: Arc<dyn SchedulerBackend>,
        bus: Weak<ListenerBus>,
    ) -> Self {
        Cleaner {
            queue: Mutex::new(Vec::new()),
            env,
            broadcasts,
            tracker,
            shuffle_stages,
            backend,
            bus,
        }
    }

    pub fn push(&self, c: Cleanup) {
        self.queue.locked().push(c);
    }

    pub fn run_now(&self) {
        let work = std::mem::take(&mut *self.queue.locked());
        for c in work {
            self.backend.cleanup(&c);
            match c {
                Cleanup::Rdd(id) => {
                    self.env.blocks.remove_rdd(id);
                    if let Some(bus) = self.bus.upgrade() {
                        bus.post(Event::RddUnpersisted { rdd: id });
                    }
                }
                Cleanup::Shuffle(id) => {
                    self.env.shuffle.remove_shuffle(id);
                    self.tracker.remove(id);
                    self.shuffle_stages.remove(&id);
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

impl BroadcastOwner for Cleaner {
    fn release(&self, id: u64, how: Release) {
        self.push(match how {
            Release::Destroy => Cleanup::Broadcast(id),
            Release::Unpersist => Cleanup::UnpersistBroadcast(id),
        });
    }

    fn flush(&self) {
        self.run_now();
    }
}
