//! `executor`: joins a driver and runs its tasks. Cluster mode (the gRPC services) is not part
//! of this build yet; until it is, the command refuses clearly instead of pretending to run.

use clap::Parser;
use discnn::cli;
use std::process::ExitCode;

// Tasks allocate many short-lived records from several threads; mimalloc handles that pattern
// far better than glibc's malloc (BENCHMARKS.md has the measurement).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "executor", version = cli::version())]
#[command(about = "Run tasks for a discnn driver (cluster mode)")]
struct Cli {
    /// The driver's HOST:PORT.
    #[arg(long)]
    driver: String,
    /// Task slots.
    #[arg(long)]
    cores: Option<usize>,
    /// Block manager memory, e.g. 2g.
    #[arg(long)]
    memory: Option<String>,
    /// Where this executor serves shuffle blocks.
    #[arg(long)]
    listen: Option<String>,
    /// The host other processes reach this executor at.
    #[arg(long)]
    advertise: Option<String>,
    /// Directory for spilled blocks and shuffle files.
    #[arg(long)]
    work_dir: Option<std::path::PathBuf>,
    /// File holding the cluster's shared secret.
    #[arg(long)]
    secret_file: Option<std::path::PathBuf>,
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.verbose);
    eprintln!(
        "error: cannot join driver {}: cluster mode is not available in this build yet; \
         run jobs locally with `driver submit --master local[N]`",
        cli.driver
    );
    ExitCode::from(2)
}
