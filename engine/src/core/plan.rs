//! The wire form of lineage. A task carries the nodes of its stage (the narrow lineage from its
//! root back to shuffle boundaries, cached nodes included so a lost block can be recomputed),
//! and what to do with the root's records. Nothing here is generic: user code appears only as
//! [`OpRef`]s and key types only as names, resolved on the executor through the registry.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An RDD's id, unique in its context.
pub type RddId = u64;
/// A shuffle dependency's id, unique in its context.
pub type ShuffleId = u64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireNode {
    pub id: RddId,
    pub num_partitions: u32,
    pub kind: NodeKind,
    pub storage: Option<StorageLevel>,
}

/// A byte range of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileSplit {
    pub path: String,
    pub start: u64,
    pub len: u64,
    /// A compressed file, read whole by one task.
    pub gzip: bool,
}

/// An op with the zero value some aggregations start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AggSpec {
    pub op: OpRef,
    #[serde(with = "serde_bytes")]
    pub zero: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum NodeKind {
    /// Framed encoded records per partition; a task carries only the slices it reads.
    Parallelize {
        slices: Vec<Option<serde_bytes::ByteBuf>>,
    },
    Range {
        start: i64,
        end: i64,
        step: i64,
    },
    TextFile {
        splits: Vec<FileSplit>,
    },
    BinaryRecords {
        splits: Vec<FileSplit>,
        record_len: u32,
    },
    Map {
        parent: RddId,
        op: OpRef,
    },
    FlatMap {
        parent: RddId,
        op: OpRef,
    },
    Filter {
        parent: RddId,
        op: OpRef,
    },
    Partitions {
        parent: RddId,
        op: OpRef,
    },
    KeyBy {
        parent: RddId,
        op: OpRef,
    },
    MapValues {
        parent: RddId,
        op: OpRef,
        key_type: String,
    },
    FlatMapValues {
        parent: RddId,
        op: OpRef,
        key_type: String,
    },
    /// One of the engine's own narrow ops (`exec::narrow`: keys, values, sample, glom).
    Narrow {
        parent: RddId,
        op: OpRef,
    },
    Union {
        parents: Vec<(RddId, u32)>,
    },
    Coalesce {
        parent: RddId,
        groups: Vec<Vec<u32>>,
    },
    Zip {
        a: RddId,
        b: RddId,
        op: OpRef,
    },
    /// One accumulator per partition (`tree_aggregate`'s levels).
    FoldPartitions {
        parent: RddId,
        agg: AggSpec,
        combiners: bool,
    },
    Shuffled {
        shuffle: ShuffleId,
        num_maps: u32,
        reduce: ReduceSpec,
    },
    CoGrouped {
        inputs: Vec<(ShuffleId, u32)>,
        mode: JoinMode,
    },
}

/// How the map side of a shuffle finds a record's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KeyMode {
    /// `(K, V)` records split by the named key codec.
    Codec(String),
    /// The whole record is the key (`distinct`).
    WholeRecord,
    /// No key; the record is the value (`repartition`, tree levels).
    None,
}

#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Partitioning {
    Hash(u32),
    Range {
        key_type: String,
        bounds: Vec<serde_bytes::ByteBuf>,
        ascending: bool,
    },
    Custom(OpRef),
    /// Spreads records evenly, starting at a position derived from the map partition.
    RoundRobin(u32),
    /// Every record of map partition i goes to reduce partition i % n.
    ByMapIndex(u32),
}

impl Partitioning {
    /// The partition count, known without decoding a user partitioner (`None` for `Custom`).
    pub fn num_partitions(&self) -> Option<usize> {
        match self {
            Partitioning::Hash(n) | Partitioning::RoundRobin(n) | Partitioning::ByMapIndex(n) => {
                Some(*n as usize)
            }
            Partitioning::Range { bounds, .. } => Some(bounds.len() + 1),
            Partitioning::Custom(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ShuffleWriterSpec {
    pub key: KeyMode,
    pub partitioning: Partitioning,
    pub num_reduces: u32,
    pub combine: Option<AggSpec>,
    /// Whether the reducer can use typed buckets (`exec::typed_shuffle`).
    pub typed: TypedBuckets,
}

/// Whether a map task whose pairs arrive typed, of a pair type this process registered, may
/// keep its buckets typed: only shuffles whose reduce side reads typed buckets ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TypedBuckets {
    /// Framed buckets always (combining shuffles, joins, record shuffles).
    Never,
    /// The pairs as they come (`group_by_key`, `partition_by`).
    AsTheyCome,
    /// Each bucket sorted by key, so the reducer merges sorted runs (`sort_by_key`). Framed
    /// buckets are sorted by the reducer instead.
    SortedByKey { ascending: bool },
}

/// What the reduce side of a shuffle emits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ReduceSpec {
    Raw,
    Pairs,
    Distinct,
    /// Grouped by key: the key type lets the reduce side hash decoded keys.
    Group {
        key_type: String,
    },
    Combine(AggSpec),
    Sort {
        key_type: String,
        ascending: bool,
    },
}

/// What a join of two keyed RDDs emits for each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinMode {
    /// Both sides' values, grouped (`cogroup`).
    CoGroup,
    /// Pairs of values for keys on both sides (`join`).
    Inner,
    /// Every left value, with the right ones or none (`left_outer_join`).
    LeftOuter,
    /// Every right value, with the left ones or none (`right_outer_join`).
    RightOuter,
    /// Every value of either side (`full_outer_join`).
    FullOuter,
}

/// What a result task does with its partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ResultSink {
    Collect,
    Count,
    Take(u32),
    Fold(AggSpec),
    TakeOrdered {
        n: u32,
        key_type: String,
        ascending: bool,
    },
    CountByKey {
        key_type: String,
    },
    Foreach(OpRef),
    SaveText {
        dir: String,
    },
    /// Up to `n` records chosen uniformly, plus the partition's record count.
    Sample {
        n: u32,
        seed: u64,
    },
}

