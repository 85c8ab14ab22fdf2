//! What training sees, read from the data stream itself: no held-out colour
//! × shape pair in any picture or command, and never a picture in the
//! held-out style. This file is its own process, so the style counter is
//! not disturbed by other tests.

use std::path::Path;
use std::sync::atomic::Ordering;

use vla_demo::data::World;
use vla_demo::eval::Split;
use vla_demo::scene::heldout_style::SCENES_MADE;
use vla_demo::scene::korean::{color_words, shape_words};
use vla_demo::scene::random::{Extras, HELD_OUT_PAIRS};
use vla_demo::train::{pair_counts, scenes_for_step, worlds_for_step, TrainConfig};

#[test]
fn training_never_sees_a_held_out_pair_or_the_held_out_style() {
    let cfg = TrainConfig::load(Path::new("configs/train-tiny.json")).unwrap();
    assert!(cfg.hold_out_pairs && cfg.random_share > 0.0 && cfg.refusal_share > 0.0);
    let names = |(c, s): (vla_demo::scene::Color, vla_demo::scene::Shape)| {
        let mut out = vec![format!("{} {}", c.name_en(), s.name_en())];
        for cw in color_words(c) {
            for sw in shape_words(s) {
                out.push(format!("{cw} {sw}"));
            }
        }
        out
    };
    let banned: Vec<String> = HELD_OUT_PAIRS.into_iter().flat_map(names).collect();
    let (mut scenes, mut commands, mut refusals) = (0, 0, 0);
    let mut worlds = [0, 0];
    for step in 0..40 {
        let (drawn, examples) = scenes_for_step(&cfg, step).unwrap();
        for d in &drawn {
            scenes += 1;
            for o in &d.layout.objects {
                assert!(
                    !HELD_OUT_PAIRS.contains(&(o.color, o.shape)),
                    "step {step}: a {:?} {:?} in a training scene",
                    o.color,
                    o.shape
                );
            }
            // A plain scene is the model's size; a randomised one is letterboxed into it.
            let plain = d.view.dimensions() == (160, 160)
                && d.view.get_pixel(0, 0) != d.view.get_pixel(159, 159);
            worlds[plain as usize] += 1;
        }
        for e in &examples {
            commands += 1;
            refusals += !e.command.action.outcome.is_act() as usize;
            let text = e.command.text.to_lowercase();
            for b in &banned {
                assert!(
                    !text.contains(b.as_str()),
                    "step {step}: {text:?} names {b}"
                );
            }
        }
    }
    assert!(
        scenes == 40 * cfg.scenes_per_step && commands > scenes,
        "{scenes} {commands}"
    );
    assert!(refusals > 0, "no refusal in {commands} commands");
    assert!(worlds.iter().all(|&n| n > 0), "{worlds:?}");

    // The evaluation that training runs is the iid split: it stays clear too.
    let ckpt = vla_demo::checkpoint::Checkpoint::embedded().unwrap();
    let model = ckpt.load(&candle::Device::Cpu, candle::DType::F32).unwrap();
    let tok = ckpt.tokenizer;
    let scenes = vla_demo::eval::Scenes {
        split: Split::Iid,
        first_seed: None,
        count: 2,
    };
    vla_demo::eval::evaluate(&model, &tok, scenes, &candle::Device::Cpu, None).unwrap();
    assert_eq!(
        SCENES_MADE.load(Ordering::Relaxed),
        0,
        "training reached the held-out style"
    );

    // The counter is live: the style split does reach it.
    Split::Style
        .scene(Split::Style.first_seed(), model.config())
        .unwrap();
    assert!(SCENES_MADE.load(Ordering::Relaxed) > 0);
}

/// The curriculum: plain scenes only before `random_ramp[0]`, then a
/// randomised share that grows to `random_share` at `random_ramp[1]`.
#[test]
fn the_randomised_share_follows_the_ramp() {
    let mut cfg = TrainConfig::load(Path::new("configs/train-tiny.json")).unwrap();
    cfg.random_share = 1.0;
    cfg.random_ramp = [100, 300];
    cfg.validate().unwrap();
    let share = |steps: std::ops::Range<usize>| {
        let worlds: Vec<World> = steps.flat_map(|s| worlds_for_step(&cfg, s)).collect();
        worlds.iter().filter(|&&w| w == World::Random).count() as f64 / worlds.len() as f64
    };
    assert_eq!(share(0..100), 0.0);
    let middle = share(150..250);
    assert!((0.35..0.65).contains(&middle), "{middle}");
    assert_eq!(share(300..340), 1.0);
    cfg.random_ramp = [0, cfg.steps + 1];
    assert!(cfg.validate().is_err(), "a ramp past the last step");
}

