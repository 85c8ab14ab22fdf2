//! JPEG decoded so that a damaged file is an error, never a partly grey
//! picture.
//!
//! zune-jpeg in strict mode refuses a stream that simply stops, but not one
//! whose compressed data ends early at an end-of-image marker (a cut file
//! with `FF D9` put back, or a header that claims more rows than the data
//! holds): there it reads zero bits for whatever is missing, as browsers
//! do. Two checks close that gap:
//!
//! - **the data runs out**: the file is decoded a second time with one-bits
//!   (stuffed `FF 00` bytes) before its end marker. A whole scan never
//!   reads past its own data, so both decodes give the same pixels; a scan
//!   cut short reads the extra bits instead of zeros and comes out
//!   different (a run of one-bits is no valid Huffman code).
//! - **scans are missing**: every component must be in some scan, and in a
//!   progressive file every one of its 64 coefficients must be refined down
//!   to full precision. A progressive file cut after its first scan is
//!   otherwise a blurred picture, not an error.

use anyhow::{anyhow, bail, Context, Result};
use image::{DynamicImage, RgbImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// Stuffed one-bytes put before the end marker for the second decode.
const ONES: usize = 64;

/// Decodes a JPEG of `w`×`h` (from its header) or says why it is damaged.
pub fn decode_strict(bytes: &[u8], w: u32, h: u32) -> Result<DynamicImage> {
    check_scans(bytes)?;
    let rgb = decode(bytes, w, h, true)?;
    // Before the end marker, or at the end of a file that lacks one.
    let eoi = bytes
        .windows(2)
        .rposition(|m| m == [0xFF, 0xD9])
        .unwrap_or(bytes.len());
    let mut padded = Vec::with_capacity(bytes.len() + 2 * ONES);
    padded.extend_from_slice(&bytes[..eoi]);
    padded.extend([0xFF, 0x00].repeat(ONES));
    padded.extend_from_slice(&bytes[eoi..]);
    if decode(&padded, w, h, false).ok().as_ref() != Some(&rgb) {
        bail!("the JPEG's compressed data ends before its last rows");
    }
    // `decode_image` checks the size against the header.
    Ok(DynamicImage::ImageRgb8(rgb))
}

fn decode(bytes: &[u8], w: u32, h: u32, strict: bool) -> Result<RgbImage> {
    let options = DecoderOptions::default()
        .set_strict_mode(strict)
        .set_max_width(w as usize)
        .set_max_height(h as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let rgb = decoder.decode().map_err(|e| anyhow!("{e:?}"))?;
    let (dw, dh) = decoder
        .dimensions()
        .context("the JPEG decoder did not report the image size")?;
    RgbImage::from_raw(dw as u32, dh as u32, rgb)
        .context("the JPEG decoder returned too few pixels")
}

/// The frame's components and its kind, then every scan's components,
/// spectral band and precision, read from the markers; refuses a file whose
/// scans leave a component or a coefficient unfinished.
fn check_scans(bytes: &[u8]) -> Result<()> {
    let mut components: Vec<u8> = Vec::new();
    let mut progressive = false;
    // Per component: the finest precision (Al) each coefficient reached.
    let mut reached: Vec<[u8; 64]> = Vec::new();
    let mut at = 2; // after SOI
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            at += 1; // entropy-coded data, or fill
            continue;
        }
        let marker = bytes[at + 1];
        // Stuffed zero, fill bytes, restart markers: no segment.
        if marker == 0x00 || marker == 0xFF || (0xD0..=0xD7).contains(&marker) {
            at += 2;
            continue;
        }
        if marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        let seg = bytes
            .get(at + 4..at + 2 + len)
            .context("a JPEG segment runs past the end of the file")?;
        match marker {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                let n = *seg.get(5).context("a short JPEG frame header")? as usize;
                components = (0..n)
                    .map(|i| seg.get(6 + 3 * i).copied())
                    .collect::<Option<_>>()
                    .context("a short JPEG frame header")?;
                reached = vec![[u8::MAX; 64]; n];
            }
            0xDA => {
                let n = *seg.first().context("a short JPEG scan header")? as usize;
                let band = seg
                    .get(1 + 2 * n..4 + 2 * n)
                    .context("a short JPEG scan header")?;
                let (ss, se, al) = (band[0] as usize, band[1] as usize, band[2] & 0x0F);
                if ss > se || se > 63 {
                    bail!("a JPEG scan covers coefficients {ss} to {se}");
                }
                for i in 0..n {
                    let id = seg[1 + 2 * i];
                    let c = components
                        .iter()
                        .position(|&x| x == id)
                        .context("a JPEG scan names a component its frame does not have")?;
                    for finest in &mut reached[c][ss..=se] {
                        *finest = (*finest).min(al);
                    }
                }
            }
            _ => {}
        }
        at += 2 + len;
    }
    for (c, r) in reached.iter().enumerate() {
        let unfinished = if progressive {
            r.iter().any(|&al| al != 0)
        } else {
            r[0] == u8::MAX
        };
        if unfinished {
            bail!(
                "the JPEG's scans end before component {} is complete (scans are missing)",
                components[c]
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/image");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// The offset just past the first scan's header.
    fn first_scan_data(b: &[u8]) -> usize {
        let sos = b.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
        sos + 2 + u16::from_be_bytes([b[sos + 2], b[sos + 3]]) as usize
    }

    #[test]
    fn whole_files_decode() {
        for name in [
            "24x24.jpg",
            "24x24.prog.jpg",
            "24x24.cmyk.jpg",
            "7x5.jpg",
            "7x5.prog.jpg",
        ] {
            let b = seed(name);
            let img = image::load_from_memory(&b).unwrap();
            decode_strict(&b, img.width(), img.height()).unwrap();
        }
    }

    /// Pictures from the `image` crate's own encoder, of several sizes and
    /// qualities, without their end marker too.
    #[test]
    fn encoded_pictures_decode() {
        use image::codecs::jpeg::JpegEncoder;
        for (w, h, quality) in [(96, 96, 40), (333, 250, 95), (250, 333, 75), (17, 9, 60)] {
            let img = RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
            });
            let mut b = Vec::new();
            JpegEncoder::new_with_quality(&mut b, quality)
                .encode_image(&img)
                .unwrap();
            assert!(decode_strict(&b, w, h).is_ok(), "{w}×{h} q{quality}");
            let without_end = &b[..b.len() - 2];
            assert!(
                decode_strict(without_end, w, h).is_ok(),
                "{w}×{h} q{quality}, no end marker"
            );
        }
    }

    /// Cut inside the scan, the end marker put back: refused, where the
    /// decoder alone fills the rest with grey.
    #[test]
    fn a_scan_cut_short_is_refused() {
        let b = seed("24x24.jpg");
        let start = first_scan_data(&b);
        let mut cut = b[..start + (b.len() - 2 - start) / 3].to_vec();
        cut.extend([0xFF, 0xD9]);
        assert!(
            decode(&cut, 24, 24, true).is_ok(),
            "the decoder alone accepts it"
        );
        let e = decode_strict(&cut, 24, 24).unwrap_err().to_string();
        assert!(e.contains("ends before"), "{e}");
    }

    /// A header that claims twice the rows the data holds.
    #[test]
    fn more_rows_than_data_is_refused() {
        let mut b = seed("24x24.jpg");
        let sof = b.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        b[sof + 5..sof + 7].copy_from_slice(&48u16.to_be_bytes());
        assert!(decode_strict(&b, 24, 48).is_err());
    }

    /// A progressive file cut after its first scan, the end marker put back.
    #[test]
    fn a_progressive_file_missing_scans_is_refused() {
        let b = seed("24x24.prog.jpg");
        let start = first_scan_data(&b);
        let next = start
            + b[start..]
                .windows(2)
                .position(|m| m[0] == 0xFF && m[1] != 0x00 && !(0xD0..=0xD7).contains(&m[1]))
                .unwrap();
        let mut cut = b[..next].to_vec();
        cut.extend([0xFF, 0xD9]);
        let e = decode_strict(&cut, 24, 24).unwrap_err().to_string();
        assert!(e.contains("scans are missing"), "{e}");
    }
}
