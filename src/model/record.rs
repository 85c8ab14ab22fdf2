//! The attention recorder: every attention weight of a forward pass, kept
//! without threading it through the model's signatures (the idea of
//! lucidrains' vit-pytorch `Recorder`).
//!
//! [`Attention`](super::Attention) hands each weight tensor it computes to
//! [`attention`]. While a [`Recorder`] is open on this thread the tensor is
//! kept, sorted by where in the model it was computed ([`Site`]); otherwise
//! nothing happens. [`Recorder::finish`] returns the kept tensors as
//! [`AttentionMaps`], the one struct the overlay, `explain`, export and eval
//! read.
//!
//! A recorder can also *tap* the weights for the relevance maps
//! (`relevance.rs`), which need `∇A ⊙ A` for every weight `A`. candle keeps
//! the gradients of variables only, so each weight is multiplied by a fresh
//! variable `O` of ones: the value is unchanged and `∂y/∂O = ∇A ⊙ A` is
//! exactly the product wanted.

use std::cell::RefCell;

use candle::{Result, Tensor, TensorId, Var};

/// Where in the model an attention was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// ViT self-attention over the patches.
    Vision,
    /// Causal self-attention over the command.
    Text,
    /// Fusion self-attention over `[words, <boa>, actions]`.
    FusionSelf,
    /// Fusion cross-attention from those positions to the patches.
    FusionCross,
}

/// Every attention weight of one forward pass, layer by layer. Each tensor is
/// (B, heads, queries, keys). The overlay, explain and eval code only read it.
#[derive(Debug, Clone, Default)]
pub struct AttentionMaps {
    /// ViT self-attention over patches: (I, H, N, N), one entry per image.
    pub vision: Vec<Tensor>,
    /// Causal self-attention over the command: (B, H, T, T).
    pub text: Vec<Tensor>,
    /// Fusion self-attention over `[words, <boa>, actions]` (causal; with
    /// `prefix_lm` the words see each other both ways): (B, H, S, S).
    pub fusion_self: Vec<Tensor>,
    /// Fusion cross-attention from `[words, <boa>, actions]` to patches: (B, H, S, N).
    pub fusion_cross: Vec<Tensor>,
    /// The same before the softmax (step 1's raw scores, with the position
    /// terms and any knockout): (B, H, S, N).
    pub fusion_cross_scores: Vec<Tensor>,
    /// The image values each fusion block mixes (step 3): (B, H, N, D).
    pub fusion_cross_values: Vec<Tensor>,
    /// Padded command length T: query `T` of the fusion maps is `<boa>`.
    pub text_len: usize,
}

impl AttentionMaps {
    /// Example `b`'s slice of batched maps (batch dimension kept, size 1).
    pub fn example(&self, b: usize) -> Result<AttentionMaps> {
        let take = |v: &[Tensor]| v.iter().map(|t| t.narrow(0, b, 1)).collect::<Result<_>>();
        Ok(AttentionMaps {
            vision: take(&self.vision)?,
            text: take(&self.text)?,
            fusion_self: take(&self.fusion_self)?,
            fusion_cross: take(&self.fusion_cross)?,
            fusion_cross_scores: take(&self.fusion_cross_scores)?,
            fusion_cross_values: take(&self.fusion_cross_values)?,
            text_len: self.text_len,
        })
    }
}

/// Tapped weights: each one's tensor id and its variable of ones.
pub type Taps = Vec<(TensorId, Var)>;

/// What an open recorder has kept so far.
#[derive(Default)]
struct Open {
    maps: AttentionMaps,
    /// With taps: each tapped weight's id and its variable of ones.
    taps: Option<Taps>,
    /// Set inside [`paused`].
    paused: bool,
}

thread_local! {
    static OPEN: RefCell<Option<Open>> = const { RefCell::new(None) };
}

/// Records on this thread from [`Recorder::start`] until it is finished or
/// dropped (even on an error).
pub struct Recorder(());

impl Recorder {
    /// Starts recording every attention weight on this thread.
    pub fn start() -> Self {
        Self::open(None)
    }

    /// Like [`Recorder::start`], and taps every weight for its gradient.
    pub fn start_tapped() -> Self {
        Self::open(Some(Vec::new()))
    }

    fn open(taps: Option<Taps>) -> Self {
        OPEN.with(|o| {
            *o.borrow_mut() = Some(Open {
                taps,
                ..Default::default()
            })
        });
        Recorder(())
    }

    /// The maps recorded, with `text_len` the padded command length, and
    /// every tap taken (empty unless started with taps).
    pub fn finish(self, text_len: usize) -> (AttentionMaps, Taps) {
        let open = OPEN.with(|o| o.borrow_mut().take()).unwrap_or_default();
        let maps = AttentionMaps {
            text_len,
            ..open.maps
        };
        (maps, open.taps.unwrap_or_default())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        OPEN.with(|o| *o.borrow_mut() = None);
    }
}

/// Runs `f` with any recorder on this thread paused: the passes it makes
/// are not kept.
pub fn paused<T>(f: impl FnOnce() -> T) -> T {
    let set = |p: bool| OPEN.with(|o| o.borrow_mut().iter_mut().for_each(|o| o.paused = p));
    set(true);
    let out = f();
    set(false);
    out
}

/// Called by [`Attention`](super::Attention) with each weight tensor it
/// computes, its raw scores (with the mask or bias added) and its values.
/// Returns the weights to use on: tapped while a tapping recorder is open,
/// otherwise the same tensor.
pub fn attention(site: Site, weights: Tensor, scores: &Tensor, values: &Tensor) -> Result<Tensor> {
    OPEN.with(|o| {
        let mut open = o.borrow_mut();
        let Some(open) = open.as_mut().filter(|o| !o.paused) else {
            return Ok(weights);
        };
        let weights = match open.taps.as_mut() {
            Some(taps) => {
                let ones = Var::ones(weights.shape(), weights.dtype(), weights.device())?;
                let tapped = weights.mul(ones.as_tensor())?;
                taps.push((tapped.id(), ones));
                tapped
            }
            None => weights,
        };
        let maps = &mut open.maps;
        match site {
            Site::Vision => maps.vision.push(weights.clone()),
            Site::Text => maps.text.push(weights.clone()),
            Site::FusionSelf => maps.fusion_self.push(weights.clone()),
            Site::FusionCross => {
                maps.fusion_cross.push(weights.clone());
                maps.fusion_cross_scores.push(scores.clone());
                maps.fusion_cross_values.push(values.clone());
            }
        }
        Ok(weights)
    })
}
