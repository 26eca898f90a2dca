//! The wide kernels in 8-float AVX2 vectors, for CPUs without AVX-512F. The layout is the
//! AVX-512 one (16-float logical vectors, blocks of 8 output channels); with 16 registers
//! the kernels take each block in two halves of 4 channels × 2 vectors (8 accumulators, 2
//! data vectors, 1 broadcast). Forward and input-gradient terms are added in the same order
//! as the AVX-512 kernels, with the same fused multiply-adds.

use super::{Geo, CB, L};
use std::arch::x86_64::*;

/// Channels per half block.
const H: usize = CB / 2;
/// Floats per AVX2 vector.
const V: usize = 8;

/// As `avx512::forward`.
///
/// # Safety
/// AVX2 and FMA must be available. `wt` holds `coutp·taps` floats, `yw` `coutp·nj·16`, every
/// `off[r] + nj·16 ≤ xp.len()`: the caller asserts all three; every load and store below is
/// within one 16-float logical vector `jv < nj` of those bounds.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn forward(g: &Geo, wt: &[f32], xp: &[f32], off: &[usize], yw: &mut [f32]) {
    let (xp, wt, yw) = (xp.as_ptr(), wt.as_ptr(), yw.as_mut_ptr());
    for b in 0..g.coutp / CB {
        let wb = wt.add(b * g.taps * CB);
        for half in 0..2 {
            for jv in 0..g.nj {
                let mut acc = [[_mm256_setzero_ps(); 2]; H];
                for (r, &o) in off.iter().enumerate() {
                    let x0 = _mm256_loadu_ps(xp.add(o + jv * L));
                    let x1 = _mm256_loadu_ps(xp.add(o + jv * L + V));
                    let wr = wb.add(r * CB + half * H);
                    for (c, a) in acc.iter_mut().enumerate() {
                        let w = _mm256_broadcast_ss(&*wr.add(c));
                        a[0] = _mm256_fmadd_ps(w, x0, a[0]);
                        a[1] = _mm256_fmadd_ps(w, x1, a[1]);
                    }
                }
                for (c, a) in acc.iter().enumerate() {
                    let dst = yw.add((b * CB + half * H + c) * g.nj * L + jv * L);
                    _mm256_storeu_ps(dst, a[0]);
                    _mm256_storeu_ps(dst.add(V), a[1]);
                }
            }
        }
    }
}

/// The sum of a vector's 8 lanes.
#[target_feature(enable = "avx2,fma")]
unsafe fn sum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// As `avx512::weight_grad`: `dw[co][r] += Σ_j dyp[co][front + j] · xp[off[r] + j]`.
///
/// # Safety
/// AVX2 and FMA must be available; `dyp` holds `coutp·s` floats with `front + nj·16 ≤ s`,
/// `off[r] + nj·16 ≤ xp.len()` and `dw` holds `cout·taps`: asserted by the caller.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn weight_grad(
    g: &Geo,
    cout: usize,
    dyp: &[f32],
    xp: &[f32],
    off: &[usize],
    dw: &mut [f32],
) {
    let (xp, dyp) = (xp.as_ptr(), dyp.as_ptr());
    let taps = off.len();
    for b in 0..g.coutp / CB {
        for half in 0..2 {
            for r in (0..taps).step_by(2) {
                let r1 = (r + 1).min(taps - 1);
                let (o0, o1) = (off[r], off[r1]);
                let mut acc = [[_mm256_setzero_ps(); 2]; H];
                for jv in 0..g.nj * 2 {
                    let x0 = _mm256_loadu_ps(xp.add(o0 + jv * V));
                    let x1 = _mm256_loadu_ps(xp.add(o1 + jv * V));
                    for (c, a) in acc.iter_mut().enumerate() {
                        let row = (b * CB + half * H + c) * g.s + g.front;
                        let d = _mm256_loadu_ps(dyp.add(row + jv * V));
                        a[0] = _mm256_fmadd_ps(d, x0, a[0]);
                        a[1] = _mm256_fmadd_ps(d, x1, a[1]);
                    }
                }
                for (c, a) in acc.iter().enumerate() {
                    let co = b * CB + half * H + c;
                    if co < cout {
                        dw[co * taps + r] += sum(a[0]);
                        if r1 != r {
                            dw[co * taps + r1] += sum(a[1]);
                        }
                    }
                }
            }
        }
    }
}

/// As `avx512::input_grad`.
///
/// # Safety
/// AVX2 and FMA must be available; `w2` holds `cout·k·k·cinp` floats, `dyp` `cout·s` with
/// `front + np·16 ≤ s`, `dxp` `cinp·np·16`: asserted by the caller. The read offset
/// `front − ky·wp − kx` is never negative because `front = (k−1)·wp + (k−1)`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn input_grad(g: &Geo, cout: usize, k: usize, w2: &[f32], dyp: &[f32], dxp: &mut [f32]) {
    let (w2, dyp, dxp) = (w2.as_ptr(), dyp.as_ptr(), dxp.as_mut_ptr());
    for b in 0..g.cinp / CB {
        for half in 0..2 {
            for pv in 0..g.np {
                let mut acc = [[_mm256_setzero_ps(); 2]; H];
                for co in 0..cout {
                    for ky in 0..k {
                        for kx in 0..k {
                            let src = dyp.add(co * g.s + g.front - ky * g.wp - kx + pv * L);
                            let d0 = _mm256_loadu_ps(src);
                            let d1 = _mm256_loadu_ps(src.add(V));
                            let wr = w2.add(((co * k + ky) * k + kx) * g.cinp + b * CB + half * H);
                            for (c, a) in acc.iter_mut().enumerate() {
                                let w = _mm256_broadcast_ss(&*wr.add(c));
                                a[0] = _mm256_fmadd_ps(w, d0, a[0]);
                                a[1] = _mm256_fmadd_ps(w, d1, a[1]);
                            }
                        }
                    }
                }
                for (c, a) in acc.iter().enumerate() {
                    let dst = dxp.add((b * CB + half * H + c) * g.np * L + pv * L);
                    _mm256_storeu_ps(dst, a[0]);
                    _mm256_storeu_ps(dst.add(V), a[1]);
                }
            }
        }
    }
}
