//! The executor-side, type-erased form of each op kind. Every wrapper knows its op's concrete
//! types, so it can decode its input, call the user's code and produce typed output.

use super::typed_table::typed_table_for;
use super::*;
use crate::core::key::KeyCodec;
use crate::exec::lent::LentRecords;
use crate::exec::stream::{self, into_typed, typed, Records};
use crate::exec::task_context::TaskContext;
use rustc_hash::FxHashMap;
use std::sync::Arc;

pub trait ErasedMap: Send + Sync {
    fn map(&self, input: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure>;
    fn key_by(&self, input: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure>;
    fn map_values(
        &self,
        input: Records,
        key: &'static dyn KeyCodec,
        tc: &Arc<TaskContext>,
    ) -> Result<Records, TaskFailure>;
}

pub trait ErasedFlatMap: Send + Sync {
    fn flat_map(&self, input: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure>;
    fn flat_map_values(
        &self,
        input: Records,
        key: &'static dyn KeyCodec,
        tc: &Arc<TaskContext>,
    ) -> Result<Records, TaskFailure>;
}

pub trait ErasedFilter: Send + Sync {
    fn filter(&self, input: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure>;
}

pub trait ErasedPartitions: Send + Sync {
    fn call(
        &self,
        index: usize,
        input: Records,
        tc: &Arc<TaskContext>,
    ) -> Result<Records, TaskFailure>;
}

pub trait ErasedZip: Send + Sync {
    fn call(&self, a: Records, b: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure>;
}

pub trait ErasedForeach: Send + Sync {
    fn run(&self, index: usize, input: Records, tc: &Arc<TaskContext>) -> Result<(), TaskFailure>;
}

pub trait ErasedPartitioner: Send + Sync {
    fn num_partitions(&self) -> usize;
    fn partition(&self, key: &[u8]) -> Result<usize, TaskFailure>;
}

/// Receives `(key, value)` byte pairs.
pub type PairSink<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<(), TaskFailure>;

/// Merges values (map side) or combiners (reduce side) by encoded key.
pub trait CombineTable: Send {
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), TaskFailure>;
    fn len(&self) -> usize;
    fn drain(self: Box<Self>, emit: PairSink<'_>) -> Result<(), TaskFailure>;
}

/// A map-side combiner over typed `(K, V)` records: no per-record encoding. Used when the
/// records reaching a shuffle are still typed and the key is one of the fast-path types.
pub trait TypedCombineTable: Send {
    /// Whether records of this type (`std::any::type_name`) can be consumed.
    fn accepts(&self, record_type: &str) -> bool;
    /// Takes a typed iterator (as produced by `TypedRecords::into_any`).
    fn consume(&mut self, records: Box<dyn std::any::Any + Send>) -> Result<(), TaskFailure>;
    /// Takes borrowed pairs: each key is looked up by its view and copied only when new.
    fn consume_lent(&mut self, records: Box<dyn LentRecords>) -> Result<(), TaskFailure>;
    fn drain(self: Box<Self>, emit: PairSink<'_>) -> Result<(), TaskFailure>;
}

/// What reduce, aggregate and combine ops have in common: the shuffle's combine tables and the
/// per-partition folding of the `reduce` / `fold` / `aggregate` actions.
pub trait ErasedAgg: Send + Sync {
    fn table(
        &self,
        zero: Option<&[u8]>,
        combiners: bool,
    ) -> Result<Box<dyn CombineTable>, TaskFailure>;
    /// A typed map-side table for key type `key_type`, if it is a fast-path type.
    fn typed_table(
        &self,
        key_type: &str,
        zero: Option<&[u8]>,
    ) -> Result<Option<Box<dyn TypedCombineTable>>, TaskFailure>;
    /// Folds a partition into one encoded `Option<Acc>`.
    fn fold_partition(
        &self,
        input: Records,
        zero: Option<&[u8]>,
        tc: &Arc<TaskContext>,
    ) -> Result<Vec<u8>, TaskFailure>;
}

pub struct MapOp<F>(pub Arc<F>);
pub struct FlatMapOp<F>(pub Arc<F>);
pub struct FilterOp<F>(pub Arc<F>);
pub struct PartitionsOp<F>(pub Arc<F>);
pub struct ZipOp<F>(pub Arc<F>);
pub struct ForeachOp<F>(pub Arc<F>);
pub struct ForeachPartitionOp<F>(pub Arc<F>);
pub struct PartitionerOp<F>(pub F);
pub struct ReduceOp<F>(pub Arc<F>);
pub struct AggregateOp<F>(pub Arc<F>);
pub struct CombineOp<F>(pub Arc<F>);

/// Applies `f` to the value part of each encoded `(K, V)` record, keeping the key bytes.
fn map_encoded_values<V: Data, W: Data, I: IntoIterator<Item = W>>(
    input: Records,
    key: &'static dyn KeyCodec,
    tc: &Arc<TaskContext>,
    f: impl Fn(V) -> I + Send + 'static,
) -> Records {
    let tc2 = tc.clone();
    let it = stream::into_encoded(input, tc).flat_map(move |rec| {
        let step = || -> Result<Vec<Vec<u8>>, TaskFailure> {
            let klen = key.key_len(&rec)?;
            let v: V = codec::decode(&rec[klen..])?;
            let mut out = Vec::new();
            for w in f(v) {
                let mut r = rec[..klen].to_vec();
                codec::encode_into(&w, &mut r)?;
                out.push(r);
            }
            Ok(out)
        };
        match step() {
            Ok(v) => v,
            Err(e) => {
                tc2.fail(e);
                Vec::new()
            }
        }
    });
    Records::Encoded(Box::new(it))
}

impl<F: MapFn> ErasedMap for MapOp<F> {
    fn map(&self, input: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure> {
        let f = self.0.clone();
        Ok(typed(
            into_typed::<F::In>(input, tc)?.map(move |x| f.call(x)),
        ))
    }

    fn key_by(&self, input: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure> {
        let f = self.0.clone();
        Ok(typed(
            into_typed::<F::In>(input, tc)?.map(move |x| (f.call(x.clone()), x)),
        ))
    }

    fn map_values(
        &self,
        input: Records,
        key: &'static dyn KeyCodec,
        tc: &Arc<TaskContext>,
    ) -> Result<Records, TaskFailure> {
        let f = self.0.clone();
        Ok(map_encoded_values::<F::In, F::Out, _>(
            input,
            key,
            tc,
            move |v| Some(f.call(v)),
        ))
    }
}

impl<F: FlatMapFn> ErasedFlatMap for FlatMapOp<F> {
    fn flat_map(&self, input: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure> {
        let f = self.0.clone();
        Ok(typed(
            into_typed::<F::In>(input, tc)?.flat_map(move |x| f.call(x)),
        ))
    }

    fn flat_map_values(
        &self,
        input: Records,
        key: &'static dyn KeyCodec,
        tc: &Arc<TaskContext>,
    ) -> Result<Records, TaskFailure> {
        let f = self.0.clone();
        Ok(map_encoded_values::<F::In, F::Out, _>(
            input,
            key,
            tc,
            move |v| f.call(v),
        ))
    }
}

impl<F: FilterFn> ErasedFilter for FilterOp<F> {
    fn filter(&self, input: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure> {
        let f = self.0.clone();
        Ok(typed(
            into_typed::<F::Item>(input, tc)?.filter(move |x| f.call(x)),
        ))
    }
}

impl<F: PartitionFn> ErasedPartitions for PartitionsOp<F> {
    fn call(
        &self,
        index: usize,
        input: Records,
        tc: &Arc<TaskContext>,
    ) -> Result<Records, TaskFailure> {
        let out = self.0.call(index, into_typed::<F::In>(input, tc)?);
        Ok(typed(out))
    }
}

impl<F: ZipFn> ErasedZip for ZipOp<F> {
    fn call(&self, a: Records, b: Records, tc: &Arc<TaskContext>) -> Result<Records, TaskFailure> {
        let out = self
            .0
            .call(into_typed::<F::A>(a, tc)?, into_typed::<F::B>(b, tc)?);
        Ok(typed(out))
    }
}

impl<F: ForeachFn> ErasedForeach for ForeachOp<F> {
    fn run(&self, _index: usize, input: Records, tc: &Arc<TaskContext>) -> Result<(), TaskFailure> {
        into_typed::<F::Item>(input, tc)?.for_each(|x| self.0.call(x));
        Ok(())
    }
}

impl<F: ForeachPartitionFn> ErasedForeach for ForeachPartitionOp<F> {
    fn run(&self, index: usize, input: Records, tc: &Arc<TaskContext>) -> Result<(), TaskFailure> {
        self.0.call(index, into_typed::<F::Item>(input, tc)?);
        Ok(())
    }
}

impl<F: Partitioner> ErasedPartitioner for PartitionerOp<F> {
    fn num_partitions(&self) -> usize {
        self.0.num_partitions()
    }

    fn partition(&self, key: &[u8]) -> Result<usize, TaskFailure> {
        let k: F::Key = codec::decode(key)?;
        let p = self.0.partition(&k);
        if p >= self.0.num_partitions() {
            return Err(TaskFailure::UserPanic {
                message: format!(
                    "partitioner {} returned partition {p} of {}",
                    std::any::type_name::<F>(),
                    self.0.num_partitions()
                ),
            });
        }
        Ok(p)
    }
}

/// The three ways to build and merge a combiner, behind one interface.
pub(super) trait Merger: Send + Sync + 'static {
    type V: Data;
    type C: Data;
    fn create(&self, v: Self::V) -> Self::C;
    fn merge_value(&self, c: Self::C, v: Self::V) -> Self::C;
    fn merge_combiners(&self, a: Self::C, b: Self::C) -> Self::C;
}

struct ReduceMerger<F: ReduceFn>(Arc<F>, Option<F::Value>);
impl<F: ReduceFn> Merger for ReduceMerger<F> {
    type V = F::Value;
    type C = F::Value;
    fn create(&self, v: F::Value) -> F::Value {
        match &self.1 {
            Some(zero) => self.0.call(zero.clone(), v),
            None => v,
        }
    }
    fn merge_value(&self, c: F::Value, v: F::Value) -> F::Value {
        self.0.call(c, v)
    }
    fn merge_combiners(&self, a: F::Value, b: F::Value) -> F::Value {
        self.0.call(a, b)
    }
}

struct AggregateMerger<F: AggregateFn>(Arc<F>, F::Acc);
impl<F: AggregateFn> Merger for AggregateMerger<F> {
    type V = F::Value;
    type C = F::Acc;
    fn create(&self, v: F::Value) -> F::Acc {
        self.0.seq(self.1.clone(), v)
    }
    fn merge_value(&self, c: F::Acc, v: F::Value) -> F::Acc {
        self.0.seq(c, v)
    }
    fn merge_combiners(&self, a: F::Acc, b: F::Acc) -> F::Acc {
        self.0.comb(a, b)
    }
}

struct CombineMerger<F>(Arc<F>);
impl<F: CombineFn> Merger for CombineMerger<F> {
    type V = F::Value;
    type C = F::Combiner;
    fn create(&self, v: F::Value) -> F::Combiner {
        self.0.create(v)
    }
    fn merge_value(&self, c: F::Combiner, v: F::Value) -> F::Combiner {
        self.0.merge_value(c, v)
    }
    fn merge_combiners(&self, a: F::Combiner, b: F::Combiner) -> F::Combiner {
        self.0.merge_combiners(a, b)
    }
}

struct Table<M: Merger> {
    merger: M,
    combiners: bool,
    slots: FxHashMap<Box<[u8]>, Option<M::C>>,
}

impl<M: Merger> CombineTable for Table<M> {
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), TaskFailure> {
        if let Some(slot) = self.slots.get_mut(key) {
            let old = slot
                .take()
                .ok_or_else(|| TaskFailure::plan("combine slot emptied"))?;
            *slot = Some(if self.combiners {
                self.merger.merge_combiners(old, codec::decode(value)?)
            } else {
                self.merger.merge_value(old, codec::decode(value)?)
            });
        } else {
            let c = if self.combiners {
                codec::decode(value)?
            } else {
                self.merger.create(codec::decode(value)?)
            };
            self.slots.insert(key.into(), Some(c));
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn drain(self: Box<Self>, emit: PairSink<'_>) -> Result<(), TaskFailure> {
        let mut buf = Vec::new();
        for (k, c) in self.slots {
            let c = c.ok_or_else(|| TaskFailure::plan("combine slot emptied"))?;
            buf.clear();
            codec::encode_into(&c, &mut buf)?;
            emit(&k, &buf)?;
        }
        Ok(())
    }
}

fn table<M: Merger>(merger: M, combiners: bool) -> Box<dyn CombineTable> {
    Box::new(Table {
        merger,
        combiners,
        slots: FxHashMap::default(),
    })
}

fn zero_of<T: Data>(zero: Option<&[u8]>) -> Result<T, TaskFailure> {
    match zero {
        Some(z) => codec::decode(z),
        None => Err(TaskFailure::plan("this aggregation needs a zero value")),
    }
}

impl<F: ReduceFn> ErasedAgg for ReduceOp<F> {
    fn table(
        &self,
        zero: Option<&[u8]>,
        combiners: bool,
    ) -> Result<Box<dyn CombineTable>, TaskFailure> {
        let zero = zero.map(codec::decode::<F::Value>).transpose()?;
        Ok(table(ReduceMerger(self.0.clone(), zero), combiners))
    }

    fn typed_table(
        &self,
        key_type: &str,
        zero: Option<&[u8]>,
    ) -> Result<Option<Box<dyn TypedCombineTable>>, TaskFailure> {
        let zero = zero.map(codec::decode::<F::Value>).transpose()?;
        Ok(typed_table_for(
            ReduceMerger(self.0.clone(), zero),
            key_type,
        ))
    }

    fn fold_partition(
        &self,
        input: Records,
        zero: Option<&[u8]>,
        tc: &Arc<TaskContext>,
    ) -> Result<Vec<u8>, TaskFailure> {
        let it = into_typed::<F::Value>(input, tc)?;
        let out = match zero {
            Some(z) => Some(it.fold(codec::decode::<F::Value>(z)?, |a, b| self.0.call(a, b))),
            None => it.reduce(|a, b| self.0.call(a, b)),
        };
        codec::encode(&out)
    }
}

impl<F: AggregateFn> ErasedAgg for AggregateOp<F> {
    fn table(
        &self,
        zero: Option<&[u8]>,
        combiners: bool,
    ) -> Result<Box<dyn CombineTable>, TaskFailure> {
        Ok(table(
            AggregateMerger(self.0.clone(), zero_of::<F::Acc>(zero)?),
            combiners,
        ))
    }

    fn typed_table(
        &self,
        key_type: &str,
        zero: Option<&[u8]>,
    ) -> Result<Option<Box<dyn TypedCombineTable>>, TaskFailure> {
        let merger = AggregateMerger(self.0.clone(), zero_of::<F::Acc>(zero)?);
        Ok(typed_table_for(merger, key_type))
    }

    fn fold_partition(
        &self,
        input: Records,
        zero: Option<&[u8]>,
        tc: &Arc<TaskContext>,
    ) -> Result<Vec<u8>, TaskFailure> {
        let zero = zero_of::<F::Acc>(zero)?;
        let acc = into_typed::<F::Value>(input, tc)?.fold(zero, |a, v| self.0.seq(a, v));
        codec::encode(&Some(acc))
    }
}

impl<F: CombineFn> ErasedAgg for CombineOp<F> {
    fn table(
        &self,
        _zero: Option<&[u8]>,
        combiners: bool,
    ) -> Result<Box<dyn CombineTable>, TaskFailure> {
        Ok(table(CombineMerger(self.0.clone()), combiners))
    }

    fn typed_table(
        &self,
        key_type: &str,
        _zero: Option<&[u8]>,
    ) -> Result<Option<Box<dyn TypedCombineTable>>, TaskFailure> {
        Ok(typed_table_for(CombineMerger(self.0.clone()), key_type))
    }

    fn fold_partition(
        &self,
        _input: Records,
        _zero: Option<&[u8]>,
        _tc: &Arc<TaskContext>,
    ) -> Result<Vec<u8>, TaskFailure> {
        Err(TaskFailure::plan("a combine op cannot fold a partition"))
    }
}
