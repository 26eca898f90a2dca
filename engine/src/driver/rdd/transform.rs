//! Narrow transformations: each output partition depends on a known set of parent partitions,
//! so they pipeline inside one task.

use super::{callsite, NodeSpec, Rdd, ReducePlacement};
use crate::core::codec::Data;
use crate::core::key::Key;
use crate::core::plan::{
    KeyMode, NodeKind, Partitioning, RddId, ReduceSpec, ShuffleWriterSpec, TypedBuckets,
};
use crate::exec::lent::Borrowable;
use crate::exec::narrow::{self, NarrowOp};
use crate::exec::op::borrowed::{BorrowedFilter, BorrowedFlatMap, BorrowedMap};
use crate::exec::op::{
    FilterBorrowedFn, FilterFn, FlatMapBorrowedFn, FlatMapFn, MapBorrowedFn, MapFn, Op, OpKind,
    OpRef, PartitionFn, ZipFn,
};
use std::sync::Arc;

pub(crate) type Ops = Vec<Box<dyn std::any::Any + Send + Sync>>;

/// Encodes an op for the wire. Ops are plain data (the captured values of user code), so this
/// fails only for a Serialize impl that refuses to encode, which is a programming error.
#[track_caller]
pub(crate) fn op_ref<F: Op>(kind: OpKind, f: &F) -> OpRef {
    match OpRef::new(kind, f) {
        Ok(o) => o,
        Err(e) => panic!("op {} cannot be encoded: {e}", std::any::type_name::<F>()),
    }
}

impl<T: Data> Rdd<T> {
    #[track_caller]
    pub(crate) fn narrow<U>(&self, name: &'static str, op: &str, kind: NodeKind) -> Rdd<U> {
        self.narrow_with(name, op, kind, vec![])
    }

    #[track_caller]
    pub(crate) fn narrow_with<U>(
        &self,
        name: &'static str,
        op: &str,
        kind: NodeKind,
        ops: Ops,
    ) -> Rdd<U> {
        self.ctx.make_rdd(NodeSpec {
            name,
            callsite: callsite(op),
            num_partitions: self.num_partitions(),
            kind,
            parents: vec![self.node.clone()],
            shuffles: vec![],
            ops,
        })
    }

    /// A narrow node over one user op `f` of `kind`; `node` places the op in the plan.
    #[track_caller]
    pub(crate) fn with_op<U, F: Op>(
        &self,
        op_name: &str,
        kind: OpKind,
        f: F,
        node: impl FnOnce(RddId, OpRef) -> NodeKind,
    ) -> Rdd<U> {
        let kind = node(self.id(), op_ref(kind, &f));
        self.narrow_with("MapPartitionsRdd", op_name, kind, vec![Box::new(f)])
    }

    /// A narrow node computed by one of the engine's own ops (`exec::narrow`).
    #[track_caller]
    pub(crate) fn narrow_op<U, N: NarrowOp>(&self, name: &'static str, op: &str, n: N) -> Rdd<U> {
        let kind = NodeKind::Narrow {
            parent: self.id(),
            op: op_ref(OpKind::Narrow, &n),
        };
        self.narrow(name, op, kind)
    }

    /// `f(x)` for every record.
    #[track_caller]
    pub fn map<F: MapFn<In = T>>(&self, f: F) -> Rdd<F::Out> {
        self.with_op("map", OpKind::Map, f, |parent, op| NodeKind::Map {
            parent,
            op,
        })
    }

    /// Every record of `f(x)` for every record.
    #[track_caller]
    pub fn flat_map<F: FlatMapFn<In = T>>(&self, f: F) -> Rdd<F::Out> {
        self.with_op("flat_map", OpKind::FlatMap, f, |parent, op| {
            NodeKind::FlatMap { parent, op }
        })
    }

