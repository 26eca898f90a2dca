//! discnn's RDD engine: Spark's core in Rust.
//!
//! A [`Context`] makes [`Rdd`]s from data or files; transformations build lineage lazily;
//! actions cut it into stages at shuffles and run tasks on executors. User functions are
//! registered ops ([`op`]) so that the same code runs in local mode and, unchanged, on remote
//! executors. See ARCHITECTURE.md at the repository root for the life of a job.

pub mod accumulator;
mod backend;
pub mod broadcast;
pub mod cluster;
mod codec;
pub mod context;
pub mod error;
pub mod events;
mod exec;
mod executor;
mod io;
pub mod key;
pub mod op;
pub mod plan;
pub mod process;
pub mod progress;
pub mod rdd;
mod scheduler;
mod shuffle;
mod shuffle_store;
pub mod storage;
mod stream;
pub mod task;
pub mod task_context;
#[cfg(feature = "testing")]
pub mod testing;

pub use accumulator::{Accumulator, AccumulatorParam, Count, Sum};
pub use broadcast::Broadcast;
pub use codec::Data;
pub use context::{Config, Context, ContextStats};
pub use error::{EngineError, Result, TaskFailure};
pub use events::{Event, EventLog, Listener};
pub use key::Key;
pub use op::{
    AggregateFn, CombineFn, FilterFn, FlatMapFn, ForeachFn, ForeachPartitionFn, MapFn, PartitionFn,
    Partitioner, ReduceFn, ZipFn,
};
pub use rdd::{HashPartitioner, RangePartitioner, Rdd};
pub use storage::StorageLevel;
pub use stream::BoxIter;
pub use task_context::TaskContext;

/// What the registration macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::key::{KeyCodecImpl, KeyRegistration};
    pub use crate::op::registry::OpRegistration;
    pub use inventory;
}
