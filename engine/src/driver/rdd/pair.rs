//! Operations on RDDs of `(K, V)` pairs: everything that shuffles by key, and the joins.

/// Each side's values of one key (`cogroup`).
pub type Grouped<K, V, W> = (K, (Vec<V>, Vec<W>));
/// Both sides optional (`full_outer_join`).
pub type Outer<K, V, W> = (K, (Option<V>, Option<W>));

use super::transform::{op_ref, Ops};
use super::{callsite, NodeSpec, Rdd, ReducePlacement};
use crate::core::codec::{self, Data};
use crate::core::error::{EngineError, Result};
use crate::core::key::{key_type_name, Key};
use crate::core::plan::{
    AggSpec, JoinMode, KeyMode, NodeKind, Partitioning, ReduceSpec, ResultSink, ShuffleWriterSpec,
    TypedBuckets,
};
use crate::exec::narrow;
use crate::exec::op::{
    AggregateFn, CombineFn, FlatMapFn, MapFn, Op, OpKind, Partitioner, ReduceFn,
};
use std::collections::HashMap;

/// How `partition_by` places keys: hash, range (bounds sampled from the data) or a
/// user-defined [`Partitioner`].
pub trait IntoPartitioning<K: Key> {
    /// The partitioning of `rdd` this describes (a range partitioner samples `rdd` for its
    /// bounds).
    fn clone_partitioning<V: Data>(&self, rdd: &Rdd<(K, V)>) -> Result<Partitioning>;
}

/// Partition = hash of the key's encoding, modulo the number of partitions.
#[derive(Debug, Clone, Copy)]
pub struct HashPartitioner(pub usize);

/// Partitions of contiguous key ranges, bounds chosen from a sample of the keys.
#[derive(Debug, Clone, Copy)]
pub struct RangePartitioner {
    /// How many partitions.
    pub partitions: usize,
    /// Whether keys are placed in increasing order.
    pub ascending: bool,
}

impl<K: Key> IntoPartitioning<K> for HashPartitioner {
    fn clone_partitioning<V: Data>(&self, _rdd: &Rdd<(K, V)>) -> Result<Partitioning> {
        Ok(Partitioning::Hash(self.0.max(1) as u32))
    }
}

impl<K: Key> IntoPartitioning<K> for RangePartitioner {
    fn clone_partitioning<V: Data>(&self, rdd: &Rdd<(K, V)>) -> Result<Partitioning> {
        Ok(Partitioning::Range {
            key_type: key_type_name::<K>().into(),
            bounds: rdd.range_bounds(self.partitions.max(1))?,
            ascending: self.ascending,
        })
    }
}

impl<K: Key, P: Partitioner<Key = K>> IntoPartitioning<K> for P {
    fn clone_partitioning<V: Data>(&self, _rdd: &Rdd<(K, V)>) -> Result<Partitioning> {
        if self.num_partitions() == 0 {
            return Err(EngineError::InvalidArgument(
                "a partitioner needs at least one partition".into(),
            ));
        }
        Ok(Partitioning::Custom(op_ref(OpKind::Partitioner, self)))
    }
}

