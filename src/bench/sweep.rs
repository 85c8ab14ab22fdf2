//! `vla-demo bench --attention-sweep`: attention's O(N²) memory, made
//! measurable. For sequence lengths from 196 patches (224 px) to 4096 (1024
//! px) it times each attention path ([`AttentionImpl`]) and each score
//! function ([`ScoreFn`]) on random (1, H, T, D) queries, keys and values, and
//! reports their peak attention memory two ways:
//!
//! - **analytic**: the bytes of the largest intermediate the path creates:
//!   the (B, H, T, T) score matrix for the naive path; for the tiled path's
//!   CPU kernel its transposed copy of the keys (B, H, D, T) (its score tiles
//!   are 64 × 128 per thread), for the candle-ops version (`tiled_ops`, and
//!   `tiled` off the CPU) one (B, H, 256, 256) tile; the (B, H, T, T, D) pair
//!   tensor for the additive score; nothing in device memory for a fused
//!   kernel;
//! - **measured**: each point runs in a fresh child process (the binary
//!   re-executes itself with a hidden `--sweep-point`), which resets Linux's
//!   peak-RSS counter (`/proc/self/clear_refs`) after creating its inputs and
//!   reads VmHWM after the first call: the rise is the attention's peak
//!   memory, temporaries included, with no allocator cache from earlier
//!   points hiding it. Host memory only: on a GPU only the analytic figure
//!   is reported.

use std::time::Instant;

use anyhow::{Context, Result};
use candle::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::sys::{self, Summary};
use crate::engine::long_attention::{
    attention_with, tiled_attention_blocks, AttentionImpl, BLOCK_K, BLOCK_Q,
};
use crate::engine::long_attention_cpu::{CPU_BLOCK_K, CPU_BLOCK_Q};
use crate::model::attention::{align, attend, score, ScoreFn};

mod table;

pub use table::table;

/// The sequence lengths of the sweep: 224, 384, 512, 768 and 1024 px images at 16 px patches.
pub const DEFAULT_LENS: [usize; 5] = [196, 576, 1024, 2304, 4096];

/// The additive score's (B, H, T, T, D) pair tensor is skipped above this size.
pub const ADDITIVE_LIMIT_BYTES: u64 = 1 << 30;

/// Seconds of timing per point, after which no further runs start.
const POINT_BUDGET_S: f64 = 3.0;

/// What one point computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionPath {
    /// Scaled dot-product attention through one implementation.
    Impl(AttentionImpl),
    /// The tiled algorithm written with candle ops (`tiled_attention_blocks`).
    TiledOps,
    /// Score -> softmax -> attend with one score function (naive path).
    Score(ScoreFn),
}

impl AttentionPath {
    pub fn name(self) -> String {
        match self {
            AttentionPath::Impl(i) => i.name().to_string(),
            AttentionPath::TiledOps => "tiled_ops".into(),
            AttentionPath::Score(ScoreFn::Additive) => "additive".into(),
            AttentionPath::Score(ScoreFn::Dot) => "dot".into(),
            AttentionPath::Score(ScoreFn::ScaledDot) => "scaled_dot".into(),
        }
    }
}

/// One point of the sweep; it travels to the child process as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSpec {
    pub path: AttentionPath,
    pub seq_len: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub runs: usize,
    pub device: String,
    pub dtype: String,
}

impl PointSpec {
    fn elem_bytes(&self) -> u64 {
        match self.dtype.as_str() {
            "f16" | "bf16" => 2,
            _ => 4,
        }
    }

    /// Bytes of the largest intermediate (batch 1), see the module docs.
    /// `kernel`: the tiled path runs as the CPU kernel (f32 on the CPU).
    pub fn analytic_bytes(&self, kernel: bool) -> u64 {
        let (h, t, d) = (self.heads as u64, self.seq_len as u64, self.head_dim as u64);
        let e = self.elem_bytes();
        match self.path {
            AttentionPath::Impl(AttentionImpl::Naive)
            | AttentionPath::Score(ScoreFn::Dot)
            | AttentionPath::Score(ScoreFn::ScaledDot) => h * t * t * e,
            AttentionPath::Impl(AttentionImpl::Tiled) if kernel => h * d * t * e,
            AttentionPath::Impl(AttentionImpl::Tiled) | AttentionPath::TiledOps => {
                h * t.min(BLOCK_Q as u64) * t.min(BLOCK_K as u64) * e
            }
            AttentionPath::Impl(AttentionImpl::Fused) => 0,
            AttentionPath::Score(ScoreFn::Additive) => h * t * t * d * e,
        }
    }
}

/// What a point measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub path: String,
    pub seq_len: usize,
    pub ms: Option<Summary>,
    pub analytic_bytes: u64,
    /// Rise of VmHWM during the first call, bytes.
    pub measured_bytes: Option<u64>,
    /// "subprocess", "in-process" (can under-count: freed memory is reused), or "none".
    pub method: String,
    /// Why a point was skipped or failed.
    pub note: Option<String>,
}

