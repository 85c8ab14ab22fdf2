//! The camera of a randomised picture: which part of the table it shows, at
//! what size, aspect ratio and small roll, and the photographic damage done
//! afterwards (blur, noise, down-then-up scaling, JPEG).
//!
//! Geometry stays exact. The table lives in the unit square as before; the
//! camera maps a table point `w` to the picture's pixels by a similarity,
//! `p = R(θ)·(w − ½)·L + (W/2, H/2)`, with `L` pixels per table unit. A pixel
//! is painted from the table point under its centre, and [`Camera::to_view`]
//! maps a layout into the model's square view through the same letterbox the
//! pipeline applies, so the ground truth (masks, centres, actions) is the
//! picture's own.

use anyhow::Result;
use image::{codecs::jpeg::JpegEncoder, imageops, DynamicImage, RgbImage};
use rand::Rng;

use super::layout::{Layout, LayoutSpec};
use super::render::to_u8;
use crate::grid::Frame;
use crate::model::Config;

/// Long side of a randomised picture, pixels.
pub const MIN_SIDE: u32 = 128;
pub const MAX_SIDE: u32 = 1024;
/// Widest aspect ratio either way (2:1 and 1:2).
pub const MAX_ASPECT: f32 = 2.0;
/// Largest roll of the camera, radians (8°).
pub const MAX_ROLL: f32 = 0.14;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    pub width: u32,
    pub height: u32,
    /// Pixels per table unit.
    pub scale: f32,
    /// Roll, radians (positive turns the table clockwise on screen).
    pub roll: f32,
}

impl Camera {
    /// A random camera: long side log-uniform in `sides`, aspect ratio up to
    /// [`MAX_ASPECT`] either way, roll up to `max_roll`.
    pub fn random(rng: &mut impl Rng, sides: (u32, u32), max_roll: f32) -> Camera {
        let long = (rng.random_range((sides.0 as f32).ln()..=(sides.1 as f32).ln())).exp();
        let aspect = rng.random_range(0.0f32..=MAX_ASPECT.ln()).exp();
        let short = (long / aspect).max(32.0);
        let (width, height) = if rng.random_bool(0.5) {
            (long, short)
        } else {
            (short, long)
        };
        let roll = if max_roll > 0.0 {
            rng.random_range(-max_roll..=max_roll)
        } else {
            0.0
        };
        Camera {
            width: width.round() as u32,
            height: height.round() as u32,
            scale: width.max(height).round(),
            roll,
        }
    }

    /// The same view of the table with the long side at most `cap` pixels:
    /// one frame taken by a camera of lower resolution.
    pub fn capped(self, cap: u32) -> Camera {
        let long = self.width.max(self.height);
        if long <= cap {
            return self;
        }
        let k = cap as f32 / long as f32;
        let side = |n: u32| ((n as f32 * k).round() as u32).clamp(1, cap);
        let (width, height) = (side(self.width), side(self.height));
        Camera {
            width,
            height,
            scale: width.max(height) as f32,
            ..self
        }
    }

    /// The axis-aligned part of the table that lies wholly inside the picture
    /// whatever the roll, `[x0, y0, x1, y1]`, for [`LayoutSpec::visible`].
    pub fn visible(&self) -> [f32; 4] {
        let hx = 0.5 * self.width as f32 / self.scale;
        let hy = 0.5 * self.height as f32 / self.scale;
        let (s, c) = self.roll.abs().sin_cos();
        // A box of half sides (a, b) turned by the roll touches the picture's
        // edges when c·a + s·b = hx and s·a + c·b = hy.
        let det = c * c - s * s;
        let a = ((c * hx - s * hy) / det).clamp(0.0, 0.5);
        let b = ((c * hy - s * hx) / det).clamp(0.0, 0.5);
        [0.5 - a, 0.5 - b, 0.5 + a, 0.5 + b]
    }

    /// A layout spec that keeps objects inside this picture.
    pub fn spec(&self, base: &LayoutSpec) -> LayoutSpec {
        LayoutSpec {
            visible: self.visible(),
            ..base.clone()
        }
    }

