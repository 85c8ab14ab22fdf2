//! `vla-demo bench --train-steps N`: the speed of `vla-demo train`, step by
//! step, exactly as `train::run` does them, from the step where the preset
//! draws its full mix of worlds: make the batch (render scenes,
//! tokenise, split it into the config's shards), the gradients (forward,
//! loss and backward of every shard on its own thread, summed), then the
//! gradient norm and the AdamW update.
//!
//! Training runs candle's element-wise kernels on each shard's own thread
//! (`CANDLE_NUM_THREADS=1`, see [`crate::train::run`]), which must be set
//! before the first tensor operation. So when this process has already timed
//! inference with candle's thread pool, the steps are timed in a child
//! process (`vla-demo bench --skip-inference --train-steps N`) instead.

use std::time::Instant;

use anyhow::{Context, Result};
use candle::Device;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::sys::{self, Summary};
use crate::model::Config;
use crate::tokens::CommandTokenizer;
use crate::train::{self, AdamW, TrainConfig};

/// The shipped model's training preset (models/pens-small-prior), compiled in so the
/// benchmark runs anywhere.
const PRESET: &str = include_str!("../../configs/train-pens-small-prior.json");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub steps: usize,
    /// (image, command) pairs per step, over `scenes` pictures: the mean
    /// over the timed steps, since a randomised scene with few objects
    /// allows fewer commands.
    pub batch: usize,
    pub scenes: usize,
    /// Threads the batch was split over (the preset's shards on the CPU, 1 on a GPU).
    pub shards: usize,
    /// Per step, ms: making the batch, the gradients (forward, loss and
    /// backward of all shards), the optimiser (norm, clipping, AdamW).
    pub data: Summary,
    pub gradients: Summary,
    pub optimizer: Summary,
    pub step: Summary,
    /// Samples per second at the median step time.
    pub samples_per_s: f64,
}

/// Times `steps` training steps in a child process that sets candle's
/// threads as `vla-demo train` does (see the module doc).
pub fn bench_train_in_child(
    model_dir: Option<&std::path::Path>,
    device: &str,
    steps: usize,
) -> Result<TrainReport> {
    let mut args: Vec<String> = [
        super::SUBCOMMAND,
        "--skip-inference",
        "--json",
        "--device",
        device,
        "--train-steps",
    ]
    .map(String::from)
    .to_vec();
    args.push(steps.to_string());
    if let Some(dir) = model_dir {
        args.push("--model-dir".into());
        args.push(dir.display().to_string());
    }
    let out = sys::run_self(&args)?;
    let mut report: serde_json::Value =
        serde_json::from_str(&out).context("the child's report is not valid JSON")?;
    serde_json::from_value(report["train"].take())
        .context("the child's report has no training steps")
}

pub fn bench_train(
    model_cfg: &Config,
    tok: &CommandTokenizer,
    device: &Device,
    steps: usize,
    mut tick: impl FnMut(),
) -> Result<TrainReport> {
    let mut cfg: TrainConfig = serde_json::from_str(PRESET)?;
    cfg.model = model_cfg.clone();
    let vars = VarMap::new();
    let model = train::init_model(&cfg, &vars, device)?;
    let mut opt = AdamW::new(&vars)?;
    let shards = if device.is_cpu() { cfg.shards } else { 1 };
    let mut cols: [Vec<f64>; 4] = Default::default();
    let mut samples = 0;
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    // From the step where the preset's mix of worlds is complete: earlier
    // steps draw only the plain world, whose scenes cost a tenth as much.
    let first = cfg.random_ramp[1];
    let weights = cfg.loss_weights();
    for step in first..=first + steps {
        let t0 = Instant::now();
        let batches = train::shards_for_step(&cfg, tok, step, shards, device)?;
        let data_ms = ms(t0);
        let t1 = Instant::now();
        let (grads, _) = train::parallel_grads(&model, &batches, weights)?;
        device.synchronize()?;
        let grad_ms = ms(t1);
        let t3 = Instant::now();
        let norm = opt.grad_norm(&grads)?;
        let clip = if norm > cfg.grad_clip {
            cfg.grad_clip / norm
        } else {
            1.0
        };
        opt.step(&grads, cfg.lr_at(step), cfg.weight_decay, clip)?;
        device.synchronize()?;
        let opt_ms = ms(t3);
        if step > first {
            samples += batches
                .iter()
                .map(|b| b.inputs.text_lens.len())
                .sum::<usize>();
            for (c, v) in cols.iter_mut().zip([data_ms, grad_ms, opt_ms, ms(t0)]) {
                c.push(v);
            }
        }
        tick();
    }
    let s: Vec<Summary> = cols.iter().map(|c| sys::summarize(c)).collect();
    Ok(TrainReport {
        steps,
        batch: (samples as f64 / steps.max(1) as f64).round() as usize,
        scenes: cfg.scenes_per_step,
        shards,
        data: s[0],
        gradients: s[1],
        optimizer: s[2],
        step: s[3],
        samples_per_s: samples as f64 / steps.max(1) as f64 / (s[3].median * 1e-3),
    })
}
