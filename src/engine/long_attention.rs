//! Attention without the (Tq × Tk) score matrix: tiled attention with an
//! online softmax (Milakov & Gimelshein 2018; Rabe & Staats 2021,
//! "Self-attention Does Not Need O(n²) Memory"; Dao et al. 2022,
//! "FlashAttention").
//!
//! The naive path materialises every score, `S = q kᵀ / √d` (B, H, Tq, Tk),
//! then its softmax, then `softmax(S) v`: memory grows with Tq · Tk. The tiled
//! path walks over blocks of queries and, inside, over blocks of keys and
//! values, and keeps three running quantities per query row:
//!
//! - `m`, the largest score seen so far;
//! - `l`, the sum of `exp(score - m)` so far;
//! - `acc`, the sum of `exp(score - m) · v` so far.
//!
//! When a new block raises the maximum from `m` to `m'`, the old sums are
//! rescaled by `exp(m - m')`, so at the end `acc / l` is exactly the softmax-
//! weighted sum of values. Only one (block_q × block_k) tile of scores is ever
//! alive. This is the same arithmetic as FlashAttention. Written with candle
//! ops ([`tiled_attention_blocks`]) it saves memory but not time, because
//! every tile becomes a dozen small ops; on the CPU, [`tiled_attention`] runs
//! it as one kernel instead ([`super::long_attention_cpu`]).
//!
//! [`AttentionImpl`] names the three interchangeable paths and
//! [`attention_with`] runs one: `Naive`, `Tiled`, and `Fused`, the kernels
//! candle offers per device where they were compiled in
//! (`candle_nn::ops::sdpa` on Metal, `candle-flash-attn` on CUDA).

use candle::{DType, Device, Result, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::model::attention::{align, attend, causal_mask, score, ScoreFn};

/// Queries per tile of the tiled path.
pub const BLOCK_Q: usize = 256;
/// Keys (and values) per tile of the tiled path.
pub const BLOCK_K: usize = 256;

/// Which implementation computes `softmax(q kᵀ / √d) v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionImpl {
    /// Score, align, attend as three steps, with the whole score matrix.
    Naive,
    /// Blocks of keys with an online softmax; one tile of scores at a time.
    Tiled,
    /// The device's fused kernel, where this build has one.
    Fused,
}

impl AttentionImpl {
    pub const ALL: [AttentionImpl; 3] = [
        AttentionImpl::Naive,
        AttentionImpl::Tiled,
        AttentionImpl::Fused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttentionImpl::Naive => "naive",
            AttentionImpl::Tiled => "tiled",
            AttentionImpl::Fused => "fused",
        }
    }

    /// Whether this build can run the path on `device`.
    pub fn available(self, device: &Device) -> bool {
        match self {
            AttentionImpl::Naive | AttentionImpl::Tiled => true,
            AttentionImpl::Fused => fused_kernel_name(device).is_some(),
        }
    }
}

impl std::fmt::Display for AttentionImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AttentionImpl {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "naive" => Ok(AttentionImpl::Naive),
            "tiled" | "flash" => Ok(AttentionImpl::Tiled),
            "fused" => Ok(AttentionImpl::Fused),
            _ => anyhow::bail!("unknown attention implementation {s:?}: use naive, tiled or fused"),
        }
    }
}

/// Scaled dot-product attention through the chosen path.
/// `q` (B, H, Tq, D), `k` and `v` (B, H, Tk, D) -> (B, H, Tq, D).
/// `causal` hides key j from query i when j > i; it needs Tq == Tk.
pub fn attention_with(
    imp: AttentionImpl,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
) -> Result<Tensor> {
    check_shapes(q, k, v, causal)?;
    match imp {
        AttentionImpl::Naive => naive_attention(q, k, v, causal),
        AttentionImpl::Tiled => tiled_attention(q, k, v, causal),
        AttentionImpl::Fused => fused_attention(q, k, v, causal),
    }
}

