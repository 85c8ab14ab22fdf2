//! Pixel work: a patch map laid over the input image, the 60%-mass outline,
//! waypoint markers and the colour bar.
//!
//! Every input pixel is mapped to the model's view through the letterbox
//! [`crate::grid::Frame`] ([`PatchGrid`]): pixel `(x, y)` has its centre at model pixel
//! `((x + ½)·scale + pad_x, (y + ½)·scale + pad_y)`, which lies in patch
//! `(⌊·/P⌋)`. Nearest upsampling gives every pixel its patch's value (patch
//! true: the squares are what the model saw); bilinear interpolates between
//! patch centres.

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_filled_rect_mut, draw_hollow_circle_mut};
use imageproc::rect::Rect;

use super::font::{blend, Fonts};
use super::{Colormap, Style, Upsample};
use crate::grid::PatchGrid;

impl Colormap {
    pub fn color(self, t: f32) -> [u8; 3] {
        let g = match self {
            Colormap::Turbo => colorous::TURBO,
            Colormap::Viridis => colorous::VIRIDIS,
            Colormap::Inferno => colorous::INFERNO,
        };
        let c = g.eval_continuous(t.clamp(0.0, 1.0) as f64);
        [c.r, c.g, c.b]
    }
}

/// A map's value at an input pixel.
fn sample(map: &[f32], g: &PatchGrid, x: u32, y: u32, how: Upsample) -> f32 {
    let n = g.grid;
    let (cx, cy) = g.patch_coords(x, y);
    let at = |c: usize, r: usize| map[r.min(n - 1) * n + c.min(n - 1)];
    match how {
        Upsample::Nearest => at(cx.max(0.0) as usize, cy.max(0.0) as usize),
        Upsample::Bilinear => {
            // Between patch centres, clamped at the border.
            let fx = (cx - 0.5).clamp(0.0, (n - 1) as f32);
            let fy = (cy - 0.5).clamp(0.0, (n - 1) as f32);
            let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
            let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
            let top = at(x0, y0) * (1.0 - tx) + at(x0 + 1, y0) * tx;
            let bottom = at(x0, y0 + 1) * (1.0 - tx) + at(x0 + 1, y0 + 1) * tx;
            top * (1.0 - ty) + bottom * ty
        }
    }
}

/// Blends the coloured map over `img` in place; `range` maps to the colour bar.
pub fn paint(img: &mut RgbImage, g: &PatchGrid, map: &[f32], range: (f32, f32), style: &Style) {
    let (lo, hi) = range;
    let span = (hi - lo).max(f32::MIN_POSITIVE);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let v = sample(map, g, x, y, style.upsample);
        *p = blend(*p, style.colormap.color((v - lo) / span), style.alpha);
    }
}

/// Outlines a set of patches: every patch edge between a member and a
/// non-member (or the grid's border) is drawn, white on a dark rim.
pub fn outline(img: &mut RgbImage, g: &PatchGrid, members: &[bool], thickness: u32) {
    let n = g.grid;
    let inside = |c: isize, r: isize| {
        c >= 0
            && r >= 0
            && (c as usize) < n
            && (r as usize) < n
            && members[r as usize * n + c as usize]
    };
    let mut edges = Vec::new();
    for r in 0..n as isize {
        for c in 0..n as isize {
            if !inside(c, r) {
                continue;
            }
            let (cu, ru) = (c as usize, r as usize);
            if !inside(c, r - 1) {
                edges.push((g.boundary_px(cu, ru), g.boundary_px(cu + 1, ru)));
            }
            if !inside(c, r + 1) {
                edges.push((g.boundary_px(cu, ru + 1), g.boundary_px(cu + 1, ru + 1)));
            }
            if !inside(c - 1, r) {
                edges.push((g.boundary_px(cu, ru), g.boundary_px(cu, ru + 1)));
            }
            if !inside(c + 1, r) {
                edges.push((g.boundary_px(cu + 1, ru), g.boundary_px(cu + 1, ru + 1)));
            }
        }
    }
    // A dark rim first, then the white line on top.
    for (color, extra) in [([20, 20, 20], 1i32), ([255, 255, 255], 0)] {
        for &((x0, y0), (x1, y1)) in &edges {
            let t = thickness as i32 + 2 * extra;
            let (left, top) = (
                x0.min(x1).round() as i32 - t / 2,
                y0.min(y1).round() as i32 - t / 2,
            );
            let w = ((x1 - x0).abs().round() as i32 + t).max(1) as u32;
            let h = ((y1 - y0).abs().round() as i32 + t).max(1) as u32;
            draw_filled_rect_mut(img, Rect::at(left, top).of_size(w, h), Rgb(color));
        }
    }
}

