//! Vectorised CPU arithmetic shared by the engine's kernels: `exp` and
//! `tanh` without libm calls, row softmax, GELU in place, layer-norm row
//! statistics, and the checks the kernels make on their inputs.

use candle::{CpuStorage, Layout, Result};

/// The f32 values of a contiguous CPU tensor, or an error naming `what`.
pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle::bail!("{what}: the fused CPU kernels take f32 only");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle::bail!("{what}: the input must be contiguous"),
    }
}

/// [`slice`] for the three inputs of a `CustomOp3`.
pub(crate) fn slices3<'a>(
    [(s1, l1), (s2, l2), (s3, l3)]: [(&'a CpuStorage, &Layout); 3],
    what: &str,
) -> Result<[&'a [f32]; 3]> {
    Ok([
        slice(s1, l1, what)?,
        slice(s2, l2, what)?,
        slice(s3, l3, what)?,
    ])
}

/// An error unless an op's two inputs hold as many values (the kernels
/// write one output value per pair).
pub(crate) fn same_len(a: &[f32], b: &[f32], what: &str) -> Result<()> {
    if a.len() != b.len() {
        candle::bail!("{what}: inputs of {} and {} values", a.len(), b.len());
    }
    Ok(())
}

/// A vector of `len` values that `fill` writes, every one of them, into
/// memory that was not zeroed first. Training's ops allocate tens of
/// megabytes a step, and zeroing them before overwriting them was about a
/// twentieth of a step. `fill` must write every value: what it leaves
/// alone is whatever the allocator held. (candle's own CPU kernels allocate
/// their outputs this way, e.g. its `conv2d`.)
#[allow(clippy::uninit_vec)] // deliberate: see the contract above
pub(crate) fn written(len: usize, fill: impl FnOnce(&mut [f32])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: the capacity holds `len` values; `f32` has no destructor, and
    // the callers' `fill` writes every value before anything reads one.
    unsafe { v.set_len(len) };
    fill(&mut v);
    v
}

pub(crate) const SQRT_2_OVER_PI: f32 = 0.797_884_6;
pub(crate) const GELU_C: f32 = 0.044_715;

/// `e^x` without a libm call, so a loop of it vectorises: `2ⁿ · e^r`, with n
/// rounded by the 1.5·2²³ trick and `e^r` (|r| ≤ ln2/2) by the degree-6
/// polynomial of Cephes' `expf`. Relative error below 2e-7 on [-87, 20];
/// exactly 0 below -87 (so a −∞ mask gives a weight of exactly 0), clamped
/// at 20 above (the callers never go higher).
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
    let y = x.clamp(-87.0, 20.0);
    // Every step is a fused multiply-add (`mul_add`): in the AVX2+FMA
    // builds of the loops one instruction instead of two, which halves the
    // chain of dependent steps that bounds the loop's speed.
    let shifted = y.mul_add(LOG2E, ROUND);
    let n = shifted - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, y));
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5); // Cephes: 5.0000001e-1, which is 0.5 in f32
    let er = (p * r).mul_add(r, r + 1.0);
    // n as an integer, read from the bits of `shifted` (which shares
    // ROUND's exponent) rather than by `as i32`: that cast saturates and
    // maps NaN to 0, which compiles to a scalar check per lane and stops
    // the loop from vectorising.
    let k = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let e = er * f32::from_bits(k.wrapping_add(127) << 23);
    if x < -87.0 {
        0.0
    } else {
        e
    }
}

/// `tanh` without a libm call: `tanh x = 1 − 2 / (e^{2x} + 1)` with
/// [`exp_fast`]. Absolute error below 3e-7 (tested against `f32::tanh`).
#[inline(always)]
pub fn tanh_fast(x: f32) -> f32 {
    let e2x = exp_fast((2.0 * x).clamp(-20.0, 20.0));
    1.0 - 2.0 / (e2x + 1.0)
}

/// One row of softmax in place: `x ← exp(x − max x) / Σ`. The max and the
/// sum keep eight partial results each, so the compiler can vectorise them
/// (a single running float sum has to go one value at a time).
#[inline(always)]
fn softmax_row(x: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let max = chunks.remainder().iter().copied().fold(
        lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        f32::max,
    );
    for v in x.iter_mut() {
        *v = exp_fast(*v - max);
    }
    let mut lanes = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += v;
        }
    }
    let sum: f32 = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// Softmax in place over each row of `n` values of `xs`, on this thread.
pub fn softmax_rows(xs: &mut [f32], n: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { softmax_rows_avx2(xs, n) };
    }
    xs.chunks_mut(n.max(1)).for_each(softmax_row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_rows_avx2(xs: &mut [f32], n: usize) {
    // A plain loop, not `for_each(softmax_row)`: the closure-taking adapter
    // can be compiled out of line, without AVX2 and FMA, and then every
    // `mul_add` in `exp_fast` becomes a call to libm's `fmaf`.
    for row in xs.chunks_mut(n.max(1)) {
        softmax_row(row)
    }
}

/// GELU in place: the fused op's forward pass, and the epilogue of the
/// inference kernels ([`super::gemm::epilogue`]).
pub fn gelu_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { gelu_in_place_avx2(xs) };
    }
    gelu_in_place_scalar(xs)
}

/// `½x(1 + tanh u)` computed as `x / (1 + e^{−2u})`, the same function with
/// one exponential, one division and no subtraction.
#[inline(always)]
fn gelu_in_place_scalar(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        let v = *x;
        let u = SQRT_2_OVER_PI * v * GELU_C.mul_add(v * v, 1.0);
        *x = v / (1.0 + exp_fast(-2.0 * u));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_in_place_avx2(xs: &mut [f32]) {
    gelu_in_place_scalar(xs)
}

pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Mean and 1/√(var + ε) of one row, two-pass for accuracy. Each sum
/// keeps eight partial sums, so it vectorises (see [`softmax_row`]).
pub(crate) fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    fn sum8(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
        let mut lanes = [0f32; 8];
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for (s, &v) in lanes.iter_mut().zip(c) {
                *s += f(v);
            }
        }
        lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
    }
    let n = x.len() as f32;
    let mean = sum8(x, |v| v) / n;
    let var = sum8(x, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}
