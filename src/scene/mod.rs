//! The tabletop world: procedurally rendered scenes, their ground truth, and
//! the commands (English and Korean) that refer to objects in them.
//!
//! The files follow the data flow:
//! - [`object`]: colours, shapes and the exact geometry of one object;
//! - [`layout`]: a seed -> 2 to 6 objects that do not overlap;
//! - [`render`]: a layout -> pixels (table, shadows, shaded objects);
//! - [`refer`]: minimal names ("the red cup") and relations ("next to");
//! - [`grammar`], [`english`], [`korean`]: commands and the actions they expect;
//! - [`truth`], [`files`]: the JSON ground truth and writing both to disk;
//! - [`cli`]: `vla-demo scene`.
//!
//! Everything is deterministic in the seed: the same seed gives the same
//! layout, byte-identical PNG and JSON, and the same commands.

pub mod cli;
pub mod english;
pub mod files;
pub mod grammar;
pub mod korean;
pub mod layout;
pub mod object;
pub mod refer;
pub mod render;
pub mod truth;

pub use files::{json_path, write_scene};
pub use grammar::{commands_for, push_end, sample_command, Command, Direction, Family, Lang};
pub use layout::Layout;
pub use object::{Color, Object, Shape};
pub use refer::{
    minimal_reference, minimal_references, relational_references, Reference, Relation,
    RelationalRef,
};
pub use render::{MAX_RENDER_SIZE, MIN_RENDER_SIZE};
pub use truth::{truth, ObjectTruth, SceneTruth};
