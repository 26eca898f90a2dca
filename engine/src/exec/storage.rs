//! The block manager: cached RDD partitions keyed by (rdd, partition), bounded by a byte budget
//! with least-recently-used eviction. `MemoryAndDisk` blocks spill to the block manager's own
//! directory when evicted; `MemoryOnly` blocks are dropped and recomputed from lineage.

use crate::core::codec::{self, Data, FrameReader, Frames};
use crate::core::error::TaskFailure;
use crate::core::plan::RddId;
use crate::core::sync::Locked;
use crate::exec::stream::{typed, Records};

use dashmap::DashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::core::plan::StorageLevel;

/// A materialized partition that still knows its record type.
#[doc(hidden)]
pub trait TypedBlock: Send + Sync {
    fn records(&self) -> Records;
    fn encode_all(&self) -> Result<Frames, TaskFailure>;
    fn estimated_bytes(&self) -> usize;
}

pub(crate) struct VecBlock<T> {
    items: Arc<Vec<T>>,
    bytes: usize,
}

impl<T: Data> VecBlock<T> {
    pub fn new(items: Vec<T>) -> Self {
        // Like Spark's SizeEstimator, sample rather than measure every record.
        let n = items.len();
        let step = (n / 16).max(1);
        let (mut sampled, mut total) = (0usize, 0usize);
        for item in items.iter().step_by(step).take(16) {
            total += codec::encode(item).map(|b| b.len()).unwrap_or(0);
            sampled += 1;
        }
        let avg = total.checked_div(sampled).unwrap_or(0);
        let bytes = n * (avg + std::mem::size_of::<T>()) + 64;
        VecBlock {
            items: Arc::new(items),
            bytes,
        }
    }
}

impl<T: Data> TypedBlock for VecBlock<T> {
    fn records(&self) -> Records {
        let items = self.items.clone();
        typed((0..items.len()).map(move |i| items[i].clone()))
    }

    fn encode_all(&self) -> Result<Frames, TaskFailure> {
        let mut f = Frames::default();
        let mut buf = Vec::new();
        for item in self.items.iter() {
            buf.clear();
            codec::encode_into(item, &mut buf)?;
            f.push(&buf);
        }
        Ok(f)
    }

    fn estimated_bytes(&self) -> usize {
        self.bytes
    }
}

#[derive(Clone)]
pub(crate) enum Block {
    Typed(Arc<dyn TypedBlock>),
    Encoded(Arc<Frames>),
}

impl Block {
    pub fn records(&self) -> Records {
        match self {
            Block::Typed(t) => t.records(),
            Block::Encoded(f) => encoded_records(f.clone()),
        }
    }

    pub fn size(&self) -> usize {
        match self {
            Block::Typed(t) => t.estimated_bytes(),
            Block::Encoded(f) => f.byte_len() + 64,
        }
    }

    fn encode(&self) -> Result<Arc<Frames>, TaskFailure> {
        match self {
            Block::Typed(t) => Ok(Arc::new(t.encode_all()?)),
            Block::Encoded(f) => Ok(f.clone()),
        }
    }
}

/// Iterates the records of framed chunks (already validated when they were written).
pub(crate) fn encoded_records(frames: Arc<Frames>) -> Records {
    let (mut chunk, mut pos) = (0usize, 0usize);
    Records::Encoded(Box::new(std::iter::from_fn(move || loop {
        let c = frames.chunks().get(chunk)?;
        match FrameReader::new(&c[pos..]).next_frame() {
            Some(Ok(f)) => {
                pos += codec::frame_len(f.len());
                return Some(f.to_vec());
            }
            _ => {
                chunk += 1;
                pos = 0;
            }
        }
    })))
}

pub(crate) type BlockId = (RddId, usize);

struct MemEntry {
    block: Block,
    size: usize,
    level: StorageLevel,
    /// The block manager's clock at the last read: the LRU order.
    last_used: AtomicU64,
}

/// Counters for tests and the status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Blocks held in memory.
    pub memory_blocks: usize,
    /// Blocks held on disk.
    pub disk_blocks: usize,
    /// Bytes held in memory.
    pub memory_bytes: usize,
    /// Lookups that found their block.
    pub hits: u64,
    /// Blocks dropped to make room.
    pub evictions: u64,
    /// Blocks written to disk to make room.
    pub spills: u64,
}

/// Every task of an executor reads its cached input here, so a read takes no global lock: the
/// blocks sit in sharded maps and the LRU clock and counters are atomics. What changes the
/// bytes held — storing (and evicting to make room) and removing — holds `writes`, one lock,
/// because `used` must stay the sum of the memory blocks' sizes and an eviction picks its
/// victim among all blocks.
pub(crate) struct BlockManager {
    budget: usize,
    dir: tempfile::TempDir,
    memory: DashMap<BlockId, MemEntry>,
    disk: DashMap<BlockId, (PathBuf, usize)>,
    writes: Mutex<()>,
    used: AtomicUsize,
    clock: AtomicU64,
    hits: AtomicU64,
    evictions: AtomicU64,
    spills: AtomicU64,
}

