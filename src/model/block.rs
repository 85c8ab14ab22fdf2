//! The one transformer block every stack is built from, and its two small
//! layers: layer norm and the MLP.
//!
//! A pre-LN block (Xiong et al. 2020) is `x + attn(ln(x))`, then
//! `x + mlp(ln(x))`. With a causal mask it is a decoder block, without one
//! an encoder block. The fusion head's blocks also cross-attend to the image
//! between the two, `x + cross(ln(x), image)`, like whisper's
//! `ResidualAttentionBlock`.

use candle::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::attention::{Attention, ScoreFn};
use super::geometry::Geometry;
use super::linear::{linear, Linear};
use super::record::Site;
use super::Config;
use crate::engine::ops;

/// Layer norm over the last dimension (Ba et al. 2016), through the fused
/// op that has a backward pass (candle 0.11's fused layer norm has none).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) eps: f64,
}

impl LayerNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        ops::layer_norm(xs, &self.weight, &self.bias, self.eps)
    }
}

/// The position-wise feed-forward network: Linear -> GELU -> Linear.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
}

impl Mlp {
    pub fn new(hidden: usize, inner: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(hidden, inner, vb.pp("fc1"))?,
            fc2: linear(inner, hidden, vb.pp("fc2"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        ops::gelu(&xs.apply(&self.fc1)?)?.apply(&self.fc2)
    }
}

/// The cross-attention part of a fusion block.
#[derive(Debug, Clone)]
pub struct CrossAttention {
    norm: LayerNorm,
    attn: Attention,
    /// Position terms (`geometry.rs`), when the config asks for them.
    geometry: Option<Geometry>,
}

/// What a block's cross-attention reads.
pub struct Memory<'a> {
    /// This block's image keys and values, (B, H, N, D).
    pub kv: &'a (Tensor, Tensor),
    /// Added to the scores, (B, 1, 1, N) or (B, H, S, N): the attention
    /// knockout and the named-object match, if any.
    pub bias: Option<&'a Tensor>,
}

/// What a block returns beside its output.
pub struct BlockOut {
    /// (B, S_new, C)
    pub hidden: Tensor,
    /// The self-attention keys and values of every position so far.
    pub self_kv: (Tensor, Tensor),
    /// The cross-attention's weights (B, H, S_new, N) and raw scores before
    /// the softmax, position terms and knockout included; `None` without
    /// a cross-attention.
    pub cross: Option<(Tensor, Tensor)>,
}

#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    pub(crate) attn: Attention,
    cross: Option<CrossAttention>,
    norm2: LayerNorm,
    pub(crate) mlp: Mlp,
}

impl Block {
    /// A block of the vision encoder or the text decoder: self-attention
    /// and MLP.
    pub fn new(cfg: &Config, site: Site, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, site, None, vb.pp("attn"), vb)
    }

    /// A fusion block: self-attention, cross-attention to the image, MLP.
    pub fn with_cross(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let cross = CrossAttention {
            norm: LayerNorm::new(h, cfg.layer_norm_eps, vb.pp("norm_cross"))?,
            attn: Attention::new(
                h,
                cfg.num_attention_heads,
                cfg.cross_score_fn,
                Site::FusionCross,
                vb.pp("cross_attn"),
            )?,
            geometry: match cfg.cross_geometry {
                true => Some(Geometry::new(cfg, vb.pp("geometry"))?),
                false => None,
            },
        };
        Self::build(cfg, Site::FusionSelf, Some(cross), vb.pp("self_attn"), vb)
    }

    fn build(
        cfg: &Config,
        site: Site,
        cross: Option<CrossAttention>,
        attn_vb: VarBuilder,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(Self {
            norm1: LayerNorm::new(h, eps, vb.pp("norm1"))?,
            attn: Attention::new(
                h,
                cfg.num_attention_heads,
                ScoreFn::ScaledDot,
                site,
                attn_vb,
            )?,
            cross,
            norm2: LayerNorm::new(h, eps, vb.pp("norm2"))?,
            mlp: Mlp::new(h, cfg.intermediate_size, vb.pp("mlp"))?,
        })
    }

    /// The image's keys and values for this block's cross-attention.
    pub fn cross_kv(&self, patches: &Tensor) -> Result<(Tensor, Tensor)> {
        match &self.cross {
            Some(cross) => cross.attn.project_kv(patches),
            None => candle::bail!("only a fusion block reads the image"),
        }
    }

    pub(crate) fn norms(&self) -> [&LayerNorm; 2] {
        [&self.norm1, &self.norm2]
    }

    /// An encoder or decoder block over `xs` (B, T, C); `mask` is added to
    /// the self-attention scores.
    pub fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.forward_with(xs, mask, None, None)?.hidden)
    }

    /// The whole block. `xs` (B, S_new, C) are the positions after the
    /// `past` ones, whose self-attention keys and values (B, H, S_past, D) a
    /// decoder kept (the KV cache; `None` for a whole sequence). `mask`
    /// (B, 1, S_new, S_past + S_new). `memory`: what the cross-attention
    /// reads (fusion blocks only).
    pub fn forward_with(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        past: Option<&(Tensor, Tensor)>,
        memory: Option<Memory>,
    ) -> Result<BlockOut> {
        let h = self.norm1.forward(xs)?;
        let (k, v) = self.attn.project_kv(&h)?;
        let self_kv = match past {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
        };
        let mut xs = (xs + self.attn.forward_kv(&h, &self_kv, mask)?.out)?;
        let cross = match (&self.cross, memory) {
            (Some(cross), Some(memory)) => {
                let (c, weights, scores) = cross.forward(&xs, memory)?;
                xs = (xs + c)?;
                Some((weights, scores))
            }
            (None, None) => None,
            _ => candle::bail!("a fusion block needs the image, and only a fusion block reads it"),
        };
        let hidden = (&xs + xs.apply(&self.norm2)?.apply(&self.mlp)?)?;
        Ok(BlockOut {
            hidden,
            self_kv,
            cross,
        })
    }
}

impl CrossAttention {
    /// `x + cross(ln(x))`'s second term, its weights and its raw scores.
    fn forward(&self, xs: &Tensor, memory: Memory) -> Result<(Tensor, Tensor, Tensor)> {
        let q_in = self.norm.forward(xs)?;
        // The position terms, any knockout and any named match join the content scores
        // before the softmax; the pointer reads the sum.
        let asked = match &self.geometry {
            Some(geo) => Some(geo.ask(&q_in)?),
            None => None,
        };
        let bias = match (asked, memory.bias) {
            (Some(a), Some(k)) => Some(a.broadcast_add(k)?),
            (Some(a), None) => Some(a),
            (None, k) => k.cloned(),
        };
        let att = self.attn.forward_kv(&q_in, memory.kv, bias.as_ref())?;
        let out = match &self.geometry {
            Some(geo) => (att.out + geo.tell(&att.weights)?)?,
            None => att.out,
        };
        Ok((out, att.weights, att.scores))
    }
}

/// Embedding with a random normal start (`vb.get` would start at zeros).
pub fn embedding(n: usize, hidden: usize, vb: VarBuilder) -> Result<candle_nn::Embedding> {
    let w = vb.get_with_hints(
        (n, hidden),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )?;
    Ok(candle_nn::Embedding::new(w, hidden))
}
