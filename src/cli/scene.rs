//! `vla-demo scene`: its flags, and the library's [`ScenesToWrite`] they give.

use std::path::PathBuf;

use clap::Args;

use vla_demo::scene::write::ScenesToWrite;

#[derive(Args, Debug, Clone, PartialEq)]
pub struct SceneCli {
    /// Seed of the scene (with --count, of the first scene).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image side in pixels, 64..=1024.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Where to write the PNG; the ground-truth JSON goes beside it, same stem.
    #[arg(long, default_value = "scene.png", conflicts_with_all = ["count", "dir"])]
    out: PathBuf,
    /// Write this many scenes (1 to 100000), seeds seed..seed+count, as scene_<seed>.png and .json.
    #[arg(long)]
    count: Option<u64>,
    /// Directory for the scenes of --count (created if missing; default: current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl SceneCli {
    pub fn scenes(&self) -> ScenesToWrite {
        ScenesToWrite {
            seed: self.seed,
            size: self.size,
            out: self.out.clone(),
            count: self.count,
            dir: self.dir.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scene: SceneCli,
    }

    fn parse(args: &[&str]) -> Result<ScenesToWrite, clap::Error> {
        Cli::try_parse_from(std::iter::once("scene").chain(args.iter().copied()))
            .map(|c| c.scene.scenes())
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
}
