//! Turns a master URL into a context's backend. The one file that names both the driver and
//! the cluster layer: below it, the driver knows only a `SchedulerBackend`.

use crate::cluster::local_cluster::{self, LocalCluster};
use crate::cluster::scheduling::ClusterScheduling;
use crate::core::error::{EngineError, Result};
use crate::driver::context::{Config, Context, Deployment, StartedExecutors};
use std::sync::Arc;

impl Context {
    /// A context for `config.master`: `local`, `local[N]`, `local[*]` (tasks on threads of this
    /// process) or `local-cluster[N,C]` (N executor processes of C slots on loopback).
    pub fn new(config: Config) -> Result<Self> {
        let Some(parsed) = local_cluster::parse(&config.master) else {
            return Context::local_mode(config);
        };
        let (n, cores) = parsed.map_err(EngineError::InvalidArgument)?;
        let local = LocalCluster::start(n, cores, &config)?;
        let cluster = local.driver.backend().clone();
        Context::with_backend(config, |_| {
            Ok(Deployment {
                backend: Arc::new(ClusterScheduling { cluster }),
                started: Some(Box::new(local)),
            })
        })
    }
}

impl StartedExecutors for LocalCluster {
    fn log_tails(&self, lines: usize) -> String {
        LocalCluster::log_tails(self, lines)
    }
}
