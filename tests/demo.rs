//! End-to-end tests of the demo: the real `vla-demo` binary, the embedded
//! default model, and the committed example scenes (examples/scenes/*.png
//! with their ground-truth JSON). Input formats and error cases are in
//! tests/demo_errors.rs.
//!
//! Run with `cargo test --release --test demo`.

mod demo_common;

use demo_common::*;
use serde_json::Value;

#[test]
fn overlay_has_its_documented_size_and_its_hottest_region_is_on_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.png");
    let r = run_in(
        dir.path(),
        &[
            "--image",
            s(&red_cup()),
            "--cmd",
            "pick up the red cup",
            "--overlay",
            s(&out),
            "--alpha",
            "1",
            "--json",
        ],
    );
    let j = json(&r);
    let png = image::open(&out).expect("the overlay is a PNG").to_rgb8();
    // Documented size: the PNG's size is in the JSON, and the input image
    // sits pixel for pixel at its top-left.
    assert_eq!(j["overlay"]["width"].as_u64().unwrap() as u32, png.width());
    assert_eq!(
        j["overlay"]["height"].as_u64().unwrap() as u32,
        png.height()
    );
    assert_eq!(
        j["overlay"]["image_region"],
        serde_json::json!([0, 0, 224, 224])
    );
    assert!(png.width() > 224 && png.height() > 224);

    // With --alpha 1 the image region is pure turbo colours: invert them.
    let table: Vec<[u8; 3]> = (0..256)
        .map(|i| {
            let c = colorous::TURBO.eval_rational(i, 256);
            [c.r, c.g, c.b]
        })
        .collect();
    let mut level = vec![vec![None; 224]; 224];
    let mut top = 0;
    for y in 0..224u32 {
        for x in 0..224u32 {
            let p = png.get_pixel(x, y).0;
            let (i, d) = table
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        i,
                        (0..3)
                            .map(|k| (c[k] as i32 - p[k] as i32).pow(2))
                            .sum::<i32>(),
                    )
                })
                .min_by_key(|t| t.1)
                .unwrap();
            if d <= 12 {
                level[y as usize][x as usize] = Some(i);
                top = top.max(i);
            }
        }
    }
    let hottest: Vec<(f64, f64)> = (0..224)
        .flat_map(|y| (0..224).map(move |x| (x, y)))
        .filter(|&(x, y)| level[y][x].is_some_and(|l| l + 2 >= top))
        .map(|(x, y)| (x as f64 + 0.5, y as f64 + 0.5))
        .collect();
    assert!(!hottest.is_empty());
    // The JSON's peak pixel is in the hottest region.
    let peak = [
        j["attention"]["peak_pixel"][0].as_f64().unwrap(),
        j["attention"]["peak_pixel"][1].as_f64().unwrap(),
    ];
    // Half a patch, in input pixels.
    let m = &j["model"];
    let half = 0.5 * m["patch_size"].as_f64().unwrap() * 224.0 / m["image_size"].as_f64().unwrap();
    assert!(
        hottest
            .iter()
            .any(|&(x, y)| (x - peak[0]).abs() <= half && (y - peak[1]).abs() <= half),
        "peak {peak:?} is not in the hottest region"
    );
    // ... and that region lies on the red cup (a patch counts as the
    // target's when the object covers at least 10% of it, as in eval).
    let cup = outline_of(&truth_of(&red_cup()), "the red cup");
    let on = hottest.iter().filter(|&&(x, y)| inside(&cup, x, y)).count();
    assert!(
        on as f64 >= 0.1 * hottest.len() as f64,
        "only {on} of {} hottest pixels lie on the red cup",
        hottest.len()
    );
}

