//! `driver bench cnn-train`: training and inference throughput of a network (the paper's by
//! default) on CIFAR-shaped random data, as PyTorch's peer script measures it.

use anyhow::Context as _;
use discnn_cnn::layers::Loss;
use discnn_cnn::network::Network;
use discnn_cnn::optim::Sgd;
use discnn_cnn::spec::NetSpec;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    pub batch: usize,
    pub threads: usize,
    pub reps: usize,
    /// Images per timed repetition (rounded up to whole batches).
    pub images: usize,
    pub spec: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub train_img_per_s: f64,
    pub infer_img_per_s: f64,
    /// Training GFLOP/s at the median rate.
    pub gflops: f64,
    pub params: usize,
    pub flop_per_img: u64,
    pub infer_flop_per_img: u64,
    pub batch: usize,
    pub threads: usize,
    pub reps: usize,
    pub spec: String,
    /// The convolution kernels that ran (avx512, avx2, portable).
    pub kernels: String,
    pub train_samples: Vec<f64>,
    pub infer_samples: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

pub fn run(o: &Options) -> anyhow::Result<Report> {
    let spec = NetSpec::parse([3, 32, 32], &o.spec).context("--spec")?;
    let net = Network::new(spec)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(o.threads)
        .build()
        .context("a thread pool")?;
    let batches = o.images.div_ceil(o.batch).max(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    // A few distinct batches, so the timed loop does not run on one cached input.
    let inputs: Vec<(Vec<f32>, Vec<u8>)> = (0..4)
        .map(|_| {
            let x = (0..o.batch * net.input_len())
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect();
            let y = (0..o.batch).map(|_| rng.gen_range(0..10u8)).collect();
            (x, y)
        })
        .collect();
    let mut params = net.init_params(1);
    let mut grads = vec![0f32; net.param_len()];
    let mut sgd = Sgd::new(net.param_len(), 0.9, 0.0);
    let mut train = |steps: usize| {
        let t = Instant::now();
        for s in 0..steps {
            let (x, y) = &inputs[s % inputs.len()];
            net.gradient(
                &params,
                x,
                y,
                Loss::CrossEntropy,
                0,
                &[s as u64],
                &mut grads,
            );
            sgd.step(&mut params, &grads, 0.01);
        }
        (steps * o.batch) as f64 / t.elapsed().as_secs_f64()
    };
    let train_samples = pool.install(|| {
        train(batches.div_ceil(4));
        (0..o.reps).map(|_| train(batches)).collect::<Vec<f64>>()
    });
    let infer = |steps: usize| {
        let t = Instant::now();
        for s in 0..steps {
            std::hint::black_box(net.logits(&params, &inputs[s % inputs.len()].0));
        }
        (steps * o.batch) as f64 / t.elapsed().as_secs_f64()
    };
    let infer_samples = pool.install(|| {
        infer(batches.div_ceil(4));
        (0..o.reps).map(|_| infer(batches)).collect::<Vec<f64>>()
    });
    let (fwd, step) = net.flop_per_image();
    let train_img_per_s = median(&train_samples);
    Ok(Report {
        train_img_per_s,
        infer_img_per_s: median(&infer_samples),
        gflops: train_img_per_s * step as f64 / 1e9,
        params: net.param_len(),
        flop_per_img: step,
        infer_flop_per_img: fwd,
        batch: o.batch,
        threads: o.threads,
        reps: o.reps,
        spec: o.spec.clone(),
        kernels: format!("{:?}", discnn_cnn::layers::conv_wide::simd()).to_lowercase(),
        train_samples,
        infer_samples,
    })
}
