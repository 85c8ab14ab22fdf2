//! The maps of the methods: where attention, rollout and relevance say a
//! query looked, one value per patch.

use anyhow::{bail, Result};
use candle::Tensor;

use super::{Base, Case, Method, MAP_METHODS};
use crate::action::{ActionToken, NUM_BINS};
use crate::maps;
use crate::model::{AttentionMaps, Vla};

/// The three maps of the query that predicts the first action token, one
/// value per patch.
pub fn saliency(model: &Vla, case: &Case, base: &Base) -> Result<Vec<(Method, Vec<f32>)>> {
    MAP_METHODS
        .iter()
        .map(|&m| {
            Ok((
                m,
                map_of(model, case, &base.maps, base.first.first().copied(), m)?,
            ))
        })
        .collect()
}

/// One map of the `<boa>` query (which predicts the first token, `first`):
/// the last fusion block's cross-attention (heads averaged), that traced
/// back through the ViT's rollout, or the relevance of the first token's
/// patch column (every x bin of it, as the probes measure it).
pub fn map_of(
    model: &Vla,
    case: &Case,
    maps: &AttentionMaps,
    first: Option<ActionToken>,
    method: Method,
) -> Result<Vec<f32>> {
    let last = maps.fusion_cross.len().saturating_sub(1);
    let attention = maps::cross_mean(maps, last, maps.text_len)?;
    match method {
        Method::Attention => Ok(attention),
        Method::Rollout => match maps::rollout(&maps.vision, maps::HeadFusion::Mean)?.last() {
            Some(r) => maps::through_rollout(&attention, r),
            None => Ok(attention),
        },
        Method::Relevance => {
            let Some(first) = first else {
                bail!("the model decoded no action")
            };
            let inputs = case.inputs(case.pixels.clone(), None, 1)?;
            let boa = Tensor::new(&[[model.config().boa_token_id]], model.device())?;
            let tokens = place_tokens(first, model.config().grid());
            crate::relevance::action_map(model, &inputs, &boa, 0, &tokens, maps)
        }
        Method::Target | Method::Random => bail!("{} is an order, not a map", method.name()),
    }
}

/// The maps of the queries that predicted each of `steps` (the decoded
/// action tokens), by `method`: what `--per-token` draws for the action
/// tokens when a method other than attention is asked for.
pub fn action_maps(
    model: &Vla,
    case: &Case,
    maps: &AttentionMaps,
    steps: &[ActionToken],
    method: Method,
) -> Result<Vec<Vec<f32>>> {
    let last = maps.fusion_cross.len().saturating_sub(1);
    let rollout = maps::rollout(&maps.vision, maps::HeadFusion::Mean)?;
    let inputs = case.inputs(case.pixels.clone(), None, 1)?;
    let mut ids = vec![model.config().boa_token_id];
    let mut out = Vec::with_capacity(steps.len());
    for (k, &token) in steps.iter().enumerate() {
        let attention = maps::cross_mean(maps, last, maps.text_len + k)?;
        out.push(match (method, rollout.last()) {
            (Method::Rollout, Some(r)) => maps::through_rollout(&attention, r)?,
            (Method::Relevance, _) => {
                let prefix = Tensor::from_vec(ids.clone(), (1, k + 1), model.device())?;
                let tokens = place_tokens(token, model.config().grid());
                crate::relevance::action_map(model, &inputs, &prefix, k, &tokens, maps)?
            }
            _ => attention,
        });
        ids.push(model.action_id(token));
    }
    Ok(out)
}

/// Relevance of every fusion position for the first action token (rows
/// `R_si` of [`crate::relevance::relevance`], (S, N)), with row
/// `text_len + k` replaced by action token k's own relevance for k ≥ 1:
/// one map per clickable query, as the browser page shows them.
pub fn relevance_rows(
    model: &Vla,
    case: &Case,
    maps: &AttentionMaps,
    steps: &[ActionToken],
) -> Result<Tensor> {
    let Some(&first) = steps.first() else {
        bail!("the model decoded no action")
    };
    let inputs = case.inputs(case.pixels.clone(), None, 1)?;
    // The whole decoded sequence, as the maps have it, so that every query
    // has a row; the later positions cannot change the first token's output.
    let mut ids = vec![model.config().boa_token_id];
    ids.extend(steps[..steps.len() - 1].iter().map(|t| model.action_id(*t)));
    let prefix = Tensor::from_vec(ids.clone(), (1, ids.len()), model.device())?;
    let grid = model.config().grid();
    let whole =
        crate::relevance::relevance(model, &inputs, &prefix, 0, &place_tokens(first, grid))?;
    let mut rows: Vec<Vec<f32>> = whole.to_vec2::<f32>()?;
    let later = action_maps(model, case, maps, steps, Method::Relevance)?;
    for (k, row) in later.into_iter().enumerate().skip(1) {
        if let Some(r) = rows.get_mut(maps.text_len + k) {
            *r = row;
        }
    }
    let n = rows.first().map_or(0, Vec::len);
    let s = rows.len();
    Ok(Tensor::from_vec(
        rows.concat(),
        (s, n),
        &candle::Device::Cpu,
    )?)
}

/// What a relevance map explains for token `t`: its place at the grid's
/// resolution (every x bin of its patch column, every y bin of its patch
/// row), or the token itself.
pub(super) fn place_tokens(t: ActionToken, grid: usize) -> Vec<usize> {
    let patch = |bin: usize| bin * grid / NUM_BINS;
    match t {
        ActionToken::X(i) => (0..NUM_BINS)
            .filter(|&j| patch(j) == patch(i as usize))
            .collect(),
        ActionToken::Y(i) => (0..NUM_BINS)
            .filter(|&j| patch(j) == patch(i as usize))
            .map(|j| NUM_BINS + j)
            .collect(),
        other => vec![other.index()],
    }
}
