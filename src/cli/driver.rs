//! `driver`: submits jobs (locally by default) and runs benchmarks.

use crate::cli::{self, TlsArgs, UsageError};
use crate::JobSpec;
use anyhow::Context as _;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use discnn_engine::cluster::{
    self, pb, ClusterConfig, ClusterDriver, ClusterTimings, Credentials, Secret,
};
use discnn_engine::{Config, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "driver", version = cli::version(), propagate_version = true)]
#[command(about = "Submit discnn jobs and run benchmarks")]
struct Cli {
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Logging")]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job. Options may come before or after the job's name.
    Submit(Submit),
    /// Run a long-lived cluster driver that executors join and clients submit jobs to. Jobs
    /// run one at a time, in the order they arrive; later ones wait in a queue.
    Serve(Serve),
    /// List a cluster driver's executors and jobs.
    Status(Status),
    /// Serve the web UI and REST API of finished (and running) applications from their event
    /// logs, until interrupted.
    History(History),
    /// Run a benchmark and print its measurements.
    Bench(Bench),
    /// Rewrite a cnn-experiment's report.md and charts from DIR/experiment.json and the runs
    /// under DIR/runs, running nothing (after adding the PyTorch peer's runs, for instance).
    Report {
        /// The experiment's --output directory.
        dir: PathBuf,
    },
}

#[derive(Args)]
struct Submit {
    /// Where to run: local, local[N], local[*], local-cluster[N,C] (N executor processes of C
    /// cores on this host) or HOST:PORT of a running `driver serve`.
    #[arg(
        long,
        global = true,
        help_heading = "Submission",
        default_value = "local[*]"
    )]
    master: String,
    /// The cluster's shared secret (else $DISCNN_SECRET).
    #[arg(long, global = true, help_heading = "Submission")]
    secret_file: Option<PathBuf>,
    /// No console progress bar.
    #[arg(long, global = true, help_heading = "Submission")]
    no_progress: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true, help_heading = "Submission")]
    json: bool,
    /// Serve the web UI, REST API and /metrics on HOST:PORT while the job runs (local masters;
    /// a cluster's driver serves its own).
    #[arg(long, global = true, help_heading = "Submission", value_name = "ADDR")]
    ui: Option<String>,
    /// Write the application's event log into DIR (created if missing), for `driver history`.
    #[arg(long, global = true, help_heading = "Submission", value_name = "DIR")]
    event_log: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
