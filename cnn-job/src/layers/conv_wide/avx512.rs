//! The wide kernels in 16-float AVX-512F vectors: register blocks of 8 output channels × 2
//! vectors (16 FMAs per 2 loads).

use super::{Geo, CB, L};
use std::arch::x86_64::*;

/// `yw[co][j] = Σ_r wt[co-block][r][c] · xp[off[r] + j]` for every (padded) channel and
/// output vector.
///
/// # Safety
/// AVX-512F must be available. `wt` holds `coutp·taps` floats, `yw` `coutp·nj·16`, every
/// `off[r] + nj·16 ≤ xp.len()`: the caller asserts all three, and every load and store
/// below stays inside those bounds (j + 32 ≤ nj·16 because nj is even).
#[target_feature(enable = "avx512f")]
pub unsafe fn forward(g: &Geo, wt: &[f32], xp: &[f32], off: &[usize], yw: &mut [f32]) {
    let (xp, wt, yw) = (xp.as_ptr(), wt.as_ptr(), yw.as_mut_ptr());
    for b in 0..g.coutp / CB {
        let wb = wt.add(b * g.taps * CB);
        for jv in (0..g.nj).step_by(2) {
            let mut acc = [[_mm512_setzero_ps(); 2]; CB];
            for (r, &o) in off.iter().enumerate() {
                let x0 = _mm512_loadu_ps(xp.add(o + jv * L));
                let x1 = _mm512_loadu_ps(xp.add(o + jv * L + L));
                let wr = wb.add(r * CB);
                for (c, a) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*wr.add(c));
                    a[0] = _mm512_fmadd_ps(w, x0, a[0]);
                    a[1] = _mm512_fmadd_ps(w, x1, a[1]);
                }
            }
            for (c, a) in acc.iter().enumerate() {
                let dst = yw.add((b * CB + c) * g.nj * L + jv * L);
                _mm512_storeu_ps(dst, a[0]);
                _mm512_storeu_ps(dst.add(L), a[1]);
            }
        }
    }
}

/// `dw[co][r] += Σ_j dyp[co][front + j] · xp[off[r] + j]` for the real channels.
///
/// # Safety
/// AVX-512F must be available; `dyp` holds `coutp·s` floats with `front + nj·16 ≤ s`,
/// `off[r] + nj·16 ≤ xp.len()` and `dw` holds `cout·taps`: asserted by the caller.
#[target_feature(enable = "avx512f")]
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
        for r in (0..taps).step_by(2) {
            let r1 = (r + 1).min(taps - 1);
            let (o0, o1) = (off[r], off[r1]);
            let mut acc = [[_mm512_setzero_ps(); 2]; CB];
            for jv in 0..g.nj {
                let x0 = _mm512_loadu_ps(xp.add(o0 + jv * L));
                let x1 = _mm512_loadu_ps(xp.add(o1 + jv * L));
                for (c, a) in acc.iter_mut().enumerate() {
                    let d = _mm512_loadu_ps(dyp.add((b * CB + c) * g.s + g.front + jv * L));
                    a[0] = _mm512_fmadd_ps(d, x0, a[0]);
                    a[1] = _mm512_fmadd_ps(d, x1, a[1]);
                }
            }
            for (c, a) in acc.iter().enumerate() {
                let co = b * CB + c;
                if co < cout {
                    dw[co * taps + r] += _mm512_reduce_add_ps(a[0]);
                    if r1 != r {
                        dw[co * taps + r1] += _mm512_reduce_add_ps(a[1]);
                    }
                }
            }
        }
    }
}

/// `dxp[ci][p] = Σ_{co,ky,kx} w2[(co,ky,kx)][ci] · dyp[co][front + p − ky·wp − kx]`.
///
/// # Safety
/// AVX-512F must be available; `w2` holds `cout·k·k·cinp` floats, `dyp` `cout·s` with
/// `front + np·16 ≤ s`, `dxp` `cinp·np·16`: asserted by the caller. The read offset
/// `front − ky·wp − kx` is never negative because `front = (k−1)·wp + (k−1)`.
#[target_feature(enable = "avx512f")]
pub unsafe fn input_grad(g: &Geo, cout: usize, k: usize, w2: &[f32], dyp: &[f32], dxp: &mut [f32]) {
    let (w2, dyp, dxp) = (w2.as_ptr(), dyp.as_ptr(), dxp.as_mut_ptr());
    for b in 0..g.cinp / CB {
        for pv in (0..g.np).step_by(2) {
            let mut acc = [[_mm512_setzero_ps(); 2]; CB];
            for co in 0..cout {
                for ky in 0..k {
                    for kx in 0..k {
                        let src = dyp.add(co * g.s + g.front - ky * g.wp - kx + pv * L);
                        let d0 = _mm512_loadu_ps(src);
                        let d1 = _mm512_loadu_ps(src.add(L));
                        let wr = w2.add(((co * k + ky) * k + kx) * g.cinp + b * CB);
                        for (c, a) in acc.iter_mut().enumerate() {
                            let w = _mm512_set1_ps(*wr.add(c));
                            a[0] = _mm512_fmadd_ps(w, d0, a[0]);
                            a[1] = _mm512_fmadd_ps(w, d1, a[1]);
                        }
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                let dst = dxp.add((b * CB + c) * g.np * L + pv * L);
                _mm512_storeu_ps(dst, a[0]);
                _mm512_storeu_ps(dst.add(L), a[1]);
            }
        }
    }
}
