//! The default run: `vla-demo --image scene.png --cmd "..."` (one
//! prediction and its figures) or `--batch pairs.jsonl` (many in one
//! forward pass): the flags, checked into a [`RunSpec`], and the run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use vla_demo::demo::{self, FigureSpec, RunSpec, Sheet};
use vla_demo::faithfulness::Method;
use vla_demo::maps::HeadFusion;
use vla_demo::output;
use vla_demo::overlay::{Colormap, Scale, Style, Upsample};

use super::{warn, DecodeArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The scene image (PNG, JPEG, WebP, BMP, ...; sides at most 16:1 apart).
    #[arg(long)]
    image: Option<PathBuf>,
    /// The command, in English or Korean.
    #[arg(long)]
    cmd: Option<String>,
    /// Run many pairs in one batched forward pass: a JSON Lines file with one
    /// {"image": PATH, "cmd": TEXT} per line; prints one JSON line per pair, in order.
    #[arg(long, conflicts_with_all = ["image", "cmd", "overlay", "per_head", "per_layer", "per_token", "rollout", "export"])]
    pub batch: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    decode: DecodeArgs,
    /// Where to write the overlay PNG [default: <input stem>.overlay.png in the current directory].
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// Write no overlay.
    #[arg(long, conflicts_with = "overlay")]
    no_overlay: bool,
    /// With --batch: write each pair's overlay into this directory as NNN-<stem>.overlay.png.
    #[arg(long, requires = "batch")]
    overlay_dir: Option<PathBuf>,
    #[command(flatten)]
    style: StyleArgs,
    /// Contact sheet: the <boa> map of every fusion layer × head (<overlay base>.per-head.png).
    #[arg(long)]
    per_head: bool,
    /// Contact sheet: the <boa> map of each fusion layer, heads averaged (<overlay base>.per-layer.png).
    #[arg(long)]
    per_layer: bool,
    /// Contact sheet: where each command word and each action token looked (<overlay base>.per-token.png).
    #[arg(long)]
    per_token: bool,
    /// Contact sheet: ViT attention rollout, Abnar & Zuidema 2020 (<overlay base>.rollout.png).
    #[arg(long)]
    rollout: bool,
    /// How --rollout fuses the heads of a layer.
    #[arg(long, value_enum, default_value_t = HeadFusionArg::Mean)]
    head_fusion: HeadFusionArg,
    /// What the overlay's colour shows: the attention map, its rollout, or relevance (Chefer et al. 2021).
    #[arg(long, value_enum, default_value_t = MethodArg::Attention)]
    method: MethodArg,
    /// Show the rollout row of one query patch, "ROW,COL", instead of the mean over all query patches.
    #[arg(long, requires = "rollout", value_parser = row_col, value_name = "ROW,COL")]
    rollout_patch: Option<(usize, usize)>,
    /// Write every attention matrix to this .npz, with a JSON manifest beside it (same stem, .json).
    #[arg(long)]
    export: Option<PathBuf>,
    /// Print one JSON object instead of the readable report.
    #[arg(long)]
    json: bool,
}

/// How heatmaps look.
#[derive(Args, Debug, Clone)]
struct StyleArgs {
    #[arg(long, value_enum, default_value_t = ColormapArg::Turbo)]
    colormap: ColormapArg,
    /// Opacity of the heatmap, 0 (image only) to 1 (heatmap only).
    #[arg(long, default_value_t = 0.5, value_parser = unit_interval)]
    alpha: f32,
    /// nearest: each patch a flat square, as the model saw it; bilinear: smooth.
    #[arg(long, value_enum, default_value_t = UpsampleArg::Nearest)]
    upsample: UpsampleArg,
    /// per-map: each map spans its own min..max; shared: one 0..max range for every panel of a figure.
    #[arg(long, value_enum, default_value_t = ScaleArg::PerMap)]
    scale: ScaleArg,
}

impl StyleArgs {
    fn style(&self) -> Style {
        Style {
            colormap: self.colormap.into(),
            alpha: self.alpha,
            upsample: self.upsample.into(),
            scale: self.scale.into(),
        }
    }
}

