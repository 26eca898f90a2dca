//! FeatureMapPruner (the paper's section 3.2), in the reading the issue pins: for two maps of a
//! convolution layer, H = 1 − |cos| between their flattened post-activation outputs, averaged
//! over a sample of images; a pair with H < A is redundant, and of it the map with the smaller
//! mean activation goes (A = 0 prunes nothing; A = 0.25 removes maps with |cos| > 0.75). At
//! least one map per layer stays. Decided once on the driver from statistics computed on the
//! executors; the kernel, its bias, the next layer's matching input channel (or dense inputs)
//! and their momentum go with it.

use super::shards::{network, Shard, Weights};
use crate::data;
use crate::network::Network;
use crate::rng::{self, Purpose};
use crate::spec::{LayerSpec, NetSpec};
use discnn_engine::{register_op, Broadcast, MapFn};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Per convolution layer, over a sample of images: Σ |cos| for every pair of maps, Σ of each
/// map's mean activation, and the number of images.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MapStats {
    pub layers: Vec<LayerStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LayerStats {
    pub maps: usize,
    /// maps × maps, row-major.
    pub abs_cos: Vec<f64>,
    pub activation: Vec<f64>,
    pub images: u64,
}

impl MapStats {
    pub fn merge(mut self, o: &MapStats) -> MapStats {
        if self.layers.is_empty() {
            return o.clone();
        }
        for (a, b) in self.layers.iter_mut().zip(&o.layers) {
            a.abs_cos
                .iter_mut()
                .zip(&b.abs_cos)
                .for_each(|(x, y)| *x += y);
            a.activation
                .iter_mut()
                .zip(&b.activation)
                .for_each(|(x, y)| *x += y);
            a.images += b.images;
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
        let mut idx: Vec<usize> = (0..s.images.len()).collect();
        idx.shuffle(&mut rng::stream(
            self.seed,
            Purpose::Sample,
            &[99, s.partition as u64],
        ));
        idx.truncate(self.images);
        let (x, _) = data::batch(&s.images, &idx, &w.norm, None);
        let outs = net.layer_outputs(&w.params, &x);
        let mut stats = MapStats::default();
        for li in conv_outputs(net.spec()) {
            let [c, h, wd] = net.shapes()[li];
            let plane = h * wd;
            let mut st = LayerStats {
                maps: c,
                abs_cos: vec![0.0; c * c],
                activation: vec![0.0; c],
                images: idx.len() as u64,
            };
            for img in outs[li].chunks_exact(c * plane) {
                let maps: Vec<&[f32]> = img.chunks_exact(plane).collect();
                let norms: Vec<f64> = maps
                    .iter()
                    .map(|m| {
                        m.iter()
                            .map(|&v| f64::from(v) * f64::from(v))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .collect();
                for a in 0..c {
                    st.activation[a] +=
                        maps[a].iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64;
                    for b in a + 1..c {
                        let dot: f64 = maps[a]
                            .iter()
                            .zip(maps[b])
                            .map(|(&p, &q)| f64::from(p) * f64::from(q))
                            .sum();
                        // A map that is zero everywhere is not like anything: |cos| = 0.
                        let cos = if norms[a] > 0.0 && norms[b] > 0.0 {
                            (dot / (norms[a] * norms[b])).abs()
                        } else {
                            0.0
                        };
                        st.abs_cos[a * c + b] += cos;
                        st.abs_cos[b * c + a] += cos;
                    }
                }
            }
            stats.layers.push(st);
        }
        stats
    }
}
register_op!(map SimilarityStats);

/// The maps each conv layer keeps at threshold `a`.
pub fn decide(stats: &MapStats, a: f64) -> Vec<Vec<usize>> {
    stats
        .layers
        .iter()
        .map(|st| {
            let n = st.images.max(1) as f64;
            let c = st.maps;
            let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
            for i in 0..c {
                for j in i + 1..c {
                    let h = 1.0 - st.abs_cos[i * c + j] / n;
                    if h < a {
                        pairs.push((h, i, j));
                    }
                }
            }
            // Most similar pairs first; a map already gone removes nothing more.
            pairs.sort_by(|x, y| x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))));
            let mut keep = vec![true; c];
            for (_, i, j) in pairs {
                if !(keep[i] && keep[j]) || keep.iter().filter(|k| **k).count() <= 1 {
                    continue;
                }
                let drop = if st.activation[i] < st.activation[j] {
                    i
                } else {
                    j
                };
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
