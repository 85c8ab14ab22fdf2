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
    let names = names_to_refuse(layout, outcome, exclude);
    let name = *choose(rng, &names)?;
    Some(refusal_command(layout, name, outcome, lang, rng))
}

/// An absent name whose colour and shape are both on the table, each on
/// another object: "the purple cup" beside a purple ball and a blue cup.
/// Neither word alone can tell that nothing fits, only the two bound
/// together. `None` where the scene allows no such name.
pub fn sample_hard_negative(
    layout: &Layout,
    lang: Lang,
    exclude: &[(Color, Shape)],
    rng: &mut impl Rng,
) -> Option<Command> {
    let present = |f: &dyn Fn(&super::Object) -> bool| layout.objects.iter().any(f);
    let names: Vec<Reference> = names_to_refuse(layout, Outcome::Absent, exclude)
        .into_iter()
        .filter(|r| match *r {
            Reference::ColorShape(c, s) => present(&|o| o.color == c) && present(&|o| o.shape == s),
            _ => false,
        })
        .collect();
    let name = *choose(rng, &names)?;
    Some(refusal_command(layout, name, Outcome::Absent, lang, rng))
}

/// Every shape or colour-and-shape name that fits no object (`Absent`) or
/// two or more (`Ambiguous`), leaving out the pairs in `exclude`.
fn names_to_refuse(
    layout: &Layout,
    outcome: Outcome,
    exclude: &[(Color, Shape)],
) -> Vec<Reference> {
    let refuse = |name: Reference| {
        let n = layout.objects.iter().filter(|o| name.fits(o)).count();
        match outcome {
            Outcome::Absent => n == 0,
            Outcome::Ambiguous => n >= 2,
            Outcome::Act => false,
        }
    };
    let mut names = Vec::new();
    for s in Shape::ALL {
        if refuse(Reference::Shape(s)) {
            names.push(Reference::Shape(s));
        }
        for c in Color::ALL {
            if refuse(Reference::ColorShape(c, s)) && !exclude.contains(&(c, s)) {
                names.push(Reference::ColorShape(c, s));
            }
        }
    }
    names
}

/// A pick, push or place command naming `name`, answered with `outcome`.
fn refusal_command(
    layout: &Layout,
    name: Reference,
    outcome: Outcome,
    lang: Lang,
    rng: &mut impl Rng,
) -> Command {
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
        let bowl = noun(bowls[rng.random_range(0..bowls.len())], rng);
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
    Command {
        text,
        lang,
        family,
        target: NO_TARGET,
        destination: None,
        direction,
        landmark: None,
        relation: None,
        landmark_words: None,
        refused_name: Some(name),
        action: Action::refuse(outcome),
    }
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

    #[test]
    fn hard_negatives_bind_a_present_colour_to_a_present_shape() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut made = 0;
        for seed in 0..300 {
            let layout = Layout::generate(seed);
            // The names this scene allows: colour and shape each on the
            // table, never on the same object.
            let objs = &layout.objects;
            let allowed: Vec<(Color, Shape)> = Color::ALL
                .into_iter()
                .flat_map(|c| Shape::ALL.into_iter().map(move |s| (c, s)))
                .filter(|&(c, s)| {
                    objs.iter().any(|o| o.color == c)
                        && objs.iter().any(|o| o.shape == s)
                        && !objs.iter().any(|o| (o.color, o.shape) == (c, s))
                })
                .collect();
            for lang in Lang::ALL {
                let Some(c) = sample_hard_negative(&layout, lang, &[], &mut rng) else {
                    assert!(
                        allowed.is_empty(),
                        "seed {seed}: none drawn from {allowed:?}"
                    );
                    continue;
                };
                made += 1;
                assert_eq!((c.target, c.action.outcome), (NO_TARGET, Outcome::Absent));
                if lang == Lang::En && c.family != Family::Place {
                    let named = |&(k, s): &(Color, Shape)| {
                        c.text.contains(&format!("{} {}", k.name_en(), s.name_en()))
                    };
                    assert!(
                        allowed.iter().any(named),
                        "seed {seed}: {:?} not in {allowed:?}",
                        c.text
                    );
                }
            }
        }
        assert!(made > 300, "{made}");
    }
}
