//! The jobs built into `driver submit`, registered like a user's ([`crate::register_job!`]).
//! Their ops are registered here too, in the library both binaries link, so an executor can
//! always decode what a driver sends.

pub mod cnn;
pub mod wordcount;

use crate::job::{absolute, Job, JobIo};
use anyhow::Context as _;
use clap::Args;
use discnn_engine::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `wordcount`'s arguments.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct WordcountArgs {
    /// A text file or a directory of them (.gz files are read whole).
    #[arg(long)]
    pub input: PathBuf,
    /// A directory that must not exist yet.
    #[arg(long)]
    pub output: PathBuf,
}

/// Counts words.
pub struct Wordcount;

impl Job for Wordcount {
    type Args = WordcountArgs;
    const NAME: &'static str = "wordcount";
    const ABOUT: &'static str =
        "Count words (split on Unicode whitespace); write `word<TAB>count` \
        sorted by count descending, then word";

    fn absolutize(a: &mut WordcountArgs, cwd: &Path) {
        a.input = absolute(&a.input, cwd);
        a.output = absolute(&a.output, cwd);
    }

    fn run(ctx: &Context, a: &WordcountArgs, io: &mut JobIo<'_>) -> anyhow::Result<()> {
        let t = Instant::now();
        let summary = wordcount::run(ctx, &a.input, &a.output)
            .with_context(|| format!("wordcount of {}", a.input.display()))?;
        let wall_s = t.elapsed().as_secs_f64();
        (io.out)(if io.json {
            serde_json::json!({
                "job": "wordcount",
                "output": a.output,
                "distinct_words": summary.distinct_words,
                "part_files": summary.partitions,
                "wall_s": wall_s,
            })
            .to_string()
        } else {
            format!(
                "wordcount: {} distinct words in {} part files under {} ({wall_s:.2} s)",
                summary.distinct_words,
                summary.partitions,
                a.output.display()
            )
        });
        Ok(())
    }
}
crate::register_job!(Wordcount);

/// Trains the paper's CNN.
pub struct CnnJob;

impl Job for CnnJob {
    type Args = cnn::CnnJobArgs;
    const NAME: &'static str = "cnn-job";
    const ABOUT: &'static str = "Train the paper's CNN on CIFAR-10 with Dis-CNN; write \
        DIR/model.safetensors, DIR/metrics.jsonl (one object per epoch), DIR/confusion.json and \
        DIR/run.json";

    fn absolutize(a: &mut cnn::CnnJobArgs, cwd: &Path) {
        a.absolutize(cwd);
    }

    fn run(ctx: &Context, a: &cnn::CnnJobArgs, io: &mut JobIo<'_>) -> anyhow::Result<()> {
        a.run(ctx, io.json, io.out, io.log)
    }
}
crate::register_job!(CnnJob);

/// Runs one of the paper's experiments.
pub struct CnnExperiment;

impl Job for CnnExperiment {
    type Args = cnn::ExperimentArgs;
    const NAME: &'static str = "cnn-experiment";
    const ABOUT: &'static str = "Run one of the paper's experiments (table1, table2, speedup): \
        DIR/report.md and SVG charts, the paper's figures beside the measured ones";

    fn absolutize(a: &mut cnn::ExperimentArgs, cwd: &Path) {
        a.absolutize(cwd);
    }

    fn run(ctx: &Context, a: &cnn::ExperimentArgs, io: &mut JobIo<'_>) -> anyhow::Result<()> {
        a.run(ctx, io.out, io.log)
    }
}
crate::register_job!(CnnExperiment);

/// `cnn-eval`'s and `cnn-predict`'s arguments.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct ModelArgs {
    /// A model.safetensors written by cnn-job.
    #[arg(long)]
    pub model: PathBuf,
    /// A record file, or a folder's (or archive's) test batch.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 4)]
    pub partitions: usize,
}

fn absolutize_model(a: &mut ModelArgs, cwd: &Path) {
    a.model = absolute(&a.model, cwd);
    a.data = absolute(&a.data, cwd);
}

/// Evaluates a saved model.
pub struct CnnEval;

impl Job for CnnEval {
    type Args = ModelArgs;
    const NAME: &'static str = "cnn-eval";
    const ABOUT: &'static str = "Evaluate a saved model on a record file, or on a folder's (or \
        archive's) test batch: accuracy, per-class recall and the confusion matrix";

    fn absolutize(a: &mut ModelArgs, cwd: &Path) {
        absolutize_model(a, cwd);
    }

    fn run(ctx: &Context, a: &ModelArgs, io: &mut JobIo<'_>) -> anyhow::Result<()> {
        cnn::eval(ctx, &a.model, &a.data, a.partitions, io.json, io.out)
    }
}
crate::register_job!(CnnEval);

/// Predicts a class per record.
pub struct CnnPredict;

impl Job for CnnPredict {
    type Args = ModelArgs;
    const NAME: &'static str = "cnn-predict";
    const ABOUT: &'static str =
        "Print the predicted class (0-9) of every record, one a line, in record order";

    fn absolutize(a: &mut ModelArgs, cwd: &Path) {
        absolutize_model(a, cwd);
    }

    fn run(ctx: &Context, a: &ModelArgs, io: &mut JobIo<'_>) -> anyhow::Result<()> {
        cnn::predict(ctx, &a.model, &a.data, a.partitions, io.out)
    }
}
crate::register_job!(CnnPredict);
