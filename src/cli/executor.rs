//! `executor`: joins a driver and runs its tasks (cluster mode).

use crate::cli::{self, UsageError};
use anyhow::Context as _;
use clap::Parser;
use discnn_engine::cluster::executor_process::{self, ExecutorOptions};
use discnn_engine::cluster::{ClusterError, Secret};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "executor", version = cli::version())]
#[command(about = "Run tasks for a discnn driver (cluster mode)")]
struct Cli {
    /// The driver's HOST:PORT.
    #[arg(long)]
    driver: String,
    /// Task slots (default: all cores).
    #[arg(long)]
    cores: Option<usize>,
    /// Block manager memory, e.g. 512m, 2g or a number of bytes (default 1g).
    #[arg(long, default_value = "1g")]
    memory: String,
    /// Map output kept in memory before new outputs are written to the work dir, e.g. 256m
    /// (default 1g).
    #[arg(long, default_value = "1g")]
    shuffle_memory: String,
    /// Where this executor serves tasks and shuffle blocks (default: any free port, on every
    /// interface with a shared secret, on 127.0.0.1 without; without one, an address outside
    /// loopback needs --insecure).
    #[arg(long)]
    listen: Option<String>,
    /// Allow --listen outside loopback without a shared secret (anyone who reaches the port can
    /// send tasks that read and write files as this user).
    #[arg(long)]
    insecure: bool,
    /// The host other processes reach this executor at (default: the address the driver
    /// sees this executor connect from).
    #[arg(long)]
    advertise: Option<String>,
    /// A directory under which this executor makes a fresh directory of its own (default:
    /// the system temporary directory).
    #[arg(long)]
    work_dir: Option<std::path::PathBuf>,
    /// File holding the cluster's shared secret (else $DISCNN_SECRET).
    #[arg(long)]
    secret_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    tls: cli::TlsArgs,
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let secret = Secret::from_file_or_env(cli.secret_file.as_deref()).map_err(UsageError)?;
    let size = |flag: &str, value: &str| {
        cli::parse_size(value).ok_or_else(|| {
            UsageError(format!(
                "--{flag} `{value}`: expected e.g. 512m, 2g or bytes"
            ))
        })
    };
    let memory = size("memory", &cli.memory)?;
    let shuffle_memory = size("shuffle-memory", &cli.shuffle_memory)?;
    let cores = match cli.cores {
        Some(0) => return Err(UsageError("--cores must be positive".into()).into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    // An executor of N cores computes on N threads: the data-parallel work inside a task
    // (rayon) shares the cores its slots were given, as Spark bounds an executor by its cores.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .build_global()
    {
        tracing::warn!("could not size the compute pool to {cores} threads: {e}");
    }
    let opts = ExecutorOptions {
        driver: cli.driver.clone(),
        cores,
        memory,
        shuffle_memory,
        listen: cli::listen_address(cli.listen.as_deref(), 0, secret.is_some(), cli.insecure)?,
        advertise: cli.advertise,
        work_dir: cli.work_dir,
        secret,
        tls: cli.tls.load()?,
        ..ExecutorOptions::default()
    };
    match executor_process::run(opts) {
        Err(e @ ClusterError::Refused(_)) => Err(anyhow::Error::new(e))
            .context(format!("driver {} refused this executor", cli.driver)),
        r => Ok(r?),
    }
}

/// Parses `executor`'s arguments (after the program name) as the program would, running
/// nothing.
pub fn check_args(args: &[String]) -> anyhow::Result<()> {
    Cli::try_parse_from(std::iter::once("executor".to_string()).chain(args.iter().cloned()))?;
    Ok(())
}

/// The `executor` program, with every op and job linked into the calling binary: a user's
/// `my-executor` is `fn main() -> ExitCode { discnn::executor_main() }` in a crate that registers them.
pub fn executor_main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.verbose.max(1));
    exit_with_parent();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::exit_code_for(&e),
    }
}

/// A `local-cluster` executor lives as long as the process that started it: when that process
/// is gone (this one re-parented), it exits rather than heartbeat to nobody for ever.
fn exit_with_parent() {
    let Some(parent) = std::env::var(discnn_engine::cluster::PARENT_PID_ENV)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return;
    };
    let watch = move || loop {
        if std::os::unix::process::parent_id() != parent {
            tracing::warn!(
                "the process that started this executor (pid {parent}) is gone; exiting"
            );
            std::process::exit(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    if let Err(e) = std::thread::Builder::new()
        .name("discnn-parent-watch".into())
        .spawn(watch)
    {
        tracing::warn!("cannot watch the parent process: {e}");
    }
}
