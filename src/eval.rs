//! `vla-demo eval`: how well the model acts and where it looks, on held-out
//! scenes, per family (pick, place, push, relational) × language (en, ko).
//!
//! - **success**: every waypoint lands where it should, every gripper token
//!   is right and the action ends with `<eoa>`. pick and relational: the
//!   point is on the target; place: on the object, then on the bowl; push: on
//!   the object, then within [`PUSH_TOLERANCE`] of the expected end point.
//! - **pointing game**: the patch with the highest head-averaged `<boa>`
//!   cross-attention (last fusion block) is one of the target's patches
//!   (covered at least `grid::PATCH_COVER`). Also reported for the best
//!   single head.
//! - **attention mass**: the share of that attention on the target's patches.
//! - **token accuracy** (position by position, greedy decoding) and the mean
//!   waypoint **pixel error** at the model's image size.
//!
//! Relational commands are also reported by relation (next to, left of, ...)
//! and language, since one relation can be much harder than the rest.
//!
//! Every split of [`splits`] is scored the same way. Commands the model
//! should refuse ("the green cup" with no green cup) are scored apart: the
//! share **flagged** (any refusal) and the share flagged with the right kind
//! (absent or ambiguous), by language and by the kind of name, and for an
//! ambiguous command the `<boa>` attention's **mass on the objects its name
//! fits**, all together and on the one it looked at least; on the commands
//! it should act on, the share of **false flags**; and both again at other
//! refusal thresholds ([`refusals`]).
//!
//! And where the first point of each valid command landed ([`landing`]),
//! and, for a model with a patch head, what it says each patch shows
//! ([`patches`]).

pub mod faithfulness;
pub mod landing;
pub mod patches;
pub mod per_command;
pub mod refusals;
pub mod report;
pub mod splits;
pub mod success;

use std::collections::BTreeMap;

use anyhow::Result;
use candle::Device;
use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::action::{self, Action, Outcome as Answer};
use crate::data::{self, Example};
use crate::maps::argmax;
use crate::model::vla::Decoding;
use crate::model::Vla;
use crate::scene::random::HELD_OUT_PAIRS;
use crate::scene::{Family, Lang, Relation};
use crate::tokens::CommandTokenizer;
pub use landing::Landing;
pub use per_command::CommandRecord;
pub use refusals::RefusalMetrics;
pub use report::{bar_table, EvalReport, Metrics};
pub use splits::Split;
pub use success::{succeeded, PUSH_TOLERANCE};

/// Scenes per forward pass.
const CHUNK: u64 = 16;

/// Per-example outcome, before averaging.
#[derive(Clone)]
struct Outcome {
    success: bool,
    pointing: bool,
    pointing_y: bool,
    head_hits: Vec<bool>,
    mass: f32,
    token_acc: f32,
    pixel_error: Option<f32>,
    refused: bool,
    landing: Landing,
}

/// Which held-out scenes an evaluation runs on.
#[derive(Debug, Clone, Copy)]
pub struct Scenes {
    pub split: Split,
    /// The first seed; the split's own range when `None`.
    pub first_seed: Option<u64>,
    pub count: u64,
}

impl Scenes {
    /// The first seed, the split's own when none was asked for.
    pub fn first(&self) -> u64 {
        self.first_seed.unwrap_or(self.split.first_seed())
    }
}

/// Runs the model on the `scenes`.
pub fn evaluate(
    model: &Vla,
    tok: &CommandTokenizer,
    scenes: Scenes,
    device: &Device,
    bar: Option<&ProgressBar>,
) -> Result<EvalReport> {
    evaluate_with(model, tok, scenes, device, bar, None)
}

