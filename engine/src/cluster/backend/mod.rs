//! The driver's side of a cluster (Spark's CoarseGrainedSchedulerBackend): which executors are
//! registered and alive, which tasks run where, and where cached blocks live. The DAG scheduler
//! hands it encoded tasks; it places them on free slots (preferring executors that hold a
//! task's cached input), ships them down each executor's task channel, and routes each result
//! back to the scheduler. An executor that stops heartbeating, or whose task channel breaks, is
//! declared lost: its running tasks come back as `ExecutorLost` failures, which the scheduler
//! retries elsewhere.

mod channel;
mod dispatch;

use crate::core::sync::Locked;
use channel::ChannelTx;
pub(crate) use channel::{task_parts, TASKS_METHOD};
use dispatch::lost_result;

use super::auth::{ClientAuth, Secret};
use super::chunks::{self, MAX_MESSAGE};
use super::ClusterConfig;
use crate::core::codec;
use crate::core::error::TaskFailure;
use crate::core::events::Event;
use crate::core::plan::RddId;
use crate::core::task::{TaskMetrics, TaskResult};
use crate::driver::listener_bus::ListenerBus;
use crate::exec::broadcast::BroadcastManager;
use crate::exec::executor::Launch;
use discnn_proto::pb;
use pb::executor_client::ExecutorClient;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(crate) type ExecutorRpc = ExecutorClient<InterceptedService<Channel, ClientAuth>>;

/// Lost executors `driver status` shows (the most recently lost).
pub const KEEP_LOST_EXECUTORS: usize = 20;

/// Where an executor is in its life, as `driver status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorState {
    /// Registered and heartbeating; gets tasks.
    Alive,
    /// Shutting down on request: finishes its tasks, gets no new ones.
    Draining,
    /// Declared lost (missed heartbeats or a broken stream); its blocks and map outputs are
    /// gone.
    Lost,
    /// Left on request, after its tasks.
    Exited,
}

impl ExecutorState {
    /// The state's name in status output (`alive`, `draining`, `lost`, `exited`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorState::Alive => "alive",
            ExecutorState::Draining => "draining",
            ExecutorState::Lost => "lost",
            ExecutorState::Exited => "exited",
        }
    }
}

/// What `driver status` and tests see of an executor.
#[derive(Debug, Clone)]
pub struct ExecutorSummary {
    /// The executor's id.
    pub id: String,
    /// Where its block and shuffle service listens.
    pub address: String,
    /// Tasks it runs at once.
    pub cores: u32,
    /// Its process id on its host.
    pub pid: u32,
    /// Alive, draining, lost or exited.
    pub state: ExecutorState,
    /// Time since its last heartbeat.
    pub since_heartbeat: Duration,
    /// Tasks running on it now.
    pub running_tasks: u32,
    /// Tasks it has finished, successfully or not.
    pub tasks_finished: u64,
}

struct Executor {
    address: String,
    /// The audience its callers' tokens name (see `auth`).
    instance: String,
    cores: u32,
    pid: u32,
    free: u32,
    finished: u64,
    last_heartbeat: Instant,
    state: ExecutorState,
    rpc: ExecutorRpc,
    cleanups: Vec<pb::Cleanup>,
    /// Live broadcasts sent ahead to it with a task (`dispatch::broadcasts_to_send`).
    pushed: HashSet<u64>,
    /// Its task channel, once it has opened one (`channel`).
    channel: Option<ChannelTx>,
}

impl Executor {
    /// Whether new tasks may go to it: alive, with its task channel open.
    fn takes_tasks(&self) -> bool {
        self.state == ExecutorState::Alive && self.channel.is_some()
    }
}

struct Pending {
    launch: Launch,
    queued: Instant,
}

struct Running {
    executor: String,
    reply: std::sync::mpsc::Sender<(u64, Vec<u8>)>,
    /// The encoded task, kept until it is done: an executor that refuses it (draining) sends
    /// back only its id.
    bytes: Arc<Vec<u8>>,
}

/// The executors, the tasks queued and running, and who holds which block, under one lock (not
/// sharded maps): placing a task, an executor's loss and a result's arrival each change several
/// of them together, and the dispatcher must see them agree.
#[derive(Default)]
struct State {
    executors: BTreeMap<String, Executor>,
    registrations: u64,
    pending: VecDeque<Pending>,
    running: HashMap<u64, Running>,
    lost: HashSet<String>,
    blocks: HashMap<(RddId, usize), HashSet<String>>,
    idle_since: Option<Instant>,
    /// Results that arrived for a task no longer running there.
    late_results: u64,
}

