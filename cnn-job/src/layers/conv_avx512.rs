//! Convolution without im2col on CPUs with AVX-512F: the "wide" direct formulation.
//!
//! Each input image is copied once, zero-padded, into a plane buffer of width `wp = w + 2·pad`.
//! Output pixel (oy, ox) then sits at flat position `j = oy·wp + ox`, and kernel tap
//! r = (ci, ky, kx) reads the input at `off(r) + j` with `off(r) = ci·hp·wp + ky·wp + kx`: every
//! tap is one contiguous run of the input, so the kernels stream it in 16-float vectors with no
//! column matrix and no packing. Positions with ox ≥ wo are computed and thrown away (forward)
//! or held at zero (backward). Register blocks of 8 output channels × 2 vectors give 16 FMAs per
//! 2 loads; every accumulator adds its terms in a fixed order, so results are deterministic.

use super::conv::Conv;
use std::sync::atomic::{AtomicBool, Ordering};

static PORTABLE: AtomicBool = AtomicBool::new(false);

/// Forces the portable im2col + GEMM path even where AVX-512F is present (tests use it to
/// check both paths on one machine).
pub fn force_portable(on: bool) {
    PORTABLE.store(on, Ordering::Relaxed);
}

pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !PORTABLE.load(Ordering::Relaxed) && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

const L: usize = 16;
const CB: usize = 8;

/// Buffers of one conv layer, reused across chunks and iterations.
#[derive(Debug, Default)]
pub struct Wide {
    xp: Vec<f32>,
    yw: Vec<f32>,
    wt: Vec<f32>,
    dyp: Vec<f32>,
    dxp: Vec<f32>,
    off: Vec<usize>,
}

/// The geometry of the wide layout for one layer.
#[derive(Clone, Copy)]
struct Geo {
    hp: usize,
    wp: usize,
    /// Taps: cin·k·k.
    taps: usize,
    /// Output channels rounded up to the register block.
    coutp: usize,
    cinp: usize,
    /// Output vectors per channel (even) and their stride.
    nj: usize,
    /// Input-plane vectors per channel (even), for the input gradient.
    np: usize,
    /// Length of the padded input buffer, tail included.
    xp_len: usize,
    /// Zeros in front of each output-gradient row, and the row stride.
    front: usize,
    s: usize,
}

fn even_vectors(n: usize) -> usize {
    n.div_ceil(L).next_multiple_of(2)
}

impl Geo {
    fn of(c: &Conv) -> Geo {
        let (hp, wp) = (c.h + 2 * c.pad, c.w + 2 * c.pad);
        let nj = even_vectors(c.ho * wp);
        let np = even_vectors(hp * wp).max(nj);
        let max_off = (c.cin - 1) * hp * wp + (c.k - 1) * wp + (c.k - 1);
        let front = (c.k - 1) * wp + (c.k - 1);
        Geo {
            hp,
            wp,
            taps: c.cin * c.k * c.k,
            coutp: c.cout.next_multiple_of(CB),
            cinp: c.cin.next_multiple_of(CB),
            nj,
            np,
            xp_len: (c.cin * hp * wp).max(max_off + nj * L),
            front,
            s: front + np * L,
        }
    }
}

impl Wide {
    /// Copies image `xi` into the padded plane buffer; the padding and the tail are zero.
    fn load_input(&mut self, c: &Conv, g: &Geo, xi: &[f32]) {
        self.xp.clear();
        self.xp.resize(g.xp_len, 0.0);
        for ci in 0..c.cin {
            for y in 0..c.h {
                let src = &xi[(ci * c.h + y) * c.w..(ci * c.h + y + 1) * c.w];
                let at = ci * g.hp * g.wp + (y + c.pad) * g.wp + c.pad;
                self.xp[at..at + c.w].copy_from_slice(src);
            }
        }
    }

