//! Dis-CNN (the paper's section 3) as RDD transformations: training images cached as shards on
//! the executors, one mini-batch gradient per partition per iteration from broadcast weights,
//! and the gradients combined on the driver either synchronously (`mean`) or by the paper's
//! grouped leader aggregation (`dis`, a custom shuffle stage).

pub mod aggregation;
pub mod checkpoint;
pub mod init;
pub mod job;
pub mod object_output;
pub mod output;
pub mod predict;
pub mod prune;
pub mod response;
pub mod shards;
pub mod swap;
pub mod watch;

use crate::layers::Loss;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How partition gradients become one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregation {
    /// Δw = (Σ gᵢ) / N: one synchronous step on the union of the mini-batches.
    Mean,
    /// Δw = (w_low · Σ_low gᵢ + w_high · Σ_high gᵢ) / D, each group summed on its leader; D is
    /// set by [`DisDivisor`].
    Dis,
}

/// The divisor D of the `dis` update. The paper's master "calculates the average gradient"
/// from the two weighted group sums; which average it means is not written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisDivisor {
    /// D = N, the number of partitions: with weights 0.55/0.45 the step is about half the
    /// `mean` step.
    N,
    /// D = w_low · n_low + w_high · n_high: a weighted mean, the same step size as `mean`
    /// whatever the group sizes; the weights only tilt it towards the low-error group.
    Weights,
}

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LrSchedule {
    Constant,
    /// Cosine annealing to zero over the run's epochs after the warm-up.
    Cosine,
}

/// How a run trains, apart from the method: optimiser, schedule, augmentation and batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The peak rate (after the warm-up).
    pub lr: f32,
    pub momentum: f32,
    /// L2 penalty added to every gradient (PyTorch's `weight_decay`).
    pub weight_decay: f32,
    pub schedule: LrSchedule,
    /// Epochs of linear warm-up from lr/steps to lr, per iteration.
    pub warmup: usize,
    /// Random crop and flip of the training images (pad 0, no flip: none).
    pub augment: crate::data::Augment,
    /// Images per partition per iteration.
    pub batch_size: usize,
}

impl Default for Recipe {
    /// The rates of the paper's era: constant 0.01, no decay, no augmentation.
    fn default() -> Self {
        Recipe {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            schedule: LrSchedule::Constant,
            warmup: 0,
            augment: crate::data::Augment::NONE,
            batch_size: 64,
        }
    }
}

impl Recipe {
    /// The recipe in words, as run.json and the reports print it.
    pub fn describe(&self) -> String {
        let aug = match (self.augment.pad, self.augment.flip) {
            (0, false) => "none".to_string(),
            (0, true) => "flip".to_string(),
            (p, false) => format!("crop (pad {p})"),
            (p, true) => format!("crop (pad {p}) + flip"),
        };
        let schedule = match self.schedule {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
        };
        format!(
            "SGD lr {} momentum {} weight decay {}, schedule {schedule}, warm-up {} epoch(s), augment {aug}, batch {} per partition",
            self.lr, self.momentum, self.weight_decay, self.warmup, self.batch_size
        )
    }
}

/// Everything a cnn-job run is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisConfig {
    pub data: PathBuf,
    pub output: PathBuf,
    pub overwrite: bool,
    pub epochs: usize,
    /// Flattened: the options keep their names in run.json and checkpoints.
    #[serde(flatten)]
    pub recipe: Recipe,
    pub seed: u64,
    pub loss: Loss,
    pub aggregation: Aggregation,
    pub init: init::InitMethod,
    /// What the response-matching rescale of `dis` and `kmeans` does with the biases.
    pub init_bias: init::InitBias,
    /// A: maps with H = 1 − |cos| < A against another map are removed (0: none).
    pub prune_threshold: f64,
    /// The epoch (1-based) at whose end pruning is decided.
    pub prune_at: usize,
    /// Save a checkpoint after every N epochs.
    pub checkpoint_every: Option<usize>,
    /// Continue the run in `output` from its checkpoint.
    pub resume: bool,
    /// B: a partition whose mini-batch error E is at most B joins the low-error group.
    pub group_threshold: f64,
    /// Weights of the low- and high-error groups.
    pub group_weights: [f64; 2],
    pub dis_divisor: DisDivisor,
    pub partitions: usize,
    /// Hold out the last N training images (after `train_limit`).
    pub validation: usize,
    /// Train on the first N training images only.
    pub train_limit: Option<usize>,
    pub spec: String,
    /// The `s3://…` URL the run is published at when `output` is its local staging
    /// directory: recorded in run.json as the output, and each checkpoint is also uploaded
    /// under `URL/_in-progress`.
    #[serde(skip)]
    pub object_output: Option<String>,
}

impl Default for DisConfig {
    fn default() -> Self {
        DisConfig {
            data: PathBuf::new(),
            output: PathBuf::new(),
            overwrite: false,
            epochs: 1,
            recipe: Recipe::default(),
            seed: 0,
            loss: Loss::CrossEntropy,
            aggregation: Aggregation::Dis,
            init: init::InitMethod::Dis,
            init_bias: init::InitBias::Zero,
            prune_threshold: 0.0,
            prune_at: 1,
            checkpoint_every: None,
            resume: false,
            group_threshold: 0.8,
            group_weights: [0.55, 0.45],
            dis_divisor: DisDivisor::Weights,
            partitions: 4,
            validation: 0,
            train_limit: None,
            spec: crate::spec::PAPER.to_string(),
            object_output: None,
        }
    }
}
