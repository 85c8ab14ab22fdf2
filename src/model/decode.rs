//! Choosing each action token, as [`crate::model::Vla::generate`] decodes:
//! the grammar allows only tokens that keep the action well formed (x, then
//! y, then a gripper, then `<eoa>` or the next waypoint); the first token
//! weighs acting against refusing as a whole before any bin is picked; and
//! the bin is taken greedily or sampled (temperature, top-k) through
//! candle-transformers' `LogitsProcessor`.

use candle::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::action::{self, ActionToken, ACTION_VOCAB};

/// Decoding options. `temperature: None` (or 0) means greedy.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Decoding {
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
}

impl Decoding {
    pub(crate) fn sampling(&self) -> Sampling {
        match (self.temperature.filter(|t| *t > 0.0), self.top_k) {
            (None, _) => Sampling::ArgMax,
            (Some(temperature), Some(k)) => Sampling::TopK { k, temperature },
            (Some(temperature), None) => Sampling::All { temperature },
        }
    }
}

/// One decoded action token with the model's own probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub token: ActionToken,
    pub prob: f32,
    /// The three most likely tokens at this step, best first.
    pub top: Vec<(ActionToken, f32)>,
    /// P(`<absent>`) and P(`<ambiguous>`) at this step (0 where not allowed).
    pub refusal: [f32; 2],
}

/// The decoder refuses when [`refusal_score`] is above this: when the
/// stronger refusal outweighs acting.
pub const REFUSAL_THRESHOLD: f32 = 0.5;

/// How strongly a first step refuses, from its P(`<absent>`) and
/// P(`<ambiguous>`): the stronger refusal's share of itself and acting,
/// where P(act) = 1 − both. Above one half exactly when that refusal is
/// more likely than acting (see [`choose`]).
pub fn refusal_score(refusal: [f32; 2]) -> f32 {
    let strongest = refusal[0].max(refusal[1]);
    let act = (1.0 - refusal[0] - refusal[1]).max(0.0);
    if strongest + act > 0.0 {
        strongest / (strongest + act)
    } else {
        0.0
    }
}

/// Picks the next token from one row of action logits, allowing only tokens
/// that keep the action well formed.
///
/// The first token is chosen in two levels. An action's first token is one
/// of 256 x bins, which share the probability of acting between them, while
/// each refusal is one token: comparing tokens one by one would let a 12%
/// `<absent>` beat a confident action spread over three neighbouring bins.
/// So the decoder first compares P(act) = Σ P(x bin) with P(`<absent>`) and
/// P(`<ambiguous>`) ([`refusal_score`]), and only then picks (or samples) a bin.
pub(crate) fn choose(
    row: &[f32],
    prefix: &[ActionToken],
    processor: &mut LogitsProcessor,
    device: &Device,
) -> anyhow::Result<Step> {
    let allowed = |i: usize| action::allowed(prefix, i);
    let masked: Vec<f32> = row
        .iter()
        .enumerate()
        .map(|(i, &x)| if allowed(i) { x } else { f32::NEG_INFINITY })
        .collect();
    // The model's own probabilities (temperature 1), for the printout.
    let max = masked.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = masked.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let probs: Vec<f32> = exp.iter().map(|e| e / sum).collect();
    let refusal = [
        probs[ActionToken::Absent.index()],
        probs[ActionToken::Ambiguous.index()],
    ];
    let index = if prefix.is_empty() && refusal_score(refusal) > REFUSAL_THRESHOLD {
        if refusal[0] >= refusal[1] {
            ActionToken::Absent.index()
        } else {
            ActionToken::Ambiguous.index()
        }
    } else {
        // Acting: the refusals are out of the running.
        let acting: Vec<f32> = masked
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let outcome =
                    i == ActionToken::Absent.index() || i == ActionToken::Ambiguous.index();
                if outcome {
                    f32::NEG_INFINITY
                } else {
                    x
                }
            })
            .collect();
        processor.sample(&Tensor::from_vec(acting, ACTION_VOCAB, device)?)? as usize
    };
    let mut order: Vec<usize> = (0..ACTION_VOCAB).filter(|&i| allowed(i)).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let top = order
        .iter()
        .take(3)
        .map(|&i| Ok((ActionToken::from_index(i)?, probs[i])))
        .collect::<anyhow::Result<_>>()?;
    Ok(Step {
        token: ActionToken::from_index(index)?,
        prob: probs[index],
        top,
        refusal,
    })
}
