//! Broadcast variables: encoded once on the driver, fetched at most once per executor (the first
//! task that reads one fetches it; the others wait for that fetch), decoded once there and shared
//! by every task of that executor. A cluster sends small ones ahead with the next task each
//! executor gets (`BroadcastCache::offer`), so that the task's first read fetches nothing.

use crate::core::codec::{self, Data};
use crate::core::error::{EngineError, TaskFailure};
use crate::core::sync::Locked;
use crate::exec::task_context::TaskContext;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where executors fetch broadcast bytes from (the driver).
pub(crate) trait BroadcastSource: Send + Sync {
    fn fetch(&self, id: u64) -> Result<Arc<Vec<u8>>, TaskFailure>;
}

/// The driver's broadcast values.
#[derive(Default)]
pub(crate) struct BroadcastManager {
    /// Read by every executor's first task that uses a broadcast, concurrently: a sharded map.
    values: DashMap<u64, Arc<Vec<u8>>>,
    fetches: AtomicU64,
}

impl BroadcastManager {
    pub fn put(&self, id: u64, bytes: Vec<u8>) {
        self.values.insert(id, Arc::new(bytes));
    }

    pub fn remove(&self, id: u64) {
        self.values.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The encoded value, for a remote executor's fetch (counted like a local one).
    pub fn fetch_bytes(&self, id: u64) -> Option<Arc<Vec<u8>>> {
        let v = self.values.get(&id).map(|v| v.clone());
        if v.is_some() {
            self.fetches.fetch_add(1, Ordering::Relaxed);
        }
        v
    }

    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The values of at most `max` encoded bytes, which a cluster sends ahead with tasks.
    pub fn small_values(&self, max: usize) -> Vec<(u64, Arc<Vec<u8>>)> {
        self.values
            .iter()
            .filter(|e| e.value().len() <= max)
            .map(|e| (*e.key(), e.value().clone()))
            .collect()
    }
}

impl BroadcastSource for BroadcastManager {
    fn fetch(&self, id: u64) -> Result<Arc<Vec<u8>>, TaskFailure> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.values
            .get(&id)
            .map(|v| v.clone())
            .ok_or_else(|| TaskFailure::BadInput {
                message: format!("broadcast {id} was destroyed"),
            })
    }
}

type Slot = Arc<Mutex<Option<Arc<dyn Any + Send + Sync>>>>;

/// An executor's decoded copies.
pub(crate) struct BroadcastCache {
    /// Every task of the executor looks its broadcasts up here: a sharded map. A slot's own
    /// mutex makes the tasks that want one value wait for the single fetch of it.
    slots: DashMap<u64, Slot>,
    /// Encoded values the driver sent ahead with a task (cluster mode), decoded on first use
    /// instead of fetched.
    pushed: DashMap<u64, Vec<u8>>,
    source: Arc<dyn BroadcastSource>,
}

impl BroadcastCache {
    pub fn new(source: Arc<dyn BroadcastSource>) -> Self {
        BroadcastCache {
            slots: DashMap::new(),
            pushed: DashMap::new(),
            source,
        }
    }

    /// Keeps a value the driver sent ahead, unless this executor has it decoded already.
    pub fn offer(&self, id: u64, bytes: Vec<u8>) {
        // Cloned out so that no shard is held while waiting for a fetch in progress.
        let slot = self.slots.get(&id).map(|s| s.clone());
        if slot.is_some_and(|s| s.locked().is_some()) {
            return;
        }
        self.pushed.insert(id, bytes);
    }

    pub fn get<T: Data>(&self, id: u64) -> Result<Arc<T>, TaskFailure> {
        // Cloned out before the slot is locked: the map's shard is not held during a fetch.
        let slot = self.slots.entry(id).or_default().clone();
        let mut value = slot.locked();
        if value.is_none() {
            let v: T = match self.pushed.remove(&id) {
                Some((_, bytes)) => codec::decode(&bytes)?,
                None => codec::decode(&self.source.fetch(id)?)?,
            };
            *value = Some(Arc::new(v));
        }
        let any = value
            .clone()
            .ok_or_else(|| TaskFailure::plan("broadcast slot empty"))?;
        any.downcast::<T>().map_err(|_| {
            TaskFailure::plan(format!(
                "broadcast {id} is not a {}",
                std::any::type_name::<T>()
            ))
        })
    }

    pub fn remove(&self, id: u64) {
        self.slots.remove(&id);
        self.pushed.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

/// What a broadcast's owner is asked to do with its value everywhere.
pub(crate) enum Release {
    /// Remove it: tasks that read it afterwards fail.
    Destroy,
    /// Drop the executors' copies; they fetch it again on next use.
    Unpersist,
}

/// The driver side that frees a broadcast (its cleaner). Kept as a trait so that this layer,
/// which only reads broadcasts, does not import the driver.
pub(crate) trait BroadcastOwner: Send + Sync {
    /// Queues a release. Called from `Drop`, so it must not block on anything but its queue.
    fn release(&self, id: u64, how: Release);
    /// Carries out queued releases now.
    fn flush(&self);
}

pub(crate) struct BroadcastHandle<T> {
    pub id: u64,
    pub value: Arc<T>,
    pub owner: Arc<dyn BroadcastOwner>,
}

impl<T> Drop for BroadcastHandle<T> {
    fn drop(&mut self) {
        self.owner.release(self.id, Release::Destroy);
    }
}

/// A read-only value shipped once per executor. Captured in an op it travels as its id.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Broadcast<T: Data> {
    id: u64,
    #[serde(skip)]
    handle: Option<Arc<BroadcastHandle<T>>>,
}

impl<T: Data> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Broadcast {
            id: self.id,
            handle: self.handle.clone(),
        }
    }
}

impl<T: Data> Broadcast<T> {
    pub(crate) fn new(handle: Arc<BroadcastHandle<T>>) -> Self {
        Broadcast {
            id: handle.id,
            handle: Some(handle),
        }
    }

    /// The broadcast's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The value: inside a task, the executor's copy (fetched on first use); on the driver,
    /// the driver's own.
    pub fn try_value(&self) -> Result<Arc<T>, EngineError> {
        if let Some(tc) = TaskContext::get() {
            return Ok(tc.env.broadcasts.get::<T>(self.id)?);
        }
        match &self.handle {
            Some(h) => Ok(h.value.clone()),
            None => Err(EngineError::InvalidArgument(format!(
                "broadcast {} read outside a task and without the driver's handle",
                self.id
            ))),
        }
    }

    /// Like [`try_value`](Self::try_value); inside a task a failure fails the task.
    pub fn value(&self) -> Arc<T> {
        match self.try_value() {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// Drops the executors' copies; they fetch again on next use.
    pub fn unpersist(&self) {
        if let Some(h) = &self.handle {
            h.owner.release(self.id, Release::Unpersist);
            h.owner.flush();
        }
    }

    /// Removes the value everywhere; tasks that read it afterwards fail.
    pub fn destroy(self) {
        if let Some(h) = &self.handle {
            h.owner.release(self.id, Release::Destroy);
            h.owner.flush();
        }
    }
}
