//! Image -> model input: load, letterbox, normalise.
//!
//! Any image in a format the `image` crate is built with works (PNG, JPEG,
//! WebP, BMP, GIF, TIFF, ICO, PNM, TGA, QOI, farbfeld; grey, RGBA, 16-bit;
//! sides up to 16:1 apart). It is converted to 8-bit RGB, scaled so its
//! longer side fits the model's `image_size`, and centred on a square canvas
//! filled with the normalisation mean (which the model sees as zero). The
//! [`Frame`] (in [`crate::grid`]) remembers that mapping, so every model coordinate maps back to
//! the input image's own pixels exactly.

use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle::{Device, Tensor};
use image::{imageops::FilterType, DynamicImage, ImageFormat, ImageReader, Limits, RgbImage};

use crate::grid::Frame;
use crate::model::Config;

pub use crate::limits::{MAX_ASPECT, MAX_IMAGE_FILE_BYTES, MAX_PIXELS};

/// The image formats vla-demo reads, for messages.
pub const FORMATS: &str = "PNG, JPEG, WebP, BMP, GIF, TIFF, ICO, PNM, TGA, QOI or farbfeld";

/// Reads an image file with a size limit. Every failure names the file.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let bytes = crate::input::read_file(path, MAX_IMAGE_FILE_BYTES, "image")?;
    decode_image(&bytes, ImageFormat::from_path(path).ok())
        .with_context(|| format!("image {}", path.display()))
}

/// The one image decoder: bytes -> pixels, or an error. The format comes from
/// the bytes (`hint`, from the file name, is used only when the bytes say
/// nothing). Images over [`MAX_PIXELS`], or with one side more than
/// [`MAX_ASPECT`] times the other, are refused before decoding, and a
/// corrupt or truncated image is an error, never a partly grey picture:
/// JPEG goes through [`crate::damage::jpeg`], which refuses what zune-jpeg and the
/// `image` crate would fill in with grey, and other formats are checked
/// first for damage their decoders let through ([`crate::damage`]).
pub fn decode_image(bytes: &[u8], hint: Option<ImageFormat>) -> Result<DynamicImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes));
    if let Some(f) = hint {
        reader.set_format(f);
    }
    let reader = reader.with_guessed_format()?;
    let Some(format) = reader.format() else {
        bail!("is not an image in a format vla-demo can read ({FORMATS})");
    };
    // The `image` crate is built only with the formats a photo of a table
    // comes in (Cargo.toml); it still recognises the others by their bytes.
    if !format.reading_enabled() {
        bail!("is in the {format:?} format, which vla-demo does not read; it reads {FORMATS}");
    }
    let (w, h) = reader
        .into_dimensions()
        .context("is not a readable image (corrupt or truncated?)")?;
    let pixels = w as u64 * h as u64;
    if pixels > MAX_PIXELS {
        bail!("is {w}×{h} = {pixels} pixels, over the limit of {MAX_PIXELS} pixels");
    }
    if w == 0 || h == 0 {
        bail!("is empty ({w}×{h})");
    }
    let (long, short) = (w.max(h) as u64, w.min(h) as u64);
    if long > short * MAX_ASPECT {
        bail!(
            "is {w}×{h}, a strip rather than a picture: its sides may be at most {MAX_ASPECT}:1 apart"
        );
    }
    crate::damage::check(bytes, format)?;
    let decoded = if format == ImageFormat::Jpeg {
        crate::damage::jpeg::decode_strict(bytes, w, h)
    } else {
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        let mut limits = Limits::default();
        limits.max_image_width = Some(w);
        limits.max_image_height = Some(h);
        limits.max_alloc = Some(MAX_PIXELS * 8);
        reader.limits(limits);
        reader.decode().map_err(anyhow::Error::from)
    };
    let img = decoded.context("could not be decoded (corrupt or truncated?)")?;
    if (img.width(), img.height()) != (w, h) {
        bail!(
            "could not be decoded: its header says {w}×{h} but it decodes to {}×{}",
            img.width(),
            img.height()
        );
    }
    Ok(img)
}

