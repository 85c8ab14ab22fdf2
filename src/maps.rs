//! Attention tensors -> per-patch heatmaps: which query, which layer, which
//! heads, and attention rollout. The overlay draws these; it computes nothing.
//!
//! All maps here are one value per image patch, row by row over the model's
//! `grid` × `grid` patch grid (patch `n` is row `n / grid`, column `n % grid`).
//!
//! **Rollout** (Abnar & Zuidema 2020, "Quantifying Attention Flow in
//! Transformers") follows attention through the ViT's layers. Each layer's
//! heads are fused (mean, max or min) into one (N, N) matrix `A` whose row `i`
//! is query patch `i`. The residual connection is modelled by adding the
//! identity, `A' = ½A + ½I`, and every *row* is renormalised to sum to 1, so
//! each query's weights stay a distribution. The layers are then multiplied,
//! `R = A'_L ··· A'_1`; row `i` of `R` says how much of patch `i`'s final state
//! flows from each input patch. (A widely used implementation divides by
//! `a.sum(dim=-1)` without `keepdim`, which broadcasts over the last axis and
//! divides column `j` by row `j`'s sum: the rows then do not sum to 1.)

use anyhow::{bail, Context, Result};
use candle::{DType, Tensor, D};

use crate::model::AttentionMaps;

/// How the heads of one layer become one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadFusion {
    #[default]
    Mean,
    Max,
    Min,
}

/// One labelled heatmap over the patch grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    pub label: String,
    /// grid × grid values, row by row.
    pub values: Vec<f32>,
}

/// A (1, H, Q, K) attention tensor as [head][query][key].
pub fn per_head(t: &Tensor) -> Result<Vec<Vec<Vec<f32>>>> {
    let t = t.to_dtype(DType::F32)?;
    let (b, ..) = t
        .dims4()
        .context("attention maps must be (1, heads, queries, keys)")?;
    if b != 1 {
        bail!("expected one example's attention maps, got a batch of {b}");
    }
    Ok(t.squeeze(0)?.to_vec3::<f32>()?)
}

/// Query `q`'s row from every head: [head][key].
pub fn query_row(t: &Tensor, q: usize) -> Result<Vec<Vec<f32>>> {
    let heads = per_head(t)?;
    heads
        .into_iter()
        .map(|h| {
            h.get(q)
                .cloned()
                .with_context(|| format!("query {q} is outside the attention map"))
        })
        .collect()
}

/// Fuses per-head rows into one, element by element.
pub fn fuse(rows: &[Vec<f32>], how: HeadFusion) -> Vec<f32> {
    let n = rows.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| {
            let it = rows.iter().map(|r| r[i]);
            match how {
                HeadFusion::Mean => it.sum::<f32>() / rows.len() as f32,
                HeadFusion::Max => it.fold(f32::NEG_INFINITY, f32::max),
                HeadFusion::Min => it.fold(f32::INFINITY, f32::min),
            }
        })
        .collect()
}

/// Fusion cross-attention of fusion query `q` in `layer`, heads averaged.
pub fn cross_mean(maps: &AttentionMaps, layer: usize, q: usize) -> Result<Vec<f32>> {
    let t = maps
        .fusion_cross
        .get(layer)
        .with_context(|| format!("no fusion layer {layer}"))?;
    Ok(fuse(&query_row(t, q)?, HeadFusion::Mean))
}

/// Where each token of the fusion sequence sits: the command's real tokens
/// are `text_len - len .. text_len`, `<boa>` is `text_len`, and the query
/// that predicts action token `k` (0-based) is `text_len + k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    pub text_len: usize,
    pub command_len: usize,
}

impl Positions {
    pub fn new(maps: &AttentionMaps, command_len: usize) -> Self {
        Self {
            text_len: maps.text_len,
            command_len,
        }
    }

    /// Fusion position of the command's token `i`.
    pub fn token(&self, i: usize) -> usize {
        self.text_len - self.command_len + i
    }

    /// The `<boa>` query, which predicts the first action token.
    pub fn boa(&self) -> usize {
        self.text_len
    }

    /// The query that predicts action token `k` (0-based).
    pub fn predicting(&self, k: usize) -> usize {
        self.text_len + k
    }
}

