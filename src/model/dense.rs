//! Inference kernels for the CPU: a linear layer's multiply, bias and GELU in
//! one pass per tile of rows, and the conv stem built on the same tiles.
//!
//! candle computes `GELU(x Wᵀ + b)` in three passes: a multi-threaded gemm,
//! a broadcast add of the bias, and the activation. Each pass writes a fresh
//! output-sized tensor, and the threads meet at a barrier after each one.
//! Here the rows are cut into tiles, one per task:
//!
//! ```text
//! tile of x (R, K) --gemm--> (R, N) --+ b, GELU in place, still in cache--> out
//! ```
//!
//! Each tile's gemm is single-threaded, and the tiles run in parallel. For a
//! convolution, a tile is a few output rows of one image. Its im2col rows
//! (see `conv.rs`) are copied into a small buffer just before its gemm, so
//! the whole im2col matrix (59 MB for the second stem layer at batch 32)
//! never exists.
//!
//! Forward only: these ops record no backward pass. They are used only when
//! the weights are not being trained (see [`inference_here`]). Training keeps
//! candle's ops and `conv.rs`, which have backward passes. Both paths compute
//! the same function (tested).

use candle::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use super::conv::ConvGeometry;
use super::fused;

/// What follows the multiply and the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    /// The tanh-approximated GELU, as [`fused::gelu`].
    Gelu,
}

/// Whether the fused inference kernels apply: f32 on the CPU, and neither
/// weights nor input that a gradient flows to (a trained `Var` tracks its
/// ops; loaded weights do not; the relevance maps trace the input).
///
/// `VLA_DEMO_KERNELS=candle` in the environment turns them off, so a
/// benchmark can compare them with candle's own ops in the same build.
pub fn inference_here(x: &Tensor, weight: &Tensor) -> bool {
    fused::fused_here(x) && !weight.track_op() && !x.track_op() && enabled()
}

fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("VLA_DEMO_KERNELS").map_or(true, |v| v != "candle"))
}

/// `act(x Wᵀ + b)` for a candle `Linear` and any `x` (…, K): the fused
/// kernel where [`inference_here`], candle's ops otherwise.
pub fn linear(x: &Tensor, layer: &Linear, act: Act) -> Result<Tensor> {
    let bias = match layer.bias() {
        Some(b) if inference_here(x, layer.weight()) => b,
        _ => {
            let y = x.apply(layer)?;
            return match act {
                Act::None => Ok(y),
                Act::Gelu => fused::gelu(&y),
            };
        }
    };
    let (n, k) = layer.weight().dims2()?;
    let dims = x.dims();
    let Some((&last, lead)) = dims.split_last() else {
        candle::bail!("linear: a scalar input");
    };
    if last != k {
        candle::bail!("linear: input has {last} features, the layer takes {k}");
    }
    let mut out_dims = lead.to_vec();
    out_dims.push(n);
    let m: usize = lead.iter().product();
    x.contiguous()?
        .reshape((m, k))?
        .apply_op3_no_bwd(
            &layer.weight().contiguous()?,
            &bias.contiguous()?,
            &Dense(act),
        )?
        .reshape(out_dims)
}

/// `act(conv(x, w) + b)` on a channels-last input `x` (B, H, W, C) with any
/// strides, weights `w` (C_out, C, k, k): (B, OH, OW, C_out). Forward only;
/// see `conv::conv2d_nhwc` for the trainable form.
pub fn conv2d_nhwc(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    geometry: ConvGeometry,
    act: Act,
) -> Result<Tensor> {
    let (c_out, c_in, kh, kw) = weight.dims4()?;
    let k = geometry.kernel;
    if (kh, kw) != (k, k) || x.dim(3)? != c_in {
        candle::bail!(
            "conv: weights {:?} do not fit input {:?}",
            weight.dims(),
            x.dims()
        );
    }
    // (C_out, C, k, k) -> (C_out, k, k, C): each output channel's weights in
    // the order an im2col row holds its inputs.
    let w = weight
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((c_out, k * k * c_in))?;
    x.apply_op3_no_bwd(&w, &bias.contiguous()?, &Conv { geometry, act })
}

