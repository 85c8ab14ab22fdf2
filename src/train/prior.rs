//! Logit adjustment of the patch-label term by the training stream's
//! colour × shape prior (`pair_prior` in the training config).

use anyhow::Result;
use candle::Tensor;

use crate::grid::{PATCH_COLORS, PATCH_SHAPES};

/// Logit adjustment (Menon et al. 2021, "Long-tail learning via logit
/// adjustment") for the patch head: on a patch of a named colour `c` and
/// shape `s`, the training term adds `τ · ln(K · p(shape | c))` to the shape
/// logits and `τ · ln(K · p(colour | s))` to the colour logits (`K` the
/// number of shapes or colours, so a uniform prior adds 0; the table class
/// is left alone). The head then need not learn the stream's skew itself:
/// that purple things are never balls in training says nothing about a
/// purple ball, and inference, which adds nothing, reads shape and colour
/// as if every pair were as likely.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairPrior {
    /// Indexed `[colour][shape]`; row 0 and column 0 are 0.
    pub shape_given_colour: [[f32; PATCH_SHAPES]; PATCH_COLORS],
    /// Indexed `[shape][colour]`; row 0 and column 0 are 0.
    pub colour_given_shape: [[f32; PATCH_COLORS]; PATCH_SHAPES],
}

impl PairPrior {
    /// The prior from label counts `counts[colour][shape]` ([`super::batches::pair_counts`]),
    /// each conditional smoothed by adding one to every count.
    pub fn from_counts(counts: &[Vec<u64>], tau: f64) -> Self {
        let count = |c: usize, s: usize| counts[c][s] as f64 + 1.0;
        PairPrior {
            shape_given_colour: log_ratios(count, tau),
            colour_given_shape: log_ratios(|s, c| count(c, s), tau),
        }
    }

    /// Per patch, what the prior adds to its logits (colours, then shapes),
    /// from its labels `[colour, shape]`: nothing unless both are named.
    pub(super) fn offsets(&self, labels: &[Vec<u32>]) -> Vec<f32> {
        let mut out = Vec::with_capacity(labels.len() * (PATCH_COLORS + PATCH_SHAPES));
        for l in labels {
            let (c, s) = (l[0] as usize, l[1] as usize);
            if c == 0 || s == 0 {
                out.extend(std::iter::repeat_n(0.0, PATCH_COLORS + PATCH_SHAPES));
            } else {
                out.extend(self.colour_given_shape[s]);
                out.extend(self.shape_given_colour[c]);
            }
        }
        out
    }

    /// `logits` (I·N, colours + shapes) with the prior of each patch's
    /// labels `labels` (I·N, 2) added.
    pub(super) fn adjust(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let offsets = self.offsets(&labels.to_vec2::<u32>()?);
        let offsets = Tensor::from_vec(offsets, logits.dims(), logits.device())?;
        Ok((logits + offsets.to_dtype(logits.dtype())?)?)
    }
}

/// Per row `r` (from 1), `τ · ln(K · p(column | r))` for every column `k`
/// (from 1), with `p` read from `count(r, k)` and `K = C - 1`; row 0 and
/// column 0 (the table) stay 0.
fn log_ratios<const R: usize, const C: usize>(
    count: impl Fn(usize, usize) -> f64,
    tau: f64,
) -> [[f32; C]; R] {
    let mut out = [[0.0; C]; R];
    for (r, row) in out.iter_mut().enumerate().skip(1) {
        let total: f64 = (1..C).map(|k| count(r, k)).sum();
        for (k, x) in row.iter_mut().enumerate().skip(1) {
            *x = (tau * ((C - 1) as f64 * count(r, k) / total).ln()) as f32;
        }
    }
    out
}
