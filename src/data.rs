//! Training and evaluation examples, made on the fly from the scene world.
//!
//! A scene seed gives a layout; the layout gives an image and commands; each
//! command gives its expected action tokens. Several commands share one image,
//! so one pass of the vision encoder serves all of them.
//!
//! Seeds below [`crate::scene::draw::EVAL_SEED_START`] are for training;
//! evaluation and the committed example scenes use seeds at or above it, so
//! no evaluation scene is ever trained on. Commands are drawn by
//! [`crate::scene::draw`]; the model's batches are made from the examples
//! in [`batch`].

mod batch;

pub use batch::{make_batch, soft_target, Batch, Grounded};

use anyhow::{bail, Result};
use rand::Rng;

use crate::action::Outcome;
use crate::grid::target_patches;
use crate::model::Config;
use crate::scene::camera::view_of;
use crate::scene::random::{Extras, RandomScene, RandomSpec};
use crate::scene::{
    minimal_reference, sample_command, sample_hard_negative, sample_refusal, Color, Command,
    Family, Lang, Layout, LayoutSpec, Object, Reference, Shape,
};

/// The training scene for the `i`-th draw: a fixed permutation of the seed
/// range (7919 is prime, so the stride visits every seed before repeating).
pub fn train_seed(i: u64, range: [u64; 2]) -> u64 {
    let len = (range[1] - range[0]).max(1);
    range[0] + (i.wrapping_mul(7919) % len)
}

/// Which world a scene is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// Today's look: one renderer, square pictures at the model's size.
    Plain,
    /// The randomised world of [`crate::scene::random`].
    Random,
}

/// A scene as the model sees it: its view (letterboxed to the model's size)
/// and its layout in view coordinates, so commands, actions and target
/// patches made from the layout are those of the picture.
pub struct Drawn {
    pub view: image::RgbImage,
    pub layout: Layout,
}

/// Draws scene `seed` from `world`, with `exclude` never shown, and the
/// randomised world's `extras` switched on.
pub fn draw_scene(
    seed: u64,
    world: World,
    exclude: &[(Color, Shape)],
    extras: Extras,
    cfg: &Config,
) -> Result<Drawn> {
    match world {
        World::Plain => {
            let layout = Layout::generate_with(seed, &plain_spec(exclude));
            Ok(Drawn {
                view: layout.render(cfg.image_size as u32)?,
                layout,
            })
        }
        World::Random => {
            let scene = RandomScene::generate(seed, &random_spec(exclude, extras));
            let viewed = view_of(scene.render()?, &scene.camera, &scene.layout, cfg);
            Ok(Drawn {
                view: viewed.view,
                layout: viewed.layout,
            })
        }
    }
}

/// The objects of scene `seed` in `world`, as [`draw_scene`] would draw
/// them, without painting the picture (in the scene's own coordinates).
pub fn scene_objects(
    seed: u64,
    world: World,
    exclude: &[(Color, Shape)],
    extras: Extras,
) -> Vec<Object> {
    match world {
        World::Plain => Layout::generate_with(seed, &plain_spec(exclude)).objects,
        World::Random => {
            RandomScene::generate(seed, &random_spec(exclude, extras))
                .layout
                .objects
        }
    }
}

fn plain_spec(exclude: &[(Color, Shape)]) -> LayoutSpec {
    LayoutSpec {
        exclude: exclude.to_vec(),
        ..LayoutSpec::default()
    }
}

fn random_spec(exclude: &[(Color, Shape)], extras: Extras) -> RandomSpec {
    let mut spec = RandomSpec {
        extras,
        ..RandomSpec::default()
    };
    spec.layout.exclude = exclude.to_vec();
    spec
}

/// How commands to refuse are mixed into a training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefusalMix {
    /// Share of commands replaced by ones to refuse.
    pub share: f64,
    /// Share of those that are ambiguous; the rest name an absent object.
    pub ambiguous: f64,
    /// Share of the absent ones that are hard negatives (see
    /// [`crate::scene::sample_hard_negative`]) where the scene allows one.
    pub hard_negative: f64,
}

/// Replaces each command, with probability `mix.share`, by one the model
/// should refuse where the scene allows one, in the same language. Names in
/// `exclude` are never used.
pub fn mix_refusals(
    layout: &Layout,
    commands: &mut [Command],
    mix: RefusalMix,
    exclude: &[(Color, Shape)],
    rng: &mut impl Rng,
) {
    if mix.share <= 0.0 {
        return;
    }
    for c in commands.iter_mut() {
        if !rng.random_bool(mix.share.min(1.0)) {
            continue;
        }
        // Drawn as "absent?" first, so the default mix (0.25 ambiguous, no hard
        // negatives) takes the random stream of earlier runs, and `--resume` holds.
        let refusal = if !rng.random_bool(1.0 - mix.ambiguous) {
            sample_refusal(layout, Outcome::Ambiguous, c.lang, exclude, rng)
        } else if mix.hard_negative > 0.0 && rng.random_bool(mix.hard_negative) {
            sample_hard_negative(layout, c.lang, exclude, rng)
                .or_else(|| sample_refusal(layout, Outcome::Absent, c.lang, exclude, rng))
        } else {
            sample_refusal(layout, Outcome::Absent, c.lang, exclude, rng)
        };
        if let Some(r) = refusal {
            *c = r;
        }
    }
}

/// The target patches of a command's first action: the target object's, or
/// none for a refusal.
pub fn command_target(layout: &Layout, cmd: &Command, grid: usize) -> Result<Vec<f32>> {
    if !cmd.action.outcome.is_act() {
        return Ok(vec![0.0; grid * grid]);
    }
    Ok(target_patches(&first_target(layout, cmd)?, grid))
}

