//! Referring expressions: how an object can be named so that only it fits.
//!
//! This follows the minimal-referring rule of Language-Table (Lynch et al.,
//! "Interactive Language", 2022): say "the cup" when there is one cup, "the red
//! cup" when there are several cups but one red one, and otherwise (two red
//! cups) name it through a relation to a landmark that has its own minimal name:
//! "the red cup next to the bowl", "the red cup left of the blue ball".
//!
//! Relations are only used where they are clear:
//! - next to: the nearest candidate to the landmark, at least [`NEXT_TO_MARGIN`]
//!   nearer than any other, and within [`NEXT_TO_RANGE`] of it;
//! - left of, right of, above, below (compared centre to centre): the target is
//!   beyond the landmark by at least [`SIDE_MARGIN`], and every other candidate
//!   is not on that side at all.

use super::layout::{distance, Layout};
use super::object::{Color, Object, Shape};
use serde::{Deserialize, Serialize};

/// How much nearer the landmark "next to" needs the target to be than any other candidate.
pub const NEXT_TO_MARGIN: f32 = 0.1;
/// The farthest a target can be from its landmark and still be "next to" it.
pub const NEXT_TO_RANGE: f32 = 0.35;
/// How far past the landmark's centre the target's centre must lie for "left of" etc.
pub const SIDE_MARGIN: f32 = 0.05;

/// A name for one object that fits no other object in the scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reference {
    /// The only object of its shape: "the cup".
    Shape(Shape),
    /// The only object of its colour and shape: "the red cup".
    ColorShape(Color, Shape),
}

impl Reference {
    pub fn shape(&self) -> Shape {
        match *self {
            Reference::Shape(s) | Reference::ColorShape(_, s) => s,
        }
    }

    pub fn color(&self) -> Option<Color> {
        match *self {
            Reference::Shape(_) => None,
            Reference::ColorShape(c, _) => Some(c),
        }
    }

    /// Whether the name fits `o`: its shape, and its colour where the name
    /// has one.
    pub fn fits(&self, o: &Object) -> bool {
        o.shape == self.shape() && self.color().is_none_or(|c| o.color == c)
    }

    /// English noun phrase with its article: "the cup", "the red cup".
    pub fn en(&self) -> String {
        match self {
            Reference::Shape(s) => format!("the {}", s.name_en()),
            Reference::ColorShape(c, s) => format!("the {} {}", c.name_en(), s.name_en()),
        }
    }

    /// Korean noun phrase in its canonical wording: "컵", "빨간 컵".
    pub fn ko(&self) -> String {
        match self {
            Reference::Shape(s) => s.name_ko().to_string(),
            Reference::ColorShape(c, s) => format!("{} {}", c.name_ko(), s.name_ko()),
        }
    }
}

/// A spatial relation from a target to a landmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    NextTo,
    LeftOf,
    RightOf,
    Above,
    Below,
}

impl Relation {
    pub const ALL: [Relation; 5] = [
        Relation::NextTo,
        Relation::LeftOf,
        Relation::RightOf,
        Relation::Above,
        Relation::Below,
    ];
}

/// "The `target` that is `relation` the `landmark`", valid in its scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelationalRef {
    /// Index into `layout.objects` of the object meant.
    pub target: usize,
    pub relation: Relation,
    /// Index of the landmark, which has a minimal [`Reference`] of its own.
    pub landmark: usize,
    pub landmark_ref: Reference,
}

/// The minimal name of every object, by index: `None` where a relation is
/// needed, or where only a colour no command names ([`Color::UNNAMED`])
/// would tell it apart. Unnamed objects still count against "the cup".
pub fn minimal_references(layout: &Layout) -> Vec<Option<Reference>> {
    let objs = &layout.objects;
    objs.iter()
        .map(|o| {
            let same_shape = objs.iter().filter(|p| p.shape == o.shape).count();
            let same_kind = objs
                .iter()
                .filter(|p| p.shape == o.shape && p.color == o.color)
                .count();
            if same_shape == 1 {
                Some(Reference::Shape(o.shape))
            } else if same_kind == 1 && o.color.is_named() {
                Some(Reference::ColorShape(o.color, o.shape))
            } else {
                None
            }
        })
        .collect()
}

/// The minimal name of the object with this id, if it has one.
pub fn minimal_reference(layout: &Layout, id: usize) -> Option<Reference> {
    let index = layout.objects.iter().position(|o| o.id == id)?;
    minimal_references(layout)[index]
}