/// The cluster-mode scheduler backend: the driver's view of its executors, the tasks it ships
/// them, the blocks and map outputs they hold.
pub struct ClusterBackend {
    pub(crate) config: ClusterConfig,
    pub(crate) address: SocketAddr,
    runtime: tokio::runtime::Handle,
    /// Everything the driver's server received.
    pub(crate) traffic: Arc<super::Traffic>,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
    broadcasts: Mutex<Vec<Weak<BroadcastManager>>>,
    /// The listener buses of the contexts on this cluster: each hears executors come and go.
    buses: Mutex<Vec<Weak<ListenerBus>>>,
    contexts: AtomicU64,
    /// Random per driver start and part of every executor id, so that an executor registered
    /// with a driver that has since restarted is unknown to the new one, never mistaken for
    /// an executor that registered with it under the same number.
    incarnation: u32,
}

impl ClusterBackend {
    pub(crate) fn new(
        config: ClusterConfig,
        address: SocketAddr,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(ClusterBackend {
            config,
            address,
            runtime,
            traffic: Arc::default(),
            state: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            broadcasts: Mutex::default(),
            buses: Mutex::default(),
            contexts: AtomicU64::new(1),
            incarnation: rand::random(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    /// The address executors and clients reach this driver at.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The cluster's shared secret, if it has one.
    pub fn secret(&self) -> Option<&Secret> {
        self.config.secret.as_ref()
    }

    /// A fresh id space for one context: contexts on one cluster never share an rdd, shuffle,
    /// broadcast or task id, because executors key their stores by those ids.
    pub(crate) fn next_id_base(&self) -> u64 {
        self.contexts.fetch_add(1, Ordering::Relaxed) << 40
    }

    pub(crate) fn attach_broadcasts(&self, m: &Arc<BroadcastManager>) {
        let mut v = self.broadcasts.locked();
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(m));
    }

    pub(crate) fn broadcast_bytes(&self, id: u64) -> Option<Arc<Vec<u8>>> {
        let v = self.broadcasts.locked();
        v.iter()
            .filter_map(Weak::upgrade)
            .find_map(|m| m.fetch_bytes(id))
    }

    /// Posts executor events to `bus` from now on, after an `ExecutorAdded` for each executor
    /// alive now.
    pub(crate) fn subscribe(&self, bus: &Arc<ListenerBus>) {
        let alive: Vec<Event> = {
            let st = self.lock();
            // Pushed under the state lock: an executor registering meanwhile is either in
            // `alive` or posted to this bus by `register`, not both.
            let mut buses = self.buses.locked();
            buses.retain(|w| w.strong_count() > 0);
            buses.push(Arc::downgrade(bus));
            st.executors
                .iter()
                .filter(|(_, e)| matches!(e.state, ExecutorState::Alive | ExecutorState::Draining))
                .map(|(id, e)| Event::ExecutorAdded {
                    executor: id.clone(),
                    address: e.address.clone(),
                    cores: e.cores as usize,
                })
                .collect()
        };
        for e in alive {
            bus.post(e);
        }
    }

    /// The buses of the contexts still alive.
    fn buses(&self) -> Vec<Arc<ListenerBus>> {
        self.buses
            .locked()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn post(&self, event: Event) {
        for b in self.buses() {
            b.post(event.clone());
        }
    }

    // ---- executors -------------------------------------------------------------------------

    pub(crate) fn register(
        &self,
        address: String,
        instance: String,
        cores: u32,
        pid: u32,
    ) -> Result<String, String> {
        let channel = super::tls::endpoint(&address, self.config.tls.as_deref())?.connect_lazy();
        let auth = ClientAuth::new(self.config.secret.clone(), instance.clone());
        let rpc = ExecutorClient::with_interceptor(channel, auth)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let mut st = self.lock();
        st.registrations += 1;
        let id = format!("exec-{}-{:08x}", st.registrations, self.incarnation);
        st.executors.insert(
            id.clone(),
            Executor {
                address: address.clone(),
                instance,
                cores: cores.max(1),
                pid,
                free: cores.max(1),
                finished: 0,
                last_heartbeat: Instant::now(),
                state: ExecutorState::Alive,
                rpc,
                cleanups: Vec::new(),
                pushed: HashSet::new(),
                channel: None,
            },
        );
        st.idle_since = None;
        let added = Event::ExecutorAdded {
            executor: id.clone(),
            address: address.clone(),
            cores: cores.max(1) as usize,
        };
        // Read before the state lock goes: see `subscribe`.
        let buses = self.buses();
        drop(st);
        for b in buses {
            b.post(added.clone());
        }
        tracing::info!("executor {id} registered from {address} with {cores} cores (pid {pid})");
        self.wake.notify_one();
        Ok(id)
    }

    /// Records a heartbeat; `None` tells the executor to register anew (unknown or lost).
    pub(crate) fn heartbeat(&self, id: &str, draining: bool) -> Option<Vec<pb::Cleanup>> {
        let mut st = self.lock();
        let e = st.executors.get_mut(id)?;
        let (cleanups, began_draining) = match e.state {
            ExecutorState::Alive | ExecutorState::Draining => {
                e.last_heartbeat = Instant::now();
                let began = draining && e.state == ExecutorState::Alive;
                if began {
                    tracing::info!("executor {id} is draining");
                    e.state = ExecutorState::Draining;
                }
                (std::mem::take(&mut e.cleanups), began)
            }
            ExecutorState::Lost | ExecutorState::Exited => return None,
        };
        drop(st);
        let executor = id.to_string();
        if began_draining {
            self.post(Event::ExecutorDraining {
                executor: executor.clone(),
            });
        }
        self.post(Event::ExecutorHeartbeat { executor });
        Some(cleanups)
    }

    pub(crate) fn deregister(&self, id: &str) {
        self.remove_executor(id, ExecutorState::Exited, "it deregistered");
    }

    /// Declares `id` lost: its running tasks fail with `ExecutorLost` and its blocks and shuffle
    /// outputs are forgotten. A later heartbeat from it is told to register anew.
    pub(crate) fn declare_lost(&self, id: &str, why: &str) {
        self.remove_executor(id, ExecutorState::Lost, why);
    }

    fn remove_executor(&self, id: &str, to: ExecutorState, why: &str) {
        let failed: Vec<(u64, Running)> = {
            let mut st = self.lock();
            let Some(e) = st.executors.get_mut(id) else {
                return;
            };
            if matches!(e.state, ExecutorState::Lost | ExecutorState::Exited) {
                return;
            }
            e.state = to;
            e.free = 0;

            st.lost.insert(id.to_string());
            for holders in st.blocks.values_mut() {
                holders.remove(id);
            }
            let ids: Vec<u64> = st
                .running
                .iter()
                .filter(|(_, r)| r.executor == id)
                .map(|(t, _)| *t)
                .collect();
            ids.into_iter()
                .filter_map(|t| st.running.remove(&t).map(|r| (t, r)))
                .collect()
        };
        self.post(Event::ExecutorRemoved {
            executor: id.to_string(),
            reason: why.to_string(),
            lost: to == ExecutorState::Lost,
        });
        if to == ExecutorState::Lost {
            // Reducers fetching from it would otherwise wait out their fetch deadline.
            self.cleanup(pb::cleanup::What::ExecutorLost(id.to_string()));
            tracing::warn!(
                "executor {id} lost: {why}; {} running task(s) will be retried",
                failed.len()
            );
        } else {
            tracing::info!("executor {id} left: {why}");
        }
        for (task_id, r) in failed {
            let _ = r.reply.send((task_id, lost_result(task_id, id)));
        }
        self.wake.notify_one();
    }

    /// Executors ever lost or gone: the scheduler drops their map outputs.
    pub(crate) fn gone_executors(&self) -> HashSet<String> {
        self.lock().lost.clone()
    }

    /// Every executor that is not lost, and the [`KEEP_LOST_EXECUTORS`] lost most recently.
    pub fn executors(&self) -> Vec<ExecutorSummary> {
        let st = self.lock();
        let now = Instant::now();
        let mut lost: Vec<Instant> = st
            .executors
            .values()
            .filter(|e| e.state == ExecutorState::Lost)
            .map(|e| e.last_heartbeat)
            .collect();
        lost.sort_unstable_by(|a, b| b.cmp(a));
        let oldest_shown = lost.get(KEEP_LOST_EXECUTORS.saturating_sub(1)).copied();
        st.executors
            .iter()
            .filter(|(_, e)| {
                e.state != ExecutorState::Lost || oldest_shown.is_none_or(|t| e.last_heartbeat >= t)
            })
            .map(|(id, e)| ExecutorSummary {
                id: id.clone(),
                address: e.address.clone(),
                cores: e.cores,
                pid: e.pid,
                state: e.state,
                since_heartbeat: now.duration_since(e.last_heartbeat),
                running_tasks: st.running.values().filter(|r| &r.executor == id).count() as u32,
                tasks_finished: e.finished,
            })
            .collect()
    }

    /// Executors alive now (draining ones included).
    pub fn alive_executors(&self) -> usize {
        self.lock()
            .executors
            .values()
            .filter(|e| e.state == ExecutorState::Alive)
            .count()
    }

    pub(crate) fn total_cores(&self) -> usize {
        self.lock()
            .executors
            .values()
            .filter(|e| e.state == ExecutorState::Alive)
            .map(|e| e.cores as usize)
            .sum()
    }

    /// Task results dropped because the attempt had been given up on (its executor declared
    /// lost, or its job over).
    pub fn late_results_dropped(&self) -> u64 {
        self.lock().late_results
    }

    /// Inbound RPCs and bytes of the driver's server so far.
    pub fn traffic(&self) -> super::TrafficSnapshot {
        self.traffic.snapshot()
    }

    /// Each live executor's own counters (tasks run, shuffle bytes it served to others).
    /// Blocks; call it from outside the RPC runtime.
    pub fn executor_stats(&self) -> Vec<(String, pb::ExecutorStats)> {
        let rpcs: Vec<(String, ExecutorRpc)> = self
            .lock()
            .executors
            .iter()
            .filter(|(_, e)| e.state == ExecutorState::Alive)
            .map(|(id, e)| (id.clone(), e.rpc.clone()))
            .collect();
        rpcs.into_iter()
            .filter_map(|(id, mut rpc)| {
                let got = self.runtime.block_on(async {
                    tokio::time::timeout(Duration::from_secs(5), rpc.stats(pb::Empty {})).await
                });
                match got {
                    Ok(Ok(r)) => Some((id, r.into_inner())),
                    _ => None,
                }
            })
            .collect()
    }

    /// Where executor `id` serves, and the audience a token for it names.
    pub(crate) fn address_of(&self, id: &str) -> Option<(String, String)> {
        self.lock()
            .executors
            .get(id)
            .map(|e| (e.address.clone(), e.instance.clone()))
    }

    // ---- blocks and cleanup ----------------------------------------------------------------

    pub(crate) fn blocks_stored(&self, executor: &str, blocks: &[(RddId, u32)]) {
        let mut st = self.lock();
        if st.lost.contains(executor) {
            return;
        }
        for &(rdd, p) in blocks {
            st.blocks
                .entry((rdd, p as usize))
                .or_default()
                .insert(executor.to_string());
        }
    }

    pub(crate) fn block_holders(&self, rdd: RddId, partition: usize) -> Vec<String> {
        self.lock()
            .blocks
            .get(&(rdd, partition))
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn cached_partitions(&self, rdd: RddId) -> Vec<usize> {
        let st = self.lock();
        let mut v: Vec<usize> = st
            .blocks
            .iter()
            .filter(|((r, _), h)| *r == rdd && !h.is_empty())
            .map(|((_, p), _)| *p)
            .collect();
        v.sort_unstable();
        v
    }

    /// Queues a cleanup for every live executor; it travels with their next heartbeat reply.
    pub(crate) fn cleanup(&self, c: pb::cleanup::What) {
        let mut st = self.lock();
        if let pb::cleanup::What::Rdd(rdd) = c {
            st.blocks.retain(|(r, _), _| *r != rdd);
        }
        for e in st.executors.values_mut() {
            if matches!(e.state, ExecutorState::Alive | ExecutorState::Draining) {
                e.cleanups.push(pb::Cleanup {
                    what: Some(c.clone()),
                });
            }
        }
    }

    // ---- tasks -----------------------------------------------------------------------------

    /// Queues a task and places what it can at once, on the caller's thread: a hop to the
    /// dispatcher's would add a thread wake-up to every task.
    pub(crate) fn launch(&self, launch: Launch) {
        self.lock().pending.push_back(Pending {
            launch,
            queued: Instant::now(),
        });
        self.dispatch();
    }

    /// Drops the tasks among `task_ids` that are still waiting for a slot.
    pub(crate) fn abandon(&self, task_ids: &[u64]) {
        let ids: HashSet<u64> = task_ids.iter().copied().collect();
        let mut st = self.lock();
        let before = st.pending.len();
        st.pending.retain(|p| !ids.contains(&p.launch.task_id));
        let dropped = before - st.pending.len();
        if dropped > 0 {
            tracing::info!("{dropped} queued task(s) of a cancelled job dropped");
        }
    }

    /// An executor's result for `task_id`. Results from an executor that no longer runs the
    /// task (it was declared lost, and the task was handed to another) are dropped.
    pub(crate) fn task_finished(&self, executor: &str, task_id: u64, bytes: Vec<u8>) {
        let reply = {
            let mut st = self.lock();
            match st.running.get(&task_id) {
                Some(r) if r.executor == executor => {}
                _ => {
                    // The task was re-run elsewhere (its executor was declared lost) or its job
                    // is over: only the attempt the scheduler is waiting for may answer.
                    st.late_results += 1;
                    tracing::info!("dropping a late result of task {task_id} from {executor}");
                    return;
                }
            }
            let r = st.running.remove(&task_id);
            if let Some(e) = st.executors.get_mut(executor) {
                e.finished += 1;
                if matches!(e.state, ExecutorState::Alive | ExecutorState::Draining) {
                    e.free = (e.free + 1).min(e.cores);
                }
            }
            r.map(|r| r.reply)
        };
        if let Some(reply) = reply {
            let _ = reply.send((task_id, bytes));
        }
        // A slot is free: a task waiting for one goes now.
        self.dispatch();
    }
}
