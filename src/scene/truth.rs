//! Ground truth: what is where in a rendered scene, and what can be asked of it,
//! as the JSON written beside every PNG.
//!
//! Coordinates come twice: normalised (`center`, `bbox`, in `[0, 1]`, x right,
//! y down) and in pixels of the `size`×`size` image (`*_px`). Pixel coordinates
//! are continuous, with pixel `(i, j)` covering `[i, i+1) × [j, j+1)`, so its
//! centre is `(i + 0.5, j + 0.5)`.
//!
//! A pixel lies on an object exactly when its centre is inside the object.
//! `polygon_px` gives the outline to 0.05 px (corners exact, arcs finely
//! sampled), enough to judge any pixel whose centre is not within 0.05 px of
//! the edge; for an exact answer rebuild the objects with
//! [`SceneTruth::layout`] and call [`Object::contains`].

use super::grammar::{commands_for, Command};
use super::layout::Layout;
use super::object::{Color, Handle, Object, Shape};
use super::refer::minimal_references;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Commands per family and language in the ground truth.
pub const COMMANDS_PER_FAMILY: usize = 3;
/// Largest distance from the true outline to `polygon_px`, in pixels.
pub const POLYGON_TOLERANCE_PX: f32 = 0.05;

/// Everything known about one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectTruth {
    pub id: usize,
    pub color: Color,
    pub shape: Shape,
    /// Its minimal name ("the red cup", "빨간 컵"), or null where only a relation tells it apart.
    pub name_en: Option<String>,
    pub name_ko: Option<String>,
    /// Normalised centre of the body (a cup's handle not counted).
    pub center: [f32; 2],
    /// Normalised diameter (block: side); see [`Object`].
    pub size: f32,
    /// Radians; a cup's handle points this way.
    pub angle: f32,
    /// Paint brightness, around 1.0.
    pub tone: f32,
    /// A cup's handle, where it is not the default one.
    #[serde(default, skip_serializing_if = "Handle::is_default")]
    pub handle: Handle,
    /// Normalised `[x0, y0, x1, y1]` of the exact shape.
    pub bbox: [f32; 4],
    /// `center` in pixels.
    pub center_px: [f32; 2],
    /// The pixels on the object lie in columns `x0..x1` and rows `y0..y1` (ends exclusive).
    pub bbox_px: [u32; 4],
    /// How many pixels lie on the object.
    pub area_px: u32,
    /// The outline in pixel coordinates, in order around the shape.
    pub polygon_px: Vec<[f32; 2]>,
}

/// The ground truth of one rendered scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneTruth {
    pub seed: u64,
    /// Image side in pixels.
    pub size: u32,
    pub objects: Vec<ObjectTruth>,
    /// A handful of valid commands per family and language, with expected actions.
    pub commands: Vec<Command>,
}

/// The ground truth of `layout` rendered at `size`×`size`.
pub fn truth(layout: &Layout, size: u32) -> SceneTruth {
    let refs = minimal_references(layout);
    let s = size as f32;
    let objects = layout
        .objects
        .iter()
        .zip(&refs)
        .map(|(o, r)| {
            let (bbox_px, area_px) = pixel_extent(o, size);
            ObjectTruth {
                id: o.id,
                color: o.color,
                shape: o.shape,
                name_en: r.map(|r| r.en()),
                name_ko: r.map(|r| r.ko()),
                center: o.center,
                size: o.size,
                angle: o.angle,
                tone: o.tone,
                handle: o.handle,
                bbox: o.bbox().map(round3),
                center_px: o.center.map(|v| round3(v * s)),
                bbox_px,
                area_px,
                polygon_px: o
                    .outline(POLYGON_TOLERANCE_PX / s.max(1.0))
                    .into_iter()
                    .map(|p| p.map(|v| round3(v * s)))
                    .collect(),
            }
        })
        .collect();
    SceneTruth {
        seed: layout.seed,
        size,
        objects,
        commands: commands_for(layout, COMMANDS_PER_FAMILY),
    }
}

impl SceneTruth {
    /// Read a ground-truth JSON file.
    pub fn load(path: &Path) -> Result<SceneTruth> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scene truth {}", path.display()))?;
        let truth: SceneTruth = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid scene truth JSON", path.display()))?;
        for o in &truth.objects {
            anyhow::ensure!(
                o.handle.is_valid(),
                "{}: object {} has a handle outside the drawable range ({:?})",
                path.display(),
                o.id,
                o.handle
            );
        }
        Ok(truth)
    }

    /// The objects again, for exact hit tests (`contains`, `object_at`) and re-rendering.
    pub fn layout(&self) -> Layout {
        let objects = self
            .objects
            .iter()
            .map(|o| Object {
                id: o.id,
                color: o.color,
                shape: o.shape,
                center: o.center,
                size: o.size,
                angle: o.angle,
                tone: o.tone,
                handle: o.handle,
            })
            .collect();
        Layout {
            seed: self.seed,
            objects,
        }
    }

    /// Pretty JSON with a stable key order (the field order above) and short
    /// number arrays on one line. Ends with a newline.
    pub fn to_json(&self) -> Result<String> {
        let pretty =
            serde_json::to_string_pretty(self).context("cannot serialise the scene truth")?;
        Ok(inline_scalar_arrays(&pretty))
    }
}

