//! Command-line arguments -> library calls.
//!
//! `vla-demo --image scene.png --cmd "..."` runs one prediction and draws it;
//! `--batch pairs.jsonl` runs many in one forward pass; `explain` walks
//! through the attention steps; `scene`, `train` and `eval` make, fit and
//! judge the model. The output formats are described in docs/DEMO.md.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use vla_demo::checkpoint::Source;
use vla_demo::demo::{self, FigureSpec, ModelSpec, RunSpec, Sheet};
use vla_demo::maps::HeadFusion;
use vla_demo::model::vla::Decoding;
use vla_demo::overlay::{Colormap, Scale, Style, Upsample};
use vla_demo::{eval, limits, output, train, Pipeline};

mod serve;

#[derive(Parser, Debug)]
#[command(
    name = "vla-demo",
    version,
    about = "A tiny vision-language-action model that shows its attention"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render tabletop scenes with ground truth and commands.
    Scene(vla_demo::scene::cli::SceneArgs),
    /// Train a model from scratch.
    Train(TrainCli),
    /// Measure a model on held-out scenes.
    Eval(EvalCli),
    /// Walk through Score -> Align -> Attend for the first action token, with the real numbers.
    Explain(ExplainCli),
    /// Time the model per stage, the attention paths, and training steps.
    Bench(vla_demo::bench::BenchArgs),
    /// Serve the attention explorer page and its JSON API (docs/SERVE.md).
    Serve(serve::ServeCli),
}

/// Where the model comes from and where it runs.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long, conflicts_with = "model_id")]
    pub model_dir: Option<PathBuf>,
    /// A Hugging Face Hub model id (owner/name), loaded through hf-hub.
    #[arg(long)]
    pub model_id: Option<String>,
    #[arg(long, default_value = "main", requires = "model_id")]
    pub revision: String,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// f32, or f16 / bf16 where the device supports them.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl ModelArgs {
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            source: self.source(),
            device: self.device.clone(),
            dtype: self.dtype.clone(),
        }
    }

    pub fn source(&self) -> Source {
        match (&self.model_dir, &self.model_id) {
            (Some(dir), _) => Source::Dir(dir.clone()),
            (None, Some(id)) => Source::Hub {
                id: id.clone(),
                revision: self.revision.clone(),
                cache_dir: None,
            },
            (None, None) => Source::Embedded,
        }
    }
}

