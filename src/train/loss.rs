//! The loss of one batch: cross-entropy on the action tokens (teacher
//! forcing), plus
//! - an optional grounding term, `-log(attention mass on the target)` of
//!   `<boa>` (and, with `grounded: "coordinates"`, of every query that reads
//!   an object's coordinate; with `"landmark"`, also of the words that name
//!   a relational command's landmark, in the first fusion block; with
//!   `"candidates"`, also of an ambiguous command's `<boa>` on every object
//!   its name fits);
//! - an optional balance term on those candidates: how far the `<boa>`'s
//!   mass on them is from spread alike over each ([`candidate_balance`]);
//! - an optional pointer term: the distance, in patches, from the pointer's
//!   point to each x and y target;
//! - an optional patch-label term: the cross-entropy of the patch head's
//!   colour and shape of every patch.

use anyhow::Result;
use candle::{DType, Tensor, D};

use super::prior::PairPrior;
use super::TrainConfig;
use crate::data;
use crate::grid::{PATCH_COLORS, PATCH_SHAPES};
use crate::model::Vla;

/// Losses and accuracy of one step.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
    pub loss: f32,
    pub ce: f32,
    pub attention: f32,
    pub point: f32,
    pub patch: f32,
    /// The candidate balance term (0 where it is off).
    pub balance: f32,
    /// The named-object term (0 where it is off).
    pub named: f32,
    pub token_acc: f32,
}

/// What each term weighs beside the cross-entropy.
#[derive(Debug, Clone, Copy)]
pub struct LossWeights {
    /// The grounding term on the `<boa>` query's attention.
    pub attention: f64,
    /// The pointer term.
    pub point: f64,
    /// The patch-label term (counts only for a model with a patch head).
    pub patch: f64,
    /// Within it, a patch on an object against one of the table.
    pub patch_object: f64,
    /// The candidate balance term ([`candidate_balance`]).
    pub each_candidate: f64,
    /// The named-object term ([`named_loss`]).
    pub named: f64,
    /// The training stream's colour × shape prior, added to the patch
    /// head's logits in the patch-label term (`pair_prior` in the training
    /// config); `None` leaves the logits as they are.
    pub pair_prior: Option<PairPrior>,
}

/// Steps of the training stream whose scenes the pair prior counts.
const PRIOR_SAMPLES: usize = 256;

impl TrainConfig {
    /// The weights of each term; with `pair_prior` on, this counts the
    /// stream's objects, so call it once per run.
    pub fn loss_weights(&self) -> LossWeights {
        LossWeights {
            attention: self.attention_loss_weight,
            point: self.point_loss_weight,
            patch: self.patch_label_weight,
            patch_object: self.patch_object_weight,
            each_candidate: self.each_candidate_weight,
            named: self.named_weight,
            pair_prior: (self.pair_prior > 0.0).then(|| {
                PairPrior::from_counts(
                    &super::batches::pair_counts(self, PRIOR_SAMPLES),
                    self.pair_prior,
                )
            }),
        }
    }
}

/// The pointer term: the mean L1 distance, in patches, from the pointer's
/// points (B, A, 2) to the x and y targets among `targets` (B·A,) (x bins
/// are action indices `0..256`, y bins `256..512`; other tokens and
/// padding do not count).
fn point_loss(points: &Tensor, targets: &Tensor, weights: &Tensor, grid: usize) -> Result<Tensor> {
    let (b, a, _) = points.dims3()?;
    let ids = targets.to_vec1::<u32>()?;
    let real = weights.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let bins = crate::action::NUM_BINS;
    let mut want = vec![0f32; b * a * 2];
    let mut mask = vec![0f32; b * a * 2];
    for (i, (&t, &w)) in ids.iter().zip(&real).enumerate() {
        let (axis, bin) = match t as usize {
            t if t < bins => (0, t),
            t if t < 2 * bins => (1, t - bins),
            _ => continue,
        };
        want[2 * i + axis] = (bin as f32 + 0.5) / bins as f32;
        mask[2 * i + axis] = w;
    }
    let dev = points.device();
    let want = Tensor::from_vec(want, (b, a, 2), dev)?.to_dtype(points.dtype())?;
    let mask = Tensor::from_vec(mask, (b, a, 2), dev)?.to_dtype(points.dtype())?;
    let count = mask.sum_all()?.maximum(1.0)?;
    let mean = ((points - want)?.abs()? * mask)?
        .sum_all()?
        .broadcast_div(&count)?;
    Ok((mean * grid as f64)?)
}

