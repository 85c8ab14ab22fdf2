//! The fusion head: where words meet pixels.
//!
//! Its sequence is the command's hidden states followed by the action tokens
//! so far, starting with `<boa>`: `[w_1 .. w_T, <boa>, a_1, .., a_k]`. Each block
//! lets every position attend causally to the positions before it (with
//! `prefix_lm`, the words attend to each other both ways, as in PaliGemma's
//! prefix-LM: a word can hear what comes after it in the command), then
//! **cross-attend** to the image patches (queries from text and action
//! positions, keys and values from the patches), then runs an MLP. The hidden
//! state at `<boa>` predicts `a_1`, the state at `a_1` predicts `a_2`, and so on:
//! the logits cover only the action slice of the vocabulary.
//!
//! The logits are the head's own plus the [`Pointer`]'s, which turn where
//! each action position looked into where the gripper goes, under the
//! action grammar's mask.
//!
//! With `cross_geometry` on, each cross-attention also has [`Geometry`]
//! terms (`geometry.rs`): a query can score patches by where they are, not only by what
//! they show, and it hears back where it looked. That is what "the red block
//! *next to* the bowl" needs.

use candle::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::attention::{causal_padded_mask, prefix_padded_mask};
use super::block::{Block, BlockOut, LayerNorm, Memory};
use super::linear::{linear, Linear};
use super::named::NamedReader;
use super::pointer::{grammar_mask, Pointer};
use super::Config;
use crate::action::{ACTION_VOCAB, MAX_ACTION_TOKENS};

#[derive(Debug, Clone)]
pub struct FusionHead {
    /// Where in the action an action token sits (0 = `<boa>`).
    action_position: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
    pointer: Pointer,
    /// What the command names, matched against the patches (`named_match`).
    named: Option<NamedReader>,
    /// Whether the words read each other both ways (see [`Config::prefix_lm`]).
    prefix_lm: bool,
}

/// What the fusion head returns for one forward pass.
pub struct FusionOut {
    /// Logits over the action slice at each action position: (B, A, ACTION_VOCAB).
    pub logits: Tensor,
    /// The last block's cross-attention of the `<boa>` query, (B, H, N).
    /// Evaluation scores it.
    pub boa_cross: Tensor,
    /// The last block's cross-attention of every action query, (B, H, A,
    /// N), `<boa>` first. Training supervises it (the grounding term).
    pub action_cross: Tensor,
    /// The first block's cross-attention of every word, (B, H, T, N).
    /// Training can ground the words that name a landmark on it.
    pub word_cross: Tensor,
    /// The pointer's point at each action position, (B, A, 2), normalised
    /// (x, y): training can supervise it directly.
    pub points: Tensor,
    /// The patch head's logits, (I, N, PATCH_COLORS + PATCH_SHAPES), where
    /// the model has one (`patch_labels`; set by [`super::Vla`]).
    pub patch_labels: Option<Tensor>,
    /// What the command names, logits (B, PATCH_COLORS + PATCH_SHAPES).
    pub named: Option<Tensor>,
}

/// The image as the fusion head reads it.
pub struct ImageMemory {
    /// Per block, the patches' keys and values, (B, H, N, D).
    pub kv: Vec<(Tensor, Tensor)>,
    /// Added to every cross-attention score, (B, 1, 1, N): −10⁴ on patches
    /// the head may not look at (attention knockout, `faithfulness.rs`),
    /// 0 elsewhere. `None` in every ordinary run.
    pub knockout: Option<Tensor>,
    /// Where each patch says its object lies, (B, N, 2), for the pointer
    /// (`patch_offsets`); `None` without them.
    pub offsets: Option<Tensor>,
    /// How well each patch fits what each command names, (B, N).
    pub named: Option<Tensor>,
}

/// A decoder's memory between steps: the fusion blocks' self-attention keys
/// and values of every position so far (the KV cache; the image's keys and
/// values are cached separately, once per image).
pub struct DecodeCache {
    /// Per block, (B, H, S, D).
    self_kv: Vec<(Tensor, Tensor)>,
    /// Per command, its real (unpadded) length in words.
    lens: Vec<usize>,
    /// Positions so far, S.
    len: usize,
    /// Action positions so far, `<boa>` included.
    actions: usize,
}

/// One decoding step's output for the newest position.
pub struct DecodeStep {
    /// (B, ACTION_VOCAB), grammar mask included.
    pub logits: Tensor,
    /// The last block's cross-attention of the newest position, (B, H, N).
    pub cross: Tensor,
}