/// How a prediction is decoded.
#[derive(Args, Debug, Clone)]
struct DecodeArgs {
    /// Sampling temperature, 0 to 100; leave unset for greedy decoding.
    #[arg(long, value_parser = temperature)]
    temperature: Option<f64>,
    /// Sample only among the k most likely tokens (with --temperature), 1 to 100000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_TOP_K))]
    top_k: Option<u64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl DecodeArgs {
    fn decoding(&self) -> Decoding {
        Decoding {
            temperature: self.temperature,
            top_k: self.top_k.map(|k| k as usize),
            seed: self.seed,
        }
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The scene image (PNG, JPEG, WebP, BMP, ...; any size and aspect ratio).
    #[arg(long)]
    image: Option<PathBuf>,
    /// The command, in English or Korean.
    #[arg(long)]
    cmd: Option<String>,
    /// Run many pairs in one batched forward pass: a JSON Lines file with one
    /// {"image": PATH, "cmd": TEXT} per line; prints one JSON line per pair, in order.
    #[arg(long, conflicts_with_all = ["image", "cmd", "overlay", "per_head", "per_layer", "per_token", "rollout", "export"])]
    batch: Option<PathBuf>,
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
    #[arg(long, value_enum, default_value_t = HeadFusion::Mean)]
    head_fusion: HeadFusion,
    /// What the overlay's colour shows: the attention map, its rollout, or relevance (Chefer et al. 2021).
    #[arg(long, value_enum, default_value_t = MapMethod::Attention)]
    method: MapMethod,
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
    #[arg(long, value_enum, default_value_t = Colormap::Turbo)]
    colormap: Colormap,
    /// Opacity of the heatmap, 0 (image only) to 1 (heatmap only).
    #[arg(long, default_value_t = 0.5, value_parser = unit_interval)]
    alpha: f32,
    /// nearest: each patch a flat square, as the model saw it; bilinear: smooth.
    #[arg(long, value_enum, default_value_t = Upsample::Nearest)]
    upsample: Upsample,
    /// per-map: each map spans its own min..max; shared: one 0..max range for every panel of a figure.
    #[arg(long, value_enum, default_value_t = Scale::PerMap)]
    scale: Scale,
}

impl StyleArgs {
    fn style(&self) -> Style {
        Style {
            colormap: self.colormap,
            alpha: self.alpha,
            upsample: self.upsample,
            scale: self.scale,
        }
    }
}

/// The maps an overlay can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MapMethod {
    Attention,
    Rollout,
    Relevance,
}

#[derive(Args, Debug)]
struct ExplainCli {
    #[arg(long)]
    image: PathBuf,
    #[arg(long)]
    cmd: String,
    #[command(flatten)]
    model: ModelArgs,
    /// Follow this head (1-based, up to the model's heads) instead of the one with the sharpest peak.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=limits::config::MAX_HEADS as u64))]
    head: Option<u64>,
    /// How many patches each step lists, 1 to 1000.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_EXPLAIN_TOP))]
    top: u64,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
    /// Every deletion, knockout and insertion curve (k = 0, 1, 2, 4, …), not only the verdict.
    #[arg(long)]
    faithfulness: bool,
    /// Draw the curves into this PNG.
    #[arg(long, requires = "faithfulness")]
    plot: Option<PathBuf>,
    /// Seed of the random patch orders the maps are compared with.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
struct TrainCli {
    #[arg(long, default_value = "configs/train-tiny.json")]
    config: PathBuf,
    #[arg(long, default_value = "models/tiny")]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this step, 1 to 10000000; the learning-rate schedule still follows the config.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_TRAIN_STEPS as u64))]
    steps: Option<u64>,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct EvalCli {
    #[command(flatten)]
    model: ModelArgs,
    /// How many held-out scenes, 1 to 1000000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_EVAL_SCENES))]
    scenes: u64,
    /// First scene seed (default: the split's own held-out range).
    #[arg(long)]
    seed: Option<u64>,
    /// iid, style, small, crowded, unseen-combo, counterfactual, absent, or all.
    #[arg(long, default_value = "iid")]
    split: String,
    /// Score the maps instead: pointing, mass, deletion and insertion per method (slow: about a second per command).
    #[arg(long)]
    faithfulness: bool,
    /// With --faithfulness, only these families (pick, place, push, relational; comma-separated).
    #[arg(long, requires = "faithfulness", value_delimiter = ',', value_parser = family)]
    family: Vec<vla_demo::scene::Family>,
    /// With --faithfulness, the deletion and insertion steps (comma-separated, 0 to 1024; default 0,1,2,4,8,16).
    #[arg(long, requires = "faithfulness", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(0..=1024))]
    ks: Vec<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn family(s: &str) -> Result<vla_demo::scene::Family, String> {
    use vla_demo::scene::Family;
    match s {
        "pick" => Ok(Family::Pick),
        "place" => Ok(Family::Place),
        "push" => Ok(Family::Push),
        "relational" => Ok(Family::Relational),
        _ => Err("use pick, place, push or relational".into()),
    }
}

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

fn temperature(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=limits::MAX_TEMPERATURE).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0..={}", limits::MAX_TEMPERATURE))
    }
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Scene(args)) => vla_demo::scene::cli::run(&args),
        Some(Command::Train(a)) => train::run(&train::TrainArgs {
            config: a.config,
            out: a.out,
            resume: a.resume,
            steps: a.steps.map(|s| s as usize),
            quiet: a.quiet,
        }),
        Some(Command::Eval(a)) => run_eval(&a),
        Some(Command::Explain(a)) => run_explain(&a),
        Some(Command::Bench(a)) => vla_demo::bench::run(&a),
        Some(Command::Serve(a)) => serve::run(&a),
        None => match &cli.run.batch {
            Some(pairs) => run_batch(&cli.run, pairs),
            None => run(&cli.run),
        },
    }
}

