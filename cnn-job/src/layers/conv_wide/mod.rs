//! Convolution without im2col on CPUs with AVX-512F or AVX2 + FMA: the "wide" direct
//! formulation.
//!
//! Each input image is copied once, zero-padded, into a plane buffer of width `wp = w + 2·pad`.
//! Output pixel (oy, ox) then sits at flat position `j = oy·wp + ox`, and kernel tap
//! r = (ci, ky, kx) reads the input at `off(r) + j` with `off(r) = ci·hp·wp + ky·wp + kx`: every
//! tap is one contiguous run of the input, so the kernels stream it in 16-float vectors with no
//! column matrix and no packing. Positions with ox ≥ wo are computed and thrown away (forward)
//! or held at zero (backward). The layout is the same for both instruction sets (16-float
//! logical vectors); `avx512` and `avx2` hold the kernels. Every accumulator adds its terms in
//! a fixed order, so results are deterministic on a machine; the forward pass and the input
//! gradient are bit-identical across the two sets (same terms, same order, fused), the weight
//! gradient's final reduction is not.

use super::conv::Conv;
use std::sync::atomic::{AtomicU8, Ordering};

/// The kernels a conv layer runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    Avx512,
    Avx2,
    /// im2col + the `gemm` crate.
    Portable,
}

/// 0: the best the CPU has; 1: portable; 2: AVX2 at most.
static FORCE: AtomicU8 = AtomicU8::new(0);

/// Forces the portable im2col + GEMM path even where a wide path is there (tests use it to
/// check every path on one machine).
pub fn force_portable(on: bool) {
    FORCE.store(u8::from(on), Ordering::Relaxed);
}

/// Caps the wide kernels at AVX2 where AVX-512F is present (for tests and comparisons).
pub fn force_avx2(on: bool) {
    FORCE.store(if on { 2 } else { 0 }, Ordering::Relaxed);
}

/// What conv layers run on now.
pub fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        let force = FORCE.load(Ordering::Relaxed);
        if force == 1 {
            Simd::Portable
        } else if force == 0 && std::arch::is_x86_feature_detected!("avx512f") {
            Simd::Avx512
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            Simd::Avx2
        } else {
            Simd::Portable
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Simd::Portable
    }
}

pub fn available() -> bool {
    simd() != Simd::Portable
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
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

impl Conv {
    /// The forward pass through the wide kernels; only call when [`available`] is true.
    pub(in crate::layers) fn forward_wide(
        &self,
        p: &[f32],
        x: &[f32],
        y: &mut [f32],
        n: usize,
        ws: &mut Wide,
    ) {
        let g = Geo::of(self);
        let level = simd();
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
            // SAFETY: `simd()` detected the instruction set of the kernel it names; the sizes
            // the kernels need are established by the resizes above and the assert.
            unsafe {
                match level {
                    Simd::Avx512 => avx512::forward(&g, &ws.wt, &ws.xp, &ws.off, &mut ws.yw),
                    _ => avx2::forward(&g, &ws.wt, &ws.xp, &ws.off, &mut ws.yw),
                }
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
    pub(in crate::layers) fn backward_wide(
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
        let level = simd();
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
            // SAFETY: `simd()` detected the kernel's instruction set; `dyp` and `dw` sizes
            // follow from the resize and split above, the rest from the asserts.
            unsafe {
                match level {
                    Simd::Avx512 => {
                        avx512::weight_grad(&g, self.cout, &ws.dyp, &ws.xp, &ws.off, dw)
                    }
                    _ => avx2::weight_grad(&g, self.cout, &ws.dyp, &ws.xp, &ws.off, dw),
                }
            };
            if let Some(dx) = dx.as_deref_mut() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; `wt` was sized cout·k·k·cinp and `dxp` cinp·np·16.
                unsafe {
                    match level {
                        Simd::Avx512 => {
                            avx512::input_grad(&g, self.cout, k, &ws.wt, &ws.dyp, &mut ws.dxp)
                        }
                        _ => avx2::input_grad(&g, self.cout, k, &ws.wt, &ws.dyp, &mut ws.dxp),
                    }
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