/// Rows per tile: about four tiles per thread, so the threads stay busy
/// when tiles take uneven time, within `min_rows..=max_rows`.
fn tile_rows(m: usize, min_rows: usize, max_rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    m.div_ceil(4 * threads)
        .max(min_rows)
        .min(max_rows)
        .clamp(1, m.max(1))
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
    (r, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(
        dst.len() == r * n && lhs.len() == r * k && w.len() == n * k,
        "gemm tile: sizes do not fit"
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
            gemm::Parallelism::None,
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
        fused::gelu_in_place(dst);
    }
}

/// x (M, K), w (N, K), b (N) -> act(x wᵀ + b) (M, N).
struct Dense(Act);

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "dense-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            fused::slice(s1, l1, "dense")?,
            fused::slice(s2, l2, "dense")?,
            fused::slice(s3, l3, "dense")?,
        );
        let (m, k) = l1.shape().dims2()?;
        let (n, _) = l2.shape().dims2()?;
        if w.len() != n * k || b.len() != n {
            candle::bail!(
                "dense: weights {:?} and bias {:?} do not fit {k} inputs",
                l2.dims(),
                l3.dims()
            );
        }
        let mut out = vec![0f32; m * n];
        let r = tile_rows(m, 16, usize::MAX); // a 16-row gemm still runs near its peak
        out.par_chunks_mut(r * n)
            .zip(x.par_chunks(r * k))
            .for_each(|(dst, lhs)| {
                gemm_tile(dst, lhs, w, (lhs.len() / k, k, n), false);
                epilogue(dst, b, self.0);
            });
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// x (B, H, W, C) any strides, w (C_out, k·k·C), b (C_out) -> (B, OH, OW, C_out).
struct Conv {
    geometry: ConvGeometry,
    act: Act,
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "conv-im2col-tiles"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(x) = s1 else {
            candle::bail!("conv: f32 only");
        };
        let x = &x[l1.start_offset()..];
        let &[b, h, w, c] = l1.dims() else {
            candle::bail!("conv: want (B, H, W, C), got {:?}", l1.dims());
        };
        let &[sb, sh, sw, sc] = l1.stride() else {
            candle::bail!("conv: want four strides");
        };
        let (wts, bias) = (fused::slice(s2, l2, "conv")?, fused::slice(s3, l3, "conv")?);
        let g = self.geometry;
        let (oh, ow) = (g.out_size(h), g.out_size(w));
        let row = g.kernel * g.kernel * c;
        let c_out = bias.len();
        if wts.len() != c_out * row {
            candle::bail!(
                "conv: weights {:?} do not fit bias {:?}",
                l2.dims(),
                l3.dims()
            );
        }
        let mut out = vec![0f32; b * oh * ow * c_out];
        // A tile is `r` output rows (of OW pixels) of the flattened (B·OH) rows.
        // Each output row is OW im2col rows of k·k·C values.
        let r = tile_rows(b * oh, 1, CONV_TILE_VALUES / (ow * row).max(1));
        out.par_chunks_mut(r * ow * c_out)
            .enumerate()
            .for_each(|(tile, dst)| {
                let rows = dst.len() / (ow * c_out);
                let mut cols = vec![0f32; rows * ow * row];
                for (i, cols) in cols.chunks_mut(ow * row).enumerate() {
                    let by = tile * r + i;
                    super::conv::im2col_row(
                        x,
                        [sb, sh, sw, sc],
                        (h, w, c),
                        g,
                        by / oh,
                        by % oh,
                        cols,
                    );
                }
                gemm_tile(dst, &cols, wts, (rows * ow, row, c_out), false);
                epilogue(dst, bias, self.act);
            });
        Ok((CpuStorage::F32(out), Shape::from((b, oh, ow, c_out))))
    }
}

