//! Jobs that `driver submit` runs. Their ops are registered here, in the library both binaries
//! link, so an executor can always decode what a driver sends.
//!
//! A [`JobSpec`] is what a client sends to a cluster driver (as JSON, paths made absolute):
//! the same catalogue runs a job locally and on `driver serve`.

pub mod cnn;
pub mod wordcount;

use anyhow::Context as _;
use clap::Subcommand;
use discnn_engine::cluster::{JobOutcome, JobOutput, JobRunner};
use discnn_engine::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand, Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "kebab-case")]
pub enum Job {
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
    /// Train the paper's CNN on CIFAR-10 with Dis-CNN; write DIR/model.safetensors,
    /// DIR/metrics.jsonl (one object per epoch), DIR/confusion.json and DIR/run.json.
    CnnJob(Box<cnn::CnnJobArgs>),
    /// Run one of the paper's experiments (table1, table2, speedup): DIR/report.md and SVG
    /// charts, the paper's figures beside the measured ones.
    CnnExperiment(Box<cnn::ExperimentArgs>),
    /// Evaluate a saved model on a record file, or on a folder's (or archive's) test batch:
    /// accuracy, per-class recall and the confusion matrix.
    CnnEval {
        /// A model.safetensors written by cnn-job.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// Print the predicted class (0-9) of every record, one a line, in record order.
    CnnPredict {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
}

/// A job and how its result is printed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    pub job: Job,
    /// Print exactly one JSON object on stdout.
    pub json: bool,
}

pub(crate) fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

impl JobSpec {
    /// Executors read and write paths themselves, from their own working directories: a
    /// client resolves relative paths against its own before submitting.
    pub fn absolutize(mut self, cwd: &Path) -> Self {
        match &mut self.job {
            Job::Wordcount { input, output } => {
                *input = absolute(input, cwd);
                *output = absolute(output, cwd);
            }
            Job::CnnJob(args) => args.absolutize(cwd),
            Job::CnnExperiment(args) => args.absolutize(cwd),
            Job::CnnEval { model, data, .. } | Job::CnnPredict { model, data, .. } => {
                *model = absolute(model, cwd);
                *data = absolute(data, cwd);
            }
        }
        self
    }

    pub fn name(&self) -> &'static str {
        match self.job {
            Job::Wordcount { .. } => "wordcount",
            Job::CnnJob(_) => "cnn-job",
            Job::CnnExperiment(_) => "cnn-experiment",
            Job::CnnEval { .. } => "cnn-eval",
            Job::CnnPredict { .. } => "cnn-predict",
        }
    }

    /// Runs the job on `ctx`; each stdout line goes to `out`, progress lines to `log`.
    pub fn run(
        &self,
        ctx: &Context,
        out: &mut dyn FnMut(String),
        log: &mut dyn FnMut(String),
    ) -> anyhow::Result<()> {
        match &self.job {
            Job::CnnJob(args) => args.run(ctx, self.json, out, log)?,
            Job::CnnExperiment(args) => args.run(ctx, out, log)?,
            Job::CnnEval {
                model,
                data,
                partitions,
            } => cnn::eval(ctx, model, data, *partitions, self.json, out)?,
            Job::CnnPredict {
                model,
                data,
                partitions,
            } => cnn::predict(ctx, model, data, *partitions, out)?,
            Job::Wordcount { input, output } => {
                let t = Instant::now();
                let summary = wordcount::run(ctx, input, output)
                    .with_context(|| format!("wordcount of {}", input.display()))?;
                let wall_s = t.elapsed().as_secs_f64();
                if self.json {
                    let o = serde_json::json!({
                        "job": "wordcount",
                        "output": output,
                        "distinct_words": summary.distinct_words,
                        "part_files": summary.partitions,
                        "wall_s": wall_s,
                    });
                    out(o.to_string());
                } else {
                    out(format!(
                        "wordcount: {} distinct words in {} part files under {} ({wall_s:.2} s)",
                        summary.distinct_words,
                        summary.partitions,
                        output.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The catalogue as `driver serve` runs it.
pub struct Catalog;

impl JobRunner for Catalog {
    fn name(&self, job_json: &str) -> Result<String, String> {
        serde_json::from_str::<JobSpec>(job_json)
            .map(|s| s.name().to_string())
            .map_err(|e| format!("not a job this driver knows: {e}"))
    }

    fn run(&self, ctx: &Context, job_json: &str, out: &JobOutput) -> JobOutcome {
        let result = serde_json::from_str::<JobSpec>(job_json)
            .map_err(|e| anyhow::Error::new(crate::cli::UsageError(format!("bad job: {e}"))))
            .and_then(|spec| {
                spec.run(ctx, &mut |line| out.println(line), &mut |line| {
                    out.log(line)
                })
            });
        match result {
            Ok(()) => JobOutcome {
                exit_code: 0,
                error: None,
            },
            Err(e) => JobOutcome {
                exit_code: crate::cli::exit_code_number(&e),
                error: Some(format!("{e:#}")),
            },
        }
    }
}
