//! The fusion head: where words meet pixels.
//!
//! Its sequence is the command's hidden states followed by the action tokens
//! so far, starting with `<boa>`: `[w_1 .. w_T, <boa>, a_1, .., a_k]`. Each block
//! lets every position attend causally to the positions before it, then
//! **cross-attend** to the image patches (queries from text and action
//! positions, keys and values from the patches), then runs an MLP. The hidden
//! state at `<boa>` predicts `a_1`, the state at `a_1` predicts `a_2`, and so on:
//! the logits cover only the action slice of the vocabulary.
//!
//! The logits are the head's own plus the [`Pointer`]'s, which turn where
//! each action position looked into where the gripper goes, under the
//! action grammar's mask.

use candle::{Result, Tensor};
use candle_nn::{linear, Init, Linear, VarBuilder};

use super::attention::causal_padded_mask;
use super::pointer::{grammar_mask, Pointer};
use super::{Attention, Config, LayerNorm, Mlp, ScoreFn};
use crate::action::{ACTION_VOCAB, MAX_ACTION_TOKENS};

/// Self-attention, then cross-attention to the image, then an MLP; pre-LN.
#[derive(Debug, Clone)]
pub struct FusionBlock {
    norm1: LayerNorm,
    self_attn: Attention,
    norm_cross: LayerNorm,
    cross_attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

/// Outputs of one fusion block.
pub struct BlockOut {
    pub hidden: Tensor,
    /// (B, H, S, S)
    pub self_weights: Tensor,
    /// (B, H, S, N): each text/action position over the image patches.
    pub cross_weights: Tensor,
    /// (B, H, S, N): the raw cross-attention scores, before the softmax.
    pub cross_scores: Tensor,
}

impl FusionBlock {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            norm1: LayerNorm::new(h, eps, vb.pp("norm1"))?,
            self_attn: Attention::new(
                h,
                cfg.num_attention_heads,
                ScoreFn::ScaledDot,
                vb.pp("self_attn"),
            )?,
            norm_cross: LayerNorm::new(h, eps, vb.pp("norm_cross"))?,
            cross_attn: Attention::new(
                h,
                cfg.num_attention_heads,
                cfg.cross_score_fn,
                vb.pp("cross_attn"),
            )?,
            norm2: LayerNorm::new(h, eps, vb.pp("norm2"))?,
            mlp: Mlp::new(h, cfg.intermediate_size, vb.pp("mlp"))?,
        })
    }

    /// Project the image patches (B, N, C) into this block's keys and values.
    pub fn image_kv(&self, patches: &Tensor) -> Result<(Tensor, Tensor)> {
        self.cross_attn.project_kv(patches)
    }

    pub fn forward(
        &self,
        xs: &Tensor,
        image_kv: &(Tensor, Tensor),
        mask: &Tensor,
        train: bool,
    ) -> Result<BlockOut> {
        let (a, self_weights) =
            self.self_attn
                .forward(&self.norm1.forward(xs, train)?, None, Some(mask), train)?;
        let xs = (xs + a)?;
        let (c, cross_weights, cross_scores) = self.cross_attn.forward_kv(
            &self.norm_cross.forward(&xs, train)?,
            image_kv,
            None,
            train,
        )?;
        let xs = (xs + c)?;
        let hidden = (&xs + self.norm2.forward(&xs, train)?.apply(&self.mlp)?)?;
        Ok(BlockOut {
            hidden,
            self_weights,
            cross_weights,
            cross_scores,
        })
    }
}

#[derive(Debug, Clone)]
pub struct FusionHead {
    /// Where in the action an action token sits (0 = `<boa>`).
    action_position: Tensor,
    blocks: Vec<FusionBlock>,
    norm: LayerNorm,
    head: Linear,
    pointer: Pointer,
}