/// One row of the table: a sequence length and its points.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub seq_len: usize,
    /// The image side that gives this many 16 px patches, when it is a square.
    pub image_size: Option<usize>,
    pub points: Vec<PointResult>,
}

/// The whole sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub heads: usize,
    pub head_dim: usize,
    pub dtype: String,
    pub device: String,
    /// Tiles of the candle-ops version (`tiled_ops`, and `tiled` off the CPU).
    pub block_q: usize,
    pub block_k: usize,
    /// Tiles of the CPU kernel (`tiled` on the CPU).
    pub kernel_block_q: usize,
    pub kernel_block_k: usize,
    pub rows: Vec<SweepRow>,
    /// Tiled over naive peak attention memory at the longest sequence.
    pub tiled_over_naive_analytic: Option<f64>,
    pub tiled_over_naive_measured: Option<f64>,
    /// Issue 6: the tiled path's peak at the longest length ≤ 1/8 of naive's.
    pub memory_target_met: Option<bool>,
}

/// The paths a sweep runs on this build and device.
pub fn paths(device: &Device) -> Vec<AttentionPath> {
    let mut p: Vec<AttentionPath> = AttentionImpl::ALL
        .into_iter()
        .filter(|i| i.available(device))
        .map(AttentionPath::Impl)
        .collect();
    if device.is_cpu() {
        p.insert(2, AttentionPath::TiledOps);
    }
    p.extend([ScoreFn::Additive, ScoreFn::Dot, ScoreFn::ScaledDot].map(AttentionPath::Score));
    p
}

/// Runs one point in this process and returns what it measured.
pub fn run_point(spec: &PointSpec, method: &str) -> Result<PointResult> {
    let device = crate::device::select(&spec.device)?;
    let dtype = crate::device::dtype(&spec.dtype, &device)?;
    let mut result = PointResult {
        path: spec.path.name(),
        seq_len: spec.seq_len,
        ms: None,
        analytic_bytes: spec.analytic_bytes(device.is_cpu() && dtype == DType::F32),
        measured_bytes: None,
        method: method.to_string(),
        note: None,
    };
    if spec.path == AttentionPath::Score(ScoreFn::Additive)
        && result.analytic_bytes > ADDITIVE_LIMIT_BYTES
    {
        result.method = "none".into();
        result.note = Some(format!(
            "skipped: its pair tensor alone needs {:.1} GiB",
            result.analytic_bytes as f64 / (1u64 << 30) as f64
        ));
        return Ok(result);
    }
    // Spin up the thread pools on a tiny problem so they are not counted.
    compute(spec.path, &inputs(16, spec, dtype, &device)?)?;
    let x = inputs(spec.seq_len, spec, dtype, &device)?;
    device.synchronize()?;

    let before = sys::rss();
    let reset = device.is_cpu() && sys::reset_peak_rss();
    let t = Instant::now();
    let out = compute(spec.path, &x)?;
    device.synchronize()?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    if reset {
        if let (Some(b), Some(peak)) = (before, sys::peak_rss()) {
            result.measured_bytes = Some(peak.saturating_sub(b));
        }
    }
    drop(out);

    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < spec.runs.max(1)
        && (times.is_empty() || start.elapsed().as_secs_f64() < POINT_BUDGET_S)
    {
        let t = Instant::now();
        let out = compute(spec.path, &x)?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    if times.is_empty() {
        times.push(first_ms);
    }
    result.ms = Some(sys::summarize(&times));
    Ok(result)
}

/// q, k, v (1, H, T, D) and the additive score's vector (H, D).
struct Inputs {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    v_add: Tensor,
}

fn inputs(t: usize, spec: &PointSpec, dtype: DType, device: &Device) -> Result<Inputs> {
    let (h, d) = (spec.heads, spec.head_dim);
    let r = |shape: (usize, usize, usize, usize)| -> Result<Tensor> {
        Ok(Tensor::randn(0f32, 1f32, shape, device)?.to_dtype(dtype)?)
    };
    let v_add = Tensor::randn(0f32, (d as f32).powf(-0.5), (h, d), device)?.to_dtype(dtype)?;
    Ok(Inputs {
        q: r((1, h, t, d))?,
        k: r((1, h, t, d))?,
        v: r((1, h, t, d))?,
        v_add,
    })
}

fn compute(path: AttentionPath, x: &Inputs) -> Result<Tensor> {
    Ok(match path {
        AttentionPath::Impl(imp) => attention_with(imp, &x.q, &x.k, &x.v, false)?,
        AttentionPath::TiledOps => {
            tiled_attention_blocks(&x.q, &x.k, &x.v, false, BLOCK_Q, BLOCK_K)?
        }
        AttentionPath::Score(kind) => {
            let s = score(kind, &x.q, &x.k, Some(&x.v_add))?;
            attend(&align(&s)?, &x.v)?
        }
    })
}

/// Runs a point in a child process (see the module docs); falls back to this
/// process, saying so, when the child cannot run.
pub fn measure_point(spec: &PointSpec, in_process: bool) -> PointResult {
    if !in_process {
        match run_child(spec) {
            Ok(r) => return r,
            Err(e) => {
                let mut r = in_process_point(spec);
                r.note = Some(format!("child process failed ({e:#}); measured in-process"));
                return r;
            }
        }
    }
    in_process_point(spec)
}

fn in_process_point(spec: &PointSpec) -> PointResult {
    run_point(spec, "in-process").unwrap_or_else(|e| PointResult {
        path: spec.path.name(),
        seq_len: spec.seq_len,
        ms: None,
        analytic_bytes: spec.analytic_bytes(spec.device == "cpu" && spec.dtype == "f32"),
        measured_bytes: None,
        method: "none".into(),
        note: Some(format!("failed: {e:#}")),
    })
}

fn run_child(spec: &PointSpec) -> Result<PointResult> {
    let stdout = super::sys::run_self(&[
        super::SUBCOMMAND.to_string(),
        "--sweep-point".to_string(),
        serde_json::to_string(spec)?,
    ])?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the child printed no result")?;
    serde_json::from_str(line).context("the child's result is not valid JSON")
}

/// The image side that gives `t` patches of 16 px, if `t` is a square.
pub fn image_side(t: usize) -> Option<usize> {
    let g = (t as f64).sqrt().round() as usize;
    (g * g == t).then_some(g * 16)
}

/// What a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub lens: Vec<usize>,
    pub heads: usize,
    pub head_dim: usize,
    pub runs: usize,
    pub device: String,
    pub dtype: String,
    /// Measure memory in this process instead of a child per point.
    pub in_process: bool,
}

