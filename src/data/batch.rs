//! From examples to the tensors of one teacher-forced step: the command
//! ids, the action tokens in and out (x and y as soft targets), and the
//! masks the grounding terms read (which patches each action query, each
//! landmark word and each ambiguous command's candidates should look at).

use anyhow::{bail, Result};
use candle::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{candidate_union, Example};
use crate::action::{self, ActionToken, ACTION_VOCAB, MAX_ACTION_TOKENS, NUM_BINS};
use crate::grid::patch_labels;
use crate::model::vla::Inputs;
use crate::model::Config;
use crate::preprocess::to_pixels;
use crate::scene::Layout;
use crate::tokens::{check_length, to_ids, CommandTokenizer, Encoded};

/// Which action queries the grounding term supervises (see
/// [`Batch::target_mask`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grounded {
    /// Only `<boa>`, the query that reads the first x.
    #[default]
    Boa,
    /// Every query that reads a coordinate of an object: `<boa>` and the
    /// first x token (they read the target's x and y) and, for place, the
    /// first gripper token and the second x (they read the bowl's).
    Coordinates,
    /// `Coordinates`, and the words that name a relational command's
    /// landmark: their queries in the first fusion block read the landmark,
    /// so that later queries can find the target from where it is.
    Landmark,
    /// `Landmark`, and the `<boa>` of an ambiguous command reads every
    /// object its name fits, so that "which one?" is answered from having
    /// found two (see [`candidate_union`]). Training's
    /// `each_candidate_weight` can also ask it to read each of them alike
    /// ([`Batch::candidate_masks`]).
    Candidates,
}

/// Tensors for one teacher-forced step.
pub struct Batch {
    pub inputs: Inputs,
    /// (B, A) vocabulary ids: `<boa>, a_1, .., a_{A-1}`.
    pub action_in: Tensor,
    /// (B·A,) indices into the action slice.
    pub targets: Tensor,
    /// (B·A,) 1 for real tokens, 0 for padding.
    pub weights: Tensor,
    /// (B·A, ACTION_VOCAB) target distributions: one-hot for gripper and end
    /// tokens, a Gaussian over neighbouring bins for x and y (see [`soft_target`]).
    pub soft_targets: Tensor,
    /// (B, A, N): for each action query, the patches of the object whose
    /// coordinate it reads, or zeros where the grounding term leaves it
    /// free (see [`Grounded`]).
    pub target_mask: Tensor,
    /// (B, T, N): for each word of the (left-padded) command, the patches
    /// of the landmark it names, or zeros; only with [`Grounded::Landmark`].
    pub word_mask: Option<Tensor>,
    /// (B, K, N): an ambiguous command's candidates, one object a row (K,
    /// the most any command of the batch has), zeros where it has fewer and
    /// for every other command; only with [`Grounded::Candidates`].
    pub candidate_masks: Option<Tensor>,
    /// (B, 2) u32: the colour and shape each command names
    /// ([`super::named_label`]); `[0, 0]` where it could not be told.
    pub named: Tensor,
    /// (B,): 1 where `named` holds a name, 0 where not.
    pub named_known: Tensor,
    /// (I·N, 2) u32: what each patch of each image shows, `[colour, shape]`
    /// (see [`crate::grid::patch_labels`]); only where training asks for
    /// the patch-label term.
    pub patch_labels: Option<Tensor>,
}

impl Batch {
    /// The batch with the patch labels of its images, whose objects (in
    /// view coordinates) are `layouts`, one per image.
    pub fn with_patch_labels(mut self, layouts: &[&Layout], grid: usize) -> Result<Self> {
        let labels: Vec<u32> = layouts
            .iter()
            .flat_map(|l| patch_labels(&l.objects, grid))
            .flatten()
            .collect();
        let n = labels.len() / 2;
        self.patch_labels = Some(Tensor::from_vec(labels, (n, 2), self.targets.device())?);
        Ok(self)
    }
}

/// The training target for one action token. Bins are ordered, so a bin
/// next to the right one is less wrong than one across the table: x and y
/// targets spread over neighbouring bins as a Gaussian of `sigma` bins (0 =
/// one-hot), which gives the classifier a sense of distance.
pub fn soft_target(t: ActionToken, sigma: f32) -> Vec<f32> {
    let mut q = vec![0f32; ACTION_VOCAB];
    let (base, bin) = match t {
        ActionToken::X(i) => (0, i as usize),
        ActionToken::Y(i) => (NUM_BINS, i as usize),
        other => {
            q[other.index()] = 1.0;
            return q;
        }
    };
    if sigma <= 0.0 {
        q[base + bin] = 1.0;
        return q;
    }
    for j in 0..NUM_BINS {
        let d = j as f32 - bin as f32;
        q[base + j] = (-0.5 * d * d / (sigma * sigma)).exp();
    }
    let sum: f32 = q.iter().sum();
    q.iter_mut().for_each(|x| *x /= sum);
    q
}

