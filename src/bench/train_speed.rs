//! `vla-demo bench --train-steps N`: the speed of `vla-demo train`, step by
//! step: make the batch (render scenes, tokenise), forward + loss, backward,
//! gradient norm and AdamW update, exactly as `train::run` does them.

use std::time::Instant;

use anyhow::Result;
use candle::Device;
use candle_nn::VarMap;
use serde::Serialize;

use super::sys::{self, Summary};
use crate::model::Config;
use crate::tokens::CommandTokenizer;
use crate::train::{self, AdamW, TrainConfig};

/// The shipped training preset, compiled in so the benchmark runs anywhere.
const PRESET: &str = include_str!("../../configs/train-tiny.json");

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub steps: usize,
    /// (image, command) pairs per step.
    pub batch: usize,
    /// Per step, ms: making the batch, forward + loss, backward, optimiser.
    pub data: Summary,
    pub forward: Summary,
    pub backward: Summary,
    pub optimizer: Summary,
    pub step: Summary,
    /// Samples per second at the median step time.
    pub samples_per_s: f64,
}

/// Times `steps` training steps after one warm-up step, on fresh weights of
/// the model's shape (the speed does not depend on the values).
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
    let mut cols: [Vec<f64>; 5] = Default::default();
    let mut batch_size = 0;
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    for step in 0..steps + 1 {
        let t0 = Instant::now();
        let batch = train::batch_for_step(&cfg, tok, step, device)?;
        let data_ms = ms(t0);
        let t1 = Instant::now();
        let (total, _) = train::loss(&model, &batch, cfg.loss_weights())?;
        device.synchronize()?;
        let fwd_ms = ms(t1);
        let t2 = Instant::now();
        let grads = total.backward()?;
        device.synchronize()?;
        let bwd_ms = ms(t2);
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
        batch_size = batch.inputs.text_lens.len();
        if step > 0 {
            for (c, v) in cols
                .iter_mut()
                .zip([data_ms, fwd_ms, bwd_ms, opt_ms, ms(t0)])
            {
                c.push(v);
            }
        }
        tick();
    }
    let s: Vec<Summary> = cols.iter().map(|c| sys::summarize(c)).collect();
    Ok(TrainReport {
        steps,
        batch: batch_size,
        data: s[0],
        forward: s[1],
        backward: s[2],
        optimizer: s[3],
        step: s[4],
        samples_per_s: batch_size as f64 / (s[4].median * 1e-3),
    })
}
