//! Reading the files a user names, in one place: each must be a regular
//! file (a directory, a device such as /dev/zero or a named pipe that would
//! block forever is refused) and at most a given size, read without ever
//! reading past that size. Every error names the file.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Reads `path` (described as `what` in messages: "image", "the batch file")
/// if it is a regular file of at most `max` bytes.
pub fn read_file(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{what} {} does not exist", path.display())
        }
        Err(e) => bail!("cannot open {what} {}: {e}", path.display()),
    };
    if meta.is_dir() {
        bail!("{what} {} is a directory, not a file", path.display());
    }
    if !meta.is_file() {
        bail!(
            "{what} {} is not a regular file (a device or a pipe)",
            path.display()
        );
    }
    if meta.len() > max {
        bail!(
            "{what} {} is {} bytes, over the limit of {max} bytes",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "{what} {} grew past the limit of {max} bytes while being read",
            path.display()
        );
    }
    Ok(bytes)
}

/// Like [`read_file`], as UTF-8 text.
pub fn read_text(path: &Path, max: u64, what: &str) -> Result<String> {
    String::from_utf8(read_file(path, max, what)?).map_err(|e| {
        anyhow::anyhow!(
            "{what} {} is not UTF-8 text (at byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}
