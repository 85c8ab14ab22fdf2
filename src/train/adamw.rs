//! AdamW (Loshchilov & Hutter 2019) with its moments as named tensors, so a
//! checkpoint holds them and `--resume` restores them exactly.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle::{backprop::GradStore, CpuStorage, Device, Layout, Storage, Tensor, Var};
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
        let k = Coefficients {
            clip,
            beta1: self.beta1,
            beta2: self.beta2,
            c1: 1.0 - self.beta1.powi(self.step as i32),
            c2: 1.0 - self.beta2.powi(self.step as i32),
            eps: self.eps,
            lr,
            keep: 1.0 - lr * weight_decay,
        };
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            // Decay matrices only: not norms, biases or positions.
            let decays =
                name.ends_with(".weight") && var.as_tensor().rank() == 2 && !name.contains("norm");
            let pmvg = [var.as_tensor(), &self.m[i], &self.v[i], g];
            let (p, m, v) = match k.update_on_cpu(pmvg, decays)? {
                Some(pmv) => pmv,
                None => k.update(pmvg, decays)?,
            };
            self.m[i] = m;
            self.v[i] = v;
            var.set(&p)?;
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
                checkpoint::check_fits(path, &key, &t, var)?;
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

/// The numbers of one AdamW step.
struct Coefficients {
    clip: f64,
    beta1: f64,
    beta2: f64,
    /// Bias corrections, `1 − β^t`.
    c1: f64,
    c2: f64,
    eps: f64,
    lr: f64,
    /// What weight decay leaves of a decayed weight, `1 − lr·λ`.
    keep: f64,
}

impl Coefficients {
    /// AdamW on one variable, `p` its values: the new weights and moments.
    fn update(&self, pmvg: [&Tensor; 4], decays: bool) -> candle::Result<(Tensor, Tensor, Tensor)> {
        let [p, m, v, g] = pmvg;
        let g = (g * self.clip)?;
        // Gradients still point into this step's graph: detach the moments,
        // or every step's graph would stay alive through them.
        let m = ((m * self.beta1)? + (&g * (1.0 - self.beta1))?)?.detach();
        let v = ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?.detach();
        let update = ((&m / self.c1)? / ((&v / self.c2)?.sqrt()? + self.eps)?)?;
        let theta = if decays { (p * self.keep)? } else { p.clone() };
        Ok(((theta - (update * self.lr)?)?.detach(), m, v))
    }

    /// [`Coefficients::update`] in one pass over the values where all four
    /// tensors are contiguous f32 on the CPU (`None` elsewhere). A dozen
    /// tensor ops, each a pass and a buffer, were a thirtieth of a training
    /// step. The arithmetic is the same, operation for operation: candle's
    /// `t * s` is `t·s + 0`, its `t / s` is `t·(1/s) + 0` and its `t + s` is
    /// `t·1 + s`, each scalar rounded to f32 first, so both give the same
    /// bits (`the_one_pass_update_is_the_tensor_update_bit_for_bit`).
    fn update_on_cpu(
        &self,
        pmvg: [&Tensor; 4],
        decays: bool,
    ) -> candle::Result<Option<(Tensor, Tensor, Tensor)>> {
        let [p, m, v, g] = pmvg;
        let (new_p, new_m, new_v) = {
            let guards = [p, m, v, g].map(|t| t.storage_and_layout());
            let [Some(p), Some(m), Some(v), Some(g)] =
                guards.each_ref().map(|(s, l)| cpu_f32(s, l))
            else {
                return Ok(None);
            };
            if [m.len(), v.len(), g.len()] != [p.len(); 3] {
                return Ok(None);
            }
            let f = |x: f64| x as f32;
            let (clip, b1, nb1, b2, nb2) = (
                f(self.clip),
                f(self.beta1),
                f(1.0 - self.beta1),
                f(self.beta2),
                f(1.0 - self.beta2),
            );
            let (ic1, ic2, eps, lr, keep) = (
                f(1.0 / self.c1),
                f(1.0 / self.c2),
                f(self.eps),
                f(self.lr),
                f(self.keep),
            );
            let n = p.len();
            let (mut new_p, mut new_m, mut new_v) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
            // Slices of one length, indexed: the loop vectorises.
            let (p, m, v, g) = (&p[..n], &m[..n], &v[..n], &g[..n]);
            let (out_p, out_m, out_v) = (&mut new_p[..n], &mut new_m[..n], &mut new_v[..n]);
            for j in 0..n {
                let g = g[j] * clip + 0.0;
                let m = (m[j] * b1 + 0.0) + (g * nb1 + 0.0);
                let v = (v[j] * b2 + 0.0) + ((g * g) * nb2 + 0.0);
                let update = (m * ic1 + 0.0) / ((v * ic2 + 0.0).sqrt() * 1.0 + eps);
                let theta = if decays { p[j] * keep + 0.0 } else { p[j] };
                out_p[j] = theta - (update * lr + 0.0);
                out_m[j] = m;
                out_v[j] = v;
            }
            (new_p, new_m, new_v)
        };
        let shape = p.shape();
        let cpu = &Device::Cpu;
        Ok(Some((
            Tensor::from_vec(new_p, shape, cpu)?,
            Tensor::from_vec(new_m, shape, cpu)?,
            Tensor::from_vec(new_v, shape, cpu)?,
        )))
    }
}