/// The refusal mix follows the config: the ambiguous share, and hard
/// negatives ("the purple cup" beside a purple ball and a blue cup) only
/// where they are asked for. Read from the English commands of the stream.
#[test]
fn the_refusals_follow_the_mix() {
    use vla_demo::action::Outcome;
    use vla_demo::scene::{Color, Lang, Shape};
    let count = |cfg: &TrainConfig| {
        let (mut absent, mut hard, mut ambiguous) = (0, 0, 0);
        for step in 0..30 {
            let (drawn, examples) = scenes_for_step(cfg, step).unwrap();
            for e in examples.iter().filter(|e| e.command.lang == Lang::En) {
                match e.command.action.outcome {
                    Outcome::Act => continue,
                    Outcome::Ambiguous => ambiguous += 1,
                    Outcome::Absent => absent += 1,
                }
                let objects = &drawn[e.image].layout.objects;
                let text = &e.command.text;
                let named = Color::ALL
                    .into_iter()
                    .flat_map(|c| Shape::ALL.into_iter().map(move |s| (c, s)));
                let is_hard = e.command.action.outcome == Outcome::Absent
                    && named.into_iter().any(|(c, s)| {
                        text.contains(&format!("{} {}", c.name_en(), s.name_en()))
                            && objects.iter().any(|o| o.color == c)
                            && objects.iter().any(|o| o.shape == s)
                    });
                hard += is_hard as usize;
            }
        }
        (absent, hard, ambiguous)
    };
    let plain = TrainConfig::load(Path::new("configs/train-curriculum.json")).unwrap();
    let binding = TrainConfig::load(Path::new("configs/train-binding.json")).unwrap();
    assert_eq!(
        (plain.ambiguous_share, plain.hard_negative_share),
        (0.25, 0.0)
    );
    assert!(binding.hard_negative_share > 0.0);
    let (pa, ph, pm) = count(&plain);
    let (ba, bh, bm) = count(&binding);
    let ambiguous = |a: usize, m: usize| m as f64 / (a + m) as f64;
    assert!((0.15..0.35).contains(&ambiguous(pa, pm)), "{pa} {pm}");
    let want = binding.ambiguous_share;
    assert!(
        (want - 0.1..want + 0.1).contains(&ambiguous(ba, bm)),
        "{ba} {bm}"
    );
    // Hard negatives happen by chance without the mix, and far more often with it.
    let (p, b) = (ph as f64 / pa as f64, bh as f64 / ba as f64);
    assert!(
        b > p + 0.2,
        "hard share of absent: {p:.2} without, {b:.2} with"
    );
}

/// The tokenizer of the model embedded in the binary.
fn embedded_tokenizer() -> vla_demo::tokens::CommandTokenizer {
    vla_demo::checkpoint::Checkpoint::embedded()
        .unwrap()
        .tokenizer
}

/// The patch-label term's labels come with the stream's batches where the
/// config asks for them: one `[colour, shape]` per patch of every picture,
/// objects on some patches and the table on most, and never a held-out
/// pair. A config that asks for the term without the head is refused.
#[test]
fn the_patch_labels_come_with_the_batches_that_ask_for_them() {
    use vla_demo::grid::{PATCH_COLORS, PATCH_SHAPES};
    use vla_demo::scene::{Color, Shape};
    let tok = embedded_tokenizer();
    let cpu = candle::Device::Cpu;
    let cfg = TrainConfig::load(Path::new("configs/train-patch.json")).unwrap();
    assert!(cfg.patch_label_weight > 0.0 && cfg.model.patch_labels);
    let n = cfg.model.num_patches();
    let (mut objects, mut table) = (0, 0);
    // Step 3000 is past the curriculum's ramp: most scenes are randomised.
    for step in [0, 3000] {
        let batches = vla_demo::train::shards_for_step(&cfg, &tok, step, 2, &cpu).unwrap();
        assert_eq!(batches.len(), 2);
        for b in &batches {
            let images = b.inputs.pixels.dim(0).unwrap();
            let labels = b.patch_labels.as_ref().expect("patch labels");
            assert_eq!(labels.dims(), &[images * n, 2]);
            for [c, s] in labels
                .to_vec2::<u32>()
                .unwrap()
                .into_iter()
                .map(|l| [l[0], l[1]])
            {
                assert!((c as usize) < PATCH_COLORS && (s as usize) < PATCH_SHAPES);
                assert_eq!(c == 0, s == 0, "an object has both a colour and a shape");
                if c == 0 {
                    table += 1;
                    continue;
                }
                objects += 1;
                let pair = (Color::ALL[c as usize - 1], Shape::ALL[s as usize - 1]);
                assert!(!HELD_OUT_PAIRS.contains(&pair), "{pair:?} in a label");
            }
        }
    }
    assert!(objects > 0 && table > objects, "{objects} {table}");

    let mut plain = cfg.clone();
    plain.patch_label_weight = 0.0;
    let batches = vla_demo::train::shards_for_step(&plain, &tok, 0, 2, &cpu).unwrap();
    assert!(batches.iter().all(|b| b.patch_labels.is_none()));
    plain.patch_label_weight = 1.0;
    plain.model.patch_labels = false;
    assert!(plain.validate().is_err(), "the term without the head");
}

