//! `vla-demo train`: trains the model from scratch on scenes made on the fly.
//!
//! Loss: cross-entropy on the action tokens (teacher forcing), plus an
//! optional grounding term, `-log(attention mass of <boa> on the target)`,
//! that nudges the last fusion block's cross-attention towards the object the
//! command names. Optimiser: AdamW with linear warm-up, cosine decay and
//! global-norm gradient clipping. Checkpoints are written atomically, and
//! `--resume` continues with the same config, weights, optimiser moments,
//! step and data position (the data of step s is a fixed function of s).
//!
//! The files in `train/`: `config.rs` (the training config and its bounds),
//! `batches.rs` (each step's scenes and batches), `adamw.rs` (the optimiser
//! and its saved state), `step.rs` (every call into the model: init, loss,
//! gradients and the loop of steps); this file runs it all and writes the
//! checkpoints.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle::Device;
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint;
use crate::data;
use crate::model::Config;
use crate::output::Staged;
use crate::tokens::CommandTokenizer;

mod adamw;
mod batches;
mod config;
pub mod init;
mod loss;
mod prior;
mod step;

pub use adamw::AdamW;
pub use batches::{
    batch_for_step, pair_counts, scenes_for_step, shards_for_step, shards_of, worlds_for_step,
};
pub use config::TrainConfig;
pub use loss::{loss, LossWeights, StepStats};
pub use prior::PairPrior;
pub use step::{init_model, parallel_grads};

pub const TRAIN_CONFIG: &str = "train_config.json";
pub const STATE: &str = "training_state.safetensors";
pub const LOG: &str = "train_log.jsonl";

/// Trains the tokenizer on the command grammar and fills the config's ids.
pub fn build_tokenizer(cfg: &mut Config, seed: u64) -> Result<CommandTokenizer> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tok = CommandTokenizer::train(data::command_corpus(2000, &mut rng).into_iter())?;
    cfg.vocab_size = tok.vocab_size();
    cfg.action_offset = tok.action_offset();
    cfg.boa_token_id = tok.boa_id();
    cfg.pad_token_id = tok.pad_id();
    cfg.validate()?;
    Ok(tok)
}

/// Options from the command line.
pub struct TrainArgs {
    pub config: PathBuf,
    pub out: PathBuf,
    pub resume: bool,
    /// Stop after this step (the schedule still follows the config's steps).
    pub steps: Option<usize>,
    pub quiet: bool,
    /// Where to train: the CPU runs the config's shards on parallel threads;
    /// a GPU runs each step's batch as one.
    pub device: Device,
}

