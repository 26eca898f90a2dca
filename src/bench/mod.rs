//! Benchmarks behind `driver bench`. Timings live here and in `bench/*.sh`, never in tests.

pub mod cnn;
pub mod engine;
