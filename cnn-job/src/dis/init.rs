//! KernelInit (the paper's section 3.1). `random`: He. `dis`: in every convolution layer, the
//! 16 outer entries of each 5×5 kernel stay random (He) and the inner 3×3 is a k-means centre
//! of 3×3 patches (C_in×3×3) of the layer's input — the images for the first layer, the
//! previous layer's pooled maps (under the weights initialised so far) for the others.
//! `kmeans`: whole first-layer kernels are k-means centres of 5×5 image patches, each patch
//! with its own mean subtracted first (the usual contrast normalisation for patch k-means);
//! the other layers stay He.
//!
//! The k-means runs as RDD jobs over patches sampled from the cached training shards: patch
//! means are computed, the patches with the largest and the smallest mean dropped, and the k
//! initial centres (k = the layer's kernel count) taken along an arithmetic sequence of ranks
//! over the sorted means; then Lloyd iterations, each one broadcast of the centres and one
//! map over the patches. The centres are then standardised (zero mean) and scaled to the
//! standard deviation of the layer's random entries, which balances centre against periphery
//! inside a kernel. That does not make the layer respond like a random one (a centre aligned
//! with the input's mean profile responds several times more strongly), so for `dis` and
//! `kmeans` every layer is then rescaled by its response ([`super::response`]).

pub use super::response::InitBias;
use super::response::{match_layer, weighted_layers, ChannelMoments, Moments, Sampler};
use super::shards::{network, Shard, Weights};
use crate::data;
use crate::network::{Network, WeightInit};
use crate::rng::{self, Purpose};
use crate::spec::LayerSpec;
use discnn_engine::{
    register_op, Broadcast, Context, EngineError, FilterFn, FlatMapFn, MapFn, Rdd,
};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitMethod {
    Random,
    Kmeans,
    Dis,
}

/// A sampled patch: where it came from (to pick it back out), its mean, its values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Patch {
    pub id: (u32, u32),
    pub mean: f32,
    pub values: Vec<f32>,
}

/// Samples `per_image` patches of `size`×`size` (all input channels) from each of `images`
/// images of a shard, at the input of layer `layer`.
#[derive(Clone, Serialize, Deserialize)]
pub struct SamplePatches {
    pub weights: Broadcast<Weights>,
    pub layer: usize,
    pub size: usize,
    pub images: usize,
    pub per_image: usize,
    pub seed: u64,
    /// Subtract each patch's mean from its values (`kmeans` preprocessing).
    pub center: bool,
}

impl FlatMapFn for SamplePatches {
    type In = Shard;
    type Out = Patch;
    type Iter = Vec<Patch>;
    fn call(&self, s: Shard) -> Vec<Patch> {
        let w = self.weights.value();
        let net = network(&w.spec);
        let mut rng = rng::stream(
            self.seed,
            Purpose::Sample,
            &[self.layer as u64, s.partition as u64],
        );
        let mut idx: Vec<usize> = (0..s.images.len()).collect();
        idx.shuffle(&mut rng);
        idx.truncate(self.images);
        let (x, _) = data::batch(&s.images, &idx, &w.norm, None);
        let (input, [c, h, wd]) = if self.layer == 0 {
            (x, net.spec().input)
        } else {
            let mut outs = net.layer_outputs(&w.params, &x);
            (
                std::mem::take(&mut outs[self.layer - 1]),
                net.shapes()[self.layer - 1],
            )
        };
        let k = self.size;
        let mut out = Vec::with_capacity(idx.len() * self.per_image);
        if h < k || wd < k {
            return out;
        }
        let plane = h * wd;
        for (img, chunk) in input.chunks_exact(c * plane).enumerate() {
            for j in 0..self.per_image {
                let (y0, x0) = (rng.gen_range(0..=h - k), rng.gen_range(0..=wd - k));
                let mut values = Vec::with_capacity(c * k * k);
                for ch in 0..c {
                    for y in 0..k {
                        let row = ch * plane + (y0 + y) * wd + x0;
                        values.extend_from_slice(&chunk[row..row + k]);
                    }
                }
                let mean = values.iter().sum::<f32>() / values.len() as f32;
                if self.center {
                    values.iter_mut().for_each(|v| *v -= mean);
                }
                out.push(Patch {
                    id: (s.partition as u32, (img * self.per_image + j) as u32),
                    mean,
                    values,
                });
            }
        }
        out
    }
}
register_op!(flat_map SamplePatches);