fn run_eval(a: &EvalCli) -> Result<()> {
    if let Some(seed) = a.seed {
        anyhow::ensure!(
            seed >= vla_demo::data::EVAL_SEED_START,
            "--seed {seed} is inside the training range; held-out scenes start at {}",
            vla_demo::data::EVAL_SEED_START
        );
    }
    let splits = match a.split.as_str() {
        "all" => eval::Split::ALL.to_vec(),
        name => vec![eval::Split::parse(name)?],
    };
    for split in &splits {
        let seed = a.seed.unwrap_or(split.first_seed());
        anyhow::ensure!(
            seed.checked_add(a.scenes).is_some(),
            "--seed {seed} plus --scenes {} goes past the largest seed",
            a.scenes
        );
    }
    let p = Pipeline::load_as(&a.model.source(), &a.model.device, &a.model.dtype)?;
    if a.faithfulness {
        return run_faithfulness(a, &splits, &p);
    }
    let mut reports = Vec::new();
    let mut text = String::new();
    for split in splits {
        let bar = if a.json {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(a.scenes)
        };
        let report = eval::evaluate(
            &p.model,
            &p.tokenizer,
            split,
            a.seed,
            a.scenes,
            &p.device,
            Some(&bar),
        )?;
        bar.finish_and_clear();
        text += &format!(
            "split {}: {} held-out scenes from seed {} ({})\n\n{}\n",
            report.split,
            a.scenes,
            report.first_seed,
            p.origin,
            report.table()
        );
        reports.push(report);
    }
    if a.json {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(&reports)?
        };
        output::print(&format!("{json}\n"))
    } else {
        if reports.len() > 1 {
            text += &eval::bar_table(&reports);
        }
        output::print(&text)
    }
}

fn run_faithfulness(a: &EvalCli, splits: &[eval::Split], p: &Pipeline) -> Result<()> {
    let mut settings = vla_demo::faithfulness::Settings::eval(a.seed.unwrap_or(0));
    if !a.ks.is_empty() {
        settings.ks = a.ks.iter().map(|&k| k as usize).collect();
        settings.ks.sort_unstable();
        settings.ks.dedup();
    }
    let mut reports = Vec::new();
    let mut text = String::new();
    for &split in splits {
        let bar = if a.json {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(a.scenes)
        };
        let report = eval::faithfulness::evaluate(
            &p.model,
            &p.tokenizer,
            split,
            a.seed,
            a.scenes,
            &a.family,
            &settings,
            &p.device,
            Some(&bar),
        )?;
        bar.finish_and_clear();
        text += &format!(
            "split {}: faithfulness of the maps, {} held-out scenes from seed {} ({}); k = {:?}, {} random orders\n\n{}\n",
            report.split,
            a.scenes,
            report.first_seed,
            p.origin,
            report.ks,
            report.random_draws,
            report.table()
        );
        reports.push(report);
    }
    if a.json {
        output::print(&format!("{}\n", serde_json::to_string_pretty(&reports)?))
    } else {
        output::print(&text)
    }
}

fn warn(warnings: &[String]) {
    for w in warnings {
        output::eprint_line(&format!("warning: {w}"));
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
            head_fusion: a.head_fusion,
            rollout_patch: a.rollout_patch,
            method: match a.method {
                MapMethod::Attention => vla_demo::faithfulness::Method::Attention,
                MapMethod::Rollout => vla_demo::faithfulness::Method::Rollout,
                MapMethod::Relevance => vla_demo::faithfulness::Method::Relevance,
            },
        },
    })
}

fn run(a: &RunArgs) -> Result<()> {
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

fn run_batch(a: &RunArgs, pairs: &Path) -> Result<()> {
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

fn run_explain(a: &ExplainCli) -> Result<()> {
    let head = a.head.map(|h| h as usize);
    let probe = demo::ProbeSpec {
        full: a.faithfulness,
        plot: a.plot.clone(),
        seed: a.seed,
    };
    let (e, probed, warnings) = demo::explain(
        &a.image,
        &a.cmd,
        head,
        a.top as usize,
        &probe,
        &a.model.spec(),
    )?;
    warn(&warnings);
    let mut files = output::Staged::new();
    if let Some(path) = &a.plot {
        let title = format!("\"{}\": deleting, knocking out, inserting patches", a.cmd);
        let img = vla_demo::faithfulness::plot::draw(&probed.curves, &title)?;
        files.add(path, &vla_demo::overlay::png_bytes(&img)?)?;
    }
    let text = if a.json {
        let mut v = serde_json::to_value(&e)?;
        v["faithfulness"] = serde_json::to_value(&probed)?;
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        format!("{}{}", e.text(), probed.text())
    };
    output::print_and_commit(&text, files)
}
