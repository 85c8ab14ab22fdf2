//! vla-demo: a tiny vision-language-action model that makes attention visible.
//!
//! The modules follow the data flow:
//! - [`scene`]: the tabletop world (images, ground truth, commands);
//! - [`preprocess`]: image -> the model's square, normalised view;
//! - [`tokens`]: command -> token ids;
//! - [`model`]: patches -> ViT, words -> causal decoder, both -> fusion head;
//! - [`action`]: action tokens -> waypoints;
//! - [`pipeline`]: all of the above behind one call.
//!
//! Around it: [`data`], [`train`] and [`eval`] make, fit and judge the model;
//! [`checkpoint`] and [`device`] load it; [`bench`] measures it.

pub mod action;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod eval;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod scene;
pub mod tokens;
pub mod train;

pub use pipeline::Pipeline;
