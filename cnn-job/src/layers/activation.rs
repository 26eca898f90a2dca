//! Element-wise activations. Backward passes use the output, so the input need not be kept.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    Relu,
    Sigmoid,
    Tanh,
}

impl Activation {
    pub fn forward(self, x: &[f32], y: &mut [f32]) {
        let pairs = y.iter_mut().zip(x);
        match self {
            Activation::Relu => pairs.for_each(|(y, &x)| *y = x.max(0.0)),
            Activation::Sigmoid => pairs.for_each(|(y, &x)| *y = 1.0 / (1.0 + (-x).exp())),
            Activation::Tanh => pairs.for_each(|(y, &x)| *y = x.tanh()),
        }
    }

    pub fn backward(self, y: &[f32], dy: &[f32], dx: &mut [f32]) {
        let it = dx.iter_mut().zip(y.iter().zip(dy));
        match self {
            Activation::Relu => it.for_each(|(d, (&y, &g))| *d = if y > 0.0 { g } else { 0.0 }),
            Activation::Sigmoid => it.for_each(|(d, (&y, &g))| *d = g * y * (1.0 - y)),
            Activation::Tanh => it.for_each(|(d, (&y, &g))| *d = g * (1.0 - y * y)),
        }
    }
}

/// Inverted dropout: kept units are scaled by 1/(1−p) in training, so inference is the identity.
pub fn dropout_forward(
    p: f32,
    x: &[f32],
    y: &mut [f32],
    mask: &mut Vec<f32>,
    rng: &mut impl rand::Rng,
) {
    let keep = 1.0 / (1.0 - p);
    mask.clear();
    mask.extend(
        x.iter()
            .map(|_| if rng.gen::<f32>() < p { 0.0 } else { keep }),
    );
    for ((y, &x), &m) in y.iter_mut().zip(x).zip(mask.iter()) {
        *y = x * m;
    }
}

pub fn dropout_backward(dy: &[f32], dx: &mut [f32], mask: &[f32]) {
    for ((d, &g), &m) in dx.iter_mut().zip(dy).zip(mask) {
        *d = g * m;
    }
}
