//! Gradient checks: every layer's f32 backward pass against central finite differences of an
//! independent, naive f64 reference of its forward pass, on random shapes including odd ones.
//!
//! Tolerance: for every entry, |analytic − numeric| ≤ 1e-3 · max(|analytic|, |numeric|, s),
//! where s = 1e-2 · the largest |numeric| of that gradient (entries near zero are compared at
//! the gradient's own scale, where f32 rounding of long sums is otherwise all there is).

use discnn_cnn::layers::conv_wide::{force_avx2, force_portable};
use discnn_cnn::layers::{loss, Layer, LayerCache, Loss};
use discnn_cnn::network::Network;
use discnn_cnn::spec::{LayerSpec, NetSpec, Padding};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const H: f64 = 1e-5;

/// Runs `f` on every convolution path this CPU has: AVX-512 (where it is), AVX2 (where it
/// is) and the portable im2col + GEMM path; the lock keeps the global switch from changing
/// under another test.
fn on_every_path(f: impl Fn()) {
    static_guard(|| {
        f();
        force_avx2(true);
        f();
        force_portable(true);
        f();
        force_portable(false);
    })
}

/// Holds the lock on the global kernel switch while `f` runs.
fn static_guard(f: impl FnOnce()) {
    static PATH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = PATH.lock().unwrap_or_else(|e| e.into_inner());
    f()
}

fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            // Away from zero, so ReLU's kink is never inside a finite-difference step.
            let v: f64 = rng.gen_range(0.05..1.0);
            if rng.gen() {
                v
            } else {
                -v
            }
        })
        .collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The reference forward pass of one layer in f64, written for clarity, not speed.
fn reference(spec: &LayerSpec, input: [usize; 3], n: usize, p: &[f64], x: &[f64]) -> Vec<f64> {
    let [c, h, w] = input;
    match *spec {
        LayerSpec::Conv {
            kernel: k,
            out,
            padding,
        } => {
            let pad = if padding == Padding::Same { k / 2 } else { 0 };
            let (ho, wo) = (h + 2 * pad - k + 1, w + 2 * pad - k + 1);
            let mut y = vec![0.0; n * out * ho * wo];
            for i in 0..n {
                for co in 0..out {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let mut s = p[out * c * k * k + co];
                            for ci in 0..c {
                                for ky in 0..k {
                                    for kx in 0..k {
                                        let (iy, ix) = (oy + ky, ox + kx);
                                        if iy < pad || ix < pad || iy - pad >= h || ix - pad >= w {
                                            continue;
                                        }
                                        s += p[((co * c + ci) * k + ky) * k + kx]
                                            * x[((i * c + ci) * h + iy - pad) * w + ix - pad];
                                    }
                                }
                            }
                            y[((i * out + co) * ho + oy) * wo + ox] = s;
                        }
                    }
                }
            }
            y
        }
        LayerSpec::MaxPool { kernel: k, stride } | LayerSpec::AvgPool { kernel: k, stride } => {
            let (ho, wo) = ((h - k) / stride + 1, (w - k) / stride + 1);
            let max = matches!(spec, LayerSpec::MaxPool { .. });
            let mut y = Vec::new();
            for plane in x.chunks(h * w).take(n * c) {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let win = (0..k * k)
                            .map(|j| plane[(oy * stride + j / k) * w + ox * stride + j % k]);
                        y.push(if max {
                            win.fold(f64::NEG_INFINITY, f64::max)
                        } else {
                            win.sum::<f64>() / (k * k) as f64
                        });
                    }
                }
            }
            y
        }
        LayerSpec::Relu => x.iter().map(|v| v.max(0.0)).collect(),
        LayerSpec::Sigmoid => x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
        LayerSpec::Tanh => x.iter().map(|v| v.tanh()).collect(),
        LayerSpec::Dense { out } => {
            let inputs = c * h * w;
            let mut y = vec![0.0; n * out];
            for i in 0..n {
                for o in 0..out {
                    y[i * out + o] = p[out * inputs + o]
                        + (0..inputs)
                            .map(|j| p[o * inputs + j] * x[i * inputs + j])
                            .sum::<f64>();
                }
            }
            y
        }
        LayerSpec::Dropout { .. } => unreachable!("dropout is checked with its drawn mask"),
    }
}

fn close(what: &str, analytic: &[f32], numeric: &[f64]) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length");
    let scale = 1e-2 * numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        let a = f64::from(a);
        let denom = a.abs().max(n.abs()).max(scale).max(1e-12);
        let rel = (a - n).abs() / denom;
        assert!(
            rel <= 1e-3,
            "{what}[{i}]: analytic {a}, numeric {n}, relative error {rel}"
        );
    }
}

