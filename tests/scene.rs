//! End-to-end tests of the tabletop world, through the public API only.
//!
//! The command test re-reads every generated command with its own small
//! parser and word lists (written apart from the generator's) and checks that
//! the words pick out exactly the command's target in the scene.

mod command_reader;

use command_reader::{check_action, resolve};
use std::collections::BTreeSet;
use std::path::Path;
use vla_demo::scene::object::Handle;
use vla_demo::scene::random::{RandomScene, RandomSpec};
use vla_demo::scene::{
    commands_for, sample_command, truth, write_scene, Color, Command, Family, Lang, Layout, Object,
    Relation, SceneTruth, Shape,
};

/// Seeds for the broad checks; training uses 0..100000, examples come from 200000..
const SEEDS: std::ops::Range<u64> = 0..300;

// ---------------------------------------------------------------- determinism

#[test]
fn same_seed_gives_byte_identical_png_and_json() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for seed in [0, 7, 123_456, u64::MAX] {
        let name = format!("s{seed}.png");
        write_scene(&Layout::generate(seed), 224, &a.path().join(&name)).unwrap();
        write_scene(&Layout::generate(seed), 224, &b.path().join(&name)).unwrap();
        for file in [name.clone(), name.replace(".png", ".json")] {
            let (x, y) = (
                std::fs::read(a.path().join(&file)).unwrap(),
                std::fs::read(b.path().join(&file)).unwrap(),
            );
            assert!(!x.is_empty() && x == y, "{file} differs between two runs");
        }
        // The PNG decodes to the render.
        let png = image::open(a.path().join(&name)).unwrap().to_rgb8();
        assert_eq!(png, Layout::generate(seed).render(224).unwrap());
    }
    assert_ne!(Layout::generate(1), Layout::generate(2));
}

#[test]
fn ground_truth_reads_back_into_the_same_scene() {
    let dir = tempfile::tempdir().unwrap();
    for seed in [3, 99, 250_000] {
        let layout = Layout::generate(seed);
        let png = dir.path().join("scene.png");
        write_scene(&layout, 160, &png).unwrap();
        let t = SceneTruth::load(&dir.path().join("scene.json")).unwrap();
        assert_eq!(t, truth(&layout, 160));
        assert_eq!((t.seed, t.size), (seed, 160));
        assert_eq!(t.layout(), layout);
        assert_eq!(t.layout().render(160).unwrap(), layout.render(160).unwrap());
    }
    let err = SceneTruth::load(&dir.path().join("missing.json")).unwrap_err();
    assert!(format!("{err:#}").contains("missing.json"));
}

// ------------------------------------------------------------------ geometry

#[test]
fn objects_never_overlap_and_keep_their_margins() {
    for seed in SEEDS {
        let layout = Layout::generate(seed);
        let objs = &layout.objects;
        assert!(
            (2..=6).contains(&objs.len()),
            "seed {seed}: {} objects",
            objs.len()
        );
        for (i, a) in objs.iter().enumerate() {
            assert_eq!(a.id, i);
            assert!(
                (0.13..=0.19).contains(&a.size),
                "seed {seed}: size {}",
                a.size
            );
            let b = a.bbox();
            assert!(
                b[0] >= 0.04 && b[1] >= 0.04 && b[2] <= 0.96 && b[3] <= 0.96,
                "seed {seed}: {b:?}"
            );
            // Every point of a's outline is at least the gap away from every other object
            // (the SDF is the distance to the shape outside it).
            for o in &objs[i + 1..] {
                for p in a.outline(1e-3) {
                    assert!(
                        o.sdf(p[0], p[1]) >= 0.02 - 1e-4,
                        "seed {seed}: objects {i} and {} too close",
                        o.id
                    );
                }
            }
        }
        // And on pixels: no pixel centre lies on two objects.
        let n = 128;
        for py in 0..n {
            for px in 0..n {
                let (x, y) = ((px as f32 + 0.5) / n as f32, (py as f32 + 0.5) / n as f32);
                assert!(
                    objs.iter().filter(|o| o.contains(x, y)).count() <= 1,
                    "seed {seed}"
                );
            }
        }
    }
}

