//! The context of one running task attempt, reachable from user code through
//! [`TaskContext::get`] (as in Spark). It collects accumulator updates and the first failure of
//! the attempt; iterators that cannot return an error (decoding inside a pipeline) record their
//! failure here and stop, and the task runner checks it before anything is committed.

use crate::core::error::TaskFailure;
use crate::core::plan::ShuffleId;
use crate::core::sync::Locked;
use crate::core::task::CachedBlock;
use crate::exec::accumulator::PartialValue;
use crate::exec::executor::{ExecutorEnv, ShuffleLocations};
use crate::exec::shuffle::Bucket;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The running task, as its ops may ask (`TaskContext::get()` inside an op).
pub struct TaskContext {
    pub(crate) stage: u64,
    pub(crate) partition: usize,
    pub(crate) attempt: u32,
    pub(crate) env: Arc<ExecutorEnv>,
    pub(crate) locations: ShuffleLocations,
    failure: Mutex<Option<TaskFailure>>,
    pub(crate) accumulators: Mutex<HashMap<u64, Box<dyn PartialValue>>>,
    /// Blocks this attempt stored, reported to the driver's block locations.
    pub(crate) cached: Mutex<Vec<CachedBlock>>,
    /// Shuffle input read so far: (bytes, records).
    pub(crate) shuffle_read: Mutex<(u64, u64)>,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<TaskContext>>> = const { RefCell::new(None) };
}

impl TaskContext {
    pub(crate) fn new(
        stage: u64,
        partition: usize,
        attempt: u32,
        env: Arc<ExecutorEnv>,
        locations: ShuffleLocations,
    ) -> Self {
        TaskContext {
            stage,
            partition,
            attempt,
            env,
            locations,
            failure: Mutex::new(None),
            accumulators: Mutex::new(HashMap::new()),
            cached: Mutex::new(Vec::new()),
            shuffle_read: Mutex::new((0, 0)),
        }
    }

    /// Reduce partition `reduce` of map output `map` of `shuffle`: from this executor's store
    /// when it holds it, else fetched from the executor the driver said holds it.
    pub(crate) fn fetch_bucket(
        &self,
        shuffle: ShuffleId,
        map: u32,
        reduce: u32,
    ) -> Result<Bucket, TaskFailure> {
        let bucket = self
            .env
            .fetch_bucket(&self.locations, shuffle, map, reduce)?;
        let mut read = self.shuffle_read.locked();
        read.0 += bucket.byte_len();
        read.1 += bucket.count() as u64;
        Ok(bucket)
    }

    /// The context of the task running on this thread, if any.
    pub fn get() -> Option<Arc<TaskContext>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// The stage the task belongs to.
    pub fn stage_id(&self) -> u64 {
        self.stage
    }

    /// The partition it computes.
    pub fn partition_id(&self) -> usize {
        self.partition
    }

    /// 0 for the first attempt of this partition in this stage attempt, then 1, 2, ...
    pub fn attempt_number(&self) -> u32 {
        self.attempt
    }

    /// The executor it runs on.
    pub fn executor_id(&self) -> &str {
        &self.env.executor_id
    }

    /// Fails the attempt as bad input (a corrupt record, say): not retried, and the job ends
    /// with exit code 2 and `message`, which should name the file and offset. For ops, whose
    /// `call` cannot return an error; what the op returns after this is discarded.
    pub fn fail_bad_input(&self, message: impl Into<String>) {
        self.fail(TaskFailure::BadInput {
            message: message.into(),
        });
    }

    /// Records the first failure of the attempt; later ones are dropped.
    pub(crate) fn fail(&self, failure: TaskFailure) {
        let mut slot = self.failure.locked();
        if slot.is_none() {
            *slot = Some(failure);
        }
    }

    pub(crate) fn take_failure(&self) -> Option<TaskFailure> {
        self.failure.locked().take()
    }

    /// Fails early if an iterator already recorded a failure.
    pub(crate) fn check(&self) -> Result<(), TaskFailure> {
        match self.failure.locked().clone() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Makes `tc` the current task context of this thread until the guard drops.
    pub(crate) fn enter(tc: &Arc<TaskContext>) -> CurrentGuard {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(tc.clone()));
        CurrentGuard { previous }
    }
}

pub(crate) struct CurrentGuard {
    previous: Option<Arc<TaskContext>>,
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}
