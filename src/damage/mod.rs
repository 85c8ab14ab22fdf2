//! Damaged image files refused, never shown as a partly grey or partly
//! black picture: each format's decoder lets some damage through, and each
//! module here finds its own format's (`decode_image` in
//! [`crate::preprocess`] calls [`check`], and [`jpeg`] for JPEG).

use anyhow::{bail, Result};
use image::ImageFormat;

use crate::limits::MAX_ANIMATION_PIXELS;

pub mod bmp;
pub mod gif;
pub mod jpeg;
pub mod png;
pub mod webp;

/// Damage that the `image` crate's decoders turn into a picture rather than
/// an error (palette indices past the palette, frames off the screen, RLE
/// runs past the row, an animation's later frames cut: only the first frame
/// is shown, but the file is damaged), each format's in its own module.
/// JPEG's is found as it is decoded, in [`jpeg`].
pub fn check(bytes: &[u8], format: ImageFormat) -> Result<()> {
    match format {
        ImageFormat::Png => png::check(bytes),
        ImageFormat::Gif => gif::check(bytes),
        ImageFormat::Bmp => bmp::check(bytes),
        ImageFormat::WebP => webp::check(bytes),
        _ => Ok(()),
    }
}

/// Adds a frame of `pixels` to an animation's running `total`, refusing
/// past [`MAX_ANIMATION_PIXELS`]; `what` names the file ("the GIF").
pub(crate) fn count_frame(total: &mut u64, pixels: u64, what: &str) -> Result<()> {
    *total += pixels.max(64 * 64);
    if *total > MAX_ANIMATION_PIXELS {
        bail!(
            "{what}'s frames hold more than {MAX_ANIMATION_PIXELS} pixels together, \
             the limit for an animation (every frame is decoded to check it)"
        );
    }
    Ok(())
}
