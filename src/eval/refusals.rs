//! Commands the model should refuse: how it answered them, by language and
//! by the kind of name they use, and how the refusal rule trades flags
//! against false flags.
//!
//! The decoder refuses when the stronger refusal outweighs acting
//! ([`refusal_score`] above [`REFUSAL_THRESHOLD`]). Any other threshold would
//! flag more of the commands to refuse, or fewer of the valid ones, at the
//! other's cost. The score is known from the first step alone, so one
//! evaluation gives the whole curve: for each threshold, the share of
//! commands to refuse that it flags and the share of valid commands it
//! flags too. A learner can read off whether any threshold meets a bar on
//! both, without decoding again.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::action::Outcome;
use crate::eval::lang_name;
use crate::model::vla::refusal_score;
pub use crate::model::vla::REFUSAL_THRESHOLD;
use crate::scene::{Command, Reference};

/// How the model answered commands it should refuse.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefusalMetrics {
    pub n: usize,
    /// Refused at all (absent or ambiguous).
    pub flagged: f64,
    /// Refused with the right kind.
    pub right_kind: f64,
    /// For ambiguous commands, the mean over commands of [`Looked::all`]:
    /// the share of the `<boa>` query's attention on the objects the name
    /// fits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_mass: Option<f64>,
    /// And of [`Looked::least`]: its share on the one of them it looked at
    /// least. "Which one?" is best said having looked at each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub least_candidate_mass: Option<f64>,
}

/// Where an ambiguous command's `<boa>` query looked (its attention, mean
/// of heads), among the objects its name fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Looked {
    /// The share on all of them together.
    pub all: f32,
    /// The share on the one it looked at least.
    pub least: f32,
}

impl Looked {
    /// `weights`: one per patch; `objects`: the patches of each object the
    /// name fits ([`crate::data::candidate_objects`]), whose union
    /// ([`crate::data::candidate_union`]) gives `all`.
    pub fn of(weights: &[f32], objects: &[Vec<f32>]) -> Looked {
        let mass = |patches: &[f32]| weights.iter().zip(patches).map(|(w, p)| w * p).sum();
        Looked {
            all: mass(&crate::data::candidate_union(objects)),
            least: objects
                .iter()
                .map(|o| mass(o))
                .fold(f32::INFINITY, f32::min),
        }
    }
}

/// One answer to a command to refuse.
#[derive(Debug, Clone, Copy)]
struct Answer {
    flagged: bool,
    right_kind: bool,
    looked: Option<Looked>,
}

/// Answers to commands to refuse, gathered during an evaluation: whether
/// each was flagged, and with the right kind.
#[derive(Debug, Default)]
pub struct RefusalAnswers {
    /// Keyed "absent/en", "ambiguous/ko", ...
    by_language: BTreeMap<String, Vec<Answer>>,
    /// Keyed "absent/shape", "ambiguous/color_shape", ...
    by_name: BTreeMap<String, Vec<Answer>>,
}

impl RefusalAnswers {
    /// Adds the model's answer `got` to `command`, one to refuse, with
    /// where it looked among the objects its name fits where it is
    /// ambiguous.
    pub fn add(&mut self, command: &Command, got: Outcome, looked: Option<Looked>) {
        let want = command.action.outcome;
        let answer = Answer {
            flagged: !got.is_act(),
            right_kind: got == want,
            looked,
        };
        let key = format!("{}/{}", want.name(), lang_name(command.lang));
        self.by_language.entry(key).or_default().push(answer);
        if let Some(name) = command.refused_name {
            let kind = match name {
                Reference::Shape(_) => "shape",
                Reference::ColorShape(..) => "color_shape",
            };
            let key = format!("{}/{kind}", want.name());
            self.by_name.entry(key).or_default().push(answer);
        }
    }

    pub fn by_language(&self) -> BTreeMap<String, RefusalMetrics> {
        metrics(&self.by_language)
    }

    pub fn by_name(&self) -> BTreeMap<String, RefusalMetrics> {
        metrics(&self.by_name)
    }
}