/// Step `step`'s batch of `cfg`'s stream, with `grounded` in place of the
/// config's own setting (the same scenes and commands either way).
fn batch_grounded(
    cfg: &TrainConfig,
    grounded: vla_demo::data::Grounded,
    tok: &vla_demo::tokens::CommandTokenizer,
    step: usize,
) -> vla_demo::data::Batch {
    let cfg = TrainConfig {
        grounded,
        ..cfg.clone()
    };
    vla_demo::train::batch_for_step(&cfg, tok, step, &candle::Device::Cpu).unwrap()
}

/// The grounding term's targets, row by row: `<boa>` always reads the
/// target; with `"coordinates"` the first x token reads it too, and for
/// place the first gripper token and the second x read the bowl; every
/// other query, and every query of a refusal, is left free.
#[test]
fn the_grounded_queries_read_the_object_whose_coordinate_they_predict() {
    use vla_demo::data::{first_target, Grounded};
    use vla_demo::grid::target_patches;
    use vla_demo::scene::Family;
    let tok = embedded_tokenizer();
    let cfg = TrainConfig::load(Path::new("configs/train-coords.json")).unwrap();
    assert_eq!(cfg.grounded, Grounded::Coordinates);
    let grid = cfg.model.grid();
    let zero = vec![0f32; grid * grid];
    let (mut places, mut refusals) = (0, 0);
    for step in [0, 3000] {
        let (drawn, examples) = scenes_for_step(&cfg, step).unwrap();
        let mask = |grounded| {
            let b = batch_grounded(&cfg, grounded, &tok, step);
            b.target_mask.to_vec3::<f32>().unwrap()
        };
        let (coords, boa) = (mask(Grounded::Coordinates), mask(Grounded::Boa));
        assert_eq!(coords.len(), examples.len());
        for ((e, rows), boa_rows) in examples.iter().zip(&coords).zip(&boa) {
            let layout = &drawn[e.image].layout;
            if !e.command.action.outcome.is_act() {
                refusals += 1;
                assert!(rows.iter().chain(boa_rows).all(|r| *r == zero));
                continue;
            }
            let target = target_patches(&first_target(layout, &e.command).unwrap(), grid);
            // The bowl, read from the command and the layout directly.
            let bowl = e
                .command
                .destination
                .map(|id| target_patches(layout.object(id).unwrap(), grid));
            let place = e.command.family == Family::Place;
            assert_eq!(bowl.is_some(), place, "{:?}", e.command.text);
            places += place as usize;
            for (k, (row, boa_row)) in rows.iter().zip(boa_rows).enumerate() {
                let want = match k {
                    0 | 1 => &target,
                    3 | 4 if place => bowl.as_ref().unwrap(),
                    _ => &zero,
                };
                assert_eq!(row, want, "query {k} of {:?}", e.command.text);
                assert_eq!(boa_row, if k == 0 { &target } else { &zero });
            }
        }
    }
    assert!(places > 0 && refusals > 0, "{places} {refusals}");
}

