//! Response matching for KernelInit: a data-dependent rescale in the spirit of Mishkin & Matas'
//! LSUV and Krähenbühl et al. A kernel whose *structure* comes from the data (a k-means centre)
//! lines up with its input's mean profile, so at the weight scale of a random kernel it responds
//! several times more strongly; the excess compounds layer by layer (conv3's pre-activations
//! reached 18–23 RMS where He gives ~2) until the classifier saturates and the ReLUs die.
//!
//! So every weighted layer but the classifier is rescaled, in forward order, per output channel,
//! until the root mean square of its pre-activation over a sample of training images equals the
//! RMS He initialisation gives that layer on the same sample. The second moment is matched, not
//! the standard deviation: most of the excess is a DC component, which a std match would keep.
//! The moments are computed on the executors over their cached shards, one RDD job a layer.

use super::shards::{network, Shard, Weights};
use crate::data;
use crate::network::Network;
use crate::rng::{self, Purpose};
use discnn_engine::{register_op, Broadcast, Context, EngineError, MapFn, Rdd};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// What the rescale does with the biases (zero under every init before it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitBias {
    /// Biases stay zero; each channel's weights are scaled so E[z²] matches He's.
    Zero,
    /// Each channel's bias first removes its mean pre-activation on the sample, then weights
    /// and bias are scaled so the (now zero-mean) pre-activation's RMS matches He's.
    Center,
}

/// Per channel: Σz, Σz² and the count, over images and positions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChannelMoments {
    pub sum: Vec<f64>,
    pub sq: Vec<f64>,
    pub count: u64,
}

impl ChannelMoments {
    fn merge(&mut self, o: &ChannelMoments) {
        if self.sum.is_empty() {
            *self = o.clone();
            return;
        }
        self.sum.iter_mut().zip(&o.sum).for_each(|(a, b)| *a += b);
        self.sq.iter_mut().zip(&o.sq).for_each(|(a, b)| *a += b);
        self.count += o.count;
    }

    fn per_channel(&self) -> f64 {
        (self.count / self.sum.len().max(1) as u64).max(1) as f64
    }

    /// Each channel's (mean, RMS).
    pub fn channels(&self) -> Vec<(f64, f64)> {
        let n = self.per_channel();
        self.sum
            .iter()
            .zip(&self.sq)
            .map(|(s, q)| (s / n, (q / n).max(0.0).sqrt()))
            .collect()
    }

    /// The layer's (mean, RMS) over all its channels.
    pub fn layer(&self) -> (f64, f64) {
        let n = self.count.max(1) as f64;
        (
            self.sum.iter().sum::<f64>() / n,
            (self.sq.iter().sum::<f64>() / n).max(0.0).sqrt(),
        )
    }
}

/// The pre-activation moments of every weighted layer, in layer order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Moments {
    /// (layer index, moments).
    pub layers: Vec<(usize, ChannelMoments)>,
}

impl Moments {
    pub fn merge(mut self, o: &Moments) -> Moments {
        if self.layers.is_empty() {
            return o.clone();
        }
        for ((_, a), (_, b)) in self.layers.iter_mut().zip(&o.layers) {
            a.merge(b);
        }
        self
    }

    pub fn of_layer(&self, layer: usize) -> Option<&ChannelMoments> {
        self.layers
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, m)| m)
    }

    /// The moments of `params` on `x` (already normalised images).
    pub fn measure(net: &Network, params: &[f32], x: &[f32]) -> Moments {
        let outs = net.layer_outputs(params, x);
        let mut m = Moments::default();
        for layer in weighted_layers(net) {
            let [c, h, w] = net.shapes()[layer];
            let plane = h * w;
            let mut cm = ChannelMoments {
                sum: vec![0.0; c],
                sq: vec![0.0; c],
                count: 0,
            };
            for img in outs[layer].chunks_exact(c * plane) {
                for (ch, map) in img.chunks_exact(plane).enumerate() {
                    for &v in map {
                        let v = f64::from(v);
                        cm.sum[ch] += v;
                        cm.sq[ch] += v * v;
                    }
                }
                cm.count += (c * plane) as u64;
            }
            m.layers.push((layer, cm));
        }
        m
    }
}