#[test]
fn json_has_the_documented_fields_and_the_waypoint_is_on_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let j = json(&run_in(
        dir.path(),
        &[
            "--image",
            s(&red_cup()),
            "--cmd",
            "pick up the red cup",
            "--json",
            "--no-overlay",
        ],
    ));
    assert_eq!(j["command"], "pick up the red cup");
    assert_eq!(
        (j["image"]["width"].as_u64(), j["image"]["height"].as_u64()),
        (Some(224), Some(224))
    );
    let tokens = j["action"]["tokens"].as_array().unwrap();
    assert!(tokens.len() >= 4 && tokens.last().unwrap()["text"] == "<eoa>");
    for t in tokens {
        assert!(t["id"].is_u64() && t["text"].is_string() && t["prob"].is_f64());
        assert!(!t["top"].as_array().unwrap().is_empty());
    }
    let w = &j["action"]["waypoints"][0];
    for k in ["x", "y", "metric", "pixel", "gripper"] {
        assert!(!w[k].is_null(), "waypoint lacks {k}");
    }
    assert_eq!(w["gripper"], "close");
    for k in ["preprocess", "vision", "text", "decode", "overlay", "total"] {
        assert!(j["timing_ms"][k].is_f64(), "timing_ms lacks {k}");
    }
    assert!(j["attention"]["peak_pixel"].is_array());
    // The ground truth beside the image gives the grounding figures.
    let g = &j["grounding"];
    assert_eq!(g["target"]["id"], 1);
    assert!(g["pointing_hit"].is_boolean() && g["attention_mass"].is_f64());
    // The pick point lies on the red cup, in the input image's own pixels.
    let cup = outline_of(&truth_of(&red_cup()), "the red cup");
    let (x, y) = (
        w["pixel"][0].as_f64().unwrap(),
        w["pixel"][1].as_f64().unwrap(),
    );
    assert!(
        inside(&cup, x, y),
        "waypoint ({x}, {y}) is not on the red cup"
    );
    assert!(((w["x"].as_f64().unwrap() * 224.0) - x).abs() < 1e-3);
}

#[test]
fn readable_printout_names_everything_and_the_default_overlay_goes_to_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(
        dir.path(),
        &["--image", s(&red_cup()), "--cmd", "pick up the red cup"],
    );
    ok(&r);
    for needle in [
        "tokens",
        "top 3",
        "waypoints",
        "normalised",
        "metric",
        "input pixels",
        "preprocess",
        "vision",
        "fusion/decode",
        "overlay",
        "pointing",
        "red_cup.overlay.png",
    ] {
        assert!(
            r.stdout.contains(needle),
            "printout lacks {needle:?}:\n{}",
            r.stdout
        );
    }
    assert!(dir.path().join("red_cup.overlay.png").is_file());
}

#[test]
fn per_token_sheet_has_a_panel_for_each_word_and_action_token() {
    let dir = tempfile::tempdir().unwrap();
    let j = json(&run_in(
        dir.path(),
        &[
            "--image",
            s(&red_cup()),
            "--cmd",
            "pick up the red cup",
            "--per-token",
            "--json",
        ],
    ));
    let sheet = j["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "per-token")
        .expect("a per-token sheet");
    let labels: Vec<&str> = sheet["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for word in ["pick", "up", "the", "red", "cup"] {
        assert!(
            labels.iter().any(|l| l.contains(&format!("\"{word}\""))),
            "no panel for {word:?}: {labels:?}"
        );
    }
    for t in j["action"]["tokens"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        assert!(
            labels.iter().any(|l| l.contains(text)),
            "no panel for {text}: {labels:?}"
        );
    }
    let png =
        image::open(dir.path().join(sheet["path"].as_str().unwrap())).expect("the sheet is a PNG");
    assert!(png.width() > 5 * 200);
}

#[test]
fn other_sheets_and_the_export_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_in(
        dir.path(),
        &[
            "--image",
            s(&red_cup()),
            "--cmd",
            "pick up the red cup",
            "--per-head",
            "--per-layer",
            "--rollout",
            "--head-fusion",
            "max",
            "--export",
            "attn.npz",
            "--json",
        ],
    );
    let j = json(&r);
    for f in [
        "red_cup.overlay.png",
        "red_cup.per-head.png",
        "red_cup.per-layer.png",
        "red_cup.rollout.png",
        "attn.npz",
        "attn.manifest.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let npz = std::fs::read(dir.path().join("attn.npz")).unwrap();
    assert_eq!(&npz[..2], b"PK", "an npz is a zip archive");
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("attn.manifest.json")).unwrap(),
    )
    .unwrap();
    let grid = j["model"]["grid"].as_u64().unwrap() as usize;
    let heads = j["model"]["heads"].as_u64().unwrap() as usize;
    assert_eq!(m["grid"].as_u64(), Some(grid as u64));
    let n = grid * grid;
    assert_eq!(m["patches"].as_array().unwrap().len(), n);
    // Patch (1, 1) of a square scene starts one patch in from the corner.
    let side = 224.0 / grid as f64;
    let b = &m["patches"][grid + 1]["input_px"];
    for (k, want) in [side, side, 2.0 * side, 2.0 * side].into_iter().enumerate() {
        assert!((b[k].as_f64().unwrap() - want).abs() < 1e-3, "{b}");
    }
    let vision = m["arrays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "vision/layer0")
        .unwrap();
    assert_eq!(vision["shape"], serde_json::json!([heads, n, n]));
    assert_eq!(
        m["fusion_sequence"][m["boa_position"].as_u64().unwrap() as usize],
        "<boa>"
    );
    assert!(j["outputs"].as_array().unwrap().len() >= 5);
}

