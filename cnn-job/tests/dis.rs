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
            for (g, got) in groups.iter().zip(&s.grad) {
                let want = if *g == s.group { 1.0 } else { 0.0 };
                prop_assert_eq!(*got, want);
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

mod init_and_prune {
    use super::*;
    use discnn_cnn::dis::init::{initialize, kmeans, InitMethod, Patch};
    use discnn_cnn::dis::prune::{apply, decide, SimilarityStats};
    use discnn_cnn::network::Network;
    use discnn_cnn::spec::NetSpec;

    #[test]
    fn kmeans_finds_separated_clusters() {
        let ctx = Context::local(2).unwrap();
        let truth = [[-5.0f32, 0.0], [0.0, 4.0], [6.0, 6.0]];
        let mut rng = rng_for(3);
        let patches: Vec<Patch> = (0..300)
            .map(|i| {
                let c = truth[i % 3];
                let values: Vec<f32> = c.iter().map(|v| v + rng.gen_range(-0.5..0.5)).collect();
                Patch {
                    id: (0, i as u32),
                    mean: values.iter().sum::<f32>() / 2.0,
                    values,
                }
            })
            .collect();
        let rdd = ctx.parallelize(patches, 3).unwrap();
        let (mut centres, _) = kmeans(&ctx, &rdd, 3, 20).unwrap();
        centres.sort_by(|a, b| a[0].total_cmp(&b[0]));
        for (c, t) in centres.iter().zip(&truth) {
            assert!(
                (c[0] - t[0]).abs() < 0.2 && (c[1] - t[1]).abs() < 0.2,
                "{centres:?}"
            );
        }
    }

    fn rng_for(seed: u64) -> rand_chacha::ChaCha8Rng {
        rand::SeedableRng::seed_from_u64(seed)
    }
    use rand::Rng;

    #[test]
    fn dis_init_keeps_the_random_periphery_and_puts_centres_of_the_same_scale_inside() {
        let dir = tempfile::tempdir().unwrap();
        cifar::write_synthetic_folder(dir.path(), 20, 4, 8).unwrap();
        let ctx = Context::local(2).unwrap();
        let shards = ctx
            .parallelize(shard_specs(dir.path(), SplitName::Train, 0, 100, 2), 2)
            .unwrap()
            .map(LoadShard);
        shards.cache();
        let net = Network::new(NetSpec::paper()).unwrap();
        let base = Weights {
            spec: PAPER.into(),
            params: Vec::new(),
            norm: Normalization {
                mean: [0.5; 3],
                std: [0.29; 3],
            },
        };
        let he = net.init_params_with(WeightInit::He, 4);
        let (dis, report) = initialize(&ctx, &net, &shards, base, InitMethod::Dis, 4).unwrap();
        assert_eq!(report.layers.len(), 3, "every conv layer");
        for (layer, c_in, out) in [(0usize, 3usize, 8usize), (3, 8, 16), (6, 16, 14)] {
            let r = net.layer_range(layer);
            let (mut inner, mut outer) = (Vec::new(), Vec::new());
            for i in 0..out * c_in * 25 {
                let (ky, kx) = ((i / 5) % 5, i % 5);
                let (a, b) = (dis[r.start + i], he[r.start + i]);
                if (1..4).contains(&ky) && (1..4).contains(&kx) {
                    inner.push(f64::from(a));
                } else {
                    assert_eq!(a, b, "the periphery stays random");
                    outer.push(f64::from(a));
                }
            }
            let sd = |v: &[f64]| {
                let m = v.iter().sum::<f64>() / v.len() as f64;
                (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
            };
            let (si, so) = (sd(&inner), sd(&outer));
            assert!(
                (si / so - 1.0).abs() < 0.15,
                "layer {layer}: inner {si} outer {so}"
            );
            assert_ne!(&dis[r.clone()], &he[r], "layer {layer}: centres inside");
        }
    }

    /// A tanh net whose conv1 map 1 duplicates map 0 and map 3 is −1× map 2.
    fn net_with_redundant_maps() -> (Network, Vec<f32>) {
        let spec = "conv5x4,tanh,maxpool2,conv5x3,relu,maxpool2,dense10";
        let net = Network::new(NetSpec::parse([3, 32, 32], spec).unwrap()).unwrap();
        let mut p = net.init_params_with(WeightInit::He, 6);
        let r = net.layer_range(0);
        let k = 3 * 25;
        let (w, b) = p[r].split_at_mut(4 * k);
        let (m0, m2) = (w[..k].to_vec(), w[2 * k..3 * k].to_vec());
        w[k..2 * k].copy_from_slice(&m0);
        w[3 * k..].iter_mut().zip(&m2).for_each(|(d, s)| *d = -s);
        b[0] = 0.1;
        b[1] = 0.1;
        b[2] = 0.2;
        b[3] = -0.2;
        (net, p)
    }

    #[test]
    fn a_duplicate_and_a_negated_map_are_pruned_and_distinct_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        cifar::write_synthetic_folder(dir.path(), 12, 4, 9).unwrap();
        let ctx = Context::local(2).unwrap();
        let shards = synthetic_shards(&ctx, dir.path(), 60, 2);
        let (net, params) = net_with_redundant_maps();
        let spec = net.spec().to_string();
        let weights = ctx
            .broadcast(Weights {
                spec,
                params: params.clone(),
                norm: Normalization {
                    mean: [0.5; 3],
                    std: [0.29; 3],
                },
            })
            .unwrap();
        let op = SimilarityStats {
            weights,
            images: 30,
            seed: 1,
        };
        let stats = shards.iter().map(|s| op.call(s.clone())).fold(
            Default::default(),
            |a: discnn_cnn::dis::prune::MapStats, s| a.merge(&s),
        );
        let kept = decide(&stats, 0.05);
        assert_eq!(kept[0].len(), 2, "{kept:?}");
        assert!(kept[0].iter().any(|&m| m < 2) && kept[0].iter().any(|&m| m >= 2));
        assert_eq!(kept[1], [0, 1, 2], "distinct maps stay");
        // A = 0 prunes nothing.
        assert_eq!(decide(&stats, 0.0)[0], [0, 1, 2, 3]);
    }

    #[test]
    fn a_pruned_net_computes_what_the_kept_maps_did_and_gradient_checks() {
        let (net, mut params) = net_with_redundant_maps();
        // Zero conv2's weights on the maps that go, so old and new nets must agree exactly.
        let kept = vec![vec![0, 2], vec![0, 1, 2]];
        let r2 = net.layer_range(3);
        for o in 0..3 {
            for c in [1usize, 3] {
                let at = r2.start + (o * 4 + c) * 25;
                params[at..at + 25].fill(0.0);
            }
        }
        let velocity: Vec<f32> = (0..params.len()).map(|i| i as f32).collect();
        let (spec, sliced) = apply(&net, &kept, &[&params, &velocity]).unwrap();
        assert_eq!(
            spec.to_string(),
            "conv5x2,tanh,maxpool2,conv5x3,relu,maxpool2,dense10"
        );
        let small = Network::new(spec).unwrap();
        assert_eq!(sliced[0].len(), small.param_len());
        assert_eq!(sliced[1].len(), small.param_len());
        // Momentum moves with its parameter: conv1 map 2's first weight.
        assert_eq!(sliced[1][75], (2 * 75) as f32);

        let mut rng = rng_for(5);
        let x: Vec<f32> = (0..4 * 3072).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (a, b) = (net.logits(&params, &x), small.logits(&sliced[0], &x));
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5, "{p} vs {q}");
        }

        // Gradient check of the pruned net on a few parameters.
        let labels = [1u8, 4, 7, 9];
        let p0 = sliced[0].clone();
        let mut g = vec![0f32; p0.len()];
        small.gradient(&p0, &x, &labels, Loss::CrossEntropy, 0, &[0], &mut g);
        let loss = |p: &[f32]| {
            let mut scratch = vec![0f32; p.len()];
            small
                .gradient(p, &x, &labels, Loss::CrossEntropy, 0, &[0], &mut scratch)
                .loss
        };
        for i in (0..p0.len()).step_by(p0.len() / 12) {
            let eps = 5e-4f32;
            let (mut up, mut down) = (p0.clone(), p0.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * f64::from(eps));
            let analytic = f64::from(g[i]);
            assert!(
                (numeric - analytic).abs() <= 5e-2 * analytic.abs() + 2e-3,
                "param {i}: numeric {numeric} analytic {analytic}"
            );
        }
    }
}
