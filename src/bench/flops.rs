//! Counting the model's FLOPs from its config, the way Kaplan et al. (2020)
//! and the PaLM paper's "model FLOPs" do: every multiply-add of a matrix
//! product counts 2 FLOPs; softmax, layer norm, GELU, adds and embedding
//! look-ups are not counted (on this model they are a few percent).
//!
//! With C = hidden_size, I = intermediate_size, N patches of P×P pixels,
//! T command tokens, V = ACTION_VOCAB:
//!
//! - `linear(n, a, b)  = 2·n·a·b` (n tokens through an a -> b layer)
//! - `attn(tq, tk)     = 4·tq·tk·C` (scores `q kᵀ`, then `α v`, all heads together)
//! - `block(n)         = 4·linear(n, C, C) + attn(n, n) + linear(n, C, I) + linear(n, I, C)`
//!   `                 = 8nC² + 4n²C + 4nCI`
//! - conv stem         `= Σ_l 2·H_l·W_l·C_l·9·C_{l-1}` (3×3 kernels, stride 2:
//!   `H_l = S / 2^l`), then patches of `p = P / 2^L` on its last feature map
//! - vision            `= stem + linear(N, C_L·p², C) + vision_layers · block(N)`
//! - text              `= text_layers · block(T)`
//! - fusion keys/values `= fusion_layers · 2 · linear(N, C, C)` (once per image)
//! - one fusion pass over S = T + a positions, a of them actions:
//!   `fusion_layers · (block(S) + 2·linear(S, C, C) + attn(S, N)) + linear(a, C, V)`
//!   (a block plus the cross-attention's query and output projections and its
//!   scores over the N patches, then the action head on the a action positions);
//!   with `cross_geometry`, each block adds `2·linear(S, C, 3H) + 4·S·N·3H`
//!   for its position terms (H heads, 3 coordinates each)
//!
//! A teacher-forced forward pass with A action positions is
//! `vision + text + keys/values + fusion(T + A, A)`. Greedy decoding as
//! [`crate::model::Vla::generate`] does it runs `[words, <boa>]` once, then
//! only the newest position per step against the cached keys and values, so
//! k steps cost `vision + text + keys/values + fusion(T + 1, 1) +
//! Σ_{a=2..k} rows(1 query over T + a keys)`, where a row is the block's
//! per-query terms: `6·linear(1, C, C) + attn(1, T + a) + attn(1, N) +` MLP,
//! plus the head on that one position.
//! The additive score function is counted like the dot product (its
//! `vᵀ tanh(..)` is one multiply-add per element; the tanh is not counted).

use serde::Serialize;

use crate::action::ACTION_VOCAB;
use crate::model::Config;

/// FLOPs of one (image, command) pair, by part of the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flops {
    pub vision: u64,
    pub text: u64,
    /// Image keys/values of the fusion head plus every fusion pass.
    pub fusion: u64,
}

impl Flops {
    pub fn total(&self) -> u64 {
        self.vision + self.text + self.fusion
    }
}

/// `n` tokens through an `a -> b` linear layer.
pub fn linear(n: u64, a: u64, b: u64) -> u64 {
    2 * n * a * b
}

/// Scores and weighted sum of `tq` queries over `tk` keys, all heads.
pub fn attn(tq: u64, tk: u64, hidden: u64) -> u64 {
    4 * tq * tk * hidden
}

/// One pre-LN self-attention block over `n` tokens.
pub fn block(cfg: &Config, n: u64) -> u64 {
    let (c, i) = (cfg.hidden_size as u64, cfg.intermediate_size as u64);
    4 * linear(n, c, c) + attn(n, n, c) + linear(n, c, i) + linear(n, i, c)
}

/// The ViT over one image, its convolutional stem included.
pub fn vision(cfg: &Config) -> u64 {
    let n = cfg.num_patches() as u64;
    let (mut side, mut channels, mut stem) = (cfg.image_size as u64, 3u64, 0u64);
    for &c in &cfg.conv_stem {
        side /= 2;
        stem += 2 * side * side * c as u64 * 9 * channels;
        channels = c as u64;
    }
    stem += cfg.stem_context as u64 * 2 * side * side * channels * 9 * channels;
    let p = (cfg.patch_size >> cfg.conv_stem.len()) as u64;
    stem + linear(n, channels * p * p, cfg.hidden_size as u64)
        + cfg.vision_layers as u64 * block(cfg, n)
}

/// The causal text decoder over `t` tokens (padding included: it is computed).
pub fn text(cfg: &Config, t: u64) -> u64 {
    cfg.text_layers as u64 * block(cfg, t)
}

/// The fusion head's keys and values of one image.
pub fn fusion_kv(cfg: &Config) -> u64 {
    let (n, c) = (cfg.num_patches() as u64, cfg.hidden_size as u64);
    cfg.fusion_layers as u64 * 2 * linear(n, c, c)
}

/// One pass of the fusion head over `t` words and `a` action positions.
pub fn fusion_pass(cfg: &Config, t: u64, a: u64) -> u64 {
    fusion_rows(cfg, t + a, t + a, a)
}

/// The fusion head computing `q` new positions against `keys` positions in
/// all (the new ones included), the action head read out at `a` of them.
pub fn fusion_rows(cfg: &Config, q: u64, keys: u64, a: u64) -> u64 {
    let (n, c, i) = (
        cfg.num_patches() as u64,
        cfg.hidden_size as u64,
        cfg.intermediate_size as u64,
    );
    // Self-attention (q, k, v, o of the new rows; scores over every key), the
    // cross-attention's q and o projections and its scores, the MLP.
    let mut per_block = 4 * linear(q, c, c)
        + attn(q, keys, c)
        + 2 * linear(q, c, c)
        + attn(q, n, c)
        + linear(q, c, i)
        + linear(q, i, c);
    if cfg.cross_geometry {
        // ask and tell projections, then g·φ and α·φ: 3 coordinates per head.
        let h3 = 3 * cfg.num_attention_heads as u64;
        per_block += 2 * linear(q, c, h3) + 2 * 2 * q * n * h3;
    }
    cfg.fusion_layers as u64 * per_block + linear(a, c, ACTION_VOCAB as u64)
}

/// A teacher-forced forward pass (training, the PyTorch comparison).
pub fn forward(cfg: &Config, text_len: usize, actions: usize) -> Flops {
    Flops {
        vision: vision(cfg),
        text: text(cfg, text_len as u64),
        fusion: fusion_kv(cfg) + fusion_pass(cfg, text_len as u64, actions as u64),
    }
}

/// Greedy decoding of `steps` action tokens, as `Vla::generate` runs it.
pub fn generate(cfg: &Config, text_len: usize, steps: usize) -> Flops {
    let t = text_len as u64;
    Flops {
        vision: vision(cfg),
        text: text(cfg, t),
        fusion: fusion_kv(cfg)
            + if steps == 0 {
                0
            } else {
                fusion_pass(cfg, t, 1)
            }
            + (2..=steps as u64)
                .map(|a| fusion_rows(cfg, 1, t + a, 1))
                .sum::<u64>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_attention_by_hand() {
        assert_eq!(linear(3, 4, 5), 120);
        // 2 queries, 3 keys, hidden 4: q kᵀ is 2·3·4 MACs, α v another 2·3·4.
        assert_eq!(attn(2, 3, 4), 2 * (2 * 3 * 4) * 2);
    }

    #[test]
    fn generate_of_one_step_is_forward_of_one_action() {
        let cfg = Config::tiny();
        assert_eq!(generate(&cfg, 8, 1), forward(&cfg, 8, 1));
    }
}
