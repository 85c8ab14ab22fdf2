//! `vla-demo explain`: the three steps of attention for the first action
//! token, with the model's real numbers.
//!
//! The query is `<boa>`, the position whose output predicts the first action
//! token; the keys and values are the image patches; the block is the last
//! fusion block, and one head is followed (the one that looks most sharply,
//! unless `--head` says otherwise), because the softmax happens per head.
//!
//! 1. **Score**: `e_i = q·k_i/√d` for every patch `i` (the captured raw scores;
//!    with `cross_geometry`, plus the query's position term, see
//!    [`crate::model::geometry::Geometry`]; with `named_match`, plus the
//!    named match, see [`crate::model::named::NamedReader`]).
//! 2. **Align**: `α = softmax(e)`, recomputed here with the model's own
//!    [`align`] and checked against the weights the model used; they sum to 1.
//! 3. **Attend**: `c = Σ α_i v_i` with the model's own [`attend`]; the patches
//!    whose `α_i v_i` are longest contribute most.
//!
//! Then the word × object table (the notes' "Le chat est noir" alignment
//! table, with objects in place of French words), the decoder's causal
//! mask as a ○/× table, and the fusion head's mask (with `prefix_lm`, the
//! words see each other both ways; the action tokens stay causal). This file
//! computes them; `explain/printout.rs` writes them as text.

use anyhow::{bail, Context, Result};
use candle::{DType, Device, Tensor};
use serde::Serialize;

use crate::grid::{object_at, SceneObject};
use crate::maps::{self, Positions};
use crate::model::attention::{align, attend, causal_mask, causal_padded_mask, prefix_padded_mask};
use crate::model::pointer::patch_centres;
use crate::model::{AttentionMaps, Config, ScoreFn};
use crate::pipeline::Prediction;

mod printout;

#[derive(Debug, Clone, Serialize)]
pub struct PatchLine {
    pub index: usize,
    pub row: usize,
    pub col: usize,
    pub score: f32,
    pub weight: f32,
    /// Length of α_i v_i.
    pub contribution: f32,
    /// That length as a share of the sum over all patches.
    pub share: f32,
    pub on: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub command: String,
    pub layer: usize,
    pub layers: usize,
    /// 1-based head followed, and why.
    pub head: usize,
    pub heads: usize,
    pub head_choice: String,
    pub score_fn: String,
    pub head_dim: usize,
    pub num_patches: usize,
    /// Step 1: the top patches by raw score.
    pub top_by_score: Vec<PatchLine>,
    pub score_min: f32,
    pub score_mean: f32,
    pub score_max: f32,
    /// Step 2: Σ α over all patches, and the largest gap between α
    /// recomputed from the scores and the α the model used.
    pub weight_sum: f64,
    pub align_check: f32,
    /// Step 3: the context vector and its top contributors.
    pub context_norm: f32,
    pub context_first: Vec<f32>,
    pub top_by_contribution: Vec<PatchLine>,
    /// Cosine between the context and the sum over the top contributors only.
    pub top_cosine: f32,
    /// With position terms: where the head looked, `Σ α (u, v, u² + v²)`,
    /// which the block adds to its output through a learned projection.
    pub looked: Option<[f32; 3]>,
    /// Word × object table: rows (word, per-object mean attention per patch, table).
    pub objects: Vec<String>,
    pub word_object: Vec<(String, Vec<f32>)>,
    pub mask_tokens: Vec<String>,
    /// mask[q][k]: may query token q see key token k?
    pub causal_mask: Vec<Vec<bool>>,
    /// Whether the fusion head reads the words both ways (`prefix_lm`).
    pub prefix_lm: bool,
    /// The fusion head's self-attention mask over the words, `<boa>` and
    /// the first action token: `fusion_mask_tokens` label its rows and columns.
    pub fusion_mask_tokens: Vec<String>,
    pub fusion_mask: Vec<Vec<bool>>,
    /// Step 4: what the first action token said: its text and probability,
    /// and P(<absent>), P(<ambiguous>) beside it.
    pub first_token: String,
    pub first_prob: f32,
    pub refusal: [f32; 2],
}

