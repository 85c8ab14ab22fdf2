//! Commands: what can be asked in a scene, in English and Korean, with the
//! action each one expects.
//!
//! Four families, each generated only where its target is unambiguous:
//! - pick: "pick up the red cup" -> `[(target centre, close)]`
//! - place: "put the red block in the blue bowl" ->
//!   `[(object centre, close), (bowl centre, open)]`; the object is never a bowl
//! - push: "push the green ball to the left" ->
//!   `[(object centre, close), (centre moved PUSH_DISTANCE that way, open)]`,
//!   only where the end point stays inside `[0.05, 0.95]`
//! - relational: a pick whose target needs a relation to a landmark,
//!   "pick up the red block next to the blue cup" (see [`super::refer`]).
//!
//! Sampling is cheap (no allocation beyond a few small vectors), because the
//! trainer draws a fresh command for every example.

use super::layout::Layout;
use super::object::Shape;
use super::refer::{minimal_references, relational_references, Reference, Relation};
use super::{english, korean};
use crate::action::{Action, Gripper, Waypoint, PUSH_DISTANCE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Push end points must stay inside `[PUSH_LIMIT, 1 - PUSH_LIMIT]`.
pub const PUSH_LIMIT: f32 = 0.05;

/// The `target` of a command that names no single object (a refusal).
pub const NO_TARGET: usize = usize::MAX;

/// Mixed into a layout's seed to seed [`commands_for`].
const COMMANDS_SEED: u64 = 0xC044_A4D5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Ko,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ko];

    /// "en" or "ko", as in the JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Pick,
    Place,
    Push,
    Relational,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Pick,
        Family::Place,
        Family::Push,
        Family::Relational,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Family::Pick => "pick",
            Family::Place => "place",
            Family::Push => "push",
            Family::Relational => "relational",
        }
    }
}

/// A push direction in the image: up is away from the camera's bottom edge (y decreases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Left,
    Right,
    Up,
    Down,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::Left,
        Direction::Right,
        Direction::Up,
        Direction::Down,
    ];

    /// Unit step in normalised image coordinates.
    pub fn delta(&self) -> [f32; 2] {
        match self {
            Direction::Left => [-1.0, 0.0],
            Direction::Right => [1.0, 0.0],
            Direction::Up => [0.0, -1.0],
            Direction::Down => [0.0, 1.0],
        }
    }
}

/// One command and the action it expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub text: String,
    pub lang: Lang,
    pub family: Family,
    /// Id of the object picked, placed or pushed; [`NO_TARGET`] for a refusal.
    pub target: usize,
    /// Id of the bowl, for place.
    pub destination: Option<usize>,
    /// For push.
    pub direction: Option<Direction>,
    /// Id of the landmark that tells the target apart, for relational commands.
    #[serde(default)]
    pub landmark: Option<usize>,
    /// How the target relates to the landmark, for relational commands.
    #[serde(default)]
    pub relation: Option<Relation>,
    /// Which of the command's words (split on whitespace) name the
    /// landmark, for relational commands: "the blue cup" in "pick up the
    /// red block next to the blue cup", "파란 컵" in "파란 컵 옆에 있는 빨간
    /// 블록을 집어". Training can ground those words on the landmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landmark_words: Option<std::ops::Range<usize>>,
    /// The name a command to refuse uses ("the red block" beside two red
    /// blocks), so an evaluation can tell a shape's name from a colour and
    /// shape's; `None` for a command to act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_name: Option<Reference>,
    pub action: Action,
}