/// The values of a contiguous f32 tensor on the CPU, in place.
fn cpu_f32<'a>(s: &'a Storage, l: &Layout) -> Option<&'a [f32]> {
    let Storage::Cpu(CpuStorage::F32(v)) = s else {
        return None;
    };
    let (a, b) = l.contiguous_offsets()?;
    Some(&v[a..b])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(t: &Tensor) -> Vec<u32> {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn the_one_pass_update_is_the_tensor_update_bit_for_bit() {
        let cpu = &Device::Cpu;
        let randn = |shape: (usize, usize), scale: f32| {
            (Tensor::randn(0f32, 1., shape, cpu).unwrap() * scale as f64).unwrap()
        };
        for (step, shape, decays) in [(1, (7, 5), true), (40, (7, 5), false), (3, (1, 13), true)] {
            let k = Coefficients {
                clip: 0.37,
                beta1: 0.9,
                beta2: 0.95,
                c1: 1.0 - 0.9f64.powi(step),
                c2: 1.0 - 0.95f64.powi(step),
                eps: 1e-8,
                lr: 7e-4,
                keep: 1.0 - 7e-4 * 0.05,
            };
            // Moments are never negative in v; zeros (and a negative zero)
            // in the weights and the gradient take the `+ 0` paths.
            let p = randn(shape, 0.5)
                .broadcast_mul(&randn((1, shape.1), 1.0))
                .unwrap();
            let m = randn(shape, 0.01);
            let v = randn(shape, 0.01).sqr().unwrap();
            let g = randn(shape, 2.0).relu().unwrap();
            let p = p
                .slice_assign(&[0..1, 0..1], &Tensor::new(&[[-0f32]], cpu).unwrap())
                .unwrap();
            let want = k.update([&p, &m, &v, &g], decays).unwrap();
            let got = k.update_on_cpu([&p, &m, &v, &g], decays).unwrap().unwrap();
            assert_eq!(bits(&got.0), bits(&want.0), "weights, step {step}");
            assert_eq!(bits(&got.1), bits(&want.1), "first moment, step {step}");
            assert_eq!(bits(&got.2), bits(&want.2), "second moment, step {step}");
            assert_eq!(got.0.shape(), p.shape());
        }
        // Not contiguous: the tensor update is used.
        let t = randn((4, 6), 1.0).t().unwrap();
        let k = Coefficients {
            clip: 1.0,
            beta1: 0.9,
            beta2: 0.95,
            c1: 0.1,
            c2: 0.05,
            eps: 1e-8,
            lr: 1e-3,
            keep: 1.0,
        };
        assert!(k.update_on_cpu([&t; 4], false).unwrap().is_none());
    }
}
