//! What the benchmark reads about the machine: peak memory (Linux's VmHWM),
//! the load average, the CPU, the matmul peak measured with candle itself;
//! plus small statistics helpers and the overlay rendering it times.

use std::time::Instant;

use anyhow::Result;
use candle::{DType, Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// A field of /proc/self/status in bytes (`VmHWM`, `VmRSS`); `None` off Linux.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Peak resident memory of this process so far (VmHWM), bytes.
pub fn peak_rss() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

/// Resident memory now (VmRSS), bytes.
pub fn rss() -> Option<u64> {
    proc_status_bytes("VmRSS")
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// The 1-minute load average, so every recorded number says how busy the machine was.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The CPU's model name, from /proc/cpuinfo.
pub fn cpu_name() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// Median and 90th percentile (nearest rank) of some timings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub median: f64,
    pub p90: f64,
    pub min: f64,
}

/// Runs this executable again with `args` and returns what it printed;
/// an error, with its stderr, when it fails.
pub fn run_self(args: &[String]) -> Result<String> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find this executable to re-run it")?;
    let out = std::process::Command::new(&exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} exited with {}: {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn summarize(xs: &[f64]) -> Summary {
    if xs.is_empty() {
        return Summary::default();
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        0.5 * (v[v.len() / 2 - 1] + v[v.len() / 2])
    };
    Summary {
        median,
        p90: rank(0.9),
        min: v[0],
    }
}

/// The matmul peak this run measured: a 1024³ product, best of a few.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MatmulPeak {
    pub size: usize,
    pub best_ms: f64,
    pub median_ms: f64,
    /// 2·n³ / best time.
    pub gflops: f64,
}

/// Times an n×n by n×n matmul in `dtype` on `device` (warm-up, then `runs`).
pub fn matmul_peak(device: &Device, dtype: DType, n: usize, runs: usize) -> Result<MatmulPeak> {
    let a = Tensor::randn(0f32, 1f32, (n, n), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1f32, (n, n), device)?.to_dtype(dtype)?;
    a.matmul(&b)?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(c);
    }
    let s = summarize(&times);
    let flops = 2.0 * (n as f64).powi(3);
    Ok(MatmulPeak {
        size: n,
        best_ms: s.min,
        median_ms: s.median,
        gflops: flops / (s.min * 1e-3) / 1e9,
    })
}

/// Draws a patch-attention heatmap over an image: the `grid × grid` weights
/// are scaled to [0, 1], coloured with the inferno map, resized to the image
/// and alpha-blended onto it. This is the work the demo's overlay does per
/// prediction, timed as the "overlay" stage.
pub fn render_attention_overlay(
    img: &RgbImage,
    attention: &[f32],
    grid: usize,
) -> Result<RgbImage> {
    anyhow::ensure!(
        grid > 0 && attention.len() == grid * grid,
        "attention has {} weights, not {grid}×{grid}",
        attention.len()
    );
    let max = attention.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    let mut small = RgbImage::new(grid as u32, grid as u32);
    for (i, p) in small.pixels_mut().enumerate() {
        let c = colorous::INFERNO.eval_continuous((attention[i] / max).clamp(0.0, 1.0) as f64);
        *p = image::Rgb([c.r, c.g, c.b]);
    }
    let heat = image::imageops::resize(
        &small,
        img.width(),
        img.height(),
        image::imageops::FilterType::Triangle,
    );
    let mut out = img.clone();
    for (o, h) in out.pixels_mut().zip(heat.pixels()) {
        for c in 0..3 {
            o.0[c] = ((o.0[c] as u16 + h.0[c] as u16) / 2) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!((s.median, s.p90, s.min), (5.5, 9.0, 1.0));
        assert_eq!(summarize(&[2.0]).p90, 2.0);
    }

    #[test]
    fn overlay_keeps_the_image_size() {
        let img = RgbImage::new(40, 30);
        let out = render_attention_overlay(&img, &[0.1, 0.2, 0.3, 0.4], 2).unwrap();
        assert_eq!(out.dimensions(), (40, 30));
        assert!(render_attention_overlay(&img, &[0.1], 2).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_peak_memory() {
        assert!(peak_rss().unwrap() >= rss().unwrap() / 2);
    }
}
