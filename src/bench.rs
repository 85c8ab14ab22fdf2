//! `vla-demo bench`: honest, reproducible numbers for this model on this
//! machine (the method of MLPerf Inference and of "Roofline" analysis,
//! Williams et al. 2009: report latency percentiles after warm-up, throughput,
//! and achieved FLOP/s against the machine's own measured peak).
//!
//! - per-stage latency of the pipeline (preprocess, vision encoder, text
//!   decoder, fusion + action decoding, overlay rendering) and end to end,
//!   median and p90 over `--runs` after `--warmup`, per `--batch` size;
//! - actions/s; model FLOPs per image, counted from the config (see
//!   [`flops`]), the achieved GFLOP/s and its fraction of a 1024³ f32 matmul
//!   timed in the same run;
//! - the teacher-forced forward pass that benches/torch_peer.py reimplements;
//! - peak memory (VmHWM from /proc/self/status: Linux only), device, dtype,
//!   threads and the 1-minute load average, so a number says how busy the
//!   machine was;
//! - `--attention-sweep` ([`sweep`]), `--train-steps N` ([`train_speed`]) and
//!   `--cold-start N` ([`cold`]); `--serve-load` ([`serve_load`]) instead
//!   load-checks `vla-demo serve`.

pub mod cold;
pub mod flops;
pub mod infer;
pub mod serve_load;
pub mod sweep;
pub mod sys;
pub mod train_speed;

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::checkpoint::Source;
use crate::output::{self, Staged};
use crate::pipeline::Pipeline;

/// The subcommand the binary runs this under; sweep points re-execute the
/// binary as `<exe> bench --sweep-point ...`.
pub const SUBCOMMAND: &str = "bench";

/// What `vla-demo bench` measures and how; the command line's flags of
/// the same names (`src/cli/bench.rs`) say what each one does.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub device: String,
    pub dtype: String,
    /// Batch sizes: (image, command) pairs per call.
    pub batch: Vec<usize>,
    /// Timed runs per batch size, after the warm-up.
    pub runs: usize,
    /// Untimed warm-up runs per batch size.
    pub warmup: usize,
    pub json: bool,
    /// A checkpoint directory; the embedded model when `None`.
    pub model_dir: Option<PathBuf>,
    pub attention_sweep: bool,
    pub sweep_lens: Vec<usize>,
    /// Measure in this process: the sweep's memory instead of one child per
    /// point, and training steps after inference without a child.
    pub in_process: bool,
    pub train_steps: usize,
    pub cold_start: usize,
    pub skip_inference: bool,
    pub export_reference: Option<PathBuf>,
    /// Instead of the benchmark: load-check `serve` on loopback.
    pub serve_load: bool,
    pub clients: usize,
    pub seconds: u64,
    /// Internal: run one attention sweep point (JSON) and print its result.
    pub sweep_point: Option<String>,
}

/// Where and how the benchmark ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub device: String,
    pub dtype: String,
    pub threads: usize,
    /// `RAYON_NUM_THREADS` as set for this run (see [`crate::device::pin_thread_count`]).
    pub rayon_num_threads_env: Option<String>,
    pub cpu: Option<String>,
    pub load_average_1m_start: Option<f64>,
    pub load_average_1m_end: Option<f64>,
    pub features: Vec<&'static str>,
    /// Which code the timed runs took (`engine::Path::choose`).
    pub path: crate::engine::Path,
}

/// Everything one `vla-demo bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub machine: Machine,
    pub matmul_peak: sys::MatmulPeak,
    pub batches: Vec<infer::BatchReport>,
    pub train: Option<train_speed::TrainReport>,
    pub attention_sweep: Option<sweep::Sweep>,
    pub cold_start: Option<cold::ColdStart>,
    /// VmHWM of this process at the end, bytes (Linux only; sweep points run in children).
    pub peak_memory_bytes: Option<u64>,
}

fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    for (on, name) in [
        (cfg!(feature = "cuda"), "cuda"),
        (cfg!(feature = "cudnn"), "cudnn"),
        (cfg!(feature = "flash-attn"), "flash-attn"),
        (cfg!(feature = "metal"), "metal"),
        (cfg!(feature = "mkl"), "mkl"),
        (cfg!(feature = "accelerate"), "accelerate"),
    ] {
        if on {
            f.push(name);
        }
    }
    f
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(spec) = &args.sweep_point {
        let spec: sweep::PointSpec = serde_json::from_str(spec)
            .context("--sweep-point takes the JSON the benchmark writes")?;
        check_point(&spec)?;
        return output::print(&format!(
            "{}\n",
            serde_json::to_string(&sweep::run_point(&spec, "subprocess")?)?
        ));
    }
    if args.serve_load {
        let source = args.model_dir.clone().map_or(Source::Embedded, Source::Dir);
        let r = serve_load::run(&source, &args.device, args.clients, args.seconds)?;
        let text = match args.json {
            true => format!("{}\n", serde_json::to_string_pretty(&r)?),
            false => r.text(),
        };
        return output::print(&text);
    }
    check_args(args)?;
    if args.skip_inference && args.train_steps > 0 {
        // Before the first tensor operation, as `vla-demo train` does.
        crate::train::set_up_training_process();
    }
    let load_start = sys::load_average();
    let device = crate::device::select(&args.device)?;
    let dtype = crate::device::dtype(&args.dtype, &device)?;
    let source = match &args.model_dir {
        Some(dir) => Source::Dir(dir.clone()),
        None => Source::Embedded,
    };
    let p = Pipeline::load_on(&source, device.clone(), dtype)?;
    let mut files = Staged::new();

    let inference = !args.skip_inference;
    let per_batch = 2 * (args.warmup + args.runs) as u64;
    let mut total = 1
        + args.train_steps as u64
        + u64::from(args.train_steps > 0)
        + u64::from(args.cold_start > 0);
    if inference {
        total += per_batch * args.batch.len() as u64;
    }
    if args.attention_sweep {
        total += (args.sweep_lens.len() * sweep::paths(&device).len()) as u64;
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} bench [{bar:30}] {pos}/{len} {msg} · eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    bar.set_message("matmul peak (1024³)");
    let peak = sys::matmul_peak(&device, dtype, 1024, 5)?;
    bar.inc(1);

    let mut batches = Vec::new();
    if inference {
        let largest = args.batch.iter().copied().max().unwrap_or(1);
        let ex = infer::examples(largest, p.config().image_size)?;
        for &b in &args.batch {
            bar.set_message(format!("batch {b}"));
            batches.push(infer::bench_batch(
                &p,
                &ex[..b],
                args.warmup,
                args.runs,
                peak.gflops,
                || bar.inc(1),
            )?);
        }
        if let Some(dir) = &args.export_reference {
            bar.set_message("reference for torch_peer.py");
            infer::export_reference(&p, &ex, dir, &mut files)?;
        }
    } else if args.export_reference.is_some() {
        anyhow::bail!("--export-reference needs the inference benchmark; drop --skip-inference");
    }

    let train = if args.train_steps > 0 {
        bar.set_message("training steps");
        Some(if inference && !args.in_process {
            let r = train_speed::bench_train_in_child(
                args.model_dir.as_deref(),
                &args.device,
                args.train_steps,
            )?;
            bar.inc(args.train_steps as u64 + 1);
            r
        } else {
            train_speed::bench_train(p.config(), &p.tokenizer, &device, args.train_steps, || {
                bar.inc(1)
            })?
        })
    } else {
        None
    };

    let attention_sweep = if args.attention_sweep {
        let cfg = p.config();
        let (h, d) = (
            cfg.num_attention_heads,
            cfg.hidden_size / cfg.num_attention_heads,
        );
        let config = sweep::SweepConfig {
            lens: args.sweep_lens.clone(),
            heads: h,
            head_dim: d,
            runs: args.runs,
            device: args.device.clone(),
            dtype: args.dtype.clone(),
            in_process: args.in_process,
        };
        Some(sweep::sweep(&config, |m| {
            bar.set_message(m.to_string());
            bar.inc(1);
        })?)
    } else {
        None
    };
    let cold_start = if args.cold_start > 0 {
        bar.set_message("cold starts");
        let ex = infer::examples(1, p.config().image_size)?;
        let dir = tempfile::tempdir()?;
        output::remove_on_interrupt(dir.path());
        let png = dir.path().join("scene.png");
        ex[0]
            .image
            .save(&png)
            .with_context(|| format!("cannot write {}", png.display()))?;
        let c = cold::cold_start(
            &png,
            &ex[0].command,
            args.model_dir.as_deref(),
            &args.device,
            args.cold_start,
        )?;
        output::forget(dir.path());
        bar.inc(1);
        Some(c)
    } else {
        None
    };
    bar.finish_and_clear();

    let report = BenchReport {
        model: p.origin.clone(),
        machine: Machine {
            device: crate::device::describe(&device),
            dtype: args.dtype.clone(),
            threads: candle::utils::get_num_threads(),
            rayon_num_threads_env: std::env::var("RAYON_NUM_THREADS").ok(),
            cpu: sys::cpu_name(),
            load_average_1m_start: load_start,
            load_average_1m_end: sys::load_average(),
            features: features(),
            path: p.model.path(false),
        },
        matmul_peak: peak,
        batches,
        train,
        attention_sweep,
        cold_start,
        peak_memory_bytes: sys::peak_rss(),
    };
    let out = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&report)?)
    } else {
        text(&report)
    };
    output::print_and_commit(&out, files)
}