/// The tight pixel box (ends exclusive) and pixel count of an object at `size`.
fn pixel_extent(o: &Object, size: u32) -> ([u32; 4], u32) {
    let n = size as f32;
    let b = o.bbox();
    let range = |a: f32, b: f32| {
        let lo = ((a * n).floor() - 1.0).max(0.0) as u32;
        let hi = ((b * n).ceil() + 1.0).clamp(0.0, n) as u32;
        lo..hi.max(lo)
    };
    let (mut x0, mut y0, mut x1, mut y1, mut area) = (u32::MAX, u32::MAX, 0, 0, 0);
    for py in range(b[1], b[3]) {
        let v = (py as f32 + 0.5) / n;
        for px in range(b[0], b[2]) {
            if o.contains((px as f32 + 0.5) / n, v) {
                (x0, y0, x1, y1) = (x0.min(px), y0.min(py), x1.max(px + 1), y1.max(py + 1));
                area += 1;
            }
        }
    }
    if area == 0 {
        return ([0; 4], 0);
    }
    ([x0, y0, x1, y1], area)
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

/// Put every array that holds only scalars on one line: `[0.25, 0.5]` instead
/// of four lines. Works on serde_json's pretty output, where every scalar
/// array element sits alone on its line (strings never hold raw newlines).
fn inline_scalar_arrays(pretty: &str) -> String {
    let lines: Vec<&str> = pretty.lines().collect();
    let mut out = String::with_capacity(pretty.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.ends_with('[') {
            let mut j = i + 1;
            let mut items = Vec::new();
            while j < lines.len() {
                let t = lines[j].trim();
                if t == "]" || t == "]," {
                    break;
                }
                let scalar = !t.starts_with(['{', '[', ']', '}']) && !t.ends_with(['{', '[']);
                if !scalar {
                    items.clear();
                    j = lines.len();
                    break;
                }
                items.push(t.trim_end_matches(','));
                j += 1;
            }
            if j < lines.len() && !items.is_empty() {
                let close = lines[j].trim().trim_start_matches(']');
                out.push_str(line);
                out.push_str(&items.join(", "));
                out.push(']');
                out.push_str(close);
                out.push('\n');
                i = j + 1;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_out_of_range_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = truth(&Layout::generate(3), 160);
        let cup = t.objects.iter().position(|o| o.shape == Shape::Cup);
        let i = cup.unwrap_or(0);
        let path = dir.path().join("scene.json");
        for (handle, ok) in [
            (Handle::default(), true),
            (
                Handle {
                    end: 1.2,
                    radius: 0.2,
                },
                true,
            ),
            (
                Handle {
                    end: 0.75,
                    radius: 0.2,
                },
                false,
            ),
            (
                Handle {
                    end: 1.5,
                    radius: 0.2,
                },
                false,
            ),
            (
                Handle {
                    end: 1.2,
                    radius: 0.0,
                },
                false,
            ),
        ] {
            t.objects[i].handle = handle;
            std::fs::write(&path, t.to_json().unwrap()).unwrap();
            let back = SceneTruth::load(&path);
            assert_eq!(back.is_ok(), ok, "{handle:?}: {back:?}");
            if let Ok(back) = back {
                assert_eq!(back.layout().objects[i].handle, handle);
            }
        }
    }

    #[test]
    fn scalar_arrays_go_on_one_line() {
        let v = serde_json::json!({"a": [1, 2.5], "b": [{"c": ["x", "y"]}], "d": [], "e": "[", "f": [[1, 2], [3, 4]]});
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        let out = inline_scalar_arrays(&pretty);
        assert!(out.contains("\"a\": [1, 2.5],"), "{out}");
        assert!(out.contains("\"c\": [\"x\", \"y\"]"), "{out}");
        assert!(out.contains("[1, 2],") && out.contains("[3, 4]\n"), "{out}");
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn truth_round_trips_through_json() {
        for seed in 0..40 {
            let layout = Layout::generate(seed);
            let t = truth(&layout, 224);
            let back: SceneTruth = serde_json::from_str(&t.to_json().unwrap()).unwrap();
            assert_eq!(back, t);
            assert_eq!(back.layout(), layout);
            for o in &t.objects {
                assert!(
                    o.area_px > 0 && o.bbox_px[0] < o.bbox_px[2] && o.bbox_px[1] < o.bbox_px[3]
                );
            }
        }
    }
}
