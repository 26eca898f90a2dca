//! The typed RDD handle and the lineage node behind it.
//!
//! An [`Rdd<T>`] is a typed view of an `RddNode`; the node holds the wire description of how
//! to compute a partition (`NodeKind`), its narrow parents and its shuffle dependencies.
//! Transformations only build nodes; actions hand the final node to the scheduler.

mod actions;
mod pair;
mod sources;
mod transform;

use crate::core::plan::{NodeKind, RddId, ShuffleId, ShuffleWriterSpec, WireNode};
use crate::core::sync::Locked;
use crate::driver::cleaner::{Cleaner, Cleanup};
use crate::driver::context::Context;
use crate::exec::storage::StorageLevel;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

pub use pair::{Grouped, HashPartitioner, IntoPartitioning, Outer, RangePartitioner};

pub(crate) struct RddNode {
    pub id: RddId,
    pub name: &'static str,
    pub callsite: String,
    pub num_partitions: usize,
    pub kind: NodeKind,
    pub parents: Vec<Arc<RddNode>>,
    pub shuffles: Vec<Arc<ShuffleDep>>,
    pub storage: Mutex<Option<StorageLevel>>,
    pub cleaner: Arc<Cleaner>,
    /// The op values this node was built from. The wire form holds their bytes; keeping the
    /// values keeps what they capture (broadcast and accumulator handles) alive as long as the
    /// RDD, as a Spark RDD keeps its closures.
    pub _ops: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl RddNode {
    pub fn storage(&self) -> Option<StorageLevel> {
        *self.storage.locked()
    }

    pub fn wire(&self) -> WireNode {
        WireNode {
            id: self.id,
            num_partitions: self.num_partitions as u32,
            kind: self.kind.clone(),
            storage: self.storage(),
        }
    }
}

impl Drop for RddNode {
    fn drop(&mut self) {
        if self.storage().is_some() {
            self.cleaner.push(Cleanup::Rdd(self.id));
        }
    }
}

/// The map side of a shuffle: which RDD is written, and how.
pub(crate) struct ShuffleDep {
    pub id: ShuffleId,
    pub parent: Arc<RddNode>,
    pub writer: ShuffleWriterSpec,
    pub cleaner: Arc<Cleaner>,
    pub placement: ReducePlacement,
}

/// Where the scheduler prefers to run a shuffle's reduce tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReducePlacement {
    /// Wherever a slot is free.
    Spread,
    /// On the executor of the first map task to finish with records for that reduce
    /// partition — the partition's leader (Dis-CNN's grouped aggregation).
    Leader,
}

impl Drop for ShuffleDep {
    fn drop(&mut self) {
        self.cleaner.push(Cleanup::Shuffle(self.id));
    }
}

/// A resilient distributed dataset of `T`: lazy, partitioned, rebuilt from lineage when lost.
pub struct Rdd<T> {
    pub(crate) ctx: Context,
    pub(crate) node: Arc<RddNode>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Rdd<T> {
    fn clone(&self) -> Self {
        Rdd {
            ctx: self.ctx.clone(),
            node: self.node.clone(),
            _t: PhantomData,
        }
    }
}

pub(crate) struct NodeSpec {
    pub name: &'static str,
    pub callsite: String,
    pub num_partitions: usize,
    pub kind: NodeKind,
    pub parents: Vec<Arc<RddNode>>,
    pub shuffles: Vec<Arc<ShuffleDep>>,
    pub ops: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

#[track_caller]
pub(crate) fn callsite(op: &str) -> String {
    let l = std::panic::Location::caller();
    format!("{op} at {}:{}", l.file(), l.line())
}

impl Context {
    pub(crate) fn make_rdd<T>(&self, spec: NodeSpec) -> Rdd<T> {
        let node = Arc::new(RddNode {
            id: self.inner.next_id(),
            name: spec.name,
            callsite: spec.callsite,
            num_partitions: spec.num_partitions,
            kind: spec.kind,
            parents: spec.parents,
            shuffles: spec.shuffles,
            storage: Mutex::new(None),
            cleaner: self.inner.cleaner.clone(),
            _ops: spec.ops,
        });
        Rdd {
            ctx: self.clone(),
            node,
            _t: PhantomData,
        }
    }

    pub(crate) fn shuffle_dep(
        &self,
        parent: &Arc<RddNode>,
        writer: ShuffleWriterSpec,
    ) -> Arc<ShuffleDep> {
        self.shuffle_dep_placed(parent, writer, ReducePlacement::Spread)
    }