/// Every flag within its documented bound (`crate::limits`), before any
/// work: a size taken on trust could ask for terabytes.
fn check_args(args: &BenchArgs) -> Result<()> {
    use crate::limits::*;
    let list = |name: &str, v: &[usize], hi: usize| {
        anyhow::ensure!(
            !v.is_empty() && v.len() <= MAX_LIST_LEN,
            "--{name} takes 1 to {MAX_LIST_LEN} values (got {})",
            v.len()
        );
        if let Some(x) = v.iter().find(|&&x| !(1..=hi).contains(&x)) {
            anyhow::bail!("--{name} {x} is outside 1..={hi}");
        }
        Ok(())
    };
    list("batch", &args.batch, MAX_BENCH_BATCH)?;
    list("sweep-lens", &args.sweep_lens, MAX_SWEEP_LEN)?;
    let within = |name: &str, v: usize, lo: usize, hi: usize| {
        anyhow::ensure!(
            (lo..=hi).contains(&v),
            "--{name} {v} is outside {lo}..={hi}"
        );
        Ok(())
    };
    within("runs", args.runs, 1, MAX_BENCH_RUNS)?;
    within("warmup", args.warmup, 0, MAX_BENCH_RUNS)?;
    within("train-steps", args.train_steps, 0, MAX_BENCH_REPEATS)?;
    within("cold-start", args.cold_start, 0, MAX_BENCH_REPEATS)
}

/// The hidden `--sweep-point` within the same bounds as `--sweep-lens`.
fn check_point(spec: &sweep::PointSpec) -> Result<()> {
    use crate::limits::{
        config::MAX_HEADS, config::MAX_HIDDEN_SIZE, MAX_BENCH_RUNS, MAX_SWEEP_LEN,
    };
    anyhow::ensure!(
        (1..=MAX_SWEEP_LEN).contains(&spec.seq_len)
            && (1..=MAX_HEADS).contains(&spec.heads)
            && (1..=MAX_HIDDEN_SIZE).contains(&spec.head_dim)
            && (1..=MAX_BENCH_RUNS).contains(&spec.runs),
        "--sweep-point is outside the bounds of --sweep-lens, --runs and the model config"
    );
    Ok(())
}

