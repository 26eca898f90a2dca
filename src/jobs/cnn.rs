//! `driver submit cnn-job`: the options of a Dis-CNN training run, as typed on the command line
//! and as sent to a cluster, and what the run prints.

use clap::{Args, ValueEnum};
use discnn_cnn::data::Augment;
use discnn_cnn::dis::init::{InitBias, InitMethod};
use discnn_cnn::dis::job::{self, JobError};
use discnn_cnn::dis::{Aggregation, DisConfig, DisDivisor, LrSchedule, Recipe};
use discnn_cnn::layers::Loss;
use discnn_engine::Context;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossArg {
    CrossEntropy,
    /// The paper's formula 3 on the softmax outputs.
    Squared,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitArg {
    /// He initialisation.
    Random,
    /// Whole first-layer kernels from k-means over image patches; every layer then rescaled
    /// to He's response on 512 training images.
    Kmeans,
    /// The paper's: random periphery, k-means 3×3 centre, in every conv layer; every layer
    /// then rescaled to He's response on 512 training images.
    Dis,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitBiasArg {
    /// Biases stay zero; weights scaled so each channel's E[z²] is He's.
    Zero,
    /// Biases remove each channel's mean response first, then the RMS is matched.
    Center,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DivisorArg {
    /// ÷ N, the number of partitions (about half the `mean` step at 0.55/0.45).
    N,
    /// ÷ (0.55·n_low + 0.45·n_high): a weighted mean, the `mean` step size.
    Weights,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleArg {
    Constant,
    /// Cosine annealing to zero over --epochs (after the warm-up).
    Cosine,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AugmentArg {
    None,
    /// Horizontal flip with probability 1/2.
    Flip,
    /// A random 32×32 crop of the image padded by 4.
    Crop,
    #[value(name = "crop+flip")]
    CropFlip,
}

/// The training recipe, shared by cnn-job and cnn-experiment.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct RecipeArgs {
    /// Peak learning rate (after the warm-up).
    #[arg(long, default_value_t = 0.05, help_heading = "Recipe")]
    pub lr: f32,
    #[arg(long, default_value_t = 0.9, help_heading = "Recipe")]
    pub momentum: f32,
    /// L2 penalty on every parameter.
    #[arg(long, default_value_t = 5e-4, help_heading = "Recipe")]
    pub weight_decay: f32,
    #[arg(long, value_enum, default_value = "cosine", help_heading = "Recipe")]
    pub schedule: ScheduleArg,
    /// Epochs of linear warm-up (per iteration) to --lr.
    #[arg(long, default_value_t = 1, help_heading = "Recipe")]
    pub warmup: usize,
    #[arg(long, value_enum, default_value = "crop+flip", help_heading = "Recipe")]
    pub augment: AugmentArg,
    /// Images per partition per iteration.
    #[arg(long, default_value_t = 64, help_heading = "Recipe")]
    pub batch_size: usize,
}

impl RecipeArgs {
    pub fn recipe(&self) -> Recipe {
        Recipe {
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: match self.schedule {
                ScheduleArg::Constant => LrSchedule::Constant,
                ScheduleArg::Cosine => LrSchedule::Cosine,
            },
            warmup: self.warmup,
            augment: match self.augment {
                AugmentArg::None => Augment::NONE,
                AugmentArg::Flip => Augment { pad: 0, flip: true },
                AugmentArg::Crop => Augment {
                    pad: 4,
                    flip: false,
                },
                AugmentArg::CropFlip => Augment { pad: 4, flip: true },
            },
            batch_size: self.batch_size,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggregationArg {
    /// Grouped leader aggregation (the paper's).
    Dis,
    /// Synchronous mean of the partition gradients.
    Mean,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct CnnJobArgs {
    /// A cifar-10-batches-bin/ folder or the official cifar-10-binary.tar.gz.
    #[arg(long)]
    pub data: PathBuf,
    /// A directory that must not exist yet (unless --overwrite).
    #[arg(long, required_unless_present = "resume")]
    pub output: Option<PathBuf>,
    /// Replace an existing output directory.
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "cross-entropy")]
    pub loss: LossArg,
    #[arg(long, value_enum, default_value = "random")]
    pub init: InitArg,
    /// What the response rescale of --init dis/kmeans does with the biases.
    #[arg(long, value_enum, default_value = "zero")]
    pub init_bias: InitBiasArg,
    /// A: a map whose outputs correlate with another map's as |cos| > 1 − A (over a sample of
    /// images and positions, means removed) is removed, the weaker of the two (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub prune_threshold: f64,
    /// The epoch at whose end pruning is decided.
    #[arg(long, default_value_t = 1)]
    pub prune_at: usize,
    #[arg(long, value_enum, default_value = "dis")]
    pub aggregation: AggregationArg,
    /// B: a partition whose mini-batch error E (0–2) is at most B is in the low-error group.
    #[arg(long, default_value_t = 0.8)]
    pub group_threshold: f64,
    /// Weights of the low- and high-error groups.
    #[arg(long, default_value = "0.55,0.45", value_delimiter = ',', num_args = 1..=2)]
    pub group_weights: Vec<f64>,
    /// What the weighted group sums of --aggregation dis are divided by.
    #[arg(long, value_enum, default_value = "weights")]
    pub dis_divisor: DivisorArg,
    #[arg(long, default_value_t = 4)]
    pub partitions: usize,
    /// Hold out the last N training images for validation.
    #[arg(long, default_value_t = 0)]
    pub validation: usize,
    /// Save a checkpoint every N epochs.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Continue the run whose output directory is DIR.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// The network, as a layer list (default: the paper's).
    #[arg(long, default_value = discnn_cnn::spec::PAPER)]
    pub spec: String,
}

impl CnnJobArgs {
    pub fn absolutize(&mut self, cwd: &std::path::Path) {
        self.data = crate::job::absolute(&self.data, cwd);
        if let Some(o) = &mut self.output {
            *o = crate::job::absolute(o, cwd);
        }
        if let Some(r) = &mut self.resume {
            *r = crate::job::absolute(r, cwd);
        }
    }

    fn config(&self) -> Result<DisConfig, JobError> {
        if !(self.prune_threshold.is_finite() && (0.0..=1.0).contains(&self.prune_threshold)) {
            return Err(JobError::BadOption(
                "--prune-threshold must be in [0, 1]".into(),
            ));
        }
        if self.prune_threshold > 0.0 && (self.prune_at == 0 || self.prune_at > self.epochs) {
            return Err(JobError::BadOption(format!(
                "--prune-at must be an epoch of the run (1..={})",
                self.epochs
            )));
        }
        let output = match (&self.output, &self.resume) {
            (Some(o), Some(r)) if o != r => {
                return Err(JobError::BadOption(
                    "--resume DIR continues into DIR: leave out --output or give the same one"
                        .into(),
                ))
            }
            (_, Some(r)) => r.clone(),
            (Some(o), None) => o.clone(),
            (None, None) => return Err(JobError::BadOption("--output is required".into())),
        };
        if self.checkpoint_every == Some(0) {
            return Err(JobError::BadOption(
                "--checkpoint-every must be at least 1".into(),
            ));
        }
        let [low, high] = self.group_weights[..] else {
            return Err(JobError::BadOption(
                "--group-weights takes two numbers, e.g. 0.55,0.45".into(),
            ));
        };
        Ok(DisConfig {
            data: self.data.clone(),
            output,
            overwrite: self.overwrite,
            epochs: self.epochs,
            seed: self.seed,
            loss: loss(self.loss),
            aggregation: match self.aggregation {
                AggregationArg::Dis => Aggregation::Dis,
                AggregationArg::Mean => Aggregation::Mean,
            },
            init: init(self.init),
            init_bias: match self.init_bias {
                InitBiasArg::Zero => InitBias::Zero,
                InitBiasArg::Center => InitBias::Center,
            },
            prune_threshold: self.prune_threshold,
            prune_at: self.prune_at,
            checkpoint_every: self.checkpoint_every,
            resume: self.resume.is_some(),
            group_threshold: self.group_threshold,
            group_weights: [low, high],
            dis_divisor: divisor(self.dis_divisor),
            partitions: self.partitions,
            validation: self.validation,
            train_limit: self.train_limit,
            spec: self.spec.clone(),
            recipe: self.recipe.recipe(),
            object_output: None,
        })
    }

    pub fn run(
        &self,
        ctx: &Context,
        json: bool,
        out: &mut dyn FnMut(String),
        log: &mut dyn FnMut(String),
    ) -> anyhow::Result<()> {
        let result = self.config().and_then(|cfg| job::run(ctx, &cfg, log));
        let summary = result.map_err(job_error)?;
        let last = summary.epochs.last();
        if json {
            out(serde_json::json!({
                "job": "cnn-job",
                "output": summary.model.parent(),
                "model": summary.model,
                "epochs": summary.epochs.len(),
                "test_accuracy": last.map(|m| m.test_accuracy),
                "mean_recall": last.map(|m| m.mean_recall),
            })
            .to_string());
        } else if let Some(m) = last {
            out(format!(
                "cnn-job: test accuracy {:.2}% (mean recall {:.2}%) after {} epoch(s); model in {}",
                m.test_accuracy * 100.0,
                m.mean_recall * 100.0,
                summary.epochs.len(),
                summary.model.display()
            ));
        }
        Ok(())
    }
}

fn job_error(e: JobError) -> anyhow::Error {
    if e.is_bad_input() {
        crate::cli::UsageError(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

/// `cnn-eval`: accuracy, per-class recall and the confusion matrix of a saved model.
pub fn eval(
    ctx: &Context,
    model: &std::path::Path,
    data: &std::path::Path,
    partitions: usize,
    json: bool,
    out: &mut dyn FnMut(String),
) -> anyhow::Result<()> {
    let c = discnn_cnn::dis::predict::evaluate(ctx, model, data, partitions).map_err(job_error)?;
    let recall = c.recall();
    if json {
        out(serde_json::json!({
            "accuracy": c.accuracy(),
            "per_class_recall": recall,
            "mean_recall": c.mean_recall(),
            "confusion": c.counts,
        })
        .to_string());
        return Ok(());
    }
    let correct: u64 = (0..c.counts.len()).map(|i| c.counts[i][i]).sum();
    out(format!(
        "accuracy {:.2}% ({correct}/{}), mean recall {:.2}%",
        c.accuracy() * 100.0,
        c.total(),
        c.mean_recall() * 100.0
    ));
    for (name, r) in discnn_cnn::cifar::CLASSES.iter().zip(&recall) {
        out(format!("  {name:<10} recall {:.2}%", r * 100.0));
    }
    out("confusion (rows: true class, columns: predicted class):".into());
    for row in &c.counts {
        out(row.iter().map(|v| format!("{v:>6}")).collect::<String>());
    }
    Ok(())
}

/// `cnn-predict`: one predicted class a line.
pub fn predict(
    ctx: &Context,
    model: &std::path::Path,
    data: &std::path::Path,
    partitions: usize,
    out: &mut dyn FnMut(String),
) -> anyhow::Result<()> {
    let classes =
        discnn_cnn::dis::predict::predict(ctx, model, data, partitions).map_err(job_error)?;
    for c in classes {
        out(c.to_string());
    }
    Ok(())
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WhichArg {
    /// Accuracy and best epoch for random, kmeans and dis initialisation.
    Table1,
    /// Mean recall for pruning thresholds A and group thresholds B, and the plain CNN.
    Table2,
    /// Speedup t1/tn on local-cluster[n,1] at 5,000 and 45,000 training images.
    Speedup,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentArgs {
    #[arg(value_enum)]
    pub which: WhichArg,
    #[arg(long)]
    pub data: PathBuf,
    /// Where report.md, the SVG charts and every run's outputs (runs/) go. The same command
    /// on the same DIR continues an experiment: finished runs are skipped, an interrupted one
    /// continues from its checkpoint.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    #[arg(long, value_enum, default_value = "cross-entropy")]
    pub loss: LossArg,
    /// Table 1: the initialisations that also run with the paper's squared loss, as a second
    /// table (none: leave the option without values).
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0.., default_value = "random,dis")]
    pub squared_inits: Vec<InitArg>,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_limit: Option<usize>,
    #[arg(long, default_value_t = 4)]
    pub partitions: usize,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Initialisation of the speedup runs (the tables name their own).
    #[arg(long, value_enum, default_value = "dis")]
    pub init: InitArg,
    /// Hold out the last N of the training images used, for choosing the best epoch.
    #[arg(long, default_value_t = 5000)]
    pub validation: usize,
    /// Save each run's checkpoint every N epochs.
    #[arg(long, default_value_t = 1)]
    pub checkpoint_every: usize,
    /// Speedup: run 1..=N executors (default: the cores of this machine, at most 4).
    #[arg(long)]
    pub max_executors: Option<usize>,
    /// The command as typed (relative paths kept), for the report.
    #[arg(skip)]
    pub command: Option<String>,
}

fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

impl ExperimentArgs {
    /// The command that runs this experiment, every option spelled out.
    fn command(&self) -> String {
        let r = &self.recipe;
        let mut c = format!(
            "driver submit cnn-experiment {} --data {} --output {} --epochs {} --seeds {} --loss {} --partitions {} --lr {} --momentum {} --weight-decay {} --schedule {} --warmup {} --augment {} --batch-size {} --checkpoint-every {}",
            value_name(&self.which),
            self.data.display(),
            self.output.display(),
            self.epochs,
            self.seeds,
            value_name(&self.loss),
            self.partitions,
            r.lr,
            r.momentum,
            r.weight_decay,
            value_name(&r.schedule),
            r.warmup,
            value_name(&r.augment),
            r.batch_size,
            self.checkpoint_every,
        );
        if self.which != WhichArg::Speedup {
            c.push_str(&format!(" --validation {}", self.validation));
        }
        if self.which == WhichArg::Table1 {
            let inits: Vec<String> = self.squared_inits.iter().map(value_name).collect();
            c.push_str(&format!(" --squared-inits {}", inits.join(",")));
        }
        if let Some(n) = self.train_limit {
            c.push_str(&format!(" --train-limit {n}"));
        }
        if self.which == WhichArg::Speedup {
            c.push_str(&format!(" --init {}", value_name(&self.init)));
            if let Some(n) = self.max_executors {
                c.push_str(&format!(" --max-executors {n}"));
            }
        }
        c
    }

    pub fn absolutize(&mut self, cwd: &std::path::Path) {
        if self.command.is_none() {
            self.command = Some(self.command());
        }
        self.data = crate::job::absolute(&self.data, cwd);
        self.output = crate::job::absolute(&self.output, cwd);
    }

    pub fn run(
        &self,
        ctx: &Context,
        out: &mut dyn FnMut(String),
        log: &mut dyn FnMut(String),
    ) -> anyhow::Result<()> {
        use discnn_cnn::experiment::{self, ExperimentConfig, Which};
        let cfg = ExperimentConfig {
            which: match self.which {
                WhichArg::Table1 => Which::Table1,
                WhichArg::Table2 => Which::Table2,
                WhichArg::Speedup => Which::Speedup,
            },
            data: self.data.clone(),
            output: self.output.clone(),
            epochs: self.epochs,
            seeds: self.seeds,
            loss: loss(self.loss),
            train_limit: self.train_limit,
            partitions: self.partitions,
            recipe: self.recipe.recipe(),
            init: init(self.init),
            validation: self.validation,
            max_executors: self.max_executors.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, usize::from)
                    .min(4)
            }),
            squared_inits: self.squared_inits.iter().map(|&i| init(i)).collect(),
            checkpoint_every: self.checkpoint_every,
            command: self.command.clone().unwrap_or_else(|| self.command()),
        };
        let report = experiment::run(ctx, &cfg, log).map_err(job_error)?;
        out(format!("report: {}", report.display()));
        Ok(())
    }
}

fn loss(l: LossArg) -> Loss {
    match l {
        LossArg::CrossEntropy => Loss::CrossEntropy,
        LossArg::Squared => Loss::Squared,
    }
}

fn divisor(d: DivisorArg) -> DisDivisor {
    match d {
        DivisorArg::N => DisDivisor::N,
        DivisorArg::Weights => DisDivisor::Weights,
    }
}

fn init(i: InitArg) -> InitMethod {
    match i {
        InitArg::Random => InitMethod::Random,
        InitArg::Kmeans => InitMethod::Kmeans,
        InitArg::Dis => InitMethod::Dis,
    }
}
