//! Fully connected layer over the flattened input: `y = x·Wᵀ + b`, weight stored [out, in]
//! as PyTorch's `nn.Linear` stores it.

use super::gemm::{gemm, T};
use super::simd;

#[derive(Debug, Clone)]
pub struct Dense {
    pub inputs: usize,
    pub out: usize,
}

impl Dense {
    pub fn param_len(&self) -> usize {
        self.out * self.inputs + self.out
    }

    pub fn forward(&self, p: &[f32], x: &[f32], y: &mut [f32], n: usize) {
        let (weight, bias) = p.split_at(self.out * self.inputs);
        for row in y[..n * self.out].chunks_exact_mut(self.out) {
            row.copy_from_slice(bias);
        }
        gemm(n, self.out, self.inputs, x, T::N, weight, T::Y, 1.0, y);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        p: &[f32],
        x: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dp: &mut [f32],
        n: usize,
    ) {
        let wl = self.out * self.inputs;
        let (dw, db) = dp.split_at_mut(wl);
        gemm(self.out, self.inputs, n, dy, T::Y, x, T::N, 1.0, dw);
        for row in dy[..n * self.out].chunks_exact(self.out) {
            simd::add_row(db, row);
        }
        if let Some(dx) = dx {
            gemm(n, self.inputs, self.out, dy, T::N, &p[..wl], T::N, 0.0, dx);
        }
    }
}