impl BlockManager {
    /// A block manager spilling under `parent`.
    pub fn new_in(budget: usize, parent: &std::path::Path) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("discnn-blocks-")
            .tempdir_in(parent)?;
        Ok(BlockManager {
            budget,
            dir,
            memory: DashMap::new(),
            disk: DashMap::new(),
            writes: Mutex::new(()),
            used: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            spills: AtomicU64::new(0),
        })
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn get(&self, id: BlockId) -> Result<Option<Records>, TaskFailure> {
        if let Some(e) = self.memory.get(&id) {
            e.last_used.store(self.tick(), Ordering::Relaxed);
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(e.block.records()));
        }
        let Some(path) = self.disk.get(&id).map(|d| d.0.clone()) else {
            return Ok(None);
        };
        match std::fs::read(&path) {
            Ok(buf) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let count = codec::frames_to_vecs(&buf)?.len();
                Ok(Some(encoded_records(Arc::new(Frames::from_bytes(
                    buf, count,
                )))))
            }
            // A block file that vanished is a lost block: recompute it from lineage.
            Err(_) => {
                self.disk.remove(&id);
                Ok(None)
            }
        }
    }

    /// Stores a block; returns the bytes it holds (in memory, on disk), or `None` if it did not
    /// fit anywhere (then it is simply not cached).
    pub fn put(
        &self,
        id: BlockId,
        block: Block,
        level: StorageLevel,
    ) -> Result<Option<(u64, u64)>, TaskFailure> {
        if level == StorageLevel::DiskOnly {
            return self.write_disk(id, &block).map(|d| Some((0, d)));
        }
        let size = block.size();
        let mut spill = Vec::new();
        let stored = {
            let _writes = self.writes.locked();
            if let Some((_, old)) = self.memory.remove(&id) {
                self.used.fetch_sub(old.size, Ordering::Relaxed);
            }
            // Evict least recently used blocks of other RDDs until this one fits.
            while self.used.load(Ordering::Relaxed) + size > self.budget {
                let victim = self
                    .memory
                    .iter()
                    .filter(|e| e.key().0 != id.0)
                    .min_by_key(|e| e.last_used.load(Ordering::Relaxed))
                    .map(|e| *e.key());
                let Some(victim) = victim else { break };
                if let Some((_, e)) = self.memory.remove(&victim) {
                    self.used.fetch_sub(e.size, Ordering::Relaxed);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    if e.level == StorageLevel::MemoryAndDisk {
                        spill.push((victim, e.block));
                    }
                }
            }
            if self.used.load(Ordering::Relaxed) + size <= self.budget {
                self.used.fetch_add(size, Ordering::Relaxed);
                self.memory.insert(
                    id,
                    MemEntry {
                        block: block.clone(),
                        size,
                        level,
                        last_used: AtomicU64::new(self.tick()),
                    },
                );
                true
            } else {
                false
            }
        };
        for (victim, b) in spill {
            self.write_disk(victim, &b)?;
            self.spills.fetch_add(1, Ordering::Relaxed);
        }
        if !stored && level == StorageLevel::MemoryAndDisk {
            let d = self.write_disk(id, &block)?;
            return Ok(Some((0, d)));
        }
        Ok(stored.then_some((size as u64, 0)))
    }

    /// Writes a block to disk; returns its bytes there.
    fn write_disk(&self, id: BlockId, block: &Block) -> Result<u64, TaskFailure> {
        let frames = block.encode()?;
        let path = self.dir.path().join(format!("rdd_{}_{}", id.0, id.1));
        std::fs::write(&path, frames.chunks().concat())
            .map_err(|e| TaskFailure::io(path.display(), e))?;
        let bytes = frames.byte_len();
        self.disk.insert(id, (path, bytes));
        Ok(bytes as u64)
    }

    pub fn remove_rdd(&self, rdd: RddId) {
        let files: Vec<PathBuf> = {
            let _writes = self.writes.locked();
            self.memory.retain(|k, e| {
                if k.0 == rdd {
                    self.used.fetch_sub(e.size, Ordering::Relaxed);
                }
                k.0 != rdd
            });
            let keys: Vec<BlockId> = self
                .disk
                .iter()
                .map(|e| *e.key())
                .filter(|k| k.0 == rdd)
                .collect();
            keys.into_iter()
                .filter_map(|k| self.disk.remove(&k).map(|(_, (p, _))| p))
                .collect()
        };
        for f in files {
            let _ = std::fs::remove_file(f);
        }
    }

    /// Drops every block, as when an executor is lost (used by tests of recovery).
    pub fn clear(&self) {
        let mut rdds: Vec<RddId> = self
            .memory
            .iter()
            .map(|e| e.key().0)
            .chain(self.disk.iter().map(|e| e.key().0))
            .collect();
        rdds.sort_unstable();
        rdds.dedup();
        for r in rdds {
            self.remove_rdd(r);
        }
    }

    pub fn cached_partitions(&self, rdd: RddId) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .memory
            .iter()
            .map(|e| *e.key())
            .chain(self.disk.iter().map(|e| *e.key()))
            .filter(|k| k.0 == rdd)
            .map(|k| k.1)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn stats(&self) -> BlockStats {
        BlockStats {
            memory_blocks: self.memory.len(),
            disk_blocks: self.disk.len(),
            memory_bytes: self.used.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            spills: self.spills.load(Ordering::Relaxed),
        }
    }
}
