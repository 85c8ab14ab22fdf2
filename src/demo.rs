//! The demo's runs, as the command line asks for them: one prediction with
//! its figures, a batch, or an explanation. `cli.rs` turns arguments into a
//! [`RunSpec`]; everything else happens here, so tests and examples can do
//! the same.
//!
//! Order of work: check the command and the output paths, read the image,
//! load the model, predict (one forward pass), compare with the ground truth
//! if any, draw everything in memory, then stage every file (written whole
//! to a temporary file beside its name). The caller prints the report and
//! commits the files (`output::print_and_commit`): all of them appear, or
//! none.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use image::RgbImage;

use crate::checkpoint::Source;
use crate::faithfulness::{self, Case};
use crate::grid::PatchGrid;
use crate::maps::{self, HeadFusion};
use crate::model::vla::Decoding;
use crate::output::{same_file, Staged};
use crate::overlay::{self, Marker, Style};
use crate::pipeline::{Pipeline, Prediction};
use crate::report::{self, Figure, Output, RunReport};
use crate::{export, grounding, preprocess};

mod batch;
mod explain_run;

pub use batch::batch;
pub use explain_run::{explain, ProbeSpec};

/// The contact sheets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sheet {
    PerHead,
    PerLayer,
    PerToken,
    Rollout,
}

impl Sheet {
    pub fn name(self) -> &'static str {
        match self {
            Sheet::PerHead => "per-head",
            Sheet::PerLayer => "per-layer",
            Sheet::PerToken => "per-token",
            Sheet::Rollout => "rollout",
        }
    }
}

/// Where the model comes from.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub source: Source,
    pub device: String,
    pub dtype: String,
}

/// How the figures look and what the rollout shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct FigureSpec {
    pub style: Style,
    pub head_fusion: HeadFusion,
    /// Rollout of one query patch (row, column) instead of the mean over all.
    pub rollout_patch: Option<(usize, usize)>,
    /// What the overlay's colour shows: attention, rollout or relevance.
    pub method: faithfulness::Method,
}

/// One validated run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub image: PathBuf,
    pub cmd: String,
    pub decoding: Decoding,
    /// The overlay PNG; `None` writes none.
    pub overlay: Option<PathBuf>,
    pub sheets: Vec<Sheet>,
    /// The npz export; its manifest goes beside it.
    pub export: Option<PathBuf>,
    pub figures: FigureSpec,
}

/// `scene.png` -> `scene.overlay.png`, in the current directory.
pub fn default_overlay(image: &Path) -> PathBuf {
    let stem = image
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from(format!("{stem}.overlay.png"))
}

/// A sheet's file: `x.overlay.png` (or `x.png`) -> `x.per-head.png`.
pub fn sheet_path(overlay: &Path, sheet: Sheet) -> PathBuf {
    let base = overlay.with_extension("");
    let base = if base.extension().is_some_and(|e| e == "overlay") {
        base.with_extension("")
    } else {
        base
    };
    PathBuf::from(format!("{}.{}.png", base.display(), sheet.name()))
}

/// Refuses an empty or overlong command before anything slow happens.
pub fn check_command(cmd: &str) -> Result<()> {
    crate::tokens::check_command(cmd).map(drop)
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Every file a run would write, checked: the right extensions, and never
/// the input image or its ground truth.
fn outputs(spec: &RunSpec) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if let Some(o) = &spec.overlay {
        if !has_ext(o, "png") {
            bail!("--overlay {} must end in .png", o.display());
        }
        out.push(o.clone());
    }
    let base = spec
        .overlay
        .clone()
        .unwrap_or_else(|| default_overlay(&spec.image));
    out.extend(spec.sheets.iter().map(|&s| sheet_path(&base, s)));
    if let Some(npz) = &spec.export {
        if !has_ext(npz, "npz") {
            bail!("--export {} must end in .npz", npz.display());
        }
        out.extend([npz.clone(), export::manifest_path(npz)]);
    }
    let inputs = [spec.image.clone(), spec.image.with_extension("json")];
    crate::output::check_not_inputs(out.iter().map(PathBuf::as_path), &inputs)?;
    Ok(out)
}