/// A waypoint marker: a white ring on a dark rim around the exact point,
/// filled when the gripper closes there, with its number beside it.
pub fn marker(
    img: &mut RgbImage,
    fonts: &Fonts,
    at: [f32; 2],
    radius: i32,
    label: &str,
    closed: bool,
    em: f32,
) {
    let c = (at[0].floor() as i32, at[1].floor() as i32);
    let dark = Rgb([20u8, 20, 20]);
    let white = Rgb([255u8, 255, 255]);
    for d in [-1, 0, 1, 2] {
        let r = radius + d;
        draw_hollow_circle_mut(img, c, r, if d == -1 || d == 2 { dark } else { white });
    }
    if closed {
        draw_filled_circle_mut(img, c, (radius / 2).max(2), white);
        draw_hollow_circle_mut(img, c, (radius / 2).max(2) + 1, dark);
    } else {
        draw_filled_circle_mut(img, c, 1, dark);
    }
    // Right of the ring, or left of it where the image ends; never off the top or bottom.
    let w = fonts.width(label, em);
    let right = at[0] + radius as f32 + 3.0;
    let x = if right + w + 1.0 > img.width() as f32 {
        at[0] - radius as f32 - 3.0 - w
    } else {
        right
    };
    let h = fonts.line_height(em);
    let y = (at[1] - h / 2.0).clamp(1.0, (img.height() as f32 - h - 1.0).max(1.0));
    fonts.draw_halo(img, (x, y), em, [255, 255, 255], [0, 0, 0], label);
}

/// A vertical colour bar, high values at the top, in the box at (x, y).
pub fn colour_bar(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colormap: Colormap) {
    for dy in 0..h {
        let t = 1.0 - dy as f32 / (h.max(2) - 1) as f32;
        let c = Rgb(colormap.color(t));
        for dx in 0..w {
            if x + dx < img.width() && y + dy < img.height() {
                img.put_pixel(x + dx, y + dy, c);
            }
        }
    }
    imageproc::drawing::draw_hollow_rect_mut(
        img,
        Rect::at(x as i32, y as i32).of_size(w.max(1), h.max(1)),
        Rgb([60, 60, 60]),
    );
}

/// A value for a label: three decimals, or scientific when tiny.
pub fn format_value(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 224 px view of 14 × 14 patches, which the numbers below assume.
    fn patch_grid(w: u32, h: u32) -> PatchGrid {
        let mut cfg = crate::model::Config::tiny();
        cfg.image_size = 224;
        let img = image::DynamicImage::ImageRgb8(RgbImage::new(w, h));
        let (_, frame) = crate::preprocess::letterbox(&img, &cfg);
        PatchGrid::new(frame, &cfg)
    }

    #[test]
    fn nearest_is_patch_true() {
        let g = patch_grid(224, 224);
        let mut map = vec![0.0; 196];
        map[14 + 2] = 1.0; // row 1, column 2
        assert_eq!(sample(&map, &g, 32, 16, Upsample::Nearest), 1.0);
        assert_eq!(sample(&map, &g, 47, 31, Upsample::Nearest), 1.0);
        assert_eq!(sample(&map, &g, 48, 16, Upsample::Nearest), 0.0);
        // Bilinear peaks at the patch centre and fades towards its neighbours.
        let centre = sample(&map, &g, 40, 24, Upsample::Bilinear);
        let edge = sample(&map, &g, 47, 24, Upsample::Bilinear);
        assert!(centre > 0.9 && edge < centre && edge > 0.0);
    }
}
