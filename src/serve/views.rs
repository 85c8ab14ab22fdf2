//! The numbers the page draws every view from, computed once per
//! prediction: for each method, one map over the patches per (fusion layer,
//! head, query), plus what the Score → Align → Attend steps need (raw
//! scores, value lengths, context lengths) and what each patch lies on.
//!
//! Maps travel as base64 little-endian f32, laid out `[layer][head][query][patch]`.
//! The page builds its method menu from [`Views::methods`], so a new method
//! is one more entry in [`methods`].

use anyhow::{Context, Result};
use base64::Engine as _;
use candle::{DType, Device, Tensor, D};
use serde::Serialize;

use crate::grid::{object_at, SceneObject};
use crate::maps::{self, HeadFusion, Positions};
use crate::model::AttentionMaps;
use crate::pipeline::Prediction;

/// One query the learner can click: a command token or an action token.
#[derive(Debug, Clone, Serialize)]
pub struct Query {
    pub label: String,
    /// "word" (a command token) or "action" (the query that predicted it).
    pub kind: &'static str,
    /// The command word a token belongs to, or the action step (0-based).
    pub index: usize,
    /// Its row in the fusion head's attention maps.
    pub position: usize,
    /// The token whose query it is: the word itself, or the token before the action.
    pub from: String,
}

/// One method's maps.
#[derive(Debug, Clone, Serialize)]
pub struct MethodMaps {
    pub name: &'static str,
    /// One line for the page: what the map is.
    pub about: &'static str,
    pub layers: usize,
    pub heads: usize,
    /// base64 f32, `[layer][head][query][patch]`.
    pub data: String,
}

/// Everything the page draws from.
#[derive(Debug, Clone, Serialize)]
pub struct Views {
    pub grid: usize,
    pub layers: usize,
    pub heads: usize,
    pub queries: Vec<Query>,
    pub methods: Vec<MethodMaps>,
    /// Raw cross-attention scores before the softmax, laid out as the maps.
    pub scores: String,
    /// ‖v_i‖ of every patch's value, `[layer][head][patch]` (base64 f32).
    pub value_norms: String,
    /// ‖c‖ of each query's context vector `c = Σ α_i v_i`, `[layer][head][query]`.
    pub context_norms: Vec<f32>,
    /// What each patch lies on, when the scene has ground truth.
    pub patch_objects: Option<Vec<String>>,
}

/// f32 values as base64 of their little-endian bytes.
pub fn encode_f32(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The clickable queries: each command token, then each action token.
pub fn queries(maps: &AttentionMaps, pred: &Prediction) -> Vec<Query> {
    let pos = Positions::new(maps, pred.command.ids.len());
    let words = pred.command.tokens.iter().enumerate().map(|(i, t)| Query {
        label: t.clone(),
        kind: "word",
        index: pred.command.word_ids.get(i).copied().unwrap_or(i),
        position: pos.token(i),
        from: t.clone(),
    });
    let actions = pred.steps.iter().enumerate().map(|(k, s)| Query {
        label: s.token.text(),
        kind: "action",
        index: k,
        position: pos.predicting(k),
        from: match k {
            0 => "<boa>".to_string(),
            _ => pred.steps[k - 1].token.text(),
        },
    });
    words.chain(actions).collect()
}

/// Each layer's (1, H, S, X) tensor -> the rows of `positions`, as one
/// (L·H·Q, X) matrix on the CPU.
fn rows_of(layers: &[Tensor], positions: &Tensor) -> Result<Tensor> {
    let per_layer = layers
        .iter()
        .map(|t| {
            let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            let (_, h, _, x) = t.dims4()?;
            let q = positions.dim(0)?;
            t.index_select(positions, 2)?.reshape((h * q, x)) // (H·Q, X)
        })
        .collect::<candle::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&per_layer, 0)?)
}

/// The fusion head's cross-attention weights, as the model used them.
fn attention(m: &AttentionMaps, positions: &Tensor) -> Result<Tensor> {
    rows_of(&m.fusion_cross, positions)
}

/// Each cross-attention row traced back through the ViT's attention
/// rollout (heads fused by mean), as `--rollout`'s last panel does for `<boa>`.
fn rollout(m: &AttentionMaps, positions: &Tensor) -> Result<Tensor> {
    let r = maps::rollout(&m.vision, HeadFusion::Mean)?;
    let r = r
        .last()
        .context("the model has no vision layers")?
        .to_device(&Device::Cpu)?;
    Ok(attention(m, positions)?.matmul(&r)?)
}