#[derive(Clone, Serialize, Deserialize)]
pub struct PatchMean;
impl MapFn for PatchMean {
    type In = Patch;
    type Out = (f32, (u32, u32));
    fn call(&self, p: Patch) -> (f32, (u32, u32)) {
        (p.mean, p.id)
    }
}
register_op!(map PatchMean);

#[derive(Clone, Serialize, Deserialize)]
pub struct Chosen(pub Vec<(u32, u32)>);
impl FilterFn for Chosen {
    type Item = Patch;
    fn call(&self, p: &Patch) -> bool {
        self.0.contains(&p.id)
    }
}
register_op!(filter Chosen);

/// One partition's share of a Lloyd iteration: per centre, the sum and count of the patches
/// nearest to it, and the summed squared distance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub sums: Vec<Vec<f64>>,
    pub counts: Vec<u64>,
    pub cost: f64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Assign(pub Broadcast<Vec<Vec<f32>>>);
impl discnn_engine::PartitionFn for Assign {
    type In = Patch;
    type Out = Assignment;
    fn call(
        &self,
        _partition: usize,
        input: discnn_engine::BoxIter<Patch>,
    ) -> discnn_engine::BoxIter<Assignment> {
        let centres = self.0.value();
        let (k, d) = (centres.len(), centres.first().map_or(0, Vec::len));
        let mut a = Assignment {
            sums: vec![vec![0.0; d]; k],
            counts: vec![0; k],
            cost: 0.0,
        };
        for p in input {
            let (best, dist) = nearest(&centres, &p.values);
            a.cost += dist;
            a.counts[best] += 1;
            for (s, v) in a.sums[best].iter_mut().zip(&p.values) {
                *s += f64::from(*v);
            }
        }
        Box::new(std::iter::once(a))
    }
}
register_op!(partitions Assign);

fn nearest(centres: &[Vec<f32>], v: &[f32]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (i, c) in centres.iter().enumerate() {
        let d: f64 = c
            .iter()
            .zip(v)
            .map(|(a, b)| f64::from(a - b) * f64::from(a - b))
            .sum();
        if d < best.1 {
            best = (i, d);
        }
    }
    best
}

/// k-means over a patch RDD (see the module doc); returns the centres and the final cost.
pub fn kmeans(
    ctx: &Context,
    patches: &Rdd<Patch>,
    k: usize,
    iterations: usize,
) -> Result<(Vec<Vec<f32>>, f64), EngineError> {
    let mut means = patches.map(PatchMean).collect()?;
    if means.len() < k + 2 {
        return Err(EngineError::InvalidArgument(format!(
            "k-means needs at least {} patches, got {}",
            k + 2,
            means.len()
        )));
    }
    means.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    // The largest and the smallest are dropped; k ranks evenly spaced over the rest.
    let kept = &means[1..means.len() - 1];
    let ranks: Vec<usize> = (0..k)
        .map(|j| {
            if k == 1 {
                kept.len() / 2
            } else {
                (j * (kept.len() - 1) + (k - 1) / 2) / (k - 1)
            }
        })
        .collect();
    let ids: Vec<(u32, u32)> = ranks.iter().map(|&r| kept[r].1).collect();
    let picked = patches.filter(Chosen(ids.clone())).collect()?;
    let mut centres: Vec<Vec<f32>> = ids
        .iter()
        .map(|id| {
            picked
                .iter()
                .find(|p| p.id == *id)
                .map(|p| p.values.clone())
                .unwrap_or_default()
        })
        .collect();
    let mut cost = f64::INFINITY;
    for _ in 0..iterations {
        let bc = ctx.broadcast(centres.clone())?;
        let parts = patches.map_partitions(Assign(bc.clone())).collect()?;
        bc.destroy();
        let d = centres[0].len();
        let mut sums = vec![vec![0f64; d]; k];
        let mut counts = vec![0u64; k];
        let mut total = 0.0;
        for a in &parts {
            for c in 0..k {
                counts[c] += a.counts[c];
                for (s, v) in sums[c].iter_mut().zip(&a.sums[c]) {
                    *s += v;
                }
            }
            total += a.cost;
        }
        for c in 0..k {
            // An empty cluster keeps its centre.
            if counts[c] > 0 {
                centres[c] = sums[c]
                    .iter()
                    .map(|s| (s / counts[c] as f64) as f32)
                    .collect();
            }
        }
        let converged = (cost - total).abs() <= 1e-6 * cost.abs();
        cost = total;
        if converged {
            break;
        }
    }
    Ok((centres, cost))
}

