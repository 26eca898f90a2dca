//! Where a context's tasks run: its own in-process executor (local mode), or a cluster's
//! executors through a [`ClusterBackend`]. The scheduler sees one interface.

use crate::cluster::local_cluster::LocalCluster;
use crate::cluster::ClusterBackend;
use crate::error::TaskFailure;
use crate::executor::{Launch, LocalBackend};
use std::sync::Arc;

pub(crate) enum Backend {
    Local(LocalBackend),
    Cluster {
        backend: Arc<ClusterBackend>,
        /// The executor processes of `local-cluster[N,C]`, stopped with the context.
        local: Option<LocalCluster>,
    },
}

impl Backend {
    pub fn launch(&self, launch: Launch) -> Result<(), TaskFailure> {
        match self {
            Backend::Local(b) => b.launch(launch),
            Backend::Cluster { backend, .. } => {
                backend.launch(launch);
                Ok(())
            }
        }
    }

    /// Forgets tasks whose results nobody waits for any more: those not started yet are
    /// dropped.
    pub fn abandon(&self, task_ids: &[u64]) {
        match self {
            Backend::Local(b) => b.abandon(task_ids),
            Backend::Cluster { backend, .. } => backend.abandon(task_ids),
        }
    }

    /// Task slots: a local context's threads, or the cores of the live executors.
    pub fn slots(&self) -> usize {
        match self {
            Backend::Local(b) => b.slots(),
            Backend::Cluster { backend, .. } => backend.total_cores().max(1),
        }
    }

    pub fn cluster(&self) -> Option<&Arc<ClusterBackend>> {
        match self {
            Backend::Local(_) => None,
            Backend::Cluster { backend, .. } => Some(backend),
        }
    }

    pub fn local_cluster(&self) -> Option<&LocalCluster> {
        match self {
            Backend::Cluster { local, .. } => local.as_ref(),
            Backend::Local(_) => None,
        }
    }
}