/// With `"landmark"`, every token of the words that name a relational
/// command's landmark reads the landmark's patches, in the left-padded
/// layout the model sees; every other word, and every word of a refusal, is
/// left free, and the action queries read what `"coordinates"` has them read.
#[test]
fn the_landmark_words_read_the_landmark() {
    use vla_demo::data::Grounded;
    use vla_demo::grid::target_patches;
    use vla_demo::scene::Family;
    let tok = embedded_tokenizer();
    let cfg = TrainConfig::load(Path::new("configs/train-landmark.json")).unwrap();
    assert_eq!(cfg.grounded, Grounded::Landmark);
    let grid = cfg.model.grid();
    let zero = vec![0f32; grid * grid];
    let (mut relational, mut landmark_tokens) = (0, 0);
    for step in [0, 3000] {
        let (drawn, examples) = scenes_for_step(&cfg, step).unwrap();
        let batch = |grounded| batch_grounded(&cfg, grounded, &tok, step);
        let (with, without) = (batch(Grounded::Landmark), batch(Grounded::Coordinates));
        assert!(without.word_mask.is_none());
        assert_eq!(
            with.target_mask.to_vec3::<f32>().unwrap(),
            without.target_mask.to_vec3::<f32>().unwrap()
        );
        let words = with.word_mask.unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(words.len(), examples.len());
        for (e, rows) in examples.iter().zip(&words) {
            let enc = tok.encode(&e.command.text).unwrap();
            let pad = rows.len() - enc.ids.len();
            assert!(rows[..pad].iter().all(|r| *r == zero), "padding is free");
            let landmark = match (e.command.landmark, e.command.action.outcome.is_act()) {
                (Some(id), true) => {
                    relational += 1;
                    let layout = &drawn[e.image].layout;
                    Some(target_patches(layout.object(id).unwrap(), grid))
                }
                _ => None,
            };
            assert_eq!(
                landmark.is_some(),
                e.command.family == Family::Relational,
                "{:?}",
                e.command.text
            );
            for (j, w) in enc.word_ids.iter().enumerate() {
                let names = e
                    .command
                    .landmark_words
                    .as_ref()
                    .is_some_and(|r| r.contains(w));
                let want = match &landmark {
                    Some(patches) if names => {
                        landmark_tokens += 1;
                        patches
                    }
                    _ => &zero,
                };
                assert_eq!(&rows[pad + j], want, "word {w} of {:?}", e.command.text);
            }
        }
    }
    assert!(
        relational > 20 && landmark_tokens >= relational,
        "{relational} {landmark_tokens}"
    );
}

/// Each of `random_extras` reaches the pictures training draws, and nothing
/// else: the same layouts and commands, some pictures drawn otherwise.
#[test]
fn the_world_extras_change_only_the_pictures() {
    let mut cfg = TrainConfig::load(Path::new("configs/train-tiny.json")).unwrap();
    cfg.random_share = 1.0;
    cfg.random_ramp = [0, 0];
    let (plain, plain_examples) = scenes_for_step(&cfg, 3).unwrap();
    for extras in [
        Extras {
            finishes: true,
            casts: false,
            ..Extras::default()
        },
        Extras {
            finishes: false,
            casts: true,
            ..Extras::default()
        },
    ] {
        cfg.random_extras = extras;
        let (drawn, examples) = scenes_for_step(&cfg, 3).unwrap();
        assert_eq!(plain.len(), drawn.len());
        assert_eq!(plain_examples.len(), examples.len());
        for (a, b) in plain_examples.iter().zip(&examples) {
            assert_eq!((a.image, &a.command), (b.image, &b.command));
        }
        let mut changed = 0;
        for (a, b) in plain.iter().zip(&drawn) {
            assert_eq!(a.layout, b.layout);
            changed += (a.view != b.view) as usize;
        }
        assert!(changed > 0, "{extras:?}: no picture changed");
    }
    // Strong casts change the casts' pictures only, and need the casts.
    cfg.random_extras = Extras {
        casts: true,
        ..Extras::default()
    };
    let (cast, cast_examples) = scenes_for_step(&cfg, 3).unwrap();
    cfg.random_extras.strong_casts = true;
    let (strong, strong_examples) = scenes_for_step(&cfg, 3).unwrap();
    for (a, b) in cast_examples.iter().zip(&strong_examples) {
        assert_eq!((a.image, &a.command), (b.image, &b.command));
    }
    assert!(cast.iter().zip(&strong).all(|(a, b)| a.layout == b.layout));
    assert!(cast.iter().zip(&strong).any(|(a, b)| a.view != b.view));
    cfg.random_extras.casts = false;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("casts"), "{err}");
    let finishes = TrainConfig::load(Path::new("configs/train-finishes.json")).unwrap();
    assert!(finishes.random_extras.finishes && !finishes.random_extras.casts);
    // Without the randomised world an extra would change nothing: refused.
    let mut plain = TrainConfig::load(Path::new("configs/train-quick.json")).unwrap();
    assert_eq!(plain.random_share, 0.0);
    plain.random_extras.unnamed = true;
    let err = plain.validate().unwrap_err().to_string();
    assert!(err.contains("random_share"), "{err}");
}