/// Letterboxes an image into the model's square view: returns the square RGB
/// image and the frame that maps back.
pub fn letterbox(img: &DynamicImage, cfg: &Config) -> (RgbImage, Frame) {
    let size = cfg.image_size as u32;
    let (w, h) = (img.width(), img.height());
    let scale = size as f32 / w.max(h) as f32;
    let (nw, nh) = (
        ((w as f32 * scale).round() as u32).clamp(1, size),
        ((h as f32 * scale).round() as u32).clamp(1, size),
    );
    // An RGB picture is read in place; any other is converted first.
    let rgb = match img.as_rgb8() {
        Some(rgb) => std::borrow::Cow::Borrowed(rgb),
        None => std::borrow::Cow::Owned(img.to_rgb8()),
    };
    let resized = if (nw, nh) == (w, h) {
        rgb.into_owned()
    } else {
        image::imageops::resize(&*rgb, nw, nh, FilterType::Triangle)
    };
    let (px, py) = ((size - nw) / 2, (size - nh) / 2);
    let fill = cfg.image_mean.map(|m| (m * 255.0).round() as u8);
    let mut canvas = RgbImage::from_pixel(size, size, image::Rgb(fill));
    image::imageops::replace(&mut canvas, &resized, px as i64, py as i64);
    // The frame uses the exact per-axis scale of the resize.
    let frame = Frame {
        width: w,
        height: h,
        scale: nw as f32 / w as f32,
        pad_x: px as f32,
        pad_y: py as f32,
        size,
    };
    (canvas, frame)
}

/// Square RGB images -> normalised pixels (I, 3, S, S).
pub fn to_pixels(images: &[&RgbImage], cfg: &Config, device: &Device) -> Result<Tensor> {
    let s = cfg.image_size;
    let mut data = Vec::with_capacity(images.len() * 3 * s * s);
    for img in images {
        if img.width() as usize != s || img.height() as usize != s {
            bail!(
                "image is {}×{}, the model expects {s}×{s}",
                img.width(),
                img.height()
            );
        }
        for c in 0..3 {
            let (m, sd) = (cfg.image_mean[c], cfg.image_std[c]);
            data.extend(img.pixels().map(|p| (p.0[c] as f32 / 255.0 - m) / sd));
        }
    }
    Ok(Tensor::from_vec(data, (images.len(), 3, s, s), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        DynamicImage::new_luma8(w, h)
            .write_to(&mut buf, ImageFormat::Png)
            .unwrap();
        buf.into_inner()
    }

    /// A strip within the pixel limit (40000000×1 would need tens of GB for
    /// its overlay) is refused from its header; 16:1 is still a picture.
    #[test]
    fn strips_are_refused() {
        assert!(decode_image(&png(16, 1), None).is_ok());
        assert!(decode_image(&png(2, 32), None).is_ok());
        for (w, h) in [(17, 1), (1, 17), (4000, 1), (100, 1601)] {
            let e = decode_image(&png(w, h), None).unwrap_err().to_string();
            assert!(e.contains("16:1"), "{w}×{h}: {e}");
        }
    }

    #[test]
    fn letterbox_maps_back_exactly() {
        let mut cfg = Config::tiny();
        cfg.image_size = 224;
        let img = DynamicImage::ImageRgb8(RgbImage::new(448, 224));
        let (sq, f) = letterbox(&img, &cfg);
        assert_eq!((sq.width(), sq.height()), (224, 224));
        assert_eq!((f.pad_x, f.pad_y, f.scale), (0.0, 56.0, 0.5));
        // The model's centre is the input's centre; its corners map to the
        // input's corners once the padding is removed.
        assert_eq!(f.to_input_px(0.5, 0.5), (224.0, 112.0));
        assert_eq!(f.to_input_px(0.0, 56.0 / 224.0), (0.0, 0.0));
        let (u, v) = f.from_input_norm(0.25, 0.75);
        let (x, y) = f.to_input_norm(u, v);
        assert!((x - 0.25).abs() < 1e-6 && (y - 0.75).abs() < 1e-6);
    }
}
