//! Losses on the softmax of the class scores. Both return the chunk's summed loss and write
//! `scale · ∂loss/∂logits`, so a minibatch split in chunks gets the gradient of its mean loss.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// Softmax with cross-entropy: −log pₜ.
    CrossEntropy,
    /// The paper's formula 3 on the softmax outputs: ½ Σₖ (tₖ − yₖ)² per image.
    Squared,
}

impl Loss {
    pub fn parse(s: &str) -> Option<Loss> {
        match s {
            "cross-entropy" => Some(Loss::CrossEntropy),
            "squared" => Some(Loss::Squared),
            _ => None,
        }
    }
}

/// Softmax of each row of `logits` (rows of `classes`), numerically stable.
pub fn softmax(logits: &[f32], out: &mut [f32], classes: usize) {
    for (z, p) in logits
        .chunks_exact(classes)
        .zip(out.chunks_exact_mut(classes))
    {
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (p, &z) in p.iter_mut().zip(z) {
            *p = (z - m).exp();
            sum += *p;
        }
        p.iter_mut().for_each(|p| *p /= sum);
    }
}

/// A chunk's summed loss and its summed squared error Σₖ (tₖ − yₖ)² on the softmax outputs
/// (whatever the loss: Dis-CNN groups partitions by that error).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChunkLoss {
    pub loss: f64,
    pub squared_error: f64,
}

pub fn forward_backward(
    loss: Loss,
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    scale: f32,
    dlogits: &mut [f32],
) -> ChunkLoss {
    softmax(logits, dlogits, classes);
    let mut total = 0.0f64;
    let mut squared_error = 0.0f64;
    for (p, &t) in dlogits.chunks_exact_mut(classes).zip(labels) {
        let t = usize::from(t);
        squared_error += p
            .iter()
            .enumerate()
            .map(|(k, &y)| {
                let e = f64::from(y) - f64::from(u8::from(k == t));
                e * e
            })
            .sum::<f64>();
        match loss {
            Loss::CrossEntropy => {
                total -= f64::from(p[t].max(f32::MIN_POSITIVE)).ln();
                p[t] -= 1.0;
                p.iter_mut().for_each(|g| *g *= scale);
            }
            Loss::Squared => {
                // dE/dy_k = y_k − t_k, then through the softmax Jacobian:
                // dz_j = y_j (dE/dy_j − Σ_k y_k dE/dy_k).
                let mut dot = 0.0f32;
                for (k, &y) in p.iter().enumerate() {
                    let e = y - f32::from(u8::from(k == t));
                    total += 0.5 * f64::from(e * e);
                    dot += y * e;
                }
                for (k, y) in p.iter_mut().enumerate() {
                    let e = *y - f32::from(u8::from(k == t));
                    *y = scale * *y * (e - dot);
                }
            }
        }
    }
    ChunkLoss {
        loss: total,
        squared_error,
    }
}
