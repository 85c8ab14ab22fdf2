//! Everything the program writes, in one place: files (all or none, through
//! temporary files that are removed on error and on SIGINT or SIGTERM) and
//! standard output.
//!
//! - [`Staged`]: the files of one run. Each file is first written whole to a
//!   hidden temporary file beside its final name; only when every file has
//!   been written does [`Staged::commit`] rename them into place. If anything
//!   fails before that, dropping the `Staged` removes the temporary files; if
//!   a rename fails, the files this commit already renamed are removed again.
//! - Every temporary file is registered while it exists, and
//!   [`install_signal_cleanup`] removes the registered files (and the renamed
//!   files of a commit in progress) when the process gets SIGINT or SIGTERM,
//!   then exits with 130 or 143 as a shell would report the signal. SIGKILL
//!   cannot be caught: it can leave a temporary file (never a partial file
//!   under a final name).
//! - [`print`]: standard output. A closed pipe (`vla-demo ... | head -c 10`)
//!   ends the output quietly and is not an error (exit 0, as when the reader
//!   had read everything); any other write error, such as a full disk
//!   (`> /dev/full`), is an error.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::{anyhow, Context, Result};
use tempfile::TempPath;

/// Prefix of every temporary file this program makes beside an output.
pub const TEMP_PREFIX: &str = ".vla-demo-";

/// Paths to remove if the process is interrupted: temporary files that exist
/// now, and the files a commit in progress has renamed into place.
fn pending() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    static PENDING: OnceLock<Mutex<BTreeSet<PathBuf>>> = OnceLock::new();
    PENDING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A temporary file that is removed when dropped and, until then, on
/// SIGINT or SIGTERM.
pub struct Scratch {
    path: Option<TempPath>,
}

impl Scratch {
    /// A new, empty temporary file in `dir` (hidden, `.vla-demo-XXXXXX.tmp`).
    pub fn new_in(dir: &Path) -> std::io::Result<Self> {
        let mut guard = pending();
        let file = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".tmp")
            .tempfile_in(dir)?;
        let path = file.into_temp_path();
        guard.insert(path.to_path_buf());
        Ok(Self { path: Some(path) })
    }

    /// A new temporary file in the system's temporary directory.
    pub fn new() -> std::io::Result<Self> {
        Self::new_in(&std::env::temp_dir())
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Renames the file to `to`; the caller holds the registry's lock, so an
    /// interruption sees either the temporary file or the renamed one.
    fn persist(mut self, to: &Path, registry: &mut BTreeSet<PathBuf>) -> Result<()> {
        let Some(tmp) = self.path.take() else {
            return Err(anyhow!("internal: temporary file already used"));
        };
        let from = tmp.to_path_buf();
        match tmp.persist(to) {
            Ok(()) => {
                registry.remove(&from);
                registry.insert(to.to_path_buf());
                Ok(())
            }
            Err(e) => {
                // Dropping the temporary path removes the file.
                registry.remove(&from);
                drop(e.path);
                Err(anyhow!("cannot write {}: {}", to.display(), e.error))
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let mut guard = pending();
            guard.remove(&p.to_path_buf());
            drop(p); // removes the file
        }
    }
}

/// The directory a file will be written in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Refuses an output path that names a device, a named pipe or a socket:
/// renaming a file over it would silently replace it. A regular file or a
/// symlink is replaced; a directory fails at the rename, as before.
pub fn check_replaceable(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() && !m.file_type().is_symlink() => Err(anyhow!(
            "refusing to write {}: it exists and is not a regular file (a device or a pipe)",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// Whether two paths name the same existing file (through links or `..`).
pub fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Refuses to write any of `outputs` over one of `inputs`.
pub fn check_not_inputs<'a>(
    outputs: impl IntoIterator<Item = &'a Path>,
    inputs: &[PathBuf],
) -> Result<()> {
    for o in outputs {
        if let Some(x) = inputs.iter().find(|x| same_file(x, o)) {
            return Err(anyhow!(
                "refusing to overwrite {} (an input) with an output; choose another path",
                x.display()
            ));
        }
    }
    Ok(())
}

/// The files of one run, written all or none.
#[derive(Default)]
pub struct Staged {
    files: Vec<(PathBuf, Scratch)>,
}

impl Staged {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `bytes` to a temporary file beside `path`. Nothing appears
    /// under `path` until [`Staged::commit`].
    pub fn add(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        check_replaceable(path)?;
        let dir = parent_dir(path);
        let fail = || {
            format!(
                "cannot write {}: is {} an existing, writable directory?",
                path.display(),
                dir.display()
            )
        };
        let tmp = Scratch::new_in(dir).with_context(fail)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(tmp.path())
            .with_context(fail)?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        // Temporary files are private (0600); outputs are ordinary files.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))
                .with_context(fail)?;
        }
        self.files.push((path.to_path_buf(), tmp));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The final paths, in the order they were added.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// Renames every file into place. If one rename fails, the files this
    /// commit already renamed are removed and the rest are discarded.
    pub fn commit(self) -> Result<()> {
        self.commit_paths(None).map(drop)
    }

    /// Like [`Staged::commit`]; once the files are in place, `dir` and every
    /// directory holding it are no longer removed on SIGINT or SIGTERM: they
    /// hold work worth keeping (a training checkpoint that `--resume`
    /// continues). One step under the lock, so no signal comes in between.
    pub fn commit_keeping(self, dir: &Path) -> Result<()> {
        self.commit_paths(Some(dir)).map(drop)
    }

    /// Like [`Staged::commit`], returning the paths written.
    fn commit_paths(self, keep: Option<&Path>) -> Result<Vec<PathBuf>> {
        let mut guard = pending();
        let mut done: Vec<PathBuf> = Vec::with_capacity(self.files.len());
        let mut result = Ok(());
        let mut files = self.files.into_iter();
        for (path, tmp) in files.by_ref() {
            match tmp.persist(&path, &mut guard) {
                Ok(()) => done.push(path),
                Err(e) => {
                    for p in &done {
                        let _ = std::fs::remove_file(p);
                    }
                    result = Err(e);
                    break;
                }
            }
        }
        for p in &done {
            guard.remove(p);
        }
        if let (Ok(()), Some(dir)) = (&result, keep) {
            guard.retain(|p| !dir.starts_with(p));
        }
        drop(guard);
        drop(files.collect::<Vec<_>>()); // removes the temporaries not renamed
        result.map(|()| done)
    }
}

/// Writes one file atomically: a reader (or a crash) sees the old file or the
/// new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut s = Staged::new();
    s.add(path, bytes)?;
    s.commit()
}

/// Registers a path to remove if the process is interrupted (a directory a
/// run created and has not finished); [`forget`] undoes it.
pub fn remove_on_interrupt(path: &Path) {
    pending().insert(path.to_path_buf());
}

pub fn forget(path: &Path) {
    pending().remove(path);
}

/// On SIGINT or SIGTERM: remove every registered path, then exit with
/// 128 + the signal number. Call once, early in `main`.
pub fn install_signal_cleanup() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the SIGINT/SIGTERM handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // Holding the lock while exiting: no commit can rename a
                // file into place after this point.
                let guard = pending();
                for p in guard.iter() {
                    if p.is_dir() {
                        let _ = std::fs::remove_dir_all(p);
                    } else {
                        let _ = std::fs::remove_file(p);
                    }
                }
                std::process::exit(128 + sig);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Standard output closed by its reader: not an error for the user; the
/// binary ends quietly with exit 0.
#[derive(Debug)]
pub struct ClosedStdout;

impl std::fmt::Display for ClosedStdout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for ClosedStdout {}

/// Writes `text` to standard output and flushes it. A closed pipe returns
/// [`ClosedStdout`]; any other failure (a full disk) is an error that says so.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedStdout.into()),
        Err(e) => Err(anyhow!("cannot write to standard output: {e}")),
    }
}

