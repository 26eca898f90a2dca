//! User code that travels to executors.
//!
//! A transformation's function is a value of a concrete type that implements one of the traits
//! below and is registered with [`register_op!`](crate::register_op). The driver ships the op's
//! registered name and its serde encoding (its captured values); an executor — the same binary —
//! looks the name up in a table filled at link time (`inventory`) and decodes the value. No
//! pointer or vtable ever crosses the wire, so a forged message can at worst name an op that is
//! not in the table, which is a clear [`TaskFailure::UnknownOp`](crate::TaskFailure).
//!
//! ```
//! use discnn_engine::{register_op, Context, FlatMapFn};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct SplitWords;
//! impl FlatMapFn for SplitWords {
//!     type In = String;
//!     type Out = String;
//!     type Iter = Vec<String>;
//!     fn call(&self, line: String) -> Vec<String> {
//!         line.split_whitespace().map(str::to_owned).collect()
//!     }
//! }
//! register_op!(flat_map SplitWords);
//!
//! let ctx = Context::local(2)?;
//! let lines = ctx.parallelize(vec!["a b".to_string(), "c".to_string()], 2)?;
//! assert_eq!(lines.flat_map(SplitWords).collect()?, ["a", "b", "c"]);
//! # Ok::<(), discnn_engine::EngineError>(())
//! ```

pub(crate) mod borrowed;
pub(crate) mod erased;
pub(crate) mod registry;
mod typed_table;

use crate::core::codec::{self, Data};
use crate::core::error::TaskFailure;
use crate::core::key::Key;
use crate::exec::lent::Borrowable;
use crate::exec::stream::BoxIter;
use serde::{de::DeserializeOwned, Serialize};

pub use registry::{fingerprint, registered_ops};

/// Anything that can travel as an op: serde-encodable, shareable between threads.
pub trait Op: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Op for T {}

/// One record in, one record out: `map`, `key_by`, `map_values`.
pub trait MapFn: Op {
    /// The record (or value) it takes.
    type In: Data;
    /// What it makes of it.
    type Out: Data;
    /// Maps one record.
    fn call(&self, x: Self::In) -> Self::Out;
}

/// One record in, any number out: `flat_map`, `flat_map_values`.
pub trait FlatMapFn: Op {
    /// The record (or value) it takes.
    type In: Data;
    /// The records it makes.
    type Out: Data;
    /// How it returns them (a `Vec`, an iterator).
    type Iter: IntoIterator<Item = Self::Out, IntoIter: Send + 'static>;
    /// Maps one record to its outputs.
    fn call(&self, x: Self::In) -> Self::Iter;
}

/// `flat_map` over borrowed records (`Rdd::flat_map_borrowed`): reads each record as a view
/// (`&str` for a `String`) and lends its outputs to `emit`, which may borrow from that view. A
/// combining shuffle downstream copies a key only the first time it sees it; other consumers
/// copy what they keep.
///
/// ```
/// use discnn_engine::{register_op, FlatMapBorrowedFn};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Words;
/// impl FlatMapBorrowedFn for Words {
///     type In = String;
///     type Out = String;
///     fn call<'a>(&self, line: &'a str, emit: &mut dyn FnMut(&'a str)) {
///         line.split_whitespace().for_each(emit);
///     }
/// }
/// register_op!(flat_map_borrowed Words);
/// ```
pub trait FlatMapBorrowedFn: Op {
    /// The record it reads.
    type In: Borrowable;
    /// The records it lends.
    type Out: Borrowable;
    /// Lends `x`'s outputs to `emit`.
    fn call<'a>(
        &self,
        x: <Self::In as Borrowable>::Borrowed<'a>,
        emit: &mut dyn FnMut(<Self::Out as Borrowable>::Borrowed<'a>),
    );
}

/// `map` over borrowed records (`Rdd::map_borrowed`): the output may borrow from the input,
/// as `(word, 1)` does from `word`. (The `where Self: 'a` is needed in the implementation too:
/// without it the compiler cannot match the two signatures.)
///
/// ```
/// use discnn_engine::{register_op, MapBorrowedFn};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct PairWithOne;
/// impl MapBorrowedFn for PairWithOne {
///     type In = String;
///     type Out = (String, u64);
///     fn call<'a>(&self, word: &'a str) -> (&'a str, u64)
///     where
///         Self: 'a,
///     {
///         (word, 1)
///     }
/// }
/// register_op!(map_borrowed PairWithOne);
/// ```
pub trait MapBorrowedFn: Op {
    /// The record it reads.
    type In: Borrowable;
    /// The record it lends.
    type Out: Borrowable;
    /// Maps one view.
    fn call<'a>(
        &self,
        x: <Self::In as Borrowable>::Borrowed<'a>,
    ) -> <Self::Out as Borrowable>::Borrowed<'a>
    where
        Self: 'a;
}

