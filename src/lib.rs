//! The `driver` and `executor` programs as a library: [`driver_main`] and [`executor_main`] run
//! their command lines with every op and [`Job`] linked into the calling binary, so a user's
//! crate that registers its own (`register_op!`, [`register_job!`]) builds a driver and an
//! executor that carry them (`examples/user-job`). Also the built-in jobs and benchmarks.

pub mod bench;
pub mod cli;
pub mod job;
pub mod jobs;

pub use cli::driver::driver_main;
pub use cli::executor::executor_main;
pub use job::{Job, JobIo, JobSpec};

/// What [`register_job!`] expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
