//! Command-line arguments -> library calls.
//!
//! `vla-demo --image scene.png --cmd "..."` runs one prediction and draws it;
//! `--batch pairs.jsonl` runs many in one forward pass; `explain` walks
//! through the attention steps; `scene`, `train` and `eval` make, fit and
//! judge the model. The output formats are described in docs/DEMO.md.
//!
//! This file holds the top level and the flags several subcommands share;
//! each subcommand's flags and run are in `src/cli/<subcommand>.rs`. The
//! library takes plain values: clap lives only here.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use vla_demo::checkpoint::Source;
use vla_demo::demo::ModelSpec;
use vla_demo::model::vla::Decoding;
use vla_demo::{limits, output, train};

mod bench;
mod eval;
mod explain;
mod run;
mod scene;
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
    run: run::RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render tabletop scenes with ground truth and commands.
    Scene(scene::SceneCli),
    /// Train a model from scratch.
    Train(TrainCli),
    /// Measure a model on held-out scenes.
    Eval(eval::EvalCli),
    /// Walk through Score -> Align -> Attend for the first action token, with the real numbers.
    Explain(explain::ExplainCli),
    /// Time the model per stage, the attention paths, and training steps.
    Bench(bench::BenchCli),
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
pub struct DecodeArgs {
    /// Sampling temperature, 0 to 100; leave unset (or below 1e-6) for greedy decoding.
    #[arg(long, value_parser = temperature)]
    temperature: Option<f64>,
    /// Sample only among the k most likely tokens (with --temperature), 1 to 100000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_TOP_K))]
    top_k: Option<u64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl DecodeArgs {
    pub fn decoding(&self) -> Decoding {
        Decoding {
            temperature: self.temperature,
            top_k: self.top_k.map(|k| k as usize),
            seed: self.seed,
        }
    }
}

#[derive(Args, Debug)]
struct TrainCli {
    #[arg(long, default_value = "configs/train-pens-small-prior.json")]
    config: PathBuf,
    /// The run's directory: a new one, or one that `--resume` continues.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this step, 1 to 10000000; the learning-rate schedule still follows the config.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_TRAIN_STEPS as u64))]
    steps: Option<u64>,
    #[arg(long)]
    quiet: bool,
    /// auto, cpu, cuda, cuda:N or metal (GPUs need a build with that feature).
    #[arg(long, default_value = "cpu")]
    device: String,
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
        Some(Command::Scene(a)) => vla_demo::scene::write::run(&a.scenes()),
        Some(Command::Train(a)) => train::run(&train::TrainArgs {
            config: a.config,
            out: a.out,
            resume: a.resume,
            steps: a.steps.map(|s| s as usize),
            quiet: a.quiet,
            device: vla_demo::device::select(&a.device)?,
        }),
        Some(Command::Eval(a)) => eval::run_eval(&a),
        Some(Command::Explain(a)) => explain::run_explain(&a),
        Some(Command::Bench(a)) => vla_demo::bench::run(&a.args()),
        Some(Command::Serve(a)) => serve::run(&a),
        None => match &cli.run.batch {
            Some(pairs) => run::run_batch(&cli.run, pairs),
            None => run::run(&cli.run),
        },
    }
}

pub fn warn(warnings: &[String]) {
    for w in warnings {
        output::eprint_line(&format!("warning: {w}"));
    }
}