/// One random valid command of this family and language, or `None` where the
/// scene allows none (no bowl for place, no duplicate pair for relational, ...).
pub fn sample_command(
    layout: &Layout,
    family: Family,
    lang: Lang,
    rng: &mut impl Rng,
) -> Option<Command> {
    let objs = &layout.objects;
    let refs = minimal_references(layout);
    let named: Vec<(usize, Reference)> = refs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .collect();
    let noun = |r: Reference, rng: &mut _| match lang {
        Lang::En => r.en(),
        Lang::Ko => korean::noun(r, rng),
    };
    let mut command = Command {
        text: String::new(),
        lang,
        family,
        target: 0,
        destination: None,
        direction: None,
        landmark: None,
        relation: None,
        landmark_words: None,
        refused_name: None,
        action: Action::new(Vec::new()),
    };
    match family {
        Family::Pick => {
            let &(i, r) = choose(rng, &named)?;
            let obj = noun(r, rng);
            command.text = match lang {
                Lang::En => english::pick_command(&obj, rng),
                Lang::Ko => korean::pick_command(&obj, rng),
            };
            command.target = objs[i].id;
            command.action = pick_action(objs[i].center);
        }
        Family::Place => {
            let movers: Vec<_> = named
                .iter()
                .filter(|(_, r)| r.shape() != Shape::Bowl)
                .collect();
            let bowls: Vec<_> = named
                .iter()
                .filter(|(_, r)| r.shape() == Shape::Bowl)
                .collect();
            let &&(i, r) = choose(rng, &movers)?;
            let &&(b, rb) = choose(rng, &bowls)?;
            let (obj, bowl) = (noun(r, rng), noun(rb, rng));
            command.text = match lang {
                Lang::En => english::place_command(&obj, &bowl, rng),
                Lang::Ko => korean::place_command(&obj, &bowl, rng),
            };
            command.target = objs[i].id;
            command.destination = Some(objs[b].id);
            command.action = two_step(objs[i].center, objs[b].center);
        }
        Family::Push => {
            let pushes: Vec<(usize, Reference, Direction, [f32; 2])> = named
                .iter()
                .flat_map(|&(i, r)| Direction::ALL.map(|d| (i, r, d, push_end(objs[i].center, d))))
                .filter(|&(.., end)| {
                    end.iter()
                        .all(|v| (PUSH_LIMIT..=1.0 - PUSH_LIMIT).contains(v))
                })
                .collect();
            let &(i, r, d, end) = choose(rng, &pushes)?;
            let obj = noun(r, rng);
            command.text = match lang {
                Lang::En => english::push_command(&obj, d, rng),
                Lang::Ko => korean::push_command(&obj, d, rng),
            };
            command.target = objs[i].id;
            command.direction = Some(d);
            command.action = two_step(objs[i].center, end);
        }
        Family::Relational => {
            let rels = relational_references(layout, &refs);
            let rel = *choose(rng, &rels)?;
            let t = &objs[rel.target];
            let target = noun(Reference::ColorShape(t.color, t.shape), rng);
            let landmark = noun(rel.landmark_ref, rng);
            command.text = match lang {
                Lang::En => english::relational_command(&target, rel.relation, &landmark, rng),
                Lang::Ko => korean::relational_command(&target, rel.relation, &landmark, rng),
            };
            command.target = t.id;
            command.landmark = Some(objs[rel.landmark].id);
            command.relation = Some(rel.relation);
            // English names the landmark last ("... next to the blue cup"),
            // Korean first ("파란 컵 옆에 있는 ...").
            command.landmark_words = phrase_words(&command.text, &landmark, lang == Lang::En);
            command.action = pick_action(t.center);
        }
    }
    Some(command)
}

/// The words of `text` (split on whitespace) that spell `phrase`: its last
/// occurrence when `last`, else its first.
fn phrase_words(text: &str, phrase: &str, last: bool) -> Option<std::ops::Range<usize>> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let want: Vec<&str> = phrase.split_whitespace().collect();
    let mut starts = (0..=words.len().checked_sub(want.len())?)
        .filter(|&i| words[i..i + want.len()] == want[..]);
    let start = if last {
        starts.next_back()
    } else {
        starts.next()
    }?;
    Some(start..start + want.len())
}

/// "Pick up" the object with id `id` by its minimal name, or `None` when
/// it needs a relation (for the counterfactual split: the same picture,
/// another object named).
pub fn pick_named(layout: &Layout, id: usize, lang: Lang, rng: &mut impl Rng) -> Option<Command> {
    let r = (*minimal_references(layout).get(id)?)?;
    let o = layout.object(id)?;
    let obj = match lang {
        Lang::En => r.en(),
        Lang::Ko => korean::noun(r, rng),
    };
    Some(Command {
        text: match lang {
            Lang::En => english::pick_command(&obj, rng),
            Lang::Ko => korean::pick_command(&obj, rng),
        },
        lang,
        family: Family::Pick,
        target: id,
        destination: None,
        direction: None,
        landmark: None,
        relation: None,
        landmark_words: None,
        refused_name: None,
        action: pick_action(o.center),
    })
}