/// Central differences of `f` with respect to every entry of `v`.
fn numeric(v: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut v = v.to_vec();
    (0..v.len())
        .map(|i| {
            let keep = v[i];
            v[i] = keep + H;
            let up = f(&v);
            v[i] = keep - H;
            let down = f(&v);
            v[i] = keep;
            (up - down) / (2.0 * H)
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Checks the forward pass and both gradients of one layer through L = Σ r ⊙ layer(x).
fn check_layer(spec_text: &str, input: [usize; 3], n: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let net_spec = NetSpec {
        input,
        layers: vec![
            NetSpec::parse(input, &format!("{spec_text},dense1"))
                .unwrap()
                .layers[0],
        ],
    };
    let spec = net_spec.layers[0];
    let out = {
        let with_head = NetSpec::parse(input, &format!("{spec_text},dense1")).unwrap();
        with_head.shapes().unwrap()[0]
    };
    let layer = Layer::new(&spec, input, out);
    let in_len = n * input.iter().product::<usize>();
    let out_len = n * out.iter().product::<usize>();
    let p = rand_vec(&mut rng, layer.param_len());
    let x = rand_vec(&mut rng, in_len);
    let r = rand_vec(&mut rng, out_len);

    let mut cache = LayerCache::default();
    let mut y = vec![0f32; out_len];
    layer.forward(&f32s(&p), &f32s(&x), &mut y, n, &mut cache, None);
    let y_ref = reference(&spec, input, n, &p, &x);
    close(&format!("{spec_text} forward"), &y, &y_ref);

    let mut dx = vec![0f32; in_len];
    let mut dp = vec![0f32; layer.param_len()];
    let (pf, xf) = (f32s(&p), f32s(&x));
    layer.backward(
        &pf,
        &xf,
        &y,
        &f32s(&r),
        Some(&mut dx),
        &mut dp,
        n,
        &mut cache,
    );
    let nx = numeric(&x, |x| dot(&r, &reference(&spec, input, n, &p, x)));
    close(&format!("{spec_text} input gradient"), &dx, &nx);
    if !p.is_empty() {
        let np = numeric(&p, |p| dot(&r, &reference(&spec, input, n, p, &x)));
        close(&format!("{spec_text} parameter gradient"), &dp, &np);
    }
}

#[test]
fn conv_valid_and_same_on_odd_shapes() {
    on_every_path(|| {
        check_layer("conv5x3", [2, 7, 9], 3, 1);
        check_layer("conv3x4same", [3, 5, 6], 2, 2);
        check_layer("conv5x2same", [1, 7, 7], 1, 3);
        check_layer("conv1x3", [4, 3, 5], 2, 4);
        check_layer("conv3x1", [1, 3, 3], 5, 5);
        check_layer("conv3x9", [10, 4, 5], 2, 6);
    });
}

/// conv2d forward against the naive direct convolution, at the paper's first-layer shape and
/// a padded one, on both paths (the forward half of `check_layer`, at sizes too large for
/// finite differences).
#[test]
fn conv_forward_matches_naive_direct_convolution() {
    on_every_path(|| {
        for (text, input, n, seed) in [
            ("conv5x8", [3, 32, 32], 3, 7),
            ("conv5x16", [8, 14, 14], 2, 8),
            ("conv5x13same", [5, 11, 9], 2, 9),
        ] {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let spec = NetSpec::parse(input, &format!("{text},dense1")).unwrap();
            let out = spec.shapes().unwrap()[0];
            let layer = Layer::new(&spec.layers[0], input, out);
            let p = rand_vec(&mut rng, layer.param_len());
            let x = rand_vec(&mut rng, n * input.iter().product::<usize>());
            let mut y = vec![0f32; n * out.iter().product::<usize>()];
            let mut cache = LayerCache::default();
            layer.forward(&f32s(&p), &f32s(&x), &mut y, n, &mut cache, None);
            close(text, &y, &reference(&spec.layers[0], input, n, &p, &x));
        }
    });
}

#[test]
fn pools_two_by_two_and_three_stride_two() {
    check_layer("maxpool2", [3, 6, 8], 2, 10);
    check_layer("maxpool2", [2, 7, 5], 3, 11);
    check_layer("maxpool3s2", [2, 9, 7], 2, 12);
    check_layer("avgpool2", [3, 6, 7], 2, 13);
    check_layer("avgpool3s2", [2, 9, 11], 2, 14);
}

#[test]
fn activations() {
    check_layer("relu", [3, 5, 7], 2, 20);
    check_layer("sigmoid", [2, 3, 5], 3, 21);
    check_layer("tanh", [1, 7, 3], 2, 22);
}

#[test]
fn dense_on_flattened_input() {
    check_layer("dense7", [3, 2, 5], 3, 30);
    check_layer("dense1", [11, 1, 1], 4, 31);
}

#[test]
fn dropout_scales_kept_units_and_passes_their_gradient() {
    let layer = Layer::Dropout(0.4);
    let mut rng = ChaCha8Rng::seed_from_u64(40);
    let x = f32s(&rand_vec(&mut rng, 600));
    let mut y = vec![0f32; 600];
    let mut cache = LayerCache::default();
    layer.forward(&[], &x, &mut y, 2, &mut cache, Some(&mut rng));
    let kept = y.iter().filter(|v| **v != 0.0).count();
    assert!((300..420).contains(&kept), "kept {kept} of 600 at p = 0.4");
    let mask: Vec<f64> = y.iter().zip(&x).map(|(y, x)| f64::from(y / x)).collect();
    for m in &mask {
        assert!(*m == 0.0 || (m - 1.0 / 0.6).abs() < 1e-5);
    }
    let r = rand_vec(&mut rng, 600);
    let mut dx = vec![0f32; 600];
    layer.backward(
        &[],
        &x,
        &y,
        &f32s(&r),
        Some(&mut dx),
        &mut [],
        2,
        &mut cache,
    );
    let expected: Vec<f64> = r.iter().zip(&mask).map(|(r, m)| r * m).collect();
    close("dropout input gradient", &dx, &expected);
    let mut eval = vec![0f32; 600];
    layer.forward(&[], &x, &mut eval, 2, &mut cache, None);
    assert_eq!(eval, x);
}

fn reference_loss(kind: Loss, z: &[f64], labels: &[u8], classes: usize) -> f64 {
    let mut total = 0.0;
    for (row, &t) in z.chunks(classes).zip(labels) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        total += match kind {
            Loss::CrossEntropy => -(e[t as usize] / s).ln(),
            Loss::Squared => e
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    let d = v / s - if k == t as usize { 1.0 } else { 0.0 };
                    0.5 * d * d
                })
                .sum(),
        };
    }
    total / labels.len() as f64
}

