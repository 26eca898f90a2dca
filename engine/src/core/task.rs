//! Tasks and their results on the wire. Local mode encodes and decodes these exactly as cluster
//! mode will, so a field that does not survive encoding fails a local test.

use crate::core::error::TaskFailure;
use crate::core::plan::{RddId, ResultSink, ShuffleId, ShuffleWriterSpec, WireNode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskDescription {
    pub task_id: u64,
    pub job: u64,
    pub stage: u64,
    pub stage_attempt: u32,
    pub partition: u32,
    pub attempt: u32,
    pub nodes: Vec<WireNode>,
    pub root: RddId,
    pub kind: TaskKind,
    /// For every shuffle the task reads: the executor holding each map output, by map index.
    pub shuffle_locations: Vec<(ShuffleId, Vec<String>)>,
    /// (id, address, instance) of the executors named in `shuffle_locations` (empty in local
    /// mode): where to fetch, and the audience of the fetch's token.
    pub executors: Vec<(String, String, String)>,
    /// (shuffle, reduce, maps): the map outputs whose bucket for a reduce partition this task
    /// reads is empty, so that an executor fetches nothing from them.
    pub empty_buckets: Vec<(ShuffleId, u32, Vec<u32>)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum TaskKind {
    ShuffleMap {
        shuffle: ShuffleId,
        writer: ShuffleWriterSpec,
    },
    Result(ResultSink),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum TaskOutput {
    /// A map task stored its output on its executor; `bytes` is its size.
    MapOutput {
        bytes: u64,
        /// Records written.
        records: u64,
        /// Bytes per reduce partition (Spark's MapStatus sizes), 0 exactly when the bucket is
        /// empty.
        buckets: Vec<u64>,
    },
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// What a task attempt measured; it travels back with the result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// Microseconds the task ran, decoding excluded.
    pub run_micros: u64,
    /// Microseconds spent decoding the task and its broadcasts.
    pub decode_micros: u64,
    /// Bytes of the encoded result sent back.
    pub result_bytes: u64,
    /// Bytes of shuffle output written: framed bytes, or for a bucket kept typed for a reader
    /// in the same process its estimated size in memory.
    pub shuffle_write_bytes: u64,
    /// Records of shuffle output written.
    #[serde(default)]
    pub shuffle_write_records: u64,
    /// Bytes of shuffle input read (local and fetched; typed buckets by their estimate).
    #[serde(default)]
    pub shuffle_read_bytes: u64,
    /// Records of shuffle input read.
    #[serde(default)]
    pub shuffle_read_records: u64,
}

/// A block a task stored, with its size: where it went (memory, disk) and how big it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CachedBlock {
    pub rdd: RddId,
    pub partition: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskResult {
    pub task_id: u64,
    pub executor: String,
    pub outcome: Result<TaskOutput, TaskFailure>,
    pub accumulators: Vec<(u64, serde_bytes::ByteBuf)>,
    pub metrics: TaskMetrics,
    /// Blocks this attempt stored in its executor's block manager.
    pub cached: Vec<CachedBlock>,
}
