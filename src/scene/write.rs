//! `vla-demo scene`: render scenes and write them with their ground truth,
//! one to a named file or many into a directory (the flags are in the
//! binary's `src/cli/scene.rs`).
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

/// Which scenes to write, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenesToWrite {
    /// Seed of the scene (with `count`, of the first scene).
    pub seed: u64,
    /// Image side in pixels, 64..=1024.
    pub size: u32,
    /// Where to write the PNG; the ground-truth JSON goes beside it, same stem.
    pub out: PathBuf,
    /// Write this many scenes, seeds seed..seed+count, as scene_<seed>.png and .json.
    pub count: Option<u64>,
    /// Directory for the scenes of `count` (default: the current directory).
    pub dir: Option<PathBuf>,
}

/// Write one scene to `--out`, or `--count` scenes into `--dir`: every
/// file appears, or none.
pub fn run(args: &ScenesToWrite) -> Result<()> {
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

    #[test]
    fn bad_arguments_get_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = ScenesToWrite {
            seed: 0,
            size: 63,
            out: dir.path().join("x.png"),
            count: None,
            dir: None,
        };
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
