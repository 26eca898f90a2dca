//! cnn-eval and cnn-predict: a saved model applied to a record file, or to a folder's (or an
//! archive's) test batch, as a job over shards that the executors load themselves.

use super::job::JobError;
use super::shards::{network, shard_specs, LoadShard, Shard, SplitName, Weights};
use crate::cifar::{self, Split};
use crate::metrics::Confusion;
use crate::model_io::Model;
use discnn_engine::{register_op, Broadcast, Context, MapFn, Rdd};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Serialize, Deserialize)]
pub struct Predict(pub Broadcast<Weights>);
impl MapFn for Predict {
    type In = Shard;
    type Out = Vec<u8>;
    fn call(&self, s: Shard) -> Vec<u8> {
        let w = self.0.value();
        let net = network(&w.spec);
        let all: Vec<usize> = (0..s.images.len()).collect();
        let mut out = Vec::with_capacity(all.len());
        for idx in all.chunks(1024) {
            let (x, _) = crate::data::batch(&s.images, idx, &w.norm, None);
            out.extend(net.predict(&w.params, &x));
        }
        out
    }
}
register_op!(map Predict);

/// The model's weights, and the records' shards (checked on the driver first).
fn prepare(
    ctx: &Context,
    model: &Path,
    data: &Path,
    partitions: usize,
) -> Result<(Weights, Rdd<Shard>), JobError> {
    let m = Model::load(model)?;
    let n = cifar::count(data, Split::Test)?;
    let weights = Weights {
        spec: m.meta.spec.to_string(),
        params: m.params,
        norm: m.meta.normalization,
    };
    let specs = shard_specs(data, SplitName::Test, 0, n, partitions.max(1).min(n.max(1)));
    let k = specs.len();
    Ok((weights, ctx.parallelize(specs, k)?.map(LoadShard)))
}

pub fn evaluate(
    ctx: &Context,
    model: &Path,
    data: &Path,
    partitions: usize,
) -> Result<Confusion, JobError> {
    let (weights, shards) = prepare(ctx, model, data, partitions)?;
    super::job::evaluate(ctx, &shards, weights)
}

/// The predicted class of every record, in record order.
pub fn predict(
    ctx: &Context,
    model: &Path,
    data: &Path,
    partitions: usize,
) -> Result<Vec<u8>, JobError> {
    let (weights, shards) = prepare(ctx, model, data, partitions)?;
    let bc = ctx.broadcast(weights)?;
    let parts = shards.map(Predict(bc.clone())).collect()?;
    bc.destroy();
    Ok(parts.concat())
}