/// Builds the explanation from a prediction made with `capture = true`.
pub fn explain(
    pred: &Prediction,
    cfg: &Config,
    command: &str,
    objects: &[SceneObject],
    head: Option<usize>,
    top: usize,
) -> Result<Explanation> {
    let maps = pred
        .maps
        .as_ref()
        .context("explain needs the attention maps: predict with capture = true")?;
    let layers = maps.fusion_cross.len();
    let last = layers
        .checked_sub(1)
        .context("the model has no fusion layers")?;
    let q = maps.text_len; // <boa>
    let weights = maps::query_row(&maps.fusion_cross[last], q)?; // [head][patch]
    let scores = maps::query_row(&maps.fusion_cross_scores[last], q)?;
    let heads = weights.len();
    let (h, head_choice) = match head {
        Some(h) if h >= 1 && h <= heads => (h - 1, "chosen with --head".to_string()),
        Some(h) => bail!("--head {h} is out of range: this model has heads 1 to {heads}"),
        None => {
            let peak = |w: &Vec<f32>| w.iter().copied().fold(0.0f32, f32::max);
            let best = (0..heads)
                .max_by(|&a, &b| peak(&weights[a]).total_cmp(&peak(&weights[b])))
                .unwrap_or(0);
            (
                best,
                "the head with the sharpest peak; pick another with --head".to_string(),
            )
        }
    };
    let n = scores[h].len();
    let device = Device::Cpu;

    // Step 2 with the model's own softmax, checked against the weights it used.
    let e = Tensor::from_vec(scores[h].clone(), (1, 1, 1, n), &device)?;
    let alpha = align(&e)?;
    let alpha_v: Vec<f32> = alpha.flatten_all()?.to_vec1()?;
    let align_check = alpha_v
        .iter()
        .zip(&weights[h])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let weight_sum: f64 = alpha_v.iter().map(|&a| a as f64).sum();

    // Step 3 with the model's own weighted sum.
    let values = maps.fusion_cross_values[last]
        .to_dtype(DType::F32)?
        .to_device(&device)?
        .narrow(1, h, 1)?; // (1, 1, N, D)
    let head_dim = values.dim(3)?;
    let context: Vec<f32> = attend(&alpha, &values)?.flatten_all()?.to_vec1()?;
    let v_rows = values.squeeze(0)?.squeeze(0)?.to_vec2::<f32>()?; // (N, D)
    let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
    let contrib: Vec<f32> = v_rows
        .iter()
        .zip(&alpha_v)
        .map(|(v, a)| a * norm(v))
        .collect();
    let total: f32 = contrib.iter().sum::<f32>().max(f32::MIN_POSITIVE);

    let line = |i: usize| PatchLine {
        index: i,
        row: i / cfg.grid(),
        col: i % cfg.grid(),
        score: scores[h][i],
        weight: alpha_v[i],
        contribution: contrib[i],
        share: contrib[i] / total,
        on: (!objects.is_empty()).then(|| object_at(objects, i)),
    };
    let top_of = |xs: &[f32]| {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| xs[b].total_cmp(&xs[a]));
        order.truncate(top.max(1));
        order
    };
    let by_score = top_of(&scores[h]);
    let by_contrib = top_of(&contrib);
    let partial: Vec<f32> = (0..head_dim)
        .map(|d| by_contrib.iter().map(|&i| alpha_v[i] * v_rows[i][d]).sum())
        .collect();
    let dot: f32 = partial.iter().zip(&context).map(|(a, b)| a * b).sum();
    let top_cosine = dot / (norm(&partial) * norm(&context)).max(f32::MIN_POSITIVE);
    let s = &scores[h];
    let looked = if cfg.cross_geometry {
        let centres = patch_centres(cfg.grid(), &device)?.to_vec2::<f32>()?;
        let mut sum = [0f32; 3];
        for (a, xy) in alpha_v.iter().zip(&centres) {
            let (u, v) = (2.0 * xy[0] - 1.0, 2.0 * xy[1] - 1.0);
            for (acc, x) in sum.iter_mut().zip([u, v, u * u + v * v]) {
                *acc += a * x;
            }
        }
        Some(sum)
    } else {
        None
    };

    let (objects_row, word_object) = word_object_table(maps, pred, objects)?;
    let len = pred.command.ids.len();
    let mask = causal_mask(len, &device)?.to_vec2::<f32>()?;
    // [words, <boa>, a_1]: enough to show how the words and the actions differ.
    let fusion = if cfg.prefix_lm {
        prefix_padded_mask(&[len], len, 2, &device)?
    } else {
        causal_padded_mask(&[len + 2], len + 2, &device)?
    };
    let fusion = fusion.squeeze(0)?.squeeze(0)?.to_vec2::<f32>()?;
    let mut fusion_mask_tokens = pred.command.tokens.clone();
    fusion_mask_tokens.extend(["<boa>".to_string(), "a_1".to_string()]);
    let visible = |m: &[Vec<f32>]| -> Vec<Vec<bool>> {
        m.iter()
            .map(|r| r.iter().map(|x| x.is_finite()).collect())
            .collect()
    };
    Ok(Explanation {
        command: command.to_string(),
        layer: last + 1,
        layers,
        head: h + 1,
        heads,
        head_choice,
        score_fn: {
            let content = match cfg.cross_score_fn {
                ScoreFn::ScaledDot => format!("scaled dot product, e = q·k/√d with d = {head_dim}"),
                ScoreFn::Dot => "dot product, e = q·k".into(),
                ScoreFn::Additive => "additive (Bahdanau), e = vᵀ tanh(q + k)".into(),
            };
            let content = if cfg.cross_geometry {
                format!("{content}, plus a position term g·(u, v, u²+v²) the query chose")
            } else {
                content
            };
            if cfg.named_match {
                let floor = cfg
                    .named_floor
                    .map_or(String::new(), |f| format!(", raised to at least {f}"));
                format!("{content}, plus the named match w·m_i: m_i is how well the patch head's reading of patch i fits the colour and the shape the command names (a log-probability{floor}), w a learned weight")
            } else {
                content
            }
        },
        head_dim,
        num_patches: n,
        top_by_score: by_score.iter().map(|&i| line(i)).collect(),
        score_min: s.iter().copied().fold(f32::INFINITY, f32::min),
        score_mean: s.iter().sum::<f32>() / n as f32,
        score_max: s.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        weight_sum,
        align_check,
        context_norm: norm(&context),
        context_first: context.iter().take(6).copied().collect(),
        top_by_contribution: by_contrib.iter().map(|&i| line(i)).collect(),
        top_cosine,
        looked,
        objects: objects_row,
        word_object,
        mask_tokens: pred.command.tokens.clone(),
        causal_mask: visible(&mask),
        prefix_lm: cfg.prefix_lm,
        fusion_mask_tokens,
        fusion_mask: visible(&fusion),
        first_token: pred
            .steps
            .first()
            .map_or(String::new(), |st| st.token.text()),
        first_prob: pred.steps.first().map_or(0.0, |st| st.prob),
        refusal: pred.steps.first().map_or([0.0; 2], |st| st.refusal),
    })
}

