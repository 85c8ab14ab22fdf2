//! The scenes the server can show: the example scenes shipped in
//! examples/scenes/ (embedded in the binary, found by name in a fixed table)
//! and the scenes of `vla-demo eval`'s splits, drawn from a seed. Both come
//! with ground truth where they have it, so a prediction on them gets the
//! CLI's grounding figures.

use std::path::PathBuf;

use image::DynamicImage;
use serde::Serialize;

use super::error::ApiError;
use crate::eval::Split;
use crate::grid::Frame;
use crate::grounding;
use crate::model::Config;
use crate::scene::{truth, SceneTruth};

/// One example scene, embedded.
pub struct Shipped {
    pub name: &'static str,
    pub png: &'static [u8],
    pub truth: Option<&'static str>,
}

macro_rules! shipped {
    ($name:literal) => {
        Shipped {
            name: $name,
            png: include_bytes!(concat!("../../examples/scenes/", $name, ".png")),
            truth: Some(include_str!(concat!(
                "../../examples/scenes/",
                $name,
                ".json"
            ))),
        }
    };
}

/// Every scene a request may name: nothing else is served.
pub const SHIPPED: [Shipped; 6] = [
    shipped!("red_cup"),
    shipped!("scene_200011"),
    shipped!("scene_200014"),
    shipped!("scene_200019"),
    shipped!("scene_200032"),
    Shipped {
        name: "shapes",
        png: include_bytes!("../../examples/scenes/shapes.png"),
        truth: None,
    },
];

/// Which scene a request means.
#[derive(Debug, Clone, PartialEq)]
pub enum SceneRef {
    Shipped(String),
    Split { split: Split, seed: u64 },
}

impl SceneRef {
    /// From the request's `name`, or `split` and `seed` (either may be left
    /// out: iid, and the split's first held-out seed).
    pub fn parse(
        name: Option<&str>,
        split: Option<&str>,
        seed: Option<&str>,
    ) -> Result<SceneRef, ApiError> {
        if let Some(name) = name {
            if split.is_some() || seed.is_some() {
                return Err(ApiError::bad_request(
                    "give a scene name, or a split and a seed, not both",
                ));
            }
            return Ok(SceneRef::Shipped(name.to_string()));
        }
        let split = Split::parse(split.unwrap_or("iid"))
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        let seed = match seed {
            Some(s) => s.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "seed {s:?} is not a whole number from 0 to {}",
                    u64::MAX
                ))
            })?,
            None => split.first_seed(),
        };
        Ok(SceneRef::Split { split, seed })
    }
}

/// A command the scene's ground truth lists, for the page's suggestions.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    pub text: String,
    pub lang: &'static str,
    pub family: &'static str,
}

/// A scene with its pixels and, where known, its ground truth.
pub struct Loaded {
    /// "red_cup", or "iid seed 200000".
    pub label: String,
    pub image: DynamicImage,
    /// The picture as PNG (the shipped bytes, or freshly encoded).
    pub png: Vec<u8>,
    pub truth: Option<SceneTruth>,
    pub suggestions: Vec<Suggestion>,
}

impl Loaded {
    /// The ground truth laid onto the model's patch grid, for grounding.
    pub fn grounding(&self, frame: &Frame, grid: usize) -> Option<grounding::Scene> {
        let truth = self.truth.clone()?;
        grounding::Scene::new(PathBuf::from(&self.label), truth, frame, grid).ok()
    }
}

fn suggestions(commands: &[crate::scene::Command]) -> Vec<Suggestion> {
    commands
        .iter()
        .map(|c| Suggestion {
            text: c.text.clone(),
            lang: c.lang.code(),
            family: c.family.name(),
        })
        .collect()
}

/// Loads (or draws) the scene `r` means.
pub fn load(r: &SceneRef, cfg: &Config) -> Result<Loaded, ApiError> {
    let internal = |e: anyhow::Error| ApiError::internal(&e);
    match r {
        SceneRef::Shipped(name) => {
            let Some(s) = SHIPPED.iter().find(|s| s.name == name) else {
                let names: Vec<&str> = SHIPPED.iter().map(|s| s.name).collect();
                return Err(ApiError::not_found(format!(
                    "no example scene named {name:?}: the server has {}",
                    names.join(", ")
                )));
            };
            let image = image::load_from_memory(s.png).map_err(|e| internal(e.into()))?;
            let truth = match s.truth {
                Some(json) => {
                    Some(serde_json::from_str::<SceneTruth>(json).map_err(|e| internal(e.into()))?)
                }
                None => None,
            };
            Ok(Loaded {
                label: s.name.to_string(),
                image,
                png: s.png.to_vec(),
                suggestions: truth
                    .as_ref()
                    .map(|t| suggestions(&t.commands))
                    .unwrap_or_default(),
                truth,
            })
        }
        SceneRef::Split { split, seed } => {
            let Some((drawn, commands)) = split.scene(*seed, cfg).map_err(internal)? else {
                return Err(ApiError::unprocessable(format!(
                    "seed {seed} gives no usable {} scene; try another seed",
                    split.name()
                )));
            };
            let side = drawn.view.width();
            let image = DynamicImage::ImageRgb8(drawn.view);
            let png = crate::overlay::png_bytes(&image.to_rgb8()).map_err(internal)?;
            Ok(Loaded {
                label: format!("{} seed {seed}", split.name()),
                png,
                truth: Some(truth(&drawn.layout, side)),
                suggestions: suggestions(&commands),
                image,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scene_decodes_and_its_truth_parses() {
        for s in &SHIPPED {
            image::load_from_memory(s.png).unwrap();
            if let Some(t) = s.truth {
                serde_json::from_str::<SceneTruth>(t).unwrap();
            }
        }
    }

    #[test]
    fn names_outside_the_table_are_refused() {
        let cfg = Config::tiny();
        for name in ["../Cargo.toml", "red_cup.png", "/etc/passwd", ""] {
            let r = SceneRef::Shipped(name.into());
            let e = load(&r, &cfg).err().unwrap();
            assert_eq!(e.status, axum::http::StatusCode::NOT_FOUND, "{name}");
        }
        assert!(SceneRef::parse(None, Some("nope"), None).is_err());
        assert!(SceneRef::parse(None, None, Some("-1")).is_err());
        assert!(SceneRef::parse(Some("red_cup"), None, Some("1")).is_err());
    }
}
