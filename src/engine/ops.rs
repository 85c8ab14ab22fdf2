//! Fused CPU kernels with real backward passes, for training speed: softmax
//! over the last dimension, layer norm (Ba et al. 2016) and the tanh-
//! approximated GELU (Hendrycks & Gimpel 2016), each as one candle
//! `CustomOp` whose forward and backward are single multi-threaded passes
//! over the data. The linear layer, one op of products, is in
//! [`super::linear_op`].
//!
//! candle 0.11's fused softmax and layer norm have no backward, so training
//! builds them from primitive ops (`candle_nn::ops::softmax`,
//! `layer_norm_slow`): each step allocates a temporary, and their gradients
//! end in single-threaded sums over broadcast dimensions. The backward
//! formulas here are the textbook ones:
//!
//! - softmax `y = softmax(x)`: `dx = y ⊙ (g − Σ_j g_j y_j)`;
//! - layer norm, `x̂ = (x − μ)·r`, `r = 1/√(σ² + ε)`, `y = x̂ ⊙ w + b`:
//!   `dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂))` with `ĝ = g ⊙ w`;
//!   `dw = Σ_rows g ⊙ x̂`, `db = Σ_rows g`;
//! - GELU `y = ½x(1 + tanh u)`, `u = √(2/π)(x + 0.044715x³)` (with a
//!   vectorisable `tanh`, [`tanh_fast`]):
//!   `dy/dx = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)`.
//!
//! The functions fall back to candle's op-by-op versions off the CPU or for
//! dtypes other than f32, so they can replace those everywhere. The model's
//! training path uses all three; at inference on the CPU the softmax is
//! this one too, and GELU runs inside the vision encoder's tiles
//! (`gemm::epilogue`). See
//! docs/BENCH.md for what they gain.

use candle::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;

use super::simd::{
    gelu_in_place, has_avx2, row_stats, same_len, slice, slices3, softmax_rows, tanh_fast, written,
    GELU_C, SQRT_2_OVER_PI,
};

/// Elements per parallel chunk of the elementwise kernels.
const CHUNK: usize = 1 << 14;

/// Whether the fused CPU kernels apply: an f32 tensor on the CPU.
pub fn fused_here(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

// ------------------------------------------------------------------ softmax

struct Softmax;
struct SoftmaxBwd;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let n = *l.dims().last().unwrap_or(&1);
        let mut out = x.to_vec();
        // Whole rows per parallel chunk, about CHUNK values each.
        let rows = (CHUNK / n.max(1)).max(1) * n.max(1);
        out.par_chunks_mut(rows).for_each(|y| softmax_rows(y, n));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBwd)?,
        ))
    }
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "fused-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, g) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        let n = *l1.dims().last().unwrap_or(&1);
        same_len(y, g, self.name())?;
        let dx = written(y.len(), |dx| {
            dx.par_chunks_mut(n)
                .zip(y.par_chunks(n).zip(g.par_chunks(n)))
                .for_each(|(dx, (y, g))| {
                    let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                    for ((dx, y), g) in dx.iter_mut().zip(y).zip(g) {
                        *dx = y * (g - dot);
                    }
                })
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Softmax over the last dimension, with a backward pass.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    if !fused_here(xs) {
        return candle_nn::ops::softmax(xs, D::Minus1);
    }
    xs.contiguous()?.apply_op1(Softmax)
}

// ------------------------------------------------------------------ GELU

struct Gelu;
struct GeluBwd;

#[inline(always)]
fn gelu_bwd(dx: &mut [f32], x: &[f32], g: &[f32]) {
    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
        let t = tanh_fast(SQRT_2_OVER_PI * x * (1.0 + GELU_C * x * x));
        let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
        *dx = g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
    }
}

