//! Choosing each action token, as [`crate::model::Vla::generate`] decodes:
//! the grammar allows only tokens that keep the action well formed (x, then
//! y, then a gripper, then `<eoa>` or the next waypoint); the first token
//! weighs acting against refusing as a whole before any bin is picked; and
//! the bin is taken greedily or sampled (temperature, top-k) through
//! candle-transformers' `LogitsProcessor`.

use candle::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::action::{self, ActionToken, ACTION_VOCAB};

/// Temperatures below this decode greedily: their limit. Logits divided by
/// a temperature of 1e-40 overflow to infinity and the sampler would fail;
/// at 1e-6 sampling already takes the most likely token.
pub const GREEDY_BELOW: f64 = 1e-6;

/// Decoding options. `temperature: None`, 0 or anything below
/// [`GREEDY_BELOW`] means greedy.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Decoding {
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
}

impl Decoding {
    pub(crate) fn sampling(&self) -> Sampling {
        match (self.temperature.filter(|t| *t >= GREEDY_BELOW), self.top_k) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f64, top_k: Option<usize>) -> Sampling {
        Decoding {
            temperature: Some(temperature),
            top_k,
            seed: 0,
        }
        .sampling()
    }

    /// A temperature so small that logits / temperature would overflow
    /// decodes as its limit, greedily, instead of failing in the sampler.
    #[test]
    fn tiny_temperatures_are_greedy() {
        for t in [0.0, 1e-45, 1e-40, 1e-38, 1e-7] {
            assert!(matches!(sampling(t, None), Sampling::ArgMax), "{t}");
            assert!(matches!(sampling(t, Some(5)), Sampling::ArgMax), "{t}");
        }
        assert!(matches!(sampling(GREEDY_BELOW, None), Sampling::All { .. }));
        assert!(matches!(
            sampling(1.0, Some(5)),
            Sampling::TopK { k: 5, .. }
        ));
        // At the floor itself the sampler still works on real logits.
        let logits = Tensor::new(&[30f32, -30.0, 0.0], &Device::Cpu).unwrap();
        let mut p = LogitsProcessor::from_sampling(0, sampling(GREEDY_BELOW, None));
        assert_eq!(p.sample(&logits).unwrap(), 0);
    }
}