/// [`evaluate`], also keeping one [`CommandRecord`] per command in `records`.
pub fn evaluate_with(
    model: &Vla,
    tok: &CommandTokenizer,
    scenes: Scenes,
    device: &Device,
    bar: Option<&ProgressBar>,
    mut records: Option<&mut Vec<CommandRecord>>,
) -> Result<EvalReport> {
    let cfg = model.config();
    let size = cfg.image_size as f32;
    let (split, first_seed) = (scenes.split, scenes.first());
    let scenes = scenes.count;
    let mut outcomes: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let mut by_relation: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let mut by_pair: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let mut to_refuse = refusals::RefusalAnswers::default();
    let mut patch_tally = patches::PatchTally::default();
    let mut refusal_tally = refusals::RefusalTally::default();
    let last = first_seed.saturating_add(scenes);
    let mut start = first_seed;
    while start < last {
        let end = start.saturating_add(CHUNK).min(last);
        let drawn: Vec<_> = (start..end)
            .into_par_iter()
            .map(|seed| split.scene(seed, cfg))
            .collect::<Result<Vec<_>>>()?;
        let mut layouts = Vec::new();
        let mut images = Vec::new();
        let mut seeds = Vec::new();
        let mut examples = Vec::new();
        for (seed, (d, commands)) in (start..end).zip(drawn).filter_map(|(s, d)| Some((s, d?))) {
            seeds.push(seed);
            for command in commands {
                // Images and layouts are pushed together: `image` indexes both.
                examples.push(Example::new(images.len(), command, &d.layout, cfg.grid())?);
            }
            images.push(d.view);
            layouts.push(d.layout);
        }
        if !examples.is_empty() {
            let refs: Vec<&image::RgbImage> = images.iter().collect();
            let batch =
                data::make_batch(&refs, &examples, tok, cfg, 0.0, data::Grounded::Boa, device)?;
            let generated = model.generate(&batch.inputs, &Decoding::default(), false)?;
            crate::pipeline::check_finite_output(&generated)?;
            let readings = generated
                .patch_labels
                .as_ref()
                .map(patches::readings)
                .transpose()?;
            if let Some(readings) = &readings {
                patch_tally.add(readings, &layouts, cfg.grid())?;
            }
            // The `<boa>` query's weights (B, H, N), and the heads' mean
            // (B, N) of the query that predicts the first y.
            let cross = generated
                .boa_cross
                .to_dtype(candle::DType::F32)?
                .to_vec3::<f32>()?;
            let y_cross = match &generated.y_cross {
                Some(t) => Some(t.to_dtype(candle::DType::F32)?.mean(1)?.to_vec2::<f32>()?),
                None => None,
            };
            for (b, e) in examples.iter().enumerate() {
                let layout = &layouts[e.image];
                let got = generated.action(b).unwrap_or(Action::new(vec![]));
                let want_outcome = e.command.action.outcome;
                let first = generated.steps[b].first().map_or([0.0; 2], |s| s.refusal);
                refusal_tally.add(first, !want_outcome.is_act());
                let heads = &cross[b];
                let n = heads[0].len();
                let mean: Vec<f32> = (0..n)
                    .map(|p| heads.iter().map(|h| h[p]).sum::<f32>() / heads.len() as f32)
                    .collect();
                let mass_on = |patches: &[f32]| mean.iter().zip(patches).map(|(a, t)| a * t).sum();
                let hit = |w: &[f32]| e.target[argmax(w)] > 0.5;
                if let Some(records) = records.as_deref_mut() {
                    let valid = want_outcome.is_act();
                    records.push(CommandRecord {
                        split: split.name(),
                        seed: seeds[e.image],
                        command: e.command.text.clone(),
                        lang: lang_name(e.command.lang),
                        family: family_name(e.command.family),
                        expected: want_outcome,
                        answer: got.outcome,
                        success: valid.then(|| succeeded(layout, &e.command, &got)),
                        pointing: valid.then(|| hit(&mean)),
                        refusal: first,
                        object: per_command::object_of(&e.command, layout),
                        boa: per_command::rounded(&mean),
                        read: readings.as_ref().map(|r| r[e.image].clone()),
                    });
                }
                if !want_outcome.is_act() {
                    let looked = (!e.candidates.is_empty())
                        .then(|| refusals::Looked::of(&mean, &e.candidates));
                    to_refuse.add(&e.command, got.outcome, looked);
                    continue;
                }
                let want = action::encode(&e.command.action);
                let got_tokens: Vec<_> = generated.steps[b].iter().map(|s| s.token).collect();
                let right = want.iter().zip(&got_tokens).filter(|(a, b)| a == b).count();
                let pixel_error = (got.waypoints.len() == e.command.action.waypoints.len()
                    && !got.waypoints.is_empty())
                .then(|| {
                    let d: f32 = got
                        .waypoints
                        .iter()
                        .zip(&e.command.action.waypoints)
                        .map(|(g, w)| (g.x - w.x).hypot(g.y - w.y) * size)
                        .sum();
                    d / got.waypoints.len() as f32
                });
                let key = format!(
                    "{}/{}",
                    family_name(e.command.family),
                    lang_name(e.command.lang)
                );
                let outcome = Outcome {
                    success: succeeded(layout, &e.command, &got),
                    pointing: hit(&mean),
                    pointing_y: y_cross.as_ref().is_some_and(|y| hit(&y[b])),
                    head_hits: heads.iter().map(|h| hit(h)).collect(),
                    mass: mass_on(&e.target),
                    token_acc: right as f32 / want.len().max(got_tokens.len()) as f32,
                    pixel_error,
                    refused: got.outcome != Answer::Act,
                    landing: Landing::of(layout, e.command.target, &got),
                };
                if let Some(rel) = e.command.relation {
                    by_relation
                        .entry(format!(
                            "{}/{}",
                            relation_name(rel),
                            lang_name(e.command.lang)
                        ))
                        .or_default()
                        .push(outcome.clone());
                }
                if let Some(o) = layout.object(e.command.target) {
                    if HELD_OUT_PAIRS.contains(&(o.color, o.shape)) {
                        let pair = format!("{} {}", o.color.name_en(), o.shape.name_en());
                        by_pair.entry(pair).or_default().push(outcome.clone());
                    }
                }
                outcomes.entry(key).or_default().push(outcome);
            }
        }
        if let Some(bar) = bar {
            bar.inc(end - start);
        }
        start = end;
    }
    let overall = average(outcomes.values().flatten());
    let landings = landing::shares(outcomes.values().flatten().map(|o| o.landing));
    let by_key = |m: &BTreeMap<String, Vec<Outcome>>| -> BTreeMap<String, Metrics> {
        m.iter()
            .map(|(k, v)| (k.clone(), average(v.iter())))
            .collect()
    };
    Ok(EvalReport {
        split: split.name().to_string(),
        scenes,
        first_seed,
        cells: by_key(&outcomes),
        relations: by_key(&by_relation),
        held_out_pairs: by_key(&by_pair),
        overall,
        refusals: to_refuse.by_language(),
        refusals_by_name: to_refuse.by_name(),
        landings,
        patch_labels: patch_tally.score(),
        refusal_curve: refusal_tally.curve(),
    })
}

