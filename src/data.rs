//! Training and evaluation examples, made on the fly from the scene world.
//!
//! A scene seed gives a layout; the layout gives an image and commands; each
//! command gives its expected action tokens. Several commands share one image,
//! so one pass of the vision encoder serves all of them.
//!
//! Seeds below [`crate::scene::draw::EVAL_SEED_START`] are for training;
//! evaluation and the committed example scenes use seeds at or above it, so
//! no evaluation scene is ever trained on. Commands are drawn by
//! [`crate::scene::draw`]; the model's batches are made here.

use anyhow::{bail, Result};
use candle::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::action::{self, ActionToken, Outcome, ACTION_VOCAB, MAX_ACTION_TOKENS, NUM_BINS};
use crate::grid::{patch_labels, target_patches};
use crate::model::vla::Inputs;
use crate::model::Config;
use crate::preprocess::to_pixels;
use crate::scene::camera::view_of;
use crate::scene::random::{Extras, RandomScene, RandomSpec};
use crate::scene::{
    sample_command, sample_hard_negative, sample_refusal, Color, Command, Family, Lang, Layout,
    LayoutSpec, Object, Shape,
};
use crate::tokens::{check_length, to_ids, CommandTokenizer, Encoded};

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
            let spec = LayoutSpec {
                exclude: exclude.to_vec(),
                ..LayoutSpec::default()
            };
            let layout = Layout::generate_with(seed, &spec);
            Ok(Drawn {
                view: layout.render(cfg.image_size as u32)?,
                layout,
            })
        }
        World::Random => {
            let mut spec = RandomSpec {
                extras,
                ..RandomSpec::default()
            };
            spec.layout.exclude = exclude.to_vec();
            let scene = RandomScene::generate(seed, &spec);
            let viewed = view_of(scene.render()?, &scene.camera, &scene.layout, cfg);
            Ok(Drawn {
                view: viewed.view,
                layout: viewed.layout,
            })
        }
    }
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

/// The union of [`candidate_objects`]: where an ambiguous command should
/// look before it asks "which one?". Empty for every other command.
pub fn candidate_patches(layout: &Layout, cmd: &Command, grid: usize) -> Vec<f32> {
    let objects = candidate_objects(layout, cmd, grid);
    if objects.is_empty() {
        return Vec::new();
    }
    (0..grid * grid)
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
    /// Every object an ambiguous command's name fits ([`candidate_patches`]).
    pub candidates: Vec<f32>,
}

impl Example {
    /// `command` on image `image`, whose objects are `layout`'s.
    pub fn new(image: usize, command: Command, layout: &Layout, grid: usize) -> Result<Self> {
        Ok(Self {
            image,
            target: command_target(layout, &command, grid)?,
            destination: destination_patches(layout, &command, grid)?,
            landmark: landmark_patches(layout, &command, grid)?,
            candidates: candidate_patches(layout, &command, grid),
            command,
        })
    }
}

/// Which action queries the grounding term supervises (see
/// [`Batch::target_mask`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grounded {
    /// Only `<boa>`, the query that reads the first x.
    #[default]
    Boa,
    /// Every query that reads a coordinate of an object: `<boa>` and the
    /// first x token (they read the target's x and y) and, for place, the
    /// first gripper token and the second x (they read the bowl's).
    Coordinates,
    /// `Coordinates`, and the words that name a relational command's
    /// landmark: their queries in the first fusion block read the landmark,
    /// so that later queries can find the target from where it is.
    Landmark,
    /// `Landmark`, and the `<boa>` of an ambiguous command reads every
    /// object its name fits, so that "which one?" is answered from having
    /// found two (see [`candidate_patches`]).
    Candidates,
}

/// Tensors for one teacher-forced step.
pub struct Batch {
    pub inputs: Inputs,
    /// (B, A) vocabulary ids: `<boa>, a_1, .., a_{A-1}`.
    pub action_in: Tensor,
    /// (B·A,) indices into the action slice.
    pub targets: Tensor,
    /// (B·A,) 1 for real tokens, 0 for padding.
    pub weights: Tensor,
    /// (B·A, ACTION_VOCAB) target distributions: one-hot for gripper and end
    /// tokens, a Gaussian over neighbouring bins for x and y (see [`soft_target`]).
    pub soft_targets: Tensor,
    /// (B, A, N): for each action query, the patches of the object whose
    /// coordinate it reads, or zeros where the grounding term leaves it
    /// free (see [`Grounded`]).
    pub target_mask: Tensor,
    /// (B, T, N): for each word of the (left-padded) command, the patches
    /// of the landmark it names, or zeros; only with [`Grounded::Landmark`].
    pub word_mask: Option<Tensor>,
    /// (I·N, 2) u32: what each patch of each image shows, `[colour, shape]`
    /// (see [`crate::grid::patch_labels`]); only where training asks for
    /// the patch-label term.
    pub patch_labels: Option<Tensor>,
}

impl Batch {
    /// The batch with the patch labels of its images, whose objects (in
    /// view coordinates) are `layouts`, one per image.
    pub fn with_patch_labels(mut self, layouts: &[&Layout], grid: usize) -> Result<Self> {
        let labels: Vec<u32> = layouts
            .iter()
            .flat_map(|l| patch_labels(&l.objects, grid))
            .flatten()
            .collect();
        let n = labels.len() / 2;
        self.patch_labels = Some(Tensor::from_vec(labels, (n, 2), self.targets.device())?);
        Ok(self)
    }
}