/// clap's side of the library's plain enums: the same values, named and
/// explained for the command line, each turned into the library's own.
macro_rules! value_enum {
    ($(#[$meta:meta])* $arg:ident => $lib:ty { $($(#[$vmeta:meta])* $v:ident => $lv:expr,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        enum $arg {
            $($(#[$vmeta])* $v,)*
        }

        impl From<$arg> for $lib {
            fn from(a: $arg) -> Self {
                match a {
                    $($arg::$v => $lv,)*
                }
            }
        }
    };
}

value_enum!(HeadFusionArg => HeadFusion {
    Mean => HeadFusion::Mean,
    Max => HeadFusion::Max,
    Min => HeadFusion::Min,
});

value_enum!(
    /// The maps an overlay can show.
    MethodArg => Method {
        Attention => Method::Attention,
        Rollout => Method::Rollout,
        Relevance => Method::Relevance,
    }
);

value_enum!(ColormapArg => Colormap {
    Turbo => Colormap::Turbo,
    Viridis => Colormap::Viridis,
    Inferno => Colormap::Inferno,
});

value_enum!(UpsampleArg => Upsample {
    /// Each patch a flat square: exactly what the model saw.
    Nearest => Upsample::Nearest,
    /// Smooth between patch centres: prettier, less honest.
    Bilinear => Upsample::Bilinear,
});

value_enum!(ScaleArg => Scale {
    /// Each map's colours run from its own minimum to its own maximum.
    PerMap => Scale::PerMap,
    /// All maps of a figure share one range, from 0 to the largest value, so
    /// panels can be compared.
    Shared => Scale::Shared,
});

fn unit_interval(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0..=1"))
    }
}

fn row_col(s: &str) -> Result<(usize, usize), String> {
    let parse = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?} is not ROW,COL (e.g. 6,3)"))
    };
    match s.split_once(',') {
        Some((r, c)) => Ok((parse(r)?, parse(c)?)),
        None => Err(format!("{s:?} is not ROW,COL (e.g. 6,3)")),
    }
}

/// `--image` and `--cmd` -> a validated run spec.
fn spec(a: &RunArgs) -> Result<RunSpec> {
    let (Some(image), Some(cmd)) = (&a.image, &a.cmd) else {
        bail!("give an image and a command: vla-demo --image scene.png --cmd \"pick up the red cup\" (see --help)");
    };
    let sheets = [
        (a.per_head, Sheet::PerHead),
        (a.per_layer, Sheet::PerLayer),
        (a.per_token, Sheet::PerToken),
        (a.rollout, Sheet::Rollout),
    ];
    Ok(RunSpec {
        image: image.clone(),
        cmd: cmd.clone(),
        decoding: a.decode.decoding(),
        overlay: (!a.no_overlay).then(|| {
            a.overlay
                .clone()
                .unwrap_or_else(|| demo::default_overlay(image))
        }),
        sheets: sheets
            .iter()
            .filter(|(on, _)| *on)
            .map(|&(_, s)| s)
            .collect(),
        export: a.export.clone(),
        figures: FigureSpec {
            style: a.style.style(),
            head_fusion: a.head_fusion.into(),
            rollout_patch: a.rollout_patch,
            method: a.method.into(),
        },
    })
}

pub fn run(a: &RunArgs) -> Result<()> {
    if a.overlay_dir.is_some() {
        bail!("--overlay-dir works only with --batch; for one image use --overlay");
    }
    let (rep, files) = demo::run(&spec(a)?, &a.model.spec())?;
    warn(&rep.warnings);
    let text = if a.json {
        format!("{}\n", serde_json::to_string_pretty(&rep)?)
    } else {
        rep.text()
    };
    output::print_and_commit(&text, files)
}

pub fn run_batch(a: &RunArgs, pairs: &Path) -> Result<()> {
    let (reports, files) = demo::batch(
        pairs,
        &a.decode.decoding(),
        &a.style.style(),
        a.overlay_dir.as_deref(),
        &a.model.spec(),
    )?;
    let mut text = String::new();
    for (line, rep) in &reports {
        for w in &rep.warnings {
            output::eprint_line(&format!("warning: line {line}: {w}"));
        }
        text.push_str(&serde_json::to_string(rep)?);
        text.push('\n');
    }
    output::print_and_commit(&text, files)
}