/// The backward loop compiled for AVX2, chosen at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_bwd_avx2(dx: &mut [f32], x: &[f32], g: &[f32]) {
    gelu_bwd(dx, x, g)
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let mut out = x.to_vec();
        out.par_chunks_mut(CHUNK).for_each(gelu_in_place);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluBwd)?))
    }
}

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "fused-gelu-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (slice(s1, l1, self.name())?, slice(s2, l2, self.name())?);
        same_len(x, g, self.name())?;
        let dx = written(x.len(), |dx| {
            dx.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
                .for_each(|(dx, (x, g))| {
                    #[cfg(target_arch = "x86_64")]
                    if has_avx2() {
                        // SAFETY: the CPU has the features the function was compiled for.
                        return unsafe { gelu_bwd_avx2(dx, x, g) };
                    }
                    gelu_bwd(dx, x, g)
                })
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// candle's `gelu` (tanh approximation), with a one-pass backward.
pub fn gelu(xs: &Tensor) -> Result<Tensor> {
    if !fused_here(xs) {
        return xs.gelu();
    }
    xs.contiguous()?.apply_op1(Gelu)
}

// ------------------------------------------------------------------ layer norm

struct LayerNormOp {
    eps: f32,
}

/// Backward of layer norm as one op: (x, w, g) -> [dx rows; dw; db], (N + 2, C).
struct LayerNormBwd {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        let [x, w, b] = slices3([(s1, l1), (s2, l2), (s3, l3)], self.name())?;
        let c = w.len();
        if b.len() != c || x.len() % c != 0 {
            candle::bail!(
                "layer norm: weight {}, bias {}, input rows of {:?}",
                c,
                b.len(),
                l1.dims()
            );
        }
        let out = written(x.len(), |out| {
            out.par_chunks_mut(c)
                .zip(x.par_chunks(c))
                .for_each(|(y, x)| {
                    let (mean, r) = row_stats(x, self.eps);
                    for (((y, x), w), b) in y.iter_mut().zip(x).zip(w).zip(b) {
                        *y = (x - mean) * r * w + b;
                    }
                })
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = w.elem_count();
        let n = x.elem_count() / c;
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LayerNormBwd { eps: self.eps })?; // (N + 2, C)
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = packed.narrow(0, n, 1)?.reshape(w.shape())?;
        let db = packed.narrow(0, n + 1, 1)?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "fused-layer-norm-bwd"
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
        let [x, w, g] = slices3([(s1, l1), (s2, l2), (s3, l3)], self.name())?;
        let c = w.len();
        if c == 0 || x.len() % c != 0 {
            candle::bail!(
                "layer norm backward: weight {c}, input rows of {:?}",
                l1.dims()
            );
        }
        same_len(x, g, self.name())?;
        let rows = x.len() / c;
        let out = written((rows + 2) * c, |out| {
            let (dx, tail) = out.split_at_mut(rows * c);
            // Rows in parallel blocks; each block also returns its partial dw and db.
            let per = (rows / (4 * rayon::current_num_threads()).max(1)).max(1);
            let partials: Vec<Vec<f32>> = dx
                .par_chunks_mut(per * c)
                .zip(x.par_chunks(per * c).zip(g.par_chunks(per * c)))
                .map(|(dx, (x, g))| {
                    let mut acc = vec![0f32; 2 * c]; // [dw | db]
                    let mut gw = vec![0f32; c];
                    for ((dx, x), g) in dx.chunks_mut(c).zip(x.chunks(c)).zip(g.chunks(c)) {
                        let (mean, r) = row_stats(x, self.eps);
                        let (mut m1, mut m2) = (0f32, 0f32);
                        for j in 0..c {
                            let xh = (x[j] - mean) * r;
                            gw[j] = g[j] * w[j];
                            m1 += gw[j];
                            m2 += gw[j] * xh;
                            acc[j] += g[j] * xh;
                            acc[c + j] += g[j];
                        }
                        let (m1, m2) = (m1 / c as f32, m2 / c as f32);
                        for j in 0..c {
                            let xh = (x[j] - mean) * r;
                            dx[j] = r * (gw[j] - m1 - xh * m2);
                        }
                    }
                    acc
                })
                .collect();
            tail.fill(0.0);
            for p in partials {
                tail.iter_mut().zip(&p).for_each(|(t, p)| *t += p);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, c))))
    }
}

/// Layer norm over the last dimension, with a one-pass backward for x, w and b.
pub fn layer_norm(xs: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if !fused_here(xs) {
        return candle_nn::ops::layer_norm_slow(xs, w, b, eps as f32);
    }
    xs.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::simd::exp_fast;
    use candle::{Device, Var};

    /// Uniform in [-2, 2), seeded (candle's own CPU `randn` is not).
    pub(crate) fn randn(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Value and gradient of `Σ f(x) ⊙ r` for a fixed random r.
    fn value_and_grad(f: impl Fn(&Tensor) -> Tensor, x: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
        let v = Var::from_tensor(x).unwrap();
        let y = f(v.as_tensor());
        let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        (y, grads.get(v.as_tensor()).unwrap().clone())
    }

    #[test]
    fn softmax_of_2_5_1() {
        let e = Tensor::new(&[[2f32, 5., 1.]], &Device::Cpu).unwrap();
        let a: Vec<f32> = softmax_last_dim(&e)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (x, w) in a.iter().zip([0.0466, 0.9362, 0.0171]) {
            assert!((x - w).abs() < 5e-5, "{a:?}");
        }
    }

    #[test]
    fn softmax_value_and_gradient_match_the_slow_one() {
        let (x, r) = (randn(&[2, 3, 5, 7], 1), randn(&[2, 3, 5, 7], 2));
        let (y1, g1) = value_and_grad(|x| softmax_last_dim(x).unwrap(), &x, &r);
        let (y2, g2) = value_and_grad(|x| candle_nn::ops::softmax(x, D::Minus1).unwrap(), &x, &r);
        assert!(max_diff(&y1, &y2) < 1e-6);
        assert!(max_diff(&g1, &g2) < 1e-5, "{}", max_diff(&g1, &g2));
    }

    #[test]
    fn fast_exp_matches_exp() {
        for i in -870_000..=200_000 {
            let x = i as f32 / 10_000.0;
            let (got, want) = (exp_fast(x), x.exp());
            assert!(
                (got - want).abs() <= 2e-7 * want,
                "exp({x}) = {want}, got {got}"
            );
        }
        // A masked score gives a weight of exactly zero.
        assert_eq!(exp_fast(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_fast(-100.0), 0.0);
        assert!(exp_fast(f32::NAN).is_nan());
    }

    #[test]
    fn fast_tanh_matches_tanh() {
        for i in -200_000..=200_000 {
            let x = i as f32 / 10_000.0;
            let (got, want) = (tanh_fast(x), x.tanh());
            assert!((got - want).abs() < 3e-7, "tanh({x}) = {want}, got {got}");
        }
        assert_eq!(tanh_fast(1e30), 1.0);
        assert_eq!(tanh_fast(-1e30), -1.0);
        assert!(tanh_fast(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_value_and_gradient_match_candle() {
        let (x, r) = (randn(&[3, 40000], 3), randn(&[3, 40000], 4));
        let (y1, g1) = value_and_grad(|x| gelu(x).unwrap(), &x, &r);
        let (y2, g2) = value_and_grad(|x| x.gelu().unwrap(), &x, &r);
        assert!(max_diff(&y1, &y2) < 1e-5);
        assert!(max_diff(&g1, &g2) < 1e-4, "{}", max_diff(&g1, &g2));
    }

    #[test]
    fn layer_norm_values_and_all_three_gradients_match_the_slow_one() {
        let (x, r) = (randn(&[4, 9, 16], 5), randn(&[4, 9, 16], 6));
        let (w, b) = (
            Var::from_tensor(&randn(&[16], 7)).unwrap(),
            Var::from_tensor(&randn(&[16], 8)).unwrap(),
        );
        let xv = Var::from_tensor(&x).unwrap();
        let run = |fused: bool| {
            let y = if fused {
                layer_norm(xv.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap()
            } else {
                candle_nn::ops::layer_norm_slow(xv.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)
                    .unwrap()
            };
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let get = |v: &Var| g.get(v.as_tensor()).unwrap().clone();
            (y, get(&xv), get(&w), get(&b))
        };
        let (a, b_) = (run(true), run(false));
        assert!(max_diff(&a.0, &b_.0) < 1e-5);
        assert!(max_diff(&a.1, &b_.1) < 1e-4, "dx {}", max_diff(&a.1, &b_.1));
        assert!(max_diff(&a.2, &b_.2) < 1e-4, "dw {}", max_diff(&a.2, &b_.2));
        assert!(max_diff(&a.3, &b_.3) < 1e-4, "db {}", max_diff(&a.3, &b_.3));
    }
}
