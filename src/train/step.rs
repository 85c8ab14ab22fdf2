//! Where training calls the model: fresh weights, one step's gradients
//! over parallel shards (each shard's [`super::loss`]), and the loop of
//! steps with its log, evaluations and checkpoints.

use std::time::Instant;

use anyhow::{Context, Result};
use candle::{backprop::GradStore, Device};
use candle_nn::VarMap;
use rayon::prelude::*;

use super::loss::{loss, LossWeights, StepStats};
use super::{
    append_log, progress, save_all, scenes_for_step, shards_of, AdamW, TrainArgs, TrainConfig,
};
use crate::data;
use crate::eval;
use crate::model::Vla;
use crate::tokens::CommandTokenizer;
use crate::train::init::SeededInit;

/// Fresh variables for the config; deterministic for a given seed.
pub fn init_model(cfg: &TrainConfig, vars: &VarMap, device: &Device) -> Result<Vla> {
    let vb = SeededInit::var_builder(vars, cfg.seed, device);
    Ok(Vla::new(&cfg.model, vb)?)
}

/// One step's gradients, computed shard by shard on parallel threads. Each
/// shard's loss is weighted by its share of the samples, so the summed
/// gradient is that of the whole batch.
pub fn parallel_grads(
    model: &Vla,
    batches: &[data::Batch],
    w: LossWeights,
) -> Result<(GradStore, StepStats)> {
    if let [one] = batches {
        let (l, stats) = loss(model, one, w)?;
        return Ok((l.backward()?, stats));
    }
    let total: usize = batches.iter().map(|b| b.inputs.text_lens.len()).sum();
    // The shards run on rayon's pool, whose threads live as long as the
    // process: a thread spawned for each step starts with an empty heap, and
    // every buffer of its step then comes from fresh pages the kernel must
    // zero first (docs/BENCH.md, "Threads that outlive the step").
    let results: Vec<Result<(GradStore, StepStats, f32)>> = batches
        .par_iter()
        .map(|b| -> Result<(GradStore, StepStats, f32)> {
            let share = b.inputs.text_lens.len() as f32 / total.max(1) as f32;
            let (l, stats) = loss(model, b, w)?;
            Ok(((l * share as f64)?.backward()?, stats, share))
        })
        .collect();
    let mut merged: Option<GradStore> = None;
    let mut stats = StepStats::default();
    for r in results {
        let (grads, st, share) = r?;
        stats.loss += st.loss * share;
        stats.ce += st.ce * share;
        stats.attention += st.attention * share;
        stats.point += st.point * share;
        stats.patch += st.patch * share;
        stats.balance += st.balance * share;
        stats.named += st.named * share;
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

#[allow(clippy::too_many_arguments)]
pub(super) fn train_steps(
    args: &TrainArgs,
    cfg: &TrainConfig,
    tok: &CommandTokenizer,
    vars: &VarMap,
    model: &Vla,
    opt: &mut AdamW,
    log: &mut String,
    stop: usize,
) -> Result<()> {
    let device = &args.device;
    // Shards buy parallelism on the CPU's cores; a GPU takes the whole batch.
    let shards = if device.is_cpu() { cfg.shards } else { 1 };
    let start = opt.step;
    let weights = cfg.loss_weights();

    let bar = progress(stop as u64, start as u64, args.quiet);
    let t0 = Instant::now();
    let mut samples = 0usize;
    // The next step's scenes are drawn on a thread of their own while this
    // step computes: on a GPU the CPU would otherwise wait idle, and on the
    // CPU the drawing fills the gaps the step's threads leave (a 120-step run
    // on 2 cores: 0.94 of the wall time, the same weights).
    std::thread::scope(|s| -> Result<()> {
        let mut next = None;
        for step in start..stop {
            let (drawn, examples) = match next.take() {
                Some(h) => join(h)?,
                None => scenes_for_step(cfg, step)?,
            };
            if step + 1 < stop {
                next = Some(s.spawn(move || scenes_for_step(cfg, step + 1)));
            }
            let batches = shards_of(cfg, tok, drawn, examples, shards, device)?;
            let (grads, stats) = parallel_grads(model, &batches, weights)?;
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
                "point": stats.point, "patch": stats.patch, "balance": stats.balance, "named": stats.named, "token_acc": stats.token_acc, "lr": lr, "grad_norm": norm, "samples_per_s": per_s,
                "elapsed_s": t0.elapsed().as_secs_f64(),
            });
            append_log(log, &line);

            let last = step + 1 == stop;
            if cfg.eval_every > 0 && ((step + 1) % cfg.eval_every == 0 || last) {
                let scenes = eval::Scenes {
                    split: eval::Split::Iid,
                    first_seed: None,
                    count: cfg.eval_scenes as u64,
                };
                let report = eval::evaluate(model, tok, scenes, device, None)?;
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
        Ok(())
    })?;
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

fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the data thread panicked")))
}
