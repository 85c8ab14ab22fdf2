//! Ground truth beside an image (`scene.png` + `scene.json`, as written by
//! `vla-demo scene`): which object the command is about, and whether the
//! attention found it. The definitions are those of `vla-demo eval`:
//!
//! - **pointing game**: the patch with the largest head-averaged `<boa>`
//!   weight is one of the target's patches (`grid::target_patches`: covered
//!   at least `grid::PATCH_COVER`);
//! - **attention mass**: the share of that map on the target's patches.
//!
//! The target is the command's own target when the command is one of the
//! scene's listed commands; otherwise the object a relation in the command
//! picks out ("the red block next to the blue cup", "파란 컵 옆에 있는 빨간
//! 블록"); otherwise the object whose name ("the red cup", "빨간 컵") the
//! command mentions first. The report says which rule found it. When no
//! object fits the name the command uses ("the green cup" with no green
//! cup), or two do ("the red block" beside two red blocks), there is no
//! target, and the report says what the model should have answered: "not
//! here" or "which one?". The target is never taken from the prediction
//! itself, which would score a run against its own answer.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::action::Outcome;
use crate::grid::{object_at, patch_coverage, target_patches, Frame, SceneObject};
use crate::maps;
use crate::pipeline::Prediction;
use crate::report::{Grounding, Target};
use crate::scene::{
    english, korean, minimal_references, relational_references, Color, Layout, SceneTruth, Shape,
};
use crate::tokens::normalise_command;

/// A scene's ground truth, read and laid onto the patch grid.
pub struct Scene {
    pub truth_path: PathBuf,
    pub truth: SceneTruth,
    pub layout: Layout,
    pub objects: Vec<SceneObject>,
    pub grid: usize,
}

/// The ground truth beside `image`, if there is one that fits it. A JSON
/// that cannot be read, or that describes another image shape, gives a
/// warning (returned) rather than an error: grounding is an extra.
pub fn load_beside(image: &Path, frame: &Frame, grid: usize) -> (Option<Scene>, Option<String>) {
    let path = image.with_extension("json");
    if !path.is_file() {
        return (None, None);
    }
    let truth = match SceneTruth::load(&path) {
        Ok(t) => t,
        Err(e) => return (None, Some(format!("ignoring the ground truth: {e:#}"))),
    };
    match Scene::new(path, truth, frame, grid) {
        Ok(scene) => (Some(scene), None),
        Err(msg) => (None, Some(msg)),
    }
}

impl Scene {
    /// Ground truth (read from `truth_path`, or made in memory) laid onto the
    /// patch grid; a warning instead when it cannot describe this image.
    pub fn new(
        truth_path: PathBuf,
        truth: SceneTruth,
        frame: &Frame,
        grid: usize,
    ) -> Result<Scene, String> {
        if frame.width != frame.height {
            return Err(format!(
                "ignoring the ground truth {}: it describes a square scene, but the image is {}×{}",
                truth_path.display(),
                frame.width,
                frame.height
            ));
        }
        let layout = truth.layout();
        let objects = layout
            .objects
            .iter()
            .map(|o| SceneObject {
                id: o.id,
                name: object_name(&layout, o.id),
                coverage: patch_coverage(o, grid),
            })
            .collect();
        Ok(Scene {
            truth_path,
            truth,
            layout,
            objects,
            grid,
        })
    }
}

/// "red cup", or "red cup #3" when the scene has two of them.
pub fn object_name(layout: &Layout, id: usize) -> String {
    let Some(o) = layout.object(id) else {
        return format!("object #{id}");
    };
    let name = format!("{} {}", o.color.name_en(), o.shape.name_en());
    let twins = layout
        .objects
        .iter()
        .filter(|x| x.color == o.color && x.shape == o.shape)
        .count();
    if twins > 1 {
        format!("{name} #{id}")
    } else {
        name
    }
}

fn same_command(a: &str, b: &str) -> bool {
    normalise_command(a).to_lowercase() == normalise_command(b).to_lowercase()
}

