//! `vla-demo explain`: the flags, and the printout or JSON of the three
//! attention steps and the interventions.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use vla_demo::{demo, limits, output};

use super::{warn, ModelArgs};

#[derive(Args, Debug)]
pub struct ExplainCli {
    #[arg(long)]
    image: PathBuf,
    #[arg(long)]
    cmd: String,
    #[command(flatten)]
    model: ModelArgs,
    /// Follow this head (1-based, up to the model's heads) instead of the one with the sharpest peak.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=limits::config::MAX_HEADS as u64))]
    head: Option<u64>,
    /// How many patches each step lists, 1 to 1000.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_EXPLAIN_TOP))]
    top: u64,
    /// Print the explanation as JSON.
    #[arg(long)]
    json: bool,
    /// Every deletion, knockout and insertion curve (k = 0, 1, 2, 4, …), not only the verdict.
    #[arg(long)]
    faithfulness: bool,
    /// Draw the curves into this PNG.
    #[arg(long, requires = "faithfulness")]
    plot: Option<PathBuf>,
    /// Seed of the random patch orders the maps are compared with.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run_explain(a: &ExplainCli) -> Result<()> {
    let head = a.head.map(|h| h as usize);
    let probe = demo::ProbeSpec {
        full: a.faithfulness,
        plot: a.plot.clone(),
        seed: a.seed,
    };
    let (e, probed, warnings) = demo::explain(
        &a.image,
        &a.cmd,
        head,
        a.top as usize,
        &probe,
        &a.model.spec(),
    )?;
    warn(&warnings);
    let mut files = output::Staged::new();
    if let Some(path) = &a.plot {
        let title = format!("\"{}\": deleting, knocking out, inserting patches", a.cmd);
        let img = vla_demo::faithfulness::plot::draw(&probed.curves, &title)?;
        files.add(path, &vla_demo::overlay::png_bytes(&img)?)?;
    }
    let text = if a.json {
        let mut v = serde_json::to_value(&e)?;
        v["faithfulness"] = serde_json::to_value(&probed)?;
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        format!("{}{}", e.text(), probed.text())
    };
    output::print_and_commit(&text, files)
}
