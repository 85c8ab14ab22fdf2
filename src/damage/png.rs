//! PNG damage the `image` crate decodes as a picture: an indexed pixel past
//! the end of the palette (the png crate maps it to black), and an
//! animation (APNG) whose later frames are cut, missing or corrupt (only the
//! first is shown, so nothing else reads them).
//!
//! Both are found by reading the file again with the png crate's own
//! `Reader` (the decoder the `image` crate uses), without transformations,
//! so indexed frames come back as palette indices: every frame is decoded,
//! and every index checked against the palette's length.

use std::io::Cursor;

use anyhow::{bail, Context, Result};
use png::{BitDepth, ColorType, Decoder, Transformations};

use super::count_frame;

/// Refuses a damaged PNG; a still, non-indexed one (all the `image` crate
/// itself checks) returns at once.
pub fn check(bytes: &[u8]) -> Result<()> {
    let mut decoder = Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .context("the PNG's header cannot be read")?;
    let info = reader.info();
    let indexed = info.color_type == ColorType::Indexed;
    // Frames in the file: the animation's, plus a default image (IDAT)
    // that is not one of them when no fcTL comes before it.
    let frames = match &info.animation_control {
        None => 1,
        Some(a) => a.num_frames as u64 + info.frame_control.is_none() as u64,
    };
    if !indexed && frames == 1 {
        return Ok(());
    }
    let colours = info.palette.as_ref().map_or(0, |p| p.len() / 3);
    let depth = info.bit_depth;
    // Non-indexed frames are read row by row: only whether they decode matters.
    let size = match indexed {
        true => reader
            .output_buffer_size()
            .context("the PNG is too large")?,
        false => 0,
    };
    let mut buf = vec![0; size];
    let (w, h) = (info.width as u64, info.height as u64);
    let mut pixels = 0;
    for n in 1..=frames {
        let what = || format!("the PNG's frame {n} of {frames} is cut, missing or corrupt");
        if n > 1 {
            reader.next_frame_info().with_context(what)?;
        }
        // The frame's own size, or the image's for a default image.
        let size = reader
            .info()
            .frame_control
            .map_or(w * h, |f| f.width as u64 * f.height as u64);
        count_frame(&mut pixels, size, "the PNG")?;
        if !indexed {
            while reader.next_row().with_context(what)?.is_some() {}
            continue;
        }
        let out = reader.next_frame(&mut buf).with_context(what)?;
        // An interlaced frame is laid out at the full image's stride.
        let stride = match reader.info().interlaced {
            true => reader.output_line_size(reader.info().width).unwrap_or(0),
            false => out.line_size,
        };
        let rows = buf.chunks(stride.max(1)).take(out.height as usize);
        for (y, row) in rows.enumerate() {
            // Only the first `width` indices: the rest of a row's last byte
            // is padding, which may hold anything.
            if let Some((x, i)) = indices(row, depth)
                .take(out.width as usize)
                .enumerate()
                .find(|&(_, i)| i as usize >= colours)
            {
                bail!(
                    "the PNG's pixel ({x}, {y}) of frame {n} is palette entry {i}, \
                     but its palette has {colours} colours"
                );
            }
        }
    }
    Ok(())
}

/// A row's palette indices, unpacked from 1, 2, 4 or 8 bits each.
fn indices(row: &[u8], depth: BitDepth) -> impl Iterator<Item = u8> + '_ {
    let bits = depth as u8;
    let per_byte = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    row.iter()
        .flat_map(move |&b| (0..per_byte).map(move |k| (b >> (8 - bits * (k + 1))) & mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_unpack_high_bits_first() {
        let got: Vec<u8> = indices(&[0b1011_0001], BitDepth::Two).collect();
        assert_eq!(got, [2, 3, 0, 1]);
        let got: Vec<u8> = indices(&[0xA5], BitDepth::Four).collect();
        assert_eq!(got, [0xA, 0x5]);
        assert_eq!(
            indices(&[7, 9], BitDepth::Eight).collect::<Vec<_>>(),
            [7, 9]
        );
        assert_eq!(
            indices(&[0x80], BitDepth::One).filter(|&i| i == 1).count(),
            1
        );
    }
}