#[test]
fn explain_walks_the_three_steps_and_the_weights_sum_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let j = json(&run_in(
        dir.path(),
        &[
            "explain",
            "--image",
            s(&red_cup()),
            "--cmd",
            "pick up the red cup",
            "--json",
        ],
    ));
    assert!(
        (j["weight_sum"].as_f64().unwrap() - 1.0).abs() < 1e-4,
        "{}",
        j["weight_sum"]
    );
    assert!(j["align_check"].as_f64().unwrap() < 1e-5);
    assert_eq!(j["top_by_score"].as_array().unwrap().len(), 5);
    // The shipped model's scores include the named match and its floor.
    let score = j["score_fn"].as_str().unwrap();
    assert!(
        score.contains("the named match") && score.contains("at least -3"),
        "{score}"
    );
    // The decoder's mask hides the next word; the shipped fusion head's
    // prefix-LM mask lets the first word see the last, and <boa> not a_1.
    let words = j["mask_tokens"].as_array().unwrap().len();
    assert!(!j["causal_mask"][0][1].as_bool().unwrap());
    assert!(j["prefix_lm"].as_bool().unwrap());
    assert!(j["fusion_mask"][0][words - 1].as_bool().unwrap());
    assert!(!j["fusion_mask"][0][words].as_bool().unwrap());
    assert!(!j["fusion_mask"][words][words + 1].as_bool().unwrap());
    assert!(j["fusion_mask"][words + 1][0].as_bool().unwrap());
    let sum_line = format!("sum of all {} weights = 1.0000", j["num_patches"]);
    let r = run_in(
        dir.path(),
        &[
            "explain",
            "--image",
            s(&red_cup()),
            "--cmd",
            "pick up the red cup",
        ],
    );
    ok(&r);
    for needle in [
        "Step 1",
        "Step 2",
        "Step 3",
        sum_line.as_str(),
        "Word × object",
        "red cup",
        "prefix-LM",
        "○",
        "×",
    ] {
        assert!(
            r.stdout.contains(needle),
            "explain lacks {needle:?}:\n{}",
            r.stdout
        );
    }
}

#[test]
fn batch_runs_every_pair_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let other = scenes().join("scene_200011.png");
    let lines = [
        serde_json::json!({"image": red_cup(), "cmd": "pick up the red cup"}),
        serde_json::json!({"image": other, "cmd": "take the red cup"}),
        serde_json::json!({"image": red_cup(), "cmd": "빨간 컵을 집어"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("pairs.jsonl"), text).unwrap();
    let r = run_in(dir.path(), &["--batch", "pairs.jsonl"]);
    ok(&r);
    let out: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 3);
    for (o, l) in out.iter().zip(&lines) {
        assert_eq!(o["command"], l["cmd"]);
    }
    // A bad line names itself, and nothing is printed.
    std::fs::write(dir.path().join("bad.jsonl"), "{\"image\": \"x.png\"}\n").unwrap();
    let r = run_in(dir.path(), &["--batch", "bad.jsonl"]);
    fails_with(&r, "line 1");
    assert!(r.stdout.is_empty());
}

