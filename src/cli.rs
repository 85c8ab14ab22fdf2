//! Command-line arguments -> library calls.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use vla_demo::checkpoint::Source;
use vla_demo::model::vla::Decoding;
use vla_demo::{eval, train, Pipeline};

#[derive(Parser, Debug)]
#[command(name = "vla-demo", version, about = "A tiny vision-language-action model that shows its attention")]
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
}

impl ModelArgs {
    pub fn source(&self) -> Source {
        match (&self.model_dir, &self.model_id) {
            (Some(dir), _) => Source::Dir(dir.clone()),
            (None, Some(id)) => Source::Hub { id: id.clone(), revision: self.revision.clone(), cache_dir: None },
            (None, None) => Source::Embedded,
        }
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The scene image.
    #[arg(long)]
    image: Option<PathBuf>,
    /// The command, in English or Korean.
    #[arg(long)]
    cmd: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
    /// Sampling temperature; leave unset for greedy decoding.
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long)]
    top_k: Option<usize>,
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
    /// Stop after this step; the learning-rate schedule still follows the config.
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct EvalCli {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value_t = 1000)]
    scenes: u64,
    #[arg(long, default_value_t = vla_demo::data::EVAL_SEED_START)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Scene(args)) => vla_demo::scene::cli::run(&args),
        Some(Command::Train(a)) => train::run(&train::TrainArgs { config: a.config, out: a.out, resume: a.resume, steps: a.steps, quiet: a.quiet }),
        Some(Command::Eval(a)) => run_eval(&a),
        None => run(&cli.run),
    }
}

fn run_eval(a: &EvalCli) -> Result<()> {
    anyhow::ensure!(a.seed >= vla_demo::data::EVAL_SEED_START, "--seed {} is inside the training range; held-out scenes start at {}", a.seed, vla_demo::data::EVAL_SEED_START);
    let p = Pipeline::load(&a.model.source(), &a.model.device)?;
    let bar = if a.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(a.scenes) };
    let report = eval::evaluate(&p.model, &p.tokenizer, a.seed, a.scenes, &p.device, Some(&bar))?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} held-out scenes from seed {} ({})\n\n{}", a.scenes, a.seed, p.origin, report.table());
    }
    Ok(())
}

fn run(a: &RunArgs) -> Result<()> {
    let (Some(image), Some(cmd)) = (&a.image, &a.cmd) else {
        anyhow::bail!("give an image and a command: vla-demo --image scene.png --cmd \"pick up the red cup\" (see --help)");
    };
    let p = Pipeline::load(&a.model.source(), &a.model.device)?;
    let img = vla_demo::preprocess::load_image(image)?;
    let decoding = Decoding { temperature: a.temperature, top_k: a.top_k, seed: a.seed };
    let pred = p.predict(&[img], &[cmd.as_str()], &decoding, false)?;
    for w in &pred[0].waypoints {
        println!("{w:?}");
    }
    Ok(())
}
