//! Relevance maps: which patches a decision depended on, read from the
//! attention weights *and* their gradients (Chefer, Gur & Wolf, ICCV 2021,
//! "Generic Attention-model Explainability for Interpreting Bi-Modal and
//! Encoder-Decoder Transformers").
//!
//! A raw attention map says where a query looked, not whether what it saw
//! there changed the answer. The gradient says that. For every attention map
//! `A` of one teacher-forced pass and the output `y` explained,
//!
//! ```text
//! Ā = mean over heads of max(0, ∇A ⊙ A)        ∇A = ∂y/∂A      (eq. 5)
//! ```
//!
//! keeps the weights that pushed `y` up. Three relevance matrices then follow
//! the model's data flow, starting from `R_ii = I` (patch × patch), `R_ss = I`
//! (fusion position × fusion position) and `R_si = 0` (fusion position ×
//! patch):
//!
//! - each ViT layer: `R_ii += Ā R_ii` (eq. 6);
//! - each text decoder layer, over the command's positions: `R_ss += Ā R_ss`;
//! - each fusion block's self-attention: `R_ss += Ā R_ss`, `R_si += Ā R_si`
//!   (eqs. 6–7);
//! - each fusion block's cross-attention: `R_si += R̄_ssᵀ Ā R̄_ii` (eq. 10),
//!   where `R̄ = norm(R − I) + I` divides each row of the part that is not
//!   the identity by its sum (eqs. 8–9), so the residual's own share stays 1.
//!
//! Row `q` of `R_si` is the relevance map of fusion query `q`. The images
//! never read the words in this model, so eq. 11 (`R_ss` from the
//! cross-attention) adds nothing and is left out.
//!
//! The gradients come from candle's own backward pass through
//! [`Vla::forward_traced`]; `model::attention::tap` keeps `∇A ⊙ A` for every
//! weight. What the pointer reads straight from the raw scores (not the
//! weights) reaches no `A`, so that part of the decision is not in the map.

use anyhow::{bail, Context, Result};
use candle::{DType, Device, Tensor, D};

use crate::model::vla::Inputs;
use crate::model::{AttentionMaps, Vla};

/// The gradient-weighted maps `Ā` of one pass, each (queries, keys), in the
/// order the data flows through them.
#[derive(Debug, Clone, Default)]
pub struct Weighted {
    pub vision: Vec<Tensor>,
    pub text: Vec<Tensor>,
    /// Per fusion block: its self-attention and its cross-attention.
    pub fusion: Vec<(Tensor, Tensor)>,
}

/// `R_si` (S, N) for `y = log Σ p(t)` over `tokens` (indices into the action
/// slice) at action position `k`, with the action prefix `action_ids`
/// (1, A) (`<boa>` and the tokens decoded before it). `inputs` holds one
/// example.
pub fn relevance(
    model: &Vla,
    inputs: &Inputs,
    action_ids: &Tensor,
    k: usize,
    tokens: &[usize],
) -> Result<Tensor> {
    if inputs.text_lens.len() != 1 {
        bail!("relevance explains one example at a time");
    }
    let (out, maps, taken) = model.forward_traced(inputs, action_ids)?;
    let row = out
        .logits
        .get(0)?
        .get(k)
        .context("no such action position")?;
    let probs = candle_nn::ops::softmax(&row, 0)?;
    let ids = Tensor::from_vec(
        tokens.iter().map(|&t| t as u32).collect::<Vec<_>>(),
        tokens.len(),
        row.device(),
    )?;
    let y = probs.index_select(&ids, 0)?.sum_all()?.log()?;
    let grads = y.backward()?;
    let weighted = |a: &Tensor| -> Result<Tensor> {
        let grad = taken
            .iter()
            .find(|(id, _)| *id == a.id())
            .and_then(|(_, ones)| grads.get(ones.as_tensor()));
        cam(a, grad)
    };
    let all = |maps: &[Tensor]| maps.iter().map(weighted).collect::<Result<Vec<_>>>();
    let w = Weighted {
        vision: all(&maps.vision)?,
        text: all(&maps.text)?,
        fusion: all(&maps.fusion_self)?
            .into_iter()
            .zip(all(&maps.fusion_cross)?)
            .collect(),
    };
    propagate(&w)
}

/// The relevance map (N patches) of the query that predicts action token
/// `k`: the row of [`relevance`] at that query.
pub fn action_map(
    model: &Vla,
    inputs: &Inputs,
    action_ids: &Tensor,
    k: usize,
    tokens: &[usize],
    maps: &AttentionMaps,
) -> Result<Vec<f32>> {
    let r = relevance(model, inputs, action_ids, k, tokens)?;
    Ok(r.get(maps.text_len + k)?.to_vec1::<f32>()?)
}

/// `Ā` of one map (1, H, Q, K): `grad` holds `∂y/∂O = ∇A ⊙ A` already (see
/// `attention::tap`); a map the output does not depend on has none.
fn cam(a: &Tensor, grad: Option<&Tensor>) -> Result<Tensor> {
    let a = a.squeeze(0)?; // (H, Q, K)
    let (_, q, k) = a.dims3()?;
    match grad {
        None => Ok(Tensor::zeros((q, k), DType::F32, &Device::Cpu)?),
        Some(g) => Ok(g
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .relu()?
            .mean(0)?),
    }
}

