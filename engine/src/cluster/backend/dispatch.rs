//! The dispatcher: places pending tasks on free slots (delay scheduling toward preferred
//! executors) whenever a task is launched or a slot frees up, requeues refused tasks, and runs
//! a loop on the RPC runtime that watches heartbeats and retries what waits for locality.

use super::*;
use std::collections::hash_map::Entry;

/// A broadcast of at most this many encoded bytes travels with the first task each executor
/// gets after it is made, so that the task reads it without a fetch; larger ones are fetched
/// on first use.
const PUSH_EACH: usize = 256 << 10;
/// The most broadcast bytes one task launch carries.
const PUSH_LIMIT: usize = 1 << 20;

type Pushed = Vec<(u64, Arc<Vec<u8>>)>;

impl ClusterBackend {
    /// The dispatcher's loop: heartbeats, tasks whose locality wait has run out, and tasks that
    /// have waited out the grace period with no executor to take them.
    pub(crate) async fn run_dispatcher(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.wake.notified()).await;
            self.check_heartbeats();
            self.dispatch();
        }
    }

    fn check_heartbeats(&self) {
        let timeout = self.config.timings.heartbeat_timeout;
        let silent: Vec<(String, Duration)> = self
            .lock()
            .executors
            .iter()
            .filter(|(_, e)| matches!(e.state, ExecutorState::Alive | ExecutorState::Draining))
            .map(|(id, e)| (id.clone(), e.last_heartbeat.elapsed()))
            .filter(|(_, d)| *d > timeout)
            .collect();
        for (id, d) in silent {
            self.declare_lost(&id, &format!("no heartbeat for {:.1} s", d.as_secs_f64()));
        }
    }

    /// The small broadcasts of every context on this cluster.
    fn small_broadcasts(&self) -> Pushed {
        self.broadcasts
            .locked()
            .iter()
            .filter_map(Weak::upgrade)
            .flat_map(|m| m.small_values(PUSH_EACH))
            .collect()
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn place_tasks(&self) -> Vec<(String, ChannelTx, u64, Arc<Vec<u8>>, Pushed)> {
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            if st.pending.is_empty() {
                st.idle_since = None;
                return out;
            }
        }
        // Read before the state lock, which is never held while taking the broadcasts' lock.
        let small = self.small_broadcasts();
        let mut st = self.lock();
        let st = &mut *st;
        let alive = st.executors.values().any(Executor::takes_tasks);
        if !alive {
            if st.pending.is_empty() {
                st.idle_since = None;
                return out;
            }
            let since = *st.idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.config.timings.no_executor_grace {
                let waited = since.elapsed().as_secs();
                for p in st.pending.drain(..) {
                    let failure = TaskFailure::NoExecutors { waited_s: waited };
                    let _ = p
                        .launch
                        .reply
                        .send((p.launch.task_id, failed_result(p.launch.task_id, failure)));
                }
                st.idle_since = None;
            }
            return out;
        }
        st.idle_since = None;
        let mut keep = VecDeque::new();
        while let Some(p) = st.pending.pop_front() {
            match pick(&st.executors, &p, self.config.timings.locality_wait) {
                Some(id) => {
                    let Some((e, tx)) = st
                        .executors
                        .get_mut(&id)
                        .and_then(|e| e.channel.clone().map(|tx| (e, tx)))
                    else {
                        keep.push_back(p);
                        continue;
                    };
                    e.free -= 1;
                    let task_id = p.launch.task_id;
                    let push = broadcasts_to_send(&mut e.pushed, &small);
                    let bytes = Arc::new(p.launch.bytes);
                    out.push((id.clone(), tx, task_id, bytes.clone(), push));
                    st.running.insert(
                        task_id,
                        Running {
                            executor: id,
                            reply: p.launch.reply,
                            bytes,
                        },
                    );
                }
                None => keep.push_back(p),
            }
        }
        st.pending = keep;
        out
    }

    /// Puts a task that `executor` refused back in the queue, to go elsewhere; a draining
    /// executor gets no more.
    pub(super) fn requeue(&self, executor: &str, task_id: u64, draining: bool) {
        {
            let mut st = self.lock();
            let r = match st.running.entry(task_id) {
                Entry::Occupied(r) if r.get().executor == executor => r.remove(),
                _ => return,
            };
            if let Some(e) = st.executors.get_mut(executor) {
                if draining && e.state == ExecutorState::Alive {
                    e.state = ExecutorState::Draining;
                } else if e.state == ExecutorState::Alive {
                    e.free = (e.free + 1).min(e.cores);
                }
            }
            st.pending.push_front(Pending {
                launch: Launch {
                    task_id,
                    bytes: Arc::try_unwrap(r.bytes).unwrap_or_else(|b| (*b).clone()),
                    reply: r.reply,
                    preferred: Vec::new(),
                    avoid: vec![executor.to_string()],
                },
                queued: Instant::now(),
            });
        }
        self.dispatch();
    }
}

