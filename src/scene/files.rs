//! Writing a scene to disk: the PNG and its ground-truth JSON, side by side.
//!
//! Both files are written all or none (`crate::output::Staged`): to
//! temporary files in the target directory, then renamed over the final
//! names, so a reader never sees half a file and a failed write leaves
//! nothing behind. The bytes depend only on the
//! layout and the size (the PNG encoder writes no timestamps).

use super::layout::Layout;
use super::truth::truth;
use crate::output::Staged;
use anyhow::{bail, Context, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use std::path::{Path, PathBuf};

/// Render `layout` at `size` and write it to `png_path` (which must end in
/// `.png`), with the ground truth in a `.json` of the same stem beside it.
/// Both files appear, or neither.
pub fn write_scene(layout: &Layout, size: u32, png_path: &Path) -> Result<()> {
    let mut files = Staged::new();
    stage_scene(layout, size, png_path, &mut files)?;
    files.commit()
}

/// Like [`write_scene`], but only stages the two files: they appear when
/// `files` commits (so many scenes can be written all or none).
pub fn stage_scene(layout: &Layout, size: u32, png_path: &Path, files: &mut Staged) -> Result<()> {
    let is_png = png_path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!(
            "scene output {} must end in .png (the JSON goes beside it)",
            png_path.display()
        );
    }
    let img = layout.render(size)?;
    let json = truth(layout, size).to_json()?;
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(img.as_raw(), size, size, ExtendedColorType::Rgb8)
        .context("cannot encode the scene as PNG")?;
    files.add(png_path, &png)?;
    files.add(&json_path(png_path), json.as_bytes())
}

/// The path of the ground-truth JSON that goes with a scene PNG.
pub fn json_path(png_path: &Path) -> PathBuf {
    png_path.with_extension("json")
}

/// Write `bytes` to `path` through a temporary file in the same directory.
pub use crate::output::write_atomic;
