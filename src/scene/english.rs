//! English wording of commands: a few verbs and phrasings per family, in
//! lower case without final punctuation, as typed to a robot.

use super::grammar::Direction;
use super::refer::Relation;
use rand::Rng;

fn pick<'a>(rng: &mut impl Rng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

/// Sometimes ask politely.
fn polite(rng: &mut impl Rng, s: String) -> String {
    match rng.random_range(0..20) {
        0..=2 => format!("please {s}"),
        3 => format!("{s} please"),
        _ => s,
    }
}

/// "pick up the red cup"
pub fn pick_command(obj: &str, rng: &mut impl Rng) -> String {
    pick_with(obj, true, rng)
}

/// `split` allows "pick the cup up", which reads badly around a long phrase.
fn pick_with(obj: &str, split: bool, rng: &mut impl Rng) -> String {
    let s = if split && rng.random_range(0..9) == 0 {
        format!("pick {obj} up")
    } else {
        format!("{} {obj}", pick(rng, &["pick up", "grab", "lift", "take"]))
    };
    polite(rng, s)
}

/// "put the red block in the blue bowl"
pub fn place_command(obj: &str, bowl: &str, rng: &mut impl Rng) -> String {
    let verb = pick(rng, &["put", "put", "place", "drop"]);
    let prep = pick(rng, &["in", "into"]);
    polite(rng, format!("{verb} {obj} {prep} {bowl}"))
}

/// "push the green ball to the left"
pub fn push_command(obj: &str, direction: Direction, rng: &mut impl Rng) -> String {
    let verb = pick(rng, &["push", "push", "slide", "nudge"]);
    let way = pick(rng, direction_words(direction));
    polite(rng, format!("{verb} {obj} {way}"))
}

/// "pick up the red block next to the blue cup"
pub fn relational_command(
    target: &str,
    relation: Relation,
    landmark: &str,
    rng: &mut impl Rng,
) -> String {
    let rel = pick(rng, relation_words(relation));
    let that = if rng.random_range(0..5) == 0 {
        "that is "
    } else {
        ""
    };
    pick_with(&format!("{target} {that}{rel} {landmark}"), false, rng)
}

/// Ways to say a push direction.
pub fn direction_words(direction: Direction) -> &'static [&'static str] {
    match direction {
        Direction::Left => &["to the left", "to the left", "left"],
        Direction::Right => &["to the right", "to the right", "right"],
        Direction::Up => &["up", "up", "upwards"],
        Direction::Down => &["down", "down", "downwards"],
    }
}

/// Ways to say a relation between a target and its landmark.
pub fn relation_words(relation: Relation) -> &'static [&'static str] {
    match relation {
        Relation::NextTo => &["next to", "next to", "beside"],
        Relation::LeftOf => &["left of", "to the left of"],
        Relation::RightOf => &["right of", "to the right of"],
        Relation::Above => &["above"],
        Relation::Below => &["below"],
    }
}