    fn offsets(&mut self, c: &Conv, g: &Geo) {
        self.off.clear();
        for ci in 0..c.cin {
            for ky in 0..c.k {
                for kx in 0..c.k {
                    self.off.push(ci * g.hp * g.wp + ky * g.wp + kx);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernels {
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
    pub unsafe fn input_grad(
        g: &Geo,
        cout: usize,
        k: usize,
        w2: &[f32],
        dyp: &[f32],
        dxp: &mut [f32],
    ) {
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
}

impl Conv {
    /// The forward pass through the wide kernels; only call when [`available`] is true.
    pub(super) fn forward_wide(
        &self,
        p: &[f32],
        x: &[f32],
        y: &mut [f32],
        n: usize,
        ws: &mut Wide,
    ) {
        let g = Geo::of(self);
        let (weight, bias) = p.split_at(self.weight_len());
        ws.wt.clear();
        ws.wt.resize(g.coutp * g.taps, 0.0);
        for co in 0..self.cout {
            for r in 0..g.taps {
                ws.wt[(co / CB * g.taps + r) * CB + co % CB] = weight[co * g.taps + r];
            }
        }
        ws.offsets(self, &g);
        ws.yw.resize(g.coutp * g.nj * L, 0.0);
        let (in_len, hw) = (self.cin * self.h * self.w, self.ho * self.wo);
        // `load_input` always sizes the buffer to `g.xp_len`.
        assert!(ws.off.iter().all(|&o| o + g.nj * L <= g.xp_len));
        for i in 0..n {
            ws.load_input(self, &g, &x[i * in_len..(i + 1) * in_len]);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` (checked by the caller) detected AVX-512F; the sizes the
            // kernel needs are established by the resizes above and the assert.
            unsafe {
                kernels::forward(&g, &ws.wt, &ws.xp, &ws.off, &mut ws.yw)
            };
            let yi = &mut y[i * self.cout * hw..(i + 1) * self.cout * hw];
            for (co, plane) in yi.chunks_exact_mut(hw).enumerate() {
                let src = &ws.yw[co * g.nj * L..];
                for oy in 0..self.ho {
                    let row = &mut plane[oy * self.wo..(oy + 1) * self.wo];
                    let from = &src[oy * g.wp..oy * g.wp + self.wo];
                    row.iter_mut()
                        .zip(from)
                        .for_each(|(o, v)| *o = v + bias[co]);
                }
            }
        }
    }

    /// The backward pass through the wide kernels; only call when [`available`] is true.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_wide(
        &self,
        p: &[f32],
        x: &[f32],
        dy: &[f32],
        mut dx: Option<&mut [f32]>,
        dp: &mut [f32],
        n: usize,
        ws: &mut Wide,
    ) {
        let g = Geo::of(self);
        let (wl, k) = (self.weight_len(), self.k);
        let weight = &p[..wl];
        let (dw, db) = dp.split_at_mut(wl);
        ws.offsets(self, &g);
        if dx.is_some() {
            // w2[(co, ky, kx)][ci], input channels padded to the register block.
            ws.wt.clear();
            ws.wt.resize(self.cout * k * k * g.cinp, 0.0);
            for co in 0..self.cout {
                for ci in 0..self.cin {
                    for t in 0..k * k {
                        ws.wt[(co * k * k + t) * g.cinp + ci] =
                            weight[(co * self.cin + ci) * k * k + t];
                    }
                }
            }
        }
        ws.dyp.clear();
        ws.dyp.resize(g.coutp * g.s, 0.0);
        ws.dxp.resize(g.cinp * g.np * L, 0.0);
        let (in_len, hw) = (self.cin * self.h * self.w, self.ho * self.wo);
        assert!(ws.off.iter().all(|&o| o + g.nj * L <= g.xp_len));
        assert!(g.front + g.np * L <= g.s && dw.len() >= self.cout * g.taps);
        for i in 0..n {
            let dyi = &dy[i * self.cout * hw..(i + 1) * self.cout * hw];
            self.add_bias_grad(dyi, db);
            for (co, plane) in dyi.chunks_exact(hw).enumerate() {
                let row0 = co * g.s + g.front;
                for oy in 0..self.ho {
                    let at = row0 + oy * g.wp;
                    ws.dyp[at..at + self.wo]
                        .copy_from_slice(&plane[oy * self.wo..(oy + 1) * self.wo]);
                }
            }
            ws.load_input(self, &g, &x[i * in_len..(i + 1) * in_len]);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F was detected by the caller's `available()`; `dyp` and `dw` sizes
            // follow from the resize and split above, the rest from the asserts.
            unsafe {
                kernels::weight_grad(&g, self.cout, &ws.dyp, &ws.xp, &ws.off, dw)
            };
            if let Some(dx) = dx.as_deref_mut() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; `wt` was sized cout·k·k·cinp and `dxp` cinp·np·16.
                unsafe {
                    kernels::input_grad(&g, self.cout, k, &ws.wt, &ws.dyp, &mut ws.dxp)
                };
                let dxi = &mut dx[i * in_len..(i + 1) * in_len];
                for ci in 0..self.cin {
                    for y in 0..self.h {
                        let from = ci * g.np * L + (y + self.pad) * g.wp + self.pad;
                        dxi[(ci * self.h + y) * self.w..(ci * self.h + y + 1) * self.w]
                            .copy_from_slice(&ws.dxp[from..from + self.w]);
                    }
                }
            }
        }
    }
}