struct Serve {
    /// HOST:PORT to serve executors and clients on (default: 0.0.0.0:7077 with a shared
    /// secret, 127.0.0.1:7077 without; without one, an address outside loopback needs
    /// --insecure).
    #[arg(long)]
    listen: Option<String>,
    /// Allow --listen outside loopback without a shared secret (anyone who reaches the port can
    /// submit jobs that read and write files as this user).
    #[arg(long)]
    insecure: bool,
    /// The cluster's shared secret (else $DISCNN_SECRET; without either, no authentication).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Seconds without a heartbeat before an executor is declared lost.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_timeout: f64,
    /// Seconds a job waits for an executor when none is alive, before it fails.
    #[arg(long, default_value_t = 30.0)]
    grace: f64,
    /// Serve the web UI, REST API and /metrics on HOST:PORT (the next free port up to 16 above
    /// when it is busy), or `off`. Beyond loopback it needs the shared secret as the HTTP
    /// password.
    #[arg(long, value_name = "ADDR")]
    ui: Option<String>,
    /// Write each application's event log into DIR (created if missing), for `driver history`.
    #[arg(long, value_name = "DIR")]
    event_log: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
struct History {
    /// The directory of event logs (`--event-log` of `driver serve` or `driver submit`).
    #[arg(long, value_name = "DIR")]
    event_log: PathBuf,
    /// Where to serve the UI and API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18080")]
    ui: String,
    /// The shared secret, needed (as the HTTP password) beyond loopback (else $DISCNN_SECRET).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Allow --ui beyond loopback without a secret.
    #[arg(long)]
    insecure: bool,
}

#[derive(Args)]
struct Status {
    /// HOST:PORT of the driver.
    #[arg(long)]
    master: String,
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
struct Bench {
    #[command(subcommand)]
    which: BenchKind,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum Kernels {
    Auto,
    Avx2,
    Portable,
}

#[derive(Subcommand)]
enum BenchKind {
    /// Write the W1 input (10 Zipf-distributed words a line, vocabulary 10,000, seed 42), so a
    /// peer system can read the same file.
    Words {
        #[arg(long)]
        lines: usize,
        #[arg(long)]
        output: PathBuf,
    },
    /// Training and inference throughput of the CNN (the paper's net unless --spec) on
    /// CIFAR-shaped random data: median of --reps repetitions after a warm-up.
    CnnTrain {
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Images per repetition.
        #[arg(long, default_value_t = 10240)]
        images: usize,
        #[arg(long, default_value = discnn_cnn::spec::PAPER)]
        spec: String,
        /// The convolution kernels: the best this CPU has, AVX2 at most, or im2col + GEMM.
        #[arg(long, value_enum, default_value = "auto")]
        kernels: Kernels,
        /// Print exactly one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The RDD engine workloads of BENCHMARKS.md.
    Engine {
        /// w0 (small-job overhead), w0-broadcast (w0 with a fresh broadcast per job),
        /// w0-leader (a Dis-CNN iteration without its compute), w1 (wordcount), w2 (logistic
        /// regression), w3-group or w3-sort (group_by_key / sort_by_key).
        #[arg(long)]
        workload: String,
        /// Jobs for w0 and its variants, lines for w1, points for w2, pairs for w3.
        #[arg(long)]
        size: u64,
        #[arg(long, default_value = "local[*]")]
        master: String,
        /// Write the event log into DIR while measuring (its cost is part of the figure).
        #[arg(long, value_name = "DIR")]
        event_log: Option<PathBuf>,
        /// Print exactly one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

const DEFAULT_UI: &str = "127.0.0.1:4040";

/// One line of the job's output on stdout. A reader that went away (`| head`) ends the
/// program quietly, as it would end `cat`.
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

fn secret(file: Option<&Path>) -> anyhow::Result<Option<Secret>> {
    Secret::from_file_or_env(file).map_err(|e| UsageError(e).into())
}

fn credentials(file: Option<&Path>, tls: &TlsArgs) -> anyhow::Result<Credentials> {
    Ok(Credentials {
        secret: secret(file)?,
        tls: tls.load()?,
    })
}

/// `submit`'s subcommands are the registered jobs (`crate::register_job!`), known only when
/// the program runs; the rest of the command line is clap's derive.
fn command() -> clap::Command {
    Cli::command().mut_subcommand("submit", |s| {
        s.subcommands(crate::job::commands())
            .subcommand_required(true)
            .subcommand_value_name("JOB")
            .subcommand_help_heading("Jobs")
            // An unknown name reaches `submit`, which lists the jobs this build has.
            .allow_external_subcommands(true)
    })
}

fn submit(s: Submit, job: (&str, &clap::ArgMatches)) -> anyhow::Result<()> {
    let spec = JobSpec::from_matches(job.0, job.1, s.json)?;
    if !s.master.starts_with("local") {
        if s.ui.is_some() || s.event_log.is_some() {
            return Err(UsageError(
                "--ui and --event-log are for local masters: a cluster's `driver serve` takes them"
                    .into(),
            )
            .into());
        }
        let creds = credentials(s.secret_file.as_deref(), &s.tls)?;
        return submit_remote(&s.master, &creds, spec);
    }
    let ui = cli::watch::UiOption {
        address: s.ui.as_deref(),
        explicit: true,
        secret: secret(s.secret_file.as_deref())?,
        insecure: false,
    };
    let watch = cli::watch::live(&ui, s.event_log.as_deref())?;
    let ctx = Context::new(Config {
        master: s.master.clone(),
        app_name: spec.job.clone(),
        progress: !s.no_progress,
        listeners: watch.listeners.clone(),
        ..Config::default()
    })?;
    spec.run(&ctx, &mut |line| print_line(&line), &mut |line| {
        eprintln!("{line}")
    })
}

/// Runs the job on a `driver serve` cluster, printing its output and progress here.
fn submit_remote(master: &str, creds: &Credentials, spec: JobSpec) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("the current directory")?;
    let json = serde_json::to_string(&spec.absolutize(&cwd)?)?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let end = cluster::client::submit(master, creds, &json, |e| match e {
        pb::job_event::Event::Stdout(line) => print_line(&line),
        pb::job_event::Event::Log(line) => eprintln!("{line}"),
        pb::job_event::Event::Progress(line) if tty => {
            eprint!("\r{line:<80}\r");
            let _ = std::io::stderr().flush();
        }
        _ => {}
    })?;
    match end.exit_code {
        0 => Ok(()),
        cluster::client::INTERRUPTED => {
            eprintln!(
                "error: {}",
                end.error.unwrap_or_else(|| "interrupted".into())
            );
            std::process::exit(cluster::client::INTERRUPTED)
        }
        code => {
            let msg = end.error.unwrap_or_else(|| "the job failed".into());
            if code == 2 {
                Err(UsageError(msg).into())
            } else {
                Err(anyhow::anyhow!(msg))
            }
        }
    }
}

fn serve(s: Serve) -> anyhow::Result<()> {
    let secure = |v: f64, name: &str| {
        if v > 0.0 && v.is_finite() {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(UsageError(format!(
                "--{name} must be a positive number of seconds"
            )))
        }
    };
    let secret = secret(s.secret_file.as_deref())?;
    let listen = cli::listen_address(s.listen.as_deref(), 7077, secret.is_some(), s.insecure)?;
    let config = ClusterConfig {
        listen: listen.clone(),
        secret,
        tls: s.tls.load()?,
        timings: ClusterTimings {
            heartbeat_timeout: secure(s.heartbeat_timeout, "heartbeat-timeout")?,
            no_executor_grace: secure(s.grace, "grace")?,
            ..ClusterTimings::default()
        },
    };
    if config.secret.is_none() {
        tracing::warn!("no shared secret: any process that reaches {listen} can join or submit");
    }
    let ui = cli::watch::UiOption {
        address: Some(s.ui.as_deref().unwrap_or(DEFAULT_UI)),
        explicit: s.ui.is_some(),
        secret: config.secret.clone(),
        insecure: s.insecure,
    };
    let watch = cli::watch::live(&ui, s.event_log.as_deref())?;
    let driver = ClusterDriver::start(
        config,
        Some(Arc::new(crate::job::Catalog)),
        Config {
            listeners: watch.listeners.clone(),
            ..Config::default()
        },
    )?;
    eprintln!("driver serving on {}", driver.address());
    driver.wait_for_shutdown_signal()?;
    Ok(())
}

fn history(h: History) -> anyhow::Result<()> {
    let ui = cli::watch::UiOption {
        address: Some(&h.ui),
        explicit: true,
        secret: secret(h.secret_file.as_deref())?,
        insecure: h.insecure,
    };
    cli::watch::history(&ui, &h.event_log)
}

fn status(s: Status) -> anyhow::Result<()> {
    let creds = credentials(s.secret_file.as_deref(), &s.tls)?;
    let r = cluster::client::status(&s.master, &creds)?;
    if s.json {
        let o = serde_json::json!({
            "fingerprint": r.fingerprint,
            "executors": r.executors.iter().map(|e| serde_json::json!({
                "id": e.id,
                "address": e.address,
                "cores": e.cores,
                "state": e.state,
                "ms_since_heartbeat": e.ms_since_heartbeat,
                "running_tasks": e.running_tasks,
                "tasks_finished": e.tasks_finished,
            })).collect::<Vec<_>>(),
            "jobs": r.jobs.iter().map(|j| serde_json::json!({
                "id": j.id, "name": j.name, "state": j.state, "error": j.error,
            })).collect::<Vec<_>>(),
        });
        println!("{o}");
        return Ok(());
    }
    println!("driver {} ({})", s.master, r.fingerprint);
    // Ids carry the driver's incarnation (`exec-3-1a2b3c4d`): size the column to them.
    let w = r
        .executors
        .iter()
        .map(|e| e.id.len())
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "{:<w$} {:<22} {:>5} {:<9} {:>10} {:>8} {:>9}",
        "EXECUTOR", "ADDRESS", "CORES", "STATE", "HEARTBEAT", "RUNNING", "FINISHED"
    );
    for e in &r.executors {
        println!(
            "{:<w$} {:<22} {:>5} {:<9} {:>8.1} s {:>8} {:>9}",
            e.id,
            e.address,
            e.cores,
            e.state,
            e.ms_since_heartbeat as f64 / 1e3,
            e.running_tasks,
            e.tasks_finished
        );
    }
    for j in &r.jobs {
        let err = if j.error.is_empty() {
            String::new()
        } else {
            format!(": {}", j.error)
        };
        println!("job {} {} {}{err}", j.id, j.name, j.state);
    }
    Ok(())
}

fn bench(b: Bench) -> anyhow::Result<()> {
    match b.which {
        BenchKind::Words { lines, output } => {
            if output.exists() {
                return Err(discnn_engine::EngineError::OutputExists(output).into());
            }
            crate::bench::engine::write_words(&output, lines, 42)
                .with_context(|| format!("writing {}", output.display()))?;
        }
        BenchKind::CnnTrain {
            batch,
            threads,
            reps,
            images,
            spec,
            kernels,
            json,
        } => {
            use discnn_cnn::layers::conv_wide;
            match kernels {
                Kernels::Auto => {}
                Kernels::Avx2 => conv_wide::force_avx2(true),
                Kernels::Portable => conv_wide::force_portable(true),
            }
            if batch == 0 || reps == 0 || images == 0 || threads == Some(0) {
                return Err(UsageError(
                    "--batch, --threads, --reps and --images must be positive".into(),
                )
                .into());
            }
            discnn_cnn::spec::NetSpec::parse([3, 32, 32], &spec)
                .map_err(|e| UsageError(format!("--spec: {e}")))?;
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            let o = crate::bench::cnn::Options {
                batch,
                threads,
                reps,
                images,
                spec,
            };
            let r = crate::bench::cnn::run(&o)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "cnn-train ({} params, batch {}, {} threads, {} kernels): train {:.0} img/s ({:.1} GFLOP/s at {:.2} MFLOP/img), inference {:.0} img/s",
                    r.params,
                    r.batch,
                    r.threads,
                    r.kernels,
                    r.train_img_per_s,
                    r.gflops,
                    r.flop_per_img as f64 / 1e6,
                    r.infer_img_per_s
                );
            }
        }
        BenchKind::Engine {
            workload,
            size,
            master,
            event_log,
            json,
        } => {
            if size == 0 {
                return Err(UsageError("--size must be positive".into()).into());
            }
            let listeners = match &event_log {
                Some(dir) => discnn_ui::eventlog::factory(dir)
                    .map_err(|e| UsageError(format!("--event-log: {e}")))?,
                None => Default::default(),
            };
            let ctx = Context::new(Config {
                master: master.clone(),
                listeners,
                ..Config::default()
            })?;
            let dir = tempfile::tempdir().context("a scratch directory")?;
            let r = crate::bench::engine::run(&ctx, &workload, size, dir.path())?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} ({} on {}): {:.3} s measured, {:.3} ms per unit, setup {:.2} s, peak RSS {:.0} MiB",
                    r.workload,
                    r.size,
                    r.master,
                    r.wall_s,
                    r.per_unit_ms,
                    r.setup_s,
                    r.peak_rss_bytes as f64 / (1 << 20) as f64
                );
            }
        }
    }
    Ok(())
}

