//! The linear layer every projection in the model uses, `x·Wᵀ + b` over
//! the last dimension: candle_nn's weights, names and initialisation, with
//! two changes for training speed. All leading dimensions become the rows
//! of one matrix product, so the weight's gradient is one product too; and
//! the bias goes through a fused op whose backward sums the gradient's rows
//! in one pass (candle's broadcast sum over leading dimensions divides
//! every index, and was a tenth of a training step).

use candle::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::engine::ops;

/// A linear layer: weight (out, in) and an optional bias (out).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// candle_nn's `linear`: (out, in) weights and a bias, as the
/// checkpoints name them.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let l = candle_nn::linear(in_dim, out_dim, vb)?;
    Ok(Linear::new(l.weight().clone(), l.bias().cloned()))
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// (out, in)
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let w = self.weight.t()?;
        // All leading dimensions as rows of one matrix product when they
        // can be, so the weight's gradient is one product too.
        let xw = match xs.dims() {
            [lead @ .., k] if xs.is_contiguous() && !lead.is_empty() => {
                let mut shape = lead.to_vec();
                shape.push(w.dim(1)?);
                xs.reshape(((), *k))?.matmul(&w)?.reshape(shape)?
            }
            _ => xs.broadcast_matmul(&w)?,
        };
        match &self.bias {
            Some(b) => ops::bias_add(&xw, b),
            None => Ok(xw),
        }
    }
}
