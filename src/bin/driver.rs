//! `driver`: submits jobs (locally by default), serves a cluster, runs benchmarks.

// Tasks allocate many short-lived records from several threads; mimalloc handles that pattern
// far better than glibc's malloc (BENCHMARKS.md has the measurement).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    discnn::driver_main()
}
