//! Computing a partition: the op registry, record streams, the block manager, shuffle write,
//! read and store (framed, or typed for readers in the same process), accumulators' and broadcasts' task side, the task context, I/O sources and
//! sinks, and the executor that runs encoded tasks. Imports only `core`.

pub mod accumulator;
pub mod broadcast;
pub(crate) mod compute;
pub(crate) mod executor;
pub(crate) mod io;
pub mod lent;
pub(crate) mod narrow;
pub mod objects;
pub mod op;
pub(crate) mod radix_sort;
pub(crate) mod shuffle;
pub(crate) mod shuffle_store;
pub mod storage;
pub mod stream;
pub mod task_context;
pub(crate) mod typed_shuffle;