/// red_cup.png holds two blue balls, a red cup, a green cup and an orange
/// bowl: no purple ball, and "the ball" fits two objects. The model trained
/// on the randomised world (`models/randomised`) has the outcome tokens; the
/// shipped one never learned to refuse.
#[test]
fn a_refusal_is_said_in_the_printout_and_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let image = red_cup();
    let model = scenes().join("../../models/randomised");
    for cmd in ["pick up the purple ball", "보라색 공을 집어"] {
        let base = ["--model-dir", s(&model), "--image", s(&image), "--cmd", cmd];
        let j = json(&run_in(dir.path(), &[&base[..], &["--json"]].concat()));
        let a = &j["action"];
        assert_eq!(a["outcome"], "absent", "{cmd}: {a}");
        assert!(
            a["message"].as_str().unwrap().starts_with("not here"),
            "{cmd}: {a}"
        );
        assert_eq!(a["waypoints"].as_array().unwrap().len(), 0, "{cmd}");
        // The ground truth beside the image agrees, and names no target.
        assert_eq!(j["grounding"]["expected"], "absent", "{cmd}");
        assert!(j["grounding"]["target"].is_null(), "{cmd}");

        let r = run_in(dir.path(), &base);
        ok(&r);
        assert!(
            r.stdout.contains("answer     not here"),
            "{cmd}:\n{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("the model said \"absent\" ✓"),
            "{cmd}:\n{}",
            r.stdout
        );
    }
    // "The ball" fits two: the scene calls for "which one?", whatever the
    // model says, and grounding does not score it against either ball.
    let r = run_in(
        dir.path(),
        &[
            "--image",
            s(&image),
            "--cmd",
            "push the ball to the left",
            "--json",
        ],
    );
    let j = json(&r);
    assert_eq!(j["grounding"]["expected"], "ambiguous");
    assert!(j["grounding"]["target"].is_null());
    assert!(j["grounding"]["pointing_hit"].is_null());
    // A valid command acts, and the scene agrees.
    let j = json(&run_in(
        dir.path(),
        &[
            "--image",
            s(&image),
            "--cmd",
            "pick up the red cup",
            "--json",
        ],
    ));
    assert_eq!(j["action"]["outcome"], "act");
    assert_eq!(j["grounding"]["expected"], "act");
}

/// The overlay entry names the map it colours and gives that map's own
/// peak: for `--method attention` the `attention` block's peak, for
/// rollout the rollout map's, while `attention` still describes the
/// cross-attention. The printout says the same under the overlay line.
#[test]
fn the_overlay_reports_the_map_it_colours_and_its_peak() {
    let dir = tempfile::tempdir().unwrap();
    let image = red_cup();
    let base = ["--image", s(&image), "--cmd", "pick up the red cup"];
    let attention = json(&run_in(dir.path(), &[&base[..], &["--json"]].concat()));
    assert_eq!(attention["overlay"]["map"], "attention");
    assert_eq!(
        attention["overlay"]["peak_patch"],
        attention["attention"]["peak_patch"]
    );
    let rollout = json(&run_in(
        dir.path(),
        &[&base[..], &["--json", "--method", "rollout"]].concat(),
    ));
    assert_eq!(rollout["overlay"]["map"], "rollout");
    // (The rollout run takes the readable path, so its values differ in the
    // last digits; the peak is the same patch.)
    assert_eq!(
        rollout["attention"]["peak_patch"],
        attention["attention"]["peak_patch"]
    );
    let p = &rollout["overlay"]["peak_patch"];
    let (i, r, c) = (
        p["index"].as_u64().unwrap(),
        p["row"].as_u64().unwrap(),
        p["col"].as_u64().unwrap(),
    );
    assert!(i < 100 && i == r * 10 + c, "{p}");
    let printout = run_in(dir.path(), &[&base[..], &["--method", "rollout"]].concat());
    ok(&printout);
    let line = format!("its map: rollout, peak patch {i} (row {r}, col {c})");
    assert!(printout.stdout.contains(&line), "{}", printout.stdout);
}
