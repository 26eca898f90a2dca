//! Layers with forward and backward passes over a chunk of a minibatch (NCHW, f32, contiguous).
//! Each layer reads its parameters from, and adds its gradient into, its own slice of the
//! network's single parameter and gradient buffers.

pub mod activation;
pub mod conv;
pub mod conv_wide;
pub mod dense;
pub mod gemm;
pub mod loss;
pub mod pool;
pub mod simd;

pub use activation::Activation;
pub use conv::Conv;
pub use dense::Dense;
pub use loss::Loss;
pub use pool::Pool;

use crate::spec::{LayerSpec, Padding};

#[derive(Debug, Clone)]
pub enum Layer {
    Conv(Conv),
    MaxPool(Pool),
    AvgPool(Pool),
    Act(Activation),
    Dense(Dense),
    Dropout(f32),
}

/// What a layer keeps between its forward and backward pass, reused across iterations.
#[derive(Debug, Default)]
pub struct LayerCache {
    col: Vec<f32>,
    dcol: Vec<f32>,
    idx: Vec<u32>,
    mask: Vec<f32>,
    wide: conv_wide::Wide,
}

impl Layer {
    /// Builds the layer for an input of shape `[c, h, w]` whose output is `out`.
    pub fn new(spec: &LayerSpec, input: [usize; 3], out: [usize; 3]) -> Layer {
        let [c, h, w] = input;
        match *spec {
            LayerSpec::Conv {
                kernel, padding, ..
            } => Layer::Conv(Conv {
                cin: c,
                h,
                w,
                cout: out[0],
                k: kernel,
                pad: if padding == Padding::Same {
                    kernel / 2
                } else {
                    0
                },
                ho: out[1],
                wo: out[2],
            }),
            LayerSpec::MaxPool { kernel, stride } | LayerSpec::AvgPool { kernel, stride } => {
                let pool = Pool {
                    c,
                    h,
                    w,
                    k: kernel,
                    s: stride,
                    ho: out[1],
                    wo: out[2],
                };
                if matches!(spec, LayerSpec::MaxPool { .. }) {
                    Layer::MaxPool(pool)
                } else {
                    Layer::AvgPool(pool)
                }
            }
            LayerSpec::Relu => Layer::Act(Activation::Relu),
            LayerSpec::Sigmoid => Layer::Act(Activation::Sigmoid),
            LayerSpec::Tanh => Layer::Act(Activation::Tanh),
            LayerSpec::Dense { out } => Layer::Dense(Dense {
                inputs: c * h * w,
                out,
            }),
            LayerSpec::Dropout { p } => Layer::Dropout(p),
        }
    }

    pub fn param_len(&self) -> usize {
        match self {
            Layer::Conv(c) => c.param_len(),
            Layer::Dense(d) => d.param_len(),
            _ => 0,
        }
    }

    /// Multiply-adds ×2 per image for the forward pass.
    pub fn forward_flop(&self) -> u64 {
        match self {
            Layer::Conv(c) => 2 * (c.weight_len() * c.ho * c.wo) as u64,
            Layer::Dense(d) => 2 * (d.inputs * d.out) as u64,
            _ => 0,
        }
    }

    /// `rng` is given in training (dropout draws its mask from it) and absent in inference.
    pub fn forward(
        &self,
        p: &[f32],
        x: &[f32],
        y: &mut [f32],
        n: usize,
        cache: &mut LayerCache,
        rng: Option<&mut rand_chacha::ChaCha8Rng>,
    ) {
        match self {
            Layer::Conv(c) if conv_wide::available() => c.forward_wide(p, x, y, n, &mut cache.wide),
            Layer::Conv(c) => c.forward(p, x, y, n, &mut cache.col),
            Layer::MaxPool(pool) => pool.max_forward(x, y, n, &mut cache.idx),
            Layer::AvgPool(pool) => pool.avg_forward(x, y),
            Layer::Act(a) => a.forward(x, y),
            Layer::Dense(d) => d.forward(p, x, y, n),
            Layer::Dropout(prob) => match rng {
                Some(rng) => activation::dropout_forward(*prob, x, y, &mut cache.mask, rng),
                None => y.copy_from_slice(x),
            },
        }
    }

    /// Adds the parameter gradient into `dp`; writes `dx` when given (the first layer's input
    /// gradient is never needed).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        p: &[f32],
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dp: &mut [f32],
        n: usize,
        cache: &mut LayerCache,
    ) {
        match self {
            Layer::Conv(c) if conv_wide::available() => {
                c.backward_wide(p, x, dy, dx, dp, n, &mut cache.wide)
            }
            Layer::Conv(c) => c.backward(p, x, dy, dx, dp, n, &mut cache.col, &mut cache.dcol),
            Layer::Dense(d) => d.backward(p, x, dy, dx, dp, n),
            _ => {
                let Some(dx) = dx else { return };
                match self {
                    Layer::MaxPool(pool) => pool.max_backward(dy, dx, &cache.idx),
                    Layer::AvgPool(pool) => pool.avg_backward(dy, dx),
                    Layer::Act(a) => a.backward(y, dy, dx),
                    Layer::Dropout(_) if cache.mask.len() == dy.len() => {
                        activation::dropout_backward(dy, dx, &cache.mask)
                    }
                    _ => dx.copy_from_slice(dy),
                }
            }
        }
    }
}
