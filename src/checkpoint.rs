//! Checkpoints: a directory with config.json, model.safetensors and
//! tokenizer.json. They load from a local directory (`--model-dir`), from the
//! Hugging Face Hub through hf-hub (`--model-id owner/name [--revision R]`),
//! or from the copy of `models/pens-small-prior` embedded in the binary (the default).
//!
//! Every load error names the file, and for weights the key and the shapes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use candle::{DType, Device};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};

use crate::model::{Config, Vla};
use crate::output::{Scratch, Staged};
use crate::tokens::CommandTokenizer;

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";
pub use crate::limits::{MAX_JSON_BYTES, MAX_WEIGHTS_BYTES};

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

/// The shipped model's directory, as a literal for `include_bytes!` (build.rs
/// names it too, to embed it only when it is there).
macro_rules! shipped_dir {
    () => {
        "models/pens-small-prior"
    };
}

/// The shipped model's directory, relative to the crate root: what the
/// binary embeds and what `vla-demo train` writes by default.
pub const SHIPPED_DIR: &str = shipped_dir!();

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

    /// The default model, compiled into the binary from [`SHIPPED_DIR`].
    #[cfg(has_embedded_model)]
    pub fn embedded() -> Result<Self> {
        macro_rules! shipped {
            ($file:literal) => {
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/",
                    shipped_dir!(),
                    "/",
                    $file
                ))
            };
        }
        Self::from_parts(
            shipped!("config.json"),
            shipped!("tokenizer.json"),
            Cow::Borrowed(shipped!("model.safetensors")),
            format!("embedded {SHIPPED_DIR}"),
        )
    }

    #[cfg(not(has_embedded_model))]
    pub fn embedded() -> Result<Self> {
        anyhow::bail!("this build has no embedded model ({SHIPPED_DIR} was missing when it was compiled); use --model-dir")
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("model directory {} does not exist", dir.display());
        }
        let read = |name: &str| {
            let max = match name {
                WEIGHTS => MAX_WEIGHTS_BYTES,
                _ => MAX_JSON_BYTES,
            };
            crate::input::read_file(&dir.join(name), max, "checkpoint file")
                .with_context(|| format!("a checkpoint needs {CONFIG}, {WEIGHTS} and {TOKENIZER}"))
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

    /// A checkpoint from its three files' bytes (`origin` names it in messages).
    pub fn from_parts(
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
        tokenizer
            .check_fits(config.vocab_size)
            .with_context(|| format!("{origin}: the checkpoint does not fit together"))?;
        Ok(Self {
            config,
            tokenizer,
            weights,
            origin,
        })
    }

    /// Builds the model on a device. This is the one place a loaded model is
    /// validated: the config's sizes are within bounds (checked when it was
    /// read), every tensor the model needs is present with its shape, the
    /// file holds no tensor the model does not use (a config with fewer
    /// layers than its weights), and every weight is finite.
    pub fn load(&self, device: &Device, dtype: DType) -> Result<Vla> {
        let origin = &self.origin;
        let file =
            candle::safetensors::SliceSafetensors::new(&self.weights).with_context(|| {
                format!(
                    "{origin}/{WEIGHTS} is not a valid safetensors file (truncated or corrupt?)"
                )
            })?;
        let names: Vec<String> = file.tensors().into_iter().map(|(n, _)| n).collect();
        let tracker = LoadTracker {
            inner: file,
            loaded: Default::default(),
        };
        let loaded = tracker.loaded.clone();
        let vb = VarBuilder::from_backend(Box::new(tracker), dtype, device.clone());
        let model = Vla::new(&self.config, vb)
            .with_context(|| format!("{origin}/{WEIGHTS} does not fit {CONFIG}"))?;
        let loaded = loaded
            .lock()
            .map_err(|_| anyhow!("weight recorder lock poisoned"))?;
        let unused: Vec<&String> = names.iter().filter(|n| !loaded.contains_key(*n)).collect();
        if let Some(first) = unused.first() {
            anyhow::bail!(
                "{origin}/{WEIGHTS} holds {} tensor(s) the model of {CONFIG} does not use \
                 (first: {first}); do the layer counts in {CONFIG} match the weights?",
                unused.len()
            );
        }
        for (name, t) in loaded.iter() {
            check_finite(name, t).with_context(|| format!("{origin}/{WEIGHTS}"))?;
        }
        Ok(model.compile()?)
    }
}

/// Errors unless `t`, read as `key` from `file`, has the shape of `var`
/// and only finite values: a stored tensor fit to set a variable to.
pub fn check_fits(file: &Path, key: &str, t: &candle::Tensor, var: &candle::Var) -> Result<()> {
    anyhow::ensure!(
        t.shape() == var.shape(),
        "{}: {key} has shape {:?}, the model needs {:?}",
        file.display(),
        t.dims(),
        var.dims()
    );
    check_finite(key, t).with_context(|| format!("{}", file.display()))
}

/// Errors unless every value of `t` is finite (no NaN, no ±Inf).
pub fn check_finite(name: &str, t: &candle::Tensor) -> Result<()> {
    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        anyhow::bail!(
            "tensor {name} holds {} at index {i}: every weight must be finite",
            values[i]
        );
    }
    Ok(())
}

/// Reads tensors from the safetensors file and remembers each one the model
/// asked for, so [`Checkpoint::load`] can check them all and find the rest.
struct LoadTracker<'a> {
    inner: candle::safetensors::SliceSafetensors<'a>,
    loaded: Arc<Mutex<BTreeMap<String, candle::Tensor>>>,
}

impl LoadTracker<'_> {
    fn keep(&self, name: &str, t: candle::Tensor) -> candle::Result<candle::Tensor> {
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(name.to_string(), t.clone());
        }
        Ok(t)
    }
}

impl SimpleBackend for LoadTracker<'_> {
    fn get(
        &self,
        s: candle::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<candle::Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(candle::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: t.shape().clone(),
            });
        }
        Ok(t)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<candle::Tensor> {
        let stored = self.inner.load(name, dev)?;
        // Integer bits read as weights would be finite nonsense.
        if !stored.dtype().is_float() {
            return Err(candle::Error::Msg(format!(
                "tensor {name} is stored as {:?}; weights must be floating point",
                stored.dtype()
            )));
        }
        self.keep(name, stored.to_dtype(dtype)?)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.get(name).is_ok()
    }
}

pub use crate::output::write_atomic;

/// Saves a checkpoint directory: config, tokenizer, and the variables.
pub fn save(
    dir: &Path,
    config: &Config,
    tokenizer: &CommandTokenizer,
    vars: &VarMap,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Staged::new();
    stage(&mut files, dir, config, tokenizer, vars)?;
    files.commit()
}

/// Adds a checkpoint's three files to `files` (written when they commit).
pub fn stage(
    files: &mut Staged,
    dir: &Path,
    config: &Config,
    tokenizer: &CommandTokenizer,
    vars: &VarMap,
) -> Result<()> {
    files.add(
        &dir.join(CONFIG),
        serde_json::to_string_pretty(config)?.as_bytes(),
    )?;
    files.add(&dir.join(TOKENIZER), tokenizer.to_json()?.as_bytes())?;
    files.add(&dir.join(WEIGHTS), &safetensors_bytes(vars)?)
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
    let tmp = Scratch::new().context("cannot create a temporary file for the weights")?;
    let map: std::collections::HashMap<String, candle::Tensor> = tensors.into_iter().collect();
    candle::safetensors::save(&map, tmp.path())?;
    Ok(std::fs::read(tmp.path())?)
}