/// `filter` over borrowed records (`Rdd::filter_borrowed`).
pub trait FilterBorrowedFn: Op {
    /// The record type.
    type Item: Borrowable;
    /// Whether the record is kept.
    fn call(&self, x: <Self::Item as Borrowable>::Borrowed<'_>) -> bool;
}

/// Keeps the records for which it returns true: `filter`.
pub trait FilterFn: Op {
    /// The record type.
    type Item: Data;
    /// Whether `x` is kept.
    fn call(&self, x: &Self::Item) -> bool;
}

/// A whole partition at once: `map_partitions`, `map_partitions_with_index`.
pub trait PartitionFn: Op {
    /// The parent's record type.
    type In: Data;
    /// The output's record type.
    type Out: Data;
    /// Maps partition `partition`'s records, lazily or not.
    fn call(&self, partition: usize, input: BoxIter<Self::In>) -> BoxIter<Self::Out>;
}

/// Two partitions with the same index at once: `zip_partitions`.
pub trait ZipFn: Op {
    /// The first RDD's record type.
    type A: Data;
    /// The second RDD's record type.
    type B: Data;
    /// The output's record type.
    type Out: Data;
    /// Combines the two partitions.
    fn call(&self, a: BoxIter<Self::A>, b: BoxIter<Self::B>) -> BoxIter<Self::Out>;
}

/// An associative (and, for the keyed forms, commutative) binary operator: `reduce`, `fold`,
/// `reduce_by_key`, `fold_by_key`.
pub trait ReduceFn: Op {
    /// The values it merges.
    type Value: Data;
    /// Merges two values.
    fn call(&self, a: Self::Value, b: Self::Value) -> Self::Value;
}

/// Spark's `aggregate(zero)(seqOp, combOp)`: `aggregate`, `tree_aggregate`, `aggregate_by_key`.
pub trait AggregateFn: Op {
    /// The values it folds in.
    type Value: Data;
    /// The accumulator, starting from the call's `zero`.
    type Acc: Data;
    /// Folds one value into an accumulator (within a partition).
    fn seq(&self, acc: Self::Acc, value: Self::Value) -> Self::Acc;
    /// Merges two accumulators (across partitions).
    fn comb(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

/// Spark's `combineByKey(createCombiner, mergeValue, mergeCombiners)`.
pub trait CombineFn: Op {
    /// The values it combines.
    type Value: Data;
    /// What a key's values become.
    type Combiner: Data;
    /// Starts a combiner from a key's first value (in a partition).
    fn create(&self, value: Self::Value) -> Self::Combiner;
    /// Adds a value to a combiner (map side).
    fn merge_value(&self, c: Self::Combiner, value: Self::Value) -> Self::Combiner;
    /// Merges two combiners of one key (reduce side).
    fn merge_combiners(&self, a: Self::Combiner, b: Self::Combiner) -> Self::Combiner;
}

/// A side effect per record: `foreach`.
pub trait ForeachFn: Op {
    /// The record type.
    type Item: Data;
    /// Does something with one record.
    fn call(&self, x: Self::Item);
}

/// A side effect per partition: `foreach_partition`.
pub trait ForeachPartitionFn: Op {
    /// The record type.
    type Item: Data;
    /// Does something with partition `partition`'s records.
    fn call(&self, partition: usize, items: BoxIter<Self::Item>);
}

/// A user-defined partitioner for `partition_by`.
pub trait Partitioner: Op {
    /// The key type it places.
    type Key: Key;
    /// How many partitions it places keys in.
    fn num_partitions(&self) -> usize;
    /// Must return a value below `num_partitions()`.
    fn partition(&self, key: &Self::Key) -> usize;
}

pub use crate::core::plan::{OpKind, OpRef};

impl OpRef {
    pub(crate) fn new<F: Op>(kind: OpKind, op: &F) -> Result<Self, TaskFailure> {
        Ok(OpRef {
            kind,
            name: std::any::type_name::<F>().to_string(),
            bytes: codec::encode(op)?,
        })
    }
}

/// Registers a concrete op type so executors can rebuild it from its name.
///
/// `register_op!(KIND Type)` where KIND is one of `map`, `flat_map`, `filter`, `partitions`,
/// `zip`, `reduce`, `aggregate`, `combine`, `foreach`, `foreach_partition`, `partitioner`,
/// `map_borrowed`, `flat_map_borrowed`, `filter_borrowed` and `Type` implements the matching
/// trait. Write it once, next to the type, at module level.
#[macro_export]
macro_rules! register_op {
    ($kind:ident $ty:ty) => {
        $crate::__private::inventory::submit! {
            $crate::__private::OpRegistration::$kind::<$ty>()
        }
    };
}
