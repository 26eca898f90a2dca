//! Single-process minibatch training and evaluation: the loop a Dis-CNN task runs on its
//! partition, and what the learning check and the benchmark drive.

use crate::cifar::Images;
use crate::data::{self, Augment, Normalization};
use crate::layers::Loss;
use crate::metrics::Confusion;
use crate::network::Network;
use crate::optim::{Schedule, Sgd};
use crate::rng::{self, Purpose};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub schedule: Schedule,
    pub loss: Loss,
    pub seed: u64,
    pub augment: Option<Augment>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 64,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            loss: Loss::CrossEntropy,
            seed: 0,
            augment: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub loss: f64,
    pub train_accuracy: f64,
    pub iterations: usize,
}

pub struct Trainer {
    pub net: Network,
    pub params: Vec<f32>,
    pub grads: Vec<f32>,
    pub sgd: Sgd,
    pub config: TrainConfig,
    pub norm: Normalization,
}

impl Trainer {
    pub fn new(net: Network, params: Vec<f32>, config: TrainConfig, norm: Normalization) -> Self {
        let n = net.param_len();
        Trainer {
            net,
            params,
            grads: vec![0.0; n],
            sgd: Sgd::new(n, config.momentum, config.weight_decay),
            config,
            norm,
        }
    }

    /// One SGD step on a prepared minibatch; `key` names its random streams.
    pub fn step(&mut self, x: &[f32], labels: &[u8], lr: f32, key: &[u64]) -> (f64, usize) {
        let s = self.net.gradient(
            &self.params,
            x,
            labels,
            self.config.loss,
            self.config.seed,
            key,
            &mut self.grads,
        );
        self.sgd.step(&mut self.params, &self.grads, lr);
        (s.loss, s.correct)
    }

    /// One pass over `images` in a seeded shuffled order; `partition` keys the streams.
    pub fn epoch(&mut self, images: &Images, epoch: usize, partition: usize) -> EpochStats {
        let cfg = self.config.clone();
        let mut order: Vec<usize> = (0..images.len()).collect();
        let mut rng = rng::stream(
            cfg.seed,
            Purpose::Shuffle,
            &[epoch as u64, partition as u64],
        );
        order.shuffle(&mut rng);
        let lr = cfg.schedule.lr(cfg.lr, epoch);
        let (mut loss, mut correct, mut iterations) = (0.0, 0, 0);
        for (it, idx) in order.chunks(cfg.batch_size.max(1)).enumerate() {
            let key = [epoch as u64, partition as u64, it as u64];
            let aug = cfg.augment.map(|a| (a, cfg.seed, &key[..]));
            let (x, labels) = data::batch(images, idx, &self.norm, aug);
            let (l, c) = self.step(&x, &labels, lr, &key);
            loss += l * idx.len() as f64;
            correct += c;
            iterations += 1;
        }
        let n = images.len().max(1) as f64;
        EpochStats {
            loss: loss / n,
            train_accuracy: correct as f64 / n,
            iterations,
        }
    }

    pub fn evaluate(&self, images: &Images) -> Confusion {
        evaluate(&self.net, &self.params, &self.norm, images)
    }
}

/// The confusion matrix of `params` on `images`, in slices of 1,024 to bound memory.
pub fn evaluate(net: &Network, params: &[f32], norm: &Normalization, images: &Images) -> Confusion {
    let mut confusion = Confusion::new(net.classes());
    let all: Vec<usize> = (0..images.len()).collect();
    for idx in all.chunks(1024) {
        let (x, labels) = data::batch(images, idx, norm, None);
        let predicted = net.predict(params, &x);
        confusion.merge(&Confusion::from_predictions(
            net.classes(),
            &labels,
            &predicted,
        ));
    }
    confusion
}
