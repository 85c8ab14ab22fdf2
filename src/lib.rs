//! vla-demo: a tiny vision-language-action model that makes attention visible.
//!
//! The modules follow the data flow:
//! - [`scene`]: the tabletop world (images, ground truth, commands);
//! - [`preprocess`]: image -> the model's square, normalised view;
//! - [`grid`]: the patch grid on the input image, and what covers each patch;
//! - [`tokens`]: command -> token ids;
//! - [`model`]: patches -> ViT, words -> causal decoder, both -> fusion head;
//! - [`action`]: action tokens -> waypoints;
//! - [`pipeline`]: all of the above behind one call;
//! - [`maps`]: attention tensors -> per-patch heatmaps (and rollout);
//! - [`overlay`]: heatmaps -> figures; [`report`]: the printout and JSON;
//!   [`explain`]: the three attention steps with real numbers; [`export`]:
//!   every attention matrix as npz; [`grounding`]: scores against a scene's
//!   ground truth; [`demo`]: the runs the command line asks for.
//!
//! Around it: [`data`], [`train`] and [`eval`] make, fit and judge the model;
//! [`checkpoint`] and [`device`] load it; [`bench`] measures it;
//! [`input`] reads the files a user names, [`output`] writes files and
//! standard output, and [`limits`] bounds every input; [`serve`] puts it
//! all behind a web page and a JSON API.

pub mod action;
pub mod bench;
pub mod checkpoint;
pub mod damage;
pub mod data;
pub mod demo;
pub mod device;
pub mod engine;
pub mod eval;
pub mod explain;
pub mod export;
pub mod faithfulness;
pub mod grid;
pub mod grounding;
pub mod input;
pub mod limits;
pub mod maps;
pub mod model;
pub mod output;
pub mod overlay;
pub mod pipeline;
pub mod preprocess;
pub mod relevance;
pub mod report;
pub mod scene;
pub mod serve;
pub mod tokens;
pub mod train;

pub use pipeline::Pipeline;
