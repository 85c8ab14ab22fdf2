//! The inference part of `vla-demo bench`: the pipeline end to end, stage by
//! stage, on held-out scenes; the teacher-forced forward pass that the
//! PyTorch peer reimplements; and the reference file that peer checks
//! itself against.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use candle::{DType, Tensor};
use image::DynamicImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::flops;
use super::sys::{self, Summary};
use crate::action::MAX_ACTION_TOKENS;
use crate::model::vla::{Decoding, Inputs};
use crate::pipeline::{Pipeline, Prediction};
use crate::preprocess::{letterbox, to_pixels};
use crate::scene::draw::{draw_commands, EVAL_SEED_START};
use crate::scene::Layout;
use crate::tokens;

/// A held-out scene and one command about it.
pub struct TimedExample {
    pub seed: u64,
    pub image: DynamicImage,
    pub command: String,
}

/// `n` examples from the held-out seeds, rendered at twice the model's size so
/// the preprocess stage really resizes. The same `n` gives the same examples.
pub fn examples(n: usize, image_size: usize) -> Result<Vec<TimedExample>> {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut out = Vec::with_capacity(n);
    let mut seed = EVAL_SEED_START;
    while out.len() < n {
        let layout = Layout::generate(seed);
        if let Some(cmd) = draw_commands(&layout, 1, 0.3, &mut rng).into_iter().next() {
            let image = DynamicImage::ImageRgb8(layout.render(2 * image_size as u32)?);
            out.push(TimedExample {
                seed,
                image,
                command: cmd.text,
            });
        }
        seed += 1;
        anyhow::ensure!(
            seed < EVAL_SEED_START + 100 * n as u64 + 100,
            "the scene generator gave no commands"
        );
    }
    Ok(out)
}

/// Milliseconds per stage over the timed runs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stages {
    pub preprocess: Summary,
    pub vision: Summary,
    pub text: Summary,
    /// Fusion head and the action decoding loop.
    pub fusion_decode: Summary,
    /// Rendering the attention heatmap over every image of the batch.
    pub overlay: Summary,
    /// vision + text + fusion_decode: the model alone.
    pub model: Summary,
}

/// Everything measured at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub batch: usize,
    pub runs: usize,
    /// Padded command length of this batch.
    pub text_len: usize,
    /// Fusion passes the greedy decoder ran.
    pub decode_steps: usize,
    pub stages: Stages,
    /// `predict` (preprocess + model) plus overlay, ms.
    pub end_to_end: Summary,
    /// Actions per second at the median end-to-end time.
    pub actions_per_s: f64,
    /// Teacher-forced forward pass over MAX_ACTION_TOKENS action positions, ms.
    pub forward: Summary,
    /// Model FLOPs of one (image, command) pair as decoded, and of one forward pass.
    pub flops_per_image: flops::Flops,
    pub forward_flops_per_image: flops::Flops,
    /// Model FLOPs of the batch over the median model time (vision + text + decode).
    pub gflops_per_s: f64,
    pub forward_gflops_per_s: f64,
    /// The same as fractions of the matmul peak measured in this run.
    pub peak_fraction: f64,
    pub forward_peak_fraction: f64,
}

/// Teacher-forced inputs for the examples, with `<boa>` and the decoded tokens
/// as the action inputs (padded with `<boa>` like training batches).
pub struct Forced {
    pub inputs: Inputs,
    pub action_ids: Tensor,
}

pub fn forced_inputs(p: &Pipeline, ex: &[TimedExample], preds: &[Prediction]) -> Result<Forced> {
    let cfg = p.config();
    // The commands as the predictions tokenised them.
    let commands = preds.iter().map(|pred| &pred.command);
    let (text_ids, text_lens) = tokens::to_ids(commands, p.tokenizer.pad_id(), &p.device)?;
    let boxed: Vec<_> = ex.iter().map(|e| letterbox(&e.image, cfg).0).collect();
    let refs: Vec<&image::RgbImage> = boxed.iter().collect();
    let pixels = to_pixels(&refs, cfg, &p.device)?;
    let mut ids = Vec::with_capacity(ex.len() * MAX_ACTION_TOKENS);
    for pred in preds {
        ids.push(cfg.boa_token_id);
        for i in 0..MAX_ACTION_TOKENS - 1 {
            ids.push(match pred.steps.get(i) {
                Some(s) => cfg.action_offset + s.token.index() as u32,
                None => cfg.boa_token_id,
            });
        }
    }
    let action_ids = Tensor::from_vec(ids, (ex.len(), MAX_ACTION_TOKENS), &p.device)?;
    Ok(Forced {
        inputs: Inputs {
            pixels,
            image_index: None,
            text_ids,
            text_lens,
            knockout: None,
        },
        action_ids,
    })
}

