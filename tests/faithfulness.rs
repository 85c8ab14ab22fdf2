//! The interventions of `faithfulness.rs` and the relevance maps of
//! `relevance.rs`, on the embedded model and a shipped scene whose answer is
//! known (the red cup), and through the binary.
//!
//! Run with `cargo test --release --test faithfulness`.

mod demo_common;

use candle::Tensor;
use demo_common::*;
use vla_demo::checkpoint::Source;
use vla_demo::faithfulness::{
    self, base, curves, ranking, saliency, Case, Intervention, Method, Settings,
};
use vla_demo::model::record::{self, Recorder, Site};
use vla_demo::Pipeline;

fn red_cup_case() -> (Pipeline, Case) {
    let p = Pipeline::load(&Source::Embedded, "cpu").unwrap();
    let img = vla_demo::preprocess::load_image(&red_cup()).unwrap();
    let (inputs, ..) = p.prepare(&[img], &["pick up the red cup"]).unwrap();
    let case = Case::from_inputs(&inputs).unwrap();
    (p, case)
}

fn only(iv: Intervention, ks: Vec<usize>, seed: u64) -> Settings {
    Settings {
        ks,
        interventions: vec![iv],
        random_draws: 2,
        seed,
    }
}

#[test]
fn knocking_out_the_attended_patches_moves_the_action_and_unattended_ones_do_not() {
    let (p, case) = red_cup_case();
    let b = base(&p.model, &case).unwrap();
    let maps = saliency(&p.model, &case, &b).unwrap();
    let attention = maps[0].1.clone();
    // The least attended patches, ranked first: knocking them out must not matter.
    let unattended: Vec<f32> = attention.iter().map(|a| -a).collect();
    let runs = curves(
        &p.model,
        &case,
        &b,
        &[
            (Method::Attention, attention),
            (Method::Rollout, unattended),
        ],
        None,
        &only(Intervention::Knockout, vec![0, 4], 1),
    )
    .unwrap();
    let at = |m: Method| runs.iter().find(|c| c.method == m).unwrap();
    let (top, bottom) = (at(Method::Attention), at(Method::Rollout));
    assert!(
        top.moved[1] > 1.0,
        "top-4 knockout moved {} patches",
        top.moved[1]
    );
    assert!(top.prob[1] < 0.5 * top.prob[0], "{:?}", top.prob);
    assert!(
        bottom.moved[1] < 0.05,
        "bottom-4 knockout moved {}",
        bottom.moved[1]
    );
    assert!(
        (bottom.prob[1] - bottom.prob[0]).abs() < 0.02,
        "{:?}",
        bottom.prob
    );
}

#[test]
fn every_curve_at_k_zero_is_the_unaltered_run_and_the_seed_fixes_the_random_orders() {
    let (p, case) = red_cup_case();
    let b = base(&p.model, &case).unwrap();
    let maps = saliency(&p.model, &case, &b).unwrap();
    let run = |seed| {
        curves(
            &p.model,
            &case,
            &b,
            &maps,
            None,
            &only(Intervention::Delete, vec![0, 8, 32], seed),
        )
        .unwrap()
    };
    let first = run(7);
    for c in &first {
        assert!(
            (c.prob[0] - b.probe.prob).abs() < 1e-5,
            "{:?}: {} vs {}",
            c.method,
            c.prob[0],
            b.probe.prob
        );
        assert!(c.moved[0] < 1e-5, "{:?} moved at k = 0", c.method);
    }
    let random = |cs: &[faithfulness::Curve]| {
        cs.iter()
            .find(|c| c.method == Method::Random)
            .unwrap()
            .prob
            .clone()
    };
    assert_eq!(
        random(&first),
        random(&run(7)),
        "same seed, same random orders"
    );
    assert_ne!(
        random(&first),
        random(&run(8)),
        "another seed, other random orders"
    );
}

