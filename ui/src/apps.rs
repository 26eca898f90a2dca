//! Where a UI finds its applications: live ones (each context of this process registers a store
//! when it starts) or a directory of event logs (the history server).

use crate::eventlog;
use crate::metrics::Metrics;
use crate::store::AppStore;
use discnn_engine::events::{Listener, ListenerFactories};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Applications a UI can show.
pub trait Applications: Send + Sync {
    /// Every application, oldest first.
    fn list(&self) -> Vec<Arc<AppStore>>;
    /// One application by id.
    fn get(&self, id: &str) -> Option<Arc<AppStore>> {
        self.list().into_iter().find(|a| a.id() == id)
    }
    /// The recorder durations go to.
    fn metrics(&self) -> &Arc<Metrics>;
}

/// Ended applications a live UI keeps (a long-lived `driver serve` runs many).
pub const RETAINED_APPLICATIONS: usize = 50;

/// The applications of this process, as their contexts start.
#[derive(Default)]
pub struct LiveApps {
    apps: Mutex<Vec<Arc<AppStore>>>,
    metrics: Arc<Metrics>,
}

impl LiveApps {
    /// Listener factories that register each new context's store here.
    pub fn factory(self: &Arc<Self>) -> ListenerFactories {
        let me = self.clone();
        let mut f = ListenerFactories::default();
        f.push(move || {
            let store = Arc::new(AppStore::new(Some(me.metrics.clone())));
            let mut apps = me.apps.lock().unwrap_or_else(|p| p.into_inner());
            apps.push(store.clone());
            while apps.len() > RETAINED_APPLICATIONS {
                match apps.iter().position(|a| !a.state().running()) {
                    Some(i) => {
                        apps.remove(i);
                    }
                    None => break,
                }
            }
            store as Arc<dyn Listener>
        });
        f
    }
}

impl Applications for LiveApps {
    fn list(&self) -> Vec<Arc<AppStore>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// A replayed log and what it was replayed from.
struct Replayed {
    len: u64,
    modified: Option<SystemTime>,
    store: Arc<AppStore>,
}

/// The applications of a directory of event logs, finished or still being written. A log is
/// replayed again when its size or time changes, at most once per `refresh`.
pub struct HistoryApps {
    dir: PathBuf,
    refresh: Duration,
    cache: Mutex<(Option<Instant>, HashMap<PathBuf, Replayed>)>,
    metrics: Arc<Metrics>,
}

impl HistoryApps {
    /// The logs in `dir`.
    pub fn new(dir: &Path) -> Self {
        HistoryApps {
            dir: dir.to_path_buf(),
            refresh: Duration::from_secs(1),
            cache: Mutex::new((None, HashMap::new())),
            metrics: Arc::new(Metrics::default()),
        }
    }

    fn rescan(&self, cache: &mut HashMap<PathBuf, Replayed>) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("event log directory {}: {e}", self.dir.display());
                return;
            }
        };
        let mut seen = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if !eventlog::is_event_log(&path) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let (len, modified) = (meta.len(), meta.modified().ok());
            seen.push(path.clone());
            if cache
                .get(&path)
                .is_some_and(|r| r.len == len && r.modified == modified)
            {
                continue;
            }
            match eventlog::read(&path) {
                Ok(events) => {
                    let store = Arc::new(AppStore::new(None));
                    for p in &events {
                        store.on_posted(p);
                    }
                    cache.insert(
                        path,
                        Replayed {
                            len,
                            modified,
                            store,
                        },
                    );
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        // A finished log replaces its `.inprogress` file: forget paths that went.
        cache.retain(|p, _| seen.contains(p));
    }
}

impl Applications for HistoryApps {
    fn list(&self) -> Vec<Arc<AppStore>> {
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (last, cache) = &mut *guard;
        if last.is_none_or(|t| t.elapsed() >= self.refresh) {
            self.rescan(cache);
            *last = Some(Instant::now());
        }
        let mut apps: Vec<Arc<AppStore>> = cache
            .values()
            .map(|r| r.store.clone())
            .filter(|s| !s.id().is_empty())
            .collect();
        apps.sort_by_key(|s| (s.state().start_ms, s.id()));
        apps
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}
