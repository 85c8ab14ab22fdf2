//! The machinery of the hostile corpus (tests/hostile.rs): cases, how one
//! runs, and what every run must satisfy.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a case must end with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// Exit 2, exactly one `error:` line that contains this text, and no
    /// file added, changed or removed.
    Fail(&'static str),
    /// Exit 0 and no `error:` line.
    Ok,
    /// Either of the two (a corrupted byte that may still be a valid image),
    /// each with its own guarantees.
    Either,
}

/// Where standard output goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Out {
    Pipe,
    /// A pipe whose reader has gone: writing fails with EPIPE.
    Closed,
    /// /dev/full: writing fails with ENOSPC.
    Full,
}

pub struct Case {
    pub name: String,
    pub args: Vec<OsString>,
    pub expect: Expect,
    pub stdout: Out,
    /// Files to create in the case's own directory first (relative path, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    /// Directories to copy into the case's directory first (name, source).
    pub copies: Vec<(String, PathBuf)>,
    /// Run under `ulimit -f` (KiB): writes past it fail with EFBIG, like a full disk.
    pub file_limit_kib: Option<u64>,
    /// Extra check of a successful run's standard output.
    pub check: Option<fn(&str)>,
}

impl Case {
    pub fn new(name: impl Into<String>, args: &[&str], expect: Expect) -> Self {
        Self {
            name: name.into(),
            args: args.iter().map(OsString::from).collect(),
            expect,
            stdout: Out::Pipe,
            files: Vec::new(),
            copies: Vec::new(),
            file_limit_kib: None,
            check: None,
        }
    }

    pub fn file(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_string(), bytes.into()));
        self
    }

    pub fn copy(mut self, name: &str, from: &Path) -> Self {
        self.copies.push((name.to_string(), from.to_path_buf()));
        self
    }

    pub fn out(mut self, o: Out) -> Self {
        self.stdout = o;
        self
    }

    pub fn limit(mut self, kib: u64) -> Self {
        self.file_limit_kib = Some(kib);
        self
    }

    pub fn check(mut self, f: fn(&str)) -> Self {
        self.check = Some(f);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.files
            .push((format!("@symlink:{name}"), target.as_bytes().to_vec()));
        self
    }

    pub fn fifo(mut self, name: &str) -> Self {
        self.files.push((format!("@fifo:{name}"), Vec::new()));
        self
    }

    pub fn sparse(mut self, name: &str, len: u64) -> Self {
        self.files
            .push((format!("@sparse:{name}"), len.to_string().into_bytes()));
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }
}

/// Every file under `dir` with its size and a hash of its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                out.insert(rel, (u64::MAX, 0));
                stack.push(p);
            } else if ft.is_file() {
                let meta = e.metadata().unwrap();
                // Big sparse fixtures are compared by size only.
                let hash = if meta.len() <= (64 << 20) {
                    fnv(&std::fs::read(&p).unwrap_or_default())
                } else {
                    0
                };
                out.insert(rel, (meta.len(), hash));
            } else {
                out.insert(rel, (0, 1));
            }
        }
    }
    out
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Temporary files of this program anywhere in a snapshot.
fn temporaries(s: &BTreeMap<PathBuf, (u64, u64)>) -> Vec<&PathBuf> {
    s.keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".vla-demo-"))
        })
        .collect()
}

pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
}

/// Runs one case in its own directory under `work`, with its own TMPDIR.
pub fn run_case(bin: &Path, work: &Path, index: usize, case: &Case) -> Result<Outcome, String> {
    let dir = work.join(format!("case{index:04}"));
    let tmp = work.join(format!("tmp{index:04}"));
    let logs = work.join(format!("log{index:04}"));
    for d in [&dir, &tmp, &logs] {
        std::fs::create_dir_all(d).unwrap();
    }
    for (name, from) in &case.copies {
        copy_dir(from, &dir.join(name));
    }
    for (name, bytes) in &case.files {
        // "@symlink:NAME" -> a symlink to the bytes; "@fifo:NAME" -> a named
        // pipe; "@sparse:NAME" -> a sparse file of the size in the bytes.
        let (kind, name) = match name.strip_prefix('@').and_then(|n| n.split_once(':')) {
            Some((k, n)) => (k, n),
            None => ("file", name.as_str()),
        };
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&p);
        match kind {
            "symlink" => {
                std::os::unix::fs::symlink(String::from_utf8_lossy(bytes).as_ref(), &p).unwrap()
            }
            "fifo" => assert!(Command::new("mkfifo").arg(&p).status().unwrap().success()),
            "sparse" => {
                let len: u64 = String::from_utf8_lossy(bytes).parse().unwrap();
                std::fs::File::create(&p).unwrap().set_len(len).unwrap();
            }
            _ => std::fs::write(&p, bytes).unwrap(),
        }
    }
    let before = snapshot(&dir);

    let stdout_path = logs.join("stdout");
    let stderr_path = logs.join("stderr");
    let mut cmd = match case.file_limit_kib {
        Some(kib) => {
            // The shell ignores SIGXFSZ for the child, so a write past the
            // limit fails with EFBIG, as a full disk fails with ENOSPC.
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" \"$@\""))
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(&case.args)
        .current_dir(&dir)
        .env("TMPDIR", &tmp)
        .env("HF_HOME", tmp.join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    match case.stdout {
        Out::Pipe => {
            cmd.stdout(std::fs::File::create(&stdout_path).unwrap());
        }
        Out::Full => {
            cmd.stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            );
        }
        Out::Closed => {
            cmd.stdout(Stdio::piped());
        }
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot spawn: {e}"))?;
    if case.stdout == Out::Closed {
        // Close the read end at once: every write by the child gets EPIPE.
        drop(child.stdout.take());
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("hung: no exit after 180 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = t0.elapsed().as_secs_f64();
    let outcome = Outcome {
        code: status.code(),
        stdout: String::from_utf8_lossy(&std::fs::read(&stdout_path).unwrap_or_default())
            .into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&stderr_path).unwrap()).into_owned(),
        seconds,
    };
    let after = snapshot(&dir);
    let tmp_left = snapshot(&tmp);
    judge(case, &outcome, &before, &after, &tmp_left)?;
    // Leave nothing of a passing case behind.
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&logs);
    Ok(outcome)
}

