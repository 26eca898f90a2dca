//! The `executor` program (Spark's CoarseGrainedExecutorBackend): registers with the driver
//! (retrying with backoff while it is not up), heartbeats on the RPC runtime — never on a task
//! slot, so compute cannot starve it — runs tasks on N slot threads, keeps its shuffle output
//! and cached blocks, and serves shuffle buckets to other executors. Told to register anew (it
//! was declared lost, or the driver restarted), it drops all its state first: a driver never
//! trusts what an executor held before it was lost. On SIGTERM or Ctrl-C it stops taking
//! tasks, finishes the running ones and deregisters.

use super::auth::{Secret, ServerAuth};
use super::backend::{task_parts, TASKS_METHOD};
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
use tokio::sync::mpsc::UnboundedSender;
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
                report(&shared, w.task_id, result);
                shared.busy.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(ClusterError::Runtime)?;
    }
    Ok(())
}

/// Sends a task's result up the task channel. Without one (the channel broke, or this executor
/// is registering anew) the result is dropped: the driver has declared this executor lost and
/// re-runs the task elsewhere.
fn report(shared: &Shared, task_id: u64, result: Vec<u8>) {
    let sent = send(
        shared,
        task_parts(task_id, result)
            .into_iter()
            .map(pb::from_executor::What::Result),
    );
    if !sent {
        tracing::warn!("the result of task {task_id} was not sent: no task channel to the driver");
    }
}

/// Sends messages up the task channel; false when there is none.
fn send(shared: &Shared, what: impl IntoIterator<Item = pb::from_executor::What>) -> bool {
    let Some(tx) = shared.channel.locked().clone() else {
        return false;
    };
    what.into_iter()
        .all(|w| tx.send(pb::FromExecutor { what: Some(w) }).is_ok())
}

/// The task channel of registration `id` (the driver's `Tasks`): opened, with retries while the
/// driver cannot be reached; then tasks come down it until it closes. A channel that breaks
/// is not reopened: the driver has declared this executor lost, and its next heartbeat reply
/// says to register anew, which starts a new channel.
async fn task_channel(
    shared: Arc<Shared>,
    mut driver: DriverRpc,
    id: String,
    env: Arc<ExecutorEnv>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut attempts = 0u32;
    loop {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let hello = pb::from_executor::What::ExecutorId(id.clone());
        let _ = tx.send(pb::FromExecutor { what: Some(hello) });
        *shared.channel.locked() = Some(tx);
        let opened = driver
            .tasks(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await;
        match opened {
            Ok(r) => return serve_channel(&shared, &env, r.into_inner()).await,
            Err(s) => {
                shared.channel.locked().take();
                attempts += 1;
                if attempts == 1 || attempts.is_multiple_of(20) {
                    tracing::warn!("opening the task channel failed: {}", s.message());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Takes the tasks that come down an open task channel, after checking that the driver holds
/// the cluster's secret.
async fn serve_channel(
    shared: &Shared,
    env: &Arc<ExecutorEnv>,
    mut inbound: Streaming<pb::ToExecutor>,
) {
    use pb::to_executor::What;
    match inbound.message().await {
        Ok(Some(pb::ToExecutor {
            what: Some(What::Token(t)),
        })) => {
            let token = (!t.is_empty()).then_some(t.as_str());
            if let Err(why) = shared.auth.verify(token, TASKS_METHOD) {
                tracing::error!("refusing the driver's task channel: {why}");
                return;
            }
        }
        Ok(_) => {
            tracing::error!("the driver's task channel did not start with its token");
            return;
        }
        Err(s) => {
            tracing::warn!("the task channel broke: {}", s.message());
            return;
        }
    }
    let mut parts = chunks::Assembler::new(None);
    loop {
        let m = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(s) => {
                tracing::warn!("the task channel broke: {}", s.message());
                return;
            }
        };
        match m.what {
            Some(What::Broadcast(b)) => env.broadcasts.offer(b.id, b.data),
            Some(What::Task(p)) => match parts.push(p.task_id, p.data, p.last) {
                Ok(Some(bytes)) => accept(shared, env, p.task_id, bytes),
                Ok(None) => {}
                Err(s) => {
                    tracing::error!("task {} refused: {}", p.task_id, s.message());
                    refuse(shared, p.task_id, s.message(), false);
                }
            },
            Some(What::Token(_)) | None => {
                tracing::warn!("an unexpected message on the task channel: ignored");
            }
        }
    }
}

/// Queues a task for a slot, or refuses it.
fn accept(shared: &Shared, env: &Arc<ExecutorEnv>, task_id: u64, bytes: Vec<u8>) {
    if shared.draining.load(Ordering::SeqCst) {
        return refuse(shared, task_id, "executor is draining", true);
    }
    shared.busy.fetch_add(1, Ordering::SeqCst);
    let queued = shared.queue.locked().send(Work {
        env: env.clone(),
        task_id,
        bytes,
    });
    if queued.is_err() {
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        refuse(shared, task_id, "executor slots stopped", false);
    }
}

fn refuse(shared: &Shared, task_id: u64, reason: &str, draining: bool) {
    let r = pb::TaskRefused {
        task_id,
        reason: reason.to_string(),
        draining,
    };
    send(shared, [pb::from_executor::What::Refused(r)]);
}

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
