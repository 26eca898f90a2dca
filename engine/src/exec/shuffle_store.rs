//! Where an executor keeps the map outputs it wrote until reducers have read them: in memory up
//! to a byte budget, then in files under its work directory (Spark's shuffle files, with the
//! index kept in memory). A spilled output keeps the chunk layout it was written with, so a
//! bucket read back from disk streams to a remote reducer in the same whole-pair chunks.

use crate::core::codec::Frames;
use crate::core::error::TaskFailure;
use crate::core::plan::ShuffleId;
use crate::core::sync::Locked;
use crate::exec::shuffle::{Bucket, MapOutput};
use dashmap::DashMap;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Key = (ShuffleId, u32);

/// A bucket on disk: its chunks as `(offset, length)` in the output's file.
struct SpilledBucket {
    chunks: Vec<(u64, usize)>,
    count: usize,
}

struct Spilled {
    path: PathBuf,
    buckets: Vec<SpilledBucket>,
    bytes: u64,
}

/// Reducers read buckets here concurrently (every reduce task, and remote executors' fetches),
/// so a read takes no global lock: outputs sit in sharded maps. What changes the bytes held —
/// storing an output, removing one — holds `writes`, one lock, so that the memory budget check
/// and the byte counts agree with the maps.
pub(crate) struct ShuffleStore {
    budget: u64,
    dir: tempfile::TempDir,
    memory: DashMap<Key, Arc<MapOutput>>,
    disk: DashMap<Key, Spilled>,
    writes: Mutex<()>,
    memory_bytes: AtomicU64,
    disk_bytes: AtomicU64,
}

impl ShuffleStore {
    /// A store holding up to `budget` bytes of map output in memory and spilling the rest
    /// under a fresh directory in `parent`.
    pub fn new_in(budget: usize, parent: &Path) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("discnn-shuffle-")
            .tempdir_in(parent)?;
        Ok(ShuffleStore {
            budget: budget as u64,
            dir,
            memory: DashMap::new(),
            disk: DashMap::new(),
            writes: Mutex::new(()),
            memory_bytes: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
        })
    }

    /// Forgets an output (the caller holds `writes`); returns its file, if it had one, for the
    /// caller to delete.
    fn remove(&self, key: &Key) -> Option<PathBuf> {
        if let Some((_, out)) = self.memory.remove(key) {
            self.memory_bytes.fetch_sub(out.bytes(), Ordering::Relaxed);
        }
        self.disk.remove(key).map(|(_, s)| {
            self.disk_bytes.fetch_sub(s.bytes, Ordering::Relaxed);
            s.path
        })
    }

    /// Keeps one map task's output (replacing an earlier attempt's); spills it to disk when it
    /// does not fit in what is left of the budget.
    pub fn put(&self, shuffle: ShuffleId, map: u32, out: MapOutput) -> Result<(), TaskFailure> {
        let key = (shuffle, map);
        let bytes = out.bytes();
        let stale = {
            let _writes = self.writes.locked();
            let stale = self.remove(&key);
            if self.memory_bytes.load(Ordering::Relaxed) + bytes <= self.budget {
                self.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
                self.memory.insert(key, Arc::new(out));
                drop(_writes);
                remove_file(stale);
                return Ok(());
            }
            stale
        };
        remove_file(stale);
        let path = self
            .dir
            .path()
            .join(format!("shuffle_{shuffle}_{map}.data"));
        let buckets = out
            .buckets
            .iter()
            .map(Bucket::encoded)
            .collect::<Result<Vec<_>, _>>()?;
        let spilled =
            write_spill(&path, &buckets).map_err(|e| TaskFailure::io(path.display(), e))?;
        tracing::debug!(shuffle, map, bytes, path = %path.display(), "map output spilled to disk");
        let _writes = self.writes.locked();
        self.disk_bytes.fetch_add(spilled.bytes, Ordering::Relaxed);
        self.disk.insert(key, spilled);
        Ok(())
    }

    /// One reduce partition's bucket of a map output, framed (for another executor), read back
    /// from disk if it was spilled.
    pub fn bucket(
        &self,
        shuffle: ShuffleId,
        map: u32,
        reduce: u32,
    ) -> Result<Arc<Frames>, TaskFailure> {
        self.read(shuffle, map, reduce)?.encoded()
    }

    /// The bucket's framed bytes when it is held in memory and at most `limit` bytes: cheap
    /// enough to hand out on the RPC runtime itself, with no hop to a blocking thread.
    pub fn small_bucket(
        &self,
        shuffle: ShuffleId,
        map: u32,
        reduce: u32,
        limit: u64,
    ) -> Option<Result<Arc<Frames>, TaskFailure>> {
        let bucket = self
            .memory
            .get(&(shuffle, map))?
            .buckets
            .get(reduce as usize)?
            .clone();
        (bucket.byte_len() <= limit).then(|| bucket.encoded())
    }

    /// One reduce partition's bucket of a map output as it is held: typed buckets stay typed.
    pub fn read(&self, shuffle: ShuffleId, map: u32, reduce: u32) -> Result<Bucket, TaskFailure> {
        let lost = |message: String| TaskFailure::FetchFailed {
            shuffle,
            map,
            message,
        };
        if let Some(out) = self.memory.get(&(shuffle, map)) {
            return out
                .buckets
                .get(reduce as usize)
                .cloned()
                .ok_or_else(|| lost(format!("no bucket {reduce}")));
        }
        let (path, layout) = {
            let spilled = self
                .disk
                .get(&(shuffle, map))
                .ok_or_else(|| lost("no such map output on this executor".into()))?;
            let b = spilled
                .buckets
                .get(reduce as usize)
                .ok_or_else(|| lost(format!("no bucket {reduce}")))?;
            (spilled.path.clone(), (b.chunks.clone(), b.count))
        };
        read_spill(&path, &layout.0, layout.1)
            .map(|f| Bucket::Encoded(Arc::new(f)))
            .map_err(|e| lost(format!("reading {}: {e}", path.display())))
    }

    pub fn remove_shuffle(&self, shuffle: ShuffleId) {
        self.remove_where(|(s, _)| *s == shuffle);
    }

    pub fn clear(&self) {
        self.remove_where(|_| true);
    }

    /// Forgets every output whose key `gone` picks, and deletes their files.
    fn remove_where(&self, gone: impl Fn(&Key) -> bool) {
        let files: Vec<PathBuf> = {
            let _writes = self.writes.locked();
            let keys: Vec<Key> = self
                .memory
                .iter()
                .map(|e| *e.key())
                .chain(self.disk.iter().map(|e| *e.key()))
                .filter(|k| gone(k))
                .collect();
            keys.iter().filter_map(|k| self.remove(k)).collect()
        };
        files.into_iter().for_each(|f| remove_file(Some(f)));
    }

    /// Map outputs held, in memory or on disk.
    pub fn len(&self) -> usize {
        self.memory.len() + self.disk.len()
    }

    /// Bytes of map output held, in memory or on disk.
    pub fn bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed) + self.disk_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of map output held on disk.
    pub fn spilled_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }
}