/// Commits a run's files, then prints its text (which may name them). If
/// the files cannot be written, nothing is printed; if standard output fails
/// for any reason but a closed pipe, the files are removed again. A closed
/// pipe keeps them: the run itself succeeded, only its reader left.
pub fn print_and_commit(text: &str, files: Staged) -> Result<()> {
    let written = files.commit_paths(None)?;
    match print(text) {
        Err(e) if !e.is::<ClosedStdout>() => {
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            Err(e)
        }
        other => other,
    }
}

/// Writes one line to standard error, ignoring failures (there is nowhere
/// else to report them).
pub fn eprint_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", printable(line));
}

/// Text with every control character but a tab or a line break escaped
/// (`\u{1b}`, `\0`): a name or a command that holds an escape sequence
/// is shown, never acted on by the terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let raw = |c: char| c.is_control() && !matches!(c, '\t' | '\n');
    if !text.chars().any(raw) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if raw(c) {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// An error as the one `error:` line the binary prints: the whole chain of
/// causes on one line, with any line breaks inside a message folded and
/// control characters escaped.
pub fn error_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let folded: Vec<&str> = text.split_whitespace().collect();
    format!("error: {}", printable(&folded.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_appear_only_on_commit_and_temporaries_go() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
        let mut s = Staged::new();
        s.add(&a, b"one").unwrap();
        s.add(&b, b"two").unwrap();
        assert!(!a.exists() && !b.exists());
        s.commit().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

        // Dropped before commit: nothing new, no temporary file.
        let mut s = Staged::new();
        s.add(&dir.path().join("c.txt"), b"three").unwrap();
        drop(s);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert!(pending().iter().all(|p| !p.starts_with(dir.path())));
    }

    #[test]
    fn a_failed_rename_takes_the_committed_files_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        let blocked = dir.path().join("sub");
        let mut s = Staged::new();
        s.add(&a, b"one").unwrap();
        // The second target is a non-empty directory: its rename fails.
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"x").unwrap();
        s.add(&blocked, b"two").unwrap();
        assert!(s.commit().is_err());
        assert!(!a.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sub")]);
    }

    #[test]
    fn error_lines_are_one_line() {
        let e = anyhow!("first\nsecond\r\n  third").context("outer");
        assert_eq!(error_line(&e), "error: outer: first second third");
        let e = anyhow!("image a\0b\u{1b}[31m.png\u{7f}\u{9b} does not exist");
        assert_eq!(
            error_line(&e),
            "error: image a\\0b\\u{1b}[31m.png\\u{7f}\\u{9b} does not exist"
        );
    }

    /// A named pipe (or a device) where an output goes is refused before
    /// anything is written, and left as it is.
    #[test]
    fn outputs_over_pipes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.png");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let mut s = Staged::new();
        let e = s.add(&fifo, b"x").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(write_atomic(&fifo, b"x").is_err());
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        use std::os::unix::fs::FileTypeExt;
        assert!(kind.is_fifo());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
