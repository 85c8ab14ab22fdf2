//! Writing a scene to disk: the PNG and its ground-truth JSON, side by side.
//!
//! Both files are written atomically: to a temporary file in the target
//! directory, then renamed over the final name, so a reader never sees half a
//! file and a failed write leaves nothing behind. The bytes depend only on the
//! layout and the size (the PNG encoder writes no timestamps).

use super::layout::Layout;
use super::truth::truth;
use anyhow::{bail, Context, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Render `layout` at `size` and write it to `png_path` (which must end in
/// `.png`), with the ground truth in a `.json` of the same stem beside it.
pub fn write_scene(layout: &Layout, size: u32, png_path: &Path) -> Result<()> {
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
    write_atomic(png_path, &png)?;
    write_atomic(&json_path(png_path), json.as_bytes())
}

/// The path of the ground-truth JSON that goes with a scene PNG.
pub fn json_path(png_path: &Path) -> PathBuf {
    png_path.with_extension("json")
}

/// Write `bytes` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fail = || {
        format!(
            "cannot write {}: is {} an existing, writable directory?",
            path.display(),
            dir.display()
        )
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".scene-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(fail)?;
    tmp.write_all(bytes).with_context(fail)?;
    #[cfg(unix)]
    {
        // Temporary files are private (0600); a scene is an ordinary file.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(fail)?;
    }
    // On error the temporary file is removed when `tmp` drops.
    tmp.persist(path).map_err(|e| e.error).with_context(fail)?;
    Ok(())
}
