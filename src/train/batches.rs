//! The data of a training step: scenes, commands and their batches, a fixed
//! function of (seed, step), so a resumed run sees what it would have seen.

use anyhow::Result;
use candle::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::TrainConfig;
use crate::data::{self, Example};
use crate::scene::draw::draw_commands_with;
use crate::scene::Layout;
use crate::tokens::CommandTokenizer;

/// Builds the batch of step `step`: a fixed function of (seed, step).
pub fn batch_for_step(
    cfg: &TrainConfig,
    tok: &CommandTokenizer,
    step: usize,
    device: &Device,
) -> Result<data::Batch> {
    Ok(shards_for_step(cfg, tok, step, 1, device)?.remove(0))
}

/// The scenes of step `step`: each one's seed and world. The same
/// generator then draws the step's commands.
fn plan(cfg: &TrainConfig, step: usize) -> (Vec<(u64, data::World)>, ChaCha8Rng) {
    let mut rng =
        ChaCha8Rng::seed_from_u64(cfg.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let random_share = cfg.random_share_at(step).min(1.0);
    let scenes = (0..cfg.scenes_per_step)
        .map(|s| {
            let seed = data::train_seed((step * cfg.scenes_per_step + s) as u64, cfg.train_seeds);
            let world = if random_share > 0.0 && rng.random_bool(random_share) {
                data::World::Random
            } else {
                data::World::Plain
            };
            (seed, world)
        })
        .collect();
    (scenes, rng)
}

/// The worlds the scenes of step `step` are drawn from (for tests of the
/// curriculum).
pub fn worlds_for_step(cfg: &TrainConfig, step: usize) -> Vec<data::World> {
    plan(cfg, step).0.into_iter().map(|(_, w)| w).collect()
}

/// How often each colour × shape label ([`crate::grid::patch_label`])
/// appears among the objects of the training stream: every scene of
/// `samples` steps spread evenly over the run, their objects generated but
/// not painted. Rows are colours, columns shapes; what training never
/// draws (held-out pairs) counts 0.
pub fn pair_counts(cfg: &TrainConfig, samples: usize) -> Vec<Vec<u64>> {
    use crate::grid::{patch_label, PATCH_COLORS, PATCH_SHAPES};
    let exclude = cfg.held_out();
    let stride = (cfg.steps / samples.max(1)).max(1);
    let mut counts = vec![vec![0u64; PATCH_SHAPES]; PATCH_COLORS];
    for step in (0..cfg.steps).step_by(stride).take(samples) {
        for (seed, world) in plan(cfg, step).0 {
            for obj in data::scene_objects(seed, world, &exclude, cfg.random_extras) {
                let [c, s] = patch_label(&obj);
                counts[c as usize][s as usize] += 1;
            }
        }
    }
    counts
}

/// The scenes and examples of step `step`: a fixed function of (seed, step).
/// Each scene comes with its layout, so tests can read what training saw.
pub fn scenes_for_step(cfg: &TrainConfig, step: usize) -> Result<(Vec<data::Drawn>, Vec<Example>)> {
    let model = &cfg.model;
    let exclude = cfg.held_out();
    let (scenes, mut rng) = plan(cfg, step);
    // Pictures are drawn in parallel; they depend on their seed alone.
    let drawn: Vec<data::Drawn> = scenes
        .par_iter()
        .map(|&(seed, world)| data::draw_scene(seed, world, &exclude, cfg.random_extras, model))
        .collect::<Result<_>>()?;
    let mut examples = Vec::new();
    for (i, d) in drawn.iter().enumerate() {
        let mut commands = draw_commands_with(
            &d.layout,
            cfg.commands_per_scene,
            cfg.relational_share,
            cfg.next_to_boost_en,
            &mut rng,
        );
        data::mix_refusals(
            &d.layout,
            &mut commands,
            cfg.refusal_mix(),
            &exclude,
            &mut rng,
        );
        for command in commands {
            examples.push(Example::new(i, command, &d.layout, model.grid())?);
        }
    }
    Ok((drawn, examples))
}

/// The batch of step `step`, split by scene into `shards` batches.
pub fn shards_for_step(
    cfg: &TrainConfig,
    tok: &CommandTokenizer,
    step: usize,
    shards: usize,
    device: &Device,
) -> Result<Vec<data::Batch>> {
    let (drawn, examples) = scenes_for_step(cfg, step)?;
    shards_of(cfg, tok, drawn, examples, shards, device)
}

/// Scenes and examples as `shards` batches, split by scene.
pub fn shards_of(
    cfg: &TrainConfig,
    tok: &CommandTokenizer,
    drawn: Vec<data::Drawn>,
    examples: Vec<Example>,
    shards: usize,
    device: &Device,
) -> Result<Vec<data::Batch>> {
    let model = &cfg.model;
    let (images, layouts): (Vec<image::RgbImage>, Vec<Layout>) =
        drawn.into_iter().map(|d| (d.view, d.layout)).unzip();
    let per = images.len().div_ceil(shards.max(1)).max(1);
    let mut out = Vec::new();
    for (k, (chunk, scenes)) in images.chunks(per).zip(layouts.chunks(per)).enumerate() {
        let first = k * per;
        let refs: Vec<&image::RgbImage> = chunk.iter().collect();
        let mine: Vec<Example> = examples
            .iter()
            .filter(|e| e.image >= first && e.image < first + chunk.len())
            .map(|e| Example {
                image: e.image - first,
                ..e.clone()
            })
            .collect();
        let batch = data::make_batch(
            &refs,
            &mine,
            tok,
            model,
            cfg.bin_sigma,
            cfg.grounded,
            device,
        )?;
        out.push(if cfg.patch_label_weight > 0.0 {
            let scenes: Vec<&Layout> = scenes.iter().collect();
            batch.with_patch_labels(&scenes, model.grid())?
        } else {
            batch
        });
    }
    Ok(out)
}