/// Errors unless q is (B, H, Tq, D) and k, v are (B, H, Tk, D) (and Tq == Tk if causal).
pub fn check_shapes(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<()> {
    let (b, h, tq, d) = q.dims4()?;
    let (kb, kh, tk, kd) = k.dims4()?;
    if (kb, kh, kd) != (b, h, d) || v.dims() != k.dims() {
        candle::bail!(
            "attention shapes do not fit: q {:?}, k {:?}, v {:?}; want q (B, H, Tq, D) and k, v (B, H, Tk, D)",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if [b, h, tq, tk, d].contains(&0) {
        candle::bail!(
            "attention over an empty tensor: q {:?}, k {:?}",
            q.dims(),
            k.dims()
        );
    }
    if causal && tq != tk {
        candle::bail!("causal attention needs as many queries as keys (got {tq} and {tk})");
    }
    Ok(())
}

/// The three steps of `attention.rs` with the whole (B, H, Tq, Tk) matrix.
pub fn naive_attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    let scores = score(ScoreFn::ScaledDot, q, k, None)?; // (B, H, Tq, Tk)
    let scores = if causal {
        let t = q.dim(2)?;
        scores.broadcast_add(&causal_mask(t, q.device())?.to_dtype(scores.dtype())?)?
    } else {
        scores
    };
    attend(&align(&scores)?, v)
}

/// Tiled attention: the CPU kernel of [`super::long_attention_cpu`] for f32 on the
/// CPU, else the candle-ops version with [`BLOCK_Q`] × [`BLOCK_K`] tiles.
pub fn tiled_attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    if q.device().is_cpu() && q.dtype() == DType::F32 {
        return super::long_attention_cpu::tiled_attention_cpu(q, k, v, causal);
    }
    tiled_attention_blocks(q, k, v, causal, BLOCK_Q, BLOCK_K)
}

/// Tiled attention with an online softmax, written with candle ops so it runs
/// on any device and reads like the algorithm; see the module docs.
pub fn tiled_attention_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    block_q: usize,
    block_k: usize,
) -> Result<Tensor> {
    check_shapes(q, k, v, causal)?;
    if block_q == 0 || block_k == 0 {
        candle::bail!("tile sizes must be positive (got {block_q} × {block_k})");
    }
    let (_, _, tq, d) = q.dims4()?;
    let tk = k.dim(2)?;
    // Scale the queries once instead of every tile of scores.
    let q = (q / (d as f64).sqrt())?;
    // Contiguous key and value blocks, cut once: (B, H, ≤block_k, D) each.
    let mut kv_blocks = Vec::with_capacity(tk.div_ceil(block_k));
    for k0 in (0..tk).step_by(block_k) {
        let n = block_k.min(tk - k0);
        kv_blocks.push((
            k0,
            k.narrow(2, k0, n)?.contiguous()?,
            v.narrow(2, k0, n)?.contiguous()?,
        ));
    }
    let mut outs = Vec::with_capacity(tq.div_ceil(block_q));
    for q0 in (0..tq).step_by(block_q) {
        let nq = block_q.min(tq - q0);
        let qi = q.narrow(2, q0, nq)?.contiguous()?; // (B, H, nq, D)
                                                     // (m, l, acc): running max (B, H, nq, 1), sum (B, H, nq, 1), values (B, H, nq, D).
        let mut state: Option<(Tensor, Tensor, Tensor)> = None;
        for (k0, kj, vj) in &kv_blocks {
            let k0 = *k0;
            // Under a causal mask, key blocks wholly after the last query are skipped.
            if causal && k0 > q0 + nq - 1 {
                break;
            }
            let mut s = qi.matmul(&kj.t()?)?; // one tile of scores: (B, H, nq, nk)
            let nk = kj.dim(2)?;
            if causal && k0 + nk - 1 > q0 {
                s = s.broadcast_add(&causal_tile(q0, nq, k0, nk, s.dtype(), s.device())?)?;
            }
            let tile_max = s.max_keepdim(D::Minus1)?;
            state = Some(match state {
                // The first block keeps row 0's key 0 visible, so the max is finite.
                None => {
                    let p = s.broadcast_sub(&tile_max)?.exp()?;
                    (tile_max, p.sum_keepdim(D::Minus1)?, p.matmul(vj)?)
                }
                Some((m, l, acc)) => {
                    let m_new = m.maximum(&tile_max)?;
                    let p = s.broadcast_sub(&m_new)?.exp()?;
                    // Rescale what was summed under the old maximum.
                    let correction = (m - &m_new)?.exp()?;
                    let l = ((l * &correction)? + p.sum_keepdim(D::Minus1)?)?;
                    let acc = (acc.broadcast_mul(&correction)? + p.matmul(vj)?)?;
                    (m_new, l, acc)
                }
            });
        }
        match state {
            Some((_, l, acc)) => outs.push(acc.broadcast_div(&l)?),
            None => candle::bail!("attention over zero keys"),
        }
    }
    Tensor::cat(&outs, 2)
}