#[test]
fn painting_replaces_exactly_the_chosen_patches_with_the_table_colour() {
    let (p, case) = red_cup_case();
    let cfg = p.config();
    let (grid, patch) = (cfg.grid(), cfg.patch_size);
    let colour = faithfulness::table_colour(&case.pixels).unwrap();
    let mut hidden = vec![0f32; grid * grid];
    hidden[grid + 2] = 1.0; // row 1, column 2
    let painted = faithfulness::paint(&case.pixels, &hidden, grid, patch, &colour).unwrap();
    let diff = (painted - &case.pixels)
        .unwrap()
        .abs()
        .unwrap()
        .sum_keepdim(1)
        .unwrap();
    let diff = diff
        .squeeze(0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (y, row) in diff.iter().enumerate() {
        for (x, d) in row.iter().enumerate() {
            let inside = y / patch == 1 && x / patch == 2;
            if !inside {
                assert_eq!(*d, 0.0, "pixel ({x}, {y}) outside the patch changed");
            }
        }
    }
}

#[test]
fn every_attention_map_gets_a_gradient_and_the_tap_closes_afterwards() {
    let (p, case) = red_cup_case();
    let b = base(&p.model, &case).unwrap();
    let maps = saliency(&p.model, &case, &b).unwrap();
    let relevance = &maps
        .iter()
        .find(|(m, _)| *m == Method::Relevance)
        .unwrap()
        .1;
    assert!(relevance.iter().all(|v| v.is_finite() && *v >= 0.0));
    // The relevance map's peak is on the cup, as the attention's is.
    assert_eq!(ranking(relevance)[0], ranking(&maps[0].1)[0]);
    // A tapping recorder opened and finished leaves ordinary runs untouched.
    let ones = || Tensor::ones(3, candle::DType::F32, &candle::Device::Cpu).unwrap();
    let tap = || record::attention(Site::Text, ones(), &ones(), &ones()).unwrap();
    {
        let recorder = Recorder::start_tapped();
        assert!(tap().track_op());
        let (maps, taps) = recorder.finish(3);
        assert_eq!((maps.text.len(), taps.len()), (1, 1));
    }
    assert!(
        !tap().track_op(),
        "a finished recorder still tapped the weights"
    );
}

#[test]
fn explain_prints_the_verdict_and_with_faithfulness_every_curve_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("curves.png");
    let cup = red_cup();
    let base_args = [
        "explain",
        "--image",
        s(&cup),
        "--cmd",
        "pick up the red cup",
    ];
    let r = run_in(dir.path(), &base_args);
    ok(&r);
    assert!(
        r.stdout
            .contains("Intervention: deleting the 4 most-attended patches"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("relevance"), "{}", r.stdout);

    let mut args = base_args.to_vec();
    args.extend(["--faithfulness", "--plot", s(&plot), "--json"]);
    let r = run_in(dir.path(), &args);
    let j = json(&r);
    let curves = j["faithfulness"]["curves"].as_array().unwrap();
    for iv in ["delete", "knockout", "insert"] {
        assert!(
            curves.iter().any(|c| c["intervention"] == iv),
            "no {iv} curve"
        );
    }
    let img = image::open(&plot).expect("the plot is a PNG");
    assert!(img.width() > 300 && img.height() > 200);

    // --plot needs --faithfulness; a plot that is not a PNG is refused.
    let r = run_in(
        dir.path(),
        &[
            "explain",
            "--image",
            s(&cup),
            "--cmd",
            "pick up the red cup",
            "--plot",
            "x.png",
        ],
    );
    fails_with(&r, "required arguments were not provided");
    assert!(r.stderr.contains("--faithfulness"), "{}", r.stderr);
    let mut args = base_args.to_vec();
    args.extend(["--faithfulness", "--plot", "curves.jpg"]);
    fails_with(&run_in(dir.path(), &args), "must end in .png");
}

#[test]
fn eval_faithfulness_reports_every_method_for_the_family_asked() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(
        dir.path(),
        &[
            "eval",
            "--faithfulness",
            "--family",
            "pick",
            "--scenes",
            "2",
            "--ks",
            "0,4",
            "--json",
        ],
    );
    let j = json(&r);
    let rows = j[0]["rows"].as_object().unwrap();
    for m in ["attention", "rollout", "relevance", "target", "random"] {
        assert!(
            rows.contains_key(&format!("pick/{m}")),
            "no row for {m}: {rows:?}"
        );
    }
    assert!(rows.keys().all(|k| k.starts_with("pick/")), "{rows:?}");
    assert_eq!(j[0]["ks"], serde_json::json!([0, 4]));
    // Each map's commonest peak is a patch of the grid and a share of the
    // runs; the target's and random orders have no map, so no peak, no
    // pointing and no mass.
    for m in ["attention", "rollout", "relevance"] {
        let peak = &rows[&format!("pick/{m}")]["commonest_peak"];
        let patch = peak[0].as_u64().unwrap();
        let share = peak[1].as_f64().unwrap();
        assert!(patch < 100 && share > 0.0 && share <= 1.0, "{m}: {peak}");
        let pointing = rows[&format!("pick/{m}")]["pointing"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pointing), "{m}: {pointing}");
    }
    for m in ["target", "random"] {
        for field in ["commonest_peak", "pointing", "mass"] {
            assert!(rows[&format!("pick/{m}")][field].is_null(), "{m} {field}");
        }
    }
}