/// The patch-label term: the cross-entropy of the patch head's colour
/// and of its shape, each against the labels (I·N, 2) of
/// [`crate::grid::patch_labels`], summed; a weighted mean over patches in
/// which a patch on an object counts `object_weight` times one of the table.
/// `prior`, where given, is added to the logits first ([`PairPrior`]).
fn patch_label_loss(
    logits: &Tensor,
    labels: &Tensor,
    object_weight: f64,
    prior: Option<&PairPrior>,
) -> Result<Tensor> {
    let mut logits = logits.flatten_to(1)?; // (I·N, colours + shapes)
    if let Some(prior) = prior {
        logits = prior.adjust(&logits, labels)?;
    }
    let colors = labels.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
    let on_object = colors.ne(0u32)?.to_dtype(logits.dtype())?;
    let weight = ((on_object * (object_weight - 1.0))? + 1.0)?; // (I·N,)
    let mut total = Tensor::zeros((), logits.dtype(), logits.device())?;
    for (k, (first, n)) in [(0, PATCH_COLORS), (PATCH_COLORS, PATCH_SHAPES)]
        .into_iter()
        .enumerate()
    {
        let want = labels.narrow(1, k, 1)?.squeeze(1)?.contiguous()?;
        let logp = candle_nn::ops::log_softmax(&logits.narrow(1, first, n)?, D::Minus1)?;
        let picked = logp.gather(&want.unsqueeze(1)?, 1)?.squeeze(1)?; // (I·N,)
        total = (total - (picked * &weight)?.sum_all()?)?;
    }
    Ok(total.broadcast_div(&weight.sum_all()?)?)
}

/// The named-object term: the cross-entropy of the model's reading of
/// each command's named colour and of its shape (`named`, (B, colours +
/// shapes) logits) against `labels` (B, 2), summed; the mean over commands
/// with `known` (B,) 1.
fn named_loss(named: &Tensor, labels: &Tensor, known: &Tensor) -> Result<Tensor> {
    let mut total = Tensor::zeros(known.dims(), named.dtype(), named.device())?;
    for (k, (first, n)) in [(0, PATCH_COLORS), (PATCH_COLORS, PATCH_SHAPES)]
        .into_iter()
        .enumerate()
    {
        let want = labels.narrow(1, k, 1)?.contiguous()?;
        let logp = candle_nn::ops::log_softmax(&named.narrow(1, first, n)?, D::Minus1)?;
        total = (total - logp.gather(&want, 1)?.squeeze(1)?)?;
    }
    Ok((total * known)?
        .sum_all()?
        .broadcast_div(&known.sum_all()?.maximum(1.0)?)?)
}

