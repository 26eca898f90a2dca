//! The `executor` program (Spark's CoarseGrainedExecutorBackend): registers with the driver
//! (retrying with backoff while it is not up), heartbeats on the RPC runtime — never on a task
//! slot, so compute cannot starve it — runs tasks on N slot threads, keeps its shuffle output
//! and cached blocks, and serves shuffle buckets to other executors. Told to register anew (it
//! was declared lost, or the driver restarted), it drops all its state first: a driver never
//! trusts what an executor held before it was lost. On SIGTERM or Ctrl-C it stops taking
//! tasks, finishes the running ones and deregisters.

mod tasks;
mod work_dir;

use super::auth::{Secret, ServerAuth};
use super::chunks::MAX_MESSAGE;
use super::remote::{self, DriverRpc, RemoteBroadcasts, RemoteFetcher};
use super::tls::{self, Tls};
use super::{ClusterError, Credentials};
use crate::core::sync::Locked;
use crate::exec::executor::{ExecutorEnv, MemoryBudgets};
use discnn_proto::pb;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tasks::{start_slots, task_channel};
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use work_dir::WorkDir;

/// How an executor process runs (the `executor` command line).
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The driver's HOST:PORT.
    pub driver: String,
    /// Tasks it runs at once.
    pub cores: usize,
    /// Block manager memory budget in bytes.
    pub memory: usize,
    /// Bytes of map output kept in memory; past it, map outputs go to the work dir.
    pub shuffle_memory: usize,
    /// Where to serve (port 0: any free port).
    pub listen: String,
    /// The host others reach this executor at; by default the address the driver sees it
    /// connect from.
    pub advertise: Option<String>,
    /// A directory under which this executor makes a fresh directory of its own.
    pub work_dir: Option<PathBuf>,
    /// The cluster's shared secret; `None` when the driver runs without one.
    pub secret: Option<Secret>,
    /// Serve over TLS and dial the driver and other executors over TLS.
    pub tls: Option<Arc<Tls>>,
    /// Deadline of one shuffle fetch from another executor.
    pub fetch_deadline: Duration,
}

impl ExecutorOptions {
    fn credentials(&self) -> Credentials {
        Credentials {
            secret: self.secret.clone(),
            tls: self.tls.clone(),
        }
    }
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        ExecutorOptions {
            driver: "127.0.0.1:7077".into(),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory: 1 << 30,
            shuffle_memory: 1 << 30,
            listen: "0.0.0.0:0".into(),
            advertise: None,
            work_dir: None,
            secret: None,
            tls: None,
            fetch_deadline: Duration::from_secs(60),
        }
    }
}

struct Work {
    env: Arc<ExecutorEnv>,
    task_id: u64,
    bytes: Vec<u8>,
}

struct Shared {
    env: RwLock<Option<Arc<ExecutorEnv>>>,
    queue: Mutex<Sender<Work>>,
    /// The sending half of the task channel of this registration (`task_channel`).
    channel: Mutex<Option<UnboundedSender<pb::FromExecutor>>>,
    /// Checks tokens: callers' on this executor's service, the driver's on the task channel.
    auth: ServerAuth,
    draining: AtomicBool,
    /// Tasks accepted and not yet reported.
    busy: AtomicU32,
    served_bytes: AtomicU64,
    served_fetches: AtomicU64,
    tasks_run: AtomicU64,
    driver: DriverRpc,
    runtime: tokio::runtime::Handle,
}

