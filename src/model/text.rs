//! The text decoder: a small GPT-style stack over the command's tokens.
//!
//! token embeddings + position embeddings -> causal self-attention blocks ->
//! (B, T, C). The causal mask means word t only ever sees words 0..=t: change
//! a later word and no earlier output moves, not even in the last bit.
//!
//! Commands are left-padded to a common length T, so every command ends at
//! position T - 1 and the action tokens that follow start at the same place.

use candle::{Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use super::attention::causal_padded_mask;
use super::block::{embedding, Block, LayerNorm};
use super::record::Site;
use super::Config;

#[derive(Debug, Clone)]
pub struct TextDecoder {
    position: Embedding,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

/// Position ids for left-padded sequences: the first real token is position 0.
/// Padding positions get 0 too; the mask keeps them out of every real row.
pub fn position_ids(lens: &[usize], t: usize, device: &Device) -> Result<Tensor> {
    let ids: Vec<u32> = lens
        .iter()
        .flat_map(|&len| (0..t).map(move |j| (j + len.min(t)).saturating_sub(t) as u32))
        .collect();
    Tensor::from_vec(ids, (lens.len(), t), device)
}

impl TextDecoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..cfg.text_layers)
            .map(|i| Block::new(cfg, Site::Text, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            position: embedding(
                cfg.max_text_len,
                cfg.hidden_size,
                vb.pp("position_embedding"),
            )?,
            blocks,
            norm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("norm"))?,
        })
    }

    /// `tokens` (B, T, C) are embedded command tokens, left-padded; `lens` the
    /// real lengths. Returns (B, T, C).
    pub fn forward(&self, tokens: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let (_, t, _) = tokens.dims3()?;
        let pos = self
            .position
            .forward(&position_ids(lens, t, tokens.device())?)?;
        let mask = causal_padded_mask(lens, t, tokens.device())?.to_dtype(tokens.dtype())?;
        let mut xs = (tokens + pos)?;
        for block in &self.blocks {
            xs = block.forward(&xs, Some(&mask))?;
        }
        self.norm.forward(&xs)
    }
}
