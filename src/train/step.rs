//! Where training calls the model: fresh weights, the loss of one batch,
//! one step's gradients over parallel shards, and the loop of steps with
//! its log, evaluations and checkpoints.
//!
//! Loss: cross-entropy on the action tokens (teacher forcing), plus an
//! optional grounding term, `-log(attention mass on the target)` of
//! `<boa>` (and, with `grounded: "coordinates"`, of every query that reads
//! an object's coordinate; with `"landmark"`, also of the words that name a
//! relational command's landmark, in the first fusion block; with
//! `"candidates"`, also of an ambiguous command's `<boa>` on every object
//! its name fits),
//! an optional pointer term: the distance, in patches, from the pointer's
//! point to each x and y target, and an optional patch-label term: the
//! cross-entropy of the patch head's colour and shape of every patch.

use std::time::Instant;

use anyhow::{Context, Result};
use candle::{backprop::GradStore, DType, Device, Tensor, D};
use candle_nn::VarMap;
use rayon::prelude::*;

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

/// Losses and accuracy of one step.
pub struct StepStats {
    pub loss: f32,
    pub ce: f32,
    pub attention: f32,
    pub point: f32,
    pub patch: f32,
    pub token_acc: f32,
}

/// What each term weighs beside the cross-entropy.
#[derive(Debug, Clone, Copy)]
pub struct LossWeights {
    /// The grounding term on the `<boa>` query's attention.
    pub attention: f64,
    /// The pointer term.
    pub point: f64,
    /// The patch-label term (counts only for a model with a patch head).
    pub patch: f64,
    /// Within it, a patch on an object against one of the table.
    pub patch_object: f64,
}

impl TrainConfig {
    pub fn loss_weights(&self) -> LossWeights {
        LossWeights {
            attention: self.attention_loss_weight,
            point: self.point_loss_weight,
            patch: self.patch_label_weight,
            patch_object: self.patch_object_weight,
        }
    }
}

/// The pointer term: the mean L1 distance, in patches, from the pointer's
/// points (B, A, 2) to the x and y targets among `targets` (B·A,) (x bins
/// are action indices `0..256`, y bins `256..512`; other tokens and
/// padding do not count).
fn point_loss(points: &Tensor, targets: &Tensor, weights: &Tensor, grid: usize) -> Result<Tensor> {
    let (b, a, _) = points.dims3()?;
    let ids = targets.to_vec1::<u32>()?;
    let real = weights.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let bins = crate::action::NUM_BINS;
    let mut want = vec![0f32; b * a * 2];
    let mut mask = vec![0f32; b * a * 2];
    for (i, (&t, &w)) in ids.iter().zip(&real).enumerate() {
        let (axis, bin) = match t as usize {
            t if t < bins => (0, t),
            t if t < 2 * bins => (1, t - bins),
            _ => continue,
        };
        want[2 * i + axis] = (bin as f32 + 0.5) / bins as f32;
        mask[2 * i + axis] = w;
    }
    let dev = points.device();
    let want = Tensor::from_vec(want, (b, a, 2), dev)?.to_dtype(points.dtype())?;
    let mask = Tensor::from_vec(mask, (b, a, 2), dev)?.to_dtype(points.dtype())?;
    let count = mask.sum_all()?.maximum(1.0)?;
    let mean = ((points - want)?.abs()? * mask)?
        .sum_all()?
        .broadcast_div(&count)?;
    Ok((mean * grid as f64)?)
}

/// The patch-label term: the cross-entropy of the patch head's colour
/// and of its shape, each against the labels (I·N, 2) of
/// [`crate::grid::patch_labels`], summed; a weighted mean over patches in
/// which a patch on an object counts `object_weight` times one of the table.
fn patch_label_loss(logits: &Tensor, labels: &Tensor, object_weight: f64) -> Result<Tensor> {
    use crate::grid::{PATCH_COLORS, PATCH_SHAPES};
    let logits = logits.flatten_to(1)?; // (I·N, colours + shapes)
    let colors = labels.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
    let on_object = colors.ne(0u32)?.to_dtype(logits.dtype())?;
    let weight = ((on_object * (object_weight - 1.0))? + 1.0)?; // (I·N,)
    let mut total = Tensor::zeros((), logits.dtype(), logits.device())?;
    for (k, (first, n)) in [(0, PATCH_COLORS), (PATCH_COLORS, PATCH_SHAPES)]
        .into_iter()
        .enumerate()
    {
        let want = labels.narrow(1, k, 1)?.squeeze(1)?.contiguous()?;
        let logp = candle_nn::ops::log_softmax(&logits.narrow(1, first, n)?, D::Minus1)?;
        let picked = logp.gather(&want.unsqueeze(1)?, 1)?.squeeze(1)?; // (I·N,)
        total = (total - (picked * &weight)?.sum_all()?)?;
    }
    Ok(total.broadcast_div(&weight.sum_all()?)?)
}

