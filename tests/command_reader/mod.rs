//! An independent reader of generated commands, for the scene tests.
//!
//! It has its own word lists and a naive parser, written apart from the
//! generator: it finds the noun phrases (colour + shape), the relation and the
//! push direction in a command's text, resolves them in the scene with plain
//! rules, and checks the particles after Korean nouns.

use vla_demo::action::{Gripper, PUSH_DISTANCE};
use vla_demo::scene::{Color, Command, Direction, Family, Lang, Layout, Object, Shape};

/// What the words of a command say, read without the generator's help.
#[derive(Debug, Default)]
struct Reading {
    /// Noun phrases in the order they appear: (colour if said, shape).
    nouns: Vec<(Option<Color>, Shape)>,
    relation: Option<&'static str>,
    direction: Option<Direction>,
}

fn read_en(text: &str) -> Reading {
    let colors = [
        ("red", Color::Red),
        ("green", Color::Green),
        ("blue", Color::Blue),
        ("yellow", Color::Yellow),
        ("purple", Color::Purple),
        ("orange", Color::Orange),
    ];
    let shapes = [
        ("cup", Shape::Cup),
        ("block", Shape::Block),
        ("ball", Shape::Ball),
        ("bowl", Shape::Bowl),
    ];
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut r = Reading::default();
    let mut color = None;
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or("");
        if let Some(&(_, c)) = colors.iter().find(|(n, _)| n == w) {
            color = Some(c);
        } else if let Some(&(_, s)) = shapes.iter().find(|(n, _)| n == w) {
            r.nouns.push((color.take(), s));
        } else if *w == "beside" || (*w == "next" && next == "to") {
            r.relation = Some("next to");
        } else if (*w == "left" || *w == "right") && next == "of" {
            r.relation = Some(if *w == "left" { "left of" } else { "right of" });
        } else if *w == "above" || *w == "below" {
            r.relation = Some(if *w == "above" { "above" } else { "below" });
        } else if !r.nouns.is_empty() {
            // Push directions come after the object.
            r.direction = match *w {
                "left" => Some(Direction::Left),
                "right" => Some(Direction::Right),
                "up" | "upwards" => Some(Direction::Up),
                "down" | "downwards" => Some(Direction::Down),
                _ => r.direction,
            };
        }
    }
    r
}

fn read_ko(text: &str) -> Reading {
    let colors = [
        (["빨간", "빨간색"], Color::Red),
        (["초록", "초록색"], Color::Green),
        (["파란", "파란색"], Color::Blue),
        (["노란", "노란색"], Color::Yellow),
        (["보라", "보라색"], Color::Purple),
        (["주황", "주황색"], Color::Orange),
    ];
    // Shape words, whether they end in a consonant, and the particles seen after them.
    let shapes = [
        ("컵", Shape::Cup, true),
        ("블록", Shape::Block, true),
        ("큐브", Shape::Block, false),
        ("공", Shape::Ball, true),
        ("그릇", Shape::Bowl, true),
    ];
    let relations = [
        ("옆", "next to"),
        ("왼쪽", "left of"),
        ("오른쪽", "right of"),
        ("위", "above"),
        ("위쪽", "above"),
    ];
    let relations = relations
        .into_iter()
        .chain([("아래", "below"), ("아래쪽", "below")]);
    let relations: Vec<_> = relations.collect();
    let directions = [
        ("왼쪽으로", Direction::Left),
        ("오른쪽으로", Direction::Right),
        ("위로", Direction::Up),
        ("위쪽으로", Direction::Up),
        ("아래로", Direction::Down),
        ("아래쪽으로", Direction::Down),
    ];
    let mut r = Reading::default();
    let mut color = None;
    for w in text.split_whitespace() {
        if let Some(&(_, c)) = colors.iter().find(|(names, _)| names.contains(&w)) {
            color = Some(c);
        } else if let Some(&(name, s, consonant)) = shapes.iter().find(|(n, ..)| w.starts_with(n)) {
            let particle = &w[name.len()..];
            let allowed: &[&str] = if consonant {
                &["", "을", "이", "에", "의"]
            } else {
                &["", "를", "가", "에", "의"]
            };
            assert!(
                allowed.contains(&particle),
                "wrong particle in {w:?} of {text:?}"
            );
            r.nouns.push((color.take(), s));
        } else if let Some(&(_, d)) = directions.iter().find(|(n, _)| *n == w) {
            r.direction = Some(d);
        } else if let Some(&(_, rel)) = relations
            .iter()
            .find(|(n, _)| [format!("{n}에"), format!("{n}의")].contains(&w.to_string()))
        {
            r.relation = Some(rel);
        }
    }
    r
}

/// The objects a noun phrase fits.
fn fits(layout: &Layout, (color, shape): (Option<Color>, Shape)) -> Vec<usize> {
    let ok = |o: &&Object| o.shape == shape && color.is_none_or(|c| o.color == c);
    layout.objects.iter().filter(ok).map(|o| o.id).collect()
}

