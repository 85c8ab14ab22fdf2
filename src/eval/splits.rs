//! The held-out splits of `vla-demo eval --split NAME`. Each one draws its
//! scenes from seeds that training never sees (its own range, all at or above
//! [`EVAL_SEED_START`]) and says which commands to ask there.
//!
//! | split | scenes | commands |
//! |---|---|---|
//! | `iid` | the plain world, as trained | one per family × language |
//! | `style` | [`crate::scene::heldout_style`], a drawing training never sees | one per family × language |
//! | `small` | randomised, objects of radius 3–5% of the short side | one per family × language |
//! | `crowded` | randomised, 8 to 10 objects | one per family × language |
//! | `unseen-combo` | randomised, with a held-out colour × shape pair | ones whose object is that pair |
//! | `counterfactual` | randomised | "pick up" each object that has a name, in turn |
//! | `absent` | randomised | ones to refuse (absent, ambiguous), and valid ones |

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::action::Outcome;
use crate::data::{draw_scene, Drawn, World};
use crate::model::Config;
use crate::scene::camera::view_of;
use crate::scene::draw::EVAL_SEED_START;
use crate::scene::heldout_style::StyledScene;
use crate::scene::random::{Extras, RandomScene, RandomSpec, HELD_OUT_PAIRS};
use crate::scene::{
    pick_named, sample_command, sample_refusal, Command, Family, Lang, Layout, LayoutSpec,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Split {
    Iid,
    Style,
    Small,
    Crowded,
    UnseenCombo,
    Counterfactual,
    Absent,
}

impl Split {
    pub const ALL: [Split; 7] = [
        Split::Iid,
        Split::Style,
        Split::Small,
        Split::Crowded,
        Split::UnseenCombo,
        Split::Counterfactual,
        Split::Absent,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Split::Iid => "iid",
            Split::Style => "style",
            Split::Small => "small",
            Split::Crowded => "crowded",
            Split::UnseenCombo => "unseen-combo",
            Split::Counterfactual => "counterfactual",
            Split::Absent => "absent",
        }
    }

    pub fn parse(name: &str) -> Result<Split> {
        match Split::ALL.iter().find(|s| s.name() == name) {
            Some(s) => Ok(*s),
            None => bail!(
                "unknown split {name:?}: use one of {}",
                Split::ALL.map(|s| s.name()).join(", ")
            ),
        }
    }

    /// First seed of the split's own held-out range.
    pub fn first_seed(&self) -> u64 {
        EVAL_SEED_START
            + match self {
                Split::Iid => 0,
                Split::Style => 300_000,
                Split::Small => 400_000,
                Split::Crowded => 500_000,
                Split::UnseenCombo => 600_000,
                Split::Counterfactual => 700_000,
                Split::Absent => 800_000,
            }
    }

    /// Scene `seed` of this split and its commands, or `None` when the seed
    /// gives no usable scene (a crowded draw that placed fewer than 8).
    pub fn scene(&self, seed: u64, cfg: &Config) -> Result<Option<(Drawn, Vec<Command>)>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let held_out = HELD_OUT_PAIRS.to_vec();
        let randomised = |spec: &RandomSpec| -> Result<Drawn> {
            let scene = RandomScene::generate(seed, spec);
            let v = view_of(scene.render()?, &scene.camera, &scene.layout, cfg);
            Ok(Drawn {
                view: v.view,
                layout: v.layout,
            })
        };
        let drawn = match self {
            Split::Iid => draw_scene(seed, World::Plain, &held_out, Extras::default(), cfg)?,
            Split::Style => {
                let base = LayoutSpec {
                    exclude: held_out.clone(),
                    ..LayoutSpec::default()
                };
                let scene = StyledScene::generate(seed, &base);
                let v = view_of(scene.render()?, &scene.camera, &scene.layout, cfg);
                Drawn {
                    view: v.view,
                    layout: v.layout,
                }
            }
            Split::Small => {
                let mut spec = RandomSpec::default();
                spec.layout.sizes = Some((0.06, 0.10));
                randomised(&spec)?
            }
            Split::Crowded => {
                let mut spec = RandomSpec::default();
                spec.layout.min_objects = 8;
                spec.layout.sizes = Some((0.08, 0.16));
                let d = randomised(&spec)?;
                if d.layout.objects.len() < 8 {
                    return Ok(None);
                }
                d
            }
            Split::UnseenCombo => {
                let mut spec = RandomSpec::default();
                spec.layout.force = Some(HELD_OUT_PAIRS[rng.random_range(0..HELD_OUT_PAIRS.len())]);
                randomised(&spec)?
            }
            Split::Counterfactual | Split::Absent => randomised(&RandomSpec::default())?,
        };
        let layout = &drawn.layout;
        let commands = match self {
            Split::UnseenCombo => {
                let unseen = |id: usize| {
                    layout
                        .object(id)
                        .is_some_and(|o| HELD_OUT_PAIRS.contains(&(o.color, o.shape)))
                };
                let mut out = Vec::new();
                for family in Family::ALL {
                    for lang in Lang::ALL {
                        let found = (0..40)
                            .filter_map(|_| sample_command(layout, family, lang, &mut rng))
                            .find(|c| unseen(c.target));
                        out.extend(found);
                    }
                }
                out
            }
            Split::Counterfactual => {
                let mut out = Vec::new();
                for o in &layout.objects {
                    for lang in Lang::ALL {
                        out.extend(pick_named(layout, o.id, lang, &mut rng));
                    }
                }
                out
            }
            Split::Absent => {
                let mut out = one_per_family(layout, &mut rng);
                for lang in Lang::ALL {
                    for outcome in [Outcome::Absent, Outcome::Ambiguous] {
                        out.extend(sample_refusal(layout, outcome, lang, &[], &mut rng));
                    }
                }
                out
            }
            _ => one_per_family(layout, &mut rng),
        };
        Ok(Some((drawn, commands)))
    }
}

