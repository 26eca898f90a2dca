//! Where a context's tasks run, as the scheduler and the cleaner see it: a
//! [`SchedulerBackend`]. The in-process executor of local mode implements it here; the cluster
//! layer implements it for remote executors. Nothing below this trait knows which one it has.

use crate::core::error::TaskFailure;
use crate::core::events::Event;
use crate::core::plan::RddId;
use crate::driver::cleaner::Cleanup;
use crate::driver::listener_bus::ListenerBus;
use crate::exec::broadcast::BroadcastManager;
use crate::exec::executor::{ExecutorEnv, Launch, LocalExecutor};
use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

/// The scheduler's view of its executors (Spark's SchedulerBackend, Ballista's TaskLauncher and
/// ClusterState together). Every method is cheap and non-blocking: the scheduler calls them
/// while it holds a job.
pub(crate) trait SchedulerBackend: Send + Sync + 'static {
    /// Queues an encoded task; its result comes back on `launch.reply`.
    fn launch(&self, launch: Launch) -> Result<(), TaskFailure>;

    /// Forgets tasks whose results nobody waits for any more: those not started yet are dropped.
    fn abandon(&self, task_ids: &[u64]);

    /// Task slots: a local context's threads, or the cores of the live executors.
    fn slots(&self) -> usize;

    /// The first id this context may hand out: a cluster's contexts share the executors' id
    /// space, so each starts past the ids earlier contexts used.
    fn first_id(&self) -> u64 {
        1
    }

    /// Posts the executors' comings and goings to a context's bus from now on, those alive
    /// now first.
    fn subscribe(&self, bus: &Arc<ListenerBus>);

    /// Lets remote executors fetch the context's broadcast values.
    fn attach_broadcasts(&self, _values: &Arc<BroadcastManager>) {}

    /// Executors that hold cached partition `partition` of `rdd` (a task placed there reads it
    /// without recomputing).
    fn block_holders(&self, _rdd: RddId, _partition: usize) -> Vec<String> {
        Vec::new()
    }

    /// Partitions of `rdd` cached on some live executor.
    fn cached_partitions(&self, rdd: RddId) -> Vec<usize>;

    /// A task finished on `executor` and cached these partitions there.
    fn blocks_stored(&self, _executor: &str, _blocks: &[(RddId, u32)]) {}

    /// Executors lost since the context started: their map outputs must be recomputed.
    fn lost_executors(&self) -> HashSet<String> {
        HashSet::new()
    }

    /// The address and instance id of executor `id`, for shuffle fetches from it.
    fn address_of(&self, _id: &str) -> Option<(String, String)> {
        None
    }

    /// Tells the executors to free what `cleanup` names (the driver's own copy is freed by the
    /// cleaner itself).
    fn cleanup(&self, _cleanup: &Cleanup) {}

    /// For the layer that made this backend to get its own type back.
    fn as_any(&self) -> &dyn Any;
}

/// Local mode: N slot threads of one in-process executor.
pub(crate) struct LocalBackend {
    executor: LocalExecutor,
}

impl LocalBackend {
    pub fn start(env: Arc<ExecutorEnv>, slots: usize) -> std::io::Result<Self> {
        Ok(LocalBackend {
            executor: LocalExecutor::start(env, slots)?,
        })
    }
}

impl SchedulerBackend for LocalBackend {
    fn launch(&self, launch: Launch) -> Result<(), TaskFailure> {
        self.executor.launch(launch)
    }

    fn abandon(&self, task_ids: &[u64]) {
        self.executor.abandon(task_ids)
    }

    fn slots(&self) -> usize {
        self.executor.slots()
    }

    fn cached_partitions(&self, rdd: RddId) -> Vec<usize> {
        self.executor.env.blocks.cached_partitions(rdd)
    }

    fn subscribe(&self, bus: &Arc<ListenerBus>) {
        bus.post(Event::ExecutorAdded {
            executor: self.executor.env.executor_id.clone(),
            address: String::new(),
            cores: self.executor.slots(),
        });
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
