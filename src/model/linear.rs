//! The linear layer every projection in the model uses, `x·Wᵀ + b` over
//! the last dimension, with candle_nn's weights, names and initialisation.
//! It runs as one fused op (`engine::linear_op::linear`) whose backward is two
//! matrix products and a sum of rows. candle_nn's layer is five nodes of
//! candle's backward, and the gradient of its broadcast bias alone took a
//! tenth of a training step (docs/BENCH.md).

use candle::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::engine::linear_op;

/// A linear layer: weight (out, in) and bias (out).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

/// candle_nn's `linear`: (out, in) weights and a bias, as the
/// checkpoints name them.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let l = candle_nn::linear(in_dim, out_dim, vb)?;
    match l.bias() {
        Some(b) => Ok(Linear::new(l.weight().clone(), b.clone())),
        None => candle::bail!("candle_nn::linear made a layer without a bias"),
    }
}

impl Linear {
    pub fn new(weight: Tensor, bias: Tensor) -> Self {
        Self { weight, bias }
    }

    /// (out, in)
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        linear_op::linear(xs, &self.weight, &self.bias)
    }
}
