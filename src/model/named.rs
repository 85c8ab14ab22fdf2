//! The named object: what colour and shape the command asks for, matched
//! against what the patch head reads in each patch (`named_match`).
//!
//! A query that has only ever seen "green cup" and "red block" has no
//! reason to look for a *green block* as one thing. This module reads the
//! two words apart and matches them one at a time:
//!
//! 1. **Reading the command.** A gate scores every word's state, `g_t =
//!    softmax_t(w_g · h_t)`, and the command's reading is one linear layer on
//!    the gated sum, `r = W_r Σ_t g_t h_t`: logits over the patch head's
//!    colours (class 0 now meaning "no colour named") and its shapes.
//!    Training supervises it with the colour and shape of the object the
//!    command names (the target, never a landmark; the name a refusal uses).
//! 2. **Matching each patch.** With `q` the reading's two distributions and
//!    `p_i` the patch head's for patch `i`,
//!    `m_i = log(q_0 + Σ_{c≥1} q_c p_ic + ε) + log(Σ_{s≥1} q_s p_is + ε)`:
//!    the log-probability that patch `i` shows the named colour (any colour,
//!    when none is named) and, apart, the named shape. With `named_floor`
//!    `f`, the match is `max(m_i, f)`: a patch that fits half the name
//!    (about `log ε ≈ −4.6`) then scores the same as the bare table, so an
//!    absent name biases every patch alike and leaves the choice to the
//!    content scores, which is where "not here" is learned.
//! 3. **Biasing the action queries.** In every fusion block, the cross
//!    attention score of action position `k`, head `h`, on patch `i` gains
//!    `w_{k,h} m_i`, a learned weight per block, position and head. The
//!    weights start at 1 for the two queries that read the first x and y
//!    and 0 elsewhere (place's later queries read a bowl the reading does
//!    not name). The words' own rows are left alone.
//!
//! The match only biases scores; attention is still the one softmax of
//! `attention.rs`, and `explain` shows the biased scores.

use candle::{Result, Tensor, D};
use candle_nn::ops::softmax;
use candle_nn::{Init, Module, VarBuilder};

use super::linear::{linear, Linear};
use super::Config;
use crate::action::MAX_ACTION_TOKENS;
use crate::grid::{PATCH_COLORS, PATCH_SHAPES};

/// The floor under each match term: a patch that shows neither the colour
/// nor the shape scores `2 log ε ≈ −9.2`, not −∞.
const EPS: f64 = 1e-2;

#[derive(Debug, Clone)]
pub struct NamedReader {
    gate: Linear,
    read: Linear,
    /// Per fusion block, `w` (MAX_ACTION_TOKENS, H): the starting schedule
    /// plus the learned `weight_change.{block}`.
    weights: Vec<Tensor>,
}