/// One command per family and language, where the scene allows it.
fn one_per_family(layout: &Layout, rng: &mut impl Rng) -> Vec<Command> {
    let mut out = Vec::new();
    for family in Family::ALL {
        for lang in Lang::ALL {
            out.extend(sample_command(layout, family, lang, rng));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::scene::NO_TARGET;

    #[test]
    fn counterfactual_commands_name_every_nameable_object_in_both_languages() {
        let cfg = Config::tiny();
        for seed in Split::Counterfactual.first_seed()..Split::Counterfactual.first_seed() + 8 {
            let (d, commands) = Split::Counterfactual.scene(seed, &cfg).unwrap().unwrap();
            let named = crate::scene::minimal_references(&d.layout)
                .iter()
                .filter(|r| r.is_some())
                .count();
            assert_eq!(commands.len(), 2 * named, "seed {seed}");
            for c in &commands {
                let o = d.layout.object(c.target).unwrap();
                let w = &c.action.waypoints[0];
                assert_eq!([w.x, w.y], o.center);
                assert_eq!(c.family, Family::Pick);
            }
            for lang in Lang::ALL {
                let targets: Vec<usize> = commands
                    .iter()
                    .filter(|c| c.lang == lang)
                    .map(|c| c.target)
                    .collect();
                let mut unique = targets.clone();
                unique.dedup();
                assert_eq!(unique.len(), named, "seed {seed}: {targets:?}");
            }
        }
    }

    #[test]
    fn the_absent_split_asks_for_refusals_in_both_languages() {
        let cfg = Config::tiny();
        let (mut seen, mut kinds) = (BTreeSet::new(), BTreeSet::new());
        for seed in Split::Absent.first_seed()..Split::Absent.first_seed() + 40 {
            let (d, commands) = Split::Absent.scene(seed, &cfg).unwrap().unwrap();
            for c in commands {
                if c.action.outcome.is_act() {
                    assert!(d.layout.object(c.target).is_some());
                    assert!(c.refused_name.is_none());
                } else {
                    assert_eq!(c.target, NO_TARGET);
                    // The name it carries fits no object (absent) or two
                    // or more (ambiguous), and the words say it.
                    let name = c.refused_name.expect("a command to refuse keeps its name");
                    let fits = d
                        .layout
                        .objects
                        .iter()
                        .filter(|o| {
                            o.shape == name.shape() && name.color().is_none_or(|k| o.color == k)
                        })
                        .count();
                    match c.action.outcome {
                        Outcome::Absent => assert_eq!(fits, 0, "{c:?}"),
                        _ => assert!(fits >= 2, "{c:?}"),
                    }
                    if c.lang == Lang::En {
                        assert!(c.text.contains(&name.en()), "{c:?}");
                    }
                    seen.insert((c.action.outcome, c.lang));
                    let shape_only = matches!(name, crate::scene::Reference::Shape(_));
                    kinds.insert((c.action.outcome, shape_only));
                }
            }
        }
        // Both outcomes in both languages, and with both kinds of name.
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(kinds.len(), 4, "{kinds:?}");
    }

    #[test]
    fn unseen_combo_commands_are_about_a_held_out_pair() {
        let cfg = Config::tiny();
        let mut n = 0;
        for seed in Split::UnseenCombo.first_seed()..Split::UnseenCombo.first_seed() + 10 {
            let (d, commands) = Split::UnseenCombo.scene(seed, &cfg).unwrap().unwrap();
            for c in commands {
                let o = d.layout.object(c.target).unwrap();
                assert!(HELD_OUT_PAIRS.contains(&(o.color, o.shape)));
                n += 1;
            }
        }
        assert!(n >= 20, "{n}");
    }

    #[test]
    fn split_names_round_trip_and_seeds_are_held_out() {
        for s in Split::ALL {
            assert_eq!(Split::parse(s.name()).unwrap(), s);
            assert!(s.first_seed() >= EVAL_SEED_START);
        }
        assert!(Split::parse("nope")
            .unwrap_err()
            .to_string()
            .contains("unseen-combo"));
    }
}
