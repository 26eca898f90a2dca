//! A network built from a [`NetSpec`]: its layers, the layout of its one contiguous parameter
//! buffer (per-layer views named as PyTorch names them), and minibatch training and inference.
//!
//! A minibatch is cut into chunks of [`CHUNK`] images that run side by side on rayon's pool,
//! each through the whole forward and backward pass with its own workspace. Chunk gradients are
//! added in chunk order, so the result is the same bit for bit whatever the thread count.

use crate::layers::{loss, simd, Layer, LayerCache, Loss};
use crate::rng::{self, Purpose};
use crate::spec::{LayerSpec, NetSpec, SpecError};
use ndarray::{Array2, ArrayView4, ArrayViewD, IxDyn};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Mutex;

/// Images per chunk: a fixed size, part of the numerics (it fixes the order of additions).
pub const CHUNK: usize = 8;

/// How parameters start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WeightInit {
    /// He: weights from N(0, 2/fan_in), biases zero.
    He,
    /// PyTorch's default for `Conv2d` and `Linear`: weights and biases from
    /// U(−1/√fan_in, 1/√fan_in).
    Uniform,
}

/// One named parameter tensor: a view `range` of the parameter buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub range: Range<usize>,
    /// The layer it belongs to.
    pub layer: usize,
}

#[derive(Debug)]
pub struct Network {
    spec: NetSpec,
    layers: Vec<Layer>,
    /// Output shape of every layer.
    shapes: Vec<[usize; 3]>,
    ranges: Vec<Range<usize>>,
    tensors: Vec<ParamTensor>,
    param_len: usize,
    pool: Mutex<Vec<Workspace>>,
}

/// Activations, gradients and layer caches for one chunk.
#[derive(Debug, Default)]
struct Workspace {
    acts: Vec<Vec<f32>>,
    caches: Vec<LayerCache>,
    g0: Vec<f32>,
    g1: Vec<f32>,
    grad: Vec<f32>,
}

/// What one training step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss over the minibatch.
    pub loss: f64,
    pub correct: usize,
    /// Mean over the minibatch of Σₖ (tₖ − yₖ)² on the softmax outputs (0–2).
    pub squared_error: f64,
}

impl Network {
    pub fn new(spec: NetSpec) -> Result<Network, SpecError> {
        let shapes = spec.shapes()?;
        let mut layers = Vec::with_capacity(shapes.len());
        let mut ranges = Vec::with_capacity(shapes.len());
        let mut tensors = Vec::new();
        let mut input = spec.input;
        let (mut offset, mut convs, mut denses) = (0, 0, 0);
        for (i, (ls, &out)) in spec.layers.iter().zip(&shapes).enumerate() {
            let layer = Layer::new(ls, input, out);
            let len = layer.param_len();
            let (name, wshape) = match ls {
                LayerSpec::Conv { kernel, .. } => {
                    convs += 1;
                    (
                        format!("conv{convs}"),
                        vec![out[0], input[0], *kernel, *kernel],
                    )
                }
                LayerSpec::Dense { out } => {
                    denses += 1;
                    (format!("fc{denses}"), vec![*out, input.iter().product()])
                }
                _ => (String::new(), vec![]),
            };
            if len > 0 {
                let wl: usize = wshape.iter().product();
                tensors.push(ParamTensor {
                    name: format!("{name}.weight"),
                    shape: wshape.clone(),
                    range: offset..offset + wl,
                    layer: i,
                });
                tensors.push(ParamTensor {
                    name: format!("{name}.bias"),
                    shape: vec![wshape[0]],
                    range: offset + wl..offset + len,
                    layer: i,
                });
            }
            ranges.push(offset..offset + len);
            offset += len;
            layers.push(layer);
            input = out;
        }
        Ok(Network {
            spec,
            layers,
            shapes,
            ranges,
            tensors,
            param_len: offset,
            pool: Mutex::new(Vec::new()),
        })
    }

    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    pub fn param_len(&self) -> usize {
        self.param_len
    }

    /// The parameter tensors in buffer order: `conv1.weight`, `conv1.bias`, …, `fc2.bias`.
    pub fn tensors(&self) -> &[ParamTensor] {
        &self.tensors
    }

    /// The parameter range of layer `i` (empty for layers without parameters).
    pub fn layer_range(&self, i: usize) -> Range<usize> {
        self.ranges[i].clone()
    }

    pub fn input_len(&self) -> usize {
        self.spec.input.iter().product()
    }

    pub fn classes(&self) -> usize {
        self.spec.classes()
    }

