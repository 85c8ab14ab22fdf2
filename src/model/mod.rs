//! The VLA model as a learner reads it, in candle ops, bottom-up:
//! [`config`] → [`linear`] → [`attention`] → [`block`] (layer norm, MLP, the one
//! transformer block) → the three stacks: [`vision`] (a ViT over patches),
//! [`text`] (a causal decoder over the command) and [`fusion`] (words and
//! actions cross-attending to patches, with [`geometry`] and [`pointer`])
//! → [`vla`], which ties them together and decodes actions, one token at a
//! time as [`decode`] chooses it.
//!
//! Attention is written once, in [`attention`]; every weight it computes can
//! be recorded ([`record`]). The fast inference kernels live apart, in
//! `crate::engine`, and are tested against this code.

pub mod attention;
pub mod block;
pub mod config;
pub mod decode;
pub mod fusion;
pub mod geometry;
pub mod linear;
pub mod named;
pub mod pointer;
pub mod record;
pub mod text;
pub mod vision;
pub mod vla;

pub use attention::{Attention, ScoreFn};
pub use config::{Config, PositionEmbedding};
pub use record::AttentionMaps;
pub use vla::Vla;
