//! WebP damage the `image` crate decodes as a picture: a file cut short
//! (its chunks are read until the data runs out, so an animation cut
//! between two frames is simply shorter), and an animation whose later
//! frames are cut or corrupt (only the first is shown, so nothing else
//! reads them).
//!
//! The file must be as long as its RIFF header says, and every frame of an
//! animation must decode, through the `image` crate's own WebP decoder.

use std::io::Cursor;

use anyhow::{bail, Context, Result};
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, ImageDecoder};

use super::count_frame;

/// Refuses a damaged WebP.
pub fn check(bytes: &[u8]) -> Result<()> {
    // "RIFF", the size of what follows it, "WEBP", the chunks. A last
    // chunk of odd length may lack its padding byte.
    if let Some(&[a, b, c, d]) = bytes.get(4..8) {
        let riff = u32::from_le_bytes([a, b, c, d]) as u64 + 8;
        if (bytes.len() as u64) + 1 < riff {
            bail!(
                "the WebP is cut: its header says {riff} bytes, the file holds {}",
                bytes.len()
            );
        }
    }
    let decoder =
        WebPDecoder::new(Cursor::new(bytes)).context("the WebP's header cannot be read")?;
    if !decoder.has_animation() {
        return Ok(());
    }
    // Each frame is drawn onto the whole canvas.
    let (w, h) = decoder.dimensions();
    let mut pixels = 0;
    for (n, frame) in decoder.into_frames().enumerate() {
        count_frame(&mut pixels, w as u64 * h as u64, "the WebP")?;
        frame.with_context(|| format!("the WebP's frame {} is cut or corrupt", n + 1))?;
    }
    Ok(())
}