/// Rollout after each ViT layer: entry `l` is `A'_l ··· A'_1`, (N, N), rows
/// summing to 1. The last entry is the full rollout.
pub fn rollout(vision: &[Tensor], how: HeadFusion) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(vision.len());
    let mut r: Option<Tensor> = None;
    for (l, t) in vision.iter().enumerate() {
        let t = t
            .to_dtype(DType::F32)?
            .squeeze(0)
            .with_context(|| format!("ViT layer {l} map"))?; // (H, N, N)
        let a = match how {
            HeadFusion::Mean => t.mean(0)?,
            HeadFusion::Max => t.max(0)?,
            HeadFusion::Min => t.min(0)?,
        }; // (N, N)
        let a = add_identity_and_normalise(&a)?;
        let next = match r {
            None => a,
            Some(prev) => a.matmul(&prev)?,
        };
        out.push(next.clone());
        r = Some(next);
    }
    Ok(out)
}

/// `A' = ½A + ½I`, then each row (query) divided by its own sum.
pub fn add_identity_and_normalise(a: &Tensor) -> Result<Tensor> {
    let n = a.dim(0)?;
    let eye = Tensor::eye(n, DType::F32, a.device())?;
    let a = ((a * 0.5)? + (eye * 0.5)?)?;
    // keepdim: (N, 1), so row i is divided by row i's sum.
    Ok(a.broadcast_div(&a.sum_keepdim(D::Minus1)?)?)
}

/// What a rollout map shows: the mean over all query patches (where the
/// image as a whole draws from), or one query patch's row.
pub fn rollout_map(r: &Tensor, patch: Option<usize>) -> Result<Vec<f32>> {
    let rows = r.to_vec2::<f32>()?;
    match patch {
        Some(p) => rows
            .get(p)
            .cloned()
            .with_context(|| format!("patch {p} is outside the {}-patch grid", rows.len())),
        None => {
            let n = rows.len().max(1) as f32;
            Ok((0..rows.first().map_or(0, Vec::len))
                .map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / n)
                .collect())
        }
    }
}

/// `weights` (N) pushed back through a rollout `R` (N, N): `wᵀR`, the input
/// patches a fusion query's attention ultimately draws on.
pub fn through_rollout(weights: &[f32], r: &Tensor) -> Result<Vec<f32>> {
    let n = weights.len();
    let w = Tensor::from_vec(weights.to_vec(), (1, n), r.device())?;
    Ok(w.matmul(r)?.squeeze(0)?.to_vec1::<f32>()?)
}