fn report(dir: &std::path::Path) -> anyhow::Result<()> {
    use discnn_cnn::experiment::{report, ExperimentConfig};
    let cfg = ExperimentConfig::load(dir).map_err(|e| UsageError(e.to_string()))?;
    let path = report::write(&cfg)?;
    println!("report: {}", path.display());
    Ok(())
}

/// Parses `driver`'s arguments (after the program name) as the program would, running
/// nothing: for checking the command lines of deployment files.
pub fn check_args(args: &[String]) -> anyhow::Result<()> {
    let matches = command()
        .try_get_matches_from(std::iter::once("driver".to_string()).chain(args.iter().cloned()))?;
    let cli = Cli::from_arg_matches(&matches)?;
    if let Command::Submit(s) = cli.command {
        let Some((name, m)) = matches
            .subcommand_matches("submit")
            .and_then(|m| m.subcommand())
        else {
            anyhow::bail!("submit needs a job");
        };
        JobSpec::from_matches(name, m, s.json)?;
    }
    Ok(())
}

/// The `driver` program, with every op and job linked into the calling binary: a user's
/// `my-driver` is `fn main() -> ExitCode { discnn::driver_main() }` in a crate that registers them.
pub fn driver_main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    cli::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Submit(s) => match matches
            .subcommand_matches("submit")
            .and_then(|m| m.subcommand())
        {
            Some(job) => submit(s, job),
            None => Err(UsageError("submit needs a job".into()).into()),
        },
        Command::Serve(s) => serve(s),
        Command::Status(s) => status(s),
        Command::History(h) => history(h),
        Command::Bench(b) => bench(b),
        Command::Report { dir } => report(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::exit_code_for(&e),
    }
}
