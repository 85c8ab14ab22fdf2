//! What an evaluation reports: the scores per family × language, the
//! refusals, the patch head's readings, and the tables that print them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{landing, patches, refusals, Landing, RefusalMetrics};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    pub n: usize,
    pub success: f64,
    pub pointing: f64,
    /// The pointing game of the query that predicts the first y (the first
    /// x token's), on the same target.
    pub pointing_y: f64,
    pub pointing_best_head: f64,
    pub attention_mass: f64,
    pub token_accuracy: f64,
    pub pixel_error: f64,
    /// Share of these (valid) commands the model refused.
    pub false_flags: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub split: String,
    pub scenes: u64,
    pub first_seed: u64,
    /// Keyed "family/lang", e.g. "pick/en".
    pub cells: BTreeMap<String, Metrics>,
    /// Relational commands again, keyed "relation/lang": "next_to/en", ...,
    /// to show which relation the model resolves worst.
    pub relations: BTreeMap<String, Metrics>,
    /// Commands about an object of a colour × shape pair training never
    /// showed, keyed by the pair ("green block"): empty outside the
    /// `unseen-combo` split. Which pair fails says more than the mean.
    pub held_out_pairs: BTreeMap<String, Metrics>,
    pub overall: Metrics,
    /// Commands to refuse, keyed "absent/en", "ambiguous/ko", ...
    pub refusals: BTreeMap<String, RefusalMetrics>,
    /// The same by the kind of name, both languages together:
    /// "ambiguous/shape" ("the cup" beside two cups), "ambiguous/color_shape"
    /// ("the red block" beside two red blocks), ...
    pub refusals_by_name: BTreeMap<String, RefusalMetrics>,
    /// Valid commands by where their first point landed: the share of each
    /// [`Landing`], keyed by its name, over all families and languages.
    pub landings: BTreeMap<Landing, f64>,
    /// What the patch head read, for a model with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_labels: Option<patches::PatchScore>,
    /// Flagged and false flags at other refusal thresholds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal_curve: Option<Vec<refusals::CurvePoint>>,
}

impl EvalReport {
    pub fn summary(&self) -> String {
        let get = |k: &str| self.cells.get(k).map_or(f64::NAN, |m| m.success * 100.0);
        format!(
            "success {:.1}% (pick {:.0}/{:.0}, place {:.0}/{:.0}, push {:.0}/{:.0}, rel {:.0}/{:.0} en/ko), pointing {:.1}%, mass {:.2}",
            self.overall.success * 100.0,
            get("pick/en"), get("pick/ko"), get("place/en"), get("place/ko"),
            get("push/en"), get("push/ko"), get("relational/en"), get("relational/ko"),
            self.overall.pointing * 100.0,
            self.overall.attention_mass
        )
    }

    /// A Markdown table, as in the README.
    pub fn table(&self) -> String {
        let mut s = String::from("| family/lang | n | success | pointing | y pointing | best head | mass | token acc | px error | false flags |\n|---|---|---|---|---|---|---|---|---|---|\n");
        let row = |name: &str, m: &Metrics| {
            format!(
                "| {name} | {} | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.2} | {:.1}% | {:.1} | {:.1}% |\n",
                m.n,
                m.success * 100.0,
                m.pointing * 100.0,
                m.pointing_y * 100.0,
                m.pointing_best_head * 100.0,
                m.attention_mass,
                m.token_accuracy * 100.0,
                m.pixel_error,
                m.false_flags * 100.0
            )
        };
        for (k, m) in &self.cells {
            s += &row(k, m);
        }
        s += &row("**overall**", &self.overall);
        for (k, m) in &self.relations {
            s += &row(&format!("relational: {k}"), m);
        }
        for (k, m) in &self.held_out_pairs {
            s += &row(&format!("held-out pair: {k}"), m);
        }
        s += &landing::table(&self.landings);
        if let Some(p) = &self.patch_labels {
            s += &patches::table(p);
        }
        if !self.refusals.is_empty() {
            s += "\n| to refuse | n | flagged | right kind | mass on the objects it fits | on the least looked at |\n|---|---|---|---|---|---|\n";
            for (k, m) in self.refusals.iter().chain(&self.refusals_by_name) {
                let mass = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.2}"));
                let (all, least) = (mass(m.candidate_mass), mass(m.least_candidate_mass));
                s += &format!(
                    "| {k} | {} | {:.1}% | {:.1}% | {all} | {least} |\n",
                    m.n,
                    m.flagged * 100.0,
                    m.right_kind * 100.0
                );
            }
        }
        if let Some(curve) = &self.refusal_curve {
            s += &refusals::curve_table(curve);
        }
        s
    }

    /// Share of all commands to refuse that were flagged (NaN when there were none).
    pub fn flagged(&self) -> f64 {
        let n: usize = self.refusals.values().map(|m| m.n).sum();
        let hit: f64 = self.refusals.values().map(|m| m.flagged * m.n as f64).sum();
        hit / n as f64
    }
}

/// One line per split: what the generalisation bar asks of it, side by side.
pub fn bar_table(reports: &[EvalReport]) -> String {
    let mut s = String::from(
        "| split | success | worst family/lang | pointing | flagged | false flags |\n|---|---|---|---|---|---|\n",
    );
    let pct = |v: f64| {
        if v.is_nan() {
            "–".to_string()
        } else {
            format!("{:.1}%", v * 100.0)
        }
    };
    for r in reports {
        let worst = r
            .cells
            .iter()
            .min_by(|a, b| a.1.success.total_cmp(&b.1.success))
            .map_or("–".to_string(), |(k, m)| {
                format!("{k} {}", pct(m.success))
            });
        s += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.split,
            pct(r.overall.success),
            worst,
            pct(r.overall.pointing),
            pct(r.flagged()),
            pct(r.overall.false_flags),
        );
    }
    s
}
