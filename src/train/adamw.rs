//! AdamW (Loshchilov & Hutter 2019) with its moments as named tensors, so a
//! checkpoint holds them and `--resume` restores them exactly.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle::{backprop::GradStore, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::checkpoint;

/// AdamW whose moments can be saved and restored (candle-nn's keeps them private).
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub(super) step: usize,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl AdamW {
    pub fn new(vars: &VarMap) -> Result<Self> {
        let data = vars
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("variable map lock poisoned"))?;
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle::Result<_>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle::Result<_>>()?;
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
        })
    }

    pub fn vars(&self) -> impl Iterator<Item = &(String, Var)> {
        self.vars.iter()
    }

    /// The global gradient norm, before clipping.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(sq.sqrt())
    }

    /// One update with learning rate `lr`; gradients are scaled by `clip`.
    pub fn step(&mut self, grads: &GradStore, lr: f64, weight_decay: f64, clip: f64) -> Result<()> {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let g = (g * clip)?;
            // Gradients still point into this step's graph: detach the moments,
            // or every step's graph would stay alive through them.
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?.detach();
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?.detach();
            let update = ((&self.m[i] / c1)? / ((&self.v[i] / c2)?.sqrt()? + self.eps)?)?;
            // Decay matrices only: not norms, biases or positions.
            let decays =
                name.ends_with(".weight") && var.as_tensor().rank() == 2 && !name.contains("norm");
            let theta = if decays {
                (var.as_tensor() * (1.0 - lr * weight_decay))?
            } else {
                var.as_tensor().clone()
            };
            var.set(&(theta - (update * lr)?)?.detach())?;
        }
        Ok(())
    }

    /// Weights, moments and step as named tensors.
    pub(super) fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, (name, var)) in self.vars.iter().enumerate() {
            out.push((format!("param.{name}"), var.as_tensor().clone()));
            out.push((format!("adam_m.{name}"), self.m[i].clone()));
            out.push((format!("adam_v.{name}"), self.v[i].clone()));
        }
        out.push((
            "state.step".into(),
            Tensor::new(&[self.step as f64], &Device::Cpu)?,
        ));
        Ok(out)
    }

    pub(super) fn restore(&mut self, path: &Path) -> Result<()> {
        let bytes =
            crate::input::read_file(path, crate::limits::MAX_WEIGHTS_BYTES, "training state")
                .context("--resume needs a training run in --out")?;
        let t = candle::safetensors::load_buffer(&bytes, &Device::Cpu)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        let get = |k: &str| {
            t.get(k)
                .cloned()
                .with_context(|| format!("{} lacks {k}", path.display()))
        };
        // Everything is checked before anything is set: right shapes, finite.
        let mut restored = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            let mut three = Vec::with_capacity(3);
            for kind in ["param", "adam_m", "adam_v"] {
                let key = format!("{kind}.{name}");
                let t = get(&key)?.to_dtype(var.dtype())?.to_device(var.device())?;
                anyhow::ensure!(
                    t.shape() == var.shape(),
                    "{}: {key} has shape {:?}, the model needs {:?}",
                    path.display(),
                    t.dims(),
                    var.dims()
                );
                checkpoint::check_finite(&key, &t)
                    .with_context(|| format!("{}", path.display()))?;
                three.push(t);
            }
            restored.push(three);
        }
        let step = get("state.step")?.flatten_all()?.to_vec1::<f64>()?;
        let step = match step.as_slice() {
            [s] if s.fract() == 0.0
                && (0.0..=crate::limits::MAX_TRAIN_STEPS as f64).contains(s) =>
            {
                *s as usize
            }
            _ => bail!(
                "{}: state.step {step:?} is not a step count (0 to {})",
                path.display(),
                crate::limits::MAX_TRAIN_STEPS
            ),
        };
        for (i, ((_, var), three)) in self.vars.iter().zip(restored).enumerate() {
            let [p, m, v]: [Tensor; 3] = three
                .try_into()
                .map_err(|_| anyhow::anyhow!("internal: restore lost a tensor"))?;
            var.set(&p)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        self.step = step;
        Ok(())
    }
}
