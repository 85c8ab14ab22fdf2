//! Where the first point of an answer to a valid command landed: on the
//! target, or on what the model took for it. `vla-demo eval` reports the
//! share of each kind per split, so a learner can tell a misread colour from
//! a misread shape, and both from a point that found the right object and
//! missed its outline, without looking at single pictures.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::action::Action;
use crate::scene::Layout;

/// What the first point of an answer to a valid command landed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Landing {
    /// The object the command names.
    Target,
    /// Another object of the target's colour and shape.
    Twin,
    /// An object of the target's colour but another shape.
    SameColor,
    /// An object of the target's shape but another colour.
    SameShape,
    /// An object that shares neither.
    OtherObject,
    /// No object, but the target is the nearest one: the right object,
    /// missed by its outline.
    BesideTarget,
    /// No object, and another one is nearer: the table, or a distractor on it.
    Table,
    /// The model refused, or gave no point.
    Refused,
}

impl Landing {
    pub const ALL: [Landing; 8] = [
        Landing::Target,
        Landing::Twin,
        Landing::SameColor,
        Landing::SameShape,
        Landing::OtherObject,
        Landing::BesideTarget,
        Landing::Table,
        Landing::Refused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Landing::Target => "target",
            Landing::Twin => "same colour and shape",
            Landing::SameColor => "same colour",
            Landing::SameShape => "same shape",
            Landing::OtherObject => "other object",
            Landing::BesideTarget => "beside the target",
            Landing::Table => "table",
            Landing::Refused => "refused",
        }
    }

    /// Sorts the first point of `got` against the object `target` of `layout`.
    pub fn of(layout: &Layout, target: usize, got: &Action) -> Landing {
        let (Some(p), true) = (got.waypoints.first(), got.outcome.is_act()) else {
            return Landing::Refused;
        };
        let Some(want) = layout.objects.iter().find(|o| o.id == target) else {
            return Landing::Table;
        };
        let hits: Vec<_> = layout
            .objects
            .iter()
            .filter(|o| o.contains(p.x, p.y))
            .collect();
        if hits.iter().any(|o| o.id == target) {
            return Landing::Target;
        }
        // Objects do not overlap, so at most one is hit; the first is kept.
        let nearest = layout
            .objects
            .iter()
            .min_by(|a, b| a.sdf(p.x, p.y).total_cmp(&b.sdf(p.x, p.y)));
        match hits.first() {
            None if nearest.is_some_and(|o| o.id == target) => Landing::BesideTarget,
            None => Landing::Table,
            Some(o) => match (o.color == want.color, o.shape == want.shape) {
                (true, true) => Landing::Twin,
                (true, false) => Landing::SameColor,
                (false, true) => Landing::SameShape,
                (false, false) => Landing::OtherObject,
            },
        }
    }
}

/// The share of each kind among `landings` (empty when there are none).
pub fn shares(landings: impl Iterator<Item = Landing>) -> BTreeMap<Landing, f64> {
    let all: Vec<Landing> = landings.collect();
    if all.is_empty() {
        return BTreeMap::new();
    }
    Landing::ALL
        .iter()
        .map(|&l| {
            let hit = all.iter().filter(|&&x| x == l).count();
            (l, hit as f64 / all.len() as f64)
        })
        .collect()
}

/// [`shares`] as a Markdown table; empty when there are none.
pub fn table(shares: &BTreeMap<Landing, f64>) -> String {
    if shares.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n| first point landed on | share of valid commands |\n|---|---|\n");
    for (k, v) in shares {
        s += &format!("| {} | {:.1}% |\n", k.name(), v * 100.0);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Gripper, Outcome, Waypoint};
    use crate::scene::{Color, Object, Shape};

    fn object(id: usize, color: Color, shape: Shape, x: f32) -> Object {
        Object {
            id,
            color,
            shape,
            center: [x, 0.5],
            size: 0.1,
            angle: 0.0,
            tone: 1.0,
            handle: Default::default(),
        }
    }

    fn point_at(x: f32) -> Action {
        Action::new(vec![Waypoint {
            x,
            y: 0.5,
            gripper: Gripper::Close,
        }])
    }

    #[test]
    fn landings_name_what_the_point_hit() {
        let layout = Layout {
            seed: 0,
            objects: vec![
                object(0, Color::Red, Shape::Cup, 0.1),
                object(1, Color::Red, Shape::Cup, 0.25),
                object(2, Color::Red, Shape::Ball, 0.4),
                object(3, Color::Blue, Shape::Cup, 0.55),
                object(4, Color::Green, Shape::Block, 0.7),
            ],
        };
        let cases = [
            (0.1, Landing::Target),
            (0.25, Landing::Twin),
            (0.4, Landing::SameColor),
            (0.55, Landing::SameShape),
            (0.7, Landing::OtherObject),
            (0.06, Landing::Target),
            (0.04, Landing::BesideTarget),
            (0.9, Landing::Table),
        ];
        for (x, want) in cases {
            assert_eq!(
                Landing::of(&layout, 0, &point_at(x)),
                want,
                "point at x = {x}"
            );
        }
        let refused = Action::refuse(Outcome::Absent);
        assert_eq!(Landing::of(&layout, 0, &refused), Landing::Refused);
        assert_eq!(
            Landing::of(&layout, 0, &Action::new(vec![])),
            Landing::Refused
        );
        // Seen from object 3, the blue cup, the red cups share only its shape.
        assert_eq!(Landing::of(&layout, 3, &point_at(0.1)), Landing::SameShape);
    }
}