/// Chefer's rules over the maps of one pass: `R_si`, (S, N).
pub fn propagate(w: &Weighted) -> Result<Tensor> {
    let dev = Device::Cpu;
    let (n, s) = match (w.vision.first(), w.fusion.first()) {
        (Some(v), Some((a, _))) => (v.dim(0)?, a.dim(0)?),
        _ => bail!("relevance needs the ViT's and the fusion head's maps"),
    };
    let mut r_ii = Tensor::eye(n, DType::F32, &dev)?;
    for a in &w.vision {
        r_ii = (&r_ii + a.matmul(&r_ii)?)?;
    }
    // The text decoder's layers act on the command's positions, the first
    // T of the fusion sequence.
    let mut r_ss = Tensor::eye(s, DType::F32, &dev)?;
    if let Some(first) = w.text.first() {
        let t = first.dim(0)?;
        let mut r_tt = Tensor::eye(t, DType::F32, &dev)?;
        for a in &w.text {
            r_tt = (&r_tt + a.matmul(&r_tt)?)?;
        }
        let right = Tensor::zeros((t, s - t), DType::F32, &dev)?;
        let below = r_ss.narrow(0, t, s - t)?;
        r_ss = Tensor::cat(&[&Tensor::cat(&[&r_tt, &right], 1)?, &below], 0)?;
    }
    let mut r_si = Tensor::zeros((s, n), DType::F32, &dev)?;
    let r_ii_bar = residual_normalised(&r_ii)?;
    for (self_a, cross_a) in &w.fusion {
        r_si = (&r_si + self_a.matmul(&r_si)?)?;
        r_ss = (&r_ss + self_a.matmul(&r_ss)?)?;
        let r_ss_bar = residual_normalised(&r_ss)?;
        r_si = (&r_si + r_ss_bar.t()?.matmul(&cross_a.matmul(&r_ii_bar)?)?)?;
    }
    Ok(r_si)
}

/// `R̄ = norm(R − I) + I`: each row of `R − I` divided by its sum (a row
/// that sums to zero stays zero), then the identity added back.
pub fn residual_normalised(r: &Tensor) -> Result<Tensor> {
    let n = r.dim(0)?;
    let eye = Tensor::eye(n, DType::F32, r.device())?;
    let hat = (r - &eye)?;
    let sums = hat.sum_keepdim(D::Minus1)?;
    // Where a row sums to 0, divide by 1 instead (the row is all zeros).
    let safe = sums
        .eq(0f32)?
        .where_cond(&Tensor::ones_like(&sums)?, &sums)?;
    Ok((hat.broadcast_div(&safe)? + eye)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: &[&[f32]]) -> Tensor {
        let n = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (rows.len(), n), &Device::Cpu).unwrap()
    }

    /// One ViT layer, one fusion block, two positions, two patches, worked
    /// by hand:
    /// R_ii = I + diag(.2, .4); R̄_ii = norm(diag(.2, .4)) + I = 2I.
    /// R_ss = I + Ā_s = [[1.5, 0], [.25, 1.25]]; R̄_ss = [[2, 0], [.5, 1.5]].
    /// R_si = 0 + R̄_ssᵀ Ā_c R̄_ii = [[2, .5], [0, 1.5]] · 2·[[.1, .3], [.6, 0]]
    ///      = [[1.0, 1.2], [1.8, 0]].
    #[test]
    fn one_layer_by_hand() {
        let w = Weighted {
            vision: vec![m(&[&[0.2, 0.0], &[0.0, 0.4]])],
            text: vec![],
            fusion: vec![(
                m(&[&[0.5, 0.0], &[0.25, 0.25]]),
                m(&[&[0.1, 0.3], &[0.6, 0.0]]),
            )],
        };
        let got = propagate(&w).unwrap().to_vec2::<f32>().unwrap();
        let want = [[1.0, 1.2], [1.8, 0.0]];
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn the_gradient_weighting_keeps_only_what_pushed_the_output_up() {
        // Two heads, one query, two keys: ∇A ⊙ A per head, negatives cut, mean.
        let grad = Tensor::new(&[[[[0.4f32, -0.2]], [[0.2, 0.6]]]], &Device::Cpu).unwrap();
        let a = Tensor::zeros((1, 2, 1, 2), DType::F32, &Device::Cpu).unwrap();
        let got = cam(&a, Some(&grad)).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got, vec![vec![0.3, 0.3]]);
        let none = cam(&a, None).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(none, vec![vec![0.0, 0.0]]);
    }

    #[test]
    fn a_row_of_zeros_stays_zero_when_normalised() {
        let r = m(&[&[1.0, 0.0], &[0.5, 1.5]]);
        let got = residual_normalised(&r).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got, vec![vec![1.0, 0.0], vec![0.5, 1.5]]);
    }
}
