use super::super::camera::assert_masks_hold;
use super::super::looks::{MarkKind, Marking};
use super::*;

fn spec_without_damage(seed: u64) -> RandomScene {
    let mut s = RandomScene::generate(seed, &RandomSpec::default());
    s.damage = Damage::none();
    s
}

#[test]
fn the_randomised_world_is_deterministic() {
    for seed in [1, 17, 400] {
        let a = RandomScene::generate(seed, &RandomSpec::default());
        let b = RandomScene::generate(seed, &RandomSpec::default());
        assert_eq!(a.layout, b.layout);
        assert_eq!(a.render().unwrap(), b.render().unwrap());
    }
}

#[test]
fn masks_agree_with_pixels() {
    // Objects are drawn exactly on their masks: every pixel whose centre
    // lies on no object is unchanged when the objects are removed
    // (shadows off, since the bare scene would lack them).
    // Every finish is drawn: flat and shaded, each marking and none.
    let kinds = [
        MarkKind::Dots,
        MarkKind::Stripes,
        MarkKind::Checks,
        MarkKind::Specks,
    ];
    for seed in 0..6 {
        let mut scene = spec_without_damage(seed);
        scene.light.strength = 0.0;
        for (i, look) in scene.looks.iter_mut().enumerate() {
            look.finish.flat = (i + seed as usize).is_multiple_of(2);
            look.finish.marking = kinds.get((i + seed as usize) % 5).map(|&kind| Marking {
                kind,
                period: 0.5,
                turn: 0.3,
                ink: Some(0.0),
            });
        }
        let img = scene.render().unwrap();
        let mut bare = scene.clone();
        bare.layout.objects.clear();
        let table = bare.render().unwrap();
        assert_masks_hold(&scene.camera, &scene.layout, &img, &table, |_| false);
    }
}

#[test]
fn a_capped_camera_draws_the_same_scene_with_fewer_pixels() {
    let capped = with_extras(Extras {
        max_side: Some(200),
        ..Extras::default()
    });
    let mut shrunk = 0;
    for seed in 0..40 {
        let full = RandomScene::generate(seed, &RandomSpec::default());
        let mut small = RandomScene::generate(seed, &capped);
        assert!(
            small.camera.width.max(small.camera.height) <= 200,
            "seed {seed}"
        );
        if full.camera == small.camera {
            assert_eq!(full.layout, small.layout, "seed {seed}");
            continue;
        }
        shrunk += 1;
        // The same objects at the same places on the table, and the same
        // part of the table in view to within a pixel of the smaller
        // picture: only the pixels per table unit change.
        assert_eq!(full.layout, small.layout, "seed {seed}");
        let pixel = 1.0 / small.camera.scale;
        let (fv, sv) = (full.camera.visible(), small.camera.visible());
        assert!(
            fv.iter().zip(sv).all(|(a, b)| (a - b).abs() <= pixel),
            "seed {seed}"
        );
        small.damage = Damage::none();
        small.light.strength = 0.0;
        let img = small.render().unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (small.camera.width, small.camera.height)
        );
        let mut bare = small.clone();
        bare.layout.objects.clear();
        let table = bare.render().unwrap();
        assert_masks_hold(&small.camera, &small.layout, &img, &table, |_| false);
    }
    assert!(
        shrunk > 20,
        "only {shrunk} of 40 cameras were above the cap"
    );
}

#[test]
fn training_never_draws_a_held_out_pair() {
    for seed in 0..300 {
        let s = RandomScene::generate(seed, &RandomSpec::default());
        for o in &s.layout.objects {
            assert!(!HELD_OUT_PAIRS.contains(&(o.color, o.shape)), "seed {seed}");
        }
        let n = s.layout.objects.len();
        assert!((2..=10).contains(&n) || n < 2, "seed {seed}: {n}");
    }
}