fn metrics(answers: &BTreeMap<String, Vec<Answer>>) -> BTreeMap<String, RefusalMetrics> {
    answers
        .iter()
        .map(|(k, v)| {
            let share = |f: fn(&Answer) -> bool| {
                v.iter().filter(|x| f(x)).count() as f64 / v.len().max(1) as f64
            };
            let looked: Vec<Looked> = v.iter().filter_map(|a| a.looked).collect();
            let mean = |f: fn(&Looked) -> f32| {
                (!looked.is_empty()).then(|| {
                    looked.iter().map(|l| f64::from(f(l))).sum::<f64>() / looked.len() as f64
                })
            };
            let m = RefusalMetrics {
                n: v.len(),
                flagged: share(|x| x.flagged),
                right_kind: share(|x| x.right_kind),
                candidate_mass: mean(|l| l.all),
                least_candidate_mass: mean(|l| l.least),
            };
            (k.clone(), m)
        })
        .collect()
}

/// The thresholds the curve is measured at; the decoder's is among them.
pub const THRESHOLDS: [f32; 9] = [0.1, 0.2, 0.3, 0.4, REFUSAL_THRESHOLD, 0.6, 0.7, 0.8, 0.9];

/// One point of the curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub threshold: f32,
    /// Share of the commands to refuse (absent or ambiguous) with a score
    /// above the threshold; `None` where the split has none.
    pub flagged: Option<f64>,
    /// Share of the valid commands with a score above the threshold.
    pub false_flags: f64,
}

/// First-step refusal scores, gathered during an evaluation.
#[derive(Debug, Default)]
pub struct RefusalTally {
    to_refuse: Vec<f32>,
    valid: Vec<f32>,
}

impl RefusalTally {
    /// Adds one command's first-step P(`<absent>`), P(`<ambiguous>`).
    pub fn add(&mut self, refusal: [f32; 2], should_refuse: bool) {
        let score = refusal_score(refusal);
        if should_refuse {
            self.to_refuse.push(score);
        } else {
            self.valid.push(score);
        }
    }

    /// The curve at [`THRESHOLDS`]; `None` before any valid command.
    pub fn curve(&self) -> Option<Vec<CurvePoint>> {
        if self.valid.is_empty() {
            return None;
        }
        let above = |scores: &[f32], t: f32| {
            scores.iter().filter(|&&s| s > t).count() as f64 / scores.len() as f64
        };
        Some(
            THRESHOLDS
                .iter()
                .map(|&t| CurvePoint {
                    threshold: t,
                    flagged: (!self.to_refuse.is_empty()).then(|| above(&self.to_refuse, t)),
                    false_flags: above(&self.valid, t),
                })
                .collect(),
        )
    }
}

