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
use vla_demo::scene::random::HELD_OUT_PAIRS;
use vla_demo::train::{scenes_for_step, worlds_for_step, TrainConfig};

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
