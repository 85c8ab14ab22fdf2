//! `vla-demo train`: trains the model from scratch on scenes made on the fly.
//!
//! Loss: cross-entropy on the action tokens (teacher forcing), plus an
//! optional grounding term, `-log(attention mass of <boa> on the target)`,
//! that nudges the last fusion block's cross-attention towards the object the
//! command names. Optimiser: AdamW with linear warm-up, cosine decay and
//! global-norm gradient clipping. Checkpoints are written atomically, and
//! `--resume` continues with the same config, weights, optimiser moments,
//! step and data position (the data of step s is a fixed function of s).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle::{backprop::GradStore, DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::data::{self, Example};
use crate::eval;
use crate::model::init::SeededInit;
use crate::model::{Config, Vla};
use crate::output::Staged;
use crate::tokens::CommandTokenizer;

pub const TRAIN_CONFIG: &str = "train_config.json";
pub const STATE: &str = "training_state.safetensors";
pub const LOG: &str = "train_log.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The architecture; vocabulary ids are filled in from the tokenizer.
    pub model: Config,
    pub steps: usize,
    pub scenes_per_step: usize,
    pub commands_per_scene: usize,
    pub learning_rate: f64,
    pub min_learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub seed: u64,
    /// Training scene seeds, `[start, end)`; must stay below the held-out range.
    pub train_seeds: [u64; 2],
    pub relational_share: f64,
    /// Curriculum: how often an English relational command that is not
    /// "next to" is redrawn as one (see [`data::draw_commands_with`]).
    #[serde(default)]
    pub next_to_boost_en: f64,
    pub attention_loss_weight: f64,
    /// Share of scenes drawn from the randomised world (the rest are plain).
    #[serde(default)]
    pub random_share: f64,
    /// Share of commands replaced by ones to refuse (absent or ambiguous).
    #[serde(default)]
    pub refusal_share: f64,
    /// Keep the held-out colour × shape pairs
    /// ([`crate::scene::random::HELD_OUT_PAIRS`]) out of every scene and command.
    #[serde(default)]
    pub hold_out_pairs: bool,
    /// Spread of the x/y bin targets, in bins (0 = plain one-hot).
    pub bin_sigma: f32,
    /// Data parallelism: each step's scenes are split into this many shards,
    /// run forward and backward on their own threads, and the gradients are
    /// summed. candle's CPU element-wise kernels are single-threaded, so on a
    /// 2-core machine two shards nearly double the throughput.
    #[serde(default = "one")]
    pub shards: usize,
    pub eval_every: usize,
    pub eval_scenes: usize,
    pub checkpoint_every: usize,
}

impl TrainConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::input::read_text(path, crate::limits::MAX_JSON_BYTES, "training config")?;
        let cfg: TrainConfig = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid training config", path.display()))?;
        cfg.validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }

    /// Every number within its documented bound (`crate::limits::train`),
    /// so a run cannot divide by zero, overflow or allocate without bound.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{train::*, MAX_TRAIN_STEPS};
        self.model.validate_sizes()?;
        if self.train_seeds[1] > data::EVAL_SEED_START || self.train_seeds[0] >= self.train_seeds[1]
        {
            bail!(
                "train_seeds must be a non-empty range below {}",
                data::EVAL_SEED_START
            );
        }
        let within = |name: &str, v: usize, lo: usize, hi: usize| {
            anyhow::ensure!((lo..=hi).contains(&v), "{name} {v} is outside {lo}..={hi}");
            Ok(())
        };
        within("steps", self.steps, 1, MAX_TRAIN_STEPS)?;
        within(
            "scenes_per_step",
            self.scenes_per_step,
            1,
            MAX_SCENES_PER_STEP,
        )?;
        within(
            "commands_per_scene",
            self.commands_per_scene,
            1,
            MAX_COMMANDS_PER_SCENE,
        )?;
        within("shards", self.shards, 1, MAX_SHARDS)?;
        within("warmup_steps", self.warmup_steps, 0, MAX_TRAIN_STEPS)?;
        within(
            "checkpoint_every",
            self.checkpoint_every,
            1,
            MAX_TRAIN_STEPS,
        )?;
        within("eval_scenes", self.eval_scenes, 1, MAX_EVAL_SCENES)?;
        let real = |name: &str, v: f64, lo: f64, hi: f64| {
            anyhow::ensure!((lo..=hi).contains(&v), "{name} {v} is outside {lo}..={hi}");
            Ok(())
        };
        real("learning_rate", self.learning_rate, 0.0, 1.0)?;
        real(
            "min_learning_rate",
            self.min_learning_rate,
            0.0,
            self.learning_rate,
        )?;
        real("weight_decay", self.weight_decay, 0.0, 1.0)?;
        real("grad_clip", self.grad_clip, 1e-6, 1e6)?;
        real("relational_share", self.relational_share, 0.0, 1.0)?;
        real("next_to_boost_en", self.next_to_boost_en, 0.0, 1.0)?;
        real("random_share", self.random_share, 0.0, 1.0)?;
        real("refusal_share", self.refusal_share, 0.0, 1.0)?;
        real(
            "attention_loss_weight",
            self.attention_loss_weight,
            0.0,
            1e3,
        )?;
        real("bin_sigma", self.bin_sigma as f64, 0.0, 256.0)?;
        Ok(())
    }

    /// The colour × shape pairs this run must never show.
    pub fn held_out(&self) -> Vec<(crate::scene::Color, crate::scene::Shape)> {
        if self.hold_out_pairs {
            crate::scene::random::HELD_OUT_PAIRS.to_vec()
        } else {
            Vec::new()
        }
    }

    /// Learning rate at a step: linear warm-up, then cosine decay to the minimum.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let p = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.min_learning_rate
            + 0.5
                * (self.learning_rate - self.min_learning_rate)
                * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

