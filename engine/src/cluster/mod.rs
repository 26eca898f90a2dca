//! Cluster mode: a driver and executor processes over gRPC (`proto/discnn.proto`).
//!
//! - [`ClusterDriver`] serves the driver service and owns the [`ClusterBackend`] that places
//!   tasks on executors; contexts built with [`Context::on_cluster`](crate::Context::on_cluster)
//!   (or the `local-cluster[N,C]` master) run their jobs through it.
//! - [`executor_process::run`] is the whole `executor` program: register, heartbeat, run tasks
//!   on slots, serve shuffle buckets to other executors.
//! - Data never passes through the driver on its way between executors: reducers fetch map
//!   outputs from the executors that wrote them.

pub mod auth;
pub mod backend;
mod chunks;
pub mod client;
mod driver_service;
pub mod executor_process;
pub mod jobs;
pub(crate) mod local_cluster;
pub use local_cluster::PARENT_PID_ENV;
mod remote;
pub(crate) mod scheduling;
pub mod tls;
pub mod traffic;

pub use auth::Secret;
pub use backend::{ClusterBackend, ExecutorState, ExecutorSummary};
pub use discnn_proto::pb;
pub use jobs::{JobOutcome, JobOutput, JobRunner};
pub use tls::Tls;
pub use traffic::{Traffic, TrafficSnapshot};

/// What a client presents and trusts: the shared secret, and the CA of a cluster on TLS.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The cluster's shared secret, when it has one.
    pub secret: Option<Secret>,
    /// The cluster's TLS identity and CA, when it runs on TLS.
    pub tls: Option<Arc<Tls>>,
}

use crate::core::error::EngineError;
pub use crate::driver::context::ClusterTimings;
use crate::driver::context::Config;
use std::net::SocketAddr;
use std::sync::Arc;

/// How a cluster driver behaves.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// HOST:PORT to serve on (port 0: any free port).
    pub listen: String,
    /// The shared secret every RPC must prove; `None` runs without authentication.
    pub secret: Option<Secret>,
    /// Serve over TLS, and dial executors over TLS.
    pub tls: Option<Arc<Tls>>,
    /// Heartbeats, loss and locality waits.
    pub timings: ClusterTimings,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            listen: "0.0.0.0:7077".into(),
            secret: None,
            tls: None,
            timings: ClusterTimings::default(),
        }
    }
}

/// Errors of cluster set-up (a running job's failures are [`crate::TaskFailure`]s).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The driver's port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The async runtime would not start.
    #[error("cannot start the RPC runtime: {0}")]
    Runtime(std::io::Error),
    /// The other side refused: another build, a wrong secret, a stopped cluster.
    #[error("{0}")]
    Refused(String),
    #[error("cannot reach {address}: {message}")]
    /// The driver or an executor did not answer.
    Unreachable {
        /// Where it was dialled.
        address: String,
        /// Why the call failed.
        message: String,
    },
    /// The executors could not be started or did not register.
    #[error("{0}")]
    Executors(String),
    /// A certificate or key could not be loaded or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl From<ClusterError> for EngineError {
    fn from(e: ClusterError) -> Self {
        EngineError::Cluster(Box::new(e))
    }
}

/// A running driver service. Dropping it stops the service.
pub struct ClusterDriver {
    backend: Arc<ClusterBackend>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ClusterDriver {
    /// Binds `config.listen` and serves the driver service. `runner` executes submitted jobs
    /// (`driver serve`); without one, the driver only serves contexts of this process.
    pub fn start(
        config: ClusterConfig,
        runner: Option<Arc<dyn JobRunner>>,
        job_config: Config,
    ) -> Result<ClusterDriver, ClusterError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("discnn-driver-rpc")
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let listener =
            std::net::TcpListener::bind(&config.listen).map_err(|source| ClusterError::Listen {
                address: config.listen.clone(),
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| ClusterError::Listen {
                address: config.listen.clone(),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(ClusterError::Runtime)?;
        let secret = config.secret.clone();
        let server = tls::server(config.tls.as_deref())?;
        let backend = ClusterBackend::new(config, address, runtime.handle().clone());
        let service = driver_service::DriverService {
            backend: backend.clone(),
            jobs: Arc::new(jobs::JobQueue::new(runner, job_config)),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let service = discnn_proto::pb::driver_server::DriverServer::new(service)
            .max_decoding_message_size(chunks::MAX_MESSAGE)
            .max_encoding_message_size(chunks::MAX_MESSAGE);
        let service = tonic::service::interceptor::InterceptedService::new(
            service,
            auth::ServerAuth::new(secret, "driver", auth::DRIVER),
        );
        let traffic = backend.traffic.clone();
        let incoming = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(ClusterError::Runtime)?
        };
        runtime.spawn(async move {
            let served = server
                .layer(traffic::CountLayer(traffic))
                .layer(auth::RpcPathLayer)
                .add_service(service)
                .serve_with_incoming_shutdown(tls::accepted(incoming), async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("the driver service stopped: {e}");
            }
        });
        runtime.spawn(backend.clone().run_dispatcher());
        tracing::info!("driver listening on {address}");
        Ok(ClusterDriver {
            backend,
            shutdown: Some(tx),
            runtime: Some(runtime),
        })
    }

    /// The backend that schedules on this driver's executors.
    pub fn backend(&self) -> &Arc<ClusterBackend> {
        &self.backend
    }

    /// Where the driver listens (the port actually bound).
    pub fn address(&self) -> SocketAddr {
        self.backend.address()
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub fn wait_for_shutdown_signal(&self) -> Result<(), ClusterError> {
        let Some(rt) = &self.runtime else {
            return Ok(());
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).map_err(ClusterError::Runtime)?;
            let mut int = signal(SignalKind::interrupt()).map_err(ClusterError::Runtime)?;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("driver shutting down");
            Ok(())
        })
    }
}

impl ClusterDriver {
    /// Stops serving: the service, its task channels and its runtime end here, so executors
    /// stopped after this are not seen breaking their channels (nor declared lost).
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for ClusterDriver {
    fn drop(&mut self) {
        self.stop();
    }
}
