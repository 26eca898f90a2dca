//! Dis-CNN's aggregation on the engine (local mode): the leader shuffle delivers every
//! gradient exactly once to its group, whatever the split and finish order; `mean` over N
//! partitions equals one step on the union of their mini-batches; shards load what they should.

use discnn_cnn::cifar::{self, Split};
use discnn_cnn::data::{self, Normalization};
use discnn_cnn::dis::aggregation::{
    batch_indices, combine, GradMsg, Gradient, GroupPartitioner, SumGroup,
};
use discnn_cnn::dis::shards::{network, shard_specs, LoadShard, Shard, SplitName, Weights};
use discnn_cnn::dis::{Aggregation, DisDivisor};
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
        augment: data::Augment::NONE,
    };
    let msgs: Vec<GradMsg> = shards.iter().map(|s| op.call(s.clone()).1).collect();
    let update = combine(
        Aggregation::Mean,
        [0.55, 0.45],
        DisDivisor::N,
        n,
        msgs.clone(),
    )
    .unwrap();

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
    let dis = combine(
        Aggregation::Dis,
        [0.55, 0.45],
        DisDivisor::N,
        n,
        msgs.clone(),
    )
    .unwrap();
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

    // `--dis-divisor weights`: over 0.55·n_low + 0.45·n_high instead.
    let weighted = combine(
        Aggregation::Dis,
        [0.55, 0.45],
        DisDivisor::Weights,
        n,
        msgs.clone(),
    )
    .unwrap();
    let d = 0.55 * low as f64 + 0.45 * (n as u64 - low) as f64;
    for (w, x) in weighted.grad.iter().zip(&want) {
        let expect = x * n as f64 / d;
        assert!((f64::from(*w) - expect).abs() <= 1e-6 * f64::from(scale).max(1.0));
    }
}

#[test]
fn the_weighted_divisor_is_the_plain_mean_when_every_partition_is_in_one_group() {
    let n = 5;
    for group in [0u8, 1] {
        let msgs: Vec<GradMsg> = (0..n)
            .map(|p| {
                let mut m = one_hot(p, n, group).1;
                m.grad.iter_mut().for_each(|g| *g *= (p + 1) as f32);
                m
            })
            .collect();
        let mean = combine(
            Aggregation::Mean,
            [0.55, 0.45],
            DisDivisor::N,
            n,
            msgs.clone(),
        );
        let dis = combine(Aggregation::Dis, [0.55, 0.45], DisDivisor::Weights, n, msgs);
        let (mean, dis) = (mean.unwrap(), dis.unwrap());
        for (a, b) in mean.grad.iter().zip(&dis.grad) {
            assert!((a - b).abs() < 1e-6, "group {group}: {a} vs {b}");
        }
        // And not the ÷ N step, which is 0.55 or 0.45 of it.
        assert!((dis.grad[4] - 1.0).abs() < 1e-6, "{:?}", dis.grad);
    }
}

mod init_and_prune {
    use super::*;
    use discnn_cnn::dis::init::{initialize, kmeans, InitBias, InitMethod, InitOptions, Patch};
    use discnn_cnn::dis::prune::{apply, decide, LayerStats, MapStats, SimilarityStats};
    use discnn_cnn::dis::response::Sampler;
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

    /// The conv layers' pre-activation (mean, RMS) of `params` on `shards`, on the sample named
    /// `key`.
    fn conv_moments(
        ctx: &Context,
        shards: &discnn_engine::Rdd<Shard>,
        base: &Weights,
        params: &[f32],
        key: u64,
    ) -> Vec<(f64, f64)> {
        let sampler = Sampler {
            ctx,
            shards,
            base: base.clone(),
            per_shard: 200,
            seed: 1,
            key,
        };
        let m = sampler.moments(params).unwrap();
        [0usize, 3, 6]
            .iter()
            .map(|&l| m.of_layer(l).unwrap().layer())
            .collect()
    }