/// The broadcasts of `live` not yet sent to an executor that has been sent `sent`, as many as
/// fit in one launch, now marked sent; destroyed ones leave `sent`. Sending is an optimisation
/// only: a task whose broadcast did not come with it (a refused launch, an unpersist since)
/// fetches it.
fn broadcasts_to_send(sent: &mut HashSet<u64>, live: &Pushed) -> Pushed {
    let ids: HashSet<u64> = live.iter().map(|(id, _)| *id).collect();
    sent.retain(|id| ids.contains(id));
    let mut bytes = 0;
    let mut out = Vec::new();
    for (id, b) in live {
        if sent.contains(id) || bytes + b.len() > PUSH_LIMIT {
            continue;
        }
        bytes += b.len();
        sent.insert(*id);
        out.push((*id, b.clone()));
    }
    out
}

/// Where a pending task goes now, if anywhere: an executor holding its cached input when one is
/// free (waiting up to `locality_wait` for one to free up), else the live executor with the
/// most free slots that the task should not avoid.
fn pick(
    executors: &BTreeMap<String, Executor>,
    p: &Pending,
    locality_wait: Duration,
) -> Option<String> {
    let alive = |id: &String| executors.get(id).is_some_and(Executor::takes_tasks);
    let preferred: Vec<&String> = p.launch.preferred.iter().filter(|id| alive(id)).collect();
    if !preferred.is_empty() {
        if let Some(id) = preferred
            .iter()
            .find(|id| executors.get(id.as_str()).is_some_and(|e| e.free > 0))
        {
            return Some((*id).clone());
        }
        if p.queued.elapsed() < locality_wait {
            return None;
        }
    }
    let usable = |avoid: bool| {
        executors
            .iter()
            .filter(|(_, e)| e.takes_tasks() && e.free > 0)
            .filter(move |(id, _)| !avoid || !p.launch.avoid.contains(id))
            .max_by_key(|(id, e)| {
                (
                    e.free,
                    std::cmp::Reverse(e.finished),
                    std::cmp::Reverse(*id),
                )
            })
            .map(|(id, _)| id.clone())
    };
    let others_exist = executors
        .iter()
        .any(|(id, e)| e.takes_tasks() && !p.launch.avoid.contains(id));
    if others_exist {
        usable(true)
    } else {
        usable(false)
    }
}

fn failed_result(task_id: u64, failure: TaskFailure) -> Vec<u8> {
    let r = TaskResult {
        task_id,
        executor: String::new(),
        outcome: Err(failure),
        accumulators: Vec::new(),
        metrics: TaskMetrics::default(),
        cached: Vec::new(),
    };
    codec::encode(&r).unwrap_or_default()
}

pub(super) fn lost_result(task_id: u64, executor: &str) -> Vec<u8> {
    let r = TaskResult {
        task_id,
        executor: executor.to_string(),
        outcome: Err(TaskFailure::ExecutorLost {
            executor: executor.to_string(),
        }),
        accumulators: Vec::new(),
        metrics: TaskMetrics::default(),
        cached: Vec::new(),
    };
    codec::encode(&r).unwrap_or_default()
}