#[test]
fn render_sizes_from_64_to_1024_work_and_others_are_errors() {
    let layout = Layout::generate(11);
    for size in [64, 1024] {
        assert_eq!(layout.render(size).unwrap().dimensions(), (size, size));
    }
    for size in [63, 1025] {
        let err = layout.render(size).unwrap_err().to_string();
        assert!(
            err.contains(&size.to_string()) && err.contains("64"),
            "{err}"
        );
    }
}

/// Hue in degrees and saturation (HSV) of a pixel.
fn hue_sat([r, g, b]: [u8; 3]) -> (f32, f32) {
    let (r, g, b) = (r as f32, g as f32, b as f32);
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    let d = max - min;
    if d <= 0.0 {
        return (0.0, 0.0);
    }
    let h = if max == r {
        60.0 * ((g - b) / d)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    (h.rem_euclid(360.0), d / max)
}

fn hue_distance(a: f32, b: f32) -> f32 {
    let d = (a - b).abs() % 360.0;
    d.min(360.0 - d)
}

#[test]
fn masks_agree_with_the_pixels() {
    let n = 224u32;
    for seed in 0..40 {
        let layout = Layout::generate(seed);
        let img = layout.render(n).unwrap();
        let t = truth(&layout, n);
        let mut off_object = (0, 0); // (pixels, colourful pixels)
        let mut on = vec![(0u32, 0u32, [u32::MAX, u32::MAX, 0, 0]); layout.objects.len()];
        for py in 0..n {
            for px in 0..n {
                let (x, y) = ((px as f32 + 0.5) / n as f32, (py as f32 + 0.5) / n as f32);
                let (h, s) = hue_sat(img.get_pixel(px, py).0);
                match layout.object_at(x, y) {
                    Some(id) => {
                        let (hue, _) = hue_sat(layout.objects[id].color.rgb());
                        let e = &mut on[id];
                        e.0 += 1;
                        e.1 += (s >= 0.35 && hue_distance(h, hue) <= 20.0) as u32;
                        e.2 = [
                            e.2[0].min(px),
                            e.2[1].min(py),
                            e.2[2].max(px + 1),
                            e.2[3].max(py + 1),
                        ];
                    }
                    None => {
                        off_object.0 += 1;
                        off_object.1 += (s >= 0.3) as u32;
                    }
                }
            }
        }
        for (o, &(count, right, bbox)) in t.objects.iter().zip(&on) {
            let share = right as f32 / count as f32;
            assert!(
                share > 0.8,
                "seed {seed}: object {} ({:?} {:?}) has {share:.2} of its colour",
                o.id,
                o.color,
                o.shape
            );
            assert_eq!(
                (o.area_px, o.bbox_px),
                (count, bbox),
                "seed {seed}: object {}",
                o.id
            );
            assert_polygon_matches(o.polygon_px.as_slice(), &layout.objects[o.id], n);
        }
        // The table is not mistaken for paint.
        assert!(
            off_object.1 * 100 < off_object.0,
            "seed {seed}: colourful table pixels {off_object:?}"
        );
    }
}

/// The outline polygon classifies every pixel centre that is not right on the edge.
fn assert_polygon_matches(poly: &[[f32; 2]], o: &Object, n: u32) {
    let b = o.bbox();
    let lo = |v: f32| ((v * n as f32) as u32).saturating_sub(2);
    for py in lo(b[1])..(lo(b[3]) + 4).min(n) {
        for px in lo(b[0])..(lo(b[2]) + 4).min(n) {
            let (x, y) = (px as f32 + 0.5, py as f32 + 0.5);
            if (o.sdf(x / n as f32, y / n as f32) * n as f32).abs() < 0.1 {
                continue;
            }
            let mut inside = false;
            for (i, p) in poly.iter().enumerate() {
                let q = poly[(i + 1) % poly.len()];
                if (p[1] > y) != (q[1] > y) && x < p[0] + (y - p[1]) / (q[1] - p[1]) * (q[0] - p[0])
                {
                    inside = !inside;
                }
            }
            assert_eq!(
                inside,
                o.contains(x / n as f32, y / n as f32),
                "pixel ({px}, {py}) of {o:?}"
            );
        }
    }
}

// ------------------------------------------------------------------ commands

#[test]
fn every_command_resolves_to_exactly_its_target() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let mut checked = 0;
    for seed in SEEDS {
        let layout = Layout::generate(seed);
        let mut commands = commands_for(&layout, 3);
        for family in Family::ALL {
            for lang in Lang::ALL {
                commands
                    .extend((0..3).filter_map(|_| sample_command(&layout, family, lang, &mut rng)));
            }
        }
        for c in &commands {
            assert_eq!(
                resolve(&layout, c),
                c.target,
                "seed {seed}: {:?} resolves elsewhere",
                c.text
            );
            check_action(&layout, c);
            checked += 1;
        }
    }
    assert!(checked > 5000, "only {checked} commands");
}

