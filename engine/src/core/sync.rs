//! Locks that outlive a panic. A task's user code may panic while a thread holds one of the
//! engine's locks; the engine's own invariants never depend on a half-finished critical section
//! of user code (user code never runs under these locks), so a poisoned lock is taken as is
//! rather than turning one task's panic into every later task's.

use std::sync::{Mutex, MutexGuard};

pub trait Locked<T> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}