/// The candidate balance term: for each ambiguous command, how far the
/// `<boa>` query's attention (the mean of its heads) is from reading each
/// object its name fits alike. With masses `m_1..m_k` on its `k`
/// candidates (rows of `masks`, (B, K, N); zero rows pad) and `M = Σ m_i`,
/// it is KL(uniform ‖ m / M), the divergence of the uniform `1/k` from the
/// shares `m_i / M`: `Σ (1/k) log((1/k) / (m_i / M))`, which is
/// `log M - (1/k) Σ log m_i - log k`. It is 0 when every candidate holds
/// the same mass, whatever M is (the grounding term asks for M), and grows
/// without bound as one candidate is left unread. The mean over the batch's
/// ambiguous commands; 0 when it has none. `boa`: (B, N).
fn candidate_balance(boa: &Tensor, masks: &Tensor) -> Result<Tensor> {
    const EPS: f64 = 1e-6;
    let mass = masks.broadcast_mul(&boa.unsqueeze(1)?)?.sum(2)?; // (B, K)
    let real = masks.max(2)?; // (B, K): 1 for a candidate, 0 for padding
    let count = real.sum(1)?; // (B,)
    let total = (&mass * &real)?.sum(1)?;
    let mean_log = ((mass + EPS)?.log()? * &real)?
        .sum(1)?
        .div(&count.maximum(1.0)?)?;
    let ambiguous = count.ge(1.0)?.to_dtype(boa.dtype())?;
    let log_k = count.maximum(1.0)?.log()?;
    let gap = ((((total + EPS)?.log()? - mean_log)? - log_k)? * &ambiguous)?.sum_all()?;
    Ok(gap.broadcast_div(&ambiguous.sum_all()?.maximum(1.0)?)?)
}

