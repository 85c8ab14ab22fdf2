//! `vla-demo bench`: its flags, and the library's [`BenchArgs`] they give.

use std::path::PathBuf;

use clap::Args;

use vla_demo::bench::BenchArgs;

#[derive(Args, Debug, Clone)]
pub struct BenchCli {
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// f32, f16 or bf16 (the last two need a GPU).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Batch sizes, comma separated: (image, command) pairs per call, each 1 to 256.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batch: Vec<usize>,
    /// Timed runs per batch size, after the warm-up, 1 to 10000.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Untimed warm-up runs per batch size, 0 to 10000.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// A checkpoint directory; the embedded model when left out.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Also time the attention paths and score functions from 196 to 4096 patches.
    #[arg(long)]
    attention_sweep: bool,
    /// Sequence lengths of the attention sweep, comma separated, each 1 to 4096.
    #[arg(long, value_delimiter = ',', default_value = "196,576,1024,2304,4096")]
    sweep_lens: Vec<usize>,
    /// Measure everything in this process: sweep memory instead of one child
    /// process per point, and training steps (after inference) without
    /// training's thread setting.
    #[arg(long)]
    in_process: bool,
    /// Also time N training steps (batch of the shipped training preset), 0 to 1000.
    #[arg(long, default_value_t = 0)]
    train_steps: usize,
    /// Also time N cold starts: `vla-demo --image .. --cmd ..` as fresh processes, 0 to 1000.
    #[arg(long, default_value_t = 0)]
    cold_start: usize,
    /// Skip the inference benchmark (for a sweep or training timing alone).
    #[arg(long)]
    skip_inference: bool,
    /// Write the inputs and logits benches/torch_peer.py checks against into DIR (an existing directory).
    #[arg(long, value_name = "DIR")]
    export_reference: Option<PathBuf>,
    /// Instead of the benchmark: load-check `serve` on loopback (--clients, --seconds).
    #[arg(long)]
    serve_load: bool,
    /// --serve-load: concurrent clients, 1 to 64.
    #[arg(long, default_value_t = 8, requires = "serve_load")]
    clients: usize,
    /// --serve-load: how long, in seconds, 1 to 600.
    #[arg(long, default_value_t = 10, requires = "serve_load")]
    seconds: u64,
    /// Internal: run one attention sweep point (JSON) and print its result.
    #[arg(long, hide = true)]
    sweep_point: Option<String>,
}

impl BenchCli {
    pub fn args(&self) -> BenchArgs {
        BenchArgs {
            device: self.device.clone(),
            dtype: self.dtype.clone(),
            batch: self.batch.clone(),
            runs: self.runs,
            warmup: self.warmup,
            json: self.json,
            model_dir: self.model_dir.clone(),
            attention_sweep: self.attention_sweep,
            sweep_lens: self.sweep_lens.clone(),
            in_process: self.in_process,
            train_steps: self.train_steps,
            cold_start: self.cold_start,
            skip_inference: self.skip_inference,
            export_reference: self.export_reference.clone(),
            serve_load: self.serve_load,
            clients: self.clients,
            seconds: self.seconds,
            sweep_point: self.sweep_point.clone(),
        }
    }
}
