//! Figures: attention heatmaps over the input image, and contact sheets of
//! several maps. This module only draws what [`crate::maps`] computed.
//!
//! An overlay PNG is laid out as
//!
//! ```text
//! ┌──────────────────────────┬───────┐
//! │ input image, W × H,      │ colour│
//! │ pixel for pixel, under   │ bar + │
//! │ the heatmap, the 60%     │ value │
//! │ outline and the markers  │ range │
//! ├──────────────────────────┴───────┤
//! │ caption: command -> action       │
//! └──────────────────────────────────┘
//! ```
//!
//! so pixel (x, y) of the input is pixel (x, y) of the PNG; the strips add
//! `bar_width` columns on the right and `caption_height` rows below (see
//! [`OverlaySizes`]).

pub mod font;
pub mod heat;
pub mod sheet;

use anyhow::{Context, Result};
use image::{DynamicImage, Rgb, RgbImage};

pub use heat::format_value;
pub use sheet::sheet;

use crate::grid::{mass_set, PatchGrid};
use crate::model::Config;
use crate::pipeline::Prediction;

/// Narrowest overlay PNG, in pixels (small images get a wider caption strip).
pub const MIN_WIDTH: u32 = 400;

/// Share of the attention mass the outline encloses.
pub const MASS_SHARE: f32 = 0.6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    #[default]
    Turbo,
    Viridis,
    Inferno,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upsample {
    /// Each patch a flat square: exactly what the model saw.
    #[default]
    Nearest,
    /// Smooth between patch centres: prettier, less honest.
    Bilinear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// Each map's colours run from its own minimum to its own maximum.
    #[default]
    PerMap,
    /// All maps of a figure share one range, from 0 to the largest value, so
    /// panels can be compared.
    Shared,
}

/// How maps are coloured and blended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    pub colormap: Colormap,
    /// Opacity of the heatmap over the image, 0 (image only) to 1 (map only).
    pub alpha: f32,
    pub upsample: Upsample,
    pub scale: Scale,
}

impl Default for Style {
    fn default() -> Self {
        Self {
            colormap: Colormap::Turbo,
            alpha: 0.5,
            upsample: Upsample::Nearest,
            scale: Scale::PerMap,
        }
    }
}

impl Style {
    /// The colour range of one map under this style.
    pub fn range(&self, map: &[f32]) -> (f32, f32) {
        let hi = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lo = match self.scale {
            Scale::PerMap => map.iter().copied().fold(f32::INFINITY, f32::min),
            Scale::Shared => 0.0,
        };
        if hi.is_finite() && lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (0.0, 1.0)
        }
    }
}

/// A waypoint to mark, in input pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub pixel: [f32; 2],
    pub label: String,
    /// The gripper closes here (drawn filled).
    pub closed: bool,
}

/// Sizes of an overlay's parts, in pixels, for an image of a given size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlaySizes {
    /// Text size (em).
    pub em: f32,
    pub margin: u32,
    /// Width of the strip on the right that holds the colour bar.
    pub bar_width: u32,
    /// Height of the caption strip below the image.
    pub caption_height: u32,
    /// Size of the whole PNG.
    pub width: u32,
    pub height: u32,
}

/// The text size for an image: about 1/28 of its longer side, 12 to 36 px.
pub fn em_for(width: u32, height: u32) -> f32 {
    (width.max(height) as f32 / 28.0).clamp(12.0, 36.0).round()
}

/// Lays out an overlay of a `width` × `height` image with `caption` lines.
pub fn layout(width: u32, height: u32, caption: &[String]) -> Result<(OverlaySizes, Vec<String>)> {
    let f = font::fonts()?;
    let em = em_for(width, height);
    let margin = (em * 0.6).round() as u32;
    let label_w = f.width("0.000", em).max(f.width("9.9e-3", em)).ceil() as u32;
    let bar_width = margin + (em as u32) + margin / 2 + label_w + margin;
    // At least MIN_WIDTH wide, so the caption stays readable under small images.
    let total_w = (width + bar_width).max(MIN_WIDTH);
    let lines: Vec<String> = caption
        .iter()
        .flat_map(|l| f.wrap(l, em, (total_w - 2 * margin) as f32))
        .collect();
    let line_h = (f.line_height(em) * 1.2).ceil() as u32;
    let caption_height = 2 * margin + line_h * lines.len() as u32;
    let image_h = height.max(4 * line_h);
    let l = OverlaySizes {
        em,
        margin,
        bar_width,
        caption_height,
        width: total_w,
        height: image_h + caption_height,
    };
    Ok((l, lines))
}

/// Draws `map` over the image with the outline of its top [`MASS_SHARE`] of
/// mass, the markers, a colour bar and the caption.
pub fn overlay(
    img: &RgbImage,
    g: &PatchGrid,
    map: &[f32],
    markers: &[Marker],
    caption: &[String],
    style: &Style,
) -> Result<RgbImage> {
    let range = style.range(map);
    overlay_with_range(img, g, map, range, markers, caption, style)
}