/// Multi-head self-attention with no mask, for inference when nobody asks
/// for the weights: `q`, `k`, `v` (B, T, C) as the projections give them
/// (heads side by side, C = H·D) -> the heads' outputs side by side, (B, T, C),
/// ready for the output projection.
///
/// Each (image, head) is one task: `S = q kᵀ/√D` (T × T) by gemm straight
/// from the strided head columns, a softmax over each row, then `S v` by gemm
/// straight into that head's columns of the output. The scores never leave
/// the core's cache, and there is no split into heads, no separate scaling,
/// softmax or merge pass, and no (B, H, T, T) tensor: the same arithmetic as
/// [`super::attention`]'s score → align → attend (tested).
pub fn self_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, c) = q.dims3()?;
    if k.dims() != [b, t, c] || v.dims() != [b, t, c] || heads == 0 || c % heads != 0 {
        candle::bail!(
            "self_attention: q {:?}, k {:?}, v {:?} with {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &SelfAttention { heads })
}

struct SelfAttention {
    heads: usize,
}

/// The output buffer, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes only its own (image, head) block of columns.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer `offset` values in. (A method, so a closure captures the
    /// whole `Send` wrapper rather than its raw-pointer field.)
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

impl CustomOp3 for SelfAttention {
    fn name(&self) -> &'static str {
        "self-attention-per-head"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let what = self.name();
        let (q, k, v) = (
            fused::slice(s1, l1, what)?,
            fused::slice(s2, l2, what)?,
            fused::slice(s3, l3, what)?,
        );
        let (b, t, c) = l1.shape().dims3()?;
        if k.len() != q.len() || v.len() != q.len() || self.heads == 0 || c % self.heads != 0 {
            candle::bail!("self_attention: q, k, v must all be (B, T, H·D)");
        }
        let (h, d) = (self.heads, c / self.heads);
        let mut out = vec![0f32; b * t * c];
        let dst = OutPtr(out.as_mut_ptr());
        (0..b * h).into_par_iter().for_each(|task| {
            let base = (task / h) * t * c + (task % h) * d;
            let mut scores = vec![0f32; t * t];
            // SAFETY: every pointer walks inside its buffer: rows base + i·c
            // + j for i < t, j < d, and base + (t-1)·c + d ≤ b·t·c. Tasks
            // write disjoint column blocks of `out`, which outlives them.
            unsafe {
                let (q, k, v) = (
                    q.as_ptr().add(base),
                    k.as_ptr().add(base),
                    v.as_ptr().add(base),
                );
                head_attention([q, k, v], c, dst.at(base), c, &mut scores, t, d);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, t, c))))
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
    fused::softmax_rows(scores, t);
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
    use crate::model::fused::tests::max_diff;
    use candle::Device;
    use candle_nn::{Conv2d, Conv2dConfig, Module};

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        crate::model::fused::tests::randn(shape, seed)
    }

    #[test]
    fn fused_linear_matches_candle_with_and_without_gelu() {
        // 3·37 rows: more than one tile, and a last tile that is not full.
        let x = randn(&[3, 37, 24], 1);
        let layer = Linear::new(randn(&[40, 24], 2), Some(randn(&[40], 3)));
        let plain = x.apply(&layer).unwrap();
        let got = linear(&x, &layer, Act::None).unwrap();
        assert_eq!(got.dims(), &[3, 37, 40]);
        assert!(max_diff(&got, &plain) < 1e-5);
        let got = linear(&x, &layer, Act::Gelu).unwrap();
        assert!(max_diff(&got, &plain.gelu().unwrap()) < 1e-5);
    }

    #[test]
    fn trained_weights_keep_candles_differentiable_ops() {
        let var = candle::Var::from_tensor(&randn(&[8, 4], 5)).unwrap();
        let layer = Linear::new(var.as_tensor().clone(), Some(randn(&[8], 6)));
        let x = randn(&[5, 4], 7);
        assert!(!inference_here(&x, layer.weight()));
        let y = linear(&x, &layer, Act::Gelu).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(var.as_tensor()).is_some());
        // The same layer with plain weights takes the fused kernel.
        assert!(inference_here(&x, &randn(&[8, 4], 5)));
    }

    #[test]
    fn fused_self_attention_matches_score_align_attend() {
        use crate::model::attention::{align, attend, score, ScoreFn};
        let (b, t, h, d) = (2, 13, 4, 8);
        let (q, k, v) = (
            randn(&[b, t, h * d], 11),
            randn(&[b, t, h * d], 12),
            randn(&[b, t, h * d], 13),
        );
        let split = |x: &Tensor| {
            x.reshape((b, t, h, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (qh, kh, vh) = (split(&q), split(&k), split(&v));
        let weights = align(&score(ScoreFn::ScaledDot, &qh, &kh, None).unwrap(), false).unwrap();
        let want = attend(&weights, &vh)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, h * d))
            .unwrap();
        let got = self_attention(&q, &k, &v, h).unwrap();
        assert!(max_diff(&got, &want) < 1e-5, "{}", max_diff(&got, &want));
    }

    #[test]
    fn fused_conv_matches_candle_conv2d_on_a_strided_view() {
        let (c_in, c_out) = (3, 8);
        let w = randn(&[c_out, c_in, 3, 3], 8);
        let b = randn(&[c_out], 9);
        let pixels = randn(&[2, c_in, 21, 18], 10); // odd sizes: the padding matters
        let g = ConvGeometry {
            kernel: 3,
            stride: 2,
            padding: 1,
        };
        let cfg = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let want = Conv2d::new(w.clone(), Some(b.clone()), cfg)
            .forward(&pixels)
            .unwrap()
            .gelu()
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap();
        // NCHW pixels seen as NHWC without a copy, as the stem does.
        let nhwc = pixels.permute((0, 2, 3, 1)).unwrap();
        let got = conv2d_nhwc(&nhwc, &w, &b, g, Act::Gelu).unwrap();
        assert_eq!(got.dims(), want.dims());
        assert!(max_diff(&got, &want) < 1e-5, "{}", max_diff(&got, &want));
        let _ = Device::Cpu;
    }
}
