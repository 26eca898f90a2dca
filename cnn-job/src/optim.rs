//! SGD with momentum and weight decay (PyTorch's formulation: `v = μ·v + g + λ·w; w -= lr·v`)
//! and learning-rate schedules. Element-wise, so the update is deterministic.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        every: usize,
        gamma: f32,
    },
    /// Cosine annealing from the base rate to `min` over `epochs`.
    Cosine {
        epochs: usize,
        min: f32,
    },
}

impl Schedule {
    /// The learning rate for `epoch` (0-based), given the base rate.
    pub fn lr(&self, base: f32, epoch: usize) -> f32 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine { epochs, min } => {
                let t = (epoch.min(epochs) as f64) / (epochs.max(1) as f64);
                (f64::from(min)
                    + 0.5 * f64::from(base - min) * (1.0 + (std::f64::consts::PI * t).cos()))
                    as f32
            }
        }
    }
}

/// The rate of optimiser step `step` (0-based) of a run of `total` steps: a linear warm-up over
/// the first `warmup` steps (from base/warmup up to base), then constant or, with `cosine`,
/// cosine annealing from base to zero over the steps that remain. Per step rather than per
/// epoch, so a short run still warms up and anneals smoothly.
pub fn step_rate(base: f32, cosine: bool, step: usize, warmup: usize, total: usize) -> f32 {
    if step < warmup {
        return (f64::from(base) * (step + 1) as f64 / warmup as f64) as f32;
    }
    if !cosine {
        return base;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let t = ((step - warmup) as f64 / span).min(1.0);
    (0.5 * f64::from(base) * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sgd {
    pub momentum: f32,
    pub weight_decay: f32,
    pub velocity: Vec<f32>,
}

impl Sgd {
    pub fn new(params: usize, momentum: f32, weight_decay: f32) -> Sgd {
        Sgd {
            momentum,
            weight_decay,
            velocity: vec![0.0; params],
        }
    }

    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        let (mu, wd) = (self.momentum, self.weight_decay);
        for ((w, &g), v) in params.iter_mut().zip(grads).zip(&mut self.velocity) {
            *v = mu * *v + g + wd * *w;
            *w -= lr * *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let step = Schedule::Step {
            every: 2,
            gamma: 0.1,
        };
        assert_eq!(step.lr(1.0, 1), 1.0);
        assert!((step.lr(1.0, 4) - 0.01).abs() < 1e-7);
        let cos = Schedule::Cosine {
            epochs: 10,
            min: 0.0,
        };
        assert_eq!(cos.lr(0.1, 0), 0.1);
        assert!((cos.lr(0.1, 5) - 0.05).abs() < 1e-7);
        assert!(cos.lr(0.1, 10).abs() < 1e-7);
    }

    #[test]
    fn warm_up_then_cosine_per_step() {
        // 2 warm-up steps, then 4 of cosine.
        assert!((step_rate(0.1, true, 0, 2, 6) - 0.05).abs() < 1e-7);
        assert!((step_rate(0.1, true, 1, 2, 6) - 0.1).abs() < 1e-7);
        assert!((step_rate(0.1, true, 2, 2, 6) - 0.1).abs() < 1e-7);
        assert!((step_rate(0.1, true, 4, 2, 6) - 0.05).abs() < 1e-7);
        assert!(step_rate(0.1, true, 5, 2, 6) < 0.05 && step_rate(0.1, true, 5, 2, 6) > 0.0);
        assert_eq!(step_rate(0.1, false, 5, 2, 6), 0.1);
        assert_eq!(step_rate(0.1, false, 0, 0, 6), 0.1);
        assert_eq!(step_rate(0.1, true, 0, 0, 6), 0.1);
    }

    #[test]
    fn momentum_matches_the_formula() {
        let mut sgd = Sgd::new(1, 0.9, 0.1);
        let mut w = [1.0f32];
        sgd.step(&mut w, &[0.5], 0.1);
        // v = 0.5 + 0.1·1 = 0.6; w = 1 − 0.06
        assert!((w[0] - 0.94).abs() < 1e-6);
        sgd.step(&mut w, &[0.5], 0.1);
        // v = 0.9·0.6 + 0.5 + 0.094 = 1.134; w = 0.94 − 0.1134
        assert!((w[0] - 0.8266).abs() < 1e-6);
    }
}