/// The command's target and how it was found.
pub fn find_target(scene: &Scene, command: &str) -> Option<Target> {
    let named = |id: usize, found_by: &str| Target {
        id,
        name: object_name(&scene.layout, id),
        found_by: found_by.to_string(),
    };
    if let Some(c) = scene
        .truth
        .commands
        .iter()
        .find(|c| same_command(&c.text, command))
    {
        return Some(named(c.target, "the scene's list of commands"));
    }
    let text = normalise_command(command).to_lowercase();
    if let Some(id) = relational_target(&scene.layout, &text) {
        return Some(named(id, "the relation in the command"));
    }
    // The first kind of object the command names is its object ("put the
    // ball in the bowl" is about the ball): exactly one must fit.
    if let Some((color, shape)) = kind_named(&text) {
        let mut fits = scene
            .layout
            .objects
            .iter()
            .filter(|o| o.shape == shape && color.is_none_or(|c| o.color == c));
        return match (fits.next(), fits.next()) {
            (Some(o), None) => Some(named(o.id, "the kind of object the command names")),
            _ => None,
        };
    }
    let mentioned = scene
        .truth
        .objects
        .iter()
        .flat_map(|o| {
            [&o.name_en, &o.name_ko]
                .into_iter()
                .flatten()
                .map(move |n| (o.id, n.to_lowercase()))
        })
        .filter_map(|(id, n)| text.find(&n).map(|at| (at, std::cmp::Reverse(n.len()), id)))
        .min();
    mentioned.map(|(_, _, id)| named(id, "its name in the command"))
}

/// What the scene says the model should answer: act when the command names
/// one object, absent when its name fits none, ambiguous when it fits two or
/// more; `None` when the command names no kind of object this reader knows.
pub fn expected_outcome(scene: &Scene, command: &str, target: Option<&Target>) -> Option<Outcome> {
    if target.is_some() {
        return Some(Outcome::Act);
    }
    let text = normalise_command(command).to_lowercase();
    let (color, shape) = kind_named(&text)?;
    let n = scene
        .layout
        .objects
        .iter()
        .filter(|o| o.shape == shape && color.is_none_or(|c| o.color == c))
        .count();
    Some(match n {
        0 => Outcome::Absent,
        1 => Outcome::Act,
        _ => Outcome::Ambiguous,
    })
}

/// The first kind of object a command names, with its colour if one is said
/// just before it: "the green cup" -> (green, cup), "공을 밀어" -> (none, ball).
/// `text` is normalised and lower-case.
fn kind_named(text: &str) -> Option<(Option<Color>, Shape)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let shape = Shape::ALL.into_iter().find(|s| {
            w.trim_end_matches(|c: char| !c.is_alphanumeric()) == s.name_en()
                || korean::shape_words(*s).iter().any(|k| w.starts_with(k))
        });
        let Some(shape) = shape else { continue };
        let before = i.checked_sub(1).map(|j| words[j]);
        let color = before.and_then(|b| {
            Color::ALL
                .into_iter()
                .find(|c| b == c.name_en() || korean::color_words(*c).contains(&b))
        });
        return Some((color, shape));
    }
    None
}

/// The object a relational command means, from the scene's relational
/// references (the objects that need a landmark to be told apart): the one
/// whose kind, relation and landmark the command names in the grammar's
/// order. English puts the target first ("red block next to the blue cup"),
/// Korean the landmark first ("파란 컵 옆에 있는 빨간 블록"). `text` is
/// normalised and lower-case.
fn relational_target(layout: &Layout, text: &str) -> Option<usize> {
    let refs = minimal_references(layout);
    relational_references(layout, &refs)
        .into_iter()
        .find_map(|r| {
            let target = &layout.objects[r.target];
            let landmark_en = r.landmark_ref.en();
            let kind = format!("{} {}", target.color.name_en(), target.shape.name_en());
            let english = english::relation_words(r.relation).iter().any(|w| {
                text.contains(&format!("{kind} {w} {landmark_en}"))
                    || text.contains(&format!("{kind} that is {w} {landmark_en}"))
            });
            let landmarks = korean_nouns(r.landmark_ref.color(), r.landmark_ref.shape());
            let targets = korean_nouns(Some(target.color), target.shape);
            let korean = landmarks.iter().any(|l| {
                korean::relation_words(r.relation).iter().any(|w| {
                    text.find(&format!("{l} {w}"))
                        .is_some_and(|at| targets.iter().any(|t| text[at..].contains(t.as_str())))
                })
            });
            (english || korean).then_some(target.id)
        })
}

