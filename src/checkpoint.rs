//! Checkpoints: a directory with config.json, model.safetensors and
//! tokenizer.json. They load from a local directory (`--model-dir`), from the
//! Hugging Face Hub through hf-hub (`--model-id owner/name [--revision R]`),
//! or from the copy of `models/tiny` embedded in the binary (the default).
//!
//! Every load error names the file, and for weights the key and the shapes.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use candle::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use crate::model::{Config, Vla};
use crate::tokens::CommandTokenizer;

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";

/// A checkpoint's three files, read but not yet turned into a model.
pub struct Checkpoint {
    pub config: Config,
    pub tokenizer: CommandTokenizer,
    weights: Cow<'static, [u8]>,
    /// Where it came from, for messages: a directory, a hub id, or "embedded".
    pub origin: String,
}

/// Where to load a checkpoint from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Embedded,
    Dir(PathBuf),
    Hub {
        id: String,
        revision: String,
        cache_dir: Option<PathBuf>,
    },
}

impl Checkpoint {
    pub fn open(source: &Source) -> Result<Self> {
        match source {
            Source::Embedded => Self::embedded(),
            Source::Dir(dir) => Self::from_dir(dir),
            Source::Hub {
                id,
                revision,
                cache_dir,
            } => Self::from_hub(id, revision, cache_dir.as_deref()),
        }
    }

    /// The default model, compiled into the binary from `models/tiny`.
    #[cfg(has_embedded_model)]
    pub fn embedded() -> Result<Self> {
        Self::from_parts(
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/tiny/config.json"
            ))
            .as_bytes(),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/tiny/tokenizer.json"
            ))
            .as_bytes(),
            Cow::Borrowed(include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/tiny/model.safetensors"
            ))),
            "embedded models/tiny".into(),
        )
    }

    #[cfg(not(has_embedded_model))]
    pub fn embedded() -> Result<Self> {
        anyhow::bail!("this build has no embedded model (models/tiny was missing when it was compiled); use --model-dir")
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("model directory {} does not exist", dir.display());
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).with_context(|| {
                format!(
                    "cannot read {} (a checkpoint needs {CONFIG}, {WEIGHTS} and {TOKENIZER})",
                    p.display()
                )
            })
        };
        Self::from_parts(
            &read(CONFIG)?,
            &read(TOKENIZER)?,
            Cow::Owned(read(WEIGHTS)?),
            dir.display().to_string(),
        )
    }

    /// Through hf-hub: files already in the cache are used as they are, and
    /// anything missing is downloaded into it.
    pub fn from_hub(id: &str, revision: &str, cache_dir: Option<&Path>) -> Result<Self> {
        use hf_hub::{api::sync::ApiBuilder, Repo, RepoType};
        let mut builder = ApiBuilder::from_env().with_progress(false);
        if let Some(dir) = cache_dir {
            builder = builder.with_cache_dir(dir.to_path_buf());
        }
        let api = builder
            .build()
            .map_err(|e| anyhow!("cannot set up the Hugging Face Hub client: {e}"))?;
        let repo = api.repo(Repo::with_revision(
            id.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        let fetch = |name: &str| -> Result<Vec<u8>> {
            let path = repo.get(name).map_err(|e| {
                anyhow!("cannot get {name} of {id}@{revision} from the hub or its cache: {e}")
            })?;
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        };
        Self::from_parts(
            &fetch(CONFIG)?,
            &fetch(TOKENIZER)?,
            Cow::Owned(fetch(WEIGHTS)?),
            format!("{id}@{revision}"),
        )
    }

    fn from_parts(
        config: &[u8],
        tokenizer: &[u8],
        weights: Cow<'static, [u8]>,
        origin: String,
    ) -> Result<Self> {
        let text = std::str::from_utf8(config)
            .with_context(|| format!("{origin}/{CONFIG} is not UTF-8"))?;
        let config = Config::from_json(text).with_context(|| format!("in {origin}/{CONFIG}"))?;
        let tokenizer = CommandTokenizer::from_bytes(tokenizer)
            .with_context(|| format!("in {origin}/{TOKENIZER}"))?;
        if tokenizer.action_offset() != config.action_offset
            || tokenizer.boa_id() != config.boa_token_id
        {
            anyhow::bail!("{origin}: {TOKENIZER} and {CONFIG} disagree on the action token ids; they come from different checkpoints");
        }
        Ok(Self {
            config,
            tokenizer,
            weights,
            origin,
        })
    }

    /// Builds the model on a device, checking every tensor's name and shape.
    pub fn load(&self, device: &Device, dtype: DType) -> Result<Vla> {
        let vb = VarBuilder::from_slice_safetensors(&self.weights, dtype, device).with_context(
            || {
                format!(
                    "{}/{WEIGHTS} is not a valid safetensors file (truncated or corrupt?)",
                    self.origin
                )
            },
        )?;
        Vla::new(&self.config, vb)
            .with_context(|| format!("{}/{WEIGHTS} does not fit {CONFIG}", self.origin))
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, then a rename. A reader (or a crash) sees the old file or the
/// new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!(
            "cannot write {}: directory {} is not writable",
            path.display(),
            dir.display()
        )
    })?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.as_file().sync_all().ok();
    // tempfile creates 0600 files; outputs should be readable like any other.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .ok();
    }
    tmp.persist(path)
        .map_err(|e| anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Saves a checkpoint directory: config, tokenizer, and the variables.
pub fn save(
    dir: &Path,
    config: &Config,
    tokenizer: &CommandTokenizer,
    vars: &VarMap,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_atomic(
        &dir.join(CONFIG),
        serde_json::to_string_pretty(config)?.as_bytes(),
    )?;
    write_atomic(&dir.join(TOKENIZER), tokenizer.to_json()?.as_bytes())?;
    write_atomic(&dir.join(WEIGHTS), &safetensors_bytes(vars)?)?;
    Ok(())
}

/// The variables as safetensors bytes, keys sorted.
pub fn safetensors_bytes(vars: &VarMap) -> Result<Vec<u8>> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| anyhow!("variable map lock poisoned"))?;
    let tensors: Vec<(String, candle::Tensor)> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    tensors_to_bytes(tensors)
}

/// Named tensors -> safetensors bytes, keys sorted so the bytes are reproducible.
pub fn tensors_to_bytes(mut tensors: Vec<(String, candle::Tensor)>) -> Result<Vec<u8>> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let tmp = tempfile::NamedTempFile::new()?;
    let map: std::collections::HashMap<String, candle::Tensor> = tensors.into_iter().collect();
    candle::safetensors::save(&map, tmp.path())?;
    Ok(std::fs::read(tmp.path())?)
}