#[test]
fn every_family_comes_in_both_languages_and_is_common() {
    let mut seen = BTreeSet::new();
    let mut scenes_with = [0usize; 4];
    for seed in SEEDS {
        let layout = Layout::generate(seed);
        let commands = commands_for(&layout, 2);
        for (k, family) in Family::ALL.iter().enumerate() {
            let of_family: Vec<_> = commands.iter().filter(|c| c.family == *family).collect();
            // Whatever the scene allows, it allows in both languages.
            assert_eq!(
                of_family.iter().any(|c| c.lang == Lang::En),
                of_family.iter().any(|c| c.lang == Lang::Ko),
                "seed {seed} {family:?}"
            );
            scenes_with[k] += !of_family.is_empty() as usize;
        }
        seen.extend(commands.iter().map(|c| (c.family, c.lang)));
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
    let share = scenes_with.map(|n| n as f32 / SEEDS.count() as f32);
    // pick, place, push, relational
    assert!(
        share[0] > 0.9 && share[1] >= 0.6 && share[2] > 0.9 && share[3] >= 0.25,
        "{share:?}"
    );
}

// --------------------------------------------------------------------- files

#[test]
fn write_scene_into_a_missing_or_unwritable_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::generate(5);
    let missing = dir.path().join("no/such/dir/scene.png");
    let err = format!("{:#}", write_scene(&layout, 224, &missing).unwrap_err());
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!dir.path().join("no").exists());
    // Under a regular file (unwritable even for root).
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = format!(
        "{:#}",
        write_scene(&layout, 224, &file.join("scene.png")).unwrap_err()
    );
    assert!(err.contains("file/scene.png"), "{err}");
    // Onto a directory: the rename fails, and no temporary file is left behind.
    let blocked = dir.path().join("blocked.png");
    std::fs::create_dir(&blocked).unwrap();
    let err = format!("{:#}", write_scene(&layout, 224, &blocked).unwrap_err());
    assert!(err.contains("blocked.png"), "{err}");
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["blocked.png", "file"]);
    // A bad size is an error before anything is written.
    assert!(write_scene(&layout, 1025, &dir.path().join("big.png")).is_err());
    assert!(!dir.path().join("big.png").exists());
}

#[test]
fn cli_writes_many_scenes() {
    use vla_demo::scene::write::{run, ScenesToWrite};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = ScenesToWrite {
        seed: 10,
        size: 64,
        out: "unused.png".into(),
        count: Some(3),
        dir: Some(out.clone()),
    };
    run(&args).unwrap();
    for seed in 10..13 {
        let t = SceneTruth::load(&out.join(format!("scene_{seed}.json"))).unwrap();
        assert_eq!((t.seed, t.size), (seed, 64));
        assert!(out.join(format!("scene_{seed}.png")).exists());
    }
    let err = format!(
        "{:#}",
        run(&ScenesToWrite { size: 2000, ..args }).unwrap_err()
    );
    assert!(err.contains("2000"), "{err}");
}

// ------------------------------------------------------------------ examples

