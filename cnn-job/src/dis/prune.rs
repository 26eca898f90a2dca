//! FeatureMapPruner (the paper's section 3.1, step 5): for two maps of a convolution layer,
//! H = 1 − |cos| between them, a pair with H < A is redundant, and of it the map with the
//! smaller mean activation goes (A = 0 prunes nothing; A = 0.25 removes maps with |cos| >
//! 0.75). At least one map per layer stays. Decided once on the driver from statistics computed
//! on the executors; the kernel, its bias, the next layer's matching input channel (or dense
//! inputs) and their momentum go with it.
//!
//! The cosine is taken between the post-activation maps (the paper's feature maps are f(·)
//! outputs) stacked over a sample of images and all spatial positions, each map's mean over
//! that sample removed first: a correlation across the sample. Per image over a flattened map,
//! as an earlier version did it, is no similarity where maps are 1×1 (the paper's conv3):
//! there |cos| ∈ {0, 1} and H is one minus a co-activation rate. A map that never varies on the
//! sample (dead, or constant) correlates with nothing and is not pruned by this rule.

use super::shards::{network, Shard, Weights};
use crate::data;
use crate::network::Network;
use crate::spec::{LayerSpec, NetSpec};
use discnn_engine::{register_op, Broadcast, MapFn};
use serde::{Deserialize, Serialize};

/// Per convolution layer, the sums a correlation between its maps needs, over a sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MapStats {
    pub layers: Vec<LayerStats>,
}

/// Over every value of a map in the sample (images × positions): Σx per map and Σxy per pair
/// of maps. Sums merge exactly across partitions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LayerStats {
    pub maps: usize,
    pub sum: Vec<f64>,
    /// maps × maps, row-major (the diagonal holds Σx²).
    pub cross: Vec<f64>,
    /// Values per map.
    pub count: u64,
}

impl LayerStats {
    pub fn new(maps: usize) -> LayerStats {
        LayerStats {
            maps,
            sum: vec![0.0; maps],
            cross: vec![0.0; maps * maps],
            count: 0,
        }
    }

    /// Adds one image's maps (`maps` planes of equal size, one after another).
    pub fn add_image(&mut self, image: &[f32]) {
        let c = self.maps;
        let plane = image.len() / c.max(1);
        for p in 0..plane {
            for a in 0..c {
                let x = f64::from(image[a * plane + p]);
                self.sum[a] += x;
                for b in a..c {
                    self.cross[a * c + b] += x * f64::from(image[b * plane + p]);
                }
            }
        }
        self.count += plane as u64;
    }

    fn merge(&mut self, o: &LayerStats) {
        self.sum.iter_mut().zip(&o.sum).for_each(|(x, y)| *x += y);
        self.cross
            .iter_mut()
            .zip(&o.cross)
            .for_each(|(x, y)| *x += y);
        self.count += o.count;
    }

    /// The mean activation of map `a`.
    pub fn mean(&self, a: usize) -> f64 {
        self.sum[a] / self.count.max(1) as f64
    }

    /// |cos| between maps `a` < `b` with their means removed: |Pearson correlation|, 0 when
    /// either does not vary.
    pub fn abs_correlation(&self, a: usize, b: usize) -> f64 {
        let (c, n) = (self.maps, self.count.max(1) as f64);
        let (ma, mb) = (self.mean(a), self.mean(b));
        let cov = self.cross[a.min(b) * c + a.max(b)] / n - ma * mb;
        let var = |m: usize, mean: f64| (self.cross[m * c + m] / n - mean * mean).max(0.0);
        let (va, vb) = (var(a, ma), var(b, mb));
        // Below this the variance is rounding noise of a constant map.
        let floor = 1e-12 * (1.0 + ma * ma + mb * mb);
        if va <= floor || vb <= floor {
            return 0.0;
        }
        (cov / (va * vb).sqrt()).abs().min(1.0)
    }
}

impl MapStats {
    pub fn merge(mut self, o: &MapStats) -> MapStats {
        if self.layers.is_empty() {
            return o.clone();
        }
        for (a, b) in self.layers.iter_mut().zip(&o.layers) {
            a.merge(b);
        }
        self
    }
}

/// The layer index whose output is the post-activation output of each conv layer.
fn conv_outputs(spec: &NetSpec) -> Vec<usize> {
    spec.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, LayerSpec::Conv { .. }))
        .map(|(i, _)| match spec.layers.get(i + 1) {
            Some(LayerSpec::Relu | LayerSpec::Sigmoid | LayerSpec::Tanh) => i + 1,
            _ => i,
        })
        .collect()
}

/// Map statistics of the broadcast weights on `images` images sampled from a shard.
#[derive(Clone, Serialize, Deserialize)]
pub struct SimilarityStats {
    pub weights: Broadcast<Weights>,
    pub images: usize,
    pub seed: u64,
}