/// What the fusion head returns for one forward pass.
pub struct FusionOut {
    /// Logits over the action slice at each action position: (B, A, ACTION_VOCAB).
    pub logits: Tensor,
    /// Per block, when captured: (B, H, S, S) and (B, H, S, N), S = T + A.
    pub self_weights: Vec<Tensor>,
    pub cross_weights: Vec<Tensor>,
    /// Per block, when captured: raw cross scores (B, H, S, N) and the image
    /// values (B, H, N, D) they mix, for explaining step 1 and step 3.
    pub cross_scores: Vec<Tensor>,
    pub cross_values: Vec<Tensor>,
    /// The last block's cross-attention of the `<boa>` query, (B, H, N). Always
    /// returned: training can supervise it and evaluation scores it.
    pub boa_cross: Tensor,
}

impl FusionHead {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..cfg.fusion_layers)
            .map(|i| FusionBlock::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            action_position: vb.get_with_hints(
                (MAX_ACTION_TOKENS, cfg.hidden_size),
                "action_position",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            blocks,
            norm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("norm"))?,
            head: linear(cfg.hidden_size, ACTION_VOCAB, vb.pp("head"))?,
            pointer: Pointer::new(cfg, vb.pp("pointer"))?,
        })
    }

    /// Keys and values of the image for every block: compute once per image,
    /// reuse at every decoding step (the cross-attention KV cache).
    pub fn image_kv(&self, patches: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        self.blocks.iter().map(|b| b.image_kv(patches)).collect()
    }

    /// `text` (B, T, C) left-padded command states with real lengths `lens`;
    /// `actions` (B, A, C) embedded `<boa>, a_1, ..`; `image_kv` from
    /// [`FusionHead::image_kv`].
    pub fn forward(
        &self,
        text: &Tensor,
        lens: &[usize],
        actions: &Tensor,
        image_kv: &[(Tensor, Tensor)],
        capture: bool,
        train: bool,
    ) -> Result<FusionOut> {
        let (_, t, _) = text.dims3()?;
        let a = actions.dim(1)?;
        if a > MAX_ACTION_TOKENS {
            candle::bail!("{a} action positions, at most {MAX_ACTION_TOKENS}");
        }
        let actions = actions.broadcast_add(&self.action_position.narrow(0, 0, a)?)?;
        let mut xs = Tensor::cat(&[text, &actions], 1)?; // (B, S, C), S = T + A
        let total: Vec<usize> = lens.iter().map(|l| l + a).collect();
        let mask = causal_padded_mask(&total, t + a, xs.device())?.to_dtype(xs.dtype())?;
        let (mut self_weights, mut cross_weights) = (Vec::new(), Vec::new());
        let (mut cross_scores, mut cross_values) = (Vec::new(), Vec::new());
        let mut last_cross = None;
        let mut last_scores = None;
        for (block, kv) in self.blocks.iter().zip(image_kv) {
            let out = block.forward(&xs, kv, &mask, train)?;
            xs = out.hidden;
            if capture {
                self_weights.push(out.self_weights);
                cross_weights.push(out.cross_weights.clone());
                cross_scores.push(out.cross_scores.clone());
                cross_values.push(kv.1.clone());
            }
            last_cross = Some(out.cross_weights);
            last_scores = Some(out.cross_scores);
        }
        let (Some(last_cross), Some(last_scores)) = (last_cross, last_scores) else {
            candle::bail!("the fusion head needs at least one block")
        };
        let boa_cross = last_cross.narrow(2, t, 1)?.squeeze(2)?; // (B, H, N)
        let states = self.norm.forward(&xs.narrow(1, t, a)?, train)?; // (B, A, C)
        let (_, pointed) = self
            .pointer
            .forward(&states, &last_scores.narrow(2, t, a)?.contiguous()?)?;
        let grammar = grammar_mask(a, xs.device())?.to_dtype(xs.dtype())?;
        let logits = (states.apply(&self.head)? + pointed)?.broadcast_add(&grammar)?;
        Ok(FusionOut {
            logits,
            self_weights,
            cross_weights,
            cross_scores,
            cross_values,
            boa_cross,
        })
    }
}