/// With `unnamed` on, training pictures hold objects painted white, grey or
/// black, and no command says those colours: such an object is a target
/// only as "the cup" when it is the only cup, and its patches are labelled
/// with its shape and no colour.
#[test]
fn unnamed_colours_reach_the_pictures_and_labels_but_never_the_words() {
    use vla_demo::grid::{patch_label, PATCH_COLORS};
    use vla_demo::scene::Color;
    let mut cfg = TrainConfig::load(Path::new("configs/train-tiny.json")).unwrap();
    cfg.random_share = 1.0;
    cfg.random_ramp = [0, 0];
    cfg.random_extras.unnamed = true;
    let words: Vec<String> = Color::UNNAMED
        .iter()
        .flat_map(|c| {
            let ko = color_words(*c).iter().map(|w| w.to_string());
            std::iter::once(c.name_en().to_string()).chain(ko)
        })
        .collect();
    let (mut unnamed, mut targets) = (0, 0);
    for step in 0..20 {
        let (drawn, examples) = scenes_for_step(&cfg, step).unwrap();
        for o in drawn.iter().flat_map(|d| &d.layout.objects) {
            if !o.color.is_named() {
                unnamed += 1;
                let [c, s] = patch_label(o);
                assert!(c == 0 && s > 0 && (c as usize) < PATCH_COLORS);
            }
        }
        for e in &examples {
            let text = e.command.text.to_lowercase();
            for w in text.split_whitespace() {
                assert!(
                    !words.iter().any(|u| w.starts_with(u.as_str())),
                    "step {step}: {text:?} says an unnamed colour"
                );
            }
            if !e.command.action.outcome.is_act() {
                continue;
            }
            let objects = &drawn[e.image].layout.objects;
            let said = std::iter::once(e.command.target).chain(e.command.destination);
            for o in said.map(|i| &objects[i]).filter(|o| !o.color.is_named()) {
                targets += 1;
                let alike = objects.iter().filter(|p| p.shape == o.shape).count();
                assert_eq!(alike, 1, "step {step}: {text:?} means an unnamed object");
            }
        }
    }
    assert!(
        unnamed > 0 && targets > 0,
        "{unnamed} unnamed, {targets} as targets"
    );
}

/// With `"candidates"`, the `<boa>` of an ambiguous command reads every
/// object its name fits (found here from the scene's objects and the name's
/// colour and shape), an absent command's stays free, and every other row
/// and word is what `"landmark"` has it. The batch also holds each of those
/// objects on a row of its own (`candidate_masks`), and zeros for every
/// other command.
#[test]
fn an_ambiguous_commands_boa_reads_every_object_its_name_fits() {
    use vla_demo::action::Outcome;
    use vla_demo::data::Grounded;
    use vla_demo::grid::target_patches;
    let tok = embedded_tokenizer();
    let cfg = TrainConfig::load(Path::new("configs/train-candidates.json")).unwrap();
    assert_eq!(cfg.grounded, Grounded::Candidates);
    let grid = cfg.model.grid();
    let zero = vec![0f32; grid * grid];
    let (mut ambiguous, mut absent) = (0, 0);
    for step in [0, 3000, 6000] {
        let (drawn, examples) = scenes_for_step(&cfg, step).unwrap();
        let batch = |grounded| batch_grounded(&cfg, grounded, &tok, step);
        let (with, without) = (batch(Grounded::Candidates), batch(Grounded::Landmark));
        assert_eq!(
            with.word_mask.unwrap().to_vec3::<f32>().unwrap(),
            without.word_mask.unwrap().to_vec3::<f32>().unwrap()
        );
        assert!(without.candidate_masks.is_none());
        let each = with.candidate_masks.unwrap().to_vec3::<f32>().unwrap();
        let (with, without) = (
            with.target_mask.to_vec3::<f32>().unwrap(),
            without.target_mask.to_vec3::<f32>().unwrap(),
        );
        for (((e, rows), before), each) in examples.iter().zip(&with).zip(&without).zip(&each) {
            let c = &e.command;
            if c.action.outcome != Outcome::Ambiguous {
                absent += (c.action.outcome == Outcome::Absent) as usize;
                assert_eq!(rows, before, "{:?}", c.text);
                assert!(each.iter().all(|r| *r == zero), "{:?}", c.text);
                continue;
            }
            ambiguous += 1;
            let name = c.refused_name.unwrap();
            let fitting: Vec<_> = drawn[e.image]
                .layout
                .objects
                .iter()
                .filter(|o| o.shape == name.shape() && name.color().is_none_or(|k| k == o.color))
                .collect();
            assert!(fitting.len() >= 2, "{:?}", c.text);
            let mut want = zero.clone();
            for (i, o) in fitting.iter().enumerate() {
                let patches = target_patches(o, grid);
                assert!(
                    patches.contains(&1.0),
                    "{:?}: an object on no patch",
                    c.text
                );
                assert_eq!(each[i], patches, "{:?}: candidate {i}", c.text);
                for (w, p) in want.iter_mut().zip(patches) {
                    *w = w.max(p);
                }
            }
            assert!(
                each[fitting.len()..].iter().all(|r| *r == zero),
                "{:?}",
                c.text
            );
            assert_eq!(rows[0], want, "{:?}", c.text);
            assert!(rows[1..].iter().all(|r| *r == zero), "{:?}", c.text);
            assert!(before.iter().all(|r| *r == zero), "{:?}", c.text);
        }
    }
    assert!(ambiguous > 5 && absent > 5, "{ambiguous} {absent}");
}