#[test]
fn both_losses_on_the_softmax() {
    for (kind, classes, n, seed) in [
        (Loss::CrossEntropy, 10, 4, 50),
        (Loss::CrossEntropy, 3, 7, 51),
        (Loss::Squared, 10, 4, 52),
        (Loss::Squared, 5, 3, 53),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let z: Vec<f64> = rand_vec(&mut rng, n * classes)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let labels: Vec<u8> = (0..n).map(|_| rng.gen_range(0..classes as u8)).collect();
        let mut dz = vec![0f32; n * classes];
        let total =
            loss::forward_backward(kind, &f32s(&z), &labels, classes, 1.0 / n as f32, &mut dz).loss;
        let expected = reference_loss(kind, &z, &labels, classes);
        assert!((total / n as f64 - expected).abs() < 1e-5 * expected.max(1.0));
        let nz = numeric(&z, |z| reference_loss(kind, z, &labels, classes));
        close(&format!("{kind:?} gradient"), &dz, &nz);
    }
}

/// The whole network, several chunks of a minibatch, against the composed reference layers.
#[test]
fn whole_network_gradient_over_several_chunks() {
    on_every_path(whole_network);
}

fn whole_network() {
    let input = [3, 9, 9];
    let text = "conv3x4same,relu,maxpool2,conv3x5,tanh,avgpool2s1,dense7,sigmoid,dense3";
    for kind in [Loss::CrossEntropy, Loss::Squared] {
        let spec = NetSpec::parse(input, text).unwrap();
        let net = Network::new(spec.clone()).unwrap();
        let shapes = spec.shapes().unwrap();
        let n = 11; // two chunks, the second one short
        let mut rng = ChaCha8Rng::seed_from_u64(60);
        let p = rand_vec(&mut rng, net.param_len());
        let x = rand_vec(&mut rng, n * 243);
        let labels: Vec<u8> = (0..n).map(|_| rng.gen_range(0..3)).collect();
        let forward = |p: &[f64]| {
            let mut a = x.clone();
            let mut shape = input;
            for (i, l) in spec.layers.iter().enumerate() {
                a = reference(l, shape, n, &p[net.layer_range(i)], &a);
                shape = shapes[i];
            }
            reference_loss(kind, &a, &labels, 3)
        };
        let mut grads = vec![0f32; net.param_len()];
        let stats = net.gradient(&f32s(&p), &f32s(&x), &labels, kind, 0, &[0], &mut grads);
        assert!((stats.loss - forward(&p)).abs() < 1e-5);
        close(&format!("network {kind:?}"), &grads, &numeric(&p, forward));
    }
}

/// Where the CPU has AVX-512F, the AVX2 kernels' forward pass is bit-identical to it (same
/// terms in the same order, fused the same way); elsewhere there is one wide path to compare.
#[test]
fn avx2_forward_is_bit_identical_to_avx512() {
    use discnn_cnn::layers::conv_wide::{simd, Simd};
    static_guard(|| {
        if simd() != Simd::Avx512 {
            eprintln!("no AVX-512F here: nothing to compare the AVX2 kernels with");
            return;
        }
        let input = [5, 13, 11];
        let spec = NetSpec::parse(input, "conv5x13same,dense1").unwrap();
        let out = spec.shapes().unwrap()[0];
        let layer = Layer::new(&spec.layers[0], input, out);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let p = f32s(&rand_vec(&mut rng, layer.param_len()));
        let x = f32s(&rand_vec(&mut rng, 3 * input.iter().product::<usize>()));
        let run = || {
            let mut y = vec![0f32; 3 * out.iter().product::<usize>()];
            layer.forward(&p, &x, &mut y, 3, &mut LayerCache::default(), None);
            y
        };
        let wide = run();
        force_avx2(true);
        let narrow = run();
        force_avx2(false);
        assert!(wide
            .iter()
            .zip(&narrow)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    });
}
