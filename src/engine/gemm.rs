//! The engine's two building blocks, both single-threaded so that a task
//! runs one image (or one tile) from start to end on one core:
//!
//! - [`gemm_tile`] and [`epilogue`]: `act(x Wᵀ + b)` for a tile of rows, the
//!   multiply, bias and GELU in one pass while the tile is still in cache
//!   (candle makes three passes, each writing a fresh tensor, with the
//!   threads meeting at a barrier after each);
//! - [`head_attention`]: the engine's one attention kernel, one head of
//!   `softmax(q kᵀ/√d) v` with the scores kept in the core's cache.
//!
//! [`gemm_rows`] is the same product over a whole matrix on candle's
//! threads, for the fused linear layer of `linear_op.rs`.
//!
//! Forward only: no backward pass. The reference model in `src/model`
//! computes the same functions (tested in `vision.rs`).

use super::simd;

/// What follows the multiply and the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    /// The tanh-approximated GELU, as `ops::gelu`.
    Gelu,
}

/// im2col values per conv tile: 256 KiB, so a tile's buffer is still in
/// the core's L2 cache when its gemm reads it.
pub(crate) const CONV_TILE_VALUES: usize = 64 * 1024;

/// `dst (R, N) = lhs (R, K) · wᵀ`, `w` (N, K) row-major, on this thread;
/// with `accumulate`, `dst += …` instead (a residual connection).
pub(crate) fn gemm_tile(
    dst: &mut [f32],
    lhs: &[f32],
    w: &[f32],
    dims: (usize, usize, usize),
    accumulate: bool,
) {
    gemm_nt(dst, lhs, w, dims, accumulate, gemm::Parallelism::None)
}

/// `dst (R, N) = lhs (R, K) · wᵀ` on `threads` threads (0 or 1: this one).
/// Every value of `dst` is written and none is read first.
pub(crate) fn gemm_rows(
    dst: &mut [f32],
    lhs: &[f32],
    w: &[f32],
    dims: (usize, usize, usize),
    threads: usize,
) {
    let parallelism = match threads {
        0 | 1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    gemm_nt(dst, lhs, w, dims, false, parallelism)
}

fn gemm_nt(
    dst: &mut [f32],
    lhs: &[f32],
    w: &[f32],
    (r, k, n): (usize, usize, usize),
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    assert!(
        dst.len() == r * n && lhs.len() == r * k && w.len() == n * k,
        "gemm: sizes do not fit"
    );
    // SAFETY: the three slices have exactly the sizes the strides walk over
    // (asserted above), and `dst` does not alias the inputs.
    unsafe {
        gemm::gemm(
            r,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize, // column j of wᵀ is row j of w
            1,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Adds the bias to every row of `dst` (rows of `bias.len()`), then the activation.
pub(crate) fn epilogue(dst: &mut [f32], bias: &[f32], act: Act) {
    for row in dst.chunks_mut(bias.len()) {
        for (y, b) in row.iter_mut().zip(bias) {
            *y += b;
        }
    }
    if act == Act::Gelu {
        simd::gelu_in_place(dst);
    }
}

/// One head of unmasked self-attention on this thread: `out_h = softmax(q_h
/// k_hᵀ/√d) v_h`, with the (T, T) weights in `scores`. `qkv` points at the
/// head's first column of q, k and v, each with rows `in_stride` apart, and
/// `out` at its first output column, rows `out_stride` apart.
///
/// # Safety
/// For each of the three inputs, `t` rows of `d` values `in_stride` apart
/// must be readable; `t` rows of `d` values `out_stride` apart must be
/// writable at `out` and overlap neither the inputs nor `scores`, which
/// must hold `t·t` values.
pub(crate) unsafe fn head_attention(
    [q, k, v]: [*const f32; 3],
    in_stride: usize,
    out: *mut f32,
    out_stride: usize,
    scores: &mut [f32],
    t: usize,
    d: usize,
) {
    assert!(
        scores.len() == t * t,
        "head attention: scores must be T × T"
    );
    let scale = 1.0 / (d as f32).sqrt();
    // scores (T, T) = scale · q_h (T, D) · k_hᵀ (D, T)
    gemm::gemm(
        t,
        t,
        d,
        scores.as_mut_ptr(),
        1,
        t as isize,
        false,
        q,
        1,
        in_stride as isize,
        k,
        in_stride as isize,
        1,
        0.0,
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
    simd::softmax_rows(scores, t);
    // out_h (T, D) = weights (T, T) · v_h (T, D)
    gemm::gemm(
        t,
        d,
        t,
        out,
        1,
        out_stride as isize,
        false,
        scores.as_ptr(),
        1,
        t as isize,
        v,
        1,
        in_stride as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::{max_diff, randn};
    use crate::model::attention::{align, attend, score, ScoreFn};
    use candle::Tensor;

    #[test]
    fn one_head_matches_score_align_attend() {
        let (t, d) = (7, 4);
        let (q, k, v) = (randn(&[t, d], 1), randn(&[t, d], 2), randn(&[t, d], 3));
        let host = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (qh, kh, vh) = (host(&q), host(&k), host(&v));
        let mut out = vec![0f32; t * d];
        let mut scores = vec![0f32; t * t];
        // SAFETY: q, k, v and out are t × d, rows d apart; scores is t × t.
        unsafe {
            head_attention(
                [qh.as_ptr(), kh.as_ptr(), vh.as_ptr()],
                d,
                out.as_mut_ptr(),
                d,
                &mut scores,
                t,
                d,
            );
        }
        let r = |x: &Tensor| x.reshape((1, 1, t, d)).unwrap();
        let s = score(ScoreFn::ScaledDot, &r(&q), &r(&k), None).unwrap();
        let want = attend(&align(&s).unwrap(), &r(&v)).unwrap();
        let got = Tensor::from_vec(out, (1, 1, t, d), &candle::Device::Cpu).unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn a_tile_adds_bias_then_gelu() {
        // x = [[1, 2]], W = [[1, 0], [0, 1], [1, 1]], b = [0, -2, 0.5]:
        // x Wᵀ + b = [1, 0, 3.5]; GELU(0) = 0, GELU(1) ≈ 0.8412.
        let mut dst = vec![0f32; 3];
        gemm_tile(
            &mut dst,
            &[1.0, 2.0],
            &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            (1, 2, 3),
            false,
        );
        epilogue(&mut dst, &[0.0, -2.0, 0.5], Act::Gelu);
        assert!((dst[0] - 0.8412).abs() < 1e-3, "{dst:?}");
        assert_eq!(dst[1], 0.0);
        assert!((dst[2] - 3.4992).abs() < 1e-3, "{dst:?}");
    }
}