    pub(crate) fn shuffle_dep_placed(
        &self,
        parent: &Arc<RddNode>,
        writer: ShuffleWriterSpec,
        placement: ReducePlacement,
    ) -> Arc<ShuffleDep> {
        let id = self.inner.next_id();
        self.inner.tracker.register(id, parent.num_partitions);
        Arc::new(ShuffleDep {
            id,
            parent: parent.clone(),
            writer,
            cleaner: self.inner.cleaner.clone(),
            placement,
        })
    }
}

impl<T> Rdd<T> {
    /// The RDD's id, unique in its context.
    pub fn id(&self) -> RddId {
        self.node.id
    }

    /// How many partitions it has.
    pub fn num_partitions(&self) -> usize {
        self.node.num_partitions
    }

    /// The context it belongs to.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Keeps partitions in the block manager once computed. Changing the level of an RDD that
    /// is already persisted is refused, as in Spark.
    pub fn persist(&self, level: StorageLevel) -> crate::core::error::Result<&Self> {
        let mut s = self.node.storage.locked();
        match *s {
            Some(old) if old != level => {
                Err(crate::core::error::EngineError::InvalidArgument(format!(
                    "rdd {} is already persisted at {old:?}; unpersist it first",
                    self.node.id
                )))
            }
            Some(_) => Ok(self),
            None => {
                *s = Some(level);
                drop(s);
                self.persisted(level);
                Ok(self)
            }
        }
    }

    fn persisted(&self, level: StorageLevel) {
        self.ctx
            .inner
            .post(crate::core::events::Event::RddPersisted {
                rdd: self.node.id,
                name: format!("{} at {}", self.node.name, self.node.callsite),
                num_partitions: self.node.num_partitions as u32,
                level: format!("{level:?}"),
            });
    }

    /// Keeps the partitions in memory once computed (`persist(MemoryOnly)`).
    pub fn cache(&self) -> &Self {
        let mut s = self.node.storage.locked();
        if s.is_none() {
            *s = Some(StorageLevel::MemoryOnly);
            drop(s);
            self.persisted(StorageLevel::MemoryOnly);
        }
        self
    }

    /// Stops caching and frees the cached blocks now.
    pub fn unpersist(&self) -> &Self {
        *self.node.storage.locked() = None;
        self.ctx
            .inner
            .post(crate::core::events::Event::RddUnpersisted { rdd: self.node.id });
        self.ctx.inner.env.blocks.remove_rdd(self.node.id);
        self.ctx
            .inner
            .backend
            .cleanup(&crate::driver::cleaner::Cleanup::Rdd(self.node.id));
        self
    }

    /// The storage level it is persisted at, if any.
    pub fn storage_level(&self) -> Option<StorageLevel> {
        self.node.storage()
    }

    /// Partitions of this RDD currently held by the block manager (in cluster mode: by live
    /// executors, as far as the driver knows).
    pub fn cached_partitions(&self) -> Vec<usize> {
        self.ctx.cached_partitions(self.node.id)
    }

    /// The lineage, one RDD a line, indented at each shuffle boundary (Spark's format).
    pub fn to_debug_string(&self) -> String {
        let mut out = String::new();
        debug_lines(&self.node, 0, Edge::Root, &mut out);
        out
    }
}

#[derive(Clone, Copy)]
enum Edge {
    Root,
    Narrow,
    Shuffle,
}

/// Spark's layout: a shuffle parent opens a deeper level with ` +-`, narrow parents continue
/// their level with `|  `.
fn debug_lines(node: &Arc<RddNode>, level: usize, edge: Edge, out: &mut String) {
    let prefix = match edge {
        Edge::Root => String::new(),
        Edge::Shuffle => format!("{}+-", " ".repeat(3 * (level - 1) + 1)),
        Edge::Narrow if level == 0 => "|  ".to_string(),
        Edge::Narrow => format!("{}|  ", " ".repeat(3 * level + 1)),
    };
    let storage = match node.storage() {
        Some(l) => format!("[{l}]"),
        None => "[]".to_string(),
    };
    let _ = writeln!(
        out,
        "{prefix}({}) {}[{}] {} {storage}",
        node.num_partitions, node.name, node.id, node.callsite
    );
    for p in &node.parents {
        debug_lines(p, level, Edge::Narrow, out);
    }
    for s in &node.shuffles {
        debug_lines(&s.parent, level + 1, Edge::Shuffle, out);
    }
}
