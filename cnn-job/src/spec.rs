//! A network described by a small spec: a comma-separated list of layers, such as the paper's
//! `conv5x8,relu,maxpool2,conv5x16,relu,maxpool2,conv5x14,relu,dense120,relu,dense10`.
//!
//! Tokens: `conv{K}x{N}` (valid) or `conv{K}x{N}same` (zero padding K/2), `maxpool{K}` or
//! `maxpool{K}s{S}` (default stride K), `avgpool{K}` / `avgpool{K}s{S}`, `relu`, `sigmoid`,
//! `tanh`, `dense{N}` (flattens its input), `dropout{P}`. The loss (softmax with
//! cross-entropy, or the paper's squared error on the softmax) is not part of the spec.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Padding {
    Valid,
    Same,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LayerSpec {
    Conv {
        kernel: usize,
        out: usize,
        padding: Padding,
    },
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
    },
    Relu,
    Sigmoid,
    Tanh,
    Dense {
        out: usize,
    },
    Dropout {
        p: f32,
    },
}

/// Input shape and layers. Widths are plain numbers, so pruning a feature map is a new spec
/// with a smaller `out` and correspondingly sliced parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    pub input: [usize; 3],
    pub layers: Vec<LayerSpec>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("layer {index} `{token}`: {why}")]
    BadToken {
        index: usize,
        token: String,
        why: String,
    },
    #[error("layer {index} ({layer}): input {c}×{h}×{w} is too small")]
    TooSmall {
        index: usize,
        layer: String,
        c: usize,
        h: usize,
        w: usize,
    },
    #[error("the spec has no layers")]
    Empty,
    #[error("the last layer must be a dense layer giving the class scores")]
    NoClassifier,
}

/// The paper's net (section 3, Figure 1): 3×32×32 → conv 5×5×8 → max-pool → conv 5×5×16 →
/// max-pool → conv 5×5×14 → dense 120 → dense 10 → softmax, ReLU activations.
pub const PAPER: &str =
    "conv5x8,relu,maxpool2,conv5x16,relu,maxpool2,conv5x14,relu,dense120,relu,dense10";

/// Caffe's cifar10_quick (pooling with floor rounding, as PyTorch does: 32→15→7→3).
pub const CIFAR10_QUICK: &str =
    "conv5x32same,maxpool3s2,relu,conv5x32same,relu,avgpool3s2,conv5x64same,relu,avgpool3s2,dense64,dense10";

impl NetSpec {
    pub fn parse(input: [usize; 3], text: &str) -> Result<NetSpec, SpecError> {
        let mut layers = Vec::new();
        for (index, token) in text.split(',').map(str::trim).enumerate() {
            let bad = |why: &str| SpecError::BadToken {
                index,
                token: token.to_string(),
                why: why.to_string(),
            };
            let num = |s: &str| s.parse::<usize>().ok().filter(|&n| n > 0);
            let layer = if let Some(rest) = token.strip_prefix("conv") {
                let (rest, padding) = match rest.strip_suffix("same") {
                    Some(r) => (r, Padding::Same),
                    None => (rest, Padding::Valid),
                };
                let (k, n) = rest
                    .split_once('x')
                    .ok_or_else(|| bad("expected conv{K}x{N}"))?;
                let kernel = num(k).ok_or_else(|| bad("bad kernel size"))?;
                if padding == Padding::Same && kernel % 2 == 0 {
                    return Err(bad("same padding needs an odd kernel"));
                }
                LayerSpec::Conv {
                    kernel,
                    out: num(n).ok_or_else(|| bad("bad number of feature maps"))?,
                    padding,
                }
            } else if let Some(rest) = token
                .strip_prefix("maxpool")
                .or_else(|| token.strip_prefix("avgpool"))
            {
                let (k, s) = match rest.split_once('s') {
                    Some((k, s)) => (num(k), num(s)),
                    None => (num(rest), num(rest)),
                };
                let (kernel, stride) = k.zip(s).ok_or_else(|| bad("expected {K} or {K}s{S}"))?;
                if token.starts_with("max") {
                    LayerSpec::MaxPool { kernel, stride }
                } else {
                    LayerSpec::AvgPool { kernel, stride }
                }
            } else if let Some(n) = token.strip_prefix("dense") {
                LayerSpec::Dense {
                    out: num(n).ok_or_else(|| bad("bad width"))?,
                }
            } else if let Some(p) = token.strip_prefix("dropout") {
                let p = p
                    .parse::<f32>()
                    .ok()
                    .filter(|p| (0.0..1.0).contains(p))
                    .ok_or_else(|| bad("the drop probability must be in [0, 1)"))?;
                LayerSpec::Dropout { p }
            } else {
                match token {
                    "relu" => LayerSpec::Relu,
                    "sigmoid" => LayerSpec::Sigmoid,
                    "tanh" => LayerSpec::Tanh,
                    _ => return Err(bad("unknown layer")),
                }
            };
            layers.push(layer);
        }
        let spec = NetSpec { input, layers };
        spec.shapes()?;
        Ok(spec)
    }