/// Every clear relational name in the scene, given the minimal names `refs`
/// (from [`minimal_references`]). Only objects without a minimal name get
/// one, and only in a colour commands name.
pub fn relational_references(layout: &Layout, refs: &[Option<Reference>]) -> Vec<RelationalRef> {
    let objs = &layout.objects;
    let mut out = Vec::new();
    // Each group of same-colour, same-shape objects is handled once, from its first member.
    for (first, o) in objs.iter().enumerate() {
        if refs[first].is_some()
            || !o.color.is_named()
            || objs[..first].iter().any(|p| same_kind(p, o))
        {
            continue;
        }
        let candidates: Vec<usize> = (0..objs.len())
            .filter(|&i| same_kind(&objs[i], o))
            .collect();
        for (landmark, landmark_ref) in refs.iter().enumerate() {
            let Some(landmark_ref) = *landmark_ref else {
                continue;
            };
            for relation in Relation::ALL {
                if let Some(target) = resolve(objs, &candidates, relation, &objs[landmark]) {
                    out.push(RelationalRef {
                        target,
                        relation,
                        landmark,
                        landmark_ref,
                    });
                }
            }
        }
    }
    out
}

fn same_kind(a: &Object, b: &Object) -> bool {
    a.color == b.color && a.shape == b.shape
}

/// The one candidate that is clearly `relation` the landmark, if there is one.
fn resolve(
    objs: &[Object],
    candidates: &[usize],
    relation: Relation,
    landmark: &Object,
) -> Option<usize> {
    let l = landmark.center;
    if relation == Relation::NextTo {
        let mut by_distance: Vec<(f32, usize)> = candidates
            .iter()
            .map(|&i| (distance(objs[i].center, l), i))
            .collect();
        by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (near, target) = by_distance[0];
        let clear = by_distance
            .get(1)
            .is_none_or(|&(next, _)| next - near >= NEXT_TO_MARGIN);
        return (clear && near <= NEXT_TO_RANGE).then_some(target);
    }
    // How far past the landmark, on the asked side, each candidate lies.
    let past = |o: &Object| match relation {
        Relation::LeftOf => l[0] - o.center[0],
        Relation::RightOf => o.center[0] - l[0],
        Relation::Above => l[1] - o.center[1],
        Relation::Below => o.center[1] - l[1],
        Relation::NextTo => 0.0,
    };
    let mut fits = candidates
        .iter()
        .filter(|&&i| past(&objs[i]) >= SIDE_MARGIN);
    let target = *fits.next()?;
    let others_clear = candidates
        .iter()
        .all(|&i| i == target || past(&objs[i]) <= 0.0);
    (fits.next().is_none() && others_clear).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(id: usize, color: Color, shape: Shape, x: f32, y: f32) -> Object {
        Object {
            id,
            color,
            shape,
            center: [x, y],
            size: 0.14,
            angle: 0.0,
            tone: 1.0,
            handle: Default::default(),
        }
    }

    /// Two cups, a ball and two blocks, always in the same places, in `colors`.
    fn five(colors: [Color; 5]) -> Layout {
        let places = [
            (Shape::Cup, 0.2, 0.2),
            (Shape::Cup, 0.5, 0.2),
            (Shape::Ball, 0.8, 0.5),
            (Shape::Block, 0.2, 0.8),
            (Shape::Block, 0.8, 0.8),
        ];
        let objects = places
            .into_iter()
            .zip(colors)
            .enumerate()
            .map(|(id, ((shape, x, y), color))| obj(id, color, shape, x, y))
            .collect();
        Layout { seed: 0, objects }
    }

    #[test]
    fn minimal_names_follow_language_table() {
        use Color::*;
        let layout = five([Red, Blue, Green, Red, Red]);
        let refs = minimal_references(&layout);
        assert_eq!(refs[0].map(|r| r.en()), Some("the red cup".into()));
        assert_eq!(refs[2].map(|r| r.en()), Some("the ball".into()));
        assert_eq!(refs[3], None);
        let rels = relational_references(&layout, &refs);
        // The red block left of the blue cup is block 3; right of the ball is nothing.
        assert!(rels
            .iter()
            .any(|r| r.target == 3 && r.relation == Relation::LeftOf && r.landmark == 1));
        assert!(rels
            .iter()
            .any(|r| r.target == 4 && r.relation == Relation::NextTo && r.landmark == 2));
        assert!(!rels
            .iter()
            .any(|r| r.relation == Relation::RightOf && r.landmark == 2));
        assert!(rels.iter().all(|r| r.target == 3 || r.target == 4));
    }

    #[test]
    fn an_unnamed_colour_is_never_said_but_still_counts() {
        use Color::*;
        let layout = five([Red, Grey, Black, White, White]);
        let refs = minimal_references(&layout);
        // The grey cup makes "the cup" ambiguous, so the red one needs its colour,
        // and the grey one has no name at all.
        assert_eq!(refs[0].map(|r| r.en()), Some("the red cup".into()));
        assert_eq!(refs[1], None);
        // Alone in its shape, an unnamed object is "the ball".
        assert_eq!(refs[2].map(|r| r.en()), Some("the ball".into()));
        assert_eq!(refs[3], None);
        // No relation picks out an unnamed object, though one may be a landmark.
        let rels = relational_references(&layout, &refs);
        assert!(rels
            .iter()
            .all(|r| layout.objects[r.target].color.is_named()));
        let named = five([Red, Grey, Black, Red, Red]);
        let rels = relational_references(&named, &minimal_references(&named));
        assert!(rels.iter().any(|r| r.landmark == 2));
    }
}
