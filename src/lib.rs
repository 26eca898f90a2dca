//! The `driver` and `executor` binaries' shared code: jobs, benchmarks and the CLI plumbing.

pub mod bench;
pub mod cli;
pub mod jobs;