/// AdamW whose moments can be saved and restored (candle-nn's keeps them private).
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl AdamW {
    pub fn new(vars: &VarMap) -> Result<Self> {
        let data = vars
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("variable map lock poisoned"))?;
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle::Result<_>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle::Result<_>>()?;
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
        })
    }

    pub fn vars(&self) -> impl Iterator<Item = &(String, Var)> {
        self.vars.iter()
    }

    /// The global gradient norm, before clipping.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(sq.sqrt())
    }

    /// One update with learning rate `lr`; gradients are scaled by `clip`.
    pub fn step(&mut self, grads: &GradStore, lr: f64, weight_decay: f64, clip: f64) -> Result<()> {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let g = (g * clip)?;
            // Gradients still point into this step's graph: detach the moments,
            // or every step's graph would stay alive through them.
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?.detach();
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?.detach();
            let update = ((&self.m[i] / c1)? / ((&self.v[i] / c2)?.sqrt()? + self.eps)?)?;
            // Decay matrices only: not norms, biases or positions.
            let decays =
                name.ends_with(".weight") && var.as_tensor().rank() == 2 && !name.contains("norm");
            let theta = if decays {
                (var.as_tensor() * (1.0 - lr * weight_decay))?
            } else {
                var.as_tensor().clone()
            };
            var.set(&(theta - (update * lr)?)?.detach())?;
        }
        Ok(())
    }

    /// Weights, moments and step as named tensors.
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, (name, var)) in self.vars.iter().enumerate() {
            out.push((format!("param.{name}"), var.as_tensor().clone()));
            out.push((format!("adam_m.{name}"), self.m[i].clone()));
            out.push((format!("adam_v.{name}"), self.v[i].clone()));
        }
        out.push((
            "state.step".into(),
            Tensor::new(&[self.step as f64], &Device::Cpu)?,
        ));
        Ok(out)
    }

    fn restore(&mut self, path: &Path) -> Result<()> {
        let bytes =
            crate::input::read_file(path, crate::limits::MAX_WEIGHTS_BYTES, "training state")
                .context("--resume needs a training run in --out")?;
        let t = candle::safetensors::load_buffer(&bytes, &Device::Cpu)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        let get = |k: &str| {
            t.get(k)
                .cloned()
                .with_context(|| format!("{} lacks {k}", path.display()))
        };
        // Everything is checked before anything is set: right shapes, finite.
        let mut restored = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            let mut three = Vec::with_capacity(3);
            for kind in ["param", "adam_m", "adam_v"] {
                let key = format!("{kind}.{name}");
                let t = get(&key)?.to_dtype(var.dtype())?;
                anyhow::ensure!(
                    t.shape() == var.shape(),
                    "{}: {key} has shape {:?}, the model needs {:?}",
                    path.display(),
                    t.dims(),
                    var.dims()
                );
                checkpoint::check_finite(&key, &t)
                    .with_context(|| format!("{}", path.display()))?;
                three.push(t);
            }
            restored.push(three);
        }
        let step = get("state.step")?.flatten_all()?.to_vec1::<f64>()?;
        let step = match step.as_slice() {
            [s] if s.fract() == 0.0
                && (0.0..=crate::limits::MAX_TRAIN_STEPS as f64).contains(s) =>
            {
                *s as usize
            }
            _ => bail!(
                "{}: state.step {step:?} is not a step count (0 to {})",
                path.display(),
                crate::limits::MAX_TRAIN_STEPS
            ),
        };
        for (i, ((_, var), three)) in self.vars.iter().zip(restored).enumerate() {
            let [p, m, v]: [Tensor; 3] = three
                .try_into()
                .map_err(|_| anyhow::anyhow!("internal: restore lost a tensor"))?;
            var.set(&p)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        self.step = step;
        Ok(())
    }
}