/// Column names, and rows of (label, one value per column).
type WordObjectTable = (Vec<String>, Vec<(String, Vec<f32>)>);

/// Rows: each command word (the mean of its tokens' queries) and `<boa>`;
/// columns: each object, then the table (patches on no object). A cell is
/// the mean attention per patch, weighting patches by how much of them the
/// object covers; last fusion layer, heads averaged.
fn word_object_table(
    maps: &AttentionMaps,
    pred: &Prediction,
    objects: &[SceneObject],
) -> Result<WordObjectTable> {
    if objects.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let last = maps.fusion_cross.len() - 1;
    let pos = Positions::new(maps, pred.command.ids.len());
    let n = objects[0].coverage.len();
    let on_any: Vec<f32> = (0..n)
        .map(|p| 1.0 - objects.iter().map(|o| o.coverage[p]).sum::<f32>().min(1.0))
        .collect();
    let mut columns: Vec<&[f32]> = objects.iter().map(|o| o.coverage.as_slice()).collect();
    columns.push(&on_any);
    let cells = |att: &[f32]| -> Vec<f32> {
        columns
            .iter()
            .map(|cov| {
                let w: f32 = cov.iter().sum();
                if w > 0.0 {
                    att.iter().zip(cov.iter()).map(|(a, c)| a * c).sum::<f32>() / w
                } else {
                    0.0
                }
            })
            .collect()
    };
    let mut rows = Vec::new();
    for (w, word) in pred.command.words.iter().enumerate() {
        let qs: Vec<Vec<f32>> = (0..pred.command.ids.len())
            .filter(|&i| pred.command.word_ids.get(i) == Some(&w))
            .map(|i| maps::cross_mean(maps, last, pos.token(i)))
            .collect::<Result<_>>()?;
        if !qs.is_empty() {
            rows.push((
                word.clone(),
                cells(&maps::fuse(&qs, maps::HeadFusion::Mean)),
            ));
        }
    }
    rows.push((
        "<boa>".to_string(),
        cells(&maps::cross_mean(maps, last, pos.boa())?),
    ));
    let mut names: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
    names.push("table".into());
    Ok((names, rows))
}
