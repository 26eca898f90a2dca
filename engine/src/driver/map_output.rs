//! Which map outputs of each shuffle exist, and where (Spark's MapOutputTracker).

use crate::core::plan::ShuffleId;
use crate::core::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Maps of a shuffle whose bucket for one reduce partition is empty: (shuffle, reduce, maps).
pub(crate) type Empty = (ShuffleId, u32, Vec<u32>);

#[derive(Debug, Clone, Default)]
pub(crate) struct MapStatus {
    pub executor: String,
    pub bytes: u64,
    /// Bytes per reduce partition: 0 exactly when the bucket holds no record.
    pub buckets: Vec<u64>,
    /// Order of arrival among this tracker's outputs (set by `add_output`).
    pub finished: u64,
}

/// Which map outputs of each shuffle exist (Spark's MapOutputTracker). One lock over all
/// shuffles, not a sharded map: losing an executor removes its outputs from every shuffle at
/// once, and a stage deciding what is missing must not see half of that.
#[derive(Default)]
pub(crate) struct MapOutputTracker {
    shuffles: Mutex<HashMap<ShuffleId, Vec<Option<MapStatus>>>>,
    arrivals: std::sync::atomic::AtomicU64,
}

impl MapOutputTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ShuffleId, Vec<Option<MapStatus>>>> {
        self.shuffles.locked()
    }

    pub fn register(&self, shuffle: ShuffleId, num_maps: usize) {
        self.lock()
            .entry(shuffle)
            .or_insert_with(|| vec![None; num_maps]);
    }

    pub fn add_output(&self, shuffle: ShuffleId, map: usize, mut status: MapStatus) {
        status.finished = self
            .arrivals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(v) = self.lock().get_mut(&shuffle) {
            if map < v.len() {
                v[map] = Some(status);
            }
        }
    }

    /// The leader of a reduce partition: the executor of the first map output to arrive
    /// with records for it.
    pub fn leader(&self, shuffle: ShuffleId, reduce: usize) -> Option<String> {
        self.lock()
            .get(&shuffle)?
            .iter()
            .flatten()
            .filter(|s| s.buckets.get(reduce).is_some_and(|&b| b > 0))
            .min_by_key(|s| s.finished)
            .map(|s| s.executor.clone())
    }

    pub fn remove_output(&self, shuffle: ShuffleId, map: usize) {
        if let Some(v) = self.lock().get_mut(&shuffle) {
            if map < v.len() {
                v[map] = None;
            }
        }
    }

    /// After a fetch failure: the executor that held `map`'s output is assumed to have lost
    /// all its shuffle output (Spark does the same without an external shuffle service).
    pub fn remove_outputs_of_executor_holding(&self, shuffle: ShuffleId, map: usize) -> usize {
        let mut all = self.lock();
        let Some(executor) = all
            .get(&shuffle)
            .and_then(|v| v.get(map).cloned().flatten())
            .map(|s| s.executor)
        else {
            return 0;
        };
        let mut removed = 0;
        for outputs in all.values_mut() {
            for o in outputs.iter_mut() {
                if o.as_ref().is_some_and(|s| s.executor == executor) {
                    *o = None;
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Forgets every output held by an executor in `gone`.
    pub fn remove_executors(&self, gone: &HashSet<String>) -> usize {
        let mut removed = 0;
        for outputs in self.lock().values_mut() {
            for o in outputs.iter_mut() {
                if o.as_ref().is_some_and(|s| gone.contains(&s.executor)) {
                    *o = None;
                    removed += 1;
                }
            }
        }
        removed
    }

    /// The executor holding each map output of `shuffle` ("" where missing), and for each of
    /// `reduces` the maps whose bucket for it is empty, which a reducer need not fetch (Spark
    /// skips zero-size blocks too). Read under one lock: an output replaced in between would
    /// otherwise pair a new location with an old size.
    pub fn locations(&self, shuffle: ShuffleId, reduces: &[usize]) -> (Vec<String>, Vec<Empty>) {
        let st = self.lock();
        let Some(v) = st.get(&shuffle) else {
            return (Vec::new(), Vec::new());
        };
        let at = v
            .iter()
            .map(|s| s.as_ref().map(|s| s.executor.clone()).unwrap_or_default())
            .collect();
        let empty = reduces
            .iter()
            .map(|&r| {
                let maps = (0..v.len())
                    .filter(|&m| {
                        v[m].as_ref()
                            .is_some_and(|s| s.buckets.get(r).is_some_and(|&b| b == 0))
                    })
                    .map(|m| m as u32)
                    .collect();
                (shuffle, r as u32, maps)
            })
            .collect();
        (at, empty)
    }

    pub fn missing(&self, shuffle: ShuffleId) -> Option<Vec<usize>> {
        self.lock()
            .get(&shuffle)
            .map(|v| (0..v.len()).filter(|&i| v[i].is_none()).collect())
    }

    /// Bytes written by all registered map outputs.
    pub fn bytes(&self) -> u64 {
        self.lock()
            .values()
            .flat_map(|v| v.iter().flatten())
            .map(|s| s.bytes)
            .sum()
    }

    pub fn remove(&self, shuffle: ShuffleId) {
        self.lock().remove(&shuffle);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}