/// Cross-entropy over the real action tokens, plus the grounding, balance,
/// pointer and patch-label terms.
pub fn loss(model: &Vla, batch: &data::Batch, w: LossWeights) -> Result<(Tensor, StepStats)> {
    let out = model.forward(&batch.inputs, &batch.action_in)?;
    let (b, a, v) = out.logits.dims3()?;
    let logits = out.logits.reshape((b * a, v))?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = (logp * &batch.soft_targets)?.sum(1)?; // (B·A,): Σ_j q_j log p_j
    let count = batch.weights.sum_all()?;
    let ce = (picked * &batch.weights)?
        .sum_all()?
        .neg()?
        .broadcast_div(&count)?;
    // Mean over heads of each action query's weights, summed over the
    // patches of the object it reads (B, A). Refusals (but for an ambiguous
    // command's `<boa>` with `grounded: "candidates"`), and queries the
    // batch leaves free, have no target: they do not count.
    // With `grounded: "landmark"` the words that name a landmark count the
    // same way, on the first block's cross-attention.
    let mut rows = vec![(&out.action_cross, &batch.target_mask)];
    if let Some(words) = &batch.word_mask {
        rows.push((&out.word_cross, words));
    }
    let (mut missed, mut targets) = (Vec::new(), Vec::new());
    for (cross, mask) in rows {
        let mass = (cross.mean(1)? * mask)?.sum(2)?;
        let has_target = mask.max(2)?; // 1 or 0 per query
        missed.push(((mass + 1e-6)?.log()?.neg()? * &has_target)?.sum_all()?);
        targets.push(has_target.sum_all()?);
    }
    let attention = Tensor::stack(&missed, 0)?
        .sum_all()?
        .broadcast_div(&Tensor::stack(&targets, 0)?.sum_all()?.maximum(1.0)?)?;
    let point = if w.point > 0.0 {
        point_loss(
            &out.points,
            &batch.targets,
            &batch.weights,
            model.config().grid(),
        )?
    } else {
        Tensor::zeros((), ce.dtype(), ce.device())?
    };
    let patch = match (&out.patch_labels, &batch.patch_labels) {
        (Some(logits), Some(labels)) if w.patch > 0.0 => {
            patch_label_loss(logits, labels, w.patch_object, w.pair_prior.as_ref())?
        }
        (Some(_), None) if w.patch > 0.0 => {
            anyhow::bail!("the patch-label term needs the batch's patch labels")
        }
        _ => Tensor::zeros((), ce.dtype(), ce.device())?,
    };
    let balance = match &batch.candidate_masks {
        Some(masks) if w.each_candidate > 0.0 => {
            let boa = out.action_cross.mean(1)?.narrow(1, 0, 1)?.squeeze(1)?; // (B, N)
            candidate_balance(&boa, masks)?
        }
        _ => Tensor::zeros((), ce.dtype(), ce.device())?,
    };
    let named = match &out.named {
        Some(named) if w.named > 0.0 => named_loss(named, &batch.named, &batch.named_known)?,
        _ => Tensor::zeros((), ce.dtype(), ce.device())?,
    };
    let total = ((((&ce + (&attention * w.attention)?)? + (&point * w.point)?)?
        + (&patch * w.patch)?)?
        + (&balance * w.each_candidate)?
        + (&named * w.named)?)?;

    let pred = logits.argmax(D::Minus1)?;
    let right = (pred.eq(&batch.targets)?.to_dtype(DType::F32)? * &batch.weights)?.sum_all()?;
    let stats = StepStats {
        loss: total.to_scalar::<f32>()?,
        ce: ce.to_scalar::<f32>()?,
        attention: attention.to_scalar::<f32>()?,
        point: point.to_scalar::<f32>()?,
        patch: patch.to_scalar::<f32>()?,
        balance: balance.to_scalar::<f32>()?,
        named: named.to_scalar::<f32>()?,
        token_acc: (right.to_scalar::<f32>()? / count.to_scalar::<f32>()?),
    };
    Ok((total, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn the_balance_term_is_zero_when_candidates_are_read_alike() {
        let dev = Device::Cpu;
        // Four patches. Command 0 has two candidates (patches 0-1 and 2) and
        // reads them 0.5 / 0.25; command 1 reads its two alike (0.25 each);
        // command 2 is not ambiguous and does not count.
        let boa = Tensor::new(
            &[
                [0.25f32, 0.25, 0.25, 0.25],
                [0.25, 0.5, 0.25, 0.0],
                [1.0, 0.0, 0.0, 0.0],
            ],
            &dev,
        )
        .unwrap();
        let masks = Tensor::new(
            &[
                [[1f32, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
                [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
                [[0.0; 4], [0.0; 4]],
            ],
            &dev,
        )
        .unwrap();
        let got = candidate_balance(&boa, &masks)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // KL(uniform || m / M): m / M = (2/3, 1/3) for the first, so
        // ½ log(½ / ⅔) + ½ log(½ / ⅓) = ½ log(9/8); (½, ½) for the second: 0.
        let first = 0.5 * (9f32 / 8.0).ln();
        let want = first / 2.0;
        assert!(first > 0.05);
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn the_point_loss_measures_x_and_y_targets_in_patches() {
        let dev = Device::Cpu;
        let bins = crate::action::NUM_BINS as u32;
        // Three positions: an x target at bin 128, a y target at bin 64, and a
        // gripper token, which does not count; then one padded position.
        let points = Tensor::new(
            &[[[0.3f32, 0.9], [0.1, 0.25], [0.7, 0.7], [0.0, 0.0]]],
            &dev,
        )
        .unwrap();
        let targets = Tensor::new(&[128u32, bins + 64, 2 * bins, 5], &dev).unwrap();
        let weights = Tensor::new(&[1f32, 1.0, 1.0, 0.0], &dev).unwrap();
        let got = point_loss(&points, &targets, &weights, 10)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let x = (0.3f32 - 128.5 / 256.0).abs();
        let y = (0.25f32 - 64.5 / 256.0).abs();
        let want = (x + y) / 2.0 * 10.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn the_patch_label_loss_weighs_object_patches_against_the_table() {
        use crate::grid::{PATCH_COLORS, PATCH_SHAPES};
        let dev = Device::Cpu;
        let k = PATCH_COLORS + PATCH_SHAPES;
        // Two patches: the table, then a patch whose colour is 2 and shape 3.
        let mut rows = vec![0f32; 2 * k];
        rows[0] = 2.0; // the table's colour logit
        rows[k + 2] = 1.0;
        rows[k + PATCH_COLORS + 1] = 3.0;
        let logits = Tensor::from_vec(rows.clone(), (1, 2, k), &dev).unwrap();
        let labels = Tensor::new(&[[0u32, 0], [2, 3]], &dev).unwrap();
        let ce = |row: &[f32], want: usize| {
            let z: f32 = row.iter().map(|x| x.exp()).sum();
            z.ln() - row[want]
        };
        let per_patch = |p: usize, c: usize, s: usize| {
            let row = &rows[p * k..(p + 1) * k];
            ce(&row[..PATCH_COLORS], c) + ce(&row[PATCH_COLORS..], s)
        };
        let (table, object) = (per_patch(0, 0, 0), per_patch(1, 2, 3));
        for w in [1.0f32, 3.0] {
            let got = patch_label_loss(&logits, &labels, w as f64, None)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let want = (table + w * object) / (1.0 + w);
            assert!((got - want).abs() < 1e-5, "weight {w}: {got} vs {want}");
        }
    }

    #[test]
    fn the_pair_prior_frees_the_patch_head_from_the_streams_skew() {
        let dev = Device::Cpu;
        let k = PATCH_COLORS + PATCH_SHAPES;
        // Colour 1 is drawn as shapes 1 and 2, never 3 or 4; the other
        // colours as every shape alike.
        let mut counts = vec![vec![100u64; PATCH_SHAPES]; PATCH_COLORS];
        counts[1] = vec![0, 300, 200, 0, 0];
        let prior = PairPrior::from_counts(&counts, 1.0);
        let g = prior.shape_given_colour;
        assert_eq!(g[0], [0.0; PATCH_SHAPES], "the table's colour adds nothing");
        assert_eq!(g[1][0], 0.0, "the table's shape class is left alone");
        assert!(g[1][1] > g[1][2] && g[1][2] > 0.0 && g[1][3] < -3.0 && g[1][3] == g[1][4]);
        assert!(
            g[2][1..].iter().all(|x| x.abs() < 1e-6),
            "a uniform prior adds 0"
        );
        // Colour 1 is the likeliest colour of shape 1, and never of shape 3.
        let h = prior.colour_given_shape;
        assert!(h[1][1] > h[1][2] && h[3][1] < -3.0 && h[3][2] > 0.0);
        // τ scales every offset.
        let half = PairPrior::from_counts(&counts, 0.5);
        assert!((half.shape_given_colour[1][3] - g[1][3] / 2.0).abs() < 1e-6);

        // Patches: the table, colour 1's usual shape (1) half read as shape 3,
        // and an unnamed colour (0, shape 3).
        let mut rows: Vec<f32> = (0..3 * k).map(|i| ((i * 7) % 5) as f32 * 0.3).collect();
        rows[k + PATCH_COLORS + 3] = rows[k + PATCH_COLORS + 1];
        let logits = Tensor::from_vec(rows.clone(), (1, 3, k), &dev).unwrap();
        let labels = Tensor::new(&[[0u32, 0], [1, 1], [0, 3]], &dev).unwrap();
        let offsets = prior.offsets(&labels.to_vec2::<u32>().unwrap());
        assert!(offsets[..k]
            .iter()
            .chain(&offsets[2 * k..])
            .all(|&x| x == 0.0));
        assert_eq!(&offsets[k..k + PATCH_COLORS], &h[1]);
        assert_eq!(&offsets[k + PATCH_COLORS..2 * k], &g[1]);
        // The loss is that of the shifted logits.
        let shifted: Vec<f32> = rows.iter().zip(&offsets).map(|(a, b)| a + b).collect();
        let shifted = Tensor::from_vec(shifted, (1, 3, k), &dev).unwrap();
        let loss = |l: &Tensor, p: Option<&PairPrior>| {
            patch_label_loss(l, &labels, 2.0, p)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!((loss(&logits, Some(&prior)) - loss(&shifted, None)).abs() < 1e-6);
        // Reading colour 1's patch as shape 3, a shape it never comes in,
        // costs less with the prior: that colour 1 is never shape 3 is the
        // prior's to say, not the head's.
        assert!(loss(&logits, Some(&prior)) < loss(&logits, None));
    }
}
