//! Row-major matrix products on slices, through ndarray's `general_mat_mul` (matrixmultiply's
//! packed kernels, single-threaded: parallelism comes from running minibatch chunks side by side).

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum T {
    N,
    Y,
}

fn view(data: &[f32], rows: usize, cols: usize, t: T) -> ArrayView2<'_, f32> {
    // Stored shape is (rows, cols) for N and (cols, rows) for Y; the slice lengths were sized by
    // the layer shapes, so a mismatch is a programming error.
    match t {
        T::N => ArrayView2::from_shape((rows, cols), data).expect("gemm operand shape"),
        T::Y => ArrayView2::from_shape((cols, rows), data)
            .expect("gemm operand shape")
            .reversed_axes(),
    }
}

/// `c[m×n] = beta·c + op(a)[m×k] · op(b)[k×n]`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: T,
    b: &[f32],
    tb: T,
    beta: f32,
    c: &mut [f32],
) {
    let a = view(&a[..m * k], m, k, ta);
    let b = view(&b[..k * n], k, n, tb);
    let mut c = ArrayViewMut2::from_shape((m, n), &mut c[..m * n]).expect("gemm output shape");
    general_mat_mul(1.0, &a, &b, beta, &mut c);
}
