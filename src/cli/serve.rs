//! `vla-demo serve`: its flags, checked, and the run.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use vla_demo::serve::{self, Limits, ServeConfig, Server};
use vla_demo::{output, Pipeline};

use super::ModelArgs;

/// Longest per-request time limit a flag may set, seconds.
const MAX_TIMEOUT_S: u64 = 3600;

#[derive(Args, Debug)]
pub struct ServeCli {
    /// Address to listen on; anything but loopback is reachable from other machines.
    #[arg(long, default_value = "127.0.0.1", value_parser = serve::parse_host)]
    host: IpAddr,
    /// Port, 0 to 65535 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    #[command(flatten)]
    model: ModelArgs,
    /// Requests that run the model at once, 1 to 64.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: u64,
    /// Requests that may wait for a worker, 0 to 1024; more get 503.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(0..=1024))]
    queue: u64,
    /// Per-request time limit in seconds, 1 to 3600.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_S))]
    timeout: u64,
    /// Largest upload in MiB, 1 to 256 (the CLI's image file limit).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=(vla_demo::limits::MAX_IMAGE_FILE_BYTES >> 20)))]
    max_upload_mib: u64,
}

pub fn run(a: &ServeCli) -> Result<()> {
    let limits = Limits {
        workers: a.workers as usize,
        queue: a.queue as usize,
        timeout: Duration::from_secs(a.timeout),
        max_upload_bytes: (a.max_upload_mib << 20) as usize,
        ..Limits::default()
    };
    let cfg = ServeConfig {
        addr: SocketAddr::new(a.host, a.port),
        limits,
    };
    let pipeline = Pipeline::load_as(&a.model.source(), &a.model.device, &a.model.dtype)?;
    let origin = pipeline.origin.clone();
    let server = Server::start(pipeline, &cfg)?;
    if let Some(w) = serve::exposure_warning(a.host) {
        output::eprint_line(&format!("warning: {w}"));
    }
    output::print(&format!(
        "vla-demo serve: {} ({origin}); {} workers, queue {}; Ctrl-C stops\n",
        server.url(),
        limits.workers,
        limits.queue
    ))?;
    server.wait();
    Ok(())
}