/// Every way the Korean grammar can name a kind of object ("빨간 컵", "빨간색 컵", ...).
fn korean_nouns(color: Option<crate::scene::Color>, shape: crate::scene::Shape) -> Vec<String> {
    let shapes = korean::shape_words(shape);
    match color {
        None => shapes.iter().map(|s| s.to_string()).collect(),
        Some(c) => korean::color_words(c)
            .iter()
            .flat_map(|c| shapes.iter().map(move |s| format!("{c} {s}")))
            .collect(),
    }
}

/// Pointing game, attention mass, and what the peak and the first waypoint lie on.
pub fn ground(scene: &Scene, command: &str, pred: &Prediction) -> Result<Grounding> {
    let target = find_target(scene, command);
    let peak = maps::argmax(&pred.boa_attention);
    let mask = match &target {
        Some(t) => scene
            .layout
            .object(t.id)
            .map(|o| target_patches(o, scene.grid)),
        None => None,
    };
    let n = pred.boa_attention.len().max(1) as f32;
    let on_point = pred
        .waypoints
        .first()
        .map(|w| scene.layout.object_at(w.x, w.y));
    Ok(Grounding {
        truth: scene.truth_path.display().to_string(),
        expected: expected_outcome(scene, command, target.as_ref()),
        pointing_hit: mask
            .as_ref()
            .map(|m| m.get(peak).copied().unwrap_or(0.0) > 0.5),
        attention_mass: mask
            .as_ref()
            .map(|m| pred.boa_attention.iter().zip(m).map(|(a, t)| a * t).sum()),
        uniform_mass: mask.as_ref().map(|m| m.iter().sum::<f32>() / n),
        peak_on: object_at(&scene.objects, peak),
        waypoint_on: match on_point {
            Some(Some(id)) => object_name(&scene.layout, id),
            Some(None) => "table".into(),
            None => "nothing (no waypoint)".into(),
        },
        waypoint_on_target: match (&target, on_point) {
            (Some(t), Some(on)) => Some(on == Some(t.id)),
            _ => None,
        },
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::{sample_command, Family, Lang};
    use rand::SeedableRng;

    #[test]
    fn the_relation_rule_finds_the_target_of_every_relational_command() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut checked = [0, 0];
        for seed in 0..300 {
            let layout = Layout::generate(seed);
            for (k, lang) in Lang::ALL.into_iter().enumerate() {
                let Some(c) = sample_command(&layout, Family::Relational, lang, &mut rng) else {
                    continue;
                };
                let text = normalise_command(&c.text).to_lowercase();
                assert_eq!(
                    relational_target(&layout, &text),
                    Some(c.target),
                    "seed {seed}: {:?}",
                    c.text
                );
                checked[k] += 1;
            }
        }
        assert!(checked.iter().all(|&n| n > 50), "{checked:?}");
        // A plain pick names no relation.
        let layout = Layout::generate(0);
        assert_eq!(relational_target(&layout, "pick up the red cup"), None);
    }

    #[test]
    fn the_kind_a_command_names_is_read_in_both_languages() {
        assert_eq!(
            kind_named("pick up the purple ball"),
            Some((Some(Color::Purple), Shape::Ball))
        );
        assert_eq!(
            kind_named("put the cup in the red bowl"),
            Some((None, Shape::Cup))
        );
        assert_eq!(
            kind_named("보라색 공을 집어"),
            Some((Some(Color::Purple), Shape::Ball))
        );
        assert_eq!(
            kind_named("큐브를 왼쪽으로 밀어"),
            Some((None, Shape::Block))
        );
        assert_eq!(kind_named("hello there"), None);
    }
}
