//! Does the action depend on where the model looked? Interventions that
//! test a map instead of trusting it (Samek et al. 2017's deletion curves;
//! Petsiuk et al. 2018's insertion; attention knockout as in Geva et al.).
//!
//! Rank the patches by a map, remove the top k, and watch the first waypoint
//! and the probability of the original action. A map that shows what the
//! decision rests on moves the action after a few deletions; a map that
//! only looks plausible does not, and deleting its top patches does no more
//! than deleting random ones. Three ways of removing:
//!
//! - **delete**: paint the top-k patches of the model's input with the
//!   table's colour (the median colour of the whole input, which is the
//!   table because the table covers most of it). Painting, not blurring: a
//!   blurred red cup is still a red blob where the cup was, and colour is
//!   what this model reads.
//! - **knockout**: leave the image alone and forbid the fusion head's
//!   cross-attention (and the pointer, which reads the same scores) to look
//!   at the top-k patches: −10⁴ is added to their scores.
//! - **insert**: the reverse of delete: start from an image painted all over
//!   and put the top-k patches back. (Only at the input: a head knocked out of
//!   every patch has no distribution left to attend with.)
//!
//! The rankings: the attention map, rollout, relevance (`relevance.rs`),
//! the target object's true patches, and random orders averaged over draws.

mod maps_of;
mod paint;
pub mod plot;
pub mod report;
mod score;

pub use maps_of::{action_maps, map_of, relevance_rows, saliency};
pub use paint::{paint, table_colour};
use score::{add_into, scale};
pub use score::{auc, mass_on, points_at, ranking};

use anyhow::{bail, Result};
use candle::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::action::ActionToken;
use crate::model::vla::{Decoding, Inputs};
use crate::model::{AttentionMaps, Vla};

/// How the patches are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Attention,
    Rollout,
    Relevance,
    /// The target object's own patches, most covered first.
    Target,
    /// Random orders, the curves averaged over draws.
    Random,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Attention => "attention",
            Method::Rollout => "rollout",
            Method::Relevance => "relevance",
            Method::Target => "target",
            Method::Random => "random",
        }
    }
}

/// The methods that are maps a learner can draw.
pub const MAP_METHODS: [Method; 3] = [Method::Attention, Method::Rollout, Method::Relevance];

/// The target's share of each patch, and whether a point (model frame,
/// normalised) lies on it.
pub type TargetRegion<'a> = (&'a [f32], &'a dyn Fn(f32, f32) -> bool);

/// How patches are taken away (or given back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Intervention {
    Delete,
    Knockout,
    Insert,
}

impl Intervention {
    pub fn name(self) -> &'static str {
        match self {
            Intervention::Delete => "delete (paint)",
            Intervention::Knockout => "knockout",
            Intervention::Insert => "insert (paint)",
        }
    }
}

/// One image and one command, ready for the model.
pub struct Case {
    /// (1, 3, S, S), normalised.
    pub pixels: Tensor,
    /// (1, T).
    pub text_ids: Tensor,
    pub text_len: usize,
}

/// What the model did on one input, altered or not.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Probe {
    /// The first waypoint, normalised in the model's square frame; `None`
    /// when the model refused.
    pub point: Option<[f32; 2]>,
    /// The probability of the unaltered run's first decision, teacher-forced:
    /// that its first waypoint's x and y fall in the same patch column and
    /// row, or its refusal token.
    pub prob: f32,
}

/// The unaltered run: its first decision and every attention map.
pub struct Base {
    /// The first decision: x and y, or a refusal.
    pub first: Vec<ActionToken>,
    pub probe: Probe,
    pub maps: AttentionMaps,
}

/// One curve: a method, an intervention, and the model's answer after
/// each k.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub method: Method,
    pub intervention: Intervention,
    pub ks: Vec<usize>,
    /// The probability of the original first decision after each k.
    pub prob: Vec<f32>,
    /// How far the first waypoint moved from the original one, in patches
    /// (a refusal counts as the grid's diagonal).
    pub moved: Vec<f32>,
    /// Whether the first waypoint is on the target (the share of random
    /// draws), when the scene has ground truth.
    pub on_target: Option<Vec<f32>>,
    /// Area under `prob` over k / k_max, from 0 to 1: low for a deletion
    /// that matters, high for an insertion that matters.
    pub auc: f32,
}