    /// [`flat_map`](Self::flat_map) over borrowed records: `f` reads each record as a view
    /// and lends its outputs, which are copied only by a consumer that keeps them (a combining
    /// shuffle copies a key the first time it sees it). A text file's lines are lent.
    #[track_caller]
    pub fn flat_map_borrowed<F: FlatMapBorrowedFn<In = T>>(&self, f: F) -> Rdd<F::Out>
    where
        T: Borrowable,
    {
        self.narrow_op(
            "MapPartitionsRdd",
            "flat_map_borrowed",
            BorrowedFlatMap(Arc::new(f)),
        )
    }

    /// [`map`](Self::map) over borrowed records: the output may borrow from the input.
    #[track_caller]
    pub fn map_borrowed<F: MapBorrowedFn<In = T>>(&self, f: F) -> Rdd<F::Out>
    where
        T: Borrowable,
    {
        self.narrow_op("MapPartitionsRdd", "map_borrowed", BorrowedMap(Arc::new(f)))
    }

    /// [`filter`](Self::filter) over borrowed records.
    #[track_caller]
    pub fn filter_borrowed<F: FilterBorrowedFn<Item = T>>(&self, f: F) -> Rdd<T>
    where
        T: Borrowable,
    {
        self.narrow_op(
            "MapPartitionsRdd",
            "filter_borrowed",
            BorrowedFilter(Arc::new(f)),
        )
    }

    /// The records for which `f` returns true.
    #[track_caller]
    pub fn filter<F: FilterFn<Item = T>>(&self, f: F) -> Rdd<T> {
        self.with_op("filter", OpKind::Filter, f, |parent, op| NodeKind::Filter {
            parent,
            op,
        })
    }

    /// `f` sees a whole partition (and its index, which it may ignore).
    #[track_caller]
    pub fn map_partitions<F: PartitionFn<In = T>>(&self, f: F) -> Rdd<F::Out> {
        self.with_op("map_partitions", OpKind::Partitions, f, |parent, op| {
            NodeKind::Partitions { parent, op }
        })
    }

    /// The same as [`map_partitions`](Self::map_partitions); the index is always passed.
    #[track_caller]
    pub fn map_partitions_with_index<F: PartitionFn<In = T>>(&self, f: F) -> Rdd<F::Out> {
        self.with_op(
            "map_partitions_with_index",
            OpKind::Partitions,
            f,
            |parent, op| NodeKind::Partitions { parent, op },
        )
    }

    /// `(f(x), x)` for every record.
    #[track_caller]
    pub fn key_by<F: MapFn<In = T>>(&self, f: F) -> Rdd<(F::Out, T)> {
        self.with_op("key_by", OpKind::Map, f, |parent, op| NodeKind::KeyBy {
            parent,
            op,
        })
    }

    /// A sample: each record kept with probability `fraction` (without replacement), or
    /// repeated a Poisson(`fraction`) number of times (with replacement). Seeded per partition.
    #[track_caller]
    pub fn sample(&self, with_replacement: bool, fraction: f64, seed: u64) -> Rdd<T> {
        let op = narrow::Sample {
            fraction,
            with_replacement,
            seed,
        };
        self.narrow_op("PartitionwiseSampledRdd", "sample", op)
    }

    /// Each partition as one `Vec`.
    #[track_caller]
    pub fn glom(&self) -> Rdd<Vec<T>> {
        self.narrow_op("MapPartitionsRdd", "glom", narrow::Glom)
    }

    /// The records of both (partitions side by side, no shuffle).
    #[track_caller]
    pub fn union(&self, other: &Rdd<T>) -> Rdd<T> {
        self.ctx.union(&[self.clone(), other.clone()])
    }

