//! Contact sheets: several labelled heatmaps over the same image in one PNG
//! (per head, per layer, per token, rollout).
//!
//! Each panel is the input image scaled so its longer side is at most
//! [`PANEL_SIDE`] pixels, with the map, the 60%-mass outline and the
//! waypoints, and a label above it. With `--scale shared` one colour bar on
//! the right serves every panel; with `per-map` each label carries its own
//! range.

use anyhow::{bail, Result};
use image::{imageops::FilterType, Rgb, RgbImage};

use super::heat::{self, format_value};
use super::{font, heat_region, Marker, Scale, Style};
use crate::grid::PatchGrid;
use crate::maps::Heatmap;

/// Longest side of a panel, in pixels.
pub const PANEL_SIDE: u32 = 256;

/// Lays `panels` out in rows of `columns` under a title.
pub fn sheet(
    img: &RgbImage,
    g: &PatchGrid,
    title: &str,
    panels: &[Heatmap],
    markers: &[Marker],
    columns: usize,
    style: &Style,
) -> Result<RgbImage> {
    if panels.iter().all(|p| p.values.is_empty()) {
        bail!("a contact sheet needs at least one map");
    }
    let f = font::fonts()?;
    let k = (PANEL_SIDE as f32 / img.width().max(img.height()) as f32).min(1.0);
    let (pw, ph) = (
        ((img.width() as f32 * k).round() as u32).max(1),
        ((img.height() as f32 * k).round() as u32).max(1),
    );
    let small = if k < 1.0 {
        image::imageops::resize(img, pw, ph, FilterType::Triangle)
    } else {
        img.clone()
    };
    let pg = g.resized(pw, ph);
    // Small panels: markers keep only their number ("1", not "1 close").
    let scaled: Vec<Marker> = markers
        .iter()
        .map(|m| Marker {
            pixel: [m.pixel[0] * k, m.pixel[1] * k],
            label: m.label.split(' ').next().unwrap_or("").to_string(),
            closed: m.closed,
        })
        .collect();

    let em = 12.0;
    let line_h = (f.line_height(em) * 1.15).ceil() as u32;
    let gap = 10;
    let label_lines = 2;
    let cell_w = pw.max(140) + gap;
    let cell_h = ph + line_h * label_lines + gap;
    let columns = columns.clamp(1, panels.len());
    let rows = panels.len().div_ceil(columns);
    let shared_max = panels
        .iter()
        .flat_map(|p| p.values.iter().copied())
        .fold(0.0f32, f32::max);
    let bar_w = 80;
    let title_lines = f.wrap(
        title,
        em * 1.15,
        (columns as u32 * cell_w + bar_w) as f32 - 2.0 * gap as f32,
    );
    let title_h = gap + line_h * title_lines.len() as u32 + gap / 2;
    let width = gap + columns as u32 * cell_w + bar_w;
    let height = title_h + rows as u32 * cell_h + gap;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (i, line) in title_lines.iter().enumerate() {
        f.draw(
            &mut canvas,
            gap as f32,
            (gap + i as u32 * line_h) as f32,
            em * 1.15,
            [0, 0, 0],
            line,
        );
    }

    for (i, p) in panels.iter().enumerate() {
        if p.values.is_empty() {
            continue; // a blank cell, to start a new row
        }
        let (r, c) = (i / columns, i % columns);
        let (x, y) = (gap + c as u32 * cell_w, title_h + r as u32 * cell_h);
        let range = match style.scale {
            Scale::Shared => (0.0, if shared_max > 0.0 { shared_max } else { 1.0 }),
            Scale::PerMap => style.range(&p.values),
        };
        let mut label = p.label.clone();
        if style.scale == Scale::PerMap {
            label = format!(
                "{label} ({}–{})",
                format_value(range.0),
                format_value(range.1)
            );
        }
        for (j, line) in f
            .wrap(&label, em, (cell_w - gap) as f32)
            .iter()
            .take(label_lines as usize)
            .enumerate()
        {
            f.draw(
                &mut canvas,
                x as f32,
                (y + j as u32 * line_h) as f32,
                em,
                [0, 0, 0],
                line,
            );
        }
        let region = heat_region(&small, &pg, &p.values, range, &scaled, style, em * 0.9)?;
        image::imageops::replace(
            &mut canvas,
            &region,
            x as i64,
            (y + line_h * label_lines) as i64,
        );
    }

    // The colour bar: the shared range, or "each panel's own".
    let bx = gap + columns as u32 * cell_w + gap;
    let (top, bottom) = match style.scale {
        Scale::Shared => (format_value(shared_max), "0".to_string()),
        Scale::PerMap => ("max".to_string(), "min".to_string()),
    };
    let bar_top = title_h + line_h;
    let bar_h = (ph + line_h)
        .min(height.saturating_sub(bar_top + gap + line_h))
        .max(16);
    heat::colour_bar(&mut canvas, bx, bar_top, 14, bar_h, style.colormap);
    f.draw(
        &mut canvas,
        (bx + 18) as f32,
        bar_top as f32,
        em,
        [0, 0, 0],
        &top,
    );
    f.draw(
        &mut canvas,
        (bx + 18) as f32,
        (bar_top + bar_h) as f32 - line_h as f32,
        em,
        [0, 0, 0],
        &bottom,
    );
    if style.scale == Scale::PerMap {
        f.draw(
            &mut canvas,
            bx as f32,
            (bar_top + bar_h + 4) as f32,
            em * 0.85,
            [80, 80, 80],
            "per panel",
        );
    }
    Ok(canvas)
}