/// A Markdown table of the curve, the decoder's own threshold marked.
pub fn curve_table(curve: &[CurvePoint]) -> String {
    let mut s = String::from(
        "\n| refuse when score > | flagged (to refuse) | false flags (valid) |\n|---|---|---|\n",
    );
    for p in curve {
        let mark = if p.threshold == REFUSAL_THRESHOLD {
            " (decoder)"
        } else {
            ""
        };
        let flagged = p
            .flagged
            .map_or("–".to_string(), |f| format!("{:.1}%", f * 100.0));
        s += &format!(
            "| {:.1}{mark} | {flagged} | {:.1}% |\n",
            p.threshold,
            p.false_flags * 100.0
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_counts_scores_above_each_threshold_and_agrees_with_the_decoder() {
        let mut tally = RefusalTally::default();
        assert!(tally.curve().is_none());
        // Valid commands, acting at 15/16, 5/8 and 1/4 (binary fractions,
        // so the scores are exact): scores 1/16, 3/8, 3/4.
        for act in [0.9375f32, 0.625, 0.25] {
            tally.add([1.0 - act, 0.0], false);
        }
        // Commands to refuse: absent at 0.9 (score 0.9/0.95), and ambiguous
        // at 7/16 beside absent at 1/8, so acting is 7/16 too: score 1/2.
        tally.add([0.9, 0.05], true);
        tally.add([0.125, 0.4375], true);
        let curve = tally.curve().unwrap();
        let at = |t: f32| curve.iter().find(|p| p.threshold == t).unwrap();
        assert_eq!(at(0.1).false_flags, 2.0 / 3.0);
        assert_eq!(at(0.1).flagged, Some(1.0));
        assert_eq!(at(0.6).false_flags, 1.0 / 3.0);
        assert_eq!(at(0.6).flagged, Some(0.5));
        assert_eq!(at(0.9).false_flags, 0.0);
        // The decoder's point is its own rule: refuse when the stronger
        // refusal beats acting; a tie (7/16 against 7/16) acts.
        assert_eq!(at(REFUSAL_THRESHOLD).flagged, Some(0.5));
        assert_eq!(at(REFUSAL_THRESHOLD).false_flags, 1.0 / 3.0);
        let printed = curve_table(&curve);
        assert!(
            printed.contains("| 0.5 (decoder) | 50.0% | 33.3% |"),
            "{printed}"
        );
    }

    #[test]
    fn answers_are_counted_by_language_and_by_kind_of_name() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let command = (0..100)
            .find_map(|seed| {
                let layout = crate::scene::Layout::generate(seed);
                crate::scene::sample_refusal(
                    &layout,
                    Outcome::Ambiguous,
                    crate::scene::Lang::Ko,
                    &[],
                    &mut rng,
                )
            })
            .unwrap();
        let kind = match command.refused_name.unwrap() {
            Reference::Shape(_) => "ambiguous/shape",
            Reference::ColorShape(..) => "ambiguous/color_shape",
        };
        let mut answers = RefusalAnswers::default();
        // Flagged with the wrong kind, flagged right, and acted on, with
        // 1/4, 1/2 and 3/4 of the attention on the objects the name fits
        // (an eighth of it on the one looked at least).
        for (got, all) in [
            (Outcome::Absent, 0.25),
            (Outcome::Ambiguous, 0.5),
            (Outcome::Act, 0.75),
        ] {
            answers.add(&command, got, Some(Looked { all, least: 0.125 }));
        }
        for (key, m) in [
            ("ambiguous/ko", &answers.by_language()),
            (kind, &answers.by_name()),
        ] {
            assert_eq!(m.len(), 1, "{m:?}");
            let m = &m[key];
            assert_eq!((m.n, m.flagged, m.right_kind), (3, 2.0 / 3.0, 1.0 / 3.0));
            assert_eq!(m.candidate_mass, Some(0.5));
            assert_eq!(m.least_candidate_mass, Some(0.125));
        }
        // An absent command has nothing to look at.
        let mut absent = RefusalAnswers::default();
        absent.add(&command, Outcome::Absent, None);
        assert_eq!(absent.by_language()["ambiguous/ko"].candidate_mass, None);
    }

    #[test]
    fn looking_at_candidates_sums_their_union_and_each_one() {
        // Two objects sharing patch 1 (their union counts it once); half
        // the weight on patch 0.
        let weights = [0.5, 0.25, 0.125, 0.125];
        let objects = [vec![1.0, 1.0, 0.0, 0.0], vec![0.0, 1.0, 1.0, 0.0]];
        let looked = Looked::of(&weights, &objects);
        assert_eq!(
            looked,
            Looked {
                all: 0.875,
                least: 0.375
            }
        );
    }

    #[test]
    fn a_split_without_commands_to_refuse_has_no_flagged_column() {
        let mut tally = RefusalTally::default();
        tally.add([0.0, 0.0], false);
        let curve = tally.curve().unwrap();
        assert!(curve
            .iter()
            .all(|p| p.flagged.is_none() && p.false_flags == 0.0));
        assert!(curve_table(&curve).contains("| 0.1 | – | 0.0% |"));
    }
}
