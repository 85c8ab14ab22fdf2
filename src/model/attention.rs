//! One multi-head attention module for every attention in the model: ViT
//! self-attention over patches, causal self-attention in the text decoder and
//! the fusion head, and cross-attention from words/actions to image patches.
//!
//! Every call walks the three steps of attention (Bahdanau et al. 2014;
//! Vaswani et al. 2017):
//!
//! 1. **Score**: how well each query matches each key, `e = score(q, k)`;
//! 2. **Align**: turn scores into weights that sum to 1, `α = softmax(e)`;
//! 3. **Attend**: mix the values with those weights, `c = Σ α v`.
//!
//! The score function is a config choice ([`ScoreFn`]): additive (Bahdanau),
//! dot (Luong) or scaled dot-product (Transformer, the default). The weights
//! `α` are returned with the output, so a caller can draw them.

use candle::{Device, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::linear::{linear, Linear};
use super::record::{self, Site};
use serde::{Deserialize, Serialize};

/// How a query and a key are compared (step 1, Score).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFn {
    /// Bahdanau (2014): `vᵀ tanh(W_q q + W_k k)`, a tiny learned network per pair.
    Additive,
    /// Luong (2015): `qᵀ k`.
    Dot,
    /// Vaswani (2017): `qᵀ k / √d_k`, which keeps the scores' spread independent
    /// of the head size so the softmax does not saturate.
    #[default]
    ScaledDot,
}

impl std::str::FromStr for ScoreFn {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "additive" => Ok(ScoreFn::Additive),
            "dot" => Ok(ScoreFn::Dot),
            "scaled_dot" | "scaled-dot" | "sdpa" => Ok(ScoreFn::ScaledDot),
            _ => anyhow::bail!("unknown score function {s:?}: use additive, dot or scaled_dot"),
        }
    }
}

/// Step 1 on already projected, per-head tensors.
/// `q`: (B, H, Tq, D), `k`: (B, H, Tk, D) -> scores (B, H, Tq, Tk).
/// `v_add` is the additive score's vector `v`, one per head: (H, D).
pub fn score(kind: ScoreFn, q: &Tensor, k: &Tensor, v_add: Option<&Tensor>) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    match kind {
        ScoreFn::Dot => q.matmul(&k.t()?),
        ScoreFn::ScaledDot => q.matmul(&k.t()?)? / (d as f64).sqrt(),
        ScoreFn::Additive => {
            let v = match v_add {
                Some(v) => v,
                None => candle::bail!("additive score needs its vector v"),
            };
            let h = q.dim(1)?;
            // (B, H, Tq, 1, D) + (B, H, 1, Tk, D) -> (B, H, Tq, Tk, D): every pair.
            let pair = q.unsqueeze(3)?.broadcast_add(&k.unsqueeze(2)?)?.tanh()?;
            // Project each pair onto v_h and sum over D: (B, H, Tq, Tk).
            pair.broadcast_mul(&v.reshape((1, h, 1, 1, d))?)?
                .sum(D::Minus1)
        }
    }
}

/// Step 2: scores to weights that sum to 1 over the keys. The fused softmax
/// has a backward pass, so training and the maps' gradients go through it.
pub fn align(scores: &Tensor) -> Result<Tensor> {
    crate::engine::ops::softmax_last_dim(scores)
}

/// Step 3: the weighted sum of values. `weights` (B, H, Tq, Tk), `v` (B, H, Tk, D).
pub fn attend(weights: &Tensor, v: &Tensor) -> Result<Tensor> {
    weights.matmul(v)
}

/// An additive mask that hides the future: 0 where key ≤ query, −∞ elsewhere.
/// Shape (T, T); row = query position, column = key position.
pub fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(mask, (t, t), device)
}

/// A causal mask that also hides left padding: sequence `b` starts at column
/// `t - lens[b]`. A query always sees itself, so a row is never all −∞.
/// Shape (B, 1, T, T).
pub fn causal_padded_mask(lens: &[usize], t: usize, device: &Device) -> Result<Tensor> {
    let mut mask = Vec::with_capacity(lens.len() * t * t);
    for &len in lens {
        let start = t - len.min(t);
        for i in 0..t {
            for j in 0..t {
                let visible = j == i || (j <= i && j >= start);
                mask.push(if visible { 0.0 } else { f32::NEG_INFINITY });
            }
        }
    }
    Tensor::from_vec(mask, (lens.len(), 1, t, t), device)
}