/// Builds a batch from rendered images and examples; `bin_sigma` shapes the
/// x/y targets (see [`soft_target`]), `grounded` says which queries the
/// grounding term sees.
pub fn make_batch(
    images: &[&image::RgbImage],
    examples: &[Example],
    tok: &CommandTokenizer,
    cfg: &Config,
    bin_sigma: f32,
    grounded: Grounded,
    device: &Device,
) -> Result<Batch> {
    let b = examples.len();
    let a = MAX_ACTION_TOKENS;
    let encoded = examples
        .iter()
        .map(|e| {
            let enc = tok.encode(&e.command.text)?;
            check_length(&enc, cfg.max_text_len)?;
            Ok(enc)
        })
        .collect::<Result<Vec<_>>>()?;
    let (text_ids, text_lens) = to_ids(&encoded, tok.pad_id(), device)?;
    let image_index: Vec<u32> = examples.iter().map(|e| e.image as u32).collect();

    let mut action_in = Vec::with_capacity(b * a);
    let mut targets = Vec::with_capacity(b * a);
    let mut weights = Vec::with_capacity(b * a);
    let n = cfg.num_patches();
    let mut mask: Vec<f32> = Vec::with_capacity(b * a * n);
    let mut soft: Vec<f32> = Vec::with_capacity(b * a * ACTION_VOCAB);
    for e in examples {
        let tokens = action::encode(&e.command.action);
        if tokens.len() > a {
            bail!(
                "action of {:?} has {} tokens, more than {a}",
                e.command.text,
                tokens.len()
            );
        }
        action_in.push(cfg.boa_token_id);
        for i in 0..a {
            match tokens.get(i) {
                Some(t) => {
                    soft.extend(soft_target(*t, bin_sigma));
                    targets.push(t.index() as u32);
                    weights.push(1f32);
                    if i + 1 < a {
                        action_in.push(cfg.action_offset + t.index() as u32);
                    }
                }
                None => {
                    soft.extend(std::iter::repeat_n(0f32, ACTION_VOCAB));
                    targets.push(0);
                    weights.push(0.0);
                    if i + 1 < a {
                        action_in.push(cfg.boa_token_id);
                    }
                }
            }
        }
        let coordinates = grounded != Grounded::Boa;
        let candidates = (grounded == Grounded::Candidates && !e.candidates.is_empty())
            .then(|| candidate_union(&e.candidates));
        for k in 0..a {
            let reads = match k {
                0 if candidates.is_some() => candidates.as_ref(),
                0 => Some(&e.target),
                1 if coordinates => Some(&e.target),
                3 | 4 if coordinates && !e.destination.is_empty() => Some(&e.destination),
                _ => None,
            };
            match reads {
                Some(patches) if patches.len() == n => mask.extend(patches),
                Some(patches) => bail!("{} target patches for {n} patches", patches.len()),
                None => mask.extend(std::iter::repeat_n(0f32, n)),
            }
        }
    }
    let word_mask = match grounded {
        Grounded::Landmark | Grounded::Candidates => {
            Some(landmark_word_mask(examples, &encoded, n, device)?)
        }
        _ => None,
    };
    let candidate_masks = match grounded {
        Grounded::Candidates => Some(candidate_masks(examples, n, device)?),
        _ => None,
    };
    let named: Vec<u32> = examples
        .iter()
        .flat_map(|e| e.named.unwrap_or([0, 0]))
        .collect();
    let named_known: Vec<f32> = examples
        .iter()
        .map(|e| e.named.is_some() as u8 as f32)
        .collect();
    Ok(Batch {
        inputs: Inputs {
            pixels: to_pixels(images, cfg, device)?,
            image_index: Some(Tensor::from_vec(image_index, b, device)?),
            text_ids,
            text_lens,
            knockout: None,
        },
        action_in: Tensor::from_vec(action_in, (b, a), device)?,
        targets: Tensor::from_vec(targets, b * a, device)?,
        weights: Tensor::from_vec(weights, b * a, device)?,
        soft_targets: Tensor::from_vec(soft, (b * a, ACTION_VOCAB), device)?,
        target_mask: Tensor::from_vec(mask, (b, a, n), device)?,
        word_mask,
        candidate_masks,
        named: Tensor::from_vec(named, (b, 2), device)?,
        named_known: Tensor::from_vec(named_known, b, device)?,
        patch_labels: None,
    })
}

/// [`Batch::candidate_masks`]: each example's candidates, one object a row.
fn candidate_masks(examples: &[Example], n: usize, device: &Device) -> Result<Tensor> {
    let k = examples
        .iter()
        .map(|e| e.candidates.len())
        .max()
        .unwrap_or(0);
    let mut mask = vec![0f32; examples.len() * k.max(1) * n];
    for (i, e) in examples.iter().enumerate() {
        for (j, object) in e.candidates.iter().enumerate() {
            if object.len() != n {
                bail!("{} candidate patches for {n} patches", object.len());
            }
            let row = (i * k + j) * n;
            mask[row..row + n].copy_from_slice(object);
        }
    }
    Ok(Tensor::from_vec(
        mask,
        (examples.len(), k.max(1), n),
        device,
    )?)
}

/// [`Batch::word_mask`]: the landmark's patches on every token of the words
/// that name it, in the left-padded layout of [`to_ids`].
fn landmark_word_mask(
    examples: &[Example],
    encoded: &[Encoded],
    n: usize,
    device: &Device,
) -> Result<Tensor> {
    let t = encoded.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let mut mask = vec![0f32; examples.len() * t * n];
    for (i, (e, enc)) in examples.iter().zip(encoded).enumerate() {
        let Some(words) = e.command.landmark_words.as_ref() else {
            continue;
        };
        if e.landmark.is_empty() {
            continue; // a refusal: nothing to read
        }
        if e.landmark.len() != n {
            bail!("{} landmark patches for {n} patches", e.landmark.len());
        }
        let pad = t - enc.ids.len();
        for (j, w) in enc.word_ids.iter().enumerate() {
            if words.contains(w) {
                let row = (i * t + pad + j) * n;
                mask[row..row + n].copy_from_slice(&e.landmark);
            }
        }
    }
    Ok(Tensor::from_vec(mask, (examples.len(), t, n), device)?)
}