/// `log_sizes` reaches the scenes training draws: the same pictures' objects
/// come out smaller on the whole (a log-uniform draw over the range has
/// 0.88 of a uniform one's mean; `scene::layout`'s test has the shares).
#[test]
fn the_log_sizes_extra_draws_smaller_objects() {
    let mut cfg = TrainConfig::load(Path::new("configs/train-tiny.json")).unwrap();
    cfg.random_share = 1.0;
    cfg.random_ramp = [0, 0];
    let mean_radius = |cfg: &TrainConfig| {
        let radii: Vec<f32> = (0..20)
            .flat_map(|step| scenes_for_step(cfg, step).unwrap().0)
            .flat_map(|d| d.layout.objects)
            .map(|o| o.radius())
            .collect();
        radii.iter().sum::<f32>() / radii.len() as f32
    };
    let uniform = mean_radius(&cfg);
    cfg.random_extras = Extras {
        log_sizes: true,
        ..cfg.random_extras
    };
    let log = mean_radius(&cfg);
    assert!(log < 0.95 * uniform, "{log} {uniform}");
}

/// `small_sizes` lowers the smallest radius training draws from 4% of the
/// short side to 3%, the `small` split's lower end: with log sizes on both
/// ways, the mean radius drops by about a tenth (0.149 / 0.167 of the short
/// side in expectation) and the smallest objects get smaller.
#[test]
fn the_small_sizes_extra_reaches_below_the_default_range() {
    let mut cfg = TrainConfig::load(Path::new("configs/train-tiny.json")).unwrap();
    cfg.random_share = 1.0;
    cfg.random_ramp = [0, 0];
    cfg.random_extras = Extras {
        log_sizes: true,
        ..cfg.random_extras
    };
    let radii = |cfg: &TrainConfig| -> Vec<f32> {
        (0..20)
            .flat_map(|step| scenes_for_step(cfg, step).unwrap().0)
            .flat_map(|d| d.layout.objects)
            .map(|o| o.radius())
            .collect()
    };
    let stats = |r: &[f32]| {
        let mean = r.iter().sum::<f32>() / r.len() as f32;
        (mean, r.iter().copied().fold(f32::INFINITY, f32::min))
    };
    let (mean, least) = stats(&radii(&cfg));
    cfg.random_extras.small_sizes = true;
    let (small_mean, small_least) = stats(&radii(&cfg));
    assert!(small_mean < 0.96 * mean, "{small_mean} {mean}");
    assert!(small_least < least, "{small_least} {least}");
}

/// Every committed recipe in `configs/` parses and passes validation: a
/// recipe the docs point at must be one `vla-demo train --config` accepts.
#[test]
fn every_committed_config_loads() {
    let mut n = 0;
    for entry in std::fs::read_dir("configs").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 30, "{n} configs");
}

