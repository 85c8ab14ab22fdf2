//! vla-demo: a tiny vision-language-action model that makes attention visible.
//!
//! The modules follow the data flow:
//! image -> [`scene`] (the world) -> [`model`] (patches -> tokens -> fusion)
//! -> [`action`] (discrete action tokens -> waypoints).

pub mod action;
pub mod scene;