fn remove_file(path: Option<PathBuf>) {
    if let Some(p) = path {
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(path = %p.display(), error = %e, "could not delete a shuffle file");
        }
    }
}

fn write_spill(path: &Path, encoded: &[Arc<Frames>]) -> std::io::Result<Spilled> {
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    let mut offset = 0u64;
    let mut buckets = Vec::with_capacity(encoded.len());
    for bucket in encoded {
        let mut chunks = Vec::with_capacity(bucket.chunks().len());
        for c in bucket.chunks() {
            w.write_all(c)?;
            chunks.push((offset, c.len()));
            offset += c.len() as u64;
        }
        buckets.push(SpilledBucket {
            chunks,
            count: bucket.count,
        });
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_data()?;
    Ok(Spilled {
        path: path.to_path_buf(),
        buckets,
        bytes: offset,
    })
}

fn read_spill(path: &Path, chunks: &[(u64, usize)], count: usize) -> std::io::Result<Frames> {
    let mut f = std::fs::File::open(path)?;
    let mut out = Vec::with_capacity(chunks.len());
    for &(offset, len) in chunks {
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf)?;
        out.push(buf);
    }
    Ok(Frames::from_chunks(out, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(pairs_per_bucket: &[usize]) -> MapOutput {
        MapOutput {
            buckets: pairs_per_bucket
                .iter()
                .enumerate()
                .map(|(b, &n)| {
                    let mut f = Frames::default();
                    for i in 0..n {
                        f.push_pair(format!("k{b}-{i}").as_bytes(), &[b as u8; 3]);
                    }
                    Bucket::Encoded(Arc::new(f))
                })
                .collect(),
        }
    }

    fn frames(b: &Bucket) -> Frames {
        (*b.encoded().unwrap()).clone()
    }

    #[test]
    fn outputs_past_the_budget_spill_and_read_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        let a = output(&[10, 0, 3]);
        let budget = a.bytes() as usize;
        let store = ShuffleStore::new_in(budget, dir.path()).unwrap();
        let expect_a: Vec<Frames> = a.buckets.iter().map(frames).collect();
        store.put(7, 0, a).unwrap();
        assert_eq!(store.spilled_bytes(), 0);
        let b = output(&[5, 5, 5]);
        let expect_b: Vec<Frames> = b.buckets.iter().map(frames).collect();
        let b_bytes = b.bytes();
        store.put(7, 1, b).unwrap();
        assert_eq!(store.spilled_bytes(), b_bytes);
        assert_eq!(store.len(), 2);
        for r in 0..3u32 {
            assert_eq!(*store.bucket(7, 0, r).unwrap(), expect_a[r as usize]);
            assert_eq!(*store.bucket(7, 1, r).unwrap(), expect_b[r as usize]);
        }
        assert!(matches!(
            store.bucket(7, 1, 3),
            Err(TaskFailure::FetchFailed { .. })
        ));
        let files = || std::fs::read_dir(store.dir.path()).unwrap().count();
        assert_eq!(files(), 1);
        store.remove_shuffle(7);
        assert_eq!((store.len(), store.bytes(), files()), (0, 0, 0));
    }

    #[test]
    fn a_lost_spill_file_is_a_fetch_failure_and_a_rerun_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ShuffleStore::new_in(0, dir.path()).unwrap();
        store.put(1, 0, output(&[4])).unwrap();
        for e in std::fs::read_dir(store.dir.path()).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        match store.bucket(1, 0, 0) {
            Err(TaskFailure::FetchFailed { message, .. }) => {
                assert!(message.contains("shuffle_1_0.data"), "{message}")
            }
            other => panic!("expected a fetch failure, got {other:?}"),
        }
        store.put(1, 0, output(&[2])).unwrap();
        assert_eq!(store.bucket(1, 0, 0).unwrap().count, 2);
        store.clear();
        assert_eq!(store.len(), 0);
    }
}
