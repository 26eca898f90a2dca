//! 2-D convolution, stride 1, as im2col + GEMM per image. The column matrix is rebuilt in the
//! backward pass instead of kept: one image's columns stay in L2, a chunk's would not.

use super::gemm::{gemm, T};
use super::simd;

#[derive(Debug, Clone)]
pub struct Conv {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Conv {
    pub fn weight_len(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }

    pub fn param_len(&self) -> usize {
        self.weight_len() + self.cout
    }

    fn col_len(&self) -> usize {
        self.cin * self.k * self.k * self.ho * self.wo
    }

    /// `col[(ci·k + ky)·k + kx][oy·wo + ox] = x[ci][oy + ky − pad][ox + kx − pad]`, zero outside.
    fn im2col(&self, x: &[f32], col: &mut [f32]) {
        let (k, pad, wo, ho) = (self.k, self.pad, self.wo, self.ho);
        let mut rows = col.chunks_exact_mut(ho * wo);
        for ci in 0..self.cin {
            let plane = &x[ci * self.h * self.w..(ci + 1) * self.h * self.w];
            for ky in 0..k {
                for kx in 0..k {
                    let Some(row) = rows.next() else { return };
                    // Output columns whose input column lies inside the image.
                    let ox0 = pad.saturating_sub(kx);
                    let ox1 = (self.w + pad).saturating_sub(kx).min(wo);
                    for oy in 0..ho {
                        let out = &mut row[oy * wo..(oy + 1) * wo];
                        let iy = oy + ky;
                        if iy < pad || iy - pad >= self.h || ox0 >= ox1 {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[(iy - pad) * self.w..(iy - pad + 1) * self.w];
                        if ox0 > 0 {
                            out[..ox0].fill(0.0);
                        }
                        simd::copy_row(&mut out[ox0..ox1], &src[ox0 + kx - pad..ox1 + kx - pad]);
                        if ox1 < wo {
                            out[ox1..].fill(0.0);
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Conv::im2col`]: adds each column entry back into its input position.
    fn col2im(&self, col: &[f32], dx: &mut [f32]) {
        let (k, pad, wo, ho) = (self.k, self.pad, self.wo, self.ho);
        let mut rows = col.chunks_exact(ho * wo);
        for ci in 0..self.cin {
            let plane = &mut dx[ci * self.h * self.w..(ci + 1) * self.h * self.w];
            for ky in 0..k {
                for kx in 0..k {
                    let Some(row) = rows.next() else { return };
                    let ox0 = pad.saturating_sub(kx);
                    let ox1 = (self.w + pad).saturating_sub(kx).min(wo);
                    if ox0 >= ox1 {
                        continue;
                    }
                    for oy in 0..ho {
                        let iy = oy + ky;
                        if iy < pad || iy - pad >= self.h {
                            continue;
                        }
                        let dst = &mut plane[(iy - pad) * self.w..(iy - pad + 1) * self.w];
                        let dst = &mut dst[ox0 + kx - pad..ox1 + kx - pad];
                        simd::add_row(dst, &row[oy * wo + ox0..oy * wo + ox1]);
                    }
                }
            }
        }
    }

    pub fn forward(&self, p: &[f32], x: &[f32], y: &mut [f32], n: usize, col: &mut Vec<f32>) {
        let (wl, hw, kk) = (
            self.weight_len(),
            self.ho * self.wo,
            self.cin * self.k * self.k,
        );
        let (weight, bias) = p.split_at(wl);
        col.resize(self.col_len(), 0.0);
        let in_len = self.cin * self.h * self.w;
        for i in 0..n {
            let yi = &mut y[i * self.cout * hw..(i + 1) * self.cout * hw];
            for (plane, b) in yi.chunks_exact_mut(hw).zip(bias) {
                plane.fill(*b);
            }
            let xi = &x[i * in_len..(i + 1) * in_len];
            if self.k == 1 && self.pad == 0 {
                gemm(self.cout, hw, kk, weight, T::N, xi, T::N, 1.0, yi);
            } else {
                self.im2col(xi, col);
                gemm(self.cout, hw, kk, weight, T::N, col, T::N, 1.0, yi);
            }
        }
    }

    /// Adds one image's bias gradient (the sum of each output plane's gradient) into `db`; both
    /// convolution paths share it.
    pub(super) fn add_bias_grad(&self, dyi: &[f32], db: &mut [f32]) {
        for (plane, b) in dyi.chunks_exact(self.ho * self.wo).zip(db.iter_mut()) {
            *b += simd::sum(plane);
        }
    }

    /// Adds this chunk's parameter gradient into `dp`; writes the input gradient if asked.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        p: &[f32],
        x: &[f32],
        dy: &[f32],
        mut dx: Option<&mut [f32]>,
        dp: &mut [f32],
        n: usize,
        col: &mut Vec<f32>,
        dcol: &mut Vec<f32>,
    ) {
        let (wl, hw, kk) = (
            self.weight_len(),
            self.ho * self.wo,
            self.cin * self.k * self.k,
        );
        let weight = &p[..wl];
        let (dw, db) = dp.split_at_mut(wl);
        col.resize(self.col_len(), 0.0);
        dcol.resize(self.col_len(), 0.0);
        let in_len = self.cin * self.h * self.w;
        let direct = self.k == 1 && self.pad == 0;
        for i in 0..n {
            let dyi = &dy[i * self.cout * hw..(i + 1) * self.cout * hw];
            self.add_bias_grad(dyi, db);
            let xi = &x[i * in_len..(i + 1) * in_len];
            let cols: &[f32] = if direct {
                xi
            } else {
                self.im2col(xi, col);
                col
            };
            gemm(self.cout, kk, hw, dyi, T::N, cols, T::Y, 1.0, dw);
            if let Some(dx) = dx.as_deref_mut() {
                let dxi = &mut dx[i * in_len..(i + 1) * in_len];
                if direct {
                    gemm(kk, hw, self.cout, weight, T::Y, dyi, T::N, 0.0, dxi);
                } else {
                    gemm(kk, hw, self.cout, weight, T::Y, dyi, T::N, 0.0, dcol);
                    dxi.fill(0.0);
                    self.col2im(dcol, dxi);
                }
            }
        }
    }
}