/// Each centre's own mean removed (a kernel that responds to structure, not brightness), then
/// all of them scaled together to standard deviation `std`: the balance between a kernel's
/// centre and its random periphery. The layer's overall scale is set later, by response.
pub fn rescale(centres: &mut [Vec<f32>], std: f64) {
    for c in centres.iter_mut() {
        let m = c.iter().map(|&v| f64::from(v)).sum::<f64>() / c.len().max(1) as f64;
        c.iter_mut().for_each(|v| *v = (f64::from(*v) - m) as f32);
    }
    let n = centres.iter().map(Vec::len).sum::<usize>().max(1) as f64;
    let sd = (centres
        .iter()
        .flatten()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / n)
        .sqrt();
    let scale = if sd > 0.0 { std / sd } else { 0.0 };
    for v in centres.iter_mut().flatten() {
        *v = (f64::from(*v) * scale) as f32;
    }
}

/// How initialisation went, for the log.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub layers: Vec<String>,
}

/// Sets the last layer's weights to zero, whatever the method: the first softmax is uniform
/// (cross-entropy ln 10, E = 0.9 exactly) and the first steps move the classifier before the
/// features. He's gain of 2 assumes a ReLU after the layer and none follows the classifier;
/// with it, the max-pools' gain makes the paper's net start with logits of std ≈ 2–3 (loss
/// ≈ 4.4), and at lr 0.01 with momentum 0.9 the first steps' gradients leave conv3's 14 maps
/// dead for about a third of seeds (BENCHMARKS.md, "One epoch on 5,000 images").
pub fn zero_classifier(net: &Network, params: &mut [f32]) {
    if let Some(t) = net
        .tensors()
        .iter()
        .rev()
        .find(|t| t.name.ends_with(".weight"))
    {
        params[t.range.clone()].iter_mut().for_each(|p| *p = 0.0);
    }
}

/// How to initialise: the method, the bias rule of the response rescale, the seed, and how many
/// training images (over all shards) the rescale measures on.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    pub method: InitMethod,
    pub bias: InitBias,
    pub seed: u64,
    pub sample_images: usize,
}

impl InitOptions {
    /// The images the rescale measures on: at least this many over all shards.
    pub const SAMPLE_IMAGES: usize = 512;

    pub fn of(cfg: &super::DisConfig) -> InitOptions {
        InitOptions {
            method: cfg.init,
            bias: cfg.init_bias,
            seed: cfg.seed,
            sample_images: Self::SAMPLE_IMAGES,
        }
    }
}

/// The sample key of the rescale's images (any other key draws other images).
pub const RESCALE_SAMPLE: u64 = 77;

/// Parameters for `net` by `opts.method`, sampling patches and responses from the cached
/// training shards: the kernels' structure first (He, k-means centres), then, for `kmeans` and
/// `dis`, every weighted layer but the classifier rescaled in forward order to He's response.
pub fn initialize(
    ctx: &Context,
    net: &Network,
    shards: &Rdd<Shard>,
    base: Weights,
    opts: InitOptions,
) -> Result<(Vec<f32>, InitReport), EngineError> {
    let (method, seed) = (opts.method, opts.seed);
    let mut params = net.init_params_with(WeightInit::He, seed);
    zero_classifier(net, &mut params);
    let mut report = InitReport { layers: Vec::new() };
    if method == InitMethod::Random {
        return Ok((params, report));
    }
    let he = params.clone();
    let sampler = Sampler {
        ctx,
        shards,
        base: base.clone(),
        per_shard: opts.sample_images.div_ceil(shards.num_partitions().max(1)),
        seed,
        key: RESCALE_SAMPLE,
    };
    let he_moments = sampler.moments(&he)?;
    let weighted = weighted_layers(net);
    // The classifier starts at zero: there is no response to match.
    let rescaled = &weighted[..weighted.len().saturating_sub(1)];
    let mut conv_ordinal = 0;
    // The moments of `params` as they stand, when no layer changed since they were measured.
    let mut current: Option<Moments> = None;
    for &layer in rescaled {
        if let LayerSpec::Conv { kernel, out, .. } = net.spec().layers[layer] {
            conv_ordinal += 1;
            let structured = match method {
                InitMethod::Dis => kernel >= 3,
                InitMethod::Kmeans => conv_ordinal == 1,
                InitMethod::Random => false,
            };
            if structured {
                let size = if method == InitMethod::Dis { 3 } else { kernel };
                let line = kmeans_kernels(ctx, net, shards, &base, &mut params, layer, size, opts)?;
                report
                    .layers
                    .push(format!("conv{conv_ordinal}: {out} centres of {line}"));
                current = None;
            }
        }
        let before = match current.take() {
            Some(m) => m,
            None => sampler.moments(&params)?,
        };
        let (Some(now), Some(target)) = (before.of_layer(layer), he_moments.of_layer(layer)) else {
            continue;
        };
        let (m0, r0) = now.layer();
        let (hm, hr) = target.layer();
        match_layer(net, &mut params, layer, now, hr, opts.bias);
        let after = sampler.moments(&params)?;
        let (m1, r1) = after
            .of_layer(layer)
            .map_or((0.0, 0.0), ChannelMoments::layer);
        report.layers.push(format!(
            "{}: pre-activation RMS {r0:.3} (mean {m0:.3}) rescaled to {r1:.3} (mean {m1:.3}); He: RMS {hr:.3} (mean {hm:.3})",
            layer_name(net, layer)
        ));
        current = Some(after);
    }
    Ok((params, report))
}