/// The layers that own parameters, in order.
pub fn weighted_layers(net: &Network) -> Vec<usize> {
    let mut v: Vec<usize> = net.tensors().iter().map(|t| t.layer).collect();
    v.dedup();
    v
}

/// The shard's sample: `images` images drawn by a stream keyed by `key` and the partition.
pub fn sample(s: &Shard, images: usize, seed: u64, key: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..s.images.len()).collect();
    idx.shuffle(&mut rng::stream(
        seed,
        Purpose::Sample,
        &[key, s.partition as u64],
    ));
    idx.truncate(images);
    idx
}

/// Pre-activation moments of the broadcast weights on a sample of a shard.
#[derive(Clone, Serialize, Deserialize)]
pub struct PreActivationMoments {
    pub weights: Broadcast<Weights>,
    pub images: usize,
    pub seed: u64,
    /// Names the sample, so that a check can draw other images than the rescale did.
    pub key: u64,
}

impl MapFn for PreActivationMoments {
    type In = Shard;
    type Out = Moments;
    fn call(&self, s: Shard) -> Moments {
        let w = self.weights.value();
        let net = network(&w.spec);
        let idx = sample(&s, self.images, self.seed, self.key);
        let (x, _) = data::batch(&s.images, &idx, &w.norm, None);
        Moments::measure(&net, &w.params, &x)
    }
}
register_op!(map PreActivationMoments);

/// Where the sample comes from: the cached shards, `per_shard` images each.
pub struct Sampler<'a> {
    pub ctx: &'a Context,
    pub shards: &'a Rdd<Shard>,
    pub base: Weights,
    pub per_shard: usize,
    pub seed: u64,
    pub key: u64,
}

impl Sampler<'_> {
    /// The moments of `params`, one RDD job.
    pub fn moments(&self, params: &[f32]) -> Result<Moments, EngineError> {
        let weights = self.ctx.broadcast(Weights {
            params: params.to_vec(),
            ..self.base.clone()
        })?;
        let parts = self
            .shards
            .map(PreActivationMoments {
                weights: weights.clone(),
                images: self.per_shard,
                seed: self.seed,
                key: self.key,
            })
            .collect()?;
        weights.destroy();
        Ok(parts.iter().fold(Moments::default(), |a, m| a.merge(m)))
    }
}

/// Scales output channel by channel of layer `layer` of `params` so that its pre-activation
/// RMS, as `moments` measured it, becomes `target`. A channel that never responds (RMS 0) is
/// left as it is.
pub fn match_layer(
    net: &Network,
    params: &mut [f32],
    layer: usize,
    moments: &ChannelMoments,
    target: f64,
    bias: InitBias,
) {
    let tensor = |suffix: &str| {
        net.tensors()
            .iter()
            .find(|t| t.layer == layer && t.name.ends_with(suffix))
            .map(|t| t.range.clone())
    };
    let (Some(wr), Some(br)) = (tensor(".weight"), tensor(".bias")) else {
        return;
    };
    let outs = br.len();
    let fan_in = wr.len() / outs.max(1);
    for (c, (mean, rms)) in moments.channels().into_iter().enumerate().take(outs) {
        let spread = match bias {
            InitBias::Zero => rms,
            InitBias::Center => (rms * rms - mean * mean).max(0.0).sqrt(),
        };
        if spread <= 1e-12 {
            continue;
        }
        let s = target / spread;
        let row = wr.start + c * fan_in;
        params[row..row + fan_in]
            .iter_mut()
            .for_each(|w| *w = (f64::from(*w) * s) as f32);
        let b = &mut params[br.start + c];
        *b = match bias {
            InitBias::Zero => (f64::from(*b) * s) as f32,
            InitBias::Center => ((f64::from(*b) - mean) * s) as f32,
        };
    }
}