/// The held-out seeds (200000..300000) of the committed example scenes, each the
/// first that fits a purpose, so that they show every family.
fn example_seeds() -> Vec<(&'static str, u64)> {
    let mut found: Vec<(&'static str, u64)> = Vec::new();
    type Want = fn(&Layout, &[Command]) -> bool;
    let wants: [(&str, Want); 5] = [
        ("red_cup", |l, cs| {
            let t = truth(l, 224);
            (4..=5).contains(&l.objects.len())
                && t.objects
                    .iter()
                    .any(|o| o.name_en.as_deref() == Some("the red cup"))
                && Family::ALL
                    .iter()
                    .all(|f| cs.iter().any(|c| c.family == *f))
        }),
        ("busy", |l, cs| {
            l.objects.len() == 6
                && Family::ALL
                    .iter()
                    .all(|f| cs.iter().any(|c| c.family == *f))
        }),
        ("left_of", |l, cs| {
            l.objects.len() == 5
                && cs
                    .iter()
                    .any(|c| c.relation == Some(Relation::LeftOf) && c.lang == Lang::En)
        }),
        ("simple", |l, cs| {
            l.objects.len() == 3 && cs.iter().any(|c| c.family == Family::Place)
        }),
        ("two", |l, _| l.objects.len() == 2),
    ];
    for (name, want) in wants {
        let seed = (200_000..300_000)
            .find(|&s| {
                let l = Layout::generate(s);
                want(&l, &commands_for(&l, 3)) && !found.iter().any(|(_, f)| *f == s)
            })
            .unwrap();
        found.push((name, seed));
    }
    found
}

/// The four shapes side by side (cup, block, ball, bowl), for the README.
fn shapes_picture() -> image::RgbImage {
    let objects = [
        (Color::Red, Shape::Cup, -0.5),
        (Color::Green, Shape::Block, 0.3),
        (Color::Blue, Shape::Ball, 0.0),
        (Color::Yellow, Shape::Bowl, 0.0),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (color, shape, angle))| Object {
        id: i,
        color,
        shape,
        center: [0.125 + 0.25 * i as f32, 0.5],
        size: 0.15,
        angle,
        tone: 1.0,
        handle: Default::default(),
    })
    .collect();
    let full = Layout {
        seed: 200_000,
        objects,
    }
    .render(1024)
    .unwrap();
    image::imageops::crop_imm(&full, 0, 384, 1024, 256).to_image()
}

#[test]
#[ignore = "rewrites examples/scenes; run with --ignored regenerate_examples"]
fn regenerate_examples() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenes");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, seed) in example_seeds() {
        let file = example_file(name, seed, "png");
        write_scene(&Layout::generate(seed), 224, &dir.join(&file)).unwrap();
        println!("{name}: seed {seed} -> {file}");
    }
    shapes_picture().save(dir.join("shapes.png")).unwrap();
}

/// The file name of an example scene: the red-cup scene has its own name.
fn example_file(name: &str, seed: u64, ext: &str) -> String {
    match name {
        "red_cup" => format!("red_cup.{ext}"),
        _ => format!("scene_{seed}.{ext}"),
    }
}

#[test]
fn committed_examples_match_the_generator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenes");
    for (name, seed) in example_seeds() {
        let t = SceneTruth::load(&dir.join(example_file(name, seed, "json"))).unwrap();
        assert_eq!((t.seed, t.size), (seed, 224), "{name}");
    }
    // Every scene JSON there, example or not, is what the generator makes now.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let t = SceneTruth::load(&path).unwrap();
            let layout = Layout::generate(t.seed);
            assert_eq!(t.layout(), layout, "{}", path.display());
            let hint = "run: cargo test --release --test scene -- --ignored regenerate_examples";
            assert_eq!(
                t,
                truth(&layout, t.size),
                "{} is stale; {hint}",
                path.display()
            );
        }
    }
    let red = SceneTruth::load(&dir.join("red_cup.json")).unwrap();
    assert!(red.objects.iter().any(|o| o.color == Color::Red
        && o.shape == Shape::Cup
        && o.name_en.as_deref() == Some("the red cup")));
    let shapes = image::open(dir.join("shapes.png")).unwrap();
    assert_eq!((shapes.width(), shapes.height()), (1024, 256));
}

/// The randomised world varies each cup's handle, within its reach.
#[test]
fn cups_get_handles_of_many_lengths_and_thicknesses() {
    let handles: Vec<Handle> = (0..40)
        .flat_map(|seed| {
            RandomScene::generate(seed, &RandomSpec::default())
                .layout
                .objects
        })
        .filter(|o| o.shape == Shape::Cup)
        .map(|o| o.handle)
        .collect();
    assert!(handles.len() >= 20, "only {} cups", handles.len());
    let (thin, thick) = (
        handles.iter().filter(|h| h.radius < 0.17).count(),
        handles.iter().filter(|h| h.radius > 0.25).count(),
    );
    let (short, long) = (
        handles.iter().filter(|h| h.end < 1.2).count(),
        handles.iter().filter(|h| h.end > 1.3).count(),
    );
    assert!(
        thin > 0 && thick > 0 && short > 0 && long > 0,
        "{handles:?}"
    );
    assert!(handles.iter().all(|h| h.end + h.radius <= Handle::REACH));
}