/// The training target for one action token. Bins are ordered, so a bin
/// next to the right one is less wrong than one across the table: x and y
/// targets spread over neighbouring bins as a Gaussian of `sigma` bins (0 =
/// one-hot), which gives the classifier a sense of distance.
pub fn soft_target(t: ActionToken, sigma: f32) -> Vec<f32> {
    let mut q = vec![0f32; ACTION_VOCAB];
    let (base, bin) = match t {
        ActionToken::X(i) => (0, i as usize),
        ActionToken::Y(i) => (NUM_BINS, i as usize),
        other => {
            q[other.index()] = 1.0;
            return q;
        }
    };
    if sigma <= 0.0 {
        q[base + bin] = 1.0;
        return q;
    }
    for j in 0..NUM_BINS {
        let d = j as f32 - bin as f32;
        q[base + j] = (-0.5 * d * d / (sigma * sigma)).exp();
    }
    let sum: f32 = q.iter().sum();
    q.iter_mut().for_each(|x| *x /= sum);
    q
}

/// Builds a batch from rendered images and examples; `bin_sigma` shapes the
/// x/y targets (see [`soft_target`]), `grounded` says which queries the
/// grounding term sees.
pub fn make_batch(
    images: &[&image::RgbImage],
    examples: &[Example],
    tok: &CommandTokenizer,
    cfg: &Config,
    bin_sigma: f32,
    grounded: Grounded,
    device: &Device,
) -> Result<Batch> {
    let b = examples.len();
    let a = MAX_ACTION_TOKENS;
    let encoded = examples
        .iter()
        .map(|e| {
            let enc = tok.encode(&e.command.text)?;
            check_length(&enc, cfg.max_text_len)?;
            Ok(enc)
        })
        .collect::<Result<Vec<_>>>()?;
    let (text_ids, text_lens) = to_ids(&encoded, tok.pad_id(), device)?;
    let image_index: Vec<u32> = examples.iter().map(|e| e.image as u32).collect();

    let mut action_in = Vec::with_capacity(b * a);
    let mut targets = Vec::with_capacity(b * a);
    let mut weights = Vec::with_capacity(b * a);
    let n = cfg.num_patches();
    let mut mask: Vec<f32> = Vec::with_capacity(b * a * n);
    let mut soft: Vec<f32> = Vec::with_capacity(b * a * ACTION_VOCAB);
    for e in examples {
        let tokens = action::encode(&e.command.action);
        if tokens.len() > a {
            bail!(
                "action of {:?} has {} tokens, more than {a}",
                e.command.text,
                tokens.len()
            );
        }
        action_in.push(cfg.boa_token_id);
        for i in 0..a {
            match tokens.get(i) {
                Some(t) => {
                    soft.extend(soft_target(*t, bin_sigma));
                    targets.push(t.index() as u32);
                    weights.push(1f32);
                    if i + 1 < a {
                        action_in.push(cfg.action_offset + t.index() as u32);
                    }
                }
                None => {
                    soft.extend(std::iter::repeat_n(0f32, ACTION_VOCAB));
                    targets.push(0);
                    weights.push(0.0);
                    if i + 1 < a {
                        action_in.push(cfg.boa_token_id);
                    }
                }
            }
        }
        let coordinates = grounded != Grounded::Boa;
        let candidates = grounded == Grounded::Candidates && !e.candidates.is_empty();
        for k in 0..a {
            let reads = match k {
                0 if candidates => Some(&e.candidates),
                0 => Some(&e.target),
                1 if coordinates => Some(&e.target),
                3 | 4 if coordinates && !e.destination.is_empty() => Some(&e.destination),
                _ => None,
            };
            match reads {
                Some(patches) if patches.len() == n => mask.extend(patches),
                Some(patches) => bail!("{} target patches for {n} patches", patches.len()),
                None => mask.extend(std::iter::repeat_n(0f32, n)),
            }
        }
    }
    let word_mask = match grounded {
        Grounded::Landmark | Grounded::Candidates => {
            Some(landmark_word_mask(examples, &encoded, n, device)?)
        }
        _ => None,
    };
    Ok(Batch {
        inputs: Inputs {
            pixels: to_pixels(images, cfg, device)?,
            image_index: Some(Tensor::from_vec(image_index, b, device)?),
            text_ids,
            text_lens,
            knockout: None,
        },
        action_in: Tensor::from_vec(action_in, (b, a), device)?,
        targets: Tensor::from_vec(targets, b * a, device)?,
        weights: Tensor::from_vec(weights, b * a, device)?,
        soft_targets: Tensor::from_vec(soft, (b * a, ACTION_VOCAB), device)?,
        target_mask: Tensor::from_vec(mask, (b, a, n), device)?,
        word_mask,
        patch_labels: None,
    })
}

/// [`Batch::word_mask`]: the landmark's patches on every token of the words
/// that name it, in the left-padded layout of [`to_ids`].
fn landmark_word_mask(
    examples: &[Example],
    encoded: &[Encoded],
    n: usize,
    device: &Device,
) -> Result<Tensor> {
    let t = encoded.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let mut mask = vec![0f32; examples.len() * t * n];
    for (i, (e, enc)) in examples.iter().zip(encoded).enumerate() {
        let Some(words) = e.command.landmark_words.as_ref() else {
            continue;
        };
        if e.landmark.is_empty() {
            continue; // a refusal: nothing to read
        }
        if e.landmark.len() != n {
            bail!("{} landmark patches for {n} patches", e.landmark.len());
        }
        let pad = t - enc.ids.len();
        for (j, w) in enc.word_ids.iter().enumerate() {
            if words.contains(w) {
                let row = (i * t + pad + j) * n;
                mask[row..row + n].copy_from_slice(&e.landmark);
            }
        }
    }
    Ok(Tensor::from_vec(mask, (examples.len(), t, n), device)?)
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