/// A prefix-LM mask over `[words, actions]`: the `t` word positions (left
/// padded; sequence `b` has `lens[b]` real words) see every real word, before
/// or after them, and the `a` action positions see every real word and the
/// actions up to themselves. The command is read both ways, the actions are
/// still generated one at a time. A query always sees itself; a padding
/// slot sees only itself. Shape (B, 1, T + A, T + A).
pub fn prefix_padded_mask(lens: &[usize], t: usize, a: usize, device: &Device) -> Result<Tensor> {
    let s = t + a;
    let mut mask = Vec::with_capacity(lens.len() * s * s);
    for &len in lens {
        let start = t - len.min(t);
        for i in 0..s {
            for j in 0..s {
                let real = i >= start && j >= start;
                let visible = j == i || (real && (j < t || j <= i));
                mask.push(if visible { 0.0 } else { f32::NEG_INFINITY });
            }
        }
    }
    Tensor::from_vec(mask, (lens.len(), 1, s, s), device)
}

/// What one attention call computed.
pub struct Attended {
    /// (B, Tq, C), after the output projection.
    pub out: Tensor,
    /// Step 2's weights, (B, H, Tq, Tk).
    pub weights: Tensor,
    /// Step 1's scores with the mask (or bias) added, (B, H, Tq, Tk): what
    /// the softmax read.
    pub scores: Tensor,
}

/// Multi-head attention with its own Q, K, V and output projections.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) o_proj: Linear,
    /// Additive score vector, (H, D); only for [`ScoreFn::Additive`].
    score_v: Option<Tensor>,
    pub(crate) num_heads: usize,
    head_dim: usize,
    score_fn: ScoreFn,
    /// Where in the model this attention sits, for the recorder.
    site: Site,
}