// ---------------------------------------------------------------- pinned splits

/// The held-out splits draw exactly the scenes the README's figures were
/// measured on: the first scenes of each split, pictures and commands, hash
/// to the values they had when those figures were taken (2026-12-04, after
/// the randomised world's bowls were redrawn). A change that makes
/// drawing faster must leave these alone; one that moves them changes every
/// split, and the figures must be measured again (and these values updated).
#[test]
fn the_held_out_splits_draw_the_scenes_they_were_measured_on() {
    use vla_demo::eval::Split;
    use vla_demo::model::Config;
    const PINNED: [(&str, u64); 7] = [
        ("iid", 0x303b040b6a12ec39),
        ("style", 0xee23be0160c9d47f),
        ("small", 0x4182eba71fa642e0),
        ("crowded", 0xc5c6af34e619730f),
        ("unseen-combo", 0xa0b2a45c9fd4d81a),
        ("counterfactual", 0xaaf44581f56459ea),
        ("absent", 0x265a0252270fe2a2),
    ];
    let cfg = Config::tiny();
    let mut got = Vec::new();
    for split in Split::ALL {
        let mut bytes = Vec::new();
        for seed in split.first_seed()..split.first_seed() + 6 {
            let Some((drawn, commands)) = split.scene(seed, &cfg).unwrap() else {
                bytes.extend_from_slice(b"none");
                continue;
            };
            bytes.extend_from_slice(drawn.view.as_raw());
            for c in &commands {
                bytes.extend_from_slice(c.text.as_bytes());
            }
        }
        got.push((split.name(), fnv(&bytes)));
    }
    assert_eq!(got, PINNED, "the held-out splits' first scenes changed");
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust versions.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The same for the scenes training draws: the first scenes of the shipped
/// recipe's randomised world (its extras on, the held-out pairs excluded)
/// and of the plain world hash to the values they had when
/// `models/candidates-long`, `models/candidates-21k` and `models/candidates-28k` were trained,
/// and the randomised world painted at 256 px at most hashes to what
/// `models/capped` and `models/readings` were trained on (all with the
/// bowls drawn as then, `disc_bowls`). The fourth is
/// `models/grey-pens`' world: today's bowls, pens in a named colour painted
/// grey; `models/pens-log-sizes`' world, the same with object sizes drawn
/// log-uniformly; and the shipped `models/pens-small-prior`' world, the same
/// with radii from 3% (`small_sizes`). A faster renderer must draw these byte for byte; one that moves
/// them trains on another world.
#[test]
fn the_training_worlds_draw_the_scenes_the_shipped_model_was_trained_on() {
    use vla_demo::data::{draw_scene, World};
    use vla_demo::model::Config;
    use vla_demo::scene::random::{Extras, HELD_OUT_PAIRS};
    let cfg = Config::tiny();
    let extras = Extras {
        finishes: true,
        casts: true,
        disc_bowls: true,
        ..Extras::default()
    };
    let capped = Extras {
        max_side: Some(256),
        ..extras
    };
    let grey_pens = Extras {
        disc_bowls: false,
        grey_pens: true,
        ..capped
    };
    let log_sizes = Extras {
        log_sizes: true,
        ..grey_pens
    };
    let small_sizes = Extras {
        small_sizes: true,
        ..log_sizes
    };
    let mut got = Vec::new();
    for (world, extras) in [
        (World::Plain, extras),
        (World::Random, extras),
        (World::Random, capped),
        (World::Random, grey_pens),
        (World::Random, log_sizes),
        (World::Random, small_sizes),
    ] {
        let mut bytes = Vec::new();
        for seed in 0..12 {
            let drawn = draw_scene(seed, world, &HELD_OUT_PAIRS, extras, &cfg).unwrap();
            bytes.extend_from_slice(drawn.view.as_raw());
            bytes.push(drawn.layout.objects.len() as u8);
        }
        got.push(fnv(&bytes));
    }
    assert_eq!(
        got,
        [
            0x5bdf0ac4591de521,
            0x19eb7d2b6957bd6b,
            0xfb21a2f3db92efac,
            0xf507a9d16fd1b278,
            0x2285d7613860c152,
            0xff7fefa94e5e2c71
        ],
        "the training worlds' first scenes changed"
    );
}