impl Shared {
    fn env(&self) -> Option<Arc<ExecutorEnv>> {
        self.env.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_env(&self, env: Option<Arc<ExecutorEnv>>) {
        *self.env.write().unwrap_or_else(|p| p.into_inner()) = env;
    }
}

/// Runs an executor until it is told to stop (SIGTERM, Ctrl-C) or refused by the driver.
pub fn run(opts: ExecutorOptions) -> Result<(), ClusterError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("discnn-executor-rpc")
        .enable_all()
        .build()
        .map_err(ClusterError::Runtime)?;
    let work = WorkDir::create(opts.work_dir.as_deref())?;
    // Who this process is to its callers' tokens, for its whole life (re-registrations too).
    let instance = super::auth::new_instance_id();
    let listener =
        std::net::TcpListener::bind(&opts.listen).map_err(|source| ClusterError::Listen {
            address: opts.listen.clone(),
            source,
        })?;
    let bound = listener.local_addr().map_err(ClusterError::Runtime)?;
    listener
        .set_nonblocking(true)
        .map_err(ClusterError::Runtime)?;
    let driver = {
        let _g = runtime.enter();
        remote::driver_client(&opts.driver, &opts.credentials()).map_err(|message| {
            ClusterError::Unreachable {
                address: opts.driver.clone(),
                message,
            }
        })?
    };
    let (tx, rx) = channel::<Work>();
    let shared = Arc::new(Shared {
        env: RwLock::new(None),
        queue: Mutex::new(tx),
        channel: Mutex::new(None),
        auth: ServerAuth::new(opts.secret.clone(), "executor", instance.clone()),
        draining: AtomicBool::new(false),
        busy: AtomicU32::new(0),
        served_bytes: AtomicU64::new(0),
        served_fetches: AtomicU64::new(0),
        tasks_run: AtomicU64::new(0),
        driver,
        runtime: runtime.handle().clone(),
    });
    start_slots(&shared, rx, opts.cores.max(1))?;
    let service = pb::executor_server::ExecutorServer::new(ExecutorService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let service =
        tonic::service::interceptor::InterceptedService::new(service, shared.auth.clone());
    let server = tls::server(opts.tls.as_deref())?;
    let incoming = {
        let _g = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(ClusterError::Runtime)?
    };
    runtime.spawn(async move {
        let mut server = server.layer(super::auth::RpcPathLayer);
        let served = server
            .add_service(service)
            .serve_with_incoming(tls::accepted(incoming))
            .await;
        if let Err(e) = served {
            tracing::error!("the executor service stopped: {e}");
        }
    });
    let address = match &opts.advertise {
        Some(host) => format!("{host}:{}", bound.port()),
        None => bound.to_string(),
    };
    if bound.ip().is_unspecified() && opts.advertise.is_none() {
        tracing::info!(
            "executor serving on {bound}, reached at the address the driver sees it connect \
             from, port {}",
            bound.port()
        );
    } else {
        tracing::info!("executor serving on {bound}, advertising {address}");
    }
    let result = runtime.block_on(control(shared.clone(), &opts, &work, address, &instance));
    shared.set_env(None);
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Registration, heartbeats and shutdown.
async fn control(
    shared: Arc<Shared>,
    opts: &ExecutorOptions,
    work: &WorkDir,
    address: String,
    instance: &str,
) -> Result<(), ClusterError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ClusterError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ClusterError::Runtime)?;
    let mut driver = shared.driver.clone();
    loop {
        let registered = tokio::select! {
            r = register(&mut driver, opts, &address, instance) => r?,
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        };
        let (id, interval) = registered;
        let env = new_env(&shared, opts, work, &id)?;
        shared.set_env(Some(env.clone()));
        let mut channel = tokio::spawn(task_channel(
            shared.clone(),
            driver.clone(),
            id.clone(),
            env.clone(),
        ));
        let mut tick = tokio::time::interval(interval);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = term.recv() => return drain(&shared, &mut driver, &id, &mut channel).await,
                _ = int.recv() => return drain(&shared, &mut driver, &id, &mut channel).await,
            }
            let hb = pb::HeartbeatRequest {
                executor_id: id.clone(),
                running_tasks: shared.busy.load(Ordering::Relaxed),
                draining: false,
            };
            match driver.heartbeat(hb).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if failures > 0 {
                        tracing::info!("driver reachable again");
                        failures = 0;
                    }
                    if r.reregister {
                        tracing::warn!(
                            "the driver does not know executor {id} (declared lost, or the \
                             driver restarted): dropping its state and registering anew"
                        );
                        shared.set_env(None);
                        channel.abort();
                        shared.channel.locked().take();
                        break;
                    }
                    apply_cleanups(&env, &r.cleanups);
                }
                Err(s) if s.code() == tonic::Code::Unauthenticated => {
                    return Err(ClusterError::Refused(s.message().to_string()))
                }
                Err(s) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!("heartbeat to {} failed: {}", opts.driver, s.message());
                    }
                }
            }
        }
    }
}