/// [`overlay`] with an explicit colour range.
pub fn overlay_with_range(
    img: &RgbImage,
    g: &PatchGrid,
    map: &[f32],
    range: (f32, f32),
    markers: &[Marker],
    caption: &[String],
    style: &Style,
) -> Result<RgbImage> {
    check_map(map, g)?;
    let f = font::fonts()?;
    let (l, lines) = layout(img.width(), img.height(), caption)?;
    let mut canvas = RgbImage::from_pixel(l.width, l.height, Rgb([255, 255, 255]));
    let region = heat_region(img, g, map, range, markers, style, l.em)?;
    image::imageops::replace(&mut canvas, &region, 0, 0);

    // The colour bar, with its range.
    let x = img.width() + l.margin;
    let line_h = f.line_height(l.em);
    let bar_top = l.margin + line_h.ceil() as u32;
    let bar_h = (l.height - l.caption_height)
        .saturating_sub(bar_top + l.margin + line_h.ceil() as u32)
        .max(8);
    heat::colour_bar(&mut canvas, x, bar_top, l.em as u32, bar_h, style.colormap);
    let label_x = (x + l.em as u32 + l.margin / 2) as f32;
    f.draw(
        &mut canvas,
        x as f32,
        l.margin as f32 / 2.0,
        l.em * 0.85,
        [40, 40, 40],
        "weight",
    );
    f.draw(
        &mut canvas,
        label_x,
        bar_top as f32,
        l.em,
        [0, 0, 0],
        &format_value(range.1),
    );
    f.draw(
        &mut canvas,
        label_x,
        (bar_top + bar_h) as f32 - line_h,
        l.em,
        [0, 0, 0],
        &format_value(range.0),
    );

    // The caption.
    let line_step = (line_h * 1.2).ceil();
    let mut y = (l.height - l.caption_height + l.margin) as f32;
    for line in &lines {
        f.draw(&mut canvas, l.margin as f32, y, l.em, [0, 0, 0], line);
        y += line_step;
    }
    Ok(canvas)
}

/// The image region alone: map, outline and markers, at the image's size.
pub fn heat_region(
    img: &RgbImage,
    g: &PatchGrid,
    map: &[f32],
    range: (f32, f32),
    markers: &[Marker],
    style: &Style,
    em: f32,
) -> Result<RgbImage> {
    check_map(map, g)?;
    let f = font::fonts()?;
    let mut region = img.clone();
    heat::paint(&mut region, g, map, range, style);
    let thickness = (img.width().min(img.height()) / 150).clamp(1, 6);
    heat::outline(&mut region, g, &mass_set(map, MASS_SHARE), thickness);
    let radius = (img.width().min(img.height()) as f32 / 32.0).clamp(4.0, 40.0) as i32;
    for m in markers {
        heat::marker(&mut region, f, m.pixel, radius, &m.label, m.closed, em);
    }
    Ok(region)
}

fn check_map(map: &[f32], g: &PatchGrid) -> Result<()> {
    anyhow::ensure!(
        map.len() == g.grid * g.grid,
        "a heatmap needs {} values (a {}×{} grid), got {}",
        g.grid * g.grid,
        g.grid,
        g.grid,
        map.len()
    );
    Ok(())
}

/// One marker per predicted waypoint: "1 close", "2 open".
pub fn markers(pred: &Prediction) -> Vec<Marker> {
    pred.waypoints
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let closed = w.gripper == crate::action::Gripper::Close;
            Marker {
                pixel: w.pixel,
                label: format!("{} {}", i + 1, if closed { "close" } else { "open" }),
                closed,
            }
        })
        .collect()
}

/// The action tokens as text: `<x_137> <y_092> <close> <eoa>`.
pub fn action_text(pred: &Prediction) -> String {
    pred.steps
        .iter()
        .map(|s| s.token.text())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default caption: command, action, and what the picture shows.
pub fn caption(pred: &Prediction, cfg: &Config) -> Vec<String> {
    let what = format!("colour: where <boa> (the query that predicts the first action token) looked; last fusion layer, mean of {} heads", cfg.num_attention_heads);
    caption_for(pred, what)
}

/// The caption with `what` saying what the colour shows.
pub fn caption_for(pred: &Prediction, what: String) -> Vec<String> {
    let answer = match pred.outcome.message() {
        Some(m) => format!(" ({m}: no waypoints)"),
        None => String::new(),
    };
    vec![
        format!(
            "\"{}\" → {}{answer}",
            pred.command.words.join(" "),
            action_text(pred)
        ),
        what,
        format!("outline: the fewest patches holding {:.0}% of the weight · rings: waypoints, filled where the gripper closes", MASS_SHARE * 100.0),
    ]
}

/// The default overlay for a prediction: the `<boa>` map, averaged over heads.
pub fn draw_prediction(
    img: &DynamicImage,
    pred: &Prediction,
    cfg: &Config,
    style: &Style,
) -> Result<RgbImage> {
    draw_map(
        img,
        pred,
        cfg,
        style,
        &pred.boa_attention,
        &caption(pred, cfg),
    )
}

/// The overlay of any map over the patches, with its waypoints and caption.
pub fn draw_map(
    img: &DynamicImage,
    pred: &Prediction,
    cfg: &Config,
    style: &Style,
    map: &[f32],
    caption: &[String],
) -> Result<RgbImage> {
    overlay(
        &img.to_rgb8(),
        &PatchGrid::new(pred.frame, cfg),
        map,
        &markers(pred),
        caption,
        style,
    )
}

/// An image as PNG bytes, ready for `checkpoint::write_atomic`.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .context("cannot encode the figure as PNG")?;
    Ok(out.into_inner())
}
