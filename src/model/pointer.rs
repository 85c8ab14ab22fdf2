//! The pointer: where to move, read off where the fusion head looked.
//!
//! Each head's cross-attention is a distribution over patches, so it has an
//! expected position, `(ū_h, v̄_h) = Σ_i α_hi (u_i, v_i)` (the spatial
//! soft-argmax of visuomotor policies, Levine, Finn et al. 2016). The pointer
//! reads the head's own scores `e_hi` at a learned sharpness `γ ≥ 0`,
//! `α_hi = softmax_i(γ e_hi)`: at `γ = 1` this is exactly the attention the
//! learner sees, and a larger `γ` keeps a little stray attention on a second
//! object (the anchor of "the cup left of the ball") from dragging the point
//! towards it. With a window `r` (`pointer_window`), each head is read only
//! within `r` patches of its own peak (a local soft-argmax, as keypoint
//! detectors read heatmaps), so attention left on a neighbouring object
//! cannot pull the point at all: the peak decides which object, the scores
//! around it decide where on it. The pointer
//! mixes the heads with weights `β = softmax(W_β s)` chosen by the position's
//! own state `s`, adds a small learned offset `δ = ½ tanh(W_δ s)` (a push ends
//! beside the object, not on it), and turns the point into logits over the
//! bins: bin `j` scores `-(p - c_j)² / 2τ²`, a Gaussian around the point with a
//! learned width τ. These logits are added to the x bins at x positions and
//! to the y bins at y positions; the rest of the head adds its own.
//!
//! With `patch_offsets`, each patch token `v_i` also says where the object it
//! shows lies, `o_i = tanh(W_o v_i) / grid` (at most one patch away), and the
//! heads average the places `c_i + o_i` instead of the bare centres `c_i`:
//! `Σ_i α_hi (c_i + o_i)`, the heatmap-plus-offset reading of keypoint
//! detectors (CenterNet, Zhou et al. 2019). A 16 px patch is wider than a
//! small object, and a mix of patch centres alone lands beside it.
//!
//! A plain linear layer cannot do this job: to put a sharp peak on one bin of
//! 256 its weights would have to grow to the thousands.

use candle::{Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};

use crate::action::{self, ActionToken, ACTION_VOCAB, NUM_BINS};

use super::linear::{linear, Linear};
use super::Config;

#[derive(Debug, Clone)]
pub struct Pointer {
    mix: Linear,
    offset: Linear,
    /// `W_o`, b: each patch's offset to the object it shows (`patch_offsets`).
    patch_offset: Option<Linear>,
    /// log τ, τ in bins.
    log_tau: Tensor,
    /// log γ, the sharpness at which the pointer reads the cross scores.
    log_sharpness: Tensor,
    /// Patch centres, (N, 2), normalised.
    patch_xy: Tensor,
    /// Bin centres in bin units, (256,): 0.5, 1.5, ...
    bins: Tensor,
    grid: usize,
    window: Option<usize>,
}

/// An additive mask (B, H, A, N) that keeps, in every row of `scores`, the
/// patches within `r` rows and columns of the row's highest score, and
/// hides the rest with −10⁴. Which patches stay is a choice, not a function
/// to differentiate: the scores inside the window still carry the gradient.
pub fn window_mask(scores: &Tensor, grid: usize, r: usize) -> Result<Tensor> {
    let n = scores.dim(D::Minus1)?;
    let flat = scores
        .flatten_all()?
        .to_dtype(candle::DType::F32)?
        .to_vec1::<f32>()?;
    let mut mask = vec![-1e4f32; flat.len()];
    for (row, out) in flat.chunks(n).zip(mask.chunks_mut(n)) {
        let peak = (0..n).fold(0, |m, i| if row[i] > row[m] { i } else { m });
        let (pr, pc) = (peak / grid, peak % grid);
        for (i, m) in out.iter_mut().enumerate() {
            if (i / grid).abs_diff(pr) <= r && (i % grid).abs_diff(pc) <= r {
                *m = 0.0;
            }
        }
    }
    Tensor::from_vec(mask, scores.shape(), scores.device())?.to_dtype(scores.dtype())
}

/// Centres of a grid × grid patch layout, row by row, normalised: (N, 2).
pub fn patch_centres(grid: usize, device: &candle::Device) -> Result<Tensor> {
    let xy: Vec<f32> = (0..grid * grid)
        .flat_map(|p| {
            [
                ((p % grid) as f32 + 0.5) / grid as f32,
                ((p / grid) as f32 + 0.5) / grid as f32,
            ]
        })
        .collect();
    Tensor::from_vec(xy, (grid * grid, 2), device)
}

