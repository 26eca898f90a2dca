//! Max and average pooling, k×k windows with stride s, no padding (floor rounding).

#[derive(Debug, Clone)]
pub struct Pool {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub s: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Pool {
    fn planes(&self, n: usize) -> usize {
        n * self.c
    }

    /// Keeps the argmax of every window (its offset within the plane) for the backward pass;
    /// ties go to the first element, as PyTorch does.
    pub fn max_forward(&self, x: &[f32], y: &mut [f32], n: usize, idx: &mut Vec<u32>) {
        let (hw, ohw) = (self.h * self.w, self.ho * self.wo);
        idx.resize(self.planes(n) * ohw, 0);
        if self.k == 2 && self.s == 2 {
            return self.max_forward_2x2(x, y, idx);
        }
        let planes = x.chunks_exact(hw).zip(y.chunks_exact_mut(ohw));
        for ((xp, yp), ip) in planes.zip(idx.chunks_exact_mut(ohw)) {
            for oy in 0..self.ho {
                for ox in 0..self.wo {
                    let (y0, x0) = (oy * self.s, ox * self.s);
                    let mut best = y0 * self.w + x0;
                    let mut v = xp[best];
                    for ky in 0..self.k {
                        let row = (y0 + ky) * self.w + x0;
                        for (kx, &e) in xp[row..row + self.k].iter().enumerate() {
                            if e > v {
                                v = e;
                                best = row + kx;
                            }
                        }
                    }
                    yp[oy * self.wo + ox] = v;
                    ip[oy * self.wo + ox] = best as u32;
                }
            }
        }
    }

    /// The common 2×2 stride-2 window without the generic loops: rows in pairs, columns in
    /// pairs, the same first-wins tie rule.
    fn max_forward_2x2(&self, x: &[f32], y: &mut [f32], idx: &mut [u32]) {
        let (w, hw, ohw) = (self.w, self.h * self.w, self.ho * self.wo);
        let planes = x.chunks_exact(hw).zip(y.chunks_exact_mut(ohw));
        for ((xp, yp), ip) in planes.zip(idx.chunks_exact_mut(ohw)) {
            for oy in 0..self.ho {
                let r0 = &xp[2 * oy * w..2 * oy * w + 2 * self.wo];
                let r1 = &xp[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * self.wo];
                let yr = &mut yp[oy * self.wo..(oy + 1) * self.wo];
                let ir = &mut ip[oy * self.wo..(oy + 1) * self.wo];
                let base = (2 * oy * w) as u32;
                for ox in 0..self.wo {
                    let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                    let (mut v, mut at) = (a, 0u32);
                    if b > v {
                        (v, at) = (b, 1);
                    }
                    if c > v {
                        (v, at) = (c, w as u32);
                    }
                    if d > v {
                        (v, at) = (d, w as u32 + 1);
                    }
                    yr[ox] = v;
                    ir[ox] = base + 2 * ox as u32 + at;
                }
            }
        }
    }

    pub fn max_backward(&self, dy: &[f32], dx: &mut [f32], idx: &[u32]) {
        let (hw, ohw) = (self.h * self.w, self.ho * self.wo);
        dx.fill(0.0);
        let planes = dx.chunks_exact_mut(hw).zip(dy.chunks_exact(ohw));
        for ((dxp, dyp), ip) in planes.zip(idx.chunks_exact(ohw)) {
            for (&g, &i) in dyp.iter().zip(ip) {
                dxp[i as usize] += g;
            }
        }
    }

    pub fn avg_forward(&self, x: &[f32], y: &mut [f32]) {
        let (hw, ohw) = (self.h * self.w, self.ho * self.wo);
        let scale = 1.0 / (self.k * self.k) as f32;
        for (xp, yp) in x.chunks_exact(hw).zip(y.chunks_exact_mut(ohw)) {
            for oy in 0..self.ho {
                for ox in 0..self.wo {
                    let mut sum = 0.0;
                    for ky in 0..self.k {
                        let row = (oy * self.s + ky) * self.w + ox * self.s;
                        sum += xp[row..row + self.k].iter().sum::<f32>();
                    }
                    yp[oy * self.wo + ox] = sum * scale;
                }
            }
        }
    }

    pub fn avg_backward(&self, dy: &[f32], dx: &mut [f32]) {
        let (hw, ohw) = (self.h * self.w, self.ho * self.wo);
        let scale = 1.0 / (self.k * self.k) as f32;
        dx.fill(0.0);
        for (dxp, dyp) in dx.chunks_exact_mut(hw).zip(dy.chunks_exact(ohw)) {
            for oy in 0..self.ho {
                for ox in 0..self.wo {
                    let g = dyp[oy * self.wo + ox] * scale;
                    for ky in 0..self.k {
                        let row = (oy * self.s + ky) * self.w + ox * self.s;
                        dxp[row..row + self.k].iter_mut().for_each(|d| *d += g);
                    }
                }
            }
        }
    }
}