    pub fn paper() -> NetSpec {
        NetSpec::parse([3, 32, 32], PAPER).expect("the paper's spec is valid")
    }

    /// The output shape (C, H, W) of every layer, checking that each fits its input.
    pub fn shapes(&self) -> Result<Vec<[usize; 3]>, SpecError> {
        if self.layers.is_empty() {
            return Err(SpecError::Empty);
        }
        if !matches!(self.layers.last(), Some(LayerSpec::Dense { .. })) {
            return Err(SpecError::NoClassifier);
        }
        let mut shape = self.input;
        let mut out = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            let [c, h, w] = shape;
            let too_small = || SpecError::TooSmall {
                index,
                layer: layer.to_string(),
                c,
                h,
                w,
            };
            shape = match *layer {
                LayerSpec::Conv {
                    kernel,
                    out,
                    padding,
                } => match padding {
                    Padding::Same => [out, h, w],
                    Padding::Valid if h >= kernel && w >= kernel => {
                        [out, h - kernel + 1, w - kernel + 1]
                    }
                    Padding::Valid => return Err(too_small()),
                },
                LayerSpec::MaxPool { kernel, stride } | LayerSpec::AvgPool { kernel, stride } => {
                    if h < kernel || w < kernel {
                        return Err(too_small());
                    }
                    [c, (h - kernel) / stride + 1, (w - kernel) / stride + 1]
                }
                LayerSpec::Dense { out } => [out, 1, 1],
                _ => shape,
            };
            out.push(shape);
        }
        Ok(out)
    }

    pub fn classes(&self) -> usize {
        match self.layers.last() {
            Some(LayerSpec::Dense { out }) => *out,
            _ => 0,
        }
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerSpec::Conv {
                kernel,
                out,
                padding,
            } => {
                let same = if padding == Padding::Same { "same" } else { "" };
                write!(f, "conv{kernel}x{out}{same}")
            }
            LayerSpec::MaxPool { kernel, stride } if kernel == stride => {
                write!(f, "maxpool{kernel}")
            }
            LayerSpec::MaxPool { kernel, stride } => write!(f, "maxpool{kernel}s{stride}"),
            LayerSpec::AvgPool { kernel, stride } if kernel == stride => {
                write!(f, "avgpool{kernel}")
            }
            LayerSpec::AvgPool { kernel, stride } => write!(f, "avgpool{kernel}s{stride}"),
            LayerSpec::Relu => f.write_str("relu"),
            LayerSpec::Sigmoid => f.write_str("sigmoid"),
            LayerSpec::Tanh => f.write_str("tanh"),
            LayerSpec::Dense { out } => write!(f, "dense{out}"),
            LayerSpec::Dropout { p } => write!(f, "dropout{p}"),
        }
    }
}

impl fmt::Display for NetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_net_shapes() {
        let spec = NetSpec::paper();
        let shapes = spec.shapes().unwrap();
        let hw: Vec<usize> = shapes.iter().map(|s| s[1]).collect();
        assert_eq!(hw, [28, 28, 14, 10, 10, 5, 1, 1, 1, 1, 1]);
        assert_eq!(spec.to_string(), PAPER);
        assert_eq!(
            NetSpec::parse([3, 32, 32], &spec.to_string()).unwrap(),
            spec
        );
    }

    #[test]
    fn quick_net_and_errors() {
        let q = NetSpec::parse([3, 32, 32], CIFAR10_QUICK).unwrap();
        let hw: Vec<usize> = q.shapes().unwrap().iter().map(|s| s[1]).collect();
        assert_eq!(hw, [32, 15, 15, 15, 15, 7, 7, 7, 3, 1, 1]);
        assert!(matches!(
            NetSpec::parse([3, 32, 32], "conv5x8,warp9,dense10"),
            Err(SpecError::BadToken { index: 1, .. })
        ));
        assert!(matches!(
            NetSpec::parse([3, 8, 8], "conv5x8,conv5x8,dense10"),
            Err(SpecError::TooSmall { index: 1, .. })
        ));
        assert_eq!(
            NetSpec::parse([3, 8, 8], "conv3x4,relu"),
            Err(SpecError::NoClassifier)
        );
    }
}
