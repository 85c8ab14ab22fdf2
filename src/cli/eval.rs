//! `vla-demo eval`: the flags, and the held-out scores or the faithfulness
//! of the maps, per split, as tables or JSON.

use anyhow::Result;
use clap::Args;

use vla_demo::{eval, limits, output, Pipeline};

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct EvalCli {
    #[command(flatten)]
    model: ModelArgs,
    /// How many held-out scenes, 1 to 1000000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_EVAL_SCENES))]
    scenes: u64,
    /// First scene seed (default: the split's own held-out range).
    #[arg(long)]
    seed: Option<u64>,
    /// iid, style, small, crowded, unseen-combo, counterfactual, absent, or all.
    #[arg(long, default_value = "iid")]
    split: String,
    /// Score the maps instead: pointing, mass, deletion and insertion per method (slow: about a second per command).
    #[arg(long)]
    faithfulness: bool,
    /// With --faithfulness, only these families (pick, place, push, relational; comma-separated).
    #[arg(long, requires = "faithfulness", value_delimiter = ',', value_parser = family)]
    family: Vec<vla_demo::scene::Family>,
    /// With --faithfulness, the deletion and insertion steps (comma-separated, 0 to 1024; default 0,1,2,4,8,16).
    #[arg(long, requires = "faithfulness", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(0..=1024))]
    ks: Vec<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write one JSON line per command to this file: the answer, the
    /// refusal probabilities, the `<boa>` weights and the patch head's readings.
    #[arg(long, value_name = "FILE", conflicts_with = "faithfulness")]
    per_command: Option<std::path::PathBuf>,
}

fn family(s: &str) -> Result<vla_demo::scene::Family, String> {
    use vla_demo::scene::Family;
    match s {
        "pick" => Ok(Family::Pick),
        "place" => Ok(Family::Place),
        "push" => Ok(Family::Push),
        "relational" => Ok(Family::Relational),
        _ => Err("use pick, place, push or relational".into()),
    }
}

pub fn run_eval(a: &EvalCli) -> Result<()> {
    if let Some(seed) = a.seed {
        anyhow::ensure!(
            seed >= vla_demo::scene::draw::EVAL_SEED_START,
            "--seed {seed} is inside the training range; held-out scenes start at {}",
            vla_demo::scene::draw::EVAL_SEED_START
        );
    }
    let splits = match a.split.as_str() {
        "all" => eval::Split::ALL.to_vec(),
        name => vec![eval::Split::parse(name)?],
    };
    for split in &splits {
        let seed = a.seed.unwrap_or(split.first_seed());
        anyhow::ensure!(
            seed.checked_add(a.scenes).is_some(),
            "--seed {seed} plus --scenes {} goes past the largest seed",
            a.scenes
        );
    }
    // A file that cannot be written fails now, not after the evaluation;
    // nor may it be one of the model's own files.
    let mut files = output::Staged::new();
    if let Some(path) = &a.per_command {
        output::check_not_inputs([path.as_path()], &model_files(&a.model))?;
        files.add(path, b"")?;
    }
    let p = Pipeline::load_as(&a.model.source(), &a.model.device, &a.model.dtype)?;
    if a.faithfulness {
        return run_faithfulness(a, &splits, &p);
    }
    let mut reports = Vec::new();
    let mut records = Vec::new();
    let mut text = String::new();
    for split in splits {
        let (scenes, bar) = scenes_and_bar(a, split);
        let keep = a.per_command.is_some().then_some(&mut records);
        let report =
            eval::evaluate_with(&p.model, &p.tokenizer, scenes, &p.device, Some(&bar), keep)?;
        bar.finish_and_clear();
        text += &format!(
            "split {}: {} held-out scenes from seed {} ({})\n\n{}\n",
            report.split,
            a.scenes,
            report.first_seed,
            p.origin,
            report.table()
        );
        reports.push(report);
    }
    if let Some(path) = &a.per_command {
        files = output::Staged::new();
        files.add(path, eval::per_command::to_jsonl(&records)?.as_bytes())?;
    }
    if a.json {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(&reports)?
        };
        output::print_and_commit(&format!("{json}\n"), files)
    } else {
        if reports.len() > 1 {
            text += &eval::bar_table(&reports);
        }
        output::print_and_commit(&text, files)
    }
}

/// The checkpoint files `--model-dir` reads (none for the embedded model or
/// a hub id).
fn model_files(m: &ModelArgs) -> Vec<std::path::PathBuf> {
    use vla_demo::checkpoint::{CONFIG, TOKENIZER, WEIGHTS};
    match &m.model_dir {
        Some(dir) => [CONFIG, TOKENIZER, WEIGHTS]
            .iter()
            .map(|f| dir.join(f))
            .collect(),
        None => Vec::new(),
    }
}

/// The scenes of `split` the flags ask for, and a progress bar (hidden
/// under `--json`).
fn scenes_and_bar(a: &EvalCli, split: eval::Split) -> (eval::Scenes, indicatif::ProgressBar) {
    let bar = if a.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(a.scenes)
    };
    let scenes = eval::Scenes {
        split,
        first_seed: a.seed,
        count: a.scenes,
    };
    (scenes, bar)
}

fn run_faithfulness(a: &EvalCli, splits: &[eval::Split], p: &Pipeline) -> Result<()> {
    let mut settings = vla_demo::faithfulness::Settings::eval(a.seed.unwrap_or(0));
    if !a.ks.is_empty() {
        settings.ks = a.ks.iter().map(|&k| k as usize).collect();
        settings.ks.sort_unstable();
        settings.ks.dedup();
    }
    let mut reports = Vec::new();
    let mut text = String::new();
    for &split in splits {
        let (scenes, bar) = scenes_and_bar(a, split);
        let report = eval::faithfulness::evaluate(
            &p.model,
            &p.tokenizer,
            scenes,
            &a.family,
            &settings,
            &p.device,
            Some(&bar),
        )?;
        bar.finish_and_clear();
        text += &format!(
            "split {}: faithfulness of the maps, {} held-out scenes from seed {} ({}); k = {:?}, {} random orders\n\n{}\n",
            report.split,
            a.scenes,
            report.first_seed,
            p.origin,
            report.ks,
            report.random_draws,
            report.table()
        );
        reports.push(report);
    }
    if a.json {
        output::print(&format!("{}\n", serde_json::to_string_pretty(&reports)?))
    } else {
        output::print(&text)
    }
}