async fn register(
    driver: &mut DriverRpc,
    opts: &ExecutorOptions,
    address: &str,
    instance: &str,
) -> Result<(String, Duration), ClusterError> {
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        let req = pb::RegisterRequest {
            fingerprint: crate::exec::op::fingerprint(),
            address: address.to_string(),
            cores: opts.cores as u32,
            memory_bytes: opts.memory as u64,
            pid: std::process::id(),
            instance: instance.to_string(),
        };
        match driver.register(req).await {
            Ok(r) => {
                let r = r.into_inner();
                tracing::info!("registered with {} as {}", opts.driver, r.executor_id);
                let ms = u64::from(r.heartbeat_interval_ms.max(50));
                return Ok((r.executor_id, Duration::from_millis(ms)));
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unauthenticated | tonic::Code::FailedPrecondition
                ) =>
            {
                tracing::error!(
                    "the driver at {} refused this executor: {}",
                    opts.driver,
                    s.message()
                );
                return Err(ClusterError::Refused(s.message().to_string()));
            }
            Err(s) => {
                attempts += 1;
                if attempts == 1 || attempts.is_multiple_of(20) {
                    tracing::warn!(
                        "driver {} not reachable yet ({}); retrying",
                        opts.driver,
                        s.message()
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn new_env(
    shared: &Arc<Shared>,
    opts: &ExecutorOptions,
    work: &WorkDir,
    id: &str,
) -> Result<Arc<ExecutorEnv>, ClusterError> {
    let broadcasts = Arc::new(RemoteBroadcasts {
        runtime: shared.runtime.clone(),
        driver: shared.driver.clone(),
        executor_id: id.to_string(),
    });
    let mut env = ExecutorEnv::new_in(
        id.to_string(),
        MemoryBudgets {
            blocks: opts.memory,
            shuffle: opts.shuffle_memory,
        },
        broadcasts,
        &work.path,
    )
    .map_err(|source| ClusterError::Io {
        path: work.path.clone(),
        source,
    })?;
    env.fetcher = Some(Arc::new(RemoteFetcher {
        runtime: shared.runtime.clone(),
        creds: opts.credentials(),
        deadline: opts.fetch_deadline,
        peers: dashmap::DashMap::new(),
        lost: super::remote::LostPeers::default(),
    }));
    Ok(Arc::new(env))
}

fn apply_cleanups(env: &ExecutorEnv, cleanups: &[pb::Cleanup]) {
    for c in cleanups {
        match c.what {
            Some(pb::cleanup::What::Rdd(id)) => env.blocks.remove_rdd(id),
            Some(pb::cleanup::What::Shuffle(id)) => env.shuffle.remove_shuffle(id),
            Some(pb::cleanup::What::Broadcast(id)) => env.broadcasts.remove(id),
            Some(pb::cleanup::What::ExecutorLost(ref id)) => {
                if let Some(f) = &env.fetcher {
                    f.peer_lost(id);
                }
            }
            None => {}
        }
    }
}

/// Stops taking tasks, lets the running ones finish (up to a minute), closes the task channel
/// once the driver has their results, deregisters.
async fn drain(
    shared: &Shared,
    driver: &mut DriverRpc,
    id: &str,
    channel: &mut tokio::task::JoinHandle<()>,
) -> Result<(), ClusterError> {
    tracing::info!("shutting down: finishing running tasks");
    shared.draining.store(true, Ordering::SeqCst);
    let _ = driver
        .heartbeat(pb::HeartbeatRequest {
            executor_id: id.to_string(),
            running_tasks: shared.busy.load(Ordering::Relaxed),
            draining: true,
        })
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while shared.busy.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Our end closes after the results sent; the driver closes its end once it has read them.
    shared.channel.locked().take();
    if tokio::time::timeout(Duration::from_secs(10), &mut *channel)
        .await
        .is_err()
    {
        channel.abort();
    }
    let _ = driver
        .deregister(pb::DeregisterRequest {
            executor_id: id.to_string(),
        })
        .await;
    tracing::info!("executor {id} deregistered");
    Ok(())
}

/// The largest in-memory bucket a fetch encodes on the RPC runtime (a Dis-CNN gradient is 50 KB).
const INLINE_BUCKET: u64 = 256 << 10;

struct ExecutorService {
    shared: Arc<Shared>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::Chunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::executor_server::Executor for ExecutorService {
    type FetchShuffleStream = ChunkStream;

    async fn fetch_shuffle(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let r = req.into_inner();
        let env = self
            .shared
            .env()
            .ok_or_else(|| Status::not_found("executor is not registered"))?;
        // A small bucket in memory is served here; a spilled one is read from disk, and a large
        // one encoded, off the async runtime.
        let bucket = match env
            .shuffle
            .small_bucket(r.shuffle, r.map, r.reduce, INLINE_BUCKET)
        {
            Some(b) => b,
            None => {
                tokio::task::spawn_blocking(move || env.shuffle.bucket(r.shuffle, r.map, r.reduce))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
            }
        }
        .map_err(|f| Status::not_found(f.to_string()))?;
        self.shared
            .served_bytes
            .fetch_add(bucket.byte_len() as u64, Ordering::Relaxed);
        self.shared.served_fetches.fetch_add(1, Ordering::Relaxed);
        let n = bucket.chunks().len();
        let stream = tokio_stream::iter((0..n).map(move |i| {
            Ok(pb::Chunk {
                data: bucket.chunks()[i].clone(),
            })
        }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn stats(&self, _req: Request<pb::Empty>) -> Result<Response<pb::ExecutorStats>, Status> {
        Ok(Response::new(pb::ExecutorStats {
            shuffle_bytes_served: self.shared.served_bytes.load(Ordering::Relaxed),
            shuffle_fetches_served: self.shared.served_fetches.load(Ordering::Relaxed),
            tasks_run: self.shared.tasks_run.load(Ordering::Relaxed),
            shuffle_bytes_spilled: self
                .shared
                .env()
                .map_or(0, |env| env.shuffle.spilled_bytes()),
        }))
    }
}
