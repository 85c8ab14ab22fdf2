//! `vla-demo bench --serve-load`: the server under load. It starts `serve`
//! in this process on an ephemeral loopback port (default limits), then
//! `--clients` threads each send `POST /api/predict` (the red-cup example
//! scene, one command) one after another for `--seconds`, and it reports
//! the latency percentiles, throughput and every answer that was not a 200.
//! Clients and time are bounded, so the check always ends.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde::Serialize;

use crate::checkpoint::Source;
use crate::pipeline::Pipeline;
use crate::serve::{client, Limits, ServeConfig, Server};

/// `--clients`: 1 to this.
pub const MAX_CLIENTS: usize = 64;
/// `--seconds`: 1 to this.
pub const MAX_SECONDS: u64 = 600;

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub clients: usize,
    pub seconds: f64,
    pub workers: usize,
    pub queue: usize,
    pub requests: usize,
    pub ok: usize,
    /// Answers that were not 200, and requests that got no answer.
    pub errors: usize,
    /// Of the errors, `503 Service Unavailable` (the queue was full).
    pub busy: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub requests_per_s: f64,
}

impl LoadReport {
    pub fn text(&self) -> String {
        format!(
            "serve load: {} clients for {:.0} s on loopback ({} workers, queue {})\n\
             requests {} · ok {} · errors {} (503 busy: {}) · {:.1} requests/s\n\
             latency p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms\n",
            self.clients,
            self.seconds,
            self.workers,
            self.queue,
            self.requests,
            self.ok,
            self.errors,
            self.busy,
            self.requests_per_s,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the load check against a fresh in-process server.
pub fn run(source: &Source, device: &str, clients: usize, seconds: u64) -> Result<LoadReport> {
    ensure!(
        (1..=MAX_CLIENTS).contains(&clients),
        "--clients {clients} is outside 1 to {MAX_CLIENTS}"
    );
    ensure!(
        (1..=MAX_SECONDS).contains(&seconds),
        "--seconds {seconds} is outside 1 to {MAX_SECONDS}"
    );
    let limits = Limits::default();
    let cfg = ServeConfig {
        addr: ([127, 0, 0, 1], 0).into(),
        limits,
    };
    let server = Server::start(Pipeline::load(source, device)?, &cfg)?;
    let addr = server.addr();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(seconds);
    let timeout = limits.timeout + Duration::from_secs(5);
    // Per client: (latency ms, status or 0 for no answer) of every request.
    let results: Vec<Vec<(f64, u16)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    while Instant::now() < end {
                        let t = Instant::now();
                        let fields = [("cmd", "pick up the red cup"), ("scene", "red_cup")];
                        let status = client::post_form(addr, "/api/predict", &fields, &[], timeout)
                            .map_or(0, |a| a.status);
                        out.push((t.elapsed().as_secs_f64() * 1e3, status));
                        if status == 503 {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let all: Vec<(f64, u16)> = results.into_iter().flatten().collect();
    let mut ok_ms: Vec<f64> = all.iter().filter(|r| r.1 == 200).map(|r| r.0).collect();
    ok_ms.sort_by(f64::total_cmp);
    Ok(LoadReport {
        clients,
        seconds: elapsed,
        workers: limits.workers,
        queue: limits.queue,
        requests: all.len(),
        ok: ok_ms.len(),
        errors: all.len() - ok_ms.len(),
        busy: all.iter().filter(|r| r.1 == 503).count(),
        p50_ms: quantile(&ok_ms, 0.5),
        p99_ms: quantile(&ok_ms, 0.99),
        max_ms: ok_ms.last().copied().unwrap_or(0.0),
        requests_per_s: all.len() as f64 / elapsed.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
