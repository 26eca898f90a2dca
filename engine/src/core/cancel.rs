//! Cancelling a context's jobs: a flag set once and never cleared, and the running job told at
//! once (through a waker it registered) instead of finding out at its next poll.

use crate::core::sync::Locked;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Waker = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    next: AtomicU64,
    wakers: Mutex<Vec<(u64, Waker)>>,
}

/// Set to cancel the running job and every later one of the contexts that share it. Clones
/// share one flag.
#[derive(Clone, Default)]
pub struct CancelToken(Arc<Inner>);

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels, and wakes whoever waits on it. Returns whether it was cancelled already.
    pub fn cancel(&self) -> bool {
        let was = self.0.cancelled.swap(true, Ordering::SeqCst);
        if !was {
            for (_, wake) in self.0.wakers.locked().iter() {
                wake();
            }
        }
        was
    }

    /// Whether `cancel` has been called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Calls `wake` when the token is cancelled — at once if it already is — until the returned
    /// guard is dropped. `wake` must not block: it runs on the cancelling thread.
    pub fn on_cancel(&self, wake: impl Fn() + Send + Sync + 'static) -> CancelWaker {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.0.wakers.locked().push((id, Box::new(wake)));
        // Registered before this check, so a cancel between the two is seen by one of them.
        if self.is_cancelled() {
            if let Some((_, w)) = self.0.wakers.locked().iter().find(|(i, _)| *i == id) {
                w();
            }
        }
        CancelWaker {
            token: self.clone(),
            id,
        }
    }
}

/// Unregisters its waker when dropped.
pub struct CancelWaker {
    token: CancelToken,
    id: u64,
}

impl Drop for CancelWaker {
    fn drop(&mut self) {
        self.token.0.wakers.locked().retain(|(i, _)| *i != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_waker_runs_once_on_cancel_or_at_once_when_late_and_not_after_its_guard_goes() {
        let token = CancelToken::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let guard = token.on_cancel(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!token.cancel());
        assert!(token.cancel());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        drop(guard);
        let h = hits.clone();
        let _late = token.clone().on_cancel(move || {
            h.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 11);
        assert!(token.0.wakers.lock().map(|w| w.len()).unwrap_or(0) == 1);
    }
}
