//! The tabletop world: procedurally rendered scenes, their ground truth, and
//! the commands (English and Korean) that refer to objects in them.
