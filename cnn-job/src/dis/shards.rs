//! Training and test images cached on the executors as one shard per partition, each loaded by
//! the executor from the shared data path (only its own records), and the ops that read them:
//! evaluation of broadcast weights, and the per-network cache an executor keeps.

use crate::cifar::{self, ChannelSums, Images, Split};
use crate::data::Normalization;
use crate::metrics::Confusion;
use crate::network::Network;
use crate::spec::NetSpec;
use discnn_engine::{register_op, Broadcast, MapFn};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitName {
    Train,
    Test,
}

impl SplitName {
    fn split(self) -> Split {
        match self {
            SplitName::Train => Split::Train,
            SplitName::Test => Split::Test,
        }
    }
}

/// Which records of which split a partition holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardSpec {
    pub data: PathBuf,
    pub split: SplitName,
    pub partition: usize,
    pub start: usize,
    pub end: usize,
}

/// `n` images cut into `parts` contiguous shards of sizes differing by at most one.
pub fn shard_specs(
    data: &std::path::Path,
    split: SplitName,
    offset: usize,
    n: usize,
    parts: usize,
) -> Vec<ShardSpec> {
    let parts = parts.max(1);
    (0..parts)
        .map(|p| ShardSpec {
            data: data.to_path_buf(),
            split,
            partition: p,
            start: offset + p * n / parts,
            end: offset + (p + 1) * n / parts,
        })
        .collect()
}

/// One partition's images, behind an `Arc` so a cached shard is shared, never copied, by the
/// tasks that read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shard {
    pub partition: usize,
    pub images: Arc<Images>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct LoadShard;
impl MapFn for LoadShard {
    type In = ShardSpec;
    type Out = Shard;
    fn call(&self, s: ShardSpec) -> Shard {
        // A local file was checked record by record on the driver, an object by its size
        // only: a bad record found here fails the job as bad input (exit 2, not retried),
        // naming the file and offset; an I/O error fails the task, which is retried.
        match cifar::load_range(&s.data, s.split.split(), s.start..s.end) {
            Ok(images) => Shard {
                partition: s.partition,
                images: Arc::new(images),
            },
            Err(e @ cifar::CifarError::Io { .. }) => panic!("{e}"),
            Err(e) => match discnn_engine::TaskContext::get() {
                Some(tc) => {
                    tc.fail_bad_input(e.to_string());
                    Shard {
                        partition: s.partition,
                        images: Arc::new(Images::default()),
                    }
                }
                None => panic!("{e}"),
            },
        }
    }
}
register_op!(map LoadShard);

/// What every task of one iteration reads: the network, its parameters and the input
/// normalisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Weights {
    pub spec: String,
    pub params: Vec<f32>,
    pub norm: Normalization,
}

/// The executor's network for a spec, built once (it owns reusable workspaces).
pub fn network(spec: &str) -> Arc<Network> {
    static NETS: OnceLock<Mutex<HashMap<String, Arc<Network>>>> = OnceLock::new();
    let mut nets = NETS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(n) = nets.get(spec) {
        return n.clone();
    }
    let net = NetSpec::parse([3, 32, 32], spec)
        .and_then(Network::new)
        .unwrap_or_else(|e| panic!("network spec `{spec}`: {e}"));
    let net = Arc::new(net);
    nets.insert(spec.to_string(), net.clone());
    net
}

/// The confusion matrix of the broadcast weights on a shard.
#[derive(Clone, Serialize, Deserialize)]
pub struct Evaluate(pub Broadcast<Weights>);
impl MapFn for Evaluate {
    type In = Shard;
    type Out = Confusion;
    fn call(&self, s: Shard) -> Confusion {
        let w = self.0.value();
        let net = network(&w.spec);
        crate::train::evaluate(&net, &w.params, &w.norm, &s.images)
    }
}
register_op!(map Evaluate);

/// Per-channel pixel sums of a shard, to normalise with the training set's statistics.
#[derive(Clone, Serialize, Deserialize)]
pub struct PixelMoments;
impl MapFn for PixelMoments {
    type In = Shard;
    type Out = ChannelSums;
    fn call(&self, s: Shard) -> ChannelSums {
        ChannelSums::of(&s.images)
    }
}
register_op!(map PixelMoments);