/// Parent partitions that partition `split` of `kind` reads through narrow dependencies.
pub(crate) fn narrow_inputs(kind: &NodeKind, split: usize) -> Vec<(RddId, usize)> {
    match kind {
        NodeKind::Parallelize { .. }
        | NodeKind::Range { .. }
        | NodeKind::TextFile { .. }
        | NodeKind::BinaryRecords { .. }
        | NodeKind::Shuffled { .. }
        | NodeKind::CoGrouped { .. } => vec![],
        NodeKind::Map { parent, .. }
        | NodeKind::FlatMap { parent, .. }
        | NodeKind::Filter { parent, .. }
        | NodeKind::Partitions { parent, .. }
        | NodeKind::KeyBy { parent, .. }
        | NodeKind::MapValues { parent, .. }
        | NodeKind::FlatMapValues { parent, .. }
        | NodeKind::Narrow { parent, .. }
        | NodeKind::FoldPartitions { parent, .. } => vec![(*parent, split)],
        NodeKind::Zip { a, b, .. } => vec![(*a, split), (*b, split)],
        NodeKind::Union { parents } => union_input(parents, split).into_iter().collect(),
        NodeKind::Coalesce { parent, groups } => groups
            .get(split)
            .map(|g| g.iter().map(|&p| (*parent, p as usize)).collect())
            .unwrap_or_default(),
    }
}

pub(crate) fn union_input(parents: &[(RddId, u32)], mut split: usize) -> Option<(RddId, usize)> {
    for &(id, n) in parents {
        if split < n as usize {
            return Some((id, split));
        }
        split -= n as usize;
    }
    None
}

/// Every node a task for `(root, split)` may touch, with the partitions it reads of each.
pub(crate) fn reachable(
    nodes: &HashMap<RddId, WireNode>,
    root: RddId,
    split: usize,
) -> HashMap<RddId, Vec<usize>> {
    let mut out: HashMap<RddId, Vec<usize>> = HashMap::new();
    let mut stack = vec![(root, split)];
    while let Some((id, s)) = stack.pop() {
        let parts = out.entry(id).or_default();
        if parts.contains(&s) {
            continue;
        }
        parts.push(s);
        if let Some(n) = nodes.get(&id) {
            stack.extend(narrow_inputs(&n.kind, s));
        }
    }
    out
}

/// How a persisted RDD's partitions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageLevel {
    /// Kept in memory; a partition evicted under pressure is recomputed from lineage.
    MemoryOnly,
    /// Kept in memory, spilled to the executor's disk when memory runs short.
    MemoryAndDisk,
    /// Written to the executor's disk only.
    DiskOnly,
}

impl std::fmt::Display for StorageLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageLevel::MemoryOnly => "Memory Deserialized 1x Replicated",
            StorageLevel::MemoryAndDisk => "Memory and Disk Deserialized 1x Replicated",
            StorageLevel::DiskOnly => "Disk Serialized 1x Replicated",
        })
    }
}

/// Which trait a registered op implements; part of its identity in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OpKind {
    /// A `MapFn`.
    Map,
    /// A `FlatMapFn`.
    FlatMap,
    /// A `FilterFn`.
    Filter,
    /// A `PartitionFn`.
    Partitions,
    /// A `ZipFn`.
    Zip,
    /// A `ReduceFn`.
    Reduce,
    /// An `AggregateFn`.
    Aggregate,
    /// A `CombineFn`.
    Combine,
    /// A `ForeachFn`.
    Foreach,
    /// A `ForeachPartitionFn`.
    ForeachPartition,
    /// A `Partitioner`.
    Partitioner,
    /// The engine's own narrow ops (`exec::narrow`), never a user's.
    Narrow,
}

impl OpKind {
    /// The name `register_op!` takes for this kind (`map`, `flat_map`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Map => "map",
            OpKind::FlatMap => "flat_map",
            OpKind::Filter => "filter",
            OpKind::Partitions => "partitions",
            OpKind::Zip => "zip",
            OpKind::Reduce => "reduce",
            OpKind::Aggregate => "aggregate",
            OpKind::Combine => "combine",
            OpKind::Foreach => "foreach",
            OpKind::ForeachPartition => "foreach_partition",
            OpKind::Partitioner => "partitioner",
            OpKind::Narrow => "narrow",
        }
    }
}

/// An op on the wire: its registered name and its encoded value.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRef {
    pub kind: OpKind,
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}