    /// Table point under a picture point (pixels, continuous).
    pub fn to_table(&self, px: f32, py: f32) -> [f32; 2] {
        self.table_point_turned(self.roll.sin_cos(), px, py)
    }

    /// [`Camera::to_table`] with the roll's sine and cosine worked out once.
    fn table_point_turned(&self, (s, c): (f32, f32), px: f32, py: f32) -> [f32; 2] {
        let dx = (px - 0.5 * self.width as f32) / self.scale;
        let dy = (py - 0.5 * self.height as f32) / self.scale;
        // The inverse of the roll R(θ) is R(−θ).
        [0.5 + dx * c + dy * s, 0.5 - dx * s + dy * c]
    }

    /// Picture point (pixels, continuous) of a table point.
    pub fn to_picture(&self, w: [f32; 2]) -> [f32; 2] {
        let (s, c) = self.roll.sin_cos();
        let (dx, dy) = (w[0] - 0.5, w[1] - 0.5);
        [
            (dx * c - dy * s) * self.scale + 0.5 * self.width as f32,
            (dx * s + dy * c) * self.scale + 0.5 * self.height as f32,
        ]
    }

    /// The layout as the model sees it: every object moved, scaled and
    /// turned into the model's view through `frame` (the letterbox of this
    /// picture). The map is a similarity, so each shape's hit test in the
    /// view is exact.
    pub fn to_view(&self, layout: &Layout, frame: &Frame) -> Layout {
        let k = self.scale * frame.scale / frame.size as f32;
        let mut out = layout.clone();
        for o in &mut out.objects {
            let p = self.to_picture(o.center);
            let (u, v) = frame.from_input_norm(p[0] / self.width as f32, p[1] / self.height as f32);
            o.center = [u, v];
            o.size *= k;
            o.angle += self.roll;
        }
        out
    }

    /// Paints every pixel from the table point under its centre.
    pub fn paint(&self, mut colour: impl FnMut([f32; 2], u32, u32) -> [f32; 3]) -> RgbImage {
        let turn = self.roll.sin_cos();
        RgbImage::from_fn(self.width, self.height, |px, py| {
            let w = self.table_point_turned(turn, px as f32 + 0.5, py as f32 + 0.5);
            image::Rgb(colour(w, px, py).map(to_u8))
        })
    }
}

/// Photographic damage, applied after painting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Damage {
    /// Gaussian blur, pixels (0 = none).
    pub blur: f32,
    /// Gaussian noise, standard deviation in 8-bit levels.
    pub noise: f32,
    /// Scale down to this share of the size and back up (1 = none).
    pub rescale: f32,
    /// JPEG quality, or `None` for a lossless picture.
    pub jpeg: Option<u8>,
    pub seed: u64,
}

impl Damage {
    pub fn none() -> Damage {
        Damage {
            blur: 0.0,
            noise: 0.0,
            rescale: 1.0,
            jpeg: None,
            seed: 0,
        }
    }

    /// Each kind of damage with some probability, at a random strength.
    pub fn random(rng: &mut impl Rng) -> Damage {
        Damage {
            blur: if rng.random_bool(0.35) {
                rng.random_range(0.4..1.6)
            } else {
                0.0
            },
            noise: if rng.random_bool(0.4) {
                rng.random_range(2.0..10.0)
            } else {
                0.0
            },
            rescale: if rng.random_bool(0.3) {
                rng.random_range(0.35..0.8)
            } else {
                1.0
            },
            jpeg: rng.random_bool(0.5).then(|| rng.random_range(40..=95)),
            seed: rng.random(),
        }
    }

