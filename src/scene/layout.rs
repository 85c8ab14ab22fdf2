//! Layouts: which objects stand where, drawn deterministically from a seed.
//!
//! The generator is tuned so that every command family is common:
//! - about 40% of scenes hold two objects of the same colour and shape, which
//!   only a relation can tell apart ("the red block next to the blue cup");
//! - about three scenes in four hold a bowl, so that "put ... in the bowl" is
//!   possible in most scenes.
//!
//! Objects never overlap: the circles that hold them (see [`Shape::extent`])
//! stay [`GAP`] apart and [`BORDER`] away from the image edge. All numbers are
//! rounded to 4 decimals, so the JSON ground truth is short and reads back into
//! exactly the same `f32` values.

use super::object::{Color, Object, Shape};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f32::consts::TAU;

/// Smallest and largest object size (diameter or block side), normalised.
pub const MIN_OBJECT_SIZE: f32 = 0.13;
pub const MAX_OBJECT_SIZE: f32 = 0.19;
/// Smallest free space between two objects.
pub const GAP: f32 = 0.02;
/// Smallest free space between an object and the image edge.
pub const BORDER: f32 = 0.04;
/// Fewest and most objects in a scene.
pub const MIN_OBJECTS: usize = 2;
pub const MAX_OBJECTS: usize = 6;

/// How often a scene gets a same-colour, same-shape pair (given enough objects),
/// and how often it gets a bowl.
const PAIR_PROBABILITY: f64 = 0.38;
const BOWL_PROBABILITY: f64 = 0.75;
/// Shapes of the remaining objects: bowls are rarer, so most scenes have one bowl.
const FILL_SHAPES: [Shape; 10] = [
    Shape::Cup,
    Shape::Cup,
    Shape::Cup,
    Shape::Block,
    Shape::Block,
    Shape::Block,
    Shape::Ball,
    Shape::Ball,
    Shape::Ball,
    Shape::Bowl,
];
/// Placement attempts per object before it is left out.
const PLACEMENT_TRIES: usize = 400;

/// A scene: the seed it came from and its objects, with `objects[i].id == i`
/// and ids in reading order (top to bottom, then left to right).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub seed: u64,
    pub objects: Vec<Object>,
}

impl Layout {
    /// The layout for `seed`. It does not depend on the render size.
    pub fn generate(seed: u64) -> Layout {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let count = rng.random_range(MIN_OBJECTS..=MAX_OBJECTS);

        // What to place: a duplicate pair first, then a bowl, then anything.
        let mut kinds: Vec<(Color, Shape)> = Vec::with_capacity(count);
        if count >= 3 && rng.random_bool(PAIR_PROBABILITY) {
            let kind = (
                random_color(&mut rng),
                [Shape::Cup, Shape::Block, Shape::Ball][rng.random_range(0..3)],
            );
            kinds.extend([kind, kind]);
        }
        if kinds.len() < count && rng.random_bool(BOWL_PROBABILITY) {
            kinds.push((random_color(&mut rng), Shape::Bowl));
        }
        while kinds.len() < count {
            let shape = FILL_SHAPES[rng.random_range(0..FILL_SHAPES.len())];
            kinds.push((random_color(&mut rng), shape));
        }

        let mut drafts: Vec<Object> = kinds
            .into_iter()
            .map(|(color, shape)| {
                let (lo, hi) = match shape {
                    Shape::Bowl => (0.15, MAX_OBJECT_SIZE),
                    _ => (MIN_OBJECT_SIZE, 0.17),
                };
                Object {
                    id: 0,
                    color,
                    shape,
                    center: [0.5, 0.5],
                    size: round4(rng.random_range(lo..=hi)),
                    angle: round4(rng.random_range(0.0..TAU)),
                    tone: round4(rng.random_range(0.9..=1.08)),
                }
            })
            .collect();
        // Big ones first: they are the hardest to fit.
        drafts.sort_by(|a, b| b.extent().total_cmp(&a.extent()));

        let mut objects: Vec<Object> = Vec::with_capacity(drafts.len());
        for mut o in drafts {
            let e = o.extent();
            let (lo, hi) = (BORDER + e, 1.0 - BORDER - e);
            for _ in 0..PLACEMENT_TRIES {
                let c = [
                    round4(rng.random_range(lo..=hi)),
                    round4(rng.random_range(lo..=hi)),
                ];
                // Rounding may move a centre by 5e-5: keep it inside the border.
                if c.iter().any(|&v| v < lo || v > hi) {
                    continue;
                }
                let free = objects
                    .iter()
                    .all(|p| distance(p.center, c) >= p.extent() + e + GAP);
                if free {
                    o.center = c;
                    objects.push(o);
                    break;
                }
            }
        }

        objects.sort_by(|a, b| {
            a.center[1]
                .total_cmp(&b.center[1])
                .then(a.center[0].total_cmp(&b.center[0]))
        });
        for (i, o) in objects.iter_mut().enumerate() {
            o.id = i;
        }
        Layout { seed, objects }
    }

    /// The id of the object under a normalised point, if any.
    pub fn object_at(&self, x: f32, y: f32) -> Option<usize> {
        self.objects.iter().find(|o| o.contains(x, y)).map(|o| o.id)
    }

    /// The object with this id.
    pub fn object(&self, id: usize) -> Option<&Object> {
        self.objects.iter().find(|o| o.id == id)
    }
}

fn random_color(rng: &mut impl Rng) -> Color {
    Color::ALL[rng.random_range(0..Color::ALL.len())]
}

/// Round to 4 decimals (1/45 of a pixel at 224 px).
fn round4(v: f32) -> f32 {
    (v * 1e4).round() / 1e4
}

pub(crate) fn distance(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_deterministic_and_spaced() {
        for seed in 0..200 {
            let a = Layout::generate(seed);
            assert_eq!(a, Layout::generate(seed));
            assert!(
                (MIN_OBJECTS..=MAX_OBJECTS).contains(&a.objects.len()),
                "seed {seed}"
            );
            for (i, o) in a.objects.iter().enumerate() {
                assert_eq!(o.id, i);
                let b = o.bbox();
                assert!(
                    b[0] >= BORDER
                        && b[1] >= BORDER
                        && b[2] <= 1.0 - BORDER
                        && b[3] <= 1.0 - BORDER
                );
                assert_eq!(a.object_at(o.center[0], o.center[1]), Some(i));
                for p in &a.objects[i + 1..] {
                    assert!(distance(o.center, p.center) >= o.extent() + p.extent() + GAP);
                }
            }
        }
    }
}