impl Curve {
    /// Deleting: the smallest k after which the waypoint is off the target;
    /// inserting: the smallest k after which it is back on it (for random
    /// orders: in most draws).
    pub fn flips_at(&self) -> Option<usize> {
        let on = self.on_target.as_ref()?;
        let inserting = self.intervention == Intervention::Insert;
        self.ks
            .iter()
            .zip(on)
            .find(|(_, &o)| (o >= 0.5) == inserting)
            .map(|(&k, _)| k)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ks: Vec<usize>,
    pub interventions: Vec<Intervention>,
    pub random_draws: usize,
    pub seed: u64,
}

impl Settings {
    /// What `eval --faithfulness` runs by default: k = 0, 1, 2, 4, 8, 16,
    /// deleting and inserting, three random orders.
    pub fn eval(seed: u64) -> Settings {
        Settings {
            ks: vec![0, 1, 2, 4, 8, 16],
            interventions: vec![Intervention::Delete, Intervention::Insert],
            random_draws: 3,
            seed,
        }
    }

    /// The same settings, with the random orders drawn from `seed`'s own
    /// stream: each scene gets different random patches, reproducibly.
    pub fn reseeded(&self, seed: u64) -> Settings {
        Settings {
            seed: self.seed ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ..self.clone()
        }
    }