/// Warm-up, then `runs` timed predictions (with overlays) and forward passes.
pub fn bench_batch(
    p: &Pipeline,
    ex: &[TimedExample],
    warmup: usize,
    runs: usize,
    peak_gflops: f64,
    mut tick: impl FnMut(),
) -> Result<BatchReport> {
    let images: Vec<DynamicImage> = ex.iter().map(|e| e.image.clone()).collect();
    let commands: Vec<&str> = ex.iter().map(|e| e.command.as_str()).collect();
    let rgb: Vec<image::RgbImage> = images.iter().map(|i| i.to_rgb8()).collect();
    let grid = p.config().grid();
    let decoding = Decoding::default();
    let mut cols: [Vec<f64>; 7] = Default::default();
    let mut preds = Vec::new();
    for i in 0..warmup + runs {
        let t = Instant::now();
        preds = p.predict(&images, &commands, &decoding, false)?;
        let predict_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        for (img, pred) in rgb.iter().zip(&preds) {
            std::hint::black_box(sys::render_attention_overlay(
                img,
                &pred.boa_attention,
                grid,
            )?);
        }
        let overlay_ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            let s = preds[0].times;
            let row = [
                s.preprocess,
                s.vision,
                s.text,
                s.decode,
                overlay_ms,
                s.vision + s.text + s.decode,
                predict_ms + overlay_ms,
            ];
            for (c, v) in cols.iter_mut().zip(row) {
                c.push(v);
            }
        }
        tick();
    }
    let forced = forced_inputs(p, ex, &preds)?;
    let mut fwd = Vec::new();
    for i in 0..warmup + runs {
        let t = Instant::now();
        let out = p.model.forward(&forced.inputs, &forced.action_ids)?;
        p.device.synchronize()?;
        std::hint::black_box(out.logits);
        if i >= warmup {
            fwd.push(t.elapsed().as_secs_f64() * 1e3);
        }
        tick();
    }
    let s: Vec<Summary> = cols.iter().map(|c| sys::summarize(c)).collect();
    let stages = Stages {
        preprocess: s[0],
        vision: s[1],
        text: s[2],
        fusion_decode: s[3],
        overlay: s[4],
        model: s[5],
    };
    let end_to_end = s[6];
    let forward = sys::summarize(&fwd);
    let b = ex.len();
    let text_len = forced.inputs.text_ids.dim(1)?;
    // generate runs until every command has ended, so all run the longest.
    let decode_steps = preds
        .iter()
        .map(|p| p.steps.len())
        .max()
        .unwrap_or(0)
        .min(MAX_ACTION_TOKENS);
    let fl = flops::generate(p.config(), text_len, decode_steps);
    let ffl = flops::forward(p.config(), text_len, MAX_ACTION_TOKENS);
    let gflops = |f: u64, ms: f64| (b as f64 * f as f64) / (ms * 1e-3) / 1e9;
    let g = gflops(fl.total(), stages.model.median);
    let fg = gflops(ffl.total(), forward.median);
    Ok(BatchReport {
        batch: b,
        runs,
        text_len,
        decode_steps,
        stages,
        end_to_end,
        actions_per_s: b as f64 / (end_to_end.median * 1e-3),
        forward,
        flops_per_image: fl,
        forward_flops_per_image: ffl,
        gflops_per_s: g,
        forward_gflops_per_s: fg,
        peak_fraction: g / peak_gflops,
        forward_peak_fraction: fg / peak_gflops,
    })
}

/// Writes `reference.safetensors` and `reference.json` into `dir` (an
/// existing directory) for
/// benches/torch_peer.py: the examples' pixels, left-padded command ids and
/// lengths, teacher-forcing action inputs, candle's logits for them, and the
/// greedy tokens (-1 after `<eoa>`).
pub fn export_reference(
    p: &Pipeline,
    ex: &[TimedExample],
    dir: &Path,
    files: &mut crate::output::Staged,
) -> Result<()> {
    // The directory must exist: nothing, not even a directory, appears
    // unless the whole reference is written.
    if !dir.is_dir() {
        anyhow::bail!(
            "--export-reference {}: not an existing directory",
            dir.display()
        );
    }
    let images: Vec<DynamicImage> = ex.iter().map(|e| e.image.clone()).collect();
    let commands: Vec<&str> = ex.iter().map(|e| e.command.as_str()).collect();
    let preds = p.predict(&images, &commands, &Decoding::default(), false)?;
    let forced = forced_inputs(p, ex, &preds)?;
    let out = p.model.forward(&forced.inputs, &forced.action_ids)?;
    let b = ex.len();
    let tokens: Vec<i64> = preds
        .iter()
        .flat_map(|pr| {
            (0..MAX_ACTION_TOKENS)
                .map(move |i| pr.steps.get(i).map_or(-1, |s| s.token.index() as i64))
        })
        .collect();
    let lens: Vec<i64> = forced.inputs.text_lens.iter().map(|&l| l as i64).collect();
    let i64s = |t: &Tensor| -> Result<Tensor> {
        Ok(t.to_dtype(DType::I64)?.to_device(&candle::Device::Cpu)?)
    };
    let f32s = |t: &Tensor| -> Result<Tensor> {
        Ok(t.to_dtype(DType::F32)?.to_device(&candle::Device::Cpu)?)
    };
    let tensors: Vec<(String, Tensor)> = [
        ("pixels", f32s(&forced.inputs.pixels)?),
        ("text_ids", i64s(&forced.inputs.text_ids)?),
        (
            "text_lens",
            Tensor::from_vec(lens, b, &candle::Device::Cpu)?,
        ),
        ("action_ids", i64s(&forced.action_ids)?),
        ("logits", f32s(&out.logits)?),
        (
            "tokens",
            Tensor::from_vec(tokens, (b, MAX_ACTION_TOKENS), &candle::Device::Cpu)?,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    files.add(
        &dir.join("reference.safetensors"),
        &crate::checkpoint::tensors_to_bytes(tensors)?,
    )?;
    let meta = serde_json::json!({
        "origin": p.origin,
        "seeds": ex.iter().map(|e| e.seed).collect::<Vec<_>>(),
        "commands": commands,
        "note": "examples 0..B of a batch-B benchmark are the first B rows; trim the left padding to their longest command",
    });
    files.add(
        &dir.join("reference.json"),
        serde_json::to_string_pretty(&meta)?.as_bytes(),
    )
}
