//! `vla-demo bench --cold-start N`: process start to printed action, the way
//! a learner first meets the tool. Writes one held-out scene as a PNG, then
//! runs `vla-demo --image scene.png --cmd "..."` N times as a fresh process
//! (loading the checkpoint, embedded by default, each time) and times each
//! run from spawn to exit. The binary is this executable, or `$VLA_DEMO_BIN`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::sys::{self, Summary};

#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    pub runs: usize,
    pub binary: String,
    pub command: String,
    /// Spawn to exit, ms.
    pub ms: Summary,
    /// Issue 6's target: ≤ 150 ms.
    pub target_met: bool,
}

/// The binary to time: `$VLA_DEMO_BIN`, else this executable.
pub fn binary() -> Result<PathBuf> {
    match std::env::var_os("VLA_DEMO_BIN") {
        Some(p) => Ok(PathBuf::from(p)),
        None => {
            std::env::current_exe().context("cannot find this executable to time its cold start")
        }
    }
}

/// Times `runs` fresh processes predicting one action for `image` and `command`.
pub fn cold_start(
    image: &Path,
    command: &str,
    model_dir: Option<&Path>,
    device: &str,
    runs: usize,
) -> Result<ColdStart> {
    let bin = binary()?;
    let mut args: Vec<String> = vec![
        "--image".into(),
        image.display().to_string(),
        "--cmd".into(),
        command.into(),
    ];
    if let Some(dir) = model_dir {
        args.extend(["--model-dir".into(), dir.display().to_string()]);
    }
    args.extend(["--device".into(), device.into()]);
    let mut times = Vec::with_capacity(runs);
    // One untimed run fills the page cache, as a learner's second try would find it.
    for i in 0..runs + 1 {
        let t = Instant::now();
        let out = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() || out.stdout.is_empty() {
            anyhow::bail!(
                "{} {} printed no action ({}): {}; set VLA_DEMO_BIN to the vla-demo binary",
                bin.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if i > 0 {
            times.push(ms);
        }
    }
    let ms = sys::summarize(&times);
    Ok(ColdStart {
        runs,
        binary: bin.display().to_string(),
        command: format!("{} {}", bin.display(), args.join(" ")),
        ms,
        target_met: ms.median <= 150.0,
    })
}