impl NamedReader {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.num_attention_heads;
        let start: Vec<f32> = (0..MAX_ACTION_TOKENS)
            .flat_map(|k| std::iter::repeat_n(if k < 2 { 1.0 } else { 0.0 }, h))
            .collect();
        let start =
            Tensor::from_vec(start, (MAX_ACTION_TOKENS, h), vb.device())?.to_dtype(vb.dtype())?;
        // Each block's weights are the schedule plus a learned change from it.
        let weights = (0..cfg.fusion_layers)
            .map(|i| {
                let change = vb.get_with_hints(
                    (MAX_ACTION_TOKENS, h),
                    &format!("weight_change.{i}"),
                    Init::Const(0.0),
                )?;
                change + &start
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            gate: linear(cfg.hidden_size, 1, vb.pp("gate"))?,
            read: linear(cfg.hidden_size, PATCH_COLORS + PATCH_SHAPES, vb.pp("read"))?,
            weights,
        })
    }

    /// The reading of each command, (B, PATCH_COLORS + PATCH_SHAPES) logits,
    /// from its word states `words` (B, T, C), left-padded to real lengths
    /// `lens`.
    pub fn read(&self, words: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let (b, t, _) = words.dims3()?;
        let pad: Vec<f32> = lens
            .iter()
            .flat_map(|&l| (0..t).map(move |i| if i + l < t { -1e4 } else { 0.0 }))
            .collect();
        let pad = Tensor::from_vec(pad, (b, t, 1), words.device())?.to_dtype(words.dtype())?;
        let gate = softmax(&(self.gate.forward(words)? + pad)?, 1)?; // (B, T, 1)
        let pooled = words.broadcast_mul(&gate)?.sum(1)?; // (B, C)
        self.read.forward(&pooled)
    }

    /// The match of every patch with every command's reading: `named` (B,
    /// colours + shapes) logits from [`Self::read`], `patches` (B, N,
    /// colours + shapes) the patch head's logits for each command's image,
    /// `floor` the lowest match (`named_floor`). Returns (B, N).
    pub fn matches(named: &Tensor, patches: &Tensor, floor: Option<f64>) -> Result<Tensor> {
        let part = |t: &Tensor, first: usize, n: usize| {
            softmax(&t.narrow(D::Minus1, first, n)?, D::Minus1)
        };
        let (qc, qs) = (
            part(named, 0, PATCH_COLORS)?,
            part(named, PATCH_COLORS, PATCH_SHAPES)?,
        );
        let (pc, ps) = (
            part(patches, 0, PATCH_COLORS)?,
            part(patches, PATCH_COLORS, PATCH_SHAPES)?,
        );
        // Σ_{c≥1} q_c p_ic: (B, N, K) x (B, K, 1), class 0 left out.
        let fits = |q: &Tensor, p: &Tensor, k: usize| -> Result<Tensor> {
            let (q, p) = (q.narrow(1, 1, k - 1)?, p.narrow(2, 1, k - 1)?);
            p.contiguous()?
                .matmul(&q.unsqueeze(2)?.contiguous()?)?
                .squeeze(2)
        };
        let any_colour = qc.narrow(1, 0, 1)?; // (B, 1)
        let colour = fits(&qc, &pc, PATCH_COLORS)?.broadcast_add(&any_colour)?;
        let shape = fits(&qs, &ps, PATCH_SHAPES)?;
        let m = ((colour + EPS)?.log()? + (shape + EPS)?.log()?)?;
        match floor {
            Some(f) => m.maximum(f),
            None => Ok(m),
        }
    }

    /// Block `block`'s bias on the cross-attention scores of `t` word rows
    /// followed by action positions `first..first + a`, (B, H, t + a, N),
    /// from the matches `m` (B, N): zero on the words' rows.
    pub fn bias(
        &self,
        block: usize,
        m: &Tensor,
        t: usize,
        first: usize,
        a: usize,
    ) -> Result<Tensor> {
        let (b, n) = m.dims2()?;
        let w = self.weights[block].narrow(0, first, a)?.t()?; // (H, A)
        let h = w.dim(0)?;
        let actions = w
            .unsqueeze(0)?
            .unsqueeze(3)?
            .broadcast_mul(&m.reshape((b, 1, 1, n))?)?; // (B, H, A, N)
        if t == 0 {
            return Ok(actions);
        }
        let words = Tensor::zeros((b, h, t, n), m.dtype(), m.device())?;
        Tensor::cat(&[words, actions], 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;
    use candle_nn::VarMap;

    /// Logits that put (nearly) all of the colour on class `c` and the
    /// shape on class `s`.
    fn sure(c: usize, s: usize) -> Vec<f32> {
        let mut row = vec![-20f32; PATCH_COLORS + PATCH_SHAPES];
        row[c] = 20.0;
        row[PATCH_COLORS + s] = 20.0;
        row
    }

    #[test]
    fn a_patch_matches_best_when_it_shows_both_the_named_colour_and_shape() {
        let dev = Device::Cpu;
        // Patches: a green block, a green cup, a red block, the table
        // (colour and shape classes as the patch head's: 0 is the table).
        let (green, red, block, cup) = (2, 1, 2, 1);
        let patches: Vec<f32> = [(green, block), (green, cup), (red, block), (0, 0)]
            .iter()
            .flat_map(|&(c, s)| sure(c, s))
            .collect();
        let patches = Tensor::from_vec(patches, (1, 4, PATCH_COLORS + PATCH_SHAPES), &dev).unwrap();
        let floored = |named: Vec<f32>, floor| -> Vec<f32> {
            let named = Tensor::from_vec(named, (1, PATCH_COLORS + PATCH_SHAPES), &dev).unwrap();
            let m = NamedReader::matches(&named, &patches, floor).unwrap();
            m.squeeze(0).unwrap().to_vec1().unwrap()
        };
        let m = |named| floored(named, None);
        // "the green block": only patch 0 fits both; each half-fit scores
        // one floor, the table two.
        let both = m(sure(green, block));
        let (fit, floor) = ((1.0 + EPS as f32).ln(), (EPS as f32).ln());
        assert!((both[0] - 2.0 * fit).abs() < 1e-3, "{both:?}");
        assert!((both[1] - floor - fit).abs() < 1e-3 && (both[2] - floor - fit).abs() < 1e-3);
        assert!((both[3] - 2.0 * floor).abs() < 1e-2);
        // "the block" (colour class 0: none named): any block fits.
        let any = m(sure(0, block));
        assert!((any[0] - 2.0 * fit).abs() < 1e-3, "{any:?}");
        assert!((any[2] - 2.0 * fit).abs() < 1e-3, "{any:?}");
        assert!(any[1] < any[0] - 4.0);
        // With a floor of -3, half-fits and the table score alike: "the
        // green ball" (absent) biases no patch over another, while "the
        // green block" still singles out patch 0.
        let absent = floored(sure(green, 3), Some(-3.0));
        assert_eq!(absent, vec![-3.0; 4]);
        let present = floored(sure(green, block), Some(-3.0));
        assert!((present[0] - 2.0 * fit).abs() < 1e-3, "{present:?}");
        assert_eq!(present[1..], [-3.0; 3]);
    }

    #[test]
    fn the_bias_starts_on_the_first_waypoints_queries_and_spares_the_words() {
        let dev = Device::Cpu;
        let mut cfg = Config::tiny();
        cfg.hidden_size = 8;
        cfg.num_attention_heads = 2;
        let vars = VarMap::new();
        let vb = crate::train::init::SeededInit::var_builder(&vars, 1, &dev);
        let reader = NamedReader::new(&cfg, vb).unwrap();
        let m = Tensor::new(&[[-1f32, -2.0, -3.0]], &dev).unwrap();
        // Two words, then action positions 0..4.
        let bias = reader.bias(1, &m, 2, 0, 4).unwrap();
        assert_eq!(bias.dims(), &[1, 2, 6, 3]);
        let rows: Vec<Vec<Vec<f32>>> = bias.squeeze(0).unwrap().to_vec3().unwrap();
        for head in &rows {
            assert_eq!(head[0], vec![0.0; 3]);
            assert_eq!(head[1], vec![0.0; 3]);
            assert_eq!(head[2], vec![-1.0, -2.0, -3.0]); // <boa>, which reads x
            assert_eq!(head[3], vec![-1.0, -2.0, -3.0]); // x, which reads y
            assert_eq!(head[4], vec![0.0; 3]);
        }
        // A decoding step: one action position, no word rows.
        let step = reader.bias(0, &m, 0, 1, 1).unwrap();
        assert_eq!(step.dims(), &[1, 2, 1, 3]);
    }

    #[test]
    fn the_reading_ignores_padding() {
        let dev = Device::Cpu;
        let mut cfg = Config::tiny();
        cfg.hidden_size = 8;
        let vars = VarMap::new();
        let vb = crate::train::init::SeededInit::var_builder(&vars, 2, &dev);
        let reader = NamedReader::new(&cfg, vb).unwrap();
        let words = Tensor::randn(0f32, 1., (1, 3, 8), &dev).unwrap();
        let padded = Tensor::cat(
            &[&Tensor::randn(0f32, 9., (1, 2, 8), &dev).unwrap(), &words],
            1,
        )
        .unwrap();
        let read = |w: &Tensor| -> Vec<f32> {
            let r = reader.read(w, &[3]).unwrap();
            r.flatten_all().unwrap().to_vec1().unwrap()
        };
        let (a, b) = (read(&words), read(&padded));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
}
