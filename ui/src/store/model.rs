//! What the UI knows of one application: jobs, stages, executors, cached RDDs and training runs,
//! as plain values folded from its events (`super::AppState::apply`).

use serde_json::Value;
use std::collections::BTreeMap;

/// A job as its events tell it.
#[derive(Debug, Clone)]
pub struct JobData {
    pub id: u64,
    pub description: String,
    /// `RUNNING`, `SUCCEEDED` or `FAILED` (Spark's names).
    pub status: &'static str,
    pub error: Option<String>,
    pub submission_ms: u64,
    pub completion_ms: Option<u64>,
    pub stage_ids: Vec<u64>,
    pub num_tasks: usize,
    pub completed_tasks: usize,
    pub failed_tasks: usize,
}

/// A stage's latest attempt.
#[derive(Debug, Clone)]
pub struct StageData {
    pub id: u64,
    pub job: u64,
    pub attempt: u32,
    pub name: String,
    pub shuffle_map: bool,
    /// `ACTIVE`, `COMPLETE` or `FAILED` (Spark's names).
    pub status: &'static str,
    pub failure: Option<String>,
    pub submission_ms: u64,
    pub completion_ms: Option<u64>,
    pub num_tasks: usize,
    pub active_tasks: usize,
    pub completed_tasks: usize,
    pub failed_tasks: usize,
    /// Task attempts after the first of their partition.
    pub retried_tasks: usize,
    /// Successful tasks' run times, in microseconds (for min / median / max).
    pub task_micros: Vec<u64>,
    pub run_micros: u64,
    pub shuffle_read_bytes: u64,
    pub shuffle_read_records: u64,
    pub shuffle_write_bytes: u64,
    pub shuffle_write_records: u64,
}

/// An executor of the application.
#[derive(Debug, Clone)]
pub struct ExecutorData {
    pub id: String,
    pub address: String,
    pub cores: usize,
    /// `alive`, `draining`, `lost` or `exited`.
    pub state: &'static str,
    pub added_ms: u64,
    pub removed_ms: Option<u64>,
    pub remove_reason: Option<String>,
    pub last_heartbeat_ms: Option<u64>,
    pub completed_tasks: u64,
    pub failed_tasks: u64,
    pub task_micros: u64,
    pub shuffle_read_bytes: u64,
    pub shuffle_write_bytes: u64,
}

/// An RDD marked for caching.
#[derive(Debug, Clone)]
pub struct RddData {
    pub id: u64,
    pub name: String,
    pub num_partitions: u32,
    pub level: String,
}

/// One cached block: where it lives and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct BlockData {
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

/// A training run (a cnn-job, or one run of an experiment): its rows of `metrics.jsonl`.
#[derive(Debug, Clone, Default)]
pub struct TrainingRun {
    /// Where the run writes (its `--output`).
    pub output: String,
    /// The model it saves.
    pub model: String,
    /// The epochs asked for.
    pub epochs: Option<u64>,
    /// One row per epoch, as `metrics.jsonl` has it.
    pub rows: Vec<Value>,
    /// The latest epoch's confusion matrix: class names and counts (rows: true class).
    pub classes: Vec<String>,
    pub confusion: Vec<Vec<u64>>,
    pub started_ms: u64,
    pub ended: bool,
}

impl TrainingRun {
    /// A field of the latest row.
    pub fn last(&self, key: &str) -> Option<&Value> {
        self.rows.last().and_then(|r| r.get(key))
    }

    /// Seconds to the last epoch at the pace so far.
    pub fn eta_s(&self) -> Option<f64> {
        let done = self.rows.len() as f64;
        let left = self.epochs? as f64 - done;
        if self.ended || done == 0.0 || left <= 0.0 {
            return None;
        }
        let wall: f64 = self
            .rows
            .iter()
            .filter_map(|r| r.get("wall_s").and_then(Value::as_f64))
            .sum();
        Some(wall / done * left)
    }
}

/// Jobs forgotten to keep the last [`super::RETAINED_JOBS`]: counted, not listed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forgotten {
    pub succeeded: u64,
    pub failed: u64,
}

/// Totals over the application's life (forgotten jobs included), for Prometheus.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub tasks_finished: u64,
    pub tasks_failed: u64,
    pub shuffle_read_bytes: u64,
    pub shuffle_write_bytes: u64,
    pub jobs_succeeded: u64,
    pub jobs_failed: u64,
}

/// Everything the UI shows of an application.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    pub id: String,
    pub name: String,
    pub master: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub last_event_ms: u64,
    pub environment: BTreeMap<String, String>,
    pub jobs: BTreeMap<u64, JobData>,
    pub forgotten: Forgotten,
    pub stages: BTreeMap<u64, StageData>,
    /// In the order they were added.
    pub executors: Vec<ExecutorData>,
    pub rdds: BTreeMap<u64, RddData>,
    /// (rdd, partition, executor) → block.
    pub blocks: BTreeMap<(u64, u32, String), BlockData>,
    pub training: Vec<TrainingRun>,
    pub totals: Totals,
}

impl AppState {
    /// Whether it is still running (no end heard).
    pub fn running(&self) -> bool {
        self.end_ms.is_none()
    }

    pub fn executor(&self, id: &str) -> Option<&ExecutorData> {
        self.executors.iter().find(|e| e.id == id)
    }

    /// (memory, disk, blocks) an executor holds.
    pub fn executor_storage(&self, id: &str) -> (u64, u64, usize) {
        self.blocks
            .iter()
            .filter(|(k, _)| k.2 == id)
            .fold((0, 0, 0), |a, (_, b)| {
                (a.0 + b.memory_bytes, a.1 + b.disk_bytes, a.2 + 1)
            })
    }

    /// (partitions cached, memory, disk) of an RDD.
    pub fn rdd_storage(&self, rdd: u64) -> (usize, u64, u64) {
        let mut parts: Vec<u32> = Vec::new();
        let (mut mem, mut disk) = (0, 0);
        for ((r, p, _), b) in self.blocks.range((rdd, 0, String::new())..) {
            if *r != rdd {
                break;
            }
            parts.push(*p);
            mem += b.memory_bytes;
            disk += b.disk_bytes;
        }
        parts.dedup();
        (parts.len(), mem, disk)
    }
}