/// Runs the whole sweep; `tick` is called before every point.
pub fn sweep(c: &SweepConfig, mut tick: impl FnMut(&str)) -> Result<Sweep> {
    let SweepConfig {
        lens,
        heads,
        head_dim,
        runs,
        in_process,
        ..
    } = c;
    let (heads, head_dim, runs, in_process) = (*heads, *head_dim, *runs, *in_process);
    let (device_name, dtype) = (c.device.as_str(), c.dtype.as_str());
    let device = crate::device::select(device_name)?;
    let mut rows = Vec::new();
    for &t in lens {
        let mut points = Vec::new();
        for path in paths(&device) {
            let spec = PointSpec {
                path,
                seq_len: t,
                heads,
                head_dim,
                runs,
                device: device_name.into(),
                dtype: dtype.into(),
            };
            tick(&format!("attention {} T={t}", path.name()));
            points.push(measure_point(&spec, in_process));
        }
        rows.push(SweepRow {
            seq_len: t,
            image_size: image_side(t),
            points,
        });
    }
    let ratio = |row: &SweepRow, f: fn(&PointResult) -> Option<u64>| -> Option<f64> {
        let get = |n: &str| row.points.iter().find(|p| p.path == n).and_then(f);
        match (get("tiled"), get("naive")) {
            (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
            _ => None,
        }
    };
    let last = rows.iter().max_by_key(|r| r.seq_len);
    let analytic = last.and_then(|r| ratio(r, |p| Some(p.analytic_bytes)));
    let measured = last.and_then(|r| ratio(r, |p| p.measured_bytes));
    let met = measured.or(analytic).map(|r| r <= 0.125);
    Ok(Sweep {
        heads,
        head_dim,
        dtype: dtype.into(),
        device: crate::device::describe(&device),
        block_q: BLOCK_Q,
        block_k: BLOCK_K,
        kernel_block_q: CPU_BLOCK_Q,
        kernel_block_k: CPU_BLOCK_K,
        rows,
        tiled_over_naive_analytic: analytic,
        tiled_over_naive_measured: measured,
        memory_target_met: met,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analytic_memory_of_each_path() {
        let spec = |path| PointSpec {
            path,
            seq_len: 4096,
            heads: 4,
            head_dim: 32,
            runs: 1,
            device: "cpu".into(),
            dtype: "f32".into(),
        };
        let naive = spec(AttentionPath::Impl(AttentionImpl::Naive)).analytic_bytes(true);
        assert_eq!(naive, 4 * 4096 * 4096 * 4);
        let tiled = spec(AttentionPath::Impl(AttentionImpl::Tiled));
        // The CPU kernel's transposed keys; a 256 × 256 tile per head elsewhere.
        assert_eq!(tiled.analytic_bytes(true), 4 * 32 * 4096 * 4);
        assert_eq!(tiled.analytic_bytes(false), 4 * 256 * 256 * 4);
        assert_eq!(
            spec(AttentionPath::TiledOps).analytic_bytes(true),
            4 * 256 * 256 * 4
        );
        assert!(tiled.analytic_bytes(true) * 8 <= naive);
        assert_eq!(image_side(196), Some(224));
        assert_eq!(image_side(4096), Some(1024));
        assert_eq!(image_side(200), None);
    }

    #[test]
    fn a_small_point_runs_in_process() {
        let spec = PointSpec {
            path: AttentionPath::Impl(AttentionImpl::Tiled),
            seq_len: 64,
            heads: 2,
            head_dim: 8,
            runs: 2,
            device: "cpu".into(),
            dtype: "f32".into(),
        };
        let r = run_point(&spec, "in-process").unwrap();
        assert!(r.ms.is_some());
    }
}