impl Attention {
    pub fn new(
        hidden: usize,
        num_heads: usize,
        score_fn: ScoreFn,
        site: Site,
        vb: VarBuilder,
    ) -> Result<Self> {
        if !hidden.is_multiple_of(num_heads) {
            candle::bail!("hidden size {hidden} is not divisible by {num_heads} heads");
        }
        let head_dim = hidden / num_heads;
        let score_v = match score_fn {
            ScoreFn::Additive => Some(vb.get_with_hints(
                (num_heads, head_dim),
                "score_v",
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0 / (head_dim as f64).sqrt(),
                },
            )?),
            _ => None,
        };
        Ok(Self {
            q_proj: linear(hidden, hidden, vb.pp("q_proj"))?,
            k_proj: linear(hidden, hidden, vb.pp("k_proj"))?,
            v_proj: linear(hidden, hidden, vb.pp("v_proj"))?,
            o_proj: linear(hidden, hidden, vb.pp("o_proj"))?,
            score_v,
            num_heads,
            head_dim,
            score_fn,
            site,
        })
    }

    pub fn score_fn(&self) -> ScoreFn {
        self.score_fn
    }

    /// (B, T, C) -> (B, H, T, D)
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        xs.reshape((b, t, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Keys and values for a context, projected and split into heads. A decoder
    /// computes these once for the image and reuses them at every step.
    pub fn project_kv(&self, ctx: &Tensor) -> Result<(Tensor, Tensor)> {
        let k = self.split_heads(&ctx.apply(&self.k_proj)?)?;
        let v = self.split_heads(&ctx.apply(&self.v_proj)?)?;
        Ok((k, v))
    }

    /// Self-attention when `ctx` is `None`, cross-attention to `ctx` otherwise.
    /// `mask` is added to the scores and broadcasts to (B, H, Tq, Tk).
    /// Returns the output (B, Tq, C) and the weights (B, H, Tq, Tk).
    pub fn forward(
        &self,
        xs: &Tensor,
        ctx: Option<&Tensor>,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let kv = self.project_kv(ctx.unwrap_or(xs))?;
        let att = self.forward_kv(xs, &kv, mask)?;
        Ok((att.out, att.weights))
    }

    /// Like [`Attention::forward`], with keys and values from
    /// [`Attention::project_kv`] (cached, or the image's).
    pub fn forward_kv(
        &self,
        xs: &Tensor,
        (k, v): &(Tensor, Tensor),
        mask: Option<&Tensor>,
    ) -> Result<Attended> {
        let (b, t, c) = xs.dims3()?;
        let q = self.split_heads(&xs.apply(&self.q_proj)?)?; // (B, H, Tq, D)
        let scores = score(self.score_fn, &q, k, self.score_v.as_ref())?; // (B, H, Tq, Tk)
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let weights = record::attention(self.site, align(&scores)?, &scores, v)?;
        let out = attend(&weights, v)?; // (B, H, Tq, D)
        let out = out.transpose(1, 2)?.reshape((b, t, c))?; // (B, Tq, C)
        Ok(Attended {
            out: out.apply(&self.o_proj)?,
            weights,
            scores,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Device {
        Device::Cpu
    }

    #[test]
    fn worked_example_softmax_of_2_5_1() {
        let e = Tensor::new(&[[2f32, 5., 1.]], &dev()).unwrap();
        let a: Vec<f32> = align(&e).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want = [0.0466, 0.9362, 0.0171];
        for (x, w) in a.iter().zip(want) {
            assert!((x - w).abs() < 5e-5, "{a:?}");
        }
    }

    /// q = [[1, 0, 1], [0, 2, 0]], k = [[1, 1, 0], [0, 1, 1]], one head.
    fn qk() -> (Tensor, Tensor) {
        let q = Tensor::new(&[[1f32, 0., 1.], [0., 2., 0.]], &dev())
            .unwrap()
            .reshape((1, 1, 2, 3))
            .unwrap();
        let k = Tensor::new(&[[1f32, 1., 0.], [0., 1., 1.]], &dev())
            .unwrap()
            .reshape((1, 1, 2, 3))
            .unwrap();
        (q, k)
    }

    fn vals(t: Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn dot_score_by_hand() {
        let (q, k) = qk();
        // q0·k0 = 1, q0·k1 = 1, q1·k0 = 2, q1·k1 = 2
        assert_eq!(
            vals(score(ScoreFn::Dot, &q, &k, None).unwrap()),
            vec![1., 1., 2., 2.]
        );
    }

    #[test]
    fn scaled_dot_score_by_hand() {
        let (q, k) = qk();
        let s = 3f32.sqrt();
        let got = vals(score(ScoreFn::ScaledDot, &q, &k, None).unwrap());
        for (g, w) in got.iter().zip([1. / s, 1. / s, 2. / s, 2. / s]) {
            assert!((g - w).abs() < 1e-6);
        }
    }

    #[test]
    fn additive_score_by_hand() {
        let (q, k) = qk();
        let v = Tensor::new(&[[1f32, -1., 0.5]], &dev()).unwrap();
        let got = vals(score(ScoreFn::Additive, &q, &k, Some(&v)).unwrap());
        let t = |x: f32| x.tanh();
        // vᵀ tanh(q_i + k_j)
        let want = [
            t(2.) - t(1.) + 0.5 * t(1.), // q0+k0 = [2, 1, 1]
            t(1.) - t(1.) + 0.5 * t(2.), // q0+k1 = [1, 1, 2]
            t(1.) - t(3.) + 0.5 * t(0.), // q1+k0 = [1, 3, 0]
            t(0.) - t(3.) + 0.5 * t(1.), // q1+k1 = [0, 3, 1]
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn causal_mask_hides_the_future() {
        let m = causal_mask(3, &dev()).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(m[0][0], 0.0);
        assert!(m[0][1].is_infinite() && m[0][2].is_infinite() && m[1][2].is_infinite());
        assert_eq!(m[2], vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn padded_mask_never_leaves_a_row_empty() {
        let m = causal_padded_mask(&[1, 3], 3, &dev()).unwrap();
        let m: Vec<f32> = vals(m);
        for row in m.chunks(3) {
            assert!(row.contains(&0.0));
        }
        // sequence 0 has one real token at column 2: row 2 sees only column 2.
        assert_eq!(&m[6..9], &[f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0]);
    }

    #[test]
    fn prefix_mask_reads_the_words_both_ways_and_the_actions_causally() {
        // Three word slots (one padding slot), two actions.
        let m = prefix_padded_mask(&[2], 3, 2, &dev()).unwrap();
        let m: Vec<Vec<bool>> = vals(m)
            .chunks(5)
            .map(|r| r.iter().map(|x| *x == 0.0).collect())
            .collect();
        let (o, x) = (true, false);
        assert_eq!(m[0], vec![o, x, x, x, x]); // padding sees only itself
        assert_eq!(m[1], vec![x, o, o, x, x]); // the first word sees the word after it
        assert_eq!(m[2], vec![x, o, o, x, x]);
        assert_eq!(m[3], vec![x, o, o, o, x]); // <boa>: every word, not a_1
        assert_eq!(m[4], vec![x, o, o, o, o]);
        // The action rows are the causal mask's rows.
        let c: Vec<bool> = vals(causal_padded_mask(&[4], 5, &dev()).unwrap())
            .iter()
            .map(|x| *x == 0.0)
            .collect();
        assert_eq!(&c[15..25], &[m[3].clone(), m[4].clone()].concat()[..]);
    }
}