fn average<'a>(items: impl Iterator<Item = &'a Outcome>) -> Metrics {
    let items: Vec<&Outcome> = items.collect();
    let n = items.len();
    if n == 0 {
        return Metrics::default();
    }
    let mean = |f: &dyn Fn(&Outcome) -> f64| items.iter().map(|o| f(o)).sum::<f64>() / n as f64;
    let heads = items[0].head_hits.len();
    let best_head = (0..heads)
        .map(|h| mean(&|o: &Outcome| o.head_hits[h] as u8 as f64))
        .fold(0.0, f64::max);
    let errs: Vec<f32> = items.iter().filter_map(|o| o.pixel_error).collect();
    Metrics {
        n,
        success: mean(&|o| o.success as u8 as f64),
        pointing: mean(&|o| o.pointing as u8 as f64),
        pointing_y: mean(&|o| o.pointing_y as u8 as f64),
        pointing_best_head: best_head,
        attention_mass: mean(&|o| o.mass as f64),
        token_accuracy: mean(&|o| o.token_acc as f64),
        false_flags: mean(&|o| o.refused as u8 as f64),
        pixel_error: if errs.is_empty() {
            f64::NAN
        } else {
            errs.iter().sum::<f32>() as f64 / errs.len() as f64
        },
    }
}

pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::Pick => "pick",
        Family::Place => "place",
        Family::Push => "push",
        Family::Relational => "relational",
    }
}

pub fn lang_name(l: Lang) -> &'static str {
    match l {
        Lang::En => "en",
        Lang::Ko => "ko",
    }
}

pub fn relation_name(r: Relation) -> &'static str {
    match r {
        Relation::NextTo => "next_to",
        Relation::LeftOf => "left_of",
        Relation::RightOf => "right_of",
        Relation::Above => "above",
        Relation::Below => "below",
    }
}
