//! `vla-demo scene`: render scenes and their ground truth from the command line.
//!
//! ```text
//! vla-demo scene --seed 7 --out scene.png          # scene.png + scene.json
//! vla-demo scene --count 100 --seed 0 --dir out/   # out/scene_0.png ... scene_99.json
//! ```

use super::files::{json_path, stage_scene};
use super::layout::Layout;
use super::render::check_size;
use crate::limits::MAX_SCENE_COUNT;
use crate::output::{forget, print_and_commit, remove_on_interrupt, ClosedStdout, Staged};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct SceneArgs {
    /// Seed of the scene (with --count, of the first scene).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels, 64..=1024.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Where to write the PNG; the ground-truth JSON goes beside it, same stem.
    #[arg(long, default_value = "scene.png", conflicts_with_all = ["count", "dir"])]
    pub out: PathBuf,
    /// Write this many scenes (1 to 100000), seeds seed..seed+count, as scene_<seed>.png and .json.
    #[arg(long)]
    pub count: Option<u64>,
    /// Directory for the scenes of --count (created if missing; default: current directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Write one scene to `--out`, or `--count` scenes into `--dir`: every
/// file appears, or none.
pub fn run(args: &SceneArgs) -> Result<()> {
    check_size(args.size).context("invalid --size")?;
    let mut files = Staged::new();
    if args.count.is_none() && args.dir.is_none() {
        stage_scene(
            &Layout::generate(args.seed),
            args.size,
            &args.out,
            &mut files,
        )?;
        return print_and_commit(
            &format!(
                "wrote {} and {}\n",
                args.out.display(),
                json_path(&args.out).display()
            ),
            files,
        );
    }
    let count = args.count.unwrap_or(1);
    if count == 0 {
        bail!("--count 0 writes nothing: give at least 1");
    }
    if count > MAX_SCENE_COUNT {
        bail!("--count {count} is over the limit of {MAX_SCENE_COUNT} scenes");
    }
    let end = args.seed.checked_add(count).with_context(|| {
        format!(
            "--seed {} plus --count {count} goes past the largest seed",
            args.seed
        )
    })?;
    let dir = args.dir.as_deref().unwrap_or(Path::new("."));
    let created = create_dir(dir)?;
    let result = (|| {
        for seed in args.seed..end {
            stage_scene(
                &Layout::generate(seed),
                args.size,
                &dir.join(format!("scene_{seed}.png")),
                &mut files,
            )?;
        }
        print_and_commit(
            &format!(
                "wrote {count} scenes (seeds {}..{end}, PNG + JSON) to {}\n",
                args.seed,
                dir.display()
            ),
            files,
        )
    })();
    if let Some(d) = created {
        forget(&d);
        if result.is_err() && !result.as_ref().is_err_and(|e| e.is::<ClosedStdout>()) {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
    result
}

/// Creates the output directory and its missing parents. Returns the top
/// directory this call created, if any, which is removed again if the run
/// fails or is interrupted.
fn create_dir(dir: &Path) -> Result<Option<PathBuf>> {
    let mut top = None;
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        top = Some(d.to_path_buf());
        p = d.parent();
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    if let Some(t) = &top {
        remove_on_interrupt(t);
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scene: SceneArgs,
    }

    fn parse(args: &[&str]) -> Result<SceneArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("scene").chain(args.iter().copied())).map(|c| c.scene)
    }

    #[test]
    fn arguments_parse_with_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            (a.seed, a.size, a.out.to_str(), a.count),
            (0, 224, Some("scene.png"), None)
        );
        let a = parse(&["--count", "3", "--seed", "5", "--dir", "out"]).unwrap();
        assert_eq!(
            (a.seed, a.count, a.dir),
            (5, Some(3), Some(PathBuf::from("out")))
        );
        assert!(parse(&["--out", "a.png", "--count", "3"]).is_err());
    }

    #[test]
    fn bad_arguments_get_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = parse(&["--size", "63"]).unwrap();
        a.out = dir.path().join("x.png");
        let err = format!("{:#}", run(&a).unwrap_err());
        assert!(err.contains("--size") && err.contains("63"), "{err}");
        a.size = 64;
        a.count = Some(0);
        assert!(format!("{:#}", run(&a).unwrap_err()).contains("--count"));
        a.count = Some(2);
        a.dir = Some(dir.path().join("many"));
        run(&a).unwrap();
        assert!(dir.path().join("many/scene_1.json").exists());
    }
}
