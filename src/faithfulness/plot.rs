//! The curves as a picture: one panel per intervention, probability of the
//! original decision against k, one line per method.

use anyhow::Result;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_antialiased_line_segment_mut, draw_line_segment_mut};
use imageproc::pixelops::interpolate;

use super::{Curve, Intervention, Method};
use crate::overlay::font::fonts;

const PANEL_W: u32 = 360;
const PANEL_H: u32 = 260;
const MARGIN: f32 = 40.0;

fn colour(m: Method) -> [u8; 3] {
    match m {
        Method::Attention => [214, 39, 40],
        Method::Rollout => [255, 127, 14],
        Method::Relevance => [31, 119, 180],
        Method::Target => [44, 160, 44],
        Method::Random => [120, 120, 120],
    }
}

/// Draws `curves` side by side, one panel per intervention they hold.
pub fn draw(curves: &[Curve], title: &str) -> Result<RgbImage> {
    let f = fonts()?;
    let mut kinds: Vec<Intervention> = Vec::new();
    for c in curves {
        if !kinds.contains(&c.intervention) {
            kinds.push(c.intervention);
        }
    }
    let legend_h = 56;
    let w = PANEL_W * kinds.len().max(1) as u32;
    let mut img = RgbImage::from_pixel(w, PANEL_H + legend_h, Rgb([255, 255, 255]));
    f.draw(&mut img, 8.0, 4.0, 14.0, [0, 0, 0], title);
    for (i, kind) in kinds.iter().enumerate() {
        let x0 = i as f32 * PANEL_W as f32;
        panel(&mut img, x0, 24.0, curves, *kind)?;
    }
    // Legend: one swatch per method present.
    let mut x = 8.0;
    let y = (PANEL_H + legend_h) as f32 - 22.0;
    for m in [
        Method::Attention,
        Method::Rollout,
        Method::Relevance,
        Method::Target,
        Method::Random,
    ] {
        if curves.iter().any(|c| c.method == m) {
            let label = m.name().to_string();
            draw_line_segment_mut(&mut img, (x, y + 8.0), (x + 18.0, y + 8.0), Rgb(colour(m)));
            f.draw(&mut img, x + 22.0, y, 12.0, [0, 0, 0], &label);
            x += 34.0 + f.width(&label, 12.0);
        }
    }
    Ok(img)
}

fn panel(img: &mut RgbImage, x0: f32, y0: f32, curves: &[Curve], kind: Intervention) -> Result<()> {
    let f = fonts()?;
    let (w, h) = (
        PANEL_W as f32 - MARGIN - 12.0,
        PANEL_H as f32 - MARGIN - 24.0,
    );
    let (left, bottom) = (x0 + MARGIN, y0 + 18.0 + h);
    let axis = Rgb([60, 60, 60]);
    draw_line_segment_mut(img, (left, y0 + 18.0), (left, bottom), axis);
    draw_line_segment_mut(img, (left, bottom), (left + w, bottom), axis);
    f.draw(img, left, y0, 13.0, [0, 0, 0], kind.name());
    f.draw(img, x0 + 4.0, y0 + 14.0, 11.0, [90, 90, 90], "p");
    let mine: Vec<&Curve> = curves.iter().filter(|c| c.intervention == kind).collect();
    // k doubles from point to point, so the points are spaced evenly.
    let ks = mine.first().map(|c| c.ks.clone()).unwrap_or_default();
    let step = w / (ks.len().max(2) - 1) as f32;
    for (i, k) in ks.iter().enumerate() {
        let x = left + i as f32 * step;
        draw_line_segment_mut(img, (x, bottom), (x, bottom + 3.0), axis);
        f.draw(
            img,
            x - 4.0,
            bottom + 4.0,
            10.0,
            [90, 90, 90],
            &k.to_string(),
        );
    }
    f.draw(img, left + w - 10.0, bottom + 16.0, 11.0, [90, 90, 90], "k");
    f.draw(img, x0 + 4.0, y0 + 24.0, 11.0, [90, 90, 90], "1");
    f.draw(img, x0 + 4.0, bottom - 8.0, 11.0, [90, 90, 90], "0");
    for c in mine {
        let pts: Vec<(f32, f32)> = c
            .prob
            .iter()
            .enumerate()
            .map(|(i, &p)| (left + i as f32 * step, bottom - p.clamp(0.0, 1.0) * h))
            .collect();
        for seg in pts.windows(2) {
            let a = (seg[0].0.round() as i32, seg[0].1.round() as i32);
            let b = (seg[1].0.round() as i32, seg[1].1.round() as i32);
            draw_antialiased_line_segment_mut(img, a, b, Rgb(colour(c.method)), interpolate);
        }
    }
    Ok(())
}