/// What the blocks computed: the last block's output, its cross-attention
/// weights and scores (B, H, S, N), the first block's cross-attention
/// weights, and every block's self-attention keys and values.
struct Run {
    hidden: Tensor,
    cross_weights: Tensor,
    first_cross_weights: Tensor,
    cross_scores: Tensor,
    self_kv: Vec<(Tensor, Tensor)>,
}

impl FusionHead {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..cfg.fusion_layers)
            .map(|i| Block::with_cross(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            action_position: vb.get_with_hints(
                (MAX_ACTION_TOKENS, cfg.hidden_size),
                "action_position",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            blocks,
            norm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("norm"))?,
            head: linear(cfg.hidden_size, ACTION_VOCAB, vb.pp("head"))?,
            pointer: Pointer::new(cfg, vb.pp("pointer"))?,
            named: cfg
                .named_match
                .then(|| NamedReader::new(cfg, vb.pp("named")))
                .transpose()?,
            prefix_lm: cfg.prefix_lm,
        })
    }

    /// Keys and values of the image for every block: compute once per image,
    /// reuse at every decoding step (the cross-attention KV cache).
    pub fn image_kv(&self, patches: &Tensor) -> Result<ImageMemory> {
        Ok(ImageMemory {
            kv: self
                .blocks
                .iter()
                .map(|b| b.cross_kv(patches))
                .collect::<Result<_>>()?,
            knockout: None,
            offsets: self.pointer.patch_offsets(patches)?,
            named: None,
        })
    }

    /// What each command names, (B, PATCH_COLORS + PATCH_SHAPES) logits,
    /// from its word states; `None` without `named_match`.
    pub fn read_named(&self, words: &Tensor, lens: &[usize]) -> Result<Option<Tensor>> {
        self.named.as_ref().map(|n| n.read(words, lens)).transpose()
    }

    /// `text` (B, T, C) left-padded command states with real lengths `lens`;
    /// `actions` (B, A, C) embedded `<boa>, a_1, ..`; `image` from
    /// [`FusionHead::image_kv`].
    pub fn forward(
        &self,
        text: &Tensor,
        lens: &[usize],
        actions: &Tensor,
        image: &ImageMemory,
    ) -> Result<FusionOut> {
        let t = text.dim(1)?;
        let run = self.run_whole(text, lens, actions, image)?;
        let (logits, points) = self.read_out(&run, image, t, 0)?;
        let action_cross = run.cross_weights.narrow(2, t, actions.dim(1)?)?; // (B, H, A, N)
        Ok(FusionOut {
            logits,
            boa_cross: action_cross.narrow(2, 0, 1)?.squeeze(2)?, // (B, H, N)
            action_cross,
            word_cross: run.first_cross_weights.narrow(2, 0, t)?,
            points,
            patch_labels: None,
            named: None,
        })
    }

    /// The blocks over the whole sequence `[words, actions]`, nothing cached.
    fn run_whole(
        &self,
        text: &Tensor,
        lens: &[usize],
        actions: &Tensor,
        image: &ImageMemory,
    ) -> Result<Run> {
        let t = text.dim(1)?;
        let a = actions.dim(1)?;
        if a > MAX_ACTION_TOKENS {
            candle::bail!("{a} action positions, at most {MAX_ACTION_TOKENS}");
        }
        let actions = actions.broadcast_add(&self.action_position.narrow(0, 0, a)?)?;
        let xs = Tensor::cat(&[text, &actions], 1)?; // (B, S, C), S = T + A
        let mask = self.mask(lens, t, a, xs.device())?.to_dtype(xs.dtype())?;
        self.run(&xs, None, image, &mask, t, 0)
    }

    /// The self-attention mask over `[words, actions]`, (B, 1, T + A, T + A):
    /// causal, or with `prefix_lm` the words read both ways.
    fn mask(&self, lens: &[usize], t: usize, a: usize, device: &candle::Device) -> Result<Tensor> {
        if self.prefix_lm {
            prefix_padded_mask(lens, t, a, device)
        } else {
            let total: Vec<usize> = lens.iter().map(|l| l + a).collect();
            causal_padded_mask(&total, t + a, device)
        }
    }

    /// The blocks over `xs`, the positions after the cached ones: `t` word
    /// rows, then action positions `first_action..`.
    fn run(
        &self,
        xs: &Tensor,
        past: Option<&[(Tensor, Tensor)]>,
        image: &ImageMemory,
        mask: &Tensor,
        t: usize,
        first_action: usize,
    ) -> Result<Run> {
        let a = xs.dim(1)? - t;
        let mut xs = xs.clone();
        let mut self_kv = Vec::with_capacity(self.blocks.len());
        let (mut first, mut cross) = (None, None);
        for (i, (block, kv)) in self.blocks.iter().zip(&image.kv).enumerate() {
            let named = match (&self.named, &image.named) {
                (Some(reader), Some(m)) => Some(reader.bias(i, m, t, first_action, a)?),
                _ => None,
            };
            let bias = match (named, &image.knockout) {
                (Some(n), Some(k)) => Some(n.broadcast_add(k)?),
                (n, k) => n.or_else(|| k.clone()),
            };
            let memory = Memory {
                kv,
                bias: bias.as_ref(),
            };
            let out: BlockOut =
                block.forward_with(&xs, Some(mask), past.map(|p| &p[i]), Some(memory))?;
            xs = out.hidden;
            self_kv.push(out.self_kv);
            cross = out.cross;
            if i == 0 {
                first = cross.as_ref().map(|(w, _)| w.clone());
            }
        }
        let (Some((cross_weights, cross_scores)), Some(first_cross_weights)) = (cross, first)
        else {
            candle::bail!("the fusion head needs at least one block")
        };
        Ok(Run {
            hidden: xs,
            cross_weights,
            first_cross_weights,
            cross_scores,
            self_kv,
        })
    }

    /// Logits (B, A, ACTION_VOCAB) and the pointer's points (B, A, 2) of the
    /// action positions in `run`: its positions from `from` on, which are
    /// action positions `first..`.
    fn read_out(
        &self,
        run: &Run,
        image: &ImageMemory,
        from: usize,
        first: usize,
    ) -> Result<(Tensor, Tensor)> {
        let a = run.hidden.dim(1)? - from;
        let states = self.norm.forward(&run.hidden.narrow(1, from, a)?)?; // (B, A, C)
        let scores = run.cross_scores.narrow(2, from, a)?.contiguous()?;
        let (points, pointed) =
            self.pointer
                .forward(&states, &scores, image.offsets.as_ref(), first)?;
        let grammar = grammar_mask(first + a, states.device())?
            .narrow(0, first, a)?
            .to_dtype(states.dtype())?;
        let logits = (states.apply(&self.head)? + pointed)?.broadcast_add(&grammar)?;
        Ok((logits, points))
    }

    /// Starts decoding: runs `[words, <boa>]` and keeps every block's
    /// self-attention keys and values. `boa` (B, 1, C) is the embedded `<boa>`.
    pub fn decode_start(
        &self,
        text: &Tensor,
        lens: &[usize],
        boa: &Tensor,
        image: &ImageMemory,
    ) -> Result<(DecodeCache, DecodeStep)> {
        let t = text.dim(1)?;
        let run = self.run_whole(text, lens, boa, image)?;
        let step = DecodeStep {
            logits: self.read_out(&run, image, t, 0)?.0.squeeze(1)?,
            cross: run.cross_weights.narrow(2, t, 1)?.squeeze(2)?,
        };
        let cache = DecodeCache {
            self_kv: run.self_kv,
            lens: lens.to_vec(),
            len: t + 1,
            actions: 1,
        };
        Ok((cache, step))
    }

    /// One more action position, `action` (B, 1, C) the embedded token just
    /// chosen: only its row is computed, against the cached keys and values.
    pub fn decode_step(
        &self,
        cache: &mut DecodeCache,
        action: &Tensor,
        image: &ImageMemory,
    ) -> Result<DecodeStep> {
        let k = cache.actions;
        if k >= MAX_ACTION_TOKENS {
            candle::bail!("{} action positions, at most {MAX_ACTION_TOKENS}", k + 1);
        }
        let xs = action.broadcast_add(&self.action_position.narrow(0, k, 1)?)?;
        // The new position's row of the whole sequence's mask: it sees every
        // earlier real position and itself.
        let s = cache.len + 1;
        let t = cache.len - k;
        let mask = self
            .mask(&cache.lens, t, k + 1, xs.device())?
            .narrow(2, s - 1, 1)?
            .to_dtype(xs.dtype())?;
        let run = self.run(&xs, Some(&cache.self_kv), image, &mask, 0, k)?;
        let step = DecodeStep {
            logits: self.read_out(&run, image, 0, k)?.0.squeeze(1)?,
            cross: run.cross_weights.squeeze(2)?,
        };
        cache.self_kv = run.self_kv;
        cache.len = s;
        cache.actions = k + 1;
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;
    use candle_nn::VarMap;

    #[test]
    fn cached_decoding_matches_the_whole_sequence() {
        for prefix_lm in [false, true] {
            cached_decoding_matches(prefix_lm);
        }
    }

    fn small_head(prefix_lm: bool) -> (FusionHead, Config) {
        let mut cfg = Config::tiny();
        cfg.image_size = 64;
        cfg.hidden_size = 16;
        cfg.intermediate_size = 32;
        cfg.prefix_lm = prefix_lm;
        let vars = VarMap::new();
        let head = FusionHead::new(
            &cfg,
            crate::train::init::SeededInit::var_builder(&vars, 3, &Device::Cpu),
        )
        .unwrap();
        (head, cfg)
    }

    #[test]
    fn with_prefix_lm_a_word_hears_the_words_after_it() {
        let dev = Device::Cpu;
        for prefix_lm in [false, true] {
            let (head, cfg) = small_head(prefix_lm);
            let (t, c) = (4, cfg.hidden_size);
            let text = Tensor::randn(0f32, 1., (1, t, c), &dev).unwrap();
            // The same command with its last word changed.
            let last = Tensor::randn(0f32, 1., (1, 1, c), &dev).unwrap();
            let other = Tensor::cat(&[&text.narrow(1, 0, t - 1).unwrap(), &last], 1).unwrap();
            let boa = Tensor::randn(0f32, 1., (1, 1, c), &dev).unwrap();
            let patches = Tensor::randn(0f32, 1., (1, cfg.num_patches(), c), &dev).unwrap();
            let kv = head.image_kv(&patches).unwrap();
            let first_word = |words: &Tensor| {
                let rec = crate::model::record::Recorder::start();
                head.forward(words, &[t], &boa, &kv).unwrap();
                let (maps, _) = rec.finish(t);
                // The last block's cross-attention of word 1.
                maps.fusion_cross[1].narrow(2, 0, 1).unwrap()
            };
            let moved = max_diff(&first_word(&text), &first_word(&other));
            if prefix_lm {
                assert!(moved > 1e-4, "word 1 did not hear the last word: {moved}");
            } else {
                assert!(
                    moved < 1e-6,
                    "the causal head let word 1 see the future: {moved}"
                );
            }
        }
    }

    fn cached_decoding_matches(prefix_lm: bool) {
        let dev = Device::Cpu;
        let (head, cfg) = small_head(prefix_lm);
        let (b, t, a, c) = (2, 5, 4, cfg.hidden_size);
        let lens = [5, 2]; // the second command is left-padded
        let text = Tensor::randn(0f32, 1., (b, t, c), &dev).unwrap();
        let actions = Tensor::randn(0f32, 1., (b, a, c), &dev).unwrap();
        let patches = Tensor::randn(0f32, 1., (b, cfg.num_patches(), c), &dev).unwrap();
        let kv = head.image_kv(&patches).unwrap();
        let whole = head.forward(&text, &lens, &actions, &kv).unwrap();

        let (mut cache, first) = head
            .decode_start(&text, &lens, &actions.narrow(1, 0, 1).unwrap(), &kv)
            .unwrap();
        let mut rows = vec![first.logits];
        assert!(max_diff(&first.cross, &whole.boa_cross) < 1e-5);
        for k in 1..a {
            let step = head
                .decode_step(&mut cache, &actions.narrow(1, k, 1).unwrap(), &kv)
                .unwrap();
            rows.push(step.logits);
        }
        for (k, row) in rows.iter().enumerate() {
            let want = whole.logits.narrow(1, k, 1).unwrap().squeeze(1).unwrap();
            let (got, want): (Vec<Vec<f32>>, Vec<Vec<f32>>) =
                (row.to_vec2().unwrap(), want.to_vec2().unwrap());
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                // Tokens the grammar forbids sit near −10⁴, where one f32 step is ~1e-3.
                let tolerance = if *w < -5e3 { 2e-3 } else { 1e-4 };
                assert!(
                    (g - w).abs() < tolerance,
                    "prefix_lm {prefix_lm}, action position {k}: {g} vs {w}"
                );
            }
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::engine::ops::tests::max_diff(a, b)
    }
}
