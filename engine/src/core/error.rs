//! Typed failures. A [`TaskFailure`] is what a task reports; it crosses the wire unchanged so the
//! scheduler decides retries on the reason, never on a flattened string.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Why one task attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TaskFailure {
    /// The op's code panicked; the panic is caught so the executor lives on.
    #[error("user code panicked: {message}")]
    UserPanic {
        /// The panic's payload, when it was a string.
        message: String,
    },
    /// Bytes that should hold a record, an op or a plan did not decode.
    #[error("could not decode {what}: {message}")]
    Decode {
        /// What was being decoded (a type name or a message kind).
        what: String,
        /// The codec's error.
        message: String,
    },
    /// A value's `Serialize` refused to encode it.
    #[error("could not encode {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The codec's error.
        message: String,
    },
    /// The plan names an op this binary has not registered.
    #[error("unknown {kind} op `{name}`: it is not registered in this binary (add `discnn_engine::register_op!({kind} {name});`)")]
    UnknownOp {
        /// The op's kind (`map`, `reduce`, …).
        kind: String,
        /// The op's type name as the driver registered it.
        name: String,
    },
    /// The plan names a key type this binary has not registered.
    #[error("unknown key type `{name}` (add `discnn_engine::register_key!({name});`)")]
    UnknownKeyType {
        /// The key's type name.
        name: String,
    },
    /// The task's plan is inconsistent (a missing node or partition): a bug or a forged message.
    #[error("malformed plan: {message}")]
    Plan {
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        message: String,
    },
    /// The input data is malformed; retrying cannot help.
    #[error("bad input: {message}")]
    BadInput {
        /// What is wrong, naming the file and offset where known.
        message: String,
    },
    /// A reduce task could not fetch a map output; the scheduler recomputes the map stage.
    #[error("shuffle {shuffle}: output of map {map} is unavailable: {message}")]
    FetchFailed {
        /// The shuffle's id.
        shuffle: u64,
        /// The map partition whose output is missing.
        map: u32,
        /// Why the fetch failed.
        message: String,
    },
    /// The executor running the task went away.
    #[error("executor {executor} was lost")]
    ExecutorLost {
        /// The lost executor's id.
        executor: String,
    },
    /// A failure injected by a test op.
    #[error("injected failure: {message}")]
    Injected {
        /// The test's message.
        message: String,
    },
    /// No executor registered within the cluster's grace period.
    #[error(
        "no executor was alive for {waited_s} s (the cluster's grace period); the job cannot run"
    )]
    NoExecutors {
        /// How long the scheduler waited.
        waited_s: u64,
    },
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
    /// A task failed on every allowed attempt.
    #[error("job {job} failed: stage {stage} partition {partition} failed after {attempts} attempt(s): {failure}")]
    JobFailed {
        /// The job's id.
        job: u64,
        /// The stage the task belonged to.
        stage: u64,
        /// The partition the task computed.
        partition: usize,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        failure: TaskFailure,
    },
    /// A stage kept losing its shuffle input, more times in a row than allowed.
    #[error("job {job} aborted: stage {stage} failed {attempts} times in a row fetching shuffle output: {failure}")]
    StageAborted {
        /// The job's id.
        job: u64,
        /// The stage that was aborted.
        stage: u64,
        /// Consecutive attempts that failed.
        attempts: u32,
        /// The last fetch failure.
        failure: TaskFailure,
    },
    /// An input path does not exist.
    #[error("input not found: {0}")]
    InputNotFound(PathBuf),
    /// An input path exists but cannot be read.
    #[error("cannot read input {path}: {source}")]
    InputUnreadable {
        /// The input.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An output path exists; the engine never overwrites one.
    #[error("output already exists: {0}")]
    OutputExists(PathBuf),
    /// Reading or writing a file on the driver failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The input data is malformed.
    #[error("bad input: {0}")]
    BadInput(String),
    /// An argument to an engine call is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A value could not be encoded or decoded on the driver.
    #[error("codec error: {0}")]
    Codec(String),
    /// A task's failure, reported as it came (e.g. from a partitioner decoded on the driver).
    #[error("{0}")]
    Task(TaskFailure),
    /// The job was cancelled through its `CancelToken`.
    #[error("job {job} was cancelled")]
    Cancelled {
        /// The job's id.
        job: u64,
    },
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

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