/// The action grammar as an additive mask over the action slice for
/// positions `0..a`: x bins or an outcome token first, then y bins (or `<eoa>`
/// after an outcome), then a gripper, then x bins or `<eoa>`, and so on; a
/// token is allowed at position k when some well-formed prefix of length k
/// allows it (the decoder then applies the exact rule to its own prefix).
/// Disallowed tokens get −10⁴ (not −∞, so that a zero target times their
/// log-probability stays zero).
pub fn grammar_mask(a: usize, device: &candle::Device) -> Result<Tensor> {
    let mut m = vec![-1e4f32; a * ACTION_VOCAB];
    for k in 0..a {
        let waypoints = vec![ActionToken::End; k]; // only the length matters
        let refused = vec![ActionToken::Absent; k];
        for i in 0..ACTION_VOCAB {
            if action::allowed(&waypoints, i) || action::allowed(&refused, i) {
                m[k * ACTION_VOCAB + i] = 0.0;
            }
        }
    }
    Tensor::from_vec(m, (a, ACTION_VOCAB), device)
}

impl Pointer {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let dev = vb.device().clone();
        let bins: Vec<f32> = (0..NUM_BINS).map(|j| j as f32 + 0.5).collect();
        Ok(Self {
            mix: linear(cfg.hidden_size, cfg.num_attention_heads, vb.pp("mix"))?,
            offset: linear(cfg.hidden_size, 2, vb.pp("offset"))?,
            patch_offset: if cfg.patch_offsets {
                // Zero at the start: the pointer begins as the plain mix of centres.
                let vb = vb.pp("patch_offset");
                let w = vb.get_with_hints((2, cfg.hidden_size), "weight", Init::Const(0.0))?;
                let b = vb.get_with_hints(2, "bias", Init::Const(0.0))?;
                Some(Linear::new(w, b))
            } else {
                None
            },
            log_tau: vb.get_with_hints(1, "log_tau", Init::Const(32f64.ln()))?,
            log_sharpness: match vb.get_with_hints(1, "log_sharpness", Init::Const(0.0)) {
                Ok(t) => t,
                // Checkpoints from before the sharpness existed read at γ = 1.
                Err(_) if !vb.contains_tensor("log_sharpness") => {
                    Tensor::zeros(1, vb.dtype(), &dev)?
                }
                Err(e) => return Err(e),
            },
            patch_xy: patch_centres(cfg.grid(), &dev)?.to_dtype(vb.dtype())?,
            bins: Tensor::from_vec(bins, NUM_BINS, &dev)?.to_dtype(vb.dtype())?,
            grid: cfg.grid(),
            window: cfg.pointer_window,
        })
    }

    /// Where each patch says its object lies, relative to the patch centre:
    /// (B, N, 2) from the patch tokens `patches` (B, N, C), or `None` without
    /// `patch_offsets`. Computed once per image.
    pub fn patch_offsets(&self, patches: &Tensor) -> Result<Option<Tensor>> {
        self.patch_offset
            .as_ref()
            .map(|l| l.forward(patches)?.tanh()? / self.grid as f64)
            .transpose()
    }

    /// `states` (B, A, C): the final states of action positions
    /// `first..first + A`; `scores` (B, H, A, N): their last-block
    /// cross-attention scores, before the softmax; `offsets` (B, N, 2): from
    /// [`Self::patch_offsets`]. Returns the points (B, A, 2) and logits
    /// (B, A, ACTION_VOCAB) to add to the head's.
    pub fn forward(
        &self,
        states: &Tensor,
        scores: &Tensor,
        offsets: Option<&Tensor>,
        first: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (b, h, a, n) = scores.dims4()?;
        let mut read = scores.broadcast_mul(&self.log_sharpness.exp()?)?;
        if let Some(r) = self.window {
            read = (read + window_mask(scores, self.grid, r)?)?;
        }
        let cross = crate::engine::ops::softmax_last_dim(&read)?;
        // Each head's expected patch position: (B, H·A, N) x (N, 2) -> (B, A, H, 2).
        let cross = cross.reshape((b, h * a, n))?;
        let mut per_head = cross.broadcast_matmul(&self.patch_xy)?;
        if let Some(o) = offsets {
            // Σ α (c + o) = Σ α c + Σ α o, since the weights sum to 1.
            per_head = (per_head + cross.matmul(o)?)?;
        }
        let per_head = per_head
            .reshape((b, h, a, 2))?
            .transpose(1, 2)?
            .contiguous()?;
        // Mix the heads: (B, A, 1, H) x (B, A, H, 2) -> (B, A, 2).
        let beta = candle_nn::ops::softmax(&self.mix.forward(states)?, D::Minus1)?.unsqueeze(2)?;
        let point = beta.matmul(&per_head)?.squeeze(2)?;
        let point = (point + (self.offset.forward(states)?.tanh()? * 0.5)?)?;
        // Gaussian logits around the point, in bin units: (B, A, 256) per axis.
        let tau = self.log_tau.exp()?;
        let two_tau2 = (tau.sqr()? * 2.0)?;
        let axis = |i: usize| -> Result<Tensor> {
            let p = (point.narrow(2, i, 1)? * NUM_BINS as f64)?; // (B, A, 1)
            let d = p.broadcast_sub(&self.bins.reshape((1, 1, NUM_BINS))?)?;
            d.sqr()?.neg()?.broadcast_div(&two_tau2)
        };
        let (x, y) = (axis(0)?, axis(1)?);
        // Only x positions get the x bins' Gaussian, only y positions the y bins'.
        let kind: Vec<f32> = (first..first + a)
            .flat_map(|k| [(k % 3 == 0) as u8 as f32, (k % 3 == 1) as u8 as f32])
            .collect();
        let kind = Tensor::from_vec(kind, (1, a, 2), scores.device())?.to_dtype(x.dtype())?;
        let x = x.broadcast_mul(&kind.narrow(2, 0, 1)?)?;
        let y = y.broadcast_mul(&kind.narrow(2, 1, 1)?)?;
        let rest = Tensor::zeros((b, a, ACTION_VOCAB - 2 * NUM_BINS), x.dtype(), x.device())?;
        Ok((point, Tensor::cat(&[x, y, rest], 2)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;
    use candle_nn::VarMap;

    #[test]
    fn patch_offsets_move_the_point_by_the_offset_of_the_patch_looked_at() {
        let dev = Device::Cpu;
        let mut cfg = Config::tiny();
        cfg.image_size = 64;
        cfg.hidden_size = 8;
        cfg.num_attention_heads = 2;
        cfg.patch_offsets = true;
        let vars = VarMap::new();
        let vb = crate::train::init::SeededInit::var_builder(&vars, 1, &dev);
        let pointer = Pointer::new(&cfg, vb).unwrap();
        let (grid, c) = (cfg.grid(), cfg.hidden_size);
        let n = grid * grid;
        let patches = Tensor::randn(0f32, 1., (1, n, c), &dev).unwrap();
        let offsets = |p: &Pointer| -> Vec<Vec<f32>> {
            let o = p.patch_offsets(&patches).unwrap().unwrap();
            o.squeeze(0).unwrap().to_vec2().unwrap()
        };
        // They start at zero, so a new model points as one without them...
        assert!(offsets(&pointer).iter().flatten().all(|&v| v == 0.0));
        // ...and, once learned, stay within one patch.
        for (name, var) in vars.data().lock().unwrap().iter() {
            if name.starts_with("patch_offset") {
                var.set(&Tensor::randn(0f32, 3., var.shape(), &dev).unwrap())
                    .unwrap();
            }
        }
        let o = offsets(&pointer);
        assert!(o.iter().flatten().all(|v| v.abs() <= 1.0 / grid as f32));
        assert!(o.iter().flatten().any(|v| v.abs() > 0.01));
        // Both heads look at patch 5 alone: the point moves by patch 5's offset.
        let look = 5;
        let mut s = vec![0f32; 2 * n];
        s[look] = 50.0;
        s[n + look] = 50.0;
        let scores = Tensor::from_vec(s, (1, 2, 1, n), &dev).unwrap();
        let states = Tensor::randn(0f32, 1., (1, 1, c), &dev).unwrap();
        let o_t = pointer.patch_offsets(&patches).unwrap().unwrap();
        let point = |o: Option<&Tensor>| -> Vec<f32> {
            let (p, _) = pointer.forward(&states, &scores, o, 0).unwrap();
            p.flatten_all().unwrap().to_vec1().unwrap()
        };
        let (with, without) = (point(Some(&o_t)), point(None));
        for axis in 0..2 {
            let moved = with[axis] - without[axis];
            assert!(
                (moved - o[look][axis]).abs() < 1e-5,
                "axis {axis}: {moved} vs {:?}",
                o[look]
            );
        }
    }

    #[test]
    fn the_window_keeps_the_patches_around_each_peak() {
        // A 4 × 4 grid, two rows: peak at patch 5 (row 1, col 1) and at 15 (row 3, col 3).
        let mut s = vec![0f32; 32];
        s[5] = 3.0;
        s[16 + 15] = 2.0;
        s[16] = 1.5; // a lesser bump far from the second row's peak
        let scores = Tensor::from_vec(s, (1, 1, 2, 16), &Device::Cpu).unwrap();
        let m: Vec<f32> = window_mask(&scores, 4, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let kept =
            |row: usize| -> Vec<usize> { (0..16).filter(|&i| m[row * 16 + i] == 0.0).collect() };
        assert_eq!(kept(0), vec![0, 1, 2, 4, 5, 6, 8, 9, 10]);
        assert_eq!(kept(1), vec![10, 11, 14, 15]);
        assert!(m[16] < -1e3, "the far bump is hidden");
    }
}
