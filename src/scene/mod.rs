//! The tabletop world: procedurally rendered scenes, their ground truth, and
//! the commands (English and Korean) that refer to objects in them.
//!
//! The files follow the data flow:
//! - [`object`]: colours, shapes and the exact geometry of one object;
//! - [`layout`]: a seed -> 2 to 6 objects that do not overlap;
//! - [`render`]: a layout -> pixels (table, shadows, shaded objects);
//! - [`random`], [`surroundings`], [`camera`]: the randomised world training
//!   draws from (many drawings, tables, lights, cameras, distractors), still
//!   exact in its masks;
//! - [`refer`]: minimal names ("the red cup") and relations ("next to");
//! - [`heldout_style`]: a second way of drawing the world, for evaluation only;
//! - [`grammar`], [`english`], [`korean`]: commands and the actions they expect;
//! - [`refusal`]: commands to refuse (absent or ambiguous objects);
//! - [`draw`]: commands drawn at random for a layout, and the held-out seeds;
//! - [`truth`], [`files`]: the JSON ground truth and writing both to disk;
//! - [`write`]: `vla-demo scene`, one scene or many, written whole or not at all.
//!
//! Everything is deterministic in the seed: the same seed gives the same
//! layout, byte-identical PNG and JSON, and the same commands.

pub mod camera;
mod cast;
pub mod draw;
pub mod english;
pub mod files;
pub mod grammar;
pub mod heldout_style;
pub mod korean;
pub mod layout;
mod looks;
pub mod object;
pub mod random;
pub mod refer;
pub mod refusal;
pub mod render;
pub mod surroundings;
pub mod truth;
pub mod write;

pub use files::{json_path, write_scene};
pub use grammar::{
    commands_for, pick_named, push_end, sample_command, Command, Direction, Family, Lang, NO_TARGET,
};
pub use layout::{Layout, LayoutSpec};
pub use object::{Color, Object, Shape};
pub use refer::{
    minimal_reference, minimal_references, relational_references, Reference, Relation,
    RelationalRef,
};
pub use refusal::{sample_hard_negative, sample_refusal};
pub use render::{MAX_RENDER_SIZE, MIN_RENDER_SIZE};
pub use truth::{truth, ObjectTruth, SceneTruth};