/// Runs training to the configured number of steps.
pub fn run(args: &TrainArgs) -> Result<()> {
    let device = &args.device;
    if device.is_cpu() {
        set_up_training_process();
    }
    let (cfg, tok) = if args.resume {
        let cfg = TrainConfig::load(&args.out.join(TRAIN_CONFIG))
            .context("--resume needs a training run in --out")?;
        cfg.model.validate()?;
        let tok = CommandTokenizer::from_file(&args.out.join(checkpoint::TOKENIZER))?;
        tok.check_fits(cfg.model.vocab_size)?;
        (cfg, tok)
    } else {
        let mut cfg = TrainConfig::load(&args.config)?;
        let tok = build_tokenizer(&mut cfg.model, cfg.seed)?;
        (cfg, tok)
    };
    let stop = args.steps.unwrap_or(cfg.steps).min(cfg.steps);

    let vars = VarMap::new();
    let model = init_model(&cfg, &vars, device)?;
    if let (Some(dir), false) = (&cfg.warm_start, args.resume) {
        let (loaded, new) = warm_start(&vars, &tok, dir)?;
        if !args.quiet {
            eprintln!(
                "warm start: {loaded} tensors from {}, {new} new ones",
                dir.display()
            );
        }
    }
    let mut opt = AdamW::new(&vars)?;
    // The log is rewritten with every checkpoint, so the two always agree.
    let mut log = String::new();
    if args.resume {
        opt.restore(&args.out.join(STATE))?;
        anyhow::ensure!(
            opt.step <= cfg.steps,
            "{}: the training state is at step {}, past the run's {} steps",
            args.out.join(STATE).display(),
            opt.step,
            cfg.steps
        );
        anyhow::ensure!(
            opt.step < stop,
            "the run in {} is already at step {}; nothing to train up to step {stop}",
            args.out.display(),
            opt.step
        );
        // A run that never wrote its log starts one; anything else there
        // must be a regular text file (a named pipe would block forever).
        let path = args.out.join(LOG);
        if std::fs::symlink_metadata(&path).is_ok() {
            log = crate::input::read_text(&path, crate::limits::MAX_WEIGHTS_BYTES, "training log")?;
        }
    }
    // A fresh run never replaces a model or a run: `--resume` continues one.
    if !args.resume {
        for file in [checkpoint::WEIGHTS, STATE] {
            let path = args.out.join(file);
            anyhow::ensure!(
                std::fs::symlink_metadata(&path).is_err(),
                "{} already holds a model ({} is there); --resume continues its run, or choose another --out",
                args.out.display(),
                path.display()
            );
        }
    }
    // A fresh run writes nothing until its first checkpoint; if it fails
    // (or is interrupted) before then, the directory it made goes too.
    let created = if args.resume {
        None
    } else {
        create_out_dir(&args.out)?
    };
    let result = step::train_steps(args, &cfg, &tok, &vars, &model, &mut opt, &mut log, stop);
    if let Some(dir) = created {
        crate::output::forget(&dir);
        if result.is_err() && !args.out.join(STATE).exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    result
}

/// Sets every variable that the model in `dir` also has (same name) to its
/// weights there; the others keep their seeded start. Errors unless the
/// shapes and the tokenizer agree, and every tensor in `dir` finds its
/// variable. Returns how many were set and how many are new.
fn warm_start(vars: &VarMap, tok: &CommandTokenizer, dir: &Path) -> Result<(usize, usize)> {
    let context = || format!("warm start from {}", dir.display());
    let theirs =
        CommandTokenizer::from_file(&dir.join(checkpoint::TOKENIZER)).with_context(context)?;
    anyhow::ensure!(
        theirs.to_json()? == tok.to_json()?,
        "warm start from {}: its tokenizer is not this run's (another seed?)",
        dir.display()
    );
    let path = dir.join(checkpoint::WEIGHTS);
    let bytes = crate::input::read_file(&path, crate::limits::MAX_WEIGHTS_BYTES, "checkpoint file")
        .with_context(context)?;
    let weights = candle::safetensors::load_buffer(&bytes, &Device::Cpu)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let data = vars
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map lock poisoned"))?;
    for name in weights.keys() {
        anyhow::ensure!(
            data.contains_key(name),
            "warm start: {} holds {name}, which this model does not have",
            path.display()
        );
    }
    let mut loaded = 0;
    for (name, var) in data.iter() {
        let Some(t) = weights.get(name) else { continue };
        checkpoint::check_fits(&path, name, t, var).with_context(context)?;
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        loaded += 1;
    }
    Ok((loaded, data.len() - loaded))
}

/// Creates `out` and any missing parents; returns the top directory this
/// call created (registered for removal on SIGINT/SIGTERM), if any.
fn create_out_dir(out: &Path) -> Result<Option<PathBuf>> {
    let mut top = None;
    let mut p = Some(out);
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        top = Some(d.to_path_buf());
        p = d.parent();
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    if let Some(t) = &top {
        crate::output::remove_on_interrupt(t);
    }
    Ok(top)
}

/// Sets up this process for training, before the first tensor operation.
///
/// With several shards, each shard's thread runs its own element-wise
/// kernels. candle's shared, spinning CPU thread pool would only make the
/// shards wait on each other, so unless the user chose otherwise, it gets no
/// extra threads (`CANDLE_NUM_THREADS=1`; matmuls keep rayon's threads).
///
/// A step allocates and frees the same large buffers again and again (the
/// convolution stem's im2col rows and their gradients, ~15 MB a shard).
/// By default mimalloc hands freed pages back to the kernel after 10 ms, and
/// the next step faults them in again, zeroed: 2.9% of a profile's samples
/// over 60 steps (1.4% with the pages kept), more in shorter runs. Training keeps them instead (mimalloc's `purge_delay` = -1, as
/// `MIMALLOC_PURGE_DELAY=-1` would), which costs nothing the peak does not
/// already hold.
pub(crate) fn set_up_training_process() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Edition 2021: set_var is a safe call; no other thread is running yet.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v2 and v3);
        // the Rust bindings name no constant for it.
        const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
    }
}

/// One checkpoint: the training state, the model's three files, the
/// training config and the log, all or none. A model that is no longer
/// finite (training diverged) is refused, so a checkpoint never holds NaN.
pub(crate) fn save_all(
    out: &Path,
    cfg: &TrainConfig,
    tok: &CommandTokenizer,
    vars: &VarMap,
    opt: &AdamW,
    log: &str,
) -> Result<()> {
    for (name, var) in opt.vars() {
        checkpoint::check_finite(name, var.as_tensor())
            .context("training diverged: a weight is no longer finite")?;
    }
    let mut files = Staged::new();
    files.add(
        &out.join(STATE),
        &checkpoint::tensors_to_bytes(opt.state()?)?,
    )?;
    checkpoint::stage(&mut files, out, &cfg.model, tok, vars)?;
    files.add(
        &out.join(TRAIN_CONFIG),
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )?;
    files.add(&out.join(LOG), log.as_bytes())?;
    // From the first checkpoint on, an interrupted run leaves its directory
    // for `--resume`.
    files.commit_keeping(out)
}

fn append_log(log: &mut String, line: &serde_json::Value) {
    use std::fmt::Write;
    let _ = writeln!(log, "{line}");
}

fn progress(len: u64, pos: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_position(pos);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} step {pos}/{len} [{bar:30}] {msg} · {per_sec} · eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