    /// Pairs partition i of `self` with partition i of `other` (both must have as many).
    #[track_caller]
    pub fn zip_partitions<U: Data, F: ZipFn<A = T, B = U>>(
        &self,
        other: &Rdd<U>,
        f: F,
    ) -> crate::core::error::Result<Rdd<F::Out>> {
        if self.num_partitions() != other.num_partitions() {
            return Err(crate::core::error::EngineError::InvalidArgument(format!(
                "zip_partitions needs equal partition counts, got {} and {}",
                self.num_partitions(),
                other.num_partitions()
            )));
        }
        Ok(self.ctx.make_rdd(NodeSpec {
            name: "ZippedPartitionsRdd2",
            callsite: callsite("zip_partitions"),
            num_partitions: self.num_partitions(),
            kind: NodeKind::Zip {
                a: self.id(),
                b: other.id(),
                op: op_ref(OpKind::Zip, &f),
            },
            parents: vec![self.node.clone(), other.node.clone()],
            shuffles: vec![],
            ops: vec![Box::new(f)],
        }))
    }

    /// Fewer partitions without a shuffle: output partition i reads a contiguous run of parent
    /// partitions. Asking for as many or more keeps the current partitioning.
    #[track_caller]
    pub fn coalesce(&self, partitions: usize) -> Rdd<T> {
        let n = self.num_partitions();
        let m = partitions.clamp(1, n.max(1));
        let groups = (0..m)
            .map(|i| ((i * n / m) as u32..((i + 1) * n / m) as u32).collect())
            .collect();
        self.ctx.make_rdd(NodeSpec {
            name: "CoalescedRdd",
            callsite: callsite("coalesce"),
            num_partitions: m,
            kind: NodeKind::Coalesce {
                parent: self.id(),
                groups,
            },
            parents: vec![self.node.clone()],
            shuffles: vec![],
            ops: vec![],
        })
    }

    /// Any number of partitions, balanced by a round-robin shuffle.
    #[track_caller]
    pub fn repartition(&self, partitions: usize) -> Rdd<T> {
        let n = partitions.max(1) as u32;
        let writer = ShuffleWriterSpec {
            key: KeyMode::None,
            partitioning: Partitioning::RoundRobin(n),
            num_reduces: n,
            combine: None,
            typed: TypedBuckets::Never,
        };
        self.shuffled(
            "ShuffledRdd",
            "repartition",
            writer,
            ReduceSpec::Raw,
            vec![],
        )
    }

    /// Builds the reduce side of a shuffle of `self`.
    #[track_caller]
    pub(crate) fn shuffled<U>(
        &self,
        name: &'static str,
        op: &str,
        writer: ShuffleWriterSpec,
        reduce: ReduceSpec,
        ops: Ops,
    ) -> Rdd<U> {
        self.shuffled_placed(name, op, writer, reduce, ops, ReducePlacement::Spread)
    }

    pub(crate) fn shuffled_placed<U>(
        &self,
        name: &'static str,
        op: &str,
        writer: ShuffleWriterSpec,
        reduce: ReduceSpec,
        ops: Ops,
        placement: ReducePlacement,
    ) -> Rdd<U> {
        let n = writer.num_reduces as usize;
        let dep = self.ctx.shuffle_dep_placed(&self.node, writer, placement);
        self.ctx.make_rdd(NodeSpec {
            name,
            callsite: callsite(op),
            num_partitions: n,
            kind: NodeKind::Shuffled {
                shuffle: dep.id,
                num_maps: self.num_partitions() as u32,
                reduce,
            },
            parents: vec![],
            shuffles: vec![dep],
            ops,
        })
    }
}

impl<T: Key> Rdd<T> {
    /// The distinct records, hash-partitioned into `partitions`.
    #[track_caller]
    pub fn distinct(&self, partitions: usize) -> Rdd<T> {
        let n = partitions.max(1) as u32;
        let writer = ShuffleWriterSpec {
            key: KeyMode::WholeRecord,
            partitioning: Partitioning::Hash(n),
            num_reduces: n,
            combine: None,
            typed: TypedBuckets::Never,
        };
        self.shuffled(
            "ShuffledRdd",
            "distinct",
            writer,
            ReduceSpec::Distinct,
            vec![],
        )
    }
}