fn hash(n: usize) -> (Partitioning, u32) {
    let n = n.max(1) as u32;
    (Partitioning::Hash(n), n)
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    fn key_mode() -> KeyMode {
        KeyMode::Codec(key_type_name::<K>().into())
    }

    /// Lets this process's map tasks keep these pairs typed for a shuffle whose reader uses
    /// typed buckets (`exec::typed_shuffle`): only here is the value type known.
    fn keep_typed(&self) {
        self.ctx.inner.env.pair_types.register::<K, V>();
    }

    #[track_caller]
    fn by_key<U>(
        &self,
        op: &str,
        partitions: usize,
        combine: Option<AggSpec>,
        reduce: ReduceSpec,
        ops: Ops,
    ) -> Rdd<U> {
        let (partitioning, n) = hash(partitions);
        let typed = match reduce {
            ReduceSpec::Group { .. } => TypedBuckets::AsTheyCome,
            _ => TypedBuckets::Never,
        };
        let writer = ShuffleWriterSpec {
            key: Self::key_mode(),
            partitioning,
            num_reduces: n,
            combine,
            typed,
        };
        self.shuffled("ShuffledRdd", op, writer, reduce, ops)
    }

    /// A shuffle that combines by key with `f` on both sides, each key starting from `zero`
    /// where there is one.
    #[track_caller]
    fn combined_by_key<U, F: Op>(
        &self,
        op_name: &str,
        partitions: usize,
        kind: OpKind,
        f: F,
        zero: Option<Vec<u8>>,
    ) -> Rdd<U> {
        let agg = AggSpec {
            op: op_ref(kind, &f),
            zero,
        };
        let (map, reduce) = (Some(agg.clone()), ReduceSpec::Combine(agg));
        self.by_key(op_name, partitions, map, reduce, vec![Box::new(f)])
    }

    /// `(k, f(v))` for every record.
    #[track_caller]
    pub fn map_values<F: MapFn<In = V>>(&self, f: F) -> Rdd<(K, F::Out)> {
        let key_type = key_type_name::<K>().into();
        self.with_op("map_values", OpKind::Map, f, |parent, op| {
            NodeKind::MapValues {
                parent,
                op,
                key_type,
            }
        })
    }

    /// `(k, w)` for every `w` in `f(v)`.
    #[track_caller]
    pub fn flat_map_values<F: FlatMapFn<In = V>>(&self, f: F) -> Rdd<(K, F::Out)> {
        let key_type = key_type_name::<K>().into();
        self.with_op("flat_map_values", OpKind::FlatMap, f, |parent, op| {
            NodeKind::FlatMapValues {
                parent,
                op,
                key_type,
            }
        })
    }

    /// The keys.
    #[track_caller]
    pub fn keys(&self) -> Rdd<K> {
        let key_type = key_type_name::<K>().into();
        let op = narrow::PairPart {
            key_type,
            keys: true,
        };
        self.narrow_op("MapPartitionsRdd", "keys", op)
    }

    /// The values.
    #[track_caller]
    pub fn values(&self) -> Rdd<V> {
        let key_type = key_type_name::<K>().into();
        let op = narrow::PairPart {
            key_type,
            keys: false,
        };
        self.narrow_op("MapPartitionsRdd", "values", op)
    }

    /// Places the records by key as `p` says, through a shuffle.
    #[track_caller]
    pub fn partition_by<P: IntoPartitioning<K> + Send + Sync + 'static>(
        &self,
        p: P,
    ) -> Result<Rdd<(K, V)>> {
        self.partition_by_placed(p, ReducePlacement::Spread)
    }

    /// [`partition_by`](Self::partition_by), with each reduce partition computed on its
    /// *leader*: the executor of the first map task to finish with records for it (the
    /// paper's grouped aggregation; a reduce partition with no records runs anywhere). The
    /// placement is a preference, like cached-input locality: it waits up to the cluster's
    /// locality wait for a busy leader. Reduce tasks read map outputs in map order, so where
    /// a partition is computed never changes what it computes.
    #[track_caller]
    pub fn partition_by_leader<P: IntoPartitioning<K> + Send + Sync + 'static>(
        &self,
        p: P,
    ) -> Result<Rdd<(K, V)>> {
        self.partition_by_placed(p, ReducePlacement::Leader)
    }

    #[track_caller]
    fn partition_by_placed<P: IntoPartitioning<K> + Send + Sync + 'static>(
        &self,
        p: P,
        placement: ReducePlacement,
    ) -> Result<Rdd<(K, V)>> {
        self.keep_typed();
        let partitioning = p.clone_partitioning(self)?;
        let n = if let Partitioning::Custom(op) = &partitioning {
            crate::exec::op::registry::decode_partitioner(op)
                .map_err(EngineError::Task)?
                .num_partitions()
        } else {
            partitioning.num_partitions().unwrap_or(0)
        };
        let writer = ShuffleWriterSpec {
            key: Self::key_mode(),
            partitioning,
            num_reduces: n as u32,
            combine: None,
            typed: TypedBuckets::AsTheyCome,
        };
        Ok(self.shuffled_placed(
            "ShuffledRdd",
            "partition_by",
            writer,
            ReduceSpec::Pairs,
            vec![Box::new(p)],
            placement,
        ))
    }

    /// Merges the values of each key with `f`, combining on the map side first.
    #[track_caller]
    pub fn reduce_by_key<F: ReduceFn<Value = V>>(&self, f: F, partitions: usize) -> Rdd<(K, V)> {
        self.combined_by_key("reduce_by_key", partitions, OpKind::Reduce, f, None)
    }

    /// Like `reduce_by_key`, starting each key (on each map partition) from `zero`.
    #[track_caller]
    pub fn fold_by_key<F: ReduceFn<Value = V>>(
        &self,
        zero: V,
        f: F,
        partitions: usize,
    ) -> Result<Rdd<(K, V)>> {
        let zero = codec::encode(&zero)?;
        let map = AggSpec {
            op: op_ref(OpKind::Reduce, &f),
            zero: Some(zero),
        };
        let reduce = AggSpec {
            zero: None,
            ..map.clone()
        };
        Ok(self.by_key(
            "fold_by_key",
            partitions,
            Some(map),
            ReduceSpec::Combine(reduce),
            vec![Box::new(f)],
        ))
    }

    /// Folds each key's values into `zero` with `f.seq`, combining on the map side with
    /// `f.comb`.
    #[track_caller]
    pub fn aggregate_by_key<F: AggregateFn<Value = V>>(
        &self,
        zero: F::Acc,
        f: F,
        partitions: usize,
    ) -> Result<Rdd<(K, F::Acc)>> {
        let zero = Some(codec::encode(&zero)?);
        Ok(self.combined_by_key("aggregate_by_key", partitions, OpKind::Aggregate, f, zero))
    }

    /// Spark's `combineByKey`: each key's values into one combiner, combining on the map side.
    #[track_caller]
    pub fn combine_by_key<F: CombineFn<Value = V>>(
        &self,
        f: F,
        partitions: usize,
    ) -> Rdd<(K, F::Combiner)> {
        self.combined_by_key("combine_by_key", partitions, OpKind::Combine, f, None)
    }

    /// All values of each key, in the order they arrive (no map-side combine, as in Spark).
    #[track_caller]
    pub fn group_by_key(&self, partitions: usize) -> Rdd<(K, Vec<V>)> {
        self.keep_typed();
        let spec = ReduceSpec::Group {
            key_type: key_type_name::<K>().to_string(),
        };
        self.by_key("group_by_key", partitions, None, spec, vec![])
    }

    /// Sorted by key across partitions: partition i holds keys before partition i+1's, each
    /// partition sorted. Samples the keys first (a small job) to choose the range bounds.
    #[track_caller]
    pub fn sort_by_key(&self, ascending: bool, partitions: usize) -> Result<Rdd<(K, V)>> {
        self.keep_typed();
        let name = key_type_name::<K>().to_string();
        let bounds = self.range_bounds(partitions.max(1))?;
        let n = bounds.len() as u32 + 1;
        let partitioning = Partitioning::Range {
            key_type: name.clone(),
            bounds,
            ascending,
        };
        let writer = ShuffleWriterSpec {
            key: Self::key_mode(),
            partitioning,
            num_reduces: n,
            combine: None,
            typed: TypedBuckets::SortedByKey { ascending },
        };
        Ok(self.shuffled(
            "ShuffledRdd",
            "sort_by_key",
            writer,
            ReduceSpec::Sort {
                key_type: name,
                ascending,
            },
            vec![],
        ))
    }

    /// Up to `partitions - 1` increasing key bounds from a weighted sample (Spark's
    /// RangePartitioner: about 20 keys per output partition).
    pub(crate) fn range_bounds(&self, partitions: usize) -> Result<Vec<serde_bytes::ByteBuf>> {
        if partitions <= 1 || self.num_partitions() == 0 {
            return Ok(Vec::new());
        }
        let sample_size = (20 * partitions).min(1_000_000);
        let per_partition = (3 * sample_size).div_ceil(self.num_partitions()) as u32;
        // Sampling the pairs (not `keys()`) lets typed records be chosen before any is encoded.
        let all: Vec<usize> = (0..self.num_partitions()).collect();
        let sink = ResultSink::Sample {
            n: per_partition,
            seed: 0x5eed,
        };
        let parts = self.ctx.run_job(&self.node, &all, sink, "sample keys")?;
        let mut weighted: Vec<(K, f64)> = Vec::new();
        for p in parts {
            let (count, frames): (u64, serde_bytes::ByteBuf) = codec::decode(&p)?;
            let sampled = codec::frames_to_vecs(&frames)?;
            let weight = count as f64 / sampled.len().max(1) as f64;
            for s in sampled {
                weighted.push((codec::decode::<(K, V)>(&s)?.0, weight));
            }
        }
        weighted.sort_by(|a, b| a.0.cmp(&b.0));
        let total: f64 = weighted.iter().map(|w| w.1).sum();
        let step = total / partitions as f64;
        let (mut bounds, mut cum, mut target) = (Vec::<K>::new(), 0.0, step);
        for (k, w) in weighted {
            cum += w;
            if cum >= target
                && bounds.len() < partitions - 1
                && bounds.last().is_none_or(|b| *b < k)
            {
                bounds.push(k);
                target += step;
            }
        }
        bounds
            .iter()
            .map(|b| Ok(serde_bytes::ByteBuf::from(codec::encode(b)?)))
            .collect()
    }

    #[track_caller]
    fn join_with<W: Data, U>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
        mode: JoinMode,
        op: &str,
    ) -> Rdd<U> {
        let (partitioning, n) = hash(partitions);
        let writer = ShuffleWriterSpec {
            key: Self::key_mode(),
            partitioning,
            num_reduces: n,
            combine: None,
            typed: TypedBuckets::Never,
        };
        let a = self.ctx.shuffle_dep(&self.node, writer.clone());
        let b = self.ctx.shuffle_dep(&other.node, writer);
        self.ctx.make_rdd(NodeSpec {
            name: "CoGroupedRdd",
            callsite: callsite(op),
            num_partitions: n as usize,
            kind: NodeKind::CoGrouped {
                inputs: vec![
                    (a.id, self.num_partitions() as u32),
                    (b.id, other.num_partitions() as u32),
                ],
                mode,
            },
            parents: vec![],
            shuffles: vec![a, b],
            ops: vec![],
        })
    }

    /// For each key on either side, the values of both.
    #[track_caller]
    pub fn cogroup<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<Grouped<K, V, W>> {
        self.join_with(other, partitions, JoinMode::CoGroup, "cogroup")
    }

    /// Every pair of values of a key found on both sides.
    #[track_caller]
    pub fn join<W: Data>(&self, other: &Rdd<(K, W)>, partitions: usize) -> Rdd<(K, (V, W))> {
        self.join_with(other, partitions, JoinMode::Inner, "join")
    }

    /// Every left value with each matching right value, or `None`.
    #[track_caller]
    pub fn left_outer_join<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<(K, (V, Option<W>))> {
        self.join_with(other, partitions, JoinMode::LeftOuter, "left_outer_join")
    }

    /// Every right value with each matching left value, or `None`.
    #[track_caller]
    pub fn right_outer_join<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<(K, (Option<V>, W))> {
        self.join_with(other, partitions, JoinMode::RightOuter, "right_outer_join")
    }

    /// Every value of either side with each match on the other, or `None`.
    #[track_caller]
    pub fn full_outer_join<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<Outer<K, V, W>> {
        self.join_with(other, partitions, JoinMode::FullOuter, "full_outer_join")
    }

    /// The number of records of each key, counted on the executors.
    pub fn count_by_key(&self) -> Result<HashMap<K, u64>> {
        let all: Vec<usize> = (0..self.num_partitions()).collect();
        let sink = ResultSink::CountByKey {
            key_type: key_type_name::<K>().into(),
        };
        let parts = self.ctx.run_job(&self.node, &all, sink, "count_by_key")?;
        let mut out: HashMap<K, u64> = HashMap::new();
        for p in parts {
            let mut r = codec::FrameReader::new(&p);
            while let Some(pair) = r.next_pair() {
                let (k, c) = pair?;
                *out.entry(codec::decode::<K>(k)?).or_default() += codec::decode::<u64>(c)?;
            }
        }
        Ok(out)
    }
}

impl<T: Data> Rdd<T> {
    /// Sorted by `f(x)`.
    #[track_caller]
    pub fn sort_by<F: MapFn<In = T>>(
        &self,
        f: F,
        ascending: bool,
        partitions: usize,
    ) -> Result<Rdd<T>>
    where
        F::Out: Key,
    {
        Ok(self.key_by(f).sort_by_key(ascending, partitions)?.values())
    }
}
