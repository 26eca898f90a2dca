//! Dis-CNN's aggregation on the engine (local mode): the leader shuffle delivers every
//! gradient exactly once to its group, whatever the split and finish order; `mean` over N
//! partitions equals one step on the union of their mini-batches; shards load what they should.

use discnn_cnn::cifar::{self, Split};
use discnn_cnn::data::{self, Normalization};
use discnn_cnn::dis::aggregation::{
    batch_indices, combine, GradMsg, Gradient, GroupPartitioner, SumGroup,
};
use discnn_cnn::dis::shards::{network, shard_specs, LoadShard, Shard, SplitName, Weights};
use discnn_cnn::dis::Aggregation;
use discnn_cnn::layers::Loss;
use discnn_cnn::network::WeightInit;
use discnn_cnn::spec::PAPER;
use discnn_engine::{register_op, Context, MapFn};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// Holds partition p's record back `delays[p]` ms, to vary the order map tasks finish in.
#[derive(Clone, Serialize, Deserialize)]
struct Delay(Vec<u64>);
impl MapFn for Delay {
    type In = (u8, GradMsg);
    type Out = (u8, GradMsg);
    fn call(&self, x: (u8, GradMsg)) -> (u8, GradMsg) {
        let p = x.1.partitions[0] as usize;
        std::thread::sleep(std::time::Duration::from_millis(self.0[p % self.0.len()]));
        x
    }
}
register_op!(map Delay);

/// Partition p's message: a one-hot gradient e_p, so a sum shows who arrived and how often.
fn one_hot(p: usize, n: usize, group: u8) -> (u8, GradMsg) {
    let mut grad = vec![0f32; n];
    grad[p] = 1.0;
    let msg = GradMsg {
        partitions: vec![p as u32],
        group,
        images: 1,
        loss_sum: p as f64,
        correct: 0,
        errors: vec![0.5],
        grad,
    };
    (group, msg)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]
    #[test]
    fn the_leader_shuffle_delivers_each_gradient_once_to_its_group(
        groups in prop::collection::vec(0u8..2, 1..9),
        delays in prop::collection::vec(0u64..4, 8),
    ) {
        let ctx = Context::local(3).unwrap();
        let n = groups.len();
        let msgs: Vec<(u8, GradMsg)> = (0..n).map(|p| one_hot(p, n, groups[p])).collect();
        let sums = ctx
            .parallelize(msgs, n)
            .unwrap()
            .map(Delay(delays))
            .partition_by_leader(GroupPartitioner)
            .unwrap()
            .map_partitions(SumGroup)
            .collect()
            .unwrap();
        let present: std::collections::BTreeSet<u8> = groups.iter().copied().collect();
        prop_assert_eq!(sums.len(), present.len(), "one message per non-empty group");
        for s in &sums {
            let members: Vec<u32> = (0..n as u32).filter(|&p| groups[p as usize] == s.group).collect();
            prop_assert_eq!(&s.partitions, &members, "in partition order");
            for p in 0..n {
                let want = if groups[p] == s.group { 1.0 } else { 0.0 };
                prop_assert_eq!(s.grad[p], want);
            }
            prop_assert_eq!(s.images, members.len() as u64);
        }
    }
}

fn synthetic_shards(ctx: &Context, dir: &std::path::Path, n: usize, parts: usize) -> Vec<Shard> {
    ctx.parallelize(shard_specs(dir, SplitName::Train, 0, n, parts), parts)
        .unwrap()
        .map(LoadShard)
        .collect()
        .unwrap()
}

#[test]
fn shards_hold_their_own_records_in_order() {
    let dir = tempfile::tempdir().unwrap();
    cifar::write_synthetic_folder(dir.path(), 7, 3, 1).unwrap();
    let all = cifar::load(dir.path(), Split::Train).unwrap();
    let ctx = Context::local(2).unwrap();
    let shards = synthetic_shards(&ctx, dir.path(), 33, 4);
    let sizes: Vec<usize> = shards.iter().map(|s| s.images.len()).collect();
    assert_eq!(sizes, [8, 8, 8, 9]);
    let mut joined = Vec::new();
    for s in &shards {
        joined.extend_from_slice(&s.images.labels);
    }
    assert_eq!(joined, all.labels[..33]);
    assert_eq!(shards[3].images.image(0), all.image(24));
}

#[test]
fn mean_over_n_partitions_is_one_step_on_the_union_of_their_batches() {
    let dir = tempfile::tempdir().unwrap();
    cifar::write_synthetic_folder(dir.path(), 16, 4, 2).unwrap();
    let ctx = Context::local(2).unwrap();
    let (n, b) = (4, 6);
    let shards = synthetic_shards(&ctx, dir.path(), 80, n);
    let net = network(PAPER);
    let params = net.init_params_with(WeightInit::Uniform, 5);
    let norm = Normalization::of(&cifar::load(dir.path(), Split::Train).unwrap());
    let weights = ctx
        .broadcast(Weights {
            spec: PAPER.into(),
            params: params.clone(),
            norm,
        })
        .unwrap();
    let op = Gradient {
        weights,
        epoch: 1,
        iteration: 2,
        batch: b,
        loss: Loss::CrossEntropy,
        seed: 9,
        threshold: 0.8,
    };
    let msgs: Vec<GradMsg> = shards.iter().map(|s| op.call(s.clone()).1).collect();
    let update = combine(Aggregation::Mean, [0.55, 0.45], n, msgs.clone()).unwrap();

    // The same images as one batch of N·b, in partition order.
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for s in &shards {
        let idx = batch_indices(9, 1, s.partition, 2, b, s.images.len());
        let (xs, ls) = data::batch(&s.images, &idx, &norm, None);
        x.extend(xs);
        labels.extend(ls);
    }
    let mut big = vec![0f32; net.param_len()];
    let st = net.gradient(&params, &x, &labels, Loss::CrossEntropy, 9, &[0], &mut big);
    let scale = big.iter().fold(0f32, |m, g| m.max(g.abs()));
    for (a, e) in update.grad.iter().zip(&big) {
        assert!((a - e).abs() <= 1e-5 * scale.max(1.0), "{a} vs {e}");
    }
    assert_eq!(update.images, (n * b) as u64);
    assert!((update.loss_sum / update.images as f64 - st.loss).abs() < 1e-5);

    // `dis`: each group's sum weighted by its group weight, over N.
    let dis = combine(Aggregation::Dis, [0.55, 0.45], n, msgs.clone()).unwrap();
    let mut want = vec![0f64; net.param_len()];
    for m in &msgs {
        let w = if m.group == 0 { 0.55 } else { 0.45 } / n as f64;
        for (acc, g) in want.iter_mut().zip(&m.grad) {
            *acc += w * f64::from(*g);
        }
    }
    for (d, w) in dis.grad.iter().zip(&want) {
        assert!((f64::from(*d) - w).abs() <= 1e-6 * f64::from(scale).max(1.0));
    }
    let low = msgs.iter().filter(|m| m.group == 0).count() as u64;
    assert_eq!(dis.group_sizes, [low, n as u64 - low]);
}