impl MapFn for SimilarityStats {
    type In = Shard;
    type Out = MapStats;
    fn call(&self, s: Shard) -> MapStats {
        let w = self.weights.value();
        let net = network(&w.spec);
        let idx = super::response::sample(&s, self.images, self.seed, 99);
        let (x, _) = data::batch(&s.images, &idx, &w.norm, None);
        let outs = net.layer_outputs(&w.params, &x);
        let mut stats = MapStats::default();
        for li in conv_outputs(net.spec()) {
            let [c, h, wd] = net.shapes()[li];
            let mut st = LayerStats::new(c);
            for img in outs[li].chunks_exact(c * h * wd) {
                st.add_image(img);
            }
            stats.layers.push(st);
        }
        stats
    }
}
register_op!(map SimilarityStats);

/// The pairs of maps (i < j) of a layer with H < `a`, most similar first.
pub fn redundant_pairs(st: &LayerStats, a: f64) -> Vec<(f64, usize, usize)> {
    let c = st.maps;
    let mut pairs = Vec::new();
    for i in 0..c {
        for j in i + 1..c {
            let h = 1.0 - st.abs_correlation(i, j);
            if h < a {
                pairs.push((h, i, j));
            }
        }
    }
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    pairs
}

/// The maps each conv layer keeps at threshold `a`.
pub fn decide(stats: &MapStats, a: f64) -> Vec<Vec<usize>> {
    stats
        .layers
        .iter()
        .map(|st| {
            let c = st.maps;
            let mut keep = vec![true; c];
            // Most similar pairs first; a map already gone removes nothing more.
            for (_, i, j) in redundant_pairs(st, a) {
                if !(keep[i] && keep[j]) || keep.iter().filter(|k| **k).count() <= 1 {
                    continue;
                }
                let drop = if st.mean(i) < st.mean(j) { i } else { j };
                keep[drop] = false;
            }
            (0..c).filter(|&m| keep[m]).collect()
        })
        .collect()
}

/// The network with only the `kept` maps of each conv layer, and `buffers` (parameters,
/// momentum, …, each laid out like the parameters) sliced to match.
pub fn apply(
    net: &Network,
    kept: &[Vec<usize>],
    buffers: &[&[f32]],
) -> Result<(NetSpec, Vec<Vec<f32>>), crate::spec::SpecError> {
    let old = net.spec();
    let mut spec = old.clone();
    let mut conv = 0;
    // For every layer: the output channels it keeps (None: all).
    let mut keep_out: Vec<Option<Vec<usize>>> = vec![None; old.layers.len()];
    for (i, l) in spec.layers.iter_mut().enumerate() {
        if let LayerSpec::Conv { out, .. } = l {
            if let Some(k) = kept.get(conv) {
                *out = k.len();
                keep_out[i] = Some(k.clone());
            }
            conv += 1;
        }
    }
    let new_net = Network::new(spec.clone())?;
    let mut out: Vec<Vec<f32>> = buffers
        .iter()
        .map(|_| vec![0f32; new_net.param_len()])
        .collect();
    // The channels flowing into each layer (None: all), carried through layers without
    // parameters (activations and pooling keep channels).
    let mut flowing: Option<Vec<usize>> = None;
    for (i, keep) in keep_out.iter().enumerate() {
        let in_shape = if i == 0 {
            old.input
        } else {
            net.shapes()[i - 1]
        };
        let (oldr, newr) = (net.layer_range(i), new_net.layer_range(i));
        if !oldr.is_empty() {
            let in_units = in_shape[0];
            let per_channel = match old.layers[i] {
                LayerSpec::Conv { kernel, .. } => kernel * kernel,
                _ => in_shape[1] * in_shape[2],
            };
            let fan_in = in_units * per_channel;
            let outs = oldr.len() / (fan_in + 1);
            let rows: Vec<usize> = keep.clone().unwrap_or_else(|| (0..outs).collect());
            let cols: Vec<usize> = match &flowing {
                Some(ch) => ch
                    .iter()
                    .flat_map(|&c| c * per_channel..(c + 1) * per_channel)
                    .collect(),
                None => (0..fan_in).collect(),
            };
            for (b, dst) in buffers.iter().zip(out.iter_mut()) {
                let src = &b[oldr.clone()];
                let dst = &mut dst[newr.clone()];
                let mut k = 0;
                for &r in &rows {
                    for &c in &cols {
                        dst[k] = src[r * fan_in + c];
                        k += 1;
                    }
                }
                let bias = outs * fan_in;
                for &r in &rows {
                    dst[k] = src[bias + r];
                    k += 1;
                }
            }
            flowing = keep.clone();
        }
    }
    Ok((spec, out))
}
