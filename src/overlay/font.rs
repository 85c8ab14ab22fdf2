//! Labels for the figures, drawn with fonts embedded in the binary, so no
//! system font is needed.
//!
//! DejaVu Sans (Bitstream Vera licence) draws Latin text, digits and the
//! arrows and symbols the captions use; NanumSquare (SIL OFL 1.1) draws the
//! Hangul of Korean commands. Each character takes the first font that has
//! it; a character neither has is drawn as DejaVu's "missing glyph" box
//! rather than failing. Both fonts are scaled to the same em size, so mixed
//! text sits on one baseline at one size. Licences: assets/fonts/LICENSE-*.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use anyhow::{anyhow, Result};
use image::{Rgb, RgbImage};

static DEJAVU: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static NANUM: &[u8] = include_bytes!("../../assets/fonts/NanumSquareR.ttf");

/// The two embedded fonts, primary first.
pub struct Fonts {
    faces: [FontRef<'static>; 2],
}

/// The fonts, parsed once.
pub fn fonts() -> Result<&'static Fonts> {
    static FONTS: OnceLock<Option<Fonts>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let a = FontRef::try_from_slice(DEJAVU).ok()?;
            let b = FontRef::try_from_slice(NANUM).ok()?;
            Some(Fonts { faces: [a, b] })
        })
        .as_ref()
        .ok_or_else(|| {
            anyhow!("the embedded fonts could not be parsed (the binary is damaged; rebuild it)")
        })
}

/// One character placed: which face, which glyph, where the pen is.
struct Placed {
    face: usize,
    id: GlyphId,
    x: f32,
}

impl Fonts {
    /// The face that has `c`, and its glyph. Falls back to the primary face's
    /// missing-glyph box.
    fn glyph(&self, c: char) -> (usize, GlyphId) {
        for (i, f) in self.faces.iter().enumerate() {
            let id = f.glyph_id(c);
            if id.0 != 0 {
                return (i, id);
            }
        }
        (0, GlyphId(0))
    }

    /// The scale that gives face `i` an em of `em` pixels.
    fn scale(&self, i: usize, em: f32) -> PxScale {
        let f = &self.faces[i];
        let upem = f.units_per_em().unwrap_or(1000.0);
        PxScale::from(em * f.height_unscaled() / upem)
    }

    fn layout(&self, text: &str, em: f32) -> (Vec<Placed>, f32) {
        let mut out = Vec::with_capacity(text.len());
        let mut x = 0.0;
        let mut prev: Option<(usize, GlyphId)> = None;
        for c in text.chars() {
            let (face, id) = self.glyph(c);
            let sf = self.faces[face].as_scaled(self.scale(face, em));
            if let Some((pf, pid)) = prev {
                if pf == face {
                    x += sf.kern(pid, id);
                }
            }
            out.push(Placed { face, id, x });
            x += sf.h_advance(id);
            prev = Some((face, id));
        }
        (out, x)
    }

    /// Width of `text` in pixels at an em of `em` pixels.
    pub fn width(&self, text: &str, em: f32) -> f32 {
        self.layout(text, em).1
    }

    /// Line height (ascent to descent of the primary face) at `em`.
    pub fn line_height(&self, em: f32) -> f32 {
        self.faces[0].as_scaled(self.scale(0, em)).height()
    }

    /// Draws `text` with its top-left corner at (x, y), blending by coverage.
    pub fn draw(&self, img: &mut RgbImage, x: f32, y: f32, em: f32, color: [u8; 3], text: &str) {
        let baseline = y + self.faces[0].as_scaled(self.scale(0, em)).ascent();
        let (placed, _) = self.layout(text, em);
        let (w, h) = (img.width() as i32, img.height() as i32);
        for p in placed {
            let face = &self.faces[p.face];
            let glyph =
                p.id.with_scale_and_position(self.scale(p.face, em), point(x + p.x, baseline));
            let Some(outlined) = face.outline_glyph(glyph) else {
                continue;
            };
            let b = outlined.px_bounds();
            outlined.draw(|gx, gy, cov| {
                let (px, py) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                if px >= 0 && py >= 0 && px < w && py < h {
                    let dst = img.get_pixel_mut(px as u32, py as u32);
                    *dst = blend(*dst, color, cov.clamp(0.0, 1.0));
                }
            });
        }
    }

    /// Draws `text` with a one-pixel halo of `halo`, readable on any background.
    pub fn draw_halo(
        &self,
        img: &mut RgbImage,
        (x, y): (f32, f32),
        em: f32,
        color: [u8; 3],
        halo: [u8; 3],
        text: &str,
    ) {
        for (dx, dy) in [
            (-1.0, 0.0),
            (1.0, 0.0),
            (0.0, -1.0),
            (0.0, 1.0),
            (-1.0, -1.0),
            (1.0, 1.0),
            (-1.0, 1.0),
            (1.0, -1.0),
        ] {
            self.draw(img, x + dx, y + dy, em, halo, text);
        }
        self.draw(img, x, y, em, color, text);
    }

    /// Splits `text` into lines no wider than `max_width`, at spaces.
    pub fn wrap(&self, text: &str, em: f32, max_width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split(' ') {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if !line.is_empty() && self.width(&candidate, em) > max_width {
                lines.push(std::mem::take(&mut line));
                line = word.to_string();
            } else {
                line = candidate;
            }
        }
        lines.push(line);
        lines
    }
}

/// `dst` blended towards `src` by `a` in [0, 1].
pub fn blend(dst: Rgb<u8>, src: [u8; 3], a: f32) -> Rgb<u8> {
    let mix = |d: u8, s: u8| {
        (d as f32 + (s as f32 - d as f32) * a)
            .round()
            .clamp(0.0, 255.0) as u8
    };
    Rgb([
        mix(dst.0[0], src[0]),
        mix(dst.0[1], src[1]),
        mix(dst.0[2], src[2]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_and_hangul_both_have_glyphs() {
        let f = fonts().unwrap();
        for c in ['a', 'Z', '0', '→', '○', '×', '빨', '컵', '집'] {
            assert_ne!(f.glyph(c).1 .0, 0, "no glyph for {c:?}");
        }
        // Hangul comes from the fallback face.
        assert_eq!(f.glyph('컵').0, 1);
        assert_eq!(f.glyph('a').0, 0);
    }

    #[test]
    fn text_is_drawn_and_measured() {
        let f = fonts().unwrap();
        let mut img = RgbImage::new(200, 40);
        f.draw(&mut img, 2.0, 2.0, 16.0, [255, 255, 255], "빨간 컵 red cup");
        assert!(img.pixels().filter(|p| p.0[0] > 128).count() > 50);
        let w = f.width("red cup", 16.0);
        assert!(w > 30.0 && w < 100.0, "{w}");
        // A character in neither face still lays out (as a box), never panics.
        assert!(f.width("\u{10FFFD}", 16.0) > 0.0);
    }
}