/// `conv1`, `fc1`, … as the parameter tensors name the layer.
fn layer_name(net: &Network, layer: usize) -> String {
    net.tensors()
        .iter()
        .find(|t| t.layer == layer)
        .and_then(|t| t.name.split('.').next())
        .unwrap_or("layer")
        .to_string()
}

/// Puts k-means centres of `size`×`size` patches of the layer's input (under `params` so far)
/// into the inner `size`×`size` of every kernel of conv layer `layer`, scaled to the standard
/// deviation of the layer's random entries (the response rescale sets the layer's scale after).
/// Returns what was done, for the log.
#[allow(clippy::too_many_arguments)]
fn kmeans_kernels(
    ctx: &Context,
    net: &Network,
    shards: &Rdd<Shard>,
    base: &Weights,
    params: &mut [f32],
    layer: usize,
    size: usize,
    opts: InitOptions,
) -> Result<String, EngineError> {
    let LayerSpec::Conv { kernel, out, .. } = net.spec().layers[layer] else {
        return Ok(String::new());
    };
    let weights = ctx.broadcast(Weights {
        params: params.to_vec(),
        ..base.clone()
    })?;
    let patches = shards.flat_map(SamplePatches {
        weights: weights.clone(),
        layer,
        size,
        images: 64,
        per_image: 16,
        seed: opts.seed,
        center: opts.method == InitMethod::Kmeans,
    });
    patches.cache();
    let (mut centres, cost) = kmeans(ctx, &patches, out, 20)?;
    patches.unpersist();
    weights.destroy();
    let range = net.layer_range(layer);
    let c_in = if layer == 0 {
        net.spec().input[0]
    } else {
        net.shapes()[layer - 1][0]
    };
    let w_len = out * c_in * kernel * kernel;
    let w = &mut params[range.start..range.start + w_len];
    let o = (kernel - size) / 2;
    let inner = |ky: usize, kx: usize| (o..o + size).contains(&ky) && (o..o + size).contains(&kx);
    // The standard deviation of this layer's random entries: the ones that stay.
    let random: Vec<f64> = w
        .iter()
        .enumerate()
        .filter(|(i, _)| !inner((i / kernel) % kernel, i % kernel) || size == kernel)
        .map(|(_, &v)| f64::from(v))
        .collect();
    let m = random.iter().sum::<f64>() / random.len().max(1) as f64;
    let sd =
        (random.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / random.len().max(1) as f64).sqrt();
    rescale(&mut centres, sd);
    for (k, centre) in centres.iter().enumerate() {
        for ci in 0..c_in {
            for y in 0..size {
                for x in 0..size {
                    let dst = ((k * c_in + ci) * kernel + y + o) * kernel + x + o;
                    w[dst] = centre[(ci * size + y) * size + x];
                }
            }
        }
    }
    Ok(format!(
        "{c_in}×{size}×{size} patches, k-means cost {cost:.1}"
    ))
}
