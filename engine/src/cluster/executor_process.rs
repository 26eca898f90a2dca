//! The `executor` program (Spark's CoarseGrainedExecutorBackend): registers with the driver
//! (retrying with backoff while it is not up), heartbeats on the RPC runtime — never on a task
//! slot, so compute cannot starve it — runs tasks on N slot threads, keeps its shuffle output
//! and cached blocks, and serves shuffle buckets to other executors. Told to register anew (it
//! was declared lost, or the driver restarted), it drops all its state first: a driver never
//! trusts what an executor held before it was lost. On SIGTERM or Ctrl-C it stops taking
//! tasks, finishes the running ones and deregisters.

use super::auth::{Secret, ServerAuth};
use super::chunks::{self, MAX_MESSAGE};
use super::remote::{self, DriverRpc, RemoteBroadcasts, RemoteFetcher};
use super::tls::{self, Tls};
use super::{ClusterError, Credentials};
use crate::core::sync::Locked;
use crate::exec::executor::{run_task, ExecutorEnv, MemoryBudgets};
use discnn_proto::pb;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

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
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        ServerAuth::new(opts.secret.clone(), "executor", instance.clone()),
    );
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
        let mut tick = tokio::time::interval(interval);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = term.recv() => return drain(&shared, &mut driver, &id).await,
                _ = int.recv() => return drain(&shared, &mut driver, &id).await,
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

/// Stops taking tasks, lets the running ones finish (up to a minute), deregisters.
async fn drain(shared: &Shared, driver: &mut DriverRpc, id: &str) -> Result<(), ClusterError> {
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
    let _ = driver
        .deregister(pb::DeregisterRequest {
            executor_id: id.to_string(),
        })
        .await;
    tracing::info!("executor {id} deregistered");
    Ok(())
}

fn start_slots(shared: &Arc<Shared>, rx: Receiver<Work>, n: usize) -> Result<(), ClusterError> {
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("discnn-slot-{i}"))
            .spawn(move || loop {
                let next = rx.locked().recv();
                let Ok(w) = next else { return };
                let result = run_task(&w.env, w.task_id, &w.bytes);
                shared.tasks_run.fetch_add(1, Ordering::Relaxed);
                report(&shared, &w.env.executor_id, w.task_id, result);
                shared.busy.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(ClusterError::Runtime)?;
    }
    Ok(())
}

/// Sends a task's result to the driver, retrying a few times (the driver may be restarting;
/// if it never answers, the task is re-run elsewhere once this executor is declared lost).
fn report(shared: &Shared, executor: &str, task_id: u64, result: Vec<u8>) {
    let mut driver = shared.driver.clone();
    for attempt in 0..5u32 {
        let parts: Vec<pb::TaskResultPart> = chunks::split(&result)
            .into_iter()
            .map(|data| pb::TaskResultPart {
                executor_id: executor.to_string(),
                task_id,
                data,
            })
            .collect();
        let sent = shared
            .runtime
            .block_on(driver.task_finished(tokio_stream::iter(parts)));
        match sent {
            Ok(_) => return,
            Err(s) => {
                tracing::warn!(
                    "reporting task {task_id} failed (attempt {attempt}): {}",
                    s.message()
                );
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
        }
    }
}

struct ExecutorService {
    shared: Arc<Shared>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::Chunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::executor_server::Executor for ExecutorService {
    async fn launch_task(
        &self,
        req: Request<Streaming<pb::LaunchTaskPart>>,
    ) -> Result<Response<pb::Empty>, Status> {
        let mut task_id = 0;
        let mut pushed = Vec::new();
        let peer = req.remote_addr().map(|a| a.ip());
        let bytes = chunks::collect(
            peer,
            req.into_inner(),
            |m| std::mem::take(&mut m.data),
            |m| {
                task_id = m.task_id;
                pushed = std::mem::take(&mut m.broadcasts);
            },
        )
        .await?;
        if self.shared.draining.load(Ordering::SeqCst) {
            return Err(Status::failed_precondition("executor is draining"));
        }
        // The driver may send a task in the moment between accepting the registration and this
        // executor setting up its stores for the new id.
        let mut env = self.shared.env();
        for _ in 0..500 {
            if env.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            env = self.shared.env();
        }
        let env = env.ok_or_else(|| Status::failed_precondition("executor is not registered"))?;
        for b in pushed {
            env.broadcasts.offer(b.id, b.data);
        }
        self.shared.busy.fetch_add(1, Ordering::SeqCst);
        let queued = self.shared.queue.locked().send(Work {
            env,
            task_id,
            bytes,
        });
        if queued.is_err() {
            self.shared.busy.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::unavailable("executor slots stopped"));
        }
        Ok(Response::new(pb::Empty {}))
    }

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
        // A spilled bucket is read from disk off the async runtime.
        let bucket =
            tokio::task::spawn_blocking(move || env.shuffle.bucket(r.shuffle, r.map, r.reduce))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
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

/// This executor's own directory: `executor-<pid>-<random>` under `--work-dir` (or the system
/// temporary directory), marked with a `.discnn-executor` file holding the pid. At start-up,
/// directories marked by executors whose process is gone are swept; nothing unmarked is touched.
struct WorkDir {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

const MARKER: &str = ".discnn-executor";

impl WorkDir {
    fn create(parent: Option<&Path>) -> Result<WorkDir, ClusterError> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let io = |path: &Path, source| ClusterError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        sweep(&parent);
        let dir = tempfile::Builder::new()
            .prefix(&format!("executor-{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|e| io(&parent, e))?;
        // Written whole under another name, then renamed: an executor sweeping at the same
        // moment sees either no marker or a complete one, never an empty file.
        let marker = dir.path().join(MARKER);
        let partial = dir.path().join(".discnn-executor.partial");
        std::fs::write(&partial, std::process::id().to_string()).map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, &marker).map_err(|e| io(&marker, e))?;
        Ok(WorkDir {
            path: dir.path().to_path_buf(),
            _dir: dir,
        })
    }
}

fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let marker = e.path().join(MARKER);
        let Ok(pid) = std::fs::read_to_string(&marker) else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!("removing {} left by a dead executor", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