/// Relevance (Chefer et al. 2021) has one map per query, not per layer and
/// head: the same row is repeated for every layer and head.
fn relevance(m: &AttentionMaps, positions: &Tensor, rows: Option<&Tensor>) -> Result<Tensor> {
    let rows = rows
        .context("no relevance was computed")?
        .index_select(positions, 0)?; // (Q, N)
    let layers = m.fusion_cross.len();
    let heads = m.fusion_cross.first().map_or(Ok(0), |t| t.dim(1))?;
    let (q, n) = rows.dims2()?;
    Ok(rows
        .unsqueeze(0)?
        .repeat((layers * heads, 1, 1))?
        .reshape((layers * heads * q, n))?)
}

type Method = (
    &'static str,
    &'static str,
    fn(&AttentionMaps, &Tensor, Option<&Tensor>) -> Result<Tensor>,
);

/// The methods, in menu order: add one here and the page shows it.
const METHODS: [Method; 3] = [
    (
        "attention",
        "the fusion head's cross-attention weights α, as the model used them",
        |m, p, _| attention(m, p),
    ),
    (
        "rollout",
        "the same weights traced back through the ViT's attention rollout (Abnar & Zuidema 2020)",
        |m, p, _| rollout(m, p),
    ),
    (
        "relevance",
        "attention weighted by its gradient through every layer (Chefer et al. 2021); one map per query, the same for every layer and head",
        relevance,
    ),
];

/// The methods' names, in menu order.
pub fn method_names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.0).collect()
}

/// Every method's maps for the given queries.
pub fn methods(
    m: &AttentionMaps,
    positions: &Tensor,
    relevance: Option<&Tensor>,
) -> Result<Vec<MethodMaps>> {
    let layers = m.fusion_cross.len();
    let heads = m.fusion_cross.first().map_or(Ok(0), |t| t.dim(1))?;
    METHODS
        .iter()
        // Relevance is computed only for an action (a refusal has no place to explain).
        .filter(|(name, ..)| *name != "relevance" || relevance.is_some())
        .map(|&(name, about, f)| {
            let data: Vec<f32> = f(m, positions, relevance)?.flatten_all()?.to_vec1()?;
            Ok(MethodMaps {
                name,
                about,
                layers,
                heads,
                data: encode_f32(&data),
            })
        })
        .collect()
}

/// The views of one prediction made with `capture = true`; `relevance` is
/// `faithfulness::relevance_rows` of it, (S, N).
pub fn build(
    pred: &Prediction,
    grid: usize,
    objects: &[SceneObject],
    relevance: Option<&Tensor>,
) -> Result<Views> {
    let m = pred
        .maps
        .as_ref()
        .context("the attention maps were not captured")?;
    let queries = queries(m, pred);
    let rows = m.fusion_cross.first().map_or(Ok(0), |t| t.dim(2))?;
    if let Some(q) = queries.iter().find(|q| q.position >= rows) {
        anyhow::bail!(
            "query {} lies outside the fusion maps ({rows} rows)",
            q.position
        );
    }
    let idx: Vec<u32> = queries.iter().map(|q| q.position as u32).collect();
    let positions = Tensor::new(idx.as_slice(), &Device::Cpu)?;
    let heads = m.fusion_cross.first().map_or(Ok(0), |t| t.dim(1))?;

    let values: Vec<Tensor> = m
        .fusion_cross_values
        .iter()
        .map(|v| v.to_device(&Device::Cpu)?.to_dtype(DType::F32))
        .collect::<candle::Result<_>>()?;
    let mut value_norms = Vec::new();
    let mut context_norms = Vec::new();
    for (w, v) in m.fusion_cross.iter().zip(&values) {
        value_norms.extend(
            v.sqr()?
                .sum(D::Minus1)?
                .sqrt()?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
        let w = w.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let c = w.index_select(&positions, 2)?.matmul(v)?; // (1, H, Q, D)
        context_norms.extend(
            c.sqr()?
                .sum(D::Minus1)?
                .sqrt()?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
    }
    let scores: Vec<f32> = rows_of(&m.fusion_cross_scores, &positions)?
        .flatten_all()?
        .to_vec1()?;
    Ok(Views {
        grid,
        layers: m.fusion_cross.len(),
        heads,
        methods: methods(m, &positions, relevance)?,
        scores: encode_f32(&scores),
        value_norms: encode_f32(&value_norms),
        context_norms,
        patch_objects: (!objects.is_empty())
            .then(|| (0..grid * grid).map(|p| object_at(objects, p)).collect()),
        queries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_values_round_trip_through_base64() {
        let v = [0.0f32, 1.5, -2.25, f32::MAX];
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encode_f32(&v))
            .unwrap();
        let back: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, v);
    }
}