/// What training teaches the model to read as named is what the words say:
/// among the words outside the landmark's, the shape's word, and a colour's
/// word exactly where the label has that colour (a place command's bowl
/// may add one of its own).
#[test]
fn the_named_label_is_what_the_words_outside_the_landmark_name() {
    use vla_demo::scene::{Color, Family, Lang, Shape};
    let cfg = TrainConfig::load(Path::new("configs/train-readings.json")).unwrap();
    let (mut coloured, mut bare, mut refusals, mut relational) = (0, 0, 0, 0);
    for step in [0, 3000] {
        let (_, examples) = scenes_for_step(&cfg, step).unwrap();
        for e in &examples {
            let cmd = &e.command;
            let [c, s] = e
                .named
                .unwrap_or_else(|| panic!("no name for {:?}", cmd.text));
            let outside = |i: &usize| !cmd.landmark_words.as_ref().is_some_and(|r| r.contains(i));
            let words: Vec<&str> = cmd
                .text
                .split_whitespace()
                .enumerate()
                .filter(|(i, _)| outside(i))
                .map(|(_, w)| w.trim_matches(|ch: char| !ch.is_alphanumeric()))
                .collect();
            let says = |en: &str, ko: &[&str]| {
                words.iter().any(|w| match cmd.lang {
                    Lang::En => *w == en,
                    Lang::Ko => ko.iter().any(|k| w.starts_with(k)),
                })
            };
            let shape = Shape::ALL[s as usize - 1];
            assert!(says(shape.name_en(), shape_words(shape)), "{:?}", cmd.text);
            // A place command also names its bowl, in words of its own.
            let bowl_named = cmd.family == Family::Place;
            for (i, colour) in Color::ALL.iter().enumerate() {
                let named = c as usize == i + 1;
                let said = says(colour.name_en(), color_words(*colour));
                if named || !bowl_named {
                    assert_eq!(said, named, "{colour:?} in {:?}: {:?}", cmd.text, e.named);
                }
            }
            match c {
                0 => bare += 1,
                _ => coloured += 1,
            }
            refusals += usize::from(!cmd.action.outcome.is_act());
            relational += usize::from(cmd.landmark_words.is_some());
        }
    }
    assert!(
        coloured > 30 && bare > 20 && refusals > 5 && relational > 20,
        "{coloured} {bare} {refusals} {relational}"
    );
}

#[test]
fn the_pair_prior_counts_what_the_stream_draws() {
    use vla_demo::grid::patch_label;
    let mut cfg = TrainConfig::load(Path::new("configs/train-tiny.json")).unwrap();
    assert!(cfg.hold_out_pairs && cfg.random_share > 0.0);
    // 30 steps, every one sampled: the counts are those of the drawn scenes.
    cfg.steps = 30;
    cfg.random_ramp = [0, 0];
    let counts = pair_counts(&cfg, 30);
    let mut want = vec![vec![0u64; counts[0].len()]; counts.len()];
    for step in 0..30 {
        for d in scenes_for_step(&cfg, step).unwrap().0 {
            for o in &d.layout.objects {
                let [c, s] = patch_label(o);
                want[c as usize][s as usize] += 1;
            }
        }
    }
    assert_eq!(counts, want);
    for (c, s) in HELD_OUT_PAIRS {
        let c = 1 + vla_demo::scene::Color::ALL
            .iter()
            .position(|&x| x == c)
            .unwrap();
        let s = 1 + vla_demo::scene::Shape::ALL
            .iter()
            .position(|&x| x == s)
            .unwrap();
        assert_eq!(counts[c][s], 0, "a held-out pair was counted");
    }
    let named: u64 = counts
        .iter()
        .skip(1)
        .map(|row| row.iter().skip(1).sum::<u64>())
        .sum();
    assert!(named > 100, "only {named} named objects counted");
    // Every seen pair is drawn somewhere in the stream.
    let seen = counts
        .iter()
        .skip(1)
        .flat_map(|row| row.iter().skip(1))
        .filter(|&&n| n > 0)
        .count();
    assert_eq!(seen, 24 - HELD_OUT_PAIRS.len());
    // The prior adjusts the patch-label term, so it needs that term (the
    // shipped recipe has both: `every_committed_config_loads`).
    assert_eq!(cfg.patch_label_weight, 0.0);
    cfg.pair_prior = 1.0;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("pair_prior"), "{err}");
}