/// Index of the largest value.
pub fn argmax(xs: &[f32]) -> usize {
    xs.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// The panels of `--per-head`: every fusion layer × head, `<boa>` query.
pub fn per_head_panels(maps: &AttentionMaps) -> Result<Vec<Heatmap>> {
    let mut out = Vec::new();
    let layers = maps.fusion_cross.len();
    for (l, t) in maps.fusion_cross.iter().enumerate() {
        for (h, row) in query_row(t, maps.text_len)?.into_iter().enumerate() {
            out.push(Heatmap {
                label: format!("fusion layer {}/{layers} · head {}", l + 1, h + 1),
                values: row,
            });
        }
    }
    Ok(out)
}

/// The panels of `--per-layer`: each fusion layer's `<boa>` map, heads averaged.
pub fn per_layer_panels(maps: &AttentionMaps) -> Result<Vec<Heatmap>> {
    let layers = maps.fusion_cross.len();
    (0..layers)
        .map(|l| {
            Ok(Heatmap {
                label: format!("fusion layer {}/{layers}", l + 1),
                values: cross_mean(maps, l, maps.text_len)?,
            })
        })
        .collect()
}

/// The panels of `--per-token`: one per command word (the mean of its
/// tokens' queries), then one per action token (the query that predicted
/// it); last fusion layer, heads averaged. Words fill the first row(s) and
/// actions start on a new row: `columns` is returned with the panels, and
/// blank panels (no values) pad the words' last row.
pub fn per_token_panels(
    maps: &AttentionMaps,
    pred: &crate::pipeline::Prediction,
) -> Result<(Vec<Heatmap>, usize)> {
    let last = maps
        .fusion_cross
        .len()
        .checked_sub(1)
        .context("no fusion layers were captured")?;
    let pos = Positions::new(maps, pred.command.ids.len());
    let words = &pred.command.words;
    let columns = words.len().max(pred.steps.len()).clamp(1, 6);
    let mut out = Vec::new();
    for (w, word) in words.iter().enumerate() {
        let rows: Vec<Vec<f32>> = (0..pred.command.ids.len())
            .filter(|&i| pred.command.word_ids.get(i) == Some(&w))
            .map(|i| cross_mean(maps, last, pos.token(i)))
            .collect::<Result<_>>()?;
        if rows.is_empty() {
            continue;
        }
        out.push(Heatmap {
            label: format!("word {}: \"{word}\"", w + 1),
            values: fuse(&rows, HeadFusion::Mean),
        });
    }
    while out.len() % columns != 0 {
        out.push(Heatmap {
            label: String::new(),
            values: Vec::new(),
        });
    }
    for (k, step) in pred.steps.iter().enumerate() {
        let from = if k == 0 {
            "<boa>".to_string()
        } else {
            pred.steps[k - 1].token.text()
        };
        out.push(Heatmap {
            label: format!(
                "action {}: {} (query {from}, p={:.2})",
                k + 1,
                step.token.text(),
                step.prob
            ),
            values: cross_mean(maps, last, pos.predicting(k))?,
        });
    }
    Ok((out, columns))
}

/// The panels of `--rollout`: the rollout after each ViT layer (mean over
/// query patches, or the row of `patch`), then the `<boa>` map traced back
/// through the full rollout to the input patches.
pub fn rollout_panels(
    maps: &AttentionMaps,
    boa: &[f32],
    how: HeadFusion,
    patch: Option<usize>,
) -> Result<Vec<Heatmap>> {
    let steps = rollout(&maps.vision, how)?;
    let layers = steps.len();
    let whose = match patch {
        Some(p) => format!("row of patch {p}"),
        None => "mean over query patches".to_string(),
    };
    let mut out = Vec::new();
    for (l, r) in steps.iter().enumerate() {
        out.push(Heatmap {
            label: format!("rollout, ViT layers 1–{} of {layers} ({whose})", l + 1),
            values: rollout_map(r, patch)?,
        });
    }
    if let Some(r) = steps.last() {
        out.push(Heatmap {
            label: "<boa> attention traced back through the rollout".into(),
            values: through_rollout(boa, r)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn rows_of_each_rollout_step_sum_to_one() {
        // Two layers, two heads, three patches; rows are not symmetric.
        let v: Vec<f32> = vec![
            0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4, // layer 0, head 0
            0.2, 0.2, 0.6, 0.5, 0.4, 0.1, 0.0, 0.1, 0.9, // layer 0, head 1
        ];
        let a = Tensor::from_vec(v, (1, 2, 3, 3), &Device::Cpu).unwrap();
        for how in [HeadFusion::Mean, HeadFusion::Max, HeadFusion::Min] {
            let r = rollout(&[a.clone(), a.clone()], how).unwrap();
            for step in &r {
                for row in step.to_vec2::<f32>().unwrap() {
                    assert!(
                        (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                        "{how:?}: {row:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn identity_is_added_before_normalising_rows() {
        let a = Tensor::new(&[[0.2f32, 0.8], [0.6, 0.0]], &Device::Cpu).unwrap();
        let got = add_identity_and_normalise(&a)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // row 0: [0.1+0.5, 0.4] / 1.0; row 1: [0.3, 0.5] / 0.8
        let want = [[0.6, 0.4], [0.375, 0.625]];
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn rollout_multiplies_later_layers_on_the_left() {
        let l0 = Tensor::new(&[[[[1f32, 0.], [1., 0.]]]], &Device::Cpu).unwrap();
        let l1 = Tensor::new(&[[[[0f32, 1.], [0., 1.]]]], &Device::Cpu).unwrap();
        let r = rollout(&[l0.clone(), l1.clone()], HeadFusion::Mean).unwrap();
        let a0 = add_identity_and_normalise(&l0.squeeze(0).unwrap().squeeze(0).unwrap()).unwrap();
        let a1 = add_identity_and_normalise(&l1.squeeze(0).unwrap().squeeze(0).unwrap()).unwrap();
        let want = a1.matmul(&a0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(r[1].to_vec2::<f32>().unwrap(), want);
    }

    #[test]
    fn fusion_of_heads() {
        let rows = vec![vec![0.1, 0.9], vec![0.5, 0.5]];
        assert_eq!(fuse(&rows, HeadFusion::Max), vec![0.5, 0.9]);
        assert_eq!(fuse(&rows, HeadFusion::Min), vec![0.1, 0.5]);
        assert!((fuse(&rows, HeadFusion::Mean)[0] - 0.3).abs() < 1e-6);
    }
}