/// Losses and accuracy of one step.
pub struct StepStats {
    pub loss: f32,
    pub ce: f32,
    pub attention: f32,
    pub token_acc: f32,
}

/// Cross-entropy over the real action tokens, plus the grounding term.
pub fn loss(
    model: &Vla,
    batch: &data::Batch,
    attention_weight: f64,
) -> Result<(Tensor, StepStats)> {
    let out = model.forward(&batch.inputs, &batch.action_in)?;
    let (b, a, v) = out.logits.dims3()?;
    let logits = out.logits.reshape((b * a, v))?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = (logp * &batch.soft_targets)?.sum(1)?; // (B·A,): Σ_j q_j log p_j
    let count = batch.weights.sum_all()?;
    let ce = (picked * &batch.weights)?
        .sum_all()?
        .neg()?
        .broadcast_div(&count)?;
    // Mean over heads of the <boa> query's weights, summed over target patches.
    let mass = (out.boa_cross.mean(1)? * &batch.target_mask)?.sum(1)?; // (B,)
                                                                       // Refusals have no target: they do not count in the grounding term.
    let has_target = batch.target_mask.max(1)?; // (B,) 1 or 0
    let targets = has_target.sum_all()?.maximum(1.0)?;
    let attention = ((mass + 1e-6)?.log()?.neg()? * &has_target)?
        .sum_all()?
        .broadcast_div(&targets)?;
    let total = (&ce + (&attention * attention_weight)?)?;

    let pred = logits.argmax(D::Minus1)?;
    let right = (pred.eq(&batch.targets)?.to_dtype(DType::F32)? * &batch.weights)?.sum_all()?;
    let stats = StepStats {
        loss: total.to_scalar::<f32>()?,
        ce: ce.to_scalar::<f32>()?,
        attention: attention.to_scalar::<f32>()?,
        token_acc: (right.to_scalar::<f32>()? / count.to_scalar::<f32>()?),
    };
    Ok((total, stats))
}

fn one() -> usize {
    1
}

/// Builds the batch of step `step`: a fixed function of (seed, step).
pub fn batch_for_step(
    cfg: &TrainConfig,
    tok: &CommandTokenizer,
    step: usize,
    device: &Device,
) -> Result<data::Batch> {
    Ok(shards_for_step(cfg, tok, step, 1, device)?.remove(0))
}

