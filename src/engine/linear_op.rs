//! The linear layer, `x·Wᵀ + b` over x's last dimension, as one candle
//! `CustomOp` with a real backward pass: forward, one tiled gemm and the
//! bias; backward, `dx = g·W`, `dW = gᵀ·x` and `db = Σ_rows g`. The model's
//! projections (`model::linear`) and the convolution stem's product
//! (`engine::im2col::conv2d_nhwc`) run through it.

use candle::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};

use super::gemm;
use super::ops::fused_here;
use super::simd::{slice, slices3, written};

/// `x·Wᵀ + b`: x (R, K), w (N, K), b (N) -> (R, N).
struct LinearOp;

/// The sum of a matrix's rows: (R, C) -> (C).
struct RowSum;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "fused-linear"
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
        let (n, k) = l2.shape().dims2()?;
        if b.len() != n || k == 0 || x.len() % k != 0 {
            candle::bail!(
                "linear: weight ({n}, {k}), bias {}, input {:?}",
                b.len(),
                l1.dims()
            );
        }
        let rows = x.len() / k;
        // The product overwrites `out` (it reads none of it: k > 0).
        let mut out = written(rows * n, |out| {
            gemm::gemm_rows(out, x, w, (rows, k, n), candle::utils::get_num_threads())
        });
        gemm::epilogue(&mut out, b, gemm::Act::None);
        let mut shape = l1.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k) = w.dims2()?;
        let g = grad.contiguous()?.reshape(((), n))?; // (R, N)
        let dx = g.matmul(w)?.reshape(x.shape())?; // (R, N)·(N, K)
        let dw = g.t()?.matmul(&x.reshape(((), k))?)?; // (N, R)·(R, K)
        let db = g.apply_op1_no_bwd(&RowSum)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

impl CustomOp1 for RowSum {
    fn name(&self) -> &'static str {
        "row-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = slice(s, l, self.name())?;
        let (_, c) = l.shape().dims2()?;
        let mut sum = vec![0f32; c];
        for row in g.chunks(c) {
            sum.iter_mut().zip(row).for_each(|(s, g)| *s += g);
        }
        Ok((CpuStorage::F32(sum), Shape::from(c)))
    }
}

/// A linear layer, `x·Wᵀ + b` over x's last dimension, as one op: the
/// product, the bias and, backward, `dx = g·W`, `dW = gᵀ·x`, `db = Σ_rows g`.
/// Built from candle ops, a linear layer is five nodes (two reshapes, the
/// transpose, the product, the broadcast bias), and candle's backward
/// writes each node's gradient into fresh zeros before adding it, then
/// sums the bias's gradient with a division per element.
pub fn linear(xs: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !fused_here(xs) {
        let w = w.t()?;
        return match xs.dims() {
            [lead @ .., k] if xs.is_contiguous() && !lead.is_empty() => {
                let mut shape = lead.to_vec();
                shape.push(w.dim(1)?);
                xs.reshape(((), *k))?.matmul(&w)?.reshape(shape)?
            }
            _ => xs.broadcast_matmul(&w)?,
        }
        .broadcast_add(b);
    }
    xs.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::{max_diff, randn};
    use candle::Var;

    #[test]
    fn linear_value_and_all_three_gradients_match_candle_ops() {
        let r = randn(&[3, 5, 6], 10);
        let vars = [randn(&[3, 5, 8], 9), randn(&[6, 8], 11), randn(&[6], 12)]
            .map(|t| Var::from_tensor(&t).unwrap());
        let run = |fused: bool| {
            let [x, w, b] = [0, 1, 2].map(|i| vars[i].as_tensor());
            let y = match fused {
                true => linear(x, w, b).unwrap(),
                false => x
                    .broadcast_matmul(&w.t().unwrap())
                    .unwrap()
                    .broadcast_add(b)
                    .unwrap(),
            };
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            (y, [x, w, b].map(|v| g.get(v).unwrap().clone()))
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        assert_eq!(y1.dims(), &[3, 5, 6]);
        assert!(max_diff(&y1, &y2) < 1e-5);
        for (a, b) in g1.iter().zip(&g2) {
            assert_eq!(a.dims(), b.dims());
            assert!(max_diff(a, b) < 1e-4, "{}", max_diff(a, b));
        }
    }
}
