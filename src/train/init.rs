//! Seeded weight initialisation. candle's CPU random numbers come from a
//! thread RNG that cannot be seeded, so training creates its variables
//! through this backend instead: each variable draws from its own ChaCha
//! stream, seeded by (run seed, variable name), so the same seed gives the
//! same starting weights whatever order the layers are built in.

use std::hash::{Hash, Hasher};

use candle::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Creates variables in a [`VarMap`] with seeded random starts.
pub struct SeededInit {
    vars: VarMap,
    seed: u64,
}

impl SeededInit {
    /// A VarBuilder whose new variables land in `vars`.
    pub fn var_builder(vars: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
        let backend: Box<dyn SimpleBackend> = Box::new(SeededInit {
            vars: vars.clone(),
            seed,
        });
        VarBuilder::from_backend(backend, DType::F32, device.clone())
    }

    fn values(&self, shape: &Shape, name: &str, init: Init) -> Vec<f32> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ h.finish());
        let n = shape.elem_count();
        let normal = |rng: &mut ChaCha8Rng| {
            // Box-Muller.
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let gen = |rng: &mut ChaCha8Rng| -> f64 {
            match init {
                Init::Const(c) => c,
                Init::Uniform { lo, up } => lo + (up - lo) * rng.random::<f64>(),
                Init::Randn { mean, stdev } => mean + stdev * normal(rng),
                Init::Kaiming {
                    dist,
                    fan,
                    non_linearity,
                } => {
                    let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                    match dist {
                        NormalOrUniform::Uniform => {
                            3f64.sqrt() * std * (2.0 * rng.random::<f64>() - 1.0)
                        }
                        NormalOrUniform::Normal => std * normal(rng),
                    }
                }
            }
        };
        (0..n).map(|_| gen(&mut rng) as f32).collect()
    }
}

impl SimpleBackend for SeededInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self
            .vars
            .data()
            .lock()
            .map_err(|_| candle::Error::Msg("variable map lock poisoned".into()))?;
        if let Some(v) = data.get(name) {
            let t = v.as_tensor();
            if t.shape() != &s {
                candle::bail!("shape mismatch for {name}: {:?} vs {:?}", t.shape(), s);
            }
            return t.to_dtype(dtype);
        }
        let t = Tensor::from_vec(self.values(&s, name, h), s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self
            .vars
            .data()
            .lock()
            .map_err(|_| candle::Error::Msg("variable map lock poisoned".into()))?;
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype),
            None => candle::bail!("cannot find tensor {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}
