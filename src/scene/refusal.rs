//! Commands to refuse: ones whose object is not in the scene ("the green
//! cup" where there is no green cup) or fits more than one object ("the red
//! block" beside two red blocks). The model answers them with an outcome
//! token instead of a waypoint (see [`crate::action::Outcome`]).

use rand::Rng;

use super::grammar::{choose, Command, Direction, Family, Lang, NO_TARGET};
use super::layout::Layout;
use super::object::{Color, Shape};
use super::refer::{minimal_references, Reference};
use super::{english, korean};
use crate::action::{Action, Outcome};

/// A command the model should refuse, in pick, push or place form:
/// - [`Outcome::Absent`]: its object is not in the scene ("the green cup"
///   where there is no green cup, "the ball" where there is no ball);
/// - [`Outcome::Ambiguous`]: its name fits two or more objects ("the red
///   block" beside two red blocks, "the cup" beside three cups).
///
/// Names that pair a colour with a shape in `exclude` are never used, so a
/// held-out colour × shape pair stays unseen even in words. `None` where the
/// scene allows no such name.
pub fn sample_refusal(
    layout: &Layout,
    outcome: Outcome,
    lang: Lang,
    exclude: &[(Color, Shape)],
    rng: &mut impl Rng,
) -> Option<Command> {
    let count = |c: Option<Color>, s: Shape| {
        layout
            .objects
            .iter()
            .filter(|o| o.shape == s && c.is_none_or(|c| o.color == c))
            .count()
    };
    let mut names: Vec<Reference> = Vec::new();
    for s in Shape::ALL {
        let fits = |n: usize| match outcome {
            Outcome::Absent => n == 0,
            Outcome::Ambiguous => n >= 2,
            Outcome::Act => false,
        };
        if fits(count(None, s)) {
            names.push(Reference::Shape(s));
        }
        for c in Color::ALL {
            if fits(count(Some(c), s)) && !exclude.contains(&(c, s)) {
                names.push(Reference::ColorShape(c, s));
            }
        }
    }
    let name = *choose(rng, &names)?;
    let noun = |r: Reference, rng: &mut _| match lang {
        Lang::En => r.en(),
        Lang::Ko => korean::noun(r, rng),
    };
    let obj = noun(name, rng);
    let bowls: Vec<Reference> = minimal_references(layout)
        .into_iter()
        .flatten()
        .filter(|r| r.shape() == Shape::Bowl)
        .collect();
    let roll = rng.random_range(0..4);
    let (family, text, direction) = if roll == 3 && name.shape() != Shape::Bowl && !bowls.is_empty()
    {
        let bowl = noun(*choose(rng, &bowls)?, rng);
        let text = match lang {
            Lang::En => english::place_command(&obj, &bowl, rng),
            Lang::Ko => korean::place_command(&obj, &bowl, rng),
        };
        (Family::Place, text, None)
    } else if roll == 2 {
        let d = Direction::ALL[rng.random_range(0..4)];
        let text = match lang {
            Lang::En => english::push_command(&obj, d, rng),
            Lang::Ko => korean::push_command(&obj, d, rng),
        };
        (Family::Push, text, Some(d))
    } else {
        let text = match lang {
            Lang::En => english::pick_command(&obj, rng),
            Lang::Ko => korean::pick_command(&obj, rng),
        };
        (Family::Pick, text, None)
    };
    Some(Command {
        text,
        lang,
        family,
        target: NO_TARGET,
        destination: None,
        direction,
        landmark: None,
        relation: None,
        action: Action::refuse(outcome),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn refusals_name_what_is_missing_or_repeated() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut absent, mut ambiguous) = (0, 0);
        for seed in 0..300 {
            let layout = Layout::generate(seed);
            for lang in Lang::ALL {
                for outcome in [Outcome::Absent, Outcome::Ambiguous] {
                    let Some(c) = sample_refusal(&layout, outcome, lang, &[], &mut rng) else {
                        continue;
                    };
                    assert_eq!((c.target, c.action.outcome), (NO_TARGET, outcome));
                    assert!(c.action.waypoints.is_empty());
                    if c.family == Family::Place {
                        continue; // the bowl's name would be read back too
                    }
                    // How many objects the words could mean, read back from the text.
                    let fits = layout
                        .objects
                        .iter()
                        .filter(|o| {
                            let shape_named = match lang {
                                Lang::En => c.text.contains(o.shape.name_en()),
                                Lang::Ko => korean::shape_words(o.shape)
                                    .iter()
                                    .any(|w| c.text.contains(w)),
                            };
                            let colour_named = Color::ALL.iter().find(|k| match lang {
                                Lang::En => c.text.contains(&format!("{} ", k.name_en())),
                                Lang::Ko => {
                                    korean::color_words(**k).iter().any(|w| c.text.contains(w))
                                }
                            });
                            shape_named && colour_named.is_none_or(|k| *k == o.color)
                        })
                        .count();
                    match outcome {
                        Outcome::Absent => {
                            absent += 1;
                            assert_eq!(fits, 0, "{:?} in seed {seed}", c.text)
                        }
                        _ => {
                            ambiguous += 1;
                            assert!(fits >= 2, "{:?} in seed {seed}", c.text)
                        }
                    }
                }
            }
        }
        assert!(absent > 400 && ambiguous > 100, "{absent} {ambiguous}");
    }
}
