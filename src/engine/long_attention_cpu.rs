//! The tiled online-softmax attention of [`super::long_attention`] as one CPU kernel
//! (the loop structure of FlashAttention-2, Dao 2023, on CPU cores instead of
//! GPU thread blocks): every (batch, head, block of queries) is an
//! independent task on the rayon pool; inside it, key/value blocks stream
//! past a (block_q × block_k) score tile that stays in the core's cache,
//! while the running max `m`, sum `l` and accumulator are updated in place.
//!
//! The candle-ops version in `flash.rs` shows the algorithm; this one makes
//! it fast on a CPU: no temporaries per tile, no single-threaded broadcast
//! ops, and inner loops written as `y += a·x` over contiguous rows so the
//! compiler vectorises them (with AVX2 and FMA where the CPU has them).
//! Forward only: the model's training path does not use it.

use candle::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::simd::{self, exp_fast};

/// Queries per task.
pub const CPU_BLOCK_Q: usize = 64;
/// Keys per score tile.
pub const CPU_BLOCK_K: usize = 128;

struct TiledCpu {
    causal: bool,
}

/// Everything one task reads.
struct Head<'a> {
    /// Queries of this block, (nq, D), row-major.
    q: &'a [f32],
    /// This head's keys transposed, (D, Tk).
    kt: &'a [f32],
    /// This head's values, (Tk, D).
    v: &'a [f32],
    tk: usize,
    d: usize,
    /// Position of the block's first query.
    q0: usize,
    scale: f32,
    causal: bool,
}

/// `y += a·x`, the one inner loop.
#[inline(always)]
fn axpy<const FMA: bool>(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = if FMA { a.mul_add(x, *y) } else { *y + a * x };
    }
}

/// One block of queries against all (visible) keys; writes (nq, D) into `out`.
#[inline(always)]
fn block<const FMA: bool>(h: &Head, out: &mut [f32]) {
    let (d, nq) = (h.d, h.q.len() / h.d);
    let mut s = vec![0f32; nq * CPU_BLOCK_K];
    let mut m = vec![f32::NEG_INFINITY; nq];
    let mut l = vec![0f32; nq];
    out.iter_mut().for_each(|o| *o = 0.0);
    let end = if h.causal {
        (h.q0 + nq).min(h.tk)
    } else {
        h.tk
    };
    for k0 in (0..end).step_by(CPU_BLOCK_K) {
        let nk = CPU_BLOCK_K.min(end - k0);
        // Scores of the tile: s[i, :] = Σ_c q[i, c] · kᵀ[c, k0..k0+nk].
        for i in 0..nq {
            let row = &mut s[i * CPU_BLOCK_K..i * CPU_BLOCK_K + nk];
            row.iter_mut().for_each(|x| *x = 0.0);
            for c in 0..d {
                axpy::<FMA>(
                    row,
                    h.q[i * d + c] * h.scale,
                    &h.kt[c * h.tk + k0..c * h.tk + k0 + nk],
                );
            }
        }
        for i in 0..nq {
            let row = &mut s[i * CPU_BLOCK_K..i * CPU_BLOCK_K + nk];
            // Keys after this query are hidden (the first key block always has key 0 visible).
            let visible = if h.causal {
                (h.q0 + i + 1).saturating_sub(k0).min(nk)
            } else {
                nk
            };
            if visible == 0 {
                continue;
            }
            let tile_max = row[..visible]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let m_new = m[i].max(tile_max);
            let correction = exp_fast(m[i] - m_new); // 0 on the first block: m = -inf
            let acc = &mut out[i * d..(i + 1) * d];
            if correction != 1.0 {
                acc.iter_mut().for_each(|a| *a *= correction);
            }
            let mut sum = 0f32;
            for (j, &x) in row[..visible].iter().enumerate() {
                let p = exp_fast(x - m_new);
                sum += p;
                axpy::<FMA>(acc, p, &h.v[(k0 + j) * d..(k0 + j + 1) * d]);
            }
            l[i] = l[i] * correction + sum;
            m[i] = m_new;
        }
    }
    for i in 0..nq {
        let inv = 1.0 / l[i];
        out[i * d..(i + 1) * d].iter_mut().for_each(|o| *o *= inv);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2_fma(h: &Head, out: &mut [f32]) {
    block::<true>(h, out)
}

fn run_block(h: &Head, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd::has_avx2() {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { block_avx2_fma(h, out) };
    }
    block::<false>(h, out)
}

impl CustomOp3 for TiledCpu {
    fn name(&self) -> &'static str {
        "tiled-attention-cpu"
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
        let [q, k, v] = simd::slices3([(s1, l1), (s2, l2), (s3, l3)], self.name())?;
        let (b, h, tq, d) = l1.shape().dims4()?;
        let tk = l2.shape().dims4()?.2;
        // Keys transposed per head, (B·H, D, Tk), so score rows are contiguous.
        let mut kt = vec![0f32; b * h * d * tk];
        kt.par_chunks_mut(d * tk)
            .zip(k.par_chunks(tk * d))
            .for_each(|(kt, k)| {
                for (j, row) in k.chunks(d).enumerate() {
                    for (c, &x) in row.iter().enumerate() {
                        kt[c * tk + j] = x;
                    }
                }
            });
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; b * h * tq * d];
        // One task per (head, block of queries); output blocks never overlap.
        out.par_chunks_mut(tq * d)
            .enumerate()
            .for_each(|(bh, out)| {
                out.par_chunks_mut(CPU_BLOCK_Q * d)
                    .enumerate()
                    .with_max_len(1)
                    .for_each(|(qb, out)| {
                        let q0 = qb * CPU_BLOCK_Q;
                        let head = Head {
                            q: &q[(bh * tq + q0) * d..(bh * tq + q0) * d + out.len()],
                            kt: &kt[bh * d * tk..(bh + 1) * d * tk],
                            v: &v[bh * tk * d..(bh + 1) * tk * d],
                            tk,
                            d,
                            q0,
                            scale,
                            causal: self.causal,
                        };
                        run_block(&head, out);
                    });
            });
        Ok((CpuStorage::F32(out), Shape::from((b, h, tq, d))))
    }
}

/// Tiled attention as one CPU kernel: `q` (B, H, Tq, D), `k`, `v` (B, H, Tk, D),
/// f32 on the CPU.
pub fn tiled_attention_cpu(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    super::long_attention::check_shapes(q, k, v, causal)?;
    q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &TiledCpu { causal })
}