/// The overlay's entry in the report: where it was written, its size, and
/// the `method`'s map it colours, with that map's `peak` on a `grid`².
fn figure(
    path: &Path,
    fig: &RgbImage,
    (w, h): (u32, u32),
    method: faithfulness::Method,
    peak: usize,
    grid: usize,
) -> Figure {
    Figure {
        path: path.display().to_string(),
        width: fig.width(),
        height: fig.height(),
        image_region: [0, 0, w, h],
        map: method.name().into(),
        peak_patch: report::Patch {
            index: peak,
            row: peak / grid,
            col: peak % grid,
        },
    }
}

/// The report's common part, with the ground truth when it lies beside the image.
fn base_report(p: &Pipeline, image: &Path, cmd: &str, pred: &Prediction) -> Result<RunReport> {
    let mut rep = report::build(p, &image.display().to_string(), cmd, pred);
    let (scene, warning) = grounding::load_beside(image, &pred.frame, p.config().grid());
    rep.warnings.extend(warning);
    if let Some(scene) = &scene {
        rep.grounding = Some(grounding::ground(scene, cmd, pred)?);
    }
    Ok(rep)
}

/// One prediction, its figures and its export. Returns the report and the
/// staged files, which appear when committed.
pub fn run(spec: &RunSpec, model: &ModelSpec) -> Result<(RunReport, Staged)> {
    check_command(&spec.cmd)?;
    let paths = outputs(spec)?;
    let img = preprocess::load_image(&spec.image)?;
    let p = Pipeline::load_as(&model.source, &model.device, &model.dtype)?;
    let cfg = p.config().clone();
    let rollout_patch = match spec.figures.rollout_patch {
        Some((r, c)) if r >= cfg.grid() || c >= cfg.grid() => {
            bail!(
                "--rollout-patch {r},{c} is outside the {0}×{0} patch grid (0 to {1})",
                cfg.grid(),
                cfg.grid() - 1
            )
        }
        Some((r, c)) => Some(r * cfg.grid() + c),
        None => None,
    };
    let method = spec.figures.method;
    let capture = !spec.sheets.is_empty()
        || spec.export.is_some()
        || method != faithfulness::Method::Attention;
    let cmd = spec.cmd.as_str();
    let pred = p
        .predict(std::slice::from_ref(&img), &[cmd], &spec.decoding, capture)?
        .remove(0);
    let mut rep = base_report(&p, &spec.image, cmd, &pred)?;

    let t0 = Instant::now();
    let style = spec.figures.style;
    let rgb = img.to_rgb8();
    let mut files = Staged::new();
    let mut next = paths.into_iter();
    if spec.overlay.is_some() {
        let path = next.next().context("no overlay path")?;
        let (fig, peak) = match method {
            faithfulness::Method::Attention => (
                overlay::draw_prediction(&img, &pred, &cfg, &style)?,
                maps::argmax(&pred.boa_attention),
            ),
            _ => {
                let (maps, case) = maps_and_case(&p, &img, &pred)?;
                let first = pred.steps.first().map(|s| s.token);
                let map = faithfulness::map_of(&p.model, &case, maps, first, method)?;
                let what = match method {
                    faithfulness::Method::Rollout => "colour: the <boa> attention traced back through the ViT's rollout to the input patches",
                    _ => "colour: relevance of the first token's place (Chefer et al. 2021: attention weighted by its gradient, through every layer)",
                };
                let fig = overlay::draw_map(
                    &img,
                    &pred,
                    &cfg,
                    &style,
                    &map,
                    &overlay::caption_for(&pred, what.into()),
                )?;
                (fig, maps::argmax(&map))
            }
        };
        let size = (rgb.width(), rgb.height());
        rep.overlay = Some(figure(&path, &fig, size, method, peak, cfg.grid()));
        files.add(&path, &overlay::png_bytes(&fig)?)?;
    }
    let action_maps =
        if method != faithfulness::Method::Attention && spec.sheets.contains(&Sheet::PerToken) {
            let (maps, case) = maps_and_case(&p, &img, &pred)?;
            let steps: Vec<_> = pred.steps.iter().map(|s| s.token).collect();
            Some(faithfulness::action_maps(
                &p.model, &case, maps, &steps, method,
            )?)
        } else {
            None
        };
    for &sheet in &spec.sheets {
        let path = next.next().context("no sheet path")?;
        let (fig, panels) = draw_sheet(
            sheet,
            &rgb,
            &pred,
            &cfg,
            &spec.figures,
            rollout_patch,
            action_maps.as_deref(),
        )?;
        files.add(&path, &overlay::png_bytes(&fig)?)?;
        rep.outputs.push(Output {
            kind: sheet.name().into(),
            path: path.display().to_string(),
            panels,
        });
    }
    let figures_ms = t0.elapsed().as_secs_f64() * 1e3;
    if let (Some(npz), Some(manifest)) = (next.next(), next.next()) {
        let maps = pred
            .maps
            .as_ref()
            .context("the attention maps were not captured")?;
        let pad = p.tokenizer.id_to_token(p.tokenizer.pad_id());
        let (bytes, json) = export::encode(&npz, maps, &pred, &cfg, cmd, &pad)?;
        for (kind, path) in [("export", &npz), ("manifest", &manifest)] {
            rep.outputs.push(Output {
                kind: kind.into(),
                path: path.display().to_string(),
                panels: Vec::new(),
            });
        }
        files.add(&npz, &bytes)?;
        files.add(&manifest, &json)?;
    }
    rep.set_overlay_ms(figures_ms);
    Ok((rep, files))
}

