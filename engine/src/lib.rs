//! discnn's RDD engine: Spark's core in Rust.
//!
//! A [`Context`] makes [`Rdd`]s from data or files; transformations build lineage lazily;
//! actions cut it into stages at shuffles and run tasks on executors. User functions are
//! registered ops ([`op`]) so that the same code runs in local mode and, unchanged, on remote
//! executors. See ARCHITECTURE.md at the repository root for the life of a job.

#![warn(missing_docs)]

// The layers, bottom up; each imports only those below it (see ARCHITECTURE.md, and
// tests/layers.rs, which enforces it).
pub mod cluster;
mod core;
mod driver;
mod exec;
mod master;
#[cfg(feature = "testing")]
pub mod testing;

// The module paths users name (`discnn_engine::context::Config`, …), kept where they were.
pub use crate::core::{error, events, key, plan, process, task};
pub use crate::driver::{context, progress, rdd};
/// Object storage (`s3://…` paths) for sources and sinks.
pub use crate::exec::objects;
pub use crate::exec::{accumulator, broadcast, lent, op, storage, task_context};

pub use crate::core::cancel::CancelToken;
pub use crate::core::codec::Data;
pub use crate::core::error::{EngineError, Result, TaskFailure};
pub use crate::core::events::{Event, EventLog, Listener};
pub use crate::core::key::Key;
pub use crate::driver::context::{Config, Context, ContextStats};
pub use crate::driver::rdd::{HashPartitioner, RangePartitioner, Rdd};
pub use crate::exec::accumulator::{Accumulator, AccumulatorParam, Count, Sum};
pub use crate::exec::broadcast::Broadcast;
pub use crate::exec::lent::Borrowable;
pub use crate::exec::op::{
    AggregateFn, CombineFn, FilterBorrowedFn, FilterFn, FlatMapBorrowedFn, FlatMapFn, ForeachFn,
    ForeachPartitionFn, MapBorrowedFn, MapFn, PartitionFn, Partitioner, ReduceFn, ZipFn,
};
pub use crate::exec::storage::StorageLevel;
pub use crate::exec::stream::BoxIter;
pub use crate::exec::task_context::TaskContext;

/// What the registration macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::core::key::{KeyCodecImpl, KeyRegistration};
    pub use crate::exec::op::registry::OpRegistration;
    pub use inventory;
}
