//! Dis-CNN (the paper's section 3) as RDD transformations: training images cached as shards on
//! the executors, one mini-batch gradient per partition per iteration from broadcast weights,
//! and the gradients combined on the driver either synchronously (`mean`) or by the paper's
//! grouped leader aggregation (`dis`, a custom shuffle stage).

pub mod aggregation;
pub mod checkpoint;
pub mod init;
pub mod job;
pub mod predict;
pub mod prune;
pub mod shards;

use crate::layers::Loss;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How partition gradients become one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregation {
    /// Δw = (Σ gᵢ) / N: one synchronous step on the union of the mini-batches.
    Mean,
    /// Δw = (w_low · Σ_low gᵢ + w_high · Σ_high gᵢ) / N, each group summed on its leader.
    Dis,
}

/// Everything a cnn-job run is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisConfig {
    pub data: PathBuf,
    pub output: PathBuf,
    pub overwrite: bool,
    pub epochs: usize,
    /// Images per partition per iteration.
    pub batch_size: usize,
    pub lr: f32,
    pub momentum: f32,
    pub seed: u64,
    pub loss: Loss,
    pub aggregation: Aggregation,
    pub init: init::InitMethod,
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
    pub partitions: usize,
    /// Hold out the last N training images (after `train_limit`).
    pub validation: usize,
    /// Train on the first N training images only.
    pub train_limit: Option<usize>,
    pub spec: String,
}

impl Default for DisConfig {
    fn default() -> Self {
        DisConfig {
            data: PathBuf::new(),
            output: PathBuf::new(),
            overwrite: false,
            epochs: 1,
            batch_size: 64,
            lr: 0.01,
            momentum: 0.9,
            seed: 0,
            loss: Loss::CrossEntropy,
            aggregation: Aggregation::Dis,
            init: init::InitMethod::Dis,
            prune_threshold: 0.0,
            prune_at: 1,
            checkpoint_every: None,
            resume: false,
            group_threshold: 0.8,
            group_weights: [0.55, 0.45],
            partitions: 4,
            validation: 0,
            train_limit: None,
            spec: crate::spec::PAPER.to_string(),
        }
    }
}
