//! `vla-demo serve`: the attention explorer in a browser.
//!
//! One binary serves a page (HTML, JS and CSS embedded with `include_str!`,
//! nothing from a network) and the JSON API it uses (docs/SERVE.md):
//! `GET /api/health`, `GET /api/scene`, `POST /api/predict`. The page draws
//! every view on a canvas from the numbers one prediction returns, so
//! switching query, layer, head or method needs no new model run.
//!
//! The HTTP stack is axum on tokio: the async server most Rust services use,
//! with request-body limits, multipart and graceful shutdown built in. The
//! model is CPU-bound, so it never runs on the async threads: a bounded
//! [`pool::Pool`] hands each request to a blocking worker, and a full queue
//! answers `503` with `Retry-After` at once instead of holding memory.
//! Even a request hyper cannot parse gets a JSON refusal ([`listener`]).
//!
//! Security: the server binds 127.0.0.1 unless told otherwise (and warns
//! when it is told otherwise), serves only its embedded assets and the
//! embedded example scenes (looked up by name in a fixed table: no request
//! path reaches the file system), and keeps uploads in memory only.

pub mod api;
pub mod assets;
pub mod client;
pub mod error;
pub mod listener;
pub mod pool;
pub mod predict;
pub mod scenes;
pub mod views;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::pipeline::Pipeline;
use listener::JsonErrorListener;

/// How much the server accepts and how much work it holds at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Requests that run the model at the same time.
    pub workers: usize,
    /// Requests that may wait for a worker; more get `503`.
    pub queue: usize,
    /// Longest time one request may take, upload included.
    pub timeout: Duration,
    /// Largest request body (the upload and the form around it), bytes.
    pub max_upload_bytes: usize,
    /// Largest image, width × height.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            workers: 2,
            queue: 16,
            timeout: Duration::from_secs(30),
            // An upload of the CLI's size limits, held in memory: bounded
            // because each one first takes a queue slot.
            max_upload_bytes: 32 << 20,
            max_pixels: crate::limits::MAX_PIXELS,
        }
    }
}

/// What one `vla-demo serve` runs with.
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub limits: Limits,
}

/// The shared state every handler sees.
pub struct State {
    pub pipeline: Pipeline,
    pub pool: pool::Pool,
    pub limits: Limits,
}

/// A server running on its own threads; dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `cfg.addr` (port 0 picks a free port) and starts serving.
    /// A bind error is returned here, before anything runs.
    pub fn start(pipeline: Pipeline, cfg: &ServeConfig) -> Result<Server> {
        let listener = TcpListener::bind(cfg.addr)
            .with_context(|| format!("cannot listen on {}", cfg.addr))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            pipeline,
            pool: pool::Pool::new(&cfg.limits),
            limits: cfg.limits,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(cfg.limits.workers.max(1) + 4)
            .thread_name("serve")
            .enable_all()
            .build()
            .context("cannot start the server's runtime")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = api::router(state);
                    let _ = axum::serve(JsonErrorListener(listener), app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Server {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The warning printed when the server is reachable from other machines.
pub fn exposure_warning(host: IpAddr) -> Option<String> {
    (!host.is_loopback()).then(|| {
        format!(
            "listening on {host}, not loopback: anyone who can reach this machine can use the server (it has no authentication)"
        )
    })
}

/// `--host`: an IP address, or `localhost`.
pub fn parse_host(s: &str) -> Result<IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not an IP address (e.g. 127.0.0.1 or ::1)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_and_only_non_loopback_warns() {
        assert_eq!(parse_host("localhost"), Ok(IpAddr::from([127, 0, 0, 1])));
        assert!(parse_host("example.com").is_err());
        assert!(parse_host("1.2.3").is_err());
        assert!(exposure_warning(IpAddr::from([127, 0, 0, 1])).is_none());
        assert!(exposure_warning("::1".parse().unwrap()).is_none());
        assert!(exposure_warning(IpAddr::from([0, 0, 0, 0])).is_some());
    }
}