fn judge(
    case: &Case,
    o: &Outcome,
    before: &BTreeMap<PathBuf, (u64, u64)>,
    after: &BTreeMap<PathBuf, (u64, u64)>,
    tmp_left: &BTreeMap<PathBuf, (u64, u64)>,
) -> Result<(), String> {
    let errors: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    let say = |what: &str| {
        Err(format!(
            "{what}\n  exit {:?}\n  stderr: {}\n  stdout: {}",
            o.code,
            o.stderr.trim_end(),
            o.stdout.chars().take(300).collect::<String>()
        ))
    };
    if o.stderr.contains("panicked") || o.stderr.contains("RUST_BACKTRACE") {
        return say("panicked");
    }
    if o.code.is_none() {
        return say("killed by a signal");
    }
    let left = temporaries(after);
    if !left.is_empty() {
        return say(&format!("temporary files left: {left:?}"));
    }
    let tmp_files: Vec<_> = tmp_left.keys().filter(|p| !p.starts_with("hf")).collect();
    if !tmp_files.is_empty() {
        return say(&format!("files left in TMPDIR: {tmp_files:?}"));
    }
    let failed = o.code != Some(0);
    match (case.expect, failed) {
        (Expect::Ok, true) => return say("expected success"),
        (Expect::Fail(_), false) => return say("expected an error"),
        _ => {}
    }
    if failed {
        if o.code != Some(2) {
            return say("a refusal must exit with 2");
        }
        if errors.len() != 1 {
            return say(&format!(
                "expected exactly one error: line, got {}",
                errors.len()
            ));
        }
        if let Expect::Fail(needle) = case.expect {
            if !errors[0].contains(needle) {
                return say(&format!("the error line lacks {needle:?}"));
            }
        }
        if before != after {
            let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
            let changed: Vec<_> = before
                .iter()
                .filter(|(k, v)| after.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            return say(&format!(
                "files changed by a failed run: added {added:?}, changed or removed {changed:?}"
            ));
        }
    } else {
        if !errors.is_empty() {
            return say("an error: line on success");
        }
        if let Some(check) = case.check {
            check(&o.stdout);
        }
    }
    Ok(())
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Runs every case on a few threads; returns the failures and the time.
pub fn run_all(bin: &Path, work: &Path, cases: &[Case]) -> (Vec<String>, f64) {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let times = Mutex::new(Vec::new());
    let t0 = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let result = run_case(bin, work, i, case);
                if let Ok(o) = &result {
                    times.lock().unwrap().push((o.seconds, case.name.clone()));
                }
                if let Err(why) = result {
                    let args: Vec<String> = case
                        .args
                        .iter()
                        .map(|a| {
                            let s = a.to_string_lossy();
                            if s.len() > 80 {
                                format!("{}…({} bytes)", &s[..s.floor_char_boundary(80)], s.len())
                            } else {
                                s.into_owned()
                            }
                        })
                        .collect();
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("[{i}] {}: {args:?}\n  {why}", case.name));
                }
            });
        }
    });
    let mut times = times.into_inner().unwrap();
    times.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slow: Vec<String> = times
        .iter()
        .take(8)
        .map(|(t, n)| format!("{t:.2} s {n}"))
        .collect();
    eprintln!("slowest cases:\n  {}", slow.join("\n  "));
    (failures.into_inner().unwrap(), t0.elapsed().as_secs_f64())
}

/// A safetensors file, split into its header and data.
pub struct Safetensors {
    pub header: serde_json::Map<String, serde_json::Value>,
    pub data: Vec<u8>,
}

impl Safetensors {
    pub fn parse(bytes: &[u8]) -> Self {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        Self {
            header: header.as_object().unwrap().clone(),
            data: bytes[8 + n..].to_vec(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .header
            .keys()
            .filter(|k| *k != "__metadata__")
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Byte range of a tensor's data.
    pub fn range(&self, name: &str) -> (usize, usize) {
        let o = &self.header[name]["data_offsets"];
        (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        )
    }

    pub fn bytes(&self) -> Vec<u8> {
        let h = serde_json::to_vec(&self.header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(&self.data);
        out
    }
}
