//! `executor`: joins a driver and runs its tasks (cluster mode).

// Tasks allocate many short-lived records from several threads; mimalloc handles that pattern
// far better than glibc's malloc (BENCHMARKS.md has the measurement).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    discnn::executor_main()
}
