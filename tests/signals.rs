//! SIGINT and SIGTERM while files are being written: the run ends with
//! 128 + the signal, and neither a temporary file nor a partial output is
//! left (docs/RELIABILITY.md); a training run keeps its checkpoints. Run
//! with `cargo test --release --test signals`.

mod demo_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(args: &[&str], dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vla-demo"))
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `ready` holds (or the child has ended), at most a minute.
fn wait_until(child: &mut Child, ready: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended too early"
        );
        assert!(t0.elapsed() < Duration::from_secs(60), "never got ready");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &mut Child, sig: &str) -> Option<i32> {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    child.wait().unwrap().code()
}

fn has_temporary(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".vla-demo-"))
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn sigint_while_scenes_are_written_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("new/scenes");
    let mut child = start(
        &[
            "scene",
            "--count",
            "5000",
            "--size",
            "256",
            "--dir",
            "new/scenes",
        ],
        tmp.path(),
    );
    wait_until(&mut child, || has_temporary(&out));
    assert_eq!(signal(&mut child, "-INT"), Some(130));
    // The directories the run made are gone with everything in them.
    assert_eq!(names(tmp.path()), Vec::<String>::new());
}

#[test]
fn sigterm_while_scenes_are_written_leaves_the_directory_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("scenes");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let mut child = start(
        &[
            "scene", "--count", "5000", "--size", "256", "--dir", "scenes",
        ],
        tmp.path(),
    );
    wait_until(&mut child, || has_temporary(&out));
    assert_eq!(signal(&mut child, "-TERM"), Some(143));
    assert_eq!(names(&out), vec!["keep.txt".to_string()]);
    assert_eq!(names(tmp.path()), vec!["scenes".to_string()]);
}

#[test]
fn sigterm_before_the_first_checkpoint_removes_the_new_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/train-tiny.json");
    let mut child = start(
        &[
            "train",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "runs/a",
        ],
        tmp.path(),
    );
    // The directory appears once the tokenizer is trained; the first
    // checkpoint is 100 steps later.
    wait_until(&mut child, || tmp.path().join("runs/a").is_dir());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(signal(&mut child, "-TERM"), Some(143));
    assert_eq!(names(tmp.path()), Vec::<String>::new());
}

/// The step of the last line in a run's training log, once there is one.
fn logged_step(run: &Path) -> Option<u64> {
    let log = std::fs::read_to_string(run.join("train_log.jsonl")).ok()?;
    let last: serde_json::Value = serde_json::from_str(log.lines().last()?).ok()?;
    last["step"].as_u64()
}

#[test]
fn sigint_after_a_checkpoint_keeps_the_run_for_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = demo_common::tiny_train_config();
    cfg["steps"] = 100_000.into();
    std::fs::write(
        tmp.path().join("tiny.json"),
        serde_json::to_vec(&cfg).unwrap(),
    )
    .unwrap();
    let run = tmp.path().join("runs/a");
    let mut child = start(
        &[
            "train",
            "--quiet",
            "--config",
            "tiny.json",
            "--out",
            "runs/a",
        ],
        tmp.path(),
    );
    // The log is the last file of a checkpoint to be renamed into place.
    wait_until(&mut child, || logged_step(&run).is_some_and(|s| s >= 2));
    assert_eq!(signal(&mut child, "-INT"), Some(130));
    // Every checkpoint file is there, and no temporary one.
    let kept = names(&run);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "train_config.json",
        "train_log.jsonl",
        "training_state.safetensors",
    ] {
        assert!(kept.contains(&file.to_string()), "{file} is gone: {kept:?}");
    }
    assert!(!has_temporary(&run), "{kept:?}");
    // `--resume` continues from the saved step.
    let saved = logged_step(&run).unwrap();
    let next = (saved + 1).to_string();
    let r = demo_common::run_in(
        tmp.path(),
        &[
            "train", "--quiet", "--resume", "--out", "runs/a", "--steps", &next,
        ],
    );
    demo_common::ok(&r);
    assert_eq!(logged_step(&run), Some(saved + 1));
}