/// A deterministic handful of commands for the ground truth: for each family
/// and language, up to `per_family` commands that ask for different things.
pub fn commands_for(layout: &Layout, per_family: usize) -> Vec<Command> {
    let mut rng = ChaCha8Rng::seed_from_u64(layout.seed ^ COMMANDS_SEED);
    let mut out = Vec::new();
    for family in Family::ALL {
        for lang in Lang::ALL {
            let mut got: Vec<Command> = Vec::with_capacity(per_family);
            for _ in 0..per_family * 8 {
                if got.len() == per_family {
                    break;
                }
                let Some(c) = sample_command(layout, family, lang, &mut rng) else {
                    break;
                };
                let meaning =
                    |c: &Command| (c.target, c.destination, c.direction, c.landmark, c.relation);
                if !got.iter().any(|g| meaning(g) == meaning(&c)) {
                    got.push(c);
                }
            }
            out.extend(got);
        }
    }
    out
}

/// Where a push in `direction` takes an object centred at `center`.
pub fn push_end(center: [f32; 2], direction: Direction) -> [f32; 2] {
    let [dx, dy] = direction.delta();
    [
        center[0] + dx * PUSH_DISTANCE,
        center[1] + dy * PUSH_DISTANCE,
    ]
}

fn pick_action(at: [f32; 2]) -> Action {
    Action::new(vec![Waypoint {
        x: at[0],
        y: at[1],
        gripper: Gripper::Close,
    }])
}

/// Grasp at `from`, release at `to`: place and push.
fn two_step(from: [f32; 2], to: [f32; 2]) -> Action {
    Action::new(vec![
        Waypoint {
            x: from[0],
            y: from[1],
            gripper: Gripper::Close,
        },
        Waypoint {
            x: to[0],
            y: to[1],
            gripper: Gripper::Open,
        },
    ])
}

pub(super) fn choose<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.random_range(0..items.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_deterministic_and_well_formed() {
        for seed in 0..100 {
            let layout = Layout::generate(seed);
            let a = commands_for(&layout, 3);
            assert_eq!(a, commands_for(&layout, 3));
            for c in &a {
                let t = layout.object(c.target).unwrap();
                let w = &c.action.waypoints;
                assert_eq!(
                    (w[0].x, w[0].y, w[0].gripper),
                    (t.center[0], t.center[1], Gripper::Close)
                );
                match c.family {
                    Family::Pick | Family::Relational => assert_eq!(w.len(), 1),
                    Family::Place => {
                        let b = layout.object(c.destination.unwrap()).unwrap();
                        assert_eq!(b.shape, Shape::Bowl);
                        assert_ne!(t.shape, Shape::Bowl);
                        assert_eq!([w[1].x, w[1].y], b.center);
                    }
                    Family::Push => {
                        assert_eq!([w[1].x, w[1].y], push_end(t.center, c.direction.unwrap()));
                    }
                }
                assert!(!c.text.is_empty() && c.text == c.text.trim());
            }
        }
    }

    /// The landmark's words are its name, wherever the language puts it:
    /// last in English, first in Korean.
    #[test]
    fn the_landmark_words_name_the_landmark() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut seen = [0; 2];
        for seed in 0..300 {
            let layout = Layout::generate(seed);
            let refs = minimal_references(&layout);
            for lang in Lang::ALL {
                let Some(c) = sample_command(&layout, Family::Relational, lang, &mut rng) else {
                    continue;
                };
                let span = c.landmark_words.clone().expect("a relational command");
                let words: Vec<&str> = c.text.split_whitespace().collect();
                let named = &words[span.clone()];
                let i = layout
                    .objects
                    .iter()
                    .position(|o| Some(o.id) == c.landmark)
                    .unwrap();
                let r = refs[i].expect("a landmark has a name of its own");
                match lang {
                    Lang::En => {
                        assert_eq!(named.join(" "), r.en(), "{:?}", c.text);
                        let after = &words[span.end..];
                        assert!(after.is_empty() || after == ["please"], "{:?}", c.text);
                    }
                    Lang::Ko => {
                        assert_eq!(span.start, 0, "{:?}", c.text);
                        assert_eq!(named.len(), 1 + r.color().is_some() as usize);
                        let shape = named.last().unwrap();
                        assert!(
                            korean::shape_words(r.shape()).contains(shape),
                            "{:?}",
                            c.text
                        );
                    }
                }
                seen[lang as usize] += 1;
            }
            for c in commands_for(&layout, 2) {
                let relational = c.family == Family::Relational;
                assert_eq!(c.landmark_words.is_some(), relational, "{:?}", c.text);
            }
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
