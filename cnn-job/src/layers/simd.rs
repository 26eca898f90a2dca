//! Small slice kernels written so the compiler vectorises them: copies of short rows without a
//! `memcpy` call per row (im2col makes thousands of 10- to 32-float copies per image), and sums
//! with eight fixed partial accumulators (so the order of additions never depends on threads).

const W: usize = 8;

/// `dst.copy_from_slice(src)` for short rows: whole 8-float blocks, then one last block that
/// overlaps the previous one (rewriting equal values) instead of a variable-length tail.
#[inline]
pub fn copy_row(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    assert_eq!(n, src.len(), "copy_row lengths");
    if n < W {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
        return;
    }
    let mut i = 0;
    while i + W <= n {
        let block: [f32; W] = src[i..i + W].try_into().expect("an 8-float block");
        dst[i..i + W].copy_from_slice(&block);
        i += W;
    }
    if i < n {
        let block: [f32; W] = src[n - W..].try_into().expect("an 8-float block");
        dst[n - W..].copy_from_slice(&block);
    }
}

/// `dst += src`, element-wise.
#[inline]
pub fn add_row(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(W);
    let mut s = src.chunks_exact(W);
    for (d, s) in (&mut d).zip(&mut s) {
        for j in 0..W {
            d[j] += s[j];
        }
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d += *s;
    }
}

/// The sum of a slice, in a fixed order: eight interleaved partial sums, then the tail.
#[inline]
pub fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; W];
    let mut c = v.chunks_exact(W);
    for block in &mut c {
        for j in 0..W {
            acc[j] += block[j];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &x in c.remainder() {
        s += x;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_plain_loops() {
        for n in 0..40 {
            let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut dst = vec![9.0; n];
            copy_row(&mut dst, &src);
            assert_eq!(dst, src);
            add_row(&mut dst, &src);
            assert_eq!(dst, src.iter().map(|x| 2.0 * x).collect::<Vec<_>>());
            assert_eq!(sum(&src), src.iter().sum::<f32>());
        }
    }
}
