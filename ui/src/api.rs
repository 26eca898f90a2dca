//! The REST API under `/api/v1`, shaped as Spark's monitoring API where Spark has the same
//! thing (field names in camelCase, times as `…GMT` strings beside epoch milliseconds).

use crate::format::gmt;
use crate::store::{AppState, ExecutorData, JobData, StageData};
use serde_json::{json, Value};

/// `/applications`: one object per application.
pub fn application(st: &AppState) -> Value {
    let end = st.end_ms.unwrap_or(st.last_event_ms);
    json!({
        "id": st.id,
        "name": st.name,
        "master": st.master,
        "attempts": [{
            "startTime": gmt(st.start_ms),
            "startTimeEpoch": st.start_ms,
            "endTime": st.end_ms.map(gmt),
            "endTimeEpoch": st.end_ms,
            "lastUpdated": gmt(st.last_event_ms),
            "duration": end.saturating_sub(st.start_ms),
            "completed": !st.running(),
        }],
    })
}

/// `/applications/{app}/jobs/{id}`.
pub fn job(j: &JobData) -> Value {
    json!({
        "jobId": j.id,
        "name": j.description,
        "status": j.status,
        "submissionTime": gmt(j.submission_ms),
        "completionTime": j.completion_ms.map(gmt),
        "stageIds": j.stage_ids,
        "numTasks": j.num_tasks,
        "numCompletedTasks": j.completed_tasks,
        "numFailedTasks": j.failed_tasks,
        "failureReason": j.error,
    })
}

/// `/applications/{app}/jobs`: newest first, as Spark lists them.
pub fn jobs(st: &AppState) -> Value {
    Value::Array(st.jobs.values().rev().map(job).collect())
}

/// The median of `v` (sorted in place); 0 for none.
pub fn min_median_max(v: &[u64]) -> (u64, u64, u64) {
    let mut s = v.to_vec();
    s.sort_unstable();
    match s.len() {
        0 => (0, 0, 0),
        n => (s[0], s[n / 2], s[n - 1]),
    }
}

/// `/applications/{app}/stages/{id}`.
pub fn stage(s: &StageData) -> Value {
    let (min, median, max) = min_median_max(&s.task_micros);
    json!({
        "stageId": s.id,
        "attemptId": s.attempt,
        "jobId": s.job,
        "name": s.name,
        "status": s.status,
        "shuffleMap": s.shuffle_map,
        "numTasks": s.num_tasks,
        "numActiveTasks": s.active_tasks,
        "numCompleteTasks": s.completed_tasks,
        "numFailedTasks": s.failed_tasks,
        "numRetriedTasks": s.retried_tasks,
        "submissionTime": gmt(s.submission_ms),
        "completionTime": s.completion_ms.map(gmt),
        "executorRunTime": s.run_micros / 1000,
        "taskDurationMicros": {"min": min, "median": median, "max": max},
        "shuffleReadBytes": s.shuffle_read_bytes,
        "shuffleReadRecords": s.shuffle_read_records,
        "shuffleWriteBytes": s.shuffle_write_bytes,
        "shuffleWriteRecords": s.shuffle_write_records,
        "failureReason": s.failure,
    })
}

/// `/applications/{app}/stages`: newest first.
pub fn stages(st: &AppState) -> Value {
    Value::Array(st.stages.values().rev().map(stage).collect())
}

fn executor(st: &AppState, e: &ExecutorData) -> Value {
    let (memory, disk, blocks) = st.executor_storage(&e.id);
    json!({
        "id": e.id,
        "hostPort": e.address,
        "isActive": matches!(e.state, "alive" | "draining"),
        "state": e.state,
        "totalCores": e.cores,
        "maxTasks": e.cores,
        "completedTasks": e.completed_tasks,
        "failedTasks": e.failed_tasks,
        "totalTasks": e.completed_tasks + e.failed_tasks,
        "totalDuration": e.task_micros / 1000,
        "totalShuffleRead": e.shuffle_read_bytes,
        "totalShuffleWrite": e.shuffle_write_bytes,
        "rddBlocks": blocks,
        "memoryUsed": memory,
        "diskUsed": disk,
        "addTime": gmt(e.added_ms),
        "removeTime": e.removed_ms.map(gmt),
        "removeReason": e.remove_reason,
    })
}

/// `/applications/{app}/executors`: every executor the application saw, lost ones included
/// (Spark's `allexecutors`; `isActive` tells them apart).
pub fn executors(st: &AppState) -> Value {
    Value::Array(st.executors.iter().map(|e| executor(st, e)).collect())
}

/// `/applications/{app}/storage/rdd`.
pub fn storage(st: &AppState) -> Value {
    Value::Array(
        st.rdds
            .values()
            .map(|r| {
                let (cached, memory, disk) = st.rdd_storage(r.id);
                json!({
                    "id": r.id,
                    "name": r.name,
                    "numPartitions": r.num_partitions,
                    "numCachedPartitions": cached,
                    "storageLevel": r.level,
                    "memoryUsed": memory,
                    "diskUsed": disk,
                })
            })
            .collect(),
    )
}

/// `/applications/{app}/environment`.
pub fn environment(st: &AppState) -> Value {
    json!({
        "runtime": {"master": st.master, "appName": st.name},
        "properties": st.environment.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
    })
}

/// `/applications/{app}/training[?run=N]`: run N's rows of `metrics.jsonl` (the latest run's
/// by default); `None` when there is no such run.
pub fn training(st: &AppState, run: Option<usize>) -> Option<Value> {
    let r = match run {
        Some(i) => st.training.get(i)?,
        None => st.training.last()?,
    };
    Some(Value::Array(r.rows.clone()))
}