#[test]
fn every_shape_is_drawn_flat_and_shaded_plain_and_marked() {
    // Shading and markings must not tell a shape: each shape comes in
    // every finish, in the scenes training draws.
    let spec = with_extras(Extras {
        finishes: true,
        casts: false,
        ..Extras::default()
    });
    let mut seen = std::collections::HashSet::new();
    for seed in 0..400 {
        let s = RandomScene::generate(seed, &spec);
        let plain = RandomScene::generate(seed, &RandomSpec::default());
        // Off, the finishes leave every look plain, and on, they change
        // nothing else in the scene.
        assert_eq!(s.layout, plain.layout);
        for (a, b) in s.looks.iter().zip(&plain.looks) {
            assert!(!b.finish.flat && b.finish.marking.is_none());
            assert_eq!((a.paint, a.variant, a.rim), (b.paint, b.variant, b.rim));
        }
        for (o, look) in s.layout.objects.iter().zip(&s.looks) {
            let mark = look.finish.marking.as_ref().map(|m| m.kind as u8);
            seen.insert((o.shape, look.finish.flat, mark));
        }
    }
    for shape in Shape::ALL {
        for flat in [false, true] {
            for mark in [None, Some(0), Some(1), Some(2), Some(3)] {
                assert!(
                    seen.contains(&(shape, flat, mark)),
                    "{shape:?} {flat} {mark:?}"
                );
            }
        }
    }
}

#[test]
fn hsv_round_trips() {
    for c in Color::ALL {
        let [r, g, b] = c.rgb().map(|v| v as f32 / 255.0);
        let (h, s, v) = to_hsv(r, g, b);
        let back = hsv(h, s, v);
        for (x, y) in back.iter().zip([r, g, b]) {
            assert!((x / 255.0 - y).abs() < 1e-4);
        }
    }
}

#[test]
fn unnamed_paint_changes_colours_only_and_covers_every_shape() {
    let spec = with_extras(Extras {
        unnamed: true,
        ..Extras::default()
    });
    let (mut seen, mut total, mut unnamed) = (std::collections::HashSet::new(), 0, 0);
    for seed in 0..300 {
        let s = RandomScene::generate(seed, &spec);
        let plain = RandomScene::generate(seed, &RandomSpec::default());
        assert!(plain.layout.objects.iter().all(|o| o.color.is_named()));
        assert_eq!(s.layout.objects.len(), plain.layout.objects.len());
        for ((o, p), look) in s
            .layout
            .objects
            .iter()
            .zip(&plain.layout.objects)
            .zip(&s.looks)
        {
            assert_eq!((o.shape, o.center, o.size), (p.shape, p.center, p.size));
            total += 1;
            if o.color != p.color {
                assert!(Color::UNNAMED.contains(&o.color), "seed {seed}");
                // Without hue: the paint's channels stay within a few levels.
                let [r, g, b] = look.paint;
                assert!(r.max(g).max(b) - r.min(g).min(b) < 6.0, "{:?}", look.paint);
                seen.insert((o.color, o.shape));
                unnamed += 1;
            }
        }
    }
    let share = unnamed as f64 / total as f64;
    assert!((share - UNNAMED_SHARE).abs() < 0.05, "{share}");
    assert_eq!(seen.len(), Color::UNNAMED.len() * Shape::ALL.len());
}

#[test]
fn grey_pens_change_only_the_pens_that_wore_a_named_colour() {
    use crate::scene::surroundings::DistractorKind;
    let spec = with_extras(Extras {
        grey_pens: true,
        ..Extras::default()
    });
    let hue = |c: &[f32; 3]| {
        c.iter().fold(f32::MIN, |a, &b| a.max(b)) - c.iter().fold(f32::MAX, |a, &b| a.min(b))
    };
    let (mut pens, mut greyed) = (0, 0);
    for seed in 0..300 {
        let s = RandomScene::generate(seed, &spec);
        let plain = RandomScene::generate(seed, &RandomSpec::default());
        assert_eq!(s.layout, plain.layout, "seed {seed}");
        assert_eq!(s.distractors.len(), plain.distractors.len(), "seed {seed}");
        for (d, p) in s.distractors.iter().zip(&plain.distractors) {
            assert_eq!((d.kind, d.center), (p.kind, p.center), "seed {seed}");
            if d.kind != DistractorKind::Pen {
                assert_eq!(d.colour, p.colour, "seed {seed}");
                continue;
            }
            pens += 1;
            assert!(hue(&d.colour) < 1.0, "seed {seed}: {:?}", d.colour);
            if d.colour != p.colour {
                assert!(hue(&p.colour) > 20.0, "seed {seed}: {:?}", p.colour);
                greyed += 1;
            }
        }
    }
    // Without the extra about half the pens wear a named colour.
    assert!(
        pens > 60 && greyed * 4 > pens && greyed * 4 < 3 * pens,
        "{greyed} of {pens}"
    );
}

/// The default spec with these extras.
fn with_extras(extras: Extras) -> RandomSpec {
    RandomSpec {
        extras,
        ..RandomSpec::default()
    }
}