    /// The test: under `dis` and `kmeans` every conv layer responds like He's on images
    /// the rescale never saw, for 5 seeds; the kernels keep their structure (random periphery,
    /// k-means centre) and only their scale moves.
    #[test]
    fn dis_and_kmeans_respond_like_he_on_held_out_images_and_keep_their_structure() {
        let dir = tempfile::tempdir().unwrap();
        cifar::write_patterned_folder(dir.path(), 200, 10, 8).unwrap();
        let ctx = Context::local(2).unwrap();
        let load = |offset, n| {
            let rdd = ctx
                .parallelize(shard_specs(dir.path(), SplitName::Train, offset, n, 2), 2)
                .unwrap()
                .map(LoadShard);
            rdd.cache();
            rdd
        };
        // The rescale samples 512 of the first 600; the check reads the other 400.
        let (train, held_out) = (load(0, 600), load(600, 400));
        let net = Network::new(NetSpec::paper()).unwrap();
        let all = cifar::load(dir.path(), Split::Train).unwrap();
        let base = Weights {
            spec: PAPER.into(),
            params: Vec::new(),
            norm: Normalization::of(&all),
        };
        for seed in 0..5 {
            let he = initialize(
                &ctx,
                &net,
                &train,
                base.clone(),
                opts(InitMethod::Random, seed),
            )
            .unwrap()
            .0;
            let want = conv_moments(&ctx, &held_out, &base, &he, 5);
            for method in [InitMethod::Dis, InitMethod::Kmeans] {
                let (p, report) =
                    initialize(&ctx, &net, &train, base.clone(), opts(method, seed)).unwrap();
                let got = conv_moments(&ctx, &held_out, &base, &p, 5);
                for (l, ((_, g), (_, w))) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g / w - 1.0).abs() <= 0.15,
                        "seed {seed} {method:?} conv{}: RMS {g} against He's {w}\n{report:?}",
                        l + 1
                    );
                }
                // Every kernel of a layer is its structured self times one positive factor.
                for (layer, c_in, out) in [(0usize, 3usize, 8usize), (3, 8, 16), (6, 16, 14)] {
                    let r = net.layer_range(layer);
                    let fan_in = c_in * 25;
                    for k in 0..out {
                        let row = r.start + k * fan_in;
                        let (pk, hk) = (&p[row..row + fan_in], &he[row..row + fan_in]);
                        let periphery: Vec<usize> = (0..fan_in)
                            .filter(|i| {
                                let (y, x) = ((i / 5) % 5, i % 5);
                                !((1..4).contains(&y) && (1..4).contains(&x))
                            })
                            .collect();
                        // kmeans: conv1 is all centre; the other layers all He, scaled.
                        let kmeans_centre = method == InitMethod::Kmeans && layer == 0;
                        if kmeans_centre {
                            continue;
                        }
                        let factor = pk[periphery[0]] / hk[periphery[0]];
                        assert!(factor > 0.0, "a positive scale");
                        let same = |i: usize| {
                            (pk[i] - factor * hk[i]).abs() <= 1e-4 * hk[i].abs().max(1e-3)
                        };
                        assert!(
                            periphery.iter().all(|&i| same(i)),
                            "{method:?} layer {layer} kernel {k}: the periphery is He's, scaled"
                        );
                        if method == InitMethod::Kmeans {
                            assert!((0..fan_in).all(same), "layer {layer}: He, scaled");
                        }
                    }
                    if method == InitMethod::Dis {
                        assert_ne!(&p[r.clone()], &he[r], "layer {layer}: centres inside");
                    }
                }
            }
        }
    }

    fn opts(method: InitMethod, seed: u64) -> InitOptions {
        InitOptions {
            method,
            bias: InitBias::Zero,
            seed,
            sample_images: InitOptions::SAMPLE_IMAGES,
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

    /// 1×1 maps (the paper's conv3) after a ReLU: two independent ones co-activate on many
    /// images, which a per-image cosine took for |cos| = 1; a correlation across the sample
    /// keeps them, and still prunes an identical copy.
    #[test]
    fn identical_maps_are_pruned_and_independent_one_by_one_maps_are_not() {
        let mut rng = rng_for(11);
        let mut st = LayerStats::new(3);
        for _ in 0..500 {
            let u = rng.gen_range(-0.3f32..1.0).max(0.0);
            let v = rng.gen_range(-0.3f32..1.0).max(0.0);
            st.add_image(&[u, u, v]);
        }
        let stats = MapStats { layers: vec![st] };
        let kept = decide(&stats, 0.25);
        assert_eq!(kept[0].len(), 2, "{kept:?}");
        assert!(kept[0].contains(&2), "the independent map stays: {kept:?}");
        // Even at A = 0.9 (|cos| > 0.1) independent maps are not alike.
        assert!(decide(&stats, 0.9)[0].contains(&2));
        // A map that never varies is like nothing.
        let mut st = LayerStats::new(2);
        for _ in 0..50 {
            st.add_image(&[0.0, rng.gen_range(0.0..1.0)]);
        }
        assert_eq!(decide(&MapStats { layers: vec![st] }, 0.5)[0], [0, 1]);
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