/// One contact sheet and its panel labels.
/// `pred`'s maps, and its image and command as a faithfulness case: what a
/// map that runs the model again (rollout, relevance) starts from.
fn maps_and_case<'a>(
    p: &Pipeline,
    img: &image::DynamicImage,
    pred: &'a Prediction,
) -> Result<(&'a crate::model::AttentionMaps, Case)> {
    let maps = pred
        .maps
        .as_ref()
        .context("the attention maps were not captured")?;
    let (inputs, _) = p.prepare_encoded(
        std::slice::from_ref(img),
        std::slice::from_ref(&pred.command),
    )?;
    Ok((maps, Case::from_inputs(&inputs)?))
}

pub fn draw_sheet(
    sheet: Sheet,
    rgb: &RgbImage,
    pred: &Prediction,
    cfg: &crate::model::Config,
    f: &FigureSpec,
    patch: Option<usize>,
    action_maps: Option<&[Vec<f32>]>,
) -> Result<(RgbImage, Vec<String>)> {
    let m = pred
        .maps
        .as_ref()
        .context("the attention maps were not captured")?;
    let cmd = pred.command.words.join(" ");
    let (title, panels, columns) = match sheet {
        Sheet::PerHead => {
            let title = format!("\"{cmd}\": cross-attention of <boa> (first action token) per fusion layer and head");
            (title, maps::per_head_panels(m)?, cfg.num_attention_heads)
        }
        Sheet::PerLayer => {
            let title =
                format!("\"{cmd}\": cross-attention of <boa> per fusion layer, heads averaged");
            (title, maps::per_layer_panels(m)?, 4)
        }
        Sheet::PerToken => {
            let (mut panels, columns) = maps::per_token_panels(m, pred)?;
            let mut title = format!("\"{cmd}\": where the query of each word and each action token looked (last fusion layer, heads averaged)");
            if let Some(actions) = action_maps {
                // The action tokens' panels come last, one per token.
                let first = panels.len().saturating_sub(actions.len());
                for (panel, values) in panels[first..].iter_mut().zip(actions) {
                    panel.values = values.clone();
                }
                title += &format!("; action tokens: {}", f.method.name());
            }
            (title, panels, columns)
        }
        Sheet::Rollout => {
            let which = match patch {
                Some(p) => format!(
                    "row of query patch {p} (row {}, col {})",
                    p / cfg.grid(),
                    p % cfg.grid()
                ),
                None => "mean over all query patches".into(),
            };
            let fused = match f.head_fusion {
                HeadFusion::Mean => "mean",
                HeadFusion::Max => "max",
                HeadFusion::Min => "min",
            };
            let title = format!(
                "ViT attention rollout (Abnar & Zuidema 2020): A' = ½A + ½I, rows renormalised, multiplied over the layers; heads fused by {fused}; {which}"
            );
            (
                title,
                maps::rollout_panels(m, &pred.boa_attention, f.head_fusion, patch)?,
                3,
            )
        }
    };
    let labels = panels
        .iter()
        .filter(|p| !p.values.is_empty())
        .map(|p| p.label.clone())
        .collect();
    let marks: Vec<Marker> = overlay::markers(pred);
    let fig = overlay::sheet(
        rgb,
        &PatchGrid::new(pred.frame, cfg),
        &title,
        &panels,
        &marks,
        columns,
        &f.style,
    )?;
    Ok((fig, labels))
}
