//! `vla-demo eval --faithfulness`: the per-method table. For every command
//! the model should act on, the maps of the query that predicts the first
//! action token are scored against the target's true patches, and the
//! patches are deleted and inserted in each map's order
//! (`crate::faithfulness`).
//!
//! Per family and method: the **pointing game** (the map's peak is on the
//! target), the **mass on target**, the **deletion AUC** (lower: the action
//! falls apart sooner) and the **insertion AUC** (higher: the action comes
//! back sooner), both over the probability of the original first waypoint's
//! patch. The bar line compares deleting the top-4 attention patches with
//! deleting 4 random ones: how often each moves the waypoint off the target.

use std::collections::BTreeMap;

use anyhow::Result;
use candle::Device;
use indicatif::ProgressBar;
use serde::Serialize;

use super::{family_name, Scenes};
use crate::data;
use crate::faithfulness::report::{probe, Truth, VERDICT_K};
use crate::faithfulness::Case;
use crate::faithfulness::{Intervention, Method, Settings};
use crate::model::Vla;
use crate::preprocess::to_pixels;
use crate::scene::Family;
use crate::tokens::CommandTokenizer;

/// One row of the table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaithfulnessRow {
    pub n: usize,
    /// The pointing game and the mass on the target; `None` for the
    /// orders without a map (the target's own patches, random ones).
    pub pointing: Option<f64>,
    pub mass: Option<f64>,
    pub deletion_auc: f64,
    pub insertion_auc: f64,
    /// How often deleting the top [`VERDICT_K`] patches moved the first
    /// waypoint off the target, among runs that started on it.
    pub off_after_top_k: f64,
    /// The patch where the map's peak lands most often, and in what share
    /// of the runs: a peak that sits on one patch whatever the scene (a
    /// background "sink") shows here. `None` for the orders without a map.
    pub commonest_peak: Option<(usize, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaithfulnessReport {
    pub split: String,
    pub scenes: u64,
    pub first_seed: u64,
    pub ks: Vec<usize>,
    pub random_draws: usize,
    /// "family/method" -> row.
    pub rows: BTreeMap<String, FaithfulnessRow>,
}

/// The orders the table compares, in print order.
const METHODS: [Method; 5] = [
    Method::Attention,
    Method::Rollout,
    Method::Relevance,
    Method::Target,
    Method::Random,
];

/// Runs the probes on the `scenes`, keeping the families in `families` (all
/// when empty).
pub fn evaluate(
    model: &Vla,
    tok: &CommandTokenizer,
    scenes: Scenes,
    families: &[Family],
    settings: &Settings,
    device: &Device,
    bar: Option<&ProgressBar>,
) -> Result<FaithfulnessReport> {
    let cfg = model.config();
    let (split, first_seed) = (scenes.split, scenes.first());
    let scenes = scenes.count;
    // family/method -> per run: (pointing, mass, deletion AUC, insertion AUC, off after k)
    let mut runs: BTreeMap<String, Vec<[Option<f64>; 5]>> = BTreeMap::new();
    // family/method -> per run: the patch at the map's peak
    let mut peaks: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for seed in first_seed..first_seed.saturating_add(scenes) {
        let Some((drawn, commands)) = split.scene(seed, cfg)? else {
            continue;
        };
        let pixels = to_pixels(&[&drawn.view], cfg, device)?;
        for command in commands {
            let acts = command.action.outcome.is_act();
            if !acts || !(families.is_empty() || families.contains(&command.family)) {
                continue;
            }
            let coverage = data::command_target(&drawn.layout, &command, cfg.grid())?;
            let layout = &drawn.layout;
            let id = command.target;
            let truth = Truth {
                coverage,
                inside: Box::new(move |x, y| {
                    layout
                        .objects
                        .iter()
                        .any(|o| o.id == id && o.contains(x, y))
                }),
            };
            let (text_ids, lens) =
                tok.encode_ids(&[command.text.as_str()], cfg.max_text_len, device)?;
            let case = Case {
                pixels: pixels.clone(),
                text_ids,
                text_len: lens[0],
            };
            let probed = probe(model, &case, Some(&truth), &settings.reseeded(seed))?;
            let family = family_name(command.family);
            for method in METHODS {
                let map = probed.maps.iter().find(|m| m.method == method);
                let auc = |iv: Intervention| {
                    probed
                        .curves
                        .iter()
                        .find(|c| c.method == method && c.intervention == iv)
                        .map(|c| c.auc as f64)
                };
                let started_on = probed
                    .unaltered
                    .point
                    .is_some_and(|[x, y]| (truth.inside)(x, y));
                let off = probed
                    .curves
                    .iter()
                    .find(|c| c.method == method && c.intervention == Intervention::Delete)
                    .and_then(|c| {
                        let i = c.ks.iter().position(|&k| k == VERDICT_K)?;
                        Some(1.0 - c.on_target.as_ref()?[i] as f64)
                    })
                    .filter(|_| started_on);
                let point = |v: Option<bool>| v.map(|b| b as u8 as f64);
                let key = format!("{family}/{}", method.name());
                if let Some(&peak) = map.and_then(|m| m.top.first()) {
                    peaks.entry(key.clone()).or_default().push(peak);
                }
                runs.entry(key).or_default().push([
                    map.and_then(|m| point(m.points_at_target)),
                    map.and_then(|m| m.mass_on_target.map(f64::from)),
                    auc(Intervention::Delete),
                    auc(Intervention::Insert),
                    off,
                ]);
            }
        }
        if let Some(bar) = bar {
            bar.inc(1);
        }
    }
    let rows = runs
        .into_iter()
        .map(|(key, v)| {
            let mean_of = |i: usize| {
                let xs: Vec<f64> = v.iter().filter_map(|r| r[i]).collect();
                (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
            };
            let mean = |i: usize| mean_of(i).unwrap_or(0.0);
            let row = FaithfulnessRow {
                n: v.len(),
                pointing: mean_of(0),
                mass: mean_of(1),
                deletion_auc: mean(2),
                insertion_auc: mean(3),
                off_after_top_k: mean(4),
                commonest_peak: peaks.get(&key).and_then(|p| commonest(p)),
            };
            (key, row)
        })
        .collect();
    Ok(FaithfulnessReport {
        split: split.name().to_string(),
        scenes,
        first_seed,
        ks: settings.ks.clone(),
        random_draws: settings.random_draws,
        rows,
    })
}

/// The most frequent patch in `peaks` (the lowest index on a tie) and its
/// share.
fn commonest(peaks: &[usize]) -> Option<(usize, f64)> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for &p in peaks {
        *counts.entry(p).or_default() += 1;
    }
    let (patch, n) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
    Some((patch, n as f64 / peaks.len() as f64))
}

impl FaithfulnessReport {
    /// The table, one row per family × method (pointing and mass are not
    /// defined for the target's and random orders).
    pub fn table(&self) -> String {
        let mut s = format!(
            "| family | method | runs | pointing | mass on target | commonest peak | deletion AUC ↓ | insertion AUC ↑ | off target after deleting top {VERDICT_K} |\n|---|---|---|---|---|---|---|---|---|\n"
        );
        for family in self.families() {
            for method in METHODS.map(Method::name) {
                let Some(r) = self.rows.get(&format!("{family}/{method}")) else {
                    continue;
                };
                let pct = |x: f64| format!("{:.1}%", 100.0 * x);
                let or_dash = |x: Option<f64>| x.map_or("-".into(), pct);
                let peak = match r.commonest_peak {
                    Some((patch, share)) => format!("patch {patch}, {}", pct(share)),
                    None => "-".into(),
                };
                s += &format!(
                    "| {family} | {method} | {} | {} | {} | {peak} | {:.3} | {:.3} | {} |\n",
                    r.n,
                    or_dash(r.pointing),
                    or_dash(r.mass),
                    r.deletion_auc,
                    r.insertion_auc,
                    pct(r.off_after_top_k),
                );
            }
        }
        for family in self.families() {
            let get = |m: &str| {
                self.rows
                    .get(&format!("{family}/{m}"))
                    .map(|r| r.off_after_top_k)
            };
            if let (Some(a), Some(r)) = (get("attention"), get("random")) {
                let ratio = if r > 0.0 {
                    format!("{:.1}×", a / r)
                } else {
                    "∞".into()
                };
                s += &format!(
                    "\n{family}: deleting the top {VERDICT_K} attention patches moved the waypoint off the target in {:.1}% of runs, {VERDICT_K} random patches in {:.1}% ({ratio})",
                    100.0 * a,
                    100.0 * r
                );
            }
        }
        s + "\n"
    }

    fn families(&self) -> Vec<&str> {
        let mut f: Vec<&str> = self
            .rows
            .keys()
            .filter_map(|k| k.split_once('/').map(|x| x.0))
            .collect();
        f.dedup();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::commonest;

    #[test]
    fn the_commonest_peak_is_the_most_frequent_patch_and_its_share() {
        assert_eq!(commonest(&[]), None);
        assert_eq!(commonest(&[7, 0, 7, 3]), Some((7, 0.5)));
        // A tie goes to the lower patch.
        assert_eq!(commonest(&[5, 2, 5, 2]), Some((2, 0.5)));
    }
}