    /// Floating-point operations per image: forward, and one training step (forward, weight
    /// gradients, and input gradients for every layer but the first).
    pub fn flop_per_image(&self) -> (u64, u64) {
        let fwd: u64 = self.layers.iter().map(Layer::forward_flop).sum();
        let first = self
            .layers
            .iter()
            .find(|l| l.param_len() > 0)
            .map_or(0, Layer::forward_flop);
        (fwd, 3 * fwd - first)
    }

    /// He initialisation: weights from N(0, 2/fan_in), biases zero.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        self.init_params_with(WeightInit::He, seed)
    }

    pub fn init_params_with(&self, init: WeightInit, seed: u64) -> Vec<f32> {
        let mut params = vec![0f32; self.param_len];
        for t in &self.tensors {
            let fan_in: usize = match self.tensors.iter().find(|w| w.layer == t.layer) {
                Some(w) => w.shape[1..].iter().product(),
                None => continue,
            };
            let weight = t.name.ends_with(".weight");
            let mut rng = rng::stream(seed, Purpose::Init, &[t.layer as u64, u64::from(weight)]);
            let values = &mut params[t.range.clone()];
            match init {
                WeightInit::He if weight => {
                    let std = (2.0 / fan_in as f64).sqrt() as f32;
                    let normal = Normal::new(0.0, std).expect("a positive standard deviation");
                    values.iter_mut().for_each(|p| *p = normal.sample(&mut rng));
                }
                WeightInit::He => {}
                WeightInit::Uniform => {
                    let bound = (1.0 / fan_in as f64).sqrt() as f32;
                    values
                        .iter_mut()
                        .for_each(|p| *p = rng.gen_range(-bound..bound));
                }
            }
        }
        params
    }

    fn take_workspace(&self) -> Workspace {
        let ws = self.pool.lock().ok().and_then(|mut p| p.pop());
        ws.unwrap_or_else(|| Workspace {
            acts: self.shapes.iter().map(|_| Vec::new()).collect(),
            caches: self.layers.iter().map(|_| LayerCache::default()).collect(),
            ..Workspace::default()
        })
    }

    fn give_workspace(&self, ws: Workspace) {
        if let Ok(mut p) = self.pool.lock() {
            p.push(ws);
        }
    }

    fn forward_chunk(
        &self,
        params: &[f32],
        x: &[f32],
        n: usize,
        ws: &mut Workspace,
        mut rng: Option<&mut rand_chacha::ChaCha8Rng>,
    ) {
        for (i, layer) in self.layers.iter().enumerate() {
            let len = n * self.shapes[i].iter().product::<usize>();
            let (done, rest) = ws.acts.split_at_mut(i);
            let out = &mut rest[0];
            out.resize(len, 0.0);
            let input: &[f32] = if i == 0 { x } else { &done[i - 1] };
            layer.forward(
                &params[self.ranges[i].clone()],
                input,
                out,
                n,
                &mut ws.caches[i],
                rng.as_deref_mut(),
            );
        }
    }

    /// Forward and backward over one chunk; leaves the chunk's gradient in `ws.grad`.
    #[allow(clippy::too_many_arguments)]
    fn train_chunk(
        &self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        loss_kind: Loss,
        scale: f32,
        ws: &mut Workspace,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> (loss::ChunkLoss, usize) {
        let n = labels.len();
        self.forward_chunk(params, x, n, ws, Some(rng));
        let classes = self.classes();
        let logits = &ws.acts[self.layers.len() - 1];
        let correct = count_correct(logits, labels, classes);
        ws.g0.resize(n * classes, 0.0);
        let total = loss::forward_backward(loss_kind, logits, labels, classes, scale, &mut ws.g0);
        ws.grad.clear();
        ws.grad.resize(self.param_len, 0.0);
        for i in (0..self.layers.len()).rev() {
            let input: &[f32] = if i == 0 { x } else { &ws.acts[i - 1] };
            let in_len = input.len();
            let dx = if i == 0 {
                None
            } else {
                ws.g1.resize(in_len, 0.0);
                Some(&mut ws.g1[..in_len])
            };
            let out_len = ws.acts[i].len();
            self.layers[i].backward(
                &params[self.ranges[i].clone()],
                input,
                &ws.acts[i],
                &ws.g0[..out_len],
                dx,
                &mut ws.grad[self.ranges[i].clone()],
                n,
                &mut ws.caches[i],
            );
            std::mem::swap(&mut ws.g0, &mut ws.g1);
        }
        (total, correct)
    }

    /// One minibatch: writes the gradient of the mean loss into `grads` and returns the mean
    /// loss. `x` holds `labels.len()` images; `key` names the dropout streams of this step.
    #[allow(clippy::too_many_arguments)]
    pub fn gradient(
        &self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        loss_kind: Loss,
        seed: u64,
        key: &[u64],
        grads: &mut [f32],
    ) -> StepStats {
        let n = labels.len();
        let in_len = self.input_len();
        let scale = 1.0 / n.max(1) as f32;
        let results: Vec<(loss::ChunkLoss, usize, Workspace)> = labels
            .par_chunks(CHUNK)
            .zip(x.par_chunks(CHUNK * in_len))
            .enumerate()
            .map(|(c, (lab, xc))| {
                let mut ws = self.take_workspace();
                let mut k = key.to_vec();
                k.push(c as u64);
                let mut rng = rng::stream(seed, Purpose::Dropout, &k);
                let (loss, correct) =
                    self.train_chunk(params, xc, lab, loss_kind, scale, &mut ws, &mut rng);
                (loss, correct, ws)
            })
            .collect();
        grads.fill(0.0);
        let (mut loss, mut squared_error, mut correct) = (0.0, 0.0, 0);
        for (l, c, ws) in results {
            simd::add_row(grads, &ws.grad);
            loss += l.loss;
            squared_error += l.squared_error;
            correct += c;
            self.give_workspace(ws);
        }
        StepStats {
            loss: loss / n.max(1) as f64,
            correct,
            squared_error: squared_error / n.max(1) as f64,
        }
    }

    /// Class scores (logits) for `x.len() / input_len` images, in parallel chunks.
    pub fn logits(&self, params: &[f32], x: &[f32]) -> Vec<f32> {
        let in_len = self.input_len();
        let classes = self.classes();
        let n = x.len() / in_len;
        let mut out = vec![0f32; n * classes];
        out.par_chunks_mut(CHUNK * classes)
            .zip(x.par_chunks(CHUNK * in_len))
            .for_each(|(o, xc)| {
                let mut ws = self.take_workspace();
                self.forward_chunk(params, xc, xc.len() / in_len, &mut ws, None);
                o.copy_from_slice(&ws.acts[self.layers.len() - 1]);
                self.give_workspace(ws);
            });
        out
    }

    /// Every layer's output for the images in `x`, in order (chunk by chunk, no dropout): for
    /// kernel initialisation and feature-map pruning, which look inside the network.
    pub fn layer_outputs(&self, params: &[f32], x: &[f32]) -> Vec<Vec<f32>> {
        let in_len = self.input_len();
        let n = x.len() / in_len;
        let mut out: Vec<Vec<f32>> = self
            .shapes
            .iter()
            .map(|s| Vec::with_capacity(n * s.iter().product::<usize>()))
            .collect();
        for xc in x.chunks(CHUNK * in_len) {
            let mut ws = self.take_workspace();
            self.forward_chunk(params, xc, xc.len() / in_len, &mut ws, None);
            for (o, a) in out.iter_mut().zip(&ws.acts) {
                o.extend_from_slice(a);
            }
            self.give_workspace(ws);
        }
        out
    }

    /// The output shape (C, H, W) of every layer.
    pub fn shapes(&self) -> &[[usize; 3]] {
        &self.shapes
    }

    /// The view of one named parameter tensor (`conv1.weight`, …) of a parameter or gradient
    /// buffer, shaped as PyTorch shapes it.
    pub fn view<'a>(&self, buffer: &'a [f32], name: &str) -> Option<ArrayViewD<'a, f32>> {
        let t = self.tensors.iter().find(|t| t.name == name)?;
        ArrayViewD::from_shape(IxDyn(&t.shape), &buffer[t.range.clone()]).ok()
    }

    /// Class scores for an (N, C, H, W) array of images; `None` if its image shape is not the
    /// network's input shape.
    pub fn logits_array(&self, params: &[f32], x: ArrayView4<'_, f32>) -> Option<Array2<f32>> {
        let (n, c, h, w) = x.dim();
        if [c, h, w] != self.spec.input {
            return None;
        }
        let contiguous = x.as_standard_layout();
        let flat = contiguous.as_slice()?;
        Array2::from_shape_vec((n, self.classes()), self.logits(params, flat)).ok()
    }

    /// The predicted class of every image.
    pub fn predict(&self, params: &[f32], x: &[f32]) -> Vec<u8> {
        let classes = self.classes();
        self.logits(params, x)
            .chunks_exact(classes)
            .map(|z| argmax(z) as u8)
            .collect()
    }
}

pub fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

fn count_correct(logits: &[f32], labels: &[u8], classes: usize) -> usize {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(z, &t)| argmax(z) == usize::from(t))
        .count()
}