    /// k = 0, 1, 2, 4, … up to `n` patches, all three interventions.
    pub fn full(n: usize, seed: u64) -> Self {
        let mut ks = vec![0];
        let mut k = 1;
        while k < n {
            ks.push(k);
            k *= 2;
        }
        ks.push(n);
        Self {
            ks,
            interventions: vec![
                Intervention::Delete,
                Intervention::Knockout,
                Intervention::Insert,
            ],
            random_draws: 5,
            seed,
        }
    }
}

/// Runs `case` unaltered, keeping its maps.
pub fn base(model: &Vla, case: &Case) -> Result<Base> {
    let inputs = case.inputs(case.pixels.clone(), None, 1)?;
    let generated = model.generate(&inputs, &Decoding::default(), true)?;
    crate::pipeline::check_finite_output(&generated)?;
    let Some(maps) = generated.maps.clone() else {
        bail!("the model returned no attention maps")
    };
    let steps: Vec<ActionToken> = generated.steps[0].iter().map(|s| s.token).collect();
    let first: Vec<ActionToken> = match steps.first() {
        Some(t @ (ActionToken::Absent | ActionToken::Ambiguous)) => vec![*t],
        _ => steps.iter().copied().take(2).collect(),
    };
    let probe = probes(model, &inputs, &first)?[0];
    Ok(Base { first, probe, maps })
}

/// Every curve of `maps` (plus the target's and random orders) under
/// `settings`. `coverage` is the target's share of each patch and
/// `on_target` says whether a model-frame point lies on it, when known.
pub fn curves(
    model: &Vla,
    case: &Case,
    base: &Base,
    maps: &[(Method, Vec<f32>)],
    target: Option<TargetRegion>,
    settings: &Settings,
) -> Result<Vec<Curve>> {
    let n = model.config().num_patches();
    let mut orders: Vec<(Method, Vec<usize>)> =
        maps.iter().map(|(m, v)| (*m, ranking(v))).collect();
    if let Some((coverage, _)) = target {
        orders.push((Method::Target, ranking(coverage)));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    for _ in 0..settings.random_draws {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        orders.push((Method::Random, order));
    }
    let ks: Vec<usize> = settings.ks.iter().map(|&k| k.min(n)).collect();
    let table = table_colour(&case.pixels)?;
    // Every altered input, in order: (order, intervention, k).
    let mut variants = Vec::new();
    for (_, order) in &orders {
        for &iv in &settings.interventions {
            for &k in &ks {
                // Knocking out every patch adds the same −10⁴ to every score,
                // which the softmax cancels: stop one short.
                let k = if iv == Intervention::Knockout {
                    k.min(n - 1)
                } else {
                    k
                };
                variants.push(variant(case, model, order, iv, k, &table)?);
            }
        }
    }
    let mut results = Vec::with_capacity(variants.len());
    for chunk in variants.chunks(CHUNK) {
        let pixels = Tensor::cat(&chunk.iter().map(|v| &v.0).collect::<Vec<_>>(), 0)?;
        let knockout = Tensor::cat(&chunk.iter().map(|v| &v.1).collect::<Vec<_>>(), 0)?;
        let inputs = case.inputs(pixels, Some(knockout), chunk.len())?;
        results.extend(probes(model, &inputs, &base.first)?);
    }
    let grid = model.config().grid() as f32;
    let on = |p: &Probe| -> f32 {
        match (p.point, target) {
            (Some([x, y]), Some((_, inside))) => inside(x, y) as u8 as f32,
            _ => 0.0,
        }
    };
    let moved = |p: &Probe| -> f32 {
        match (p.point, base.probe.point) {
            (Some(a), Some(b)) => (a[0] - b[0]).hypot(a[1] - b[1]) * grid,
            _ => grid * std::f32::consts::SQRT_2,
        }
    };
    // Gather, averaging the random draws into one curve per intervention.
    let per_order = settings.interventions.len() * ks.len();
    let mut out: Vec<Curve> = Vec::new();
    for (i, (method, _)) in orders.iter().enumerate() {
        for (j, &iv) in settings.interventions.iter().enumerate() {
            let at = i * per_order + j * ks.len();
            let runs = &results[at..at + ks.len()];
            let curve = Curve {
                method: *method,
                intervention: iv,
                ks: ks
                    .iter()
                    .map(|&k| {
                        if iv == Intervention::Knockout {
                            k.min(n - 1)
                        } else {
                            k
                        }
                    })
                    .collect(),
                prob: runs.iter().map(|p| p.prob).collect(),
                moved: runs.iter().map(&moved).collect(),
                on_target: target.map(|_| runs.iter().map(&on).collect()),
                auc: 0.0,
            };
            match out.iter_mut().find(|c| {
                c.method == Method::Random && *method == Method::Random && c.intervention == iv
            }) {
                Some(sum) => add_into(sum, &curve),
                None => out.push(curve),
            }
        }
    }
    let draws = settings.random_draws.max(1) as f32;
    for c in &mut out {
        if c.method == Method::Random {
            scale(c, 1.0 / draws);
        }
        c.auc = auc(&c.ks, &c.prob);
    }
    Ok(out)
}

/// Altered inputs run in batches of this many.
const CHUNK: usize = 64;

/// One altered input: its pixels (1, 3, S, S) and knockout row (1, N).
fn variant(
    case: &Case,
    model: &Vla,
    order: &[usize],
    iv: Intervention,
    k: usize,
    table: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let cfg = model.config();
    let n = cfg.num_patches();
    let mut hidden = vec![0f32; n];
    let chosen = match iv {
        Intervention::Delete | Intervention::Knockout => &order[..k],
        Intervention::Insert => &order[k..],
    };
    for &p in chosen {
        hidden[p] = 1.0;
    }
    let knockout = Tensor::from_vec(
        if iv == Intervention::Knockout {
            hidden.clone()
        } else {
            vec![0f32; n]
        },
        (1, n),
        case.pixels.device(),
    )?;
    let pixels = if iv == Intervention::Knockout {
        case.pixels.clone()
    } else {
        paint(&case.pixels, &hidden, cfg.grid(), cfg.patch_size, table)?
    };
    Ok((pixels, knockout))
}

/// For each input in `inputs`: the first waypoint the model decodes, and
/// the probability it gives the original first decision `first`.
fn probes(model: &Vla, inputs: &Inputs, first: &[ActionToken]) -> Result<Vec<Probe>> {
    let b = inputs.text_lens.len();
    let generated = model.generate(inputs, &Decoding::default(), false)?;
    let dev = model.device();
    let mut ids = vec![model.config().boa_token_id];
    ids.extend(
        first
            .iter()
            .take(first.len().saturating_sub(1))
            .map(|t| model.action_id(*t)),
    );
    let a = ids.len();
    let action_in = Tensor::from_vec(ids.repeat(b), (b, a), dev)?;
    let out = model.forward(inputs, &action_in)?;
    let probs =
        candle_nn::ops::softmax_last_dim(&out.logits.to_dtype(DType::F32)?)?.to_vec3::<f32>()?; // (B, A, ACTION_VOCAB)
    let grid = model.config().grid();
    (0..b)
        .map(|i| {
            let prob = first
                .iter()
                .enumerate()
                .map(|(k, t)| same_patch(&probs[i][k], *t, grid))
                .product();
            let point = generated
                .action(i)
                .ok()
                .filter(|act| act.outcome.is_act())
                .and_then(|act| act.waypoints.first().map(|w| [w.x, w.y]));
            Ok(Probe { point, prob })
        })
        .collect()
}

impl Case {
    /// The first example of prepared `inputs` (see `Pipeline::prepare`).
    pub fn from_inputs(inputs: &Inputs) -> Result<Self> {
        let Some(&text_len) = inputs.text_lens.first() else {
            bail!("no command to probe")
        };
        Ok(Self {
            pixels: inputs.pixels.narrow(0, 0, 1)?,
            text_ids: inputs.text_ids.narrow(0, 0, 1)?,
            text_len,
        })
    }

    /// `b` copies of the command over `pixels` (b, 3, S, S).
    fn inputs(&self, pixels: Tensor, knockout: Option<Tensor>, b: usize) -> Result<Inputs> {
        Ok(Inputs {
            pixels,
            image_index: None,
            text_ids: self.text_ids.repeat((b, 1))?,
            text_lens: vec![self.text_len; b],
            knockout,
        })
    }
}

/// The probability of `t`, or for an x or y bin, of every bin in the same
/// patch column or row: "the same place" at the grid's resolution, not one
/// bin of 256.
fn same_patch(probs: &[f32], t: ActionToken, grid: usize) -> f32 {
    maps_of::place_tokens(t, grid)
        .iter()
        .map(|&i| probs.get(i).copied().unwrap_or(0.0))
        .sum()
}
