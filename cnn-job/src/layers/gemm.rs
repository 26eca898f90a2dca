//! Row-major matrix products on slices.

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum T {
    N,
    Y,
}

/// (row stride, column stride) of op(X) for X stored row-major as rows×cols (N) or cols×rows (Y).
fn strides(cols: usize, rows: usize, t: T) -> (isize, isize) {
    match t {
        T::N => (cols as isize, 1),
        T::Y => (1, rows as isize),
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
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm operand sizes"
    );
    let (a_rs, a_cs) = strides(k, m, ta);
    let (b_rs, b_cs) = strides(n, k, tb);
    // SAFETY: the assert above makes every index the strides reach lie inside its slice: op(a)
    // spans m·k elements, op(b) k·n and c m·n, each laid out densely in one of the two orders
    // the strides describe. `c` is a unique borrow, so it aliases neither input; the kernels
    // run on this thread only (Parallelism::None) and return before the borrows end.
    unsafe {
        // Computed as cᵀ = op(b)ᵀ·op(a)ᵀ: the large operand of a convolution (its columns) then
        // sits on the left with unit row stride, the layout the kernels read without packing.
        gemm::gemm(
            n,
            m,
            k,
            c.as_mut_ptr(),
            n as isize,
            1,
            beta != 0.0,
            b.as_ptr(),
            b_rs,
            b_cs,
            a.as_ptr(),
            a_rs,
            a_cs,
            beta,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
