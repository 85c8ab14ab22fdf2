//! Helpers shared by the demo's end-to-end tests: run the real binary, read
//! its output, and check points against a scene's ground-truth outline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn scenes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenes")
}

pub fn red_cup() -> PathBuf {
    scenes().join("red_cup.png")
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vla-demo"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

pub fn json(r: &Run) -> Value {
    ok(r);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", r.stdout))
}

/// One `error:` line that mentions `needle`, a non-zero exit, no panic.
pub fn fails_with(r: &Run, needle: &str) {
    assert_ne!(r.code, 0, "expected a failure, got:\n{}", r.stdout);
    assert!(!r.stderr.contains("panicked"), "panicked:\n{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{}", r.stderr);
    assert!(
        errors[0].contains(needle),
        "expected {needle:?} in:\n{}",
        r.stderr
    );
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The ground-truth outline of the object a command's target, in pixels.
pub fn outline_of(truth: &Value, name_en: &str) -> Vec<[f64; 2]> {
    let obj = truth["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name_en"] == name_en)
        .expect("the scene has the object");
    obj["polygon_px"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
        .collect()
}

pub fn truth_of(png: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(png.with_extension("json")).unwrap()).unwrap()
}

/// Even-odd point in polygon.
pub fn inside(poly: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut c = false;
    let n = poly.len();
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + n - 1) % n]);
        if (a[1] > y) != (b[1] > y) && x < (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]) + a[0] {
            c = !c;
        }
    }
    c
}

/// A training config (configs/train-tiny.json, shrunk) small enough to train
/// a step in a second: 3 steps, a checkpoint after each.
pub fn tiny_train_config() -> Value {
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/train-tiny.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let m = &mut cfg["model"];
    m["image_size"] = 64.into();
    m["hidden_size"] = 16.into();
    m["num_attention_heads"] = 2.into();
    m["intermediate_size"] = 16.into();
    m["conv_stem"] = serde_json::json!([4]);
    m["vision_layers"] = 1.into();
    m["text_layers"] = 1.into();
    m["fusion_layers"] = 1.into();
    cfg["steps"] = 3.into();
    cfg["scenes_per_step"] = 1.into();
    cfg["commands_per_scene"] = 2.into();
    cfg["shards"] = 1.into();
    cfg["warmup_steps"] = 1.into();
    cfg["eval_every"] = 0.into();
    cfg["eval_scenes"] = 1.into();
    cfg["checkpoint_every"] = 1.into();
    cfg
}