/// Cross-entropy over the real action tokens, plus the grounding, pointer
/// and patch-label terms.
pub fn loss(model: &Vla, batch: &data::Batch, w: LossWeights) -> Result<(Tensor, StepStats)> {
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
    // Mean over heads of each action query's weights, summed over the
    // patches of the object it reads (B, A). Refusals (but for an ambiguous
    // command's `<boa>` with `grounded: "candidates"`), and queries the
    // batch leaves free, have no target: they do not count.
    // With `grounded: "landmark"` the words that name a landmark count the
    // same way, on the first block's cross-attention.
    let mut rows = vec![(&out.action_cross, &batch.target_mask)];
    if let Some(words) = &batch.word_mask {
        rows.push((&out.word_cross, words));
    }
    let (mut missed, mut targets) = (Vec::new(), Vec::new());
    for (cross, mask) in rows {
        let mass = (cross.mean(1)? * mask)?.sum(2)?;
        let has_target = mask.max(2)?; // 1 or 0 per query
        missed.push(((mass + 1e-6)?.log()?.neg()? * &has_target)?.sum_all()?);
        targets.push(has_target.sum_all()?);
    }
    let attention = Tensor::stack(&missed, 0)?
        .sum_all()?
        .broadcast_div(&Tensor::stack(&targets, 0)?.sum_all()?.maximum(1.0)?)?;
    let point = if w.point > 0.0 {
        point_loss(
            &out.points,
            &batch.targets,
            &batch.weights,
            model.config().grid(),
        )?
    } else {
        Tensor::zeros((), ce.dtype(), ce.device())?
    };
    let patch = match (&out.patch_labels, &batch.patch_labels) {
        (Some(logits), Some(labels)) if w.patch > 0.0 => {
            patch_label_loss(logits, labels, w.patch_object)?
        }
        (Some(_), None) if w.patch > 0.0 => {
            anyhow::bail!("the patch-label term needs the batch's patch labels")
        }
        _ => Tensor::zeros((), ce.dtype(), ce.device())?,
    };
    let total =
        (((&ce + (&attention * w.attention)?)? + (&point * w.point)?)? + (&patch * w.patch)?)?;

    let pred = logits.argmax(D::Minus1)?;
    let right = (pred.eq(&batch.targets)?.to_dtype(DType::F32)? * &batch.weights)?.sum_all()?;
    let stats = StepStats {
        loss: total.to_scalar::<f32>()?,
        ce: ce.to_scalar::<f32>()?,
        attention: attention.to_scalar::<f32>()?,
        point: point.to_scalar::<f32>()?,
        patch: patch.to_scalar::<f32>()?,
        token_acc: (right.to_scalar::<f32>()? / count.to_scalar::<f32>()?),
    };
    Ok((total, stats))
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
    let mut stats = StepStats {
        loss: 0.0,
        ce: 0.0,
        attention: 0.0,
        point: 0.0,
        patch: 0.0,
        token_acc: 0.0,
    };
    for r in results {
        let (grads, st, share) = r?;
        stats.loss += st.loss * share;
        stats.ce += st.ce * share;
        stats.attention += st.attention * share;
        stats.point += st.point * share;
        stats.patch += st.patch * share;
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
            let (grads, stats) = parallel_grads(model, &batches, cfg.loss_weights())?;
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
                "point": stats.point, "patch": stats.patch, "token_acc": stats.token_acc, "lr": lr, "grad_norm": norm, "samples_per_s": per_s,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_loss_measures_x_and_y_targets_in_patches() {
        let dev = Device::Cpu;
        let bins = crate::action::NUM_BINS as u32;
        // Three positions: an x target at bin 128, a y target at bin 64, and a
        // gripper token, which does not count; then one padded position.
        let points = Tensor::new(
            &[[[0.3f32, 0.9], [0.1, 0.25], [0.7, 0.7], [0.0, 0.0]]],
            &dev,
        )
        .unwrap();
        let targets = Tensor::new(&[128u32, bins + 64, 2 * bins, 5], &dev).unwrap();
        let weights = Tensor::new(&[1f32, 1.0, 1.0, 0.0], &dev).unwrap();
        let got = point_loss(&points, &targets, &weights, 10)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let x = (0.3f32 - 128.5 / 256.0).abs();
        let y = (0.25f32 - 64.5 / 256.0).abs();
        let want = (x + y) / 2.0 * 10.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn the_patch_label_loss_weighs_object_patches_against_the_table() {
        use crate::grid::{PATCH_COLORS, PATCH_SHAPES};
        let dev = Device::Cpu;
        let k = PATCH_COLORS + PATCH_SHAPES;
        // Two patches: the table, then a patch whose colour is 2 and shape 3.
        let mut rows = vec![0f32; 2 * k];
        rows[0] = 2.0; // the table's colour logit
        rows[k + 2] = 1.0;
        rows[k + PATCH_COLORS + 1] = 3.0;
        let logits = Tensor::from_vec(rows.clone(), (1, 2, k), &dev).unwrap();
        let labels = Tensor::new(&[[0u32, 0], [2, 3]], &dev).unwrap();
        let ce = |row: &[f32], want: usize| {
            let z: f32 = row.iter().map(|x| x.exp()).sum();
            z.ln() - row[want]
        };
        let per_patch = |p: usize, c: usize, s: usize| {
            let row = &rows[p * k..(p + 1) * k];
            ce(&row[..PATCH_COLORS], c) + ce(&row[PATCH_COLORS..], s)
        };
        let (table, object) = (per_patch(0, 0, 0), per_patch(1, 2, 3));
        for w in [1.0f32, 3.0] {
            let got = patch_label_loss(&logits, &labels, w as f64)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let want = (table + w * object) / (1.0 + w);
            assert!((got - want).abs() < 1e-5, "weight {w}: {got} vs {want}");
        }
    }
}
