//! `vla-demo explain`: one greedy prediction with every attention map, the
//! three steps of attention, and the interventions that test the maps.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{check_command, has_ext, same_file, ModelSpec};
use crate::explain::Explanation;
use crate::faithfulness::report::{Probed, Truth};
use crate::faithfulness::{self, Case, Settings};
use crate::model::vla::Decoding;
use crate::pipeline::Pipeline;
use crate::{explain, grounding, preprocess, report};

/// `vla-demo explain`: greedy prediction with every map, then the three
/// steps, then the interventions (`faithfulness.rs`): the one-line verdict,
/// or every curve with `faithfulness`. Returns the explanation, the
/// interventions and any warnings.
pub fn explain(
    image: &Path,
    cmd: &str,
    head: Option<usize>,
    top: usize,
    probe: &ProbeSpec,
    model: &ModelSpec,
) -> Result<(Explanation, Probed, Vec<String>)> {
    check_command(cmd)?;
    if let Some(plot) = &probe.plot {
        if !has_ext(plot, "png") {
            bail!("--plot {} must end in .png", plot.display());
        }
        if same_file(plot, image) || same_file(plot, &image.with_extension("json")) {
            bail!(
                "refusing to overwrite {} (an input) with the plot",
                plot.display()
            );
        }
    }
    let img = preprocess::load_image(image)?;
    let p = Pipeline::load_as(&model.source, &model.device, &model.dtype)?;
    let cfg = p.config().clone();
    let pred = p
        .predict(
            std::slice::from_ref(&img),
            &[cmd],
            &Decoding::default(),
            true,
        )?
        .remove(0);
    let mut warnings = report::unknown_warning(&pred.command.unknown_words)
        .into_iter()
        .collect::<Vec<_>>();
    let (scene, warning) = grounding::load_beside(image, &pred.frame, cfg.grid());
    warnings.extend(warning);
    let truth = scene.as_ref().and_then(|s| {
        let target = grounding::find_target(s, cmd)?;
        let coverage = s
            .objects
            .iter()
            .find(|o| o.id == target.id)?
            .coverage
            .clone();
        let layout = &s.layout;
        Some(Truth {
            coverage,
            inside: Box::new(move |x, y| {
                layout
                    .objects
                    .iter()
                    .any(|o| o.id == target.id && o.contains(x, y))
            }),
        })
    });
    let (inputs, _) = p.prepare_encoded(
        std::slice::from_ref(&img),
        std::slice::from_ref(&pred.command),
    )?;
    let case = Case::from_inputs(&inputs)?;
    let settings = if probe.full {
        Settings::full(cfg.num_patches(), probe.seed)
    } else {
        faithfulness::report::verdict_settings(probe.seed)
    };
    let probed = faithfulness::report::probe(&p.model, &case, truth.as_ref(), &settings)?;
    drop(truth);
    let objects = scene.map(|s| s.objects).unwrap_or_default();
    Ok((
        explain::explain(&pred, &cfg, cmd, &objects, head, top)?,
        probed,
        warnings,
    ))
}

/// What `explain` runs beyond the three steps.
#[derive(Debug, Clone, Default)]
pub struct ProbeSpec {
    /// Every curve (k = 0, 1, 2, 4, …; delete, knockout, insert), not only
    /// the verdict.
    pub full: bool,
    /// The curves as a PNG, with `full`.
    pub plot: Option<PathBuf>,
    /// Seed of the random orders.
    pub seed: u64,
}