/// The patches of the object the second waypoint goes to: the bowl of a
/// place command; empty for every other command (a push ends on the
/// table, a pick has one waypoint).
pub fn destination_patches(layout: &Layout, cmd: &Command, grid: usize) -> Result<Vec<f32>> {
    object_patches(layout, cmd, cmd.destination, "places on", grid)
}

/// The patches of a relational command's landmark; empty for every other
/// command.
pub fn landmark_patches(layout: &Layout, cmd: &Command, grid: usize) -> Result<Vec<f32>> {
    object_patches(layout, cmd, cmd.landmark, "has the landmark", grid)
}

/// The patches of object `id` of an acting command, or none.
fn object_patches(
    layout: &Layout,
    cmd: &Command,
    id: Option<usize>,
    role: &str,
    grid: usize,
) -> Result<Vec<f32>> {
    let Some(id) = id.filter(|_| cmd.action.outcome.is_act()) else {
        return Ok(Vec::new());
    };
    match layout.objects.iter().find(|o| o.id == id) {
        Some(o) => Ok(target_patches(o, grid)),
        None => bail!(
            "command {:?} {role} object {id}, which the scene lacks",
            cmd.text
        ),
    }
}

/// The patches of each object an ambiguous command's name fits ("the red
/// block" beside two red blocks: both blocks); none for every other
/// command.
pub fn candidate_objects(layout: &Layout, cmd: &Command, grid: usize) -> Vec<Vec<f32>> {
    match cmd
        .refused_name
        .filter(|_| cmd.action.outcome == Outcome::Ambiguous)
    {
        Some(name) => layout
            .objects
            .iter()
            .filter(|o| name.fits(o))
            .map(|o| target_patches(o, grid))
            .collect(),
        None => Vec::new(),
    }
}

/// The union of an ambiguous command's [`candidate_objects`]: where it
/// should look before it asks "which one?". Empty for every other command.
pub fn candidate_union(objects: &[Vec<f32>]) -> Vec<f32> {
    let n = objects.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| objects.iter().map(|o| o[i]).fold(0.0, f32::max))
        .collect()
}

/// The object the first action token should look at.
pub fn first_target(layout: &Layout, cmd: &Command) -> Result<Object> {
    match layout.objects.iter().find(|o| o.id == cmd.target) {
        Some(o) => Ok(o.clone()),
        None => bail!(
            "command {:?} names object {} that the scene lacks",
            cmd.text,
            cmd.target
        ),
    }
}

/// The colour and shape the command names for the object it acts on (or
/// would, for a refusal), never a landmark's: `[colour, shape]` as
/// 1 + their indices in [`Color::ALL`] and [`Shape::ALL`], colour 0 where
/// the name has none ("the cup"). The same classes as the patch head's
/// ([`crate::grid::patch_label`]), so that the two can be matched. `None`
/// where the command's target is not in `layout`.
pub fn named_label(layout: &Layout, cmd: &Command) -> Option<[u32; 2]> {
    let name = match cmd.refused_name {
        Some(name) => name,
        None => {
            let t = layout.object(cmd.target)?;
            match cmd.family {
                // A relational command names its target in full.
                Family::Relational => Reference::ColorShape(t.color, t.shape),
                _ => minimal_reference(layout, cmd.target)?,
            }
        }
    };
    let colour = name
        .color()
        .and_then(|c| Color::ALL.iter().position(|&k| k == c))
        .map_or(0, |i| i + 1);
    let shape = Shape::ALL.iter().position(|&s| s == name.shape())? + 1;
    Some([colour as u32, shape as u32])
}

/// One (image, command) pair for a batch.
#[derive(Clone)]
pub struct Example {
    /// Index into the batch's images.
    pub image: usize,
    pub command: Command,
    /// The first action's target patches, see [`crate::grid::target_patches`].
    pub target: Vec<f32>,
    /// The second waypoint's object's patches ([`destination_patches`]).
    pub destination: Vec<f32>,
    /// The landmark's patches, for relational commands ([`landmark_patches`]).
    pub landmark: Vec<f32>,
    /// The patches of each object an ambiguous command's name fits
    /// ([`candidate_objects`]); none for every other command.
    pub candidates: Vec<Vec<f32>>,
    /// What the command names, `[colour, shape]` ([`named_label`]).
    pub named: Option<[u32; 2]>,
}

impl Example {
    /// `command` on image `image`, whose objects are `layout`'s.
    pub fn new(image: usize, command: Command, layout: &Layout, grid: usize) -> Result<Self> {
        Ok(Self {
            image,
            target: command_target(layout, &command, grid)?,
            destination: destination_patches(layout, &command, grid)?,
            landmark: landmark_patches(layout, &command, grid)?,
            candidates: candidate_objects(layout, &command, grid),
            named: named_label(layout, &command),
            command,
        })
    }
}

/// A corpus of commands for training the tokenizer: every family and both
/// languages over many layouts.
pub fn command_corpus(scenes: u64, rng: &mut impl Rng) -> Vec<String> {
    let mut out = Vec::new();
    for seed in 0..scenes {
        let layout = Layout::generate(seed);
        for family in Family::ALL {
            for lang in Lang::ALL {
                for _ in 0..3 {
                    if let Some(c) = sample_command(&layout, family, lang, rng) {
                        out.push(c.text);
                    }
                }
            }
        }
    }
    out
}