/// Additive causal mask for the tile of queries `q0..q0+nq` and keys `k0..k0+nk`.
fn causal_tile(
    q0: usize,
    nq: usize,
    k0: usize,
    nk: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mask: Vec<f32> = (0..nq)
        .flat_map(|i| {
            (0..nk).map(move |j| {
                if k0 + j <= q0 + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (nq, nk), device)?.to_dtype(dtype)
}

/// The fused kernel this build has for `device`, if any.
pub fn fused_kernel_name(device: &Device) -> Option<&'static str> {
    match device {
        #[cfg(feature = "metal")]
        Device::Metal(_) => Some("candle_nn::ops::sdpa (Metal)"),
        #[cfg(feature = "flash-attn")]
        Device::Cuda(_) => Some("candle_flash_attn::flash_attn (CUDA)"),
        _ => None,
    }
}

/// The device's fused scaled dot-product attention kernel.
pub fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    check_shapes(q, k, v, causal)?;
    let scale = 1.0 / (q.dim(D::Minus1)? as f32).sqrt();
    match q.device() {
        #[cfg(feature = "metal")]
        Device::Metal(_) => candle_nn::ops::sdpa(q, k, v, None, causal, scale, 1.0),
        #[cfg(feature = "flash-attn")]
        Device::Cuda(_) => {
            // flash-attn wants (B, T, H, D) in f16 or bf16.
            let dtype = q.dtype();
            let half = |t: &Tensor| -> Result<Tensor> {
                let t = t.transpose(1, 2)?.contiguous()?;
                if matches!(dtype, DType::F16 | DType::BF16) {
                    Ok(t)
                } else {
                    t.to_dtype(DType::F16)
                }
            };
            let out =
                candle_flash_attn::flash_attn(&half(q)?, &half(k)?, &half(v)?, scale, causal)?;
            out.transpose(1, 2)?.contiguous()?.to_dtype(dtype)
        }
        other => {
            let _ = scale;
            candle::bail!(
                "the fused attention path is not available on {}: this build has no fused kernel for it. \
                 Rebuild with `--features metal` (candle_nn::ops::sdpa) on Apple silicon or `--features flash-attn` \
                 (candle-flash-attn) on an NVIDIA GPU, and run on that device; or use the naive or tiled path",
                crate::device::describe(other)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::max_diff;

    fn randn(shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn one_tile_equals_naive() {
        let (q, k, v) = (
            randn((1, 2, 5, 4)),
            randn((1, 2, 7, 4)),
            randn((1, 2, 7, 4)),
        );
        let a = naive_attention(&q, &k, &v, false).unwrap();
        let b = tiled_attention(&q, &k, &v, false).unwrap();
        assert!(max_diff(&a, &b) < 1e-5);
    }

    #[test]
    fn small_tiles_with_causal_mask_equal_naive() {
        let (q, k, v) = (
            randn((2, 3, 11, 8)),
            randn((2, 3, 11, 8)),
            randn((2, 3, 11, 8)),
        );
        for causal in [false, true] {
            let a = naive_attention(&q, &k, &v, causal).unwrap();
            let b = tiled_attention_blocks(&q, &k, &v, causal, 3, 4).unwrap();
            assert!(max_diff(&a, &b) < 1e-5, "causal {causal}");
        }
    }

    #[test]
    fn names_round_trip() {
        for imp in AttentionImpl::ALL {
            assert_eq!(imp.name().parse::<AttentionImpl>().unwrap(), imp);
        }
        assert!("fast".parse::<AttentionImpl>().is_err());
    }
}