/// The scenes and examples of step `step`: a fixed function of (seed, step).
/// Each scene comes with its layout, so tests can read what training saw.
pub fn scenes_for_step(cfg: &TrainConfig, step: usize) -> Result<(Vec<data::Drawn>, Vec<Example>)> {
    let model = &cfg.model;
    let mut rng =
        ChaCha8Rng::seed_from_u64(cfg.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let exclude = cfg.held_out();
    let scenes: Vec<(u64, data::World)> = (0..cfg.scenes_per_step)
        .map(|s| {
            let seed = data::train_seed((step * cfg.scenes_per_step + s) as u64, cfg.train_seeds);
            let world = if cfg.random_share > 0.0 && rng.random_bool(cfg.random_share.min(1.0)) {
                data::World::Random
            } else {
                data::World::Plain
            };
            (seed, world)
        })
        .collect();
    // Pictures are drawn in parallel; they depend on their seed alone.
    let drawn: Vec<data::Drawn> = scenes
        .par_iter()
        .map(|&(seed, world)| data::draw_scene(seed, world, &exclude, model))
        .collect::<Result<_>>()?;
    let mut examples = Vec::new();
    for (i, d) in drawn.iter().enumerate() {
        let mut commands = data::draw_commands_with(
            &d.layout,
            cfg.commands_per_scene,
            cfg.relational_share,
            cfg.next_to_boost_en,
            &mut rng,
        );
        data::mix_refusals(
            &d.layout,
            &mut commands,
            cfg.refusal_share,
            &exclude,
            &mut rng,
        );
        for command in commands {
            let target = data::command_target(&d.layout, &command, model.grid())?;
            examples.push(Example {
                image: i,
                command,
                target,
            });
        }
    }
    Ok((drawn, examples))
}

/// The batch of step `step`, split by scene into `shards` batches.
pub fn shards_for_step(
    cfg: &TrainConfig,
    tok: &CommandTokenizer,
    step: usize,
    shards: usize,
    device: &Device,
) -> Result<Vec<data::Batch>> {
    let model = &cfg.model;
    let (drawn, examples) = scenes_for_step(cfg, step)?;
    let images: Vec<image::RgbImage> = drawn.into_iter().map(|d| d.view).collect();
    let per = images.len().div_ceil(shards.max(1));
    let mut out = Vec::new();
    for (k, chunk) in images.chunks(per.max(1)).enumerate() {
        let first = k * per;
        let refs: Vec<&image::RgbImage> = chunk.iter().collect();
        let mine: Vec<Example> = examples
            .iter()
            .filter(|e| e.image >= first && e.image < first + chunk.len())
            .map(|e| Example {
                image: e.image - first,
                command: e.command.clone(),
                target: e.target.clone(),
            })
            .collect();
        out.push(data::make_batch(
            &refs,
            &mine,
            tok,
            model,
            cfg.bin_sigma,
            device,
        )?);
    }
    Ok(out)
}

/// One step's gradients, computed shard by shard on parallel threads. Each
/// shard's loss is weighted by its share of the samples, so the summed
/// gradient is that of the whole batch.
pub fn parallel_grads(
    model: &Vla,
    batches: &[data::Batch],
    attention_weight: f64,
) -> Result<(GradStore, StepStats)> {
    let total: usize = batches.iter().map(|b| b.inputs.text_lens.len()).sum();
    let results: Vec<Result<(GradStore, StepStats, f32)>> = std::thread::scope(|s| {
        let handles: Vec<_> = batches
            .iter()
            .map(|b| {
                s.spawn(move || -> Result<(GradStore, StepStats, f32)> {
                    let share = b.inputs.text_lens.len() as f32 / total.max(1) as f32;
                    let (l, stats) = loss(model, b, attention_weight)?;
                    Ok(((l * share as f64)?.backward()?, stats, share))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a training thread panicked")))
            })
            .collect()
    });
    let mut merged: Option<GradStore> = None;
    let mut stats = StepStats {
        loss: 0.0,
        ce: 0.0,
        attention: 0.0,
        token_acc: 0.0,
    };
    for r in results {
        let (grads, st, share) = r?;
        stats.loss += st.loss * share;
        stats.ce += st.ce * share;
        stats.attention += st.attention * share;
        stats.token_acc += st.token_acc * share;
        merged = Some(match merged {
            None => grads,
            Some(mut acc) => {
                for id in grads.get_ids().copied().collect::<Vec<_>>() {
                    if let Some(g) = grads.get_id(id) {
                        let sum = match acc.get_id(id) {
                            Some(a) => (a + g)?,
                            None => g.clone(),
                        };
                        acc.insert_id(id, sum);
                    }
                }
                acc
            }
        });
    }
    Ok((
        merged.ok_or_else(|| anyhow::anyhow!("no shard in the batch"))?,
        stats,
    ))
}

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
}

/// Runs training to the configured number of steps.
pub fn run(args: &TrainArgs) -> Result<()> {
    let device = Device::Cpu;
    single_threaded_kernels();
    let (cfg, tok) = if args.resume {
        let cfg = TrainConfig::load(&args.out.join(TRAIN_CONFIG))
            .context("--resume needs a training run in --out")?;
        cfg.model.validate()?;
        let tok = CommandTokenizer::from_file(&args.out.join(checkpoint::TOKENIZER))?;
        (cfg, tok)
    } else {
        let mut cfg = TrainConfig::load(&args.config)?;
        let tok = build_tokenizer(&mut cfg.model, cfg.seed)?;
        (cfg, tok)
    };
    let stop = args.steps.unwrap_or(cfg.steps).min(cfg.steps);

    let vars = VarMap::new();
    let model = init_model(&cfg, &vars, &device)?;
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
        log = std::fs::read_to_string(args.out.join(LOG)).unwrap_or_default();
    }
    // A fresh run writes nothing until its first checkpoint; if it fails
    // (or is interrupted) before then, the directory it made goes too.
    let created = if args.resume {
        None
    } else {
        create_out_dir(&args.out)?
    };
    let result = train_steps(args, &cfg, &tok, &vars, &model, &mut opt, &mut log, stop);
    if let Some(dir) = created {
        crate::output::forget(&dir);
        if result.is_err() && !args.out.join(STATE).exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    result
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

#[allow(clippy::too_many_arguments)]
fn train_steps(
    args: &TrainArgs,
    cfg: &TrainConfig,
    tok: &CommandTokenizer,
    vars: &VarMap,
    model: &Vla,
    opt: &mut AdamW,
    log: &mut String,
    stop: usize,
) -> Result<()> {
    let device = Device::Cpu;
    let start = opt.step;

    let bar = progress(stop as u64, start as u64, args.quiet);
    let t0 = Instant::now();
    let mut samples = 0usize;
    for step in start..stop {
        let batches = shards_for_step(cfg, tok, step, cfg.shards, &device)?;
        let (grads, stats) = parallel_grads(model, &batches, cfg.attention_loss_weight)?;
        let norm = opt.grad_norm(&grads)?;
        let clip = if norm > cfg.grad_clip {
            cfg.grad_clip / norm
        } else {
            1.0
        };
        let lr = cfg.lr_at(step);
        opt.step(&grads, lr, cfg.weight_decay, clip)?;
        samples += batches
            .iter()
            .map(|b| b.inputs.text_lens.len())
            .sum::<usize>();

        let per_s = samples as f64 / t0.elapsed().as_secs_f64();
        bar.set_position(step as u64 + 1);
        bar.set_message(format!(
            "loss {:.3} acc {:.3} {:.1} samples/s",
            stats.loss, stats.token_acc, per_s
        ));
        let line = serde_json::json!({
            "step": step + 1, "loss": stats.loss, "ce": stats.ce, "attention": stats.attention,
            "token_acc": stats.token_acc, "lr": lr, "grad_norm": norm, "samples_per_s": per_s,
            "elapsed_s": t0.elapsed().as_secs_f64(),
        });
        append_log(log, &line);

        let last = step + 1 == stop;
        if cfg.eval_every > 0 && ((step + 1) % cfg.eval_every == 0 || last) {
            let report = eval::evaluate(
                model,
                tok,
                eval::Split::Iid,
                None,
                cfg.eval_scenes as u64,
                &device,
                None,
            )?;
            bar.println(format!("step {}: {}", step + 1, report.summary()));
            append_log(log, &serde_json::json!({"step": step + 1, "eval": report}));
        }
        if (step + 1) % cfg.checkpoint_every == 0 || last {
            save_all(&args.out, cfg, tok, vars, opt, log).with_context(|| {
                format!(
                    "checkpoint at step {} not written; {} keeps the last one",
                    step + 1,
                    args.out.display()
                )
            })?;
        }
    }
    bar.finish();
    if !args.quiet {
        crate::output::eprint_line(&format!(
            "trained {} steps in {:.1} min; checkpoint in {}",
            stop.saturating_sub(start),
            t0.elapsed().as_secs_f64() / 60.0,
            args.out.display()
        ));
    }
    Ok(())
}

/// With several shards, each shard's thread runs its own element-wise
/// kernels. candle's shared, spinning CPU thread pool would only make the
/// shards wait on each other, so unless the user chose otherwise, it gets no
/// extra threads (`CANDLE_NUM_THREADS=1`; matmuls keep rayon's threads). This
/// must run before the first tensor operation.
fn single_threaded_kernels() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Edition 2021: set_var is a safe call; no other thread is running yet.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Fresh variables for the config; deterministic for a given seed.
pub fn init_model(cfg: &TrainConfig, vars: &VarMap, device: &Device) -> Result<Vla> {
    let vb = SeededInit::var_builder(vars, cfg.seed, device);
    Ok(Vla::new(&cfg.model, vb)?)
}

/// One checkpoint: the training state, the model's three files, the
/// training config and the log, all or none. A model that is no longer
/// finite (training diverged) is refused, so a checkpoint never holds NaN.
fn save_all(
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
    files.commit()
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
