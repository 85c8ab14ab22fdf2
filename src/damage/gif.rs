//! GIF damage the `image` crate decodes as a picture: a frame that lies
//! partly or wholly off the logical screen (clipped, or nothing but
//! transparent pixels), a pixel whose colour index is past the palette
//! (left transparent black), and an animation whose later frames are cut
//! or corrupt (only the first is shown, so nothing else reads them).
//!
//! The file is read again with the gif crate's own decoder (the one the
//! `image` crate uses), as palette indices: every frame's place is checked
//! against the screen, every frame is decoded, and every index is checked
//! against the frame's palette. The transparent index may lie past it (that
//! pixel shows no colour). A GIF has no frame count, so a file cut between
//! two frames is told by its missing trailer: a GIF must end with one.

use std::io::Cursor;

use anyhow::{bail, Context, Result};
use gif::{ColorOutput, DecodeOptions};

use super::count_frame;

/// Refuses a damaged GIF.
pub fn check(bytes: &[u8]) -> Result<()> {
    let mut options = DecodeOptions::new();
    options.set_color_output(ColorOutput::Indexed);
    let mut decoder = options
        .read_info(Cursor::new(bytes))
        .context("the GIF's header cannot be read")?;
    let (sw, sh) = (decoder.width() as u32, decoder.height() as u32);
    let global = decoder.global_palette().map(<[u8]>::len);
    let mut buf = Vec::new();
    let (mut n, mut pixels) = (0, 0);
    loop {
        n += 1;
        let what = || format!("the GIF's frame {n} is cut or corrupt");
        let Some(frame) = decoder.next_frame_info().with_context(what)? else {
            return Ok(()); // the trailer
        };
        let (x, y, w, h) = (
            frame.left as u32,
            frame.top as u32,
            frame.width as u32,
            frame.height as u32,
        );
        if x + w > sw || y + h > sh {
            bail!("the GIF's frame {n} ({w}×{h} at {x},{y}) lies off its {sw}×{sh} screen");
        }
        count_frame(&mut pixels, w as u64 * h as u64, "the GIF")?;
        let colours = frame.palette.as_ref().map(Vec::len).or(global).unwrap_or(0) / 3;
        let transparent = frame.transparent;
        if w == 0 || h == 0 {
            continue; // no pixels to read
        }
        // Within the screen, so at most the screen's pixels (checked
        // against the pixel limit before this is called).
        buf.resize(decoder.buffer_size(), 0);
        decoder.read_into_buffer(&mut buf).with_context(what)?;
        if let Some(&i) = buf
            .iter()
            .find(|&&i| i as usize >= colours && Some(i) != transparent)
        {
            bail!("the GIF's frame {n} uses colour {i}, but its palette has {colours} colours");
        }
    }
}
