//! Typed failures. A [`TaskFailure`] is what a task reports; it crosses the wire unchanged so the
//! scheduler decides retries on the reason, never on a flattened string.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Why one task attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TaskFailure {
    #[error("user code panicked: {message}")]
    UserPanic { message: String },
    #[error("could not decode {what}: {message}")]
    Decode { what: String, message: String },
    #[error("could not encode {what}: {message}")]
    Encode { what: String, message: String },
    #[error("unknown {kind} op `{name}`: it is not registered in this binary (add `discnn_engine::register_op!({kind} {name});`)")]
    UnknownOp { kind: String, name: String },
    #[error("unknown key type `{name}` (add `discnn_engine::register_key!({name});`)")]
    UnknownKeyType { name: String },
    #[error("malformed plan: {message}")]
    Plan { message: String },
    #[error("I/O error on {path}: {message}")]
    Io { path: String, message: String },
    #[error("bad input: {message}")]
    BadInput { message: String },
    #[error("shuffle {shuffle}: output of map {map} is unavailable: {message}")]
    FetchFailed {
        shuffle: u64,
        map: u32,
        message: String,
    },
    #[error("executor {executor} was lost")]
    ExecutorLost { executor: String },
    #[error("injected failure: {message}")]
    Injected { message: String },
    #[error(
        "no executor was alive for {waited_s} s (the cluster's grace period); the job cannot run"
    )]
    NoExecutors { waited_s: u64 },
}

impl TaskFailure {
    /// Whether running the same task again may succeed. Corrupt input, a malformed plan or an
    /// unregistered op fail the same way every time, so retrying them only delays the error.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            TaskFailure::BadInput { .. }
                | TaskFailure::UnknownOp { .. }
                | TaskFailure::UnknownKeyType { .. }
                | TaskFailure::Plan { .. }
                | TaskFailure::NoExecutors { .. }
        )
    }

    pub(crate) fn io(path: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        TaskFailure::Io {
            path: path.to_string(),
            message: err.to_string(),
        }
    }

    pub(crate) fn plan(message: impl Into<String>) -> Self {
        TaskFailure::Plan {
            message: message.into(),
        }
    }
}

/// Errors returned by the engine's public API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("job {job} failed: stage {stage} partition {partition} failed after {attempts} attempt(s): {failure}")]
    JobFailed {
        job: u64,
        stage: u64,
        partition: usize,
        attempts: u32,
        failure: TaskFailure,
    },
    #[error("job {job} aborted: stage {stage} failed {attempts} times in a row fetching shuffle output: {failure}")]
    StageAborted {
        job: u64,
        stage: u64,
        attempts: u32,
        failure: TaskFailure,
    },
    #[error("input not found: {0}")]
    InputNotFound(PathBuf),
    #[error("cannot read input {path}: {source}")]
    InputUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("output already exists: {0}")]
    OutputExists(PathBuf),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("codec error: {0}")]
    Codec(String),
    #[error("{0}")]
    Task(TaskFailure),
    #[error("job {job} was cancelled")]
    Cancelled { job: u64 },
    /// A failure of the layer that runs the executors (a cluster's set-up); kept as a boxed
    /// error so that this bottom layer names nothing above it.
    #[error(transparent)]
    Cluster(Box<dyn std::error::Error + Send + Sync>),
}

impl EngineError {
    /// True when the error is the user's input or arguments rather than a failure of the job
    /// (the binaries map this to exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            EngineError::InputNotFound(_)
            | EngineError::InputUnreadable { .. }
            | EngineError::OutputExists(_)
            | EngineError::BadInput(_)
            | EngineError::InvalidArgument(_) => true,
            EngineError::JobFailed { failure, .. } | EngineError::Task(failure) => {
                matches!(failure, TaskFailure::BadInput { .. })
            }
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<TaskFailure> for EngineError {
    fn from(f: TaskFailure) -> Self {
        EngineError::Task(f)
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
