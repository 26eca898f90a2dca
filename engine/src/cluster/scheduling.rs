//! The cluster as the driver's scheduler sees it: a [`SchedulerBackend`] over the executors a
//! [`ClusterBackend`] tracks, and what a [`Context`] on a cluster adds to its API.

use super::backend::{ClusterBackend, ExecutorSummary};
use super::pb::cleanup::What;
use crate::core::error::{Result, TaskFailure};
use crate::core::plan::RddId;
use crate::driver::backend::SchedulerBackend;
use crate::driver::cleaner::Cleanup;
use crate::driver::context::{Config, Context, Deployment};
use crate::driver::listener_bus::ListenerBus;
use crate::exec::broadcast::BroadcastManager;
use crate::exec::executor::Launch;
use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

/// A context's tasks on a cluster's executors.
pub(crate) struct ClusterScheduling {
    pub cluster: Arc<ClusterBackend>,
}

impl SchedulerBackend for ClusterScheduling {
    fn launch(&self, launch: Launch) -> Result<(), TaskFailure> {
        self.cluster.launch(launch);
        Ok(())
    }

    fn abandon(&self, task_ids: &[u64]) {
        self.cluster.abandon(task_ids)
    }

    fn slots(&self) -> usize {
        self.cluster.total_cores().max(1)
    }

    fn first_id(&self) -> u64 {
        self.cluster.next_id_base() + 1
    }

    fn subscribe(&self, bus: &Arc<ListenerBus>) {
        self.cluster.subscribe(bus)
    }

    fn attach_broadcasts(&self, values: &Arc<BroadcastManager>) {
        self.cluster.attach_broadcasts(values)
    }

    fn block_holders(&self, rdd: RddId, partition: usize) -> Vec<String> {
        self.cluster.block_holders(rdd, partition)
    }

    fn cached_partitions(&self, rdd: RddId) -> Vec<usize> {
        self.cluster.cached_partitions(rdd)
    }

    fn blocks_stored(&self, executor: &str, blocks: &[(RddId, u32)]) {
        self.cluster.blocks_stored(executor, blocks)
    }

    fn lost_executors(&self) -> HashSet<String> {
        self.cluster.gone_executors()
    }

    fn address_of(&self, id: &str) -> Option<(String, String)> {
        self.cluster.address_of(id)
    }

    fn cleanup(&self, cleanup: &Cleanup) {
        self.cluster.cleanup(match *cleanup {
            Cleanup::Rdd(id) => What::Rdd(id),
            Cleanup::Shuffle(id) => What::Shuffle(id),
            Cleanup::Broadcast(id) | Cleanup::UnpersistBroadcast(id) => What::Broadcast(id),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Context {
    /// A context whose jobs run on the executors of a running cluster driver (`driver serve`
    /// makes one per submitted job).
    pub fn on_cluster(config: Config, cluster: Arc<ClusterBackend>) -> Result<Self> {
        Context::with_backend(config, |_| {
            Ok(Deployment {
                backend: Arc::new(ClusterScheduling { cluster }),
                started: None,
            })
        })
    }

    /// The cluster driver, in cluster mode: executors, traffic, executor counters.
    pub fn cluster(&self) -> Option<&Arc<ClusterBackend>> {
        self.backend()
            .as_any()
            .downcast_ref::<ClusterScheduling>()
            .map(|c| &c.cluster)
    }

    /// The cluster's executors (empty in local mode).
    pub fn executors(&self) -> Vec<ExecutorSummary> {
        self.cluster().map(|c| c.executors()).unwrap_or_default()
    }

    /// The driver service's address in cluster mode.
    pub fn driver_address(&self) -> Option<std::net::SocketAddr> {
        self.cluster().map(|c| c.address())
    }
}