    pub fn apply(&self, img: RgbImage) -> Result<RgbImage> {
        let (w, h) = img.dimensions();
        let mut img = img;
        if self.blur > 0.0 {
            img = imageops::blur(&img, self.blur);
        }
        if self.rescale < 1.0 {
            let (sw, sh) = (
                ((w as f32 * self.rescale).round() as u32).max(8),
                ((h as f32 * self.rescale).round() as u32).max(8),
            );
            let small = imageops::resize(&img, sw, sh, imageops::FilterType::Triangle);
            img = imageops::resize(&small, w, h, imageops::FilterType::Triangle);
        }
        if self.noise > 0.0 {
            let seed = self.seed as u32;
            for (i, p) in img.pixels_mut().enumerate() {
                for (c, v) in p.0.iter_mut().enumerate() {
                    // A sum of three uniform draws is close enough to Gaussian.
                    let g: f32 = (0..3)
                        .map(|k| super::render::hash(seed ^ k, i as i32, c as i32) - 0.5)
                        .sum::<f32>()
                        * 2.0;
                    *v = to_u8(*v as f32 + g * self.noise);
                }
            }
        }
        if let Some(q) = self.jpeg {
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut bytes, q).encode_image(&img)?;
            img = image::load_from_memory(&bytes)?.to_rgb8();
        }
        Ok(img)
    }
}

/// A picture ready for the model: the letterboxed view and the layout in
/// view coordinates (see [`Camera::to_view`]).
pub struct Viewed {
    pub view: RgbImage,
    pub layout: Layout,
    pub frame: Frame,
}

/// Letterboxes a picture into the model's view, as the pipeline does, and
/// maps its table layout into that view.
pub fn view_of(picture: RgbImage, camera: &Camera, table: &Layout, cfg: &Config) -> Viewed {
    let (view, frame) = crate::preprocess::letterbox(&DynamicImage::ImageRgb8(picture), cfg);
    Viewed {
        layout: camera.to_view(table, &frame),
        view,
        frame,
    }
}

/// Test helper: every pixel whose centre lies on no object (and is not
/// `shaded`) is the same in `img` and in `bare` (the scene without its
/// objects), and some pixels do lie on an object. Returns that count.
#[cfg(test)]
pub(crate) fn assert_masks_hold(
    camera: &Camera,
    layout: &Layout,
    img: &RgbImage,
    bare: &RgbImage,
    shaded: impl Fn([f32; 2]) -> bool,
) -> usize {
    let mut inside = 0;
    for py in 0..camera.height {
        for px in 0..camera.width {
            let w = camera.to_table(px as f32 + 0.5, py as f32 + 0.5);
            if layout.object_at(w[0], w[1]).is_some() {
                inside += 1;
            } else if !shaded(w) {
                assert_eq!(
                    img.get_pixel(px, py),
                    bare.get_pixel(px, py),
                    "pixel ({px}, {py}) lies on no mask but changed"
                );
            }
        }
    }
    assert!(inside > 0, "no pixel lies on an object");
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_camera_round_trips_and_keeps_the_visible_box_inside() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let cam = Camera::random(&mut rng, (MIN_SIDE, MAX_SIDE), MAX_ROLL);
            let w = [0.31, 0.62];
            let back = cam.to_table(cam.to_picture(w)[0], cam.to_picture(w)[1]);
            assert!((back[0] - w[0]).abs() < 1e-4 && (back[1] - w[1]).abs() < 1e-4);
            let [x0, y0, x1, y1] = cam.visible();
            assert!(x1 > x0 && y1 > y0, "{cam:?}");
            for corner in [[x0, y0], [x1, y0], [x0, y1], [x1, y1]] {
                let p = cam.to_picture(corner);
                assert!(
                    p[0] >= -0.01 && p[0] <= cam.width as f32 + 0.01,
                    "{cam:?} {p:?}"
                );
                assert!(
                    p[1] >= -0.01 && p[1] <= cam.height as f32 + 0.01,
                    "{cam:?} {p:?}"
                );
            }
            let ratio = cam.width.max(cam.height) as f32 / cam.width.min(cam.height) as f32;
            assert!(ratio <= MAX_ASPECT + 0.02 && cam.width.max(cam.height) <= MAX_SIDE);
        }
    }
}