fn opt<T: std::fmt::Display>(x: Option<T>) -> String {
    x.map(|v| v.to_string()).unwrap_or_else(|| "n/a".into())
}

/// The report as tables for people.
pub fn text(r: &BenchReport) -> String {
    let m = &r.machine;
    let mut out = format!(
        "vla-demo bench · model {} · {} · {} · path {} · RAYON_NUM_THREADS={} · features [{}]\ncpu {} · load average {} at start, {} at end\n\
         matmul peak: {}³ in {:.2} ms best = {:.1} GFLOP/s\n",
        r.model,
        m.device,
        m.dtype,
        m.path,
        m.rayon_num_threads_env.as_deref().unwrap_or("unset"),
        m.features.join(", "),
        opt(m.cpu.clone()),
        opt(m.load_average_1m_start),
        opt(m.load_average_1m_end),
        r.matmul_peak.size,
        r.matmul_peak.best_ms,
        r.matmul_peak.gflops,
    );
    if !r.batches.is_empty() {
        out += "\nlatency, ms (median / p90); the stages are one call's shares of the batch\n\n\
                | batch | preprocess | vision | text | fusion+decode | overlay | end-to-end | actions/s | forward | GFLOP/img | GFLOP/s | % peak |\n\
                |---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for b in &r.batches {
            let s = &b.stages;
            let mp = |x: &sys::Summary| format!("{:.2} / {:.2}", x.median, x.p90);
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.3} | {:.1} | {:.1}% |\n",
                b.batch,
                mp(&s.preprocess),
                mp(&s.vision),
                mp(&s.text),
                mp(&s.fusion_decode),
                mp(&s.overlay),
                mp(&b.end_to_end),
                b.actions_per_s,
                mp(&b.forward),
                b.flops_per_image.total() as f64 / 1e9,
                b.gflops_per_s,
                100.0 * b.peak_fraction,
            );
        }
        out += "\nGFLOP/img counts matrix products only (see src/bench/flops.rs) for greedy decoding as run; \
                GFLOP/s divides the batch's FLOPs by the model stages' median time.\n";
        for b in &r.batches {
            out += &format!(
                "batch {}: T = {} tokens, {} decode steps; forward pass {:.3} GFLOP/img, {:.1} GFLOP/s ({:.1}% of peak)\n",
                b.batch,
                b.text_len,
                b.decode_steps,
                b.forward_flops_per_image.total() as f64 / 1e9,
                b.forward_gflops_per_s,
                100.0 * b.forward_peak_fraction
            );
        }
    }
    if let Some(t) = &r.train {
        out += &format!(
            "\ntraining: {} steps of {} samples in {} shards after one warm-up; per step median {:.0} ms (data {:.0}, gradients {:.0}, optimiser {:.0}) = {:.1} samples/s\n",
            t.steps, t.batch, t.shards, t.step.median, t.data.median, t.gradients.median, t.optimizer.median, t.samples_per_s
        );
    }
    if let Some(s) = &r.attention_sweep {
        out += "\n";
        out += &sweep::table(s);
    }
    if let Some(c) = &r.cold_start {
        out += &format!(
            "\ncold start (spawn to printed action, {} runs after one untimed): median {:.0} ms, p90 {:.0} ms (target ≤ 150 ms: {})\n  {}\n",
            c.runs,
            c.ms.median,
            c.ms.p90,
            if c.target_met { "met" } else { "NOT met" },
            c.command
        );
    }
    out += &format!(
        "\npeak memory of this process (VmHWM, /proc/self/status, Linux only): {}\n",
        r.peak_memory_bytes
            .map(|b| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64))
            .unwrap_or_else(|| "n/a".into())
    );
    out
}
