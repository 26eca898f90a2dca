//! `driver`: submits jobs (locally by default) and runs benchmarks.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use discnn::cli::{self, UsageError};
use discnn::jobs::wordcount;
use discnn_engine::{Config, Context};
use std::path::PathBuf;
use std::process::ExitCode;

// Tasks allocate many short-lived records from several threads; mimalloc handles that pattern
// far better than glibc's malloc (BENCHMARKS.md has the measurement).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "driver", version = cli::version(), propagate_version = true)]
#[command(about = "Submit discnn jobs and run benchmarks")]
struct Cli {
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job. Options may come before or after the job's name.
    Submit(Submit),
    /// Run a benchmark and print its measurements.
    Bench(Bench),
}

#[derive(Args)]
struct Submit {
    /// Where to run: local, local[N] or local[*].
    #[arg(long, global = true, default_value = "local[*]")]
    master: String,
    /// No console progress bar.
    #[arg(long, global = true)]
    no_progress: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// Count words (split on Unicode whitespace); write `word<TAB>count` sorted by count
    /// descending, then word.
    Wordcount {
        /// A text file or a directory of them (.gz files are read whole).
        #[arg(long)]
        input: PathBuf,
        /// A directory that must not exist yet.
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Args)]
struct Bench {
    #[command(subcommand)]
    which: BenchKind,
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
        /// Print exactly one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The RDD engine workloads of BENCHMARKS.md.
    Engine {
        /// w0 (small-job overhead), w1 (wordcount), w2 (logistic regression),
        /// w3-group or w3-sort (group_by_key / sort_by_key).
        #[arg(long)]
        workload: String,
        /// Jobs for w0, lines for w1, points for w2, pairs for w3.
        #[arg(long)]
        size: u64,
        #[arg(long, default_value = "local[*]")]
        master: String,
        /// Print exactly one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn context(master: &str, progress: bool) -> anyhow::Result<Context> {
    Ok(Context::new(Config {
        master: master.to_string(),
        progress,
        ..Config::default()
    })?)
}

fn submit(s: Submit) -> anyhow::Result<()> {
    let ctx = context(&s.master, !s.no_progress)?;
    match s.job {
        Job::Wordcount { input, output } => {
            let t = Instant::now();
            let summary = wordcount::run(&ctx, &input, &output)
                .with_context(|| format!("wordcount of {}", input.display()))?;
            let wall_s = t.elapsed().as_secs_f64();
            if s.json {
                let o = serde_json::json!({
                    "job": "wordcount",
                    "output": output,
                    "distinct_words": summary.distinct_words,
                    "part_files": summary.partitions,
                    "wall_s": wall_s,
                });
                println!("{o}");
            } else {
                println!(
                    "wordcount: {} distinct words in {} part files under {} ({wall_s:.2} s)",
                    summary.distinct_words,
                    summary.partitions,
                    output.display()
                );
            }
        }
    }
    Ok(())
}

fn bench(b: Bench) -> anyhow::Result<()> {
    match b.which {
        BenchKind::Words { lines, output } => {
            if output.exists() {
                return Err(discnn_engine::EngineError::OutputExists(output).into());
            }
            discnn::bench::engine::write_words(&output, lines, 42)
                .with_context(|| format!("writing {}", output.display()))?;
        }
        BenchKind::CnnTrain {
            batch,
            threads,
            reps,
            images,
            spec,
            json,
        } => {
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
            let o = discnn::bench::cnn::Options {
                batch,
                threads,
                reps,
                images,
                spec,
            };
            let r = discnn::bench::cnn::run(&o)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "cnn-train ({} params, batch {}, {} threads): train {:.0} img/s ({:.1} GFLOP/s at {:.2} MFLOP/img), inference {:.0} img/s",
                    r.params,
                    r.batch,
                    r.threads,
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
            json,
        } => {
            if size == 0 {
                return Err(UsageError("--size must be positive".into()).into());
            }
            let ctx = context(&master, false)?;
            let dir = tempfile::tempdir().context("a scratch directory")?;
            let r = discnn::bench::engine::run(&ctx, &workload, size, dir.path())?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Submit(s) => submit(s),
        Command::Bench(b) => bench(b),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::exit_code_for(&e),
    }
}
