//! One run's interventions, as `explain` prints them and `--json` writes them.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use super::{
    base, curves, mass_on, points_at, saliency, Case, Curve, Intervention, Method, Probe, Settings,
};
use crate::model::Vla;

/// What the scene's ground truth says about the command's target.
pub struct Truth<'a> {
    /// The target's share of each patch.
    pub coverage: Vec<f32>,
    /// Whether a point (model frame, normalised) lies on the target.
    pub inside: Box<dyn Fn(f32, f32) -> bool + 'a>,
}

/// One map of the first query, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct MapLine {
    pub method: Method,
    /// Patches from the highest value down (the first few).
    pub top: Vec<usize>,
    /// The pointing game and the mass on the target, with ground truth.
    pub points_at_target: Option<bool>,
    pub mass_on_target: Option<f32>,
    pub values: Vec<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probed {
    pub unaltered: Probe,
    pub maps: Vec<MapLine>,
    pub curves: Vec<Curve>,
    /// One sentence: what deleting the most-attended patches did.
    pub verdict: String,
}

/// The k the one-line verdict compares at.
pub const VERDICT_K: usize = 4;

/// Runs every intervention of `settings` on `case`.
pub fn probe(
    model: &Vla,
    case: &Case,
    truth: Option<&Truth>,
    settings: &Settings,
) -> Result<Probed> {
    let b = base(model, case)?;
    let maps = saliency(model, case, &b)?;
    let target = truth.map(|t| {
        (
            t.coverage.as_slice(),
            &*t.inside as &dyn Fn(f32, f32) -> bool,
        )
    });
    let curves = curves(model, case, &b, &maps, target, settings)?;
    let lines = maps
        .into_iter()
        .map(|(method, values)| MapLine {
            method,
            top: super::ranking(&values)
                .into_iter()
                .take(VERDICT_K)
                .collect(),
            points_at_target: truth.map(|t| points_at(&values, &t.coverage)),
            mass_on_target: truth.map(|t| mass_on(&values, &t.coverage)),
            values,
        })
        .collect();
    let verdict = verdict(&curves, b.probe);
    Ok(Probed {
        unaltered: b.probe,
        maps: lines,
        curves,
        verdict,
    })
}

/// The settings `explain` uses when only the verdict is asked for.
pub fn verdict_settings(seed: u64) -> Settings {
    Settings {
        ks: vec![0, VERDICT_K],
        interventions: vec![Intervention::Delete],
        random_draws: 5,
        seed,
    }
}

fn at_k(c: &Curve, k: usize) -> Option<(f32, f32)> {
    let i = c.ks.iter().position(|&x| x == k)?;
    Some((c.prob[i], c.moved[i]))
}

/// Deleting the top-k attention patches against k random ones.
fn verdict(curves: &[Curve], unaltered: Probe) -> String {
    let find = |m: Method| {
        curves
            .iter()
            .find(|c| c.method == m && c.intervention == Intervention::Delete)
            .and_then(|c| at_k(c, VERDICT_K))
    };
    let (Some((pa, ma)), Some((pr, mr))) = (find(Method::Attention), find(Method::Random)) else {
        return "no deletion was run".into();
    };
    let lesson = if ma > 2.0 * mr.max(0.25) || pa < 0.5 * pr {
        "the action rests on where the attention looked"
    } else {
        "the action does not rest on the attended patches more than on any others: the map is not an explanation here"
    };
    format!(
        "deleting the {VERDICT_K} most-attended patches moved the first waypoint {ma:.1} patches \
         (p {:.2} -> {pa:.2}); {VERDICT_K} random patches moved it {mr:.1} (p -> {pr:.2}): {lesson}",
        unaltered.prob
    )
}

impl Probed {
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = self.write_text(&mut s);
        s
    }

    fn write_text(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "\nWhere the first query looked, three ways (top {VERDICT_K} patches):"
        )?;
        for m in &self.maps {
            write!(s, "  {:<10} {:?}", m.method.name(), m.top)?;
            if let (Some(p), Some(mass)) = (m.points_at_target, m.mass_on_target) {
                write!(
                    s,
                    "  peak {} the target, {:.0}% of the mass on it",
                    if p { "on" } else { "off" },
                    mass * 100.0
                )?;
            }
            writeln!(s)?;
        }
        let kinds: Vec<Intervention> = self.curves.iter().fold(Vec::new(), |mut v, c| {
            if !v.contains(&c.intervention) {
                v.push(c.intervention);
            }
            v
        });
        for kind in kinds {
            writeln!(
                s,
                "\n{}: probability of the original first decision after k patches",
                kind.name()
            )?;
            let ks = &self
                .curves
                .iter()
                .find(|c| c.intervention == kind)
                .map(|c| c.ks.clone())
                .unwrap_or_default();
            write!(s, "  {:<10}", "k")?;
            for k in ks {
                write!(s, " {k:>6}")?;
            }
            let flip = if kind == Intervention::Insert {
                "on target from"
            } else {
                "off target from"
            };
            writeln!(s, "     AUC  {flip}")?;
            for c in self.curves.iter().filter(|c| c.intervention == kind) {
                write!(s, "  {:<10}", c.method.name())?;
                for p in &c.prob {
                    write!(s, " {p:>6.3}")?;
                }
                let left = match (c.on_target.is_some(), c.flips_at()) {
                    (false, _) => "-".to_string(),
                    (true, None) => "never".to_string(),
                    (true, Some(k)) => format!("k = {k}"),
                };
                writeln!(s, "  {:>6.3}  {left}", c.auc)?;
            }
        }
        writeln!(s, "\nIntervention: {}", self.verdict)
    }
}