/// The one object a plain (relation-free) noun phrase names; also checks the
/// phrase is minimal: a colour is only said when the shape alone is not unique.
fn resolve_plain(layout: &Layout, np: (Option<Color>, Shape), text: &str) -> usize {
    let ids = fits(layout, np);
    assert_eq!(ids.len(), 1, "{np:?} in {text:?} fits {ids:?}");
    if np.0.is_some() {
        assert!(
            fits(layout, (None, np.1)).len() > 1,
            "{text:?} names a colour it does not need"
        );
    }
    ids[0]
}

/// Which object the words of `c` pick out, by this file's own reading.
pub fn resolve(layout: &Layout, c: &Command) -> usize {
    let r = match c.lang {
        Lang::En => read_en(&c.text),
        Lang::Ko => read_ko(&c.text),
    };
    let t = &c.text;
    match c.family {
        Family::Pick => {
            assert!(r.nouns.len() == 1 && r.relation.is_none(), "{t:?}: {r:?}");
            resolve_plain(layout, r.nouns[0], t)
        }
        Family::Place => {
            assert_eq!(r.nouns.len(), 2, "{t:?}");
            let bowl = resolve_plain(layout, r.nouns[1], t);
            assert_eq!(Some(bowl), c.destination, "{t:?}");
            assert_eq!(layout.objects[bowl].shape, Shape::Bowl, "{t:?}");
            resolve_plain(layout, r.nouns[0], t)
        }
        Family::Push => {
            assert_eq!(r.nouns.len(), 1, "{t:?}");
            assert_eq!(r.direction, c.direction, "{t:?}");
            resolve_plain(layout, r.nouns[0], t)
        }
        Family::Relational => {
            assert_eq!(r.nouns.len(), 2, "{t:?}");
            // English: target, relation, landmark. Korean: landmark, relation, target.
            let (target, landmark) = match c.lang {
                Lang::En => (r.nouns[0], r.nouns[1]),
                Lang::Ko => (r.nouns[1], r.nouns[0]),
            };
            let l = layout.objects[resolve_plain(layout, landmark, t)].center;
            let candidates = fits(layout, target);
            assert!(
                target.0.is_some() && candidates.len() >= 2,
                "{t:?} needs no relation"
            );
            let at = |id: usize| layout.objects[id].center;
            let chosen: Vec<usize> = match r.relation {
                Some("next to") => {
                    let d = |id: usize| (at(id)[0] - l[0]).hypot(at(id)[1] - l[1]);
                    let best = candidates
                        .iter()
                        .map(|&i| d(i))
                        .fold(f32::INFINITY, f32::min);
                    candidates
                        .into_iter()
                        .filter(|&i| d(i) < best + 0.05)
                        .collect()
                }
                Some("left of") => candidates
                    .into_iter()
                    .filter(|&i| at(i)[0] < l[0])
                    .collect(),
                Some("right of") => candidates
                    .into_iter()
                    .filter(|&i| at(i)[0] > l[0])
                    .collect(),
                Some("above") => candidates
                    .into_iter()
                    .filter(|&i| at(i)[1] < l[1])
                    .collect(),
                Some("below") => candidates
                    .into_iter()
                    .filter(|&i| at(i)[1] > l[1])
                    .collect(),
                other => panic!("{t:?}: no relation read ({other:?})"),
            };
            assert_eq!(chosen.len(), 1, "{t:?} fits {chosen:?}");
            chosen[0]
        }
    }
}

/// The expected action, computed here from the family and the objects.
pub fn check_action(layout: &Layout, c: &Command) {
    let o = layout.objects[c.target].center;
    let w = &c.action.waypoints;
    assert_eq!(
        (w[0].x, w[0].y, w[0].gripper),
        (o[0], o[1], Gripper::Close),
        "{:?}",
        c.text
    );
    match c.family {
        Family::Pick | Family::Relational => assert_eq!(w.len(), 1),
        Family::Place => {
            let b = layout.objects[c.destination.unwrap()].center;
            assert_eq!(
                (w.len(), w[1].x, w[1].y, w[1].gripper),
                (2, b[0], b[1], Gripper::Open)
            );
            assert_ne!(layout.objects[c.target].shape, Shape::Bowl);
        }
        Family::Push => {
            let (dx, dy) = match c.direction.unwrap() {
                Direction::Left => (-PUSH_DISTANCE, 0.0),
                Direction::Right => (PUSH_DISTANCE, 0.0),
                Direction::Up => (0.0, -PUSH_DISTANCE),
                Direction::Down => (0.0, PUSH_DISTANCE),
            };
            assert_eq!(
                (w.len(), w[1].x, w[1].y, w[1].gripper),
                (2, o[0] + dx, o[1] + dy, Gripper::Open)
            );
            assert!([w[1].x, w[1].y].iter().all(|v| (0.05..=0.95).contains(v)));
        }
    }
}
