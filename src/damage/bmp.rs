//! BMP damage the `image` crate decodes as a picture: RLE data that runs
//! past the end of a row (an RLE8 run is cut short there) or past the last
//! row (never read), and palette indices past the palette (its missing
//! entries are black).
//!
//! The `image` crate does not show its BMP decoder's RLE instructions, so
//! they are walked here, from the header fields it reads too; the pixels
//! themselves are still decoded by the `image` crate. Not damage: an early
//! end of bitmap, and deltas that skip pixels (the format's own way of
//! leaving pixels unset, black), and a run that reaches into the row's
//! padding (its length rounded up to 4 bytes) but no further: ImageMagick
//! writes every RLE8 row that way when the width is not a multiple of 4,
//! and nothing of the picture is lost. A header this walk cannot read is
//! left to the decoder to refuse.

use anyhow::{bail, Result};

const RLE8: u32 = 1;
const RLE4: u32 = 2;

/// Refuses a damaged BMP.
pub fn check(bytes: &[u8]) -> Result<()> {
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b))
    };
    let (Some(offset), Some(header)) = (u32_at(10), u32_at(14)) else {
        return Ok(());
    };
    // The 12-byte OS/2 header has no compression and no palette size.
    if header < 40 {
        return Ok(());
    }
    let (Some(w), Some(h), Some(bits), Some(compression), Some(used)) =
        (u32_at(18), u32_at(22), u16_at(28), u32_at(30), u32_at(46))
    else {
        return Ok(());
    };
    let (w, h) = (w as i32 as i64, (h as i32 as i64).abs());
    let Some(data) = bytes.get(offset as usize..) else {
        return Ok(());
    };
    // Palette images only: 1, 2, 4 or 8 bits a pixel.
    if w <= 0 || ![1, 2, 4, 8].contains(&bits) {
        return Ok(());
    }
    let colours = if used == 0 { 1 << bits } else { used as u64 };
    match compression {
        RLE8 | RLE4 => rle(data, w, h, compression == RLE4, colours),
        0 => {
            // One row after another, each padded to 4 bytes.
            let stride = ((bits as usize * w as usize).div_ceil(32) * 4).max(1);
            for (y, row) in data.chunks_exact(stride).take(h as usize).enumerate() {
                let bad = (0..w as usize)
                    .map(|x| index(row, x, bits))
                    .find(|&i| i >= colours);
                if let Some(i) = bad {
                    bail!("the BMP's row {y} uses palette entry {i}, but its palette has {colours} colours");
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The `x`th index of a row packed `bits` (1, 2, 4 or 8) to a byte, high bits first.
fn index(row: &[u8], x: usize, bits: u16) -> u64 {
    let per_byte = 8 / bits as usize;
    let shift = 8 - bits as usize * (x % per_byte + 1);
    ((row[x / per_byte] >> shift) & ((1u16 << bits) - 1) as u8) as u64
}

/// Walks RLE8 or RLE4 (`four`) data on a `w`×`h` image: a count and an
/// index is a run; a zero then 0 ends the row, 1 the bitmap, 2 moves by
/// the next two bytes (right, up), n ≥ 3 is n indices as they are.
fn rle(data: &[u8], w: i64, h: i64, four: bool, colours: u64) -> Result<()> {
    let (kind, bits) = if four { ("RLE4", 4) } else { ("RLE8", 8) };
    // The row's pixels with its padding to 4 bytes.
    let padded = (w * bits + 31) / 32 * 32 / bits;
    let (mut x, mut y, mut at) = (0i64, 0i64, 0usize);
    // Where the data ends early the decoder says whether rows are missing.
    while let Some(&[a, b]) = data.get(at..at + 2) {
        at += 2;
        // The run's length, and the first index past the palette among its
        // pixels that lie within the row (not in its padding).
        let (n, bad) = match (a, b) {
            (0, 0) => {
                (x, y) = (0, y + 1);
                continue;
            }
            (0, 1) => return Ok(()),
            (0, 2) => {
                let Some(&[dx, dy]) = data.get(at..at + 2) else {
                    return Ok(());
                };
                at += 2;
                (x, y) = (x + dx as i64, y + dy as i64);
                if x > w || y >= h {
                    bail!("the BMP's {kind} data moves past its {w}×{h} pixels");
                }
                continue;
            }
            (0, n) => {
                let n = n as i64;
                let len = ((n * bits + 7) / 8) as usize;
                let Some(raw) = data.get(at..at + len) else {
                    return Ok(());
                };
                at += len + len % 2; // padded to 2 bytes
                let shown = (w - x).clamp(0, n) as usize;
                let mut indices = (0..shown).map(|k| index(raw, k, bits as u16));
                (n, indices.find(|&i| i >= colours))
            }
            // A run: RLE4 alternates the two indices in its byte.
            (n, i) => {
                let pair = if four { [i >> 4, i & 15] } else { [i, i] };
                let shown = (w - x).clamp(0, n as i64) as usize;
                let mut indices = pair.into_iter().take(shown).map(u64::from);
                (n as i64, indices.find(|&i| i >= colours))
            }
        };
        if y >= h {
            bail!("the BMP's {kind} data goes on past its last row");
        }
        if x + n > padded {
            bail!("the BMP's {kind} data runs past the end of row {y} ({w} pixels)");
        }
        if let Some(i) = bad {
            bail!("the BMP's {kind} data uses palette entry {i}, but its palette has {colours} colours");
        }
        x += n;
    }
    Ok(())
}
