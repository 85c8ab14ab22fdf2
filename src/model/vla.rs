//! The whole model: image and command in, action tokens out, with every
//! attention weight on the side.
//!
//! pixels -> [`VisionEncoder`] -> patch tokens ─────────────┐ (keys, values)
//! command ids -> embeddings -> [`TextDecoder`] -> words ─> [`FusionHead`] -> action logits
//!
//! [`Vla::generate`] decodes actions step by step, against the fusion
//! blocks' cached keys and values; [`super::decode`] chooses each token
//! (well formed, refusal weighed first, greedy or sampled).

use std::time::Instant;

use candle::{DType, Device, Module, Result, Tensor, D};
use candle_nn::ops::softmax;
use candle_nn::{Embedding, VarBuilder};
use candle_transformers::generation::LogitsProcessor;

use super::block::embedding;
use super::decode::choose;
pub use super::decode::{refusal_score, Decoding, Step, REFUSAL_THRESHOLD};
use super::fusion::{FusionHead, FusionOut, ImageMemory};
use super::linear::{linear, Linear};
use super::named::NamedReader;
use super::record::{self, AttentionMaps, Recorder, Taps};
use super::text::TextDecoder;
use super::vision::VisionEncoder;
use super::Config;
use crate::action::{self, ActionToken, MAX_ACTION_TOKENS};
use crate::engine::{Engine, Path};
use crate::grid::{PATCH_COLORS, PATCH_SHAPES};

/// One batch of inputs. Several commands may share an image: command `b`
/// looks at image `image_index[b]`.
pub struct Inputs {
    /// (I, 3, S, S), normalised.
    pub pixels: Tensor,
    /// (B,) u32 into the images; `None` means command b uses image b.
    pub image_index: Option<Tensor>,
    /// (B, T) u32, left-padded with the pad id.
    pub text_ids: Tensor,
    /// Real length of each command.
    pub text_lens: Vec<usize>,
    /// (B, N), 1 on the patches command b's fusion head may not look at
    /// (attention knockout, see `faithfulness.rs`); `None` in an ordinary run.
    pub knockout: Option<Tensor>,
}

/// Wall time of each stage of [`Vla::generate`], in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StageTimes {
    pub vision: f64,
    pub text: f64,
    pub decode: f64,
}

/// What [`Vla::generate`] returns for a batch.
pub struct Generated {
    /// Per command, the decoded steps up to and including `<eoa>`.
    pub steps: Vec<Vec<Step>>,
    pub maps: Option<AttentionMaps>,
    /// The path that computed it (see [`Path::choose`]).
    pub path: Path,
    /// The last fusion block's `<boa>` cross-attention, (B, H, N): the
    /// query that predicts the first x.
    pub boa_cross: Tensor,
    /// The same for the first x token's query, which predicts the first y;
    /// `None` where every command ended after one token.
    pub y_cross: Option<Tensor>,
    /// What the encoder says each patch of each image shows, (I, N,
    /// PATCH_COLORS + PATCH_SHAPES) logits, for a model with a patch head.
    pub patch_labels: Option<Tensor>,
    pub times: StageTimes,
}

impl Generated {
    /// Command b's action, or an error if it was not well formed.
    pub fn action(&self, b: usize) -> anyhow::Result<action::Action> {
        let tokens: Vec<ActionToken> = self.steps[b].iter().map(|s| s.token).collect();
        action::decode(&tokens)
    }
}

#[derive(Debug, Clone)]
pub struct Vla {
    cfg: Config,
    embed_tokens: Embedding,
    vision: VisionEncoder,
    text: TextDecoder,
    fusion: FusionHead,
    /// What each patch shows, colour and shape (`patch_labels`): a training
    /// signal for the vision encoder, which the action reads only through
    /// `label_embed`.
    patch_head: Option<Linear>,
    /// With `colour_from_embedding`: the head's colours, read from the
    /// embedding's tokens instead.
    colour_head: Option<Linear>,
    /// The patch head's readings into the fusion head's image memory
    /// (`fusion_reads_labels`).
    label_embed: Option<Linear>,
    /// The CPU inference engine, when [`Vla::compile`] built one.
    engine: Option<Engine>,
}

impl Vla {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens: embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("embed_tokens"))?,
            vision: VisionEncoder::new(cfg, vb.pp("vision"))?,
            text: TextDecoder::new(cfg, vb.pp("text"))?,
            fusion: FusionHead::new(cfg, vb.pp("fusion"))?,
            patch_head: cfg
                .patch_labels
                .then(|| {
                    linear(
                        cfg.hidden_size,
                        PATCH_COLORS + PATCH_SHAPES,
                        vb.pp("patch_head"),
                    )
                })
                .transpose()?,
            colour_head: cfg
                .colour_from_embedding
                .then(|| linear(cfg.hidden_size, PATCH_COLORS, vb.pp("colour_head")))
                .transpose()?,
            label_embed: cfg
                .fusion_reads_labels
                .then(|| {
                    linear(
                        PATCH_COLORS + PATCH_SHAPES,
                        cfg.hidden_size,
                        vb.pp("label_embed"),
                    )
                })
                .transpose()?,
            engine: None,
        })
    }

    /// Compiles the CPU inference engine from the loaded weights, where it
    /// can run (see [`Engine::compile`]). Done once, at load time.
    pub fn compile(mut self) -> Result<Self> {
        if self.colour_head.is_none() {
            self.engine = Engine::compile(&self.vision, self.device(), self.dtype())?;
        }
        Ok(self)
    }

    /// The path a run takes: the policy, given whether it wants the maps.
    pub fn path(&self, maps: bool) -> Path {
        match Path::choose(self.device(), self.dtype(), maps) {
            Path::CpuEngine if self.engine.is_none() => Path::Reference,
            path => path,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The vision encoder, for probing its layers (`examples/probe.rs`).
    pub fn vision(&self) -> &VisionEncoder {
        &self.vision
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.embeddings().device()
    }

    pub fn dtype(&self) -> DType {
        self.embed_tokens.embeddings().dtype()
    }

    /// pixels (I, 3, S, S) -> patch tokens (I, N, C), on `path`; with
    /// `colour_from_embedding`, also the embedding's tokens (I, N, C).
    pub fn encode_image(&self, pixels: &Tensor, path: Path) -> Result<(Tensor, Option<Tensor>)> {
        let pixels = pixels.to_dtype(self.dtype())?;
        match (path, &self.engine) {
            (Path::CpuEngine, Some(engine)) => Ok((engine.encode_image(&pixels)?, None)),
            _ if self.colour_head.is_some() => {
                let embedded = self.vision.embed(&pixels)?;
                Ok((self.vision.forward_embedded(&embedded)?, Some(embedded)))
            }
            _ => Ok((self.vision.forward(&pixels)?, None)),
        }
    }

    /// command ids (B, T) -> word states (B, T, C).
    pub fn encode_text(&self, ids: &Tensor, lens: &[usize]) -> Result<Tensor> {
        self.text.forward(&self.embed_tokens.forward(ids)?, lens)
    }

    /// The fusion head's image keys and values, one pair per block, gathered
    /// so that command b sees its own image, with the knockout if asked. As in DETR, the patches' position
    /// codes are added again here, so that what a query reads from a patch
    /// says plainly where that patch is: the action's x and y come from it.
    /// `labels` are the patch head's logits for `patches`, when it has one.
    fn image_kv(
        &self,
        patches: &Tensor,
        labels: Option<&Tensor>,
        inputs: &Inputs,
    ) -> Result<ImageMemory> {
        let mut memory = patches.broadcast_add(self.vision.position())?;
        if let (Some(embed), Some(labels)) = (&self.label_embed, labels) {
            // Colour and shape, each its own distribution, as the patch head
            // reads them; the readings stay the patch head's own.
            let logits = labels.detach();
            let colour = softmax(&logits.narrow(2, 0, PATCH_COLORS)?, D::Minus1)?;
            let shape = softmax(&logits.narrow(2, PATCH_COLORS, PATCH_SHAPES)?, D::Minus1)?;
            memory = (memory + embed.forward(&Tensor::cat(&[colour, shape], 2)?)?)?;
        }
        let mut image = self.fusion.image_kv(&memory)?;
        if let Some(idx) = &inputs.image_index {
            for (k, v) in image.kv.iter_mut() {
                *k = k.index_select(idx, 0)?;
                *v = v.index_select(idx, 0)?;
            }
            if let Some(o) = image.offsets.as_mut() {
                *o = o.index_select(idx, 0)?;
            }
        }
        if let Some(hidden) = &inputs.knockout {
            // A large negative score rather than −∞: a row with every patch
            // knocked out stays a (uniform) distribution instead of NaN.
            let (b, n) = hidden.dims2()?;
            image.knockout = Some((hidden.to_dtype(self.dtype())? * -1e4)?.reshape((b, 1, 1, n))?);
        }
        Ok(image)
    }

    /// Teacher-forced forward pass, as in training: `action_ids` (B, A) are
    /// `<boa>, a_1, .., a_{A-1}` as vocabulary ids; the logits at position k
    /// predict action token k. It takes the path of a run without maps (the
    /// reference model while training, which builds no engine); for the
    /// maps, use [`Vla::forward_traced`] or [`Vla::generate`].
    pub fn forward(&self, inputs: &Inputs, action_ids: &Tensor) -> Result<FusionOut> {
        let pixels = inputs.pixels.to_dtype(self.dtype())?;
        let embedded = self.embed_tokens.forward(&inputs.text_ids)?;
        self.forward_from(&pixels, &embedded, inputs, action_ids, self.path(false))
    }

    /// [`Vla::forward`] with the graph kept from the pixels and the embedded
    /// command on, and every attention weight recorded and tapped (the
    /// relevance maps of `relevance.rs` need their gradients). The weights
    /// themselves stay constants.
    pub fn forward_traced(
        &self,
        inputs: &Inputs,
        action_ids: &Tensor,
    ) -> Result<(FusionOut, AttentionMaps, Taps)> {
        let pixels = candle::Var::from_tensor(&inputs.pixels.to_dtype(self.dtype())?)?;
        let embedded = candle::Var::from_tensor(&self.embed_tokens.forward(&inputs.text_ids)?)?;
        let recorder = Recorder::start_tapped();
        let out = self.forward_from(&pixels, &embedded, inputs, action_ids, Path::Reference)?;
        let (maps, taps) = recorder.finish(inputs.text_ids.dim(1)?);
        Ok((out, maps, taps))
    }

    /// The teacher-forced pass from pixels and embedded command tokens.
    fn forward_from(
        &self,
        pixels: &Tensor,
        embedded: &Tensor,
        inputs: &Inputs,
        action_ids: &Tensor,
        path: Path,
    ) -> Result<FusionOut> {
        let (patches, early) = self.encode_image(pixels, path)?;
        let words = self.text.forward(embedded, &inputs.text_lens)?;
        let patch_labels = self.patch_labels(&patches, early.as_ref())?;
        let mut kv = self.image_kv(&patches, patch_labels.as_ref(), inputs)?;
        let named = self.match_named(&words, inputs, patch_labels.as_ref(), &mut kv)?;
        let actions = self.embed_tokens.forward(action_ids)?;
        let mut out = self
            .fusion
            .forward(&words, &inputs.text_lens, &actions, &kv)?;
        out.patch_labels = patch_labels;
        out.named = named;
        Ok(out)
    }

    /// With `named_match`: reads what each command names from its word
    /// states, and puts how well each patch of its image fits that (the
    /// patch head's `labels`, taken as they are) into `kv`. Returns the
    /// reading, (B, PATCH_COLORS + PATCH_SHAPES) logits.
    fn match_named(
        &self,
        words: &Tensor,
        inputs: &Inputs,
        labels: Option<&Tensor>,
        kv: &mut ImageMemory,
    ) -> Result<Option<Tensor>> {
        let (Some(named), Some(labels)) =
            (self.fusion.read_named(words, &inputs.text_lens)?, labels)
        else {
            return Ok(None);
        };
        let labels = match &inputs.image_index {
            Some(idx) => labels.detach().index_select(idx, 0)?,
            None => labels.detach(),
        };
        kv.named = Some(NamedReader::matches(&named, &labels, self.cfg.named_floor)?);
        Ok(Some(named))
    }

    /// The patch head's logits (I, N, PATCH_COLORS + PATCH_SHAPES) for the
    /// patch tokens (I, N, C): what the encoder says each patch shows. With
    /// `colour_from_embedding`, the colours come from the embedding's
    /// tokens `early` (I, N, C). `None` for a model without the head.
    pub fn patch_labels(&self, patches: &Tensor, early: Option<&Tensor>) -> Result<Option<Tensor>> {
        let Some(head) = &self.patch_head else {
            return Ok(None);
        };
        let labels = head.forward(patches)?;
        match (&self.colour_head, early) {
            (Some(colour), Some(early)) => {
                let shapes = labels.narrow(D::Minus1, PATCH_COLORS, PATCH_SHAPES)?;
                Ok(Some(Tensor::cat(
                    &[&colour.forward(early)?, &shapes],
                    D::Minus1,
                )?))
            }
            (Some(_), None) => candle::bail!("colour_from_embedding: no embedding tokens given"),
            (None, _) => Ok(Some(labels)),
        }
    }

    /// Vocabulary id of an action token.
    pub fn action_id(&self, t: ActionToken) -> u32 {
        self.cfg.action_offset + t.index() as u32
    }

    /// Decodes an action for every command in the batch; with `maps`, also
    /// returns every attention weight (and runs the reference path).
    pub fn generate(
        &self,
        inputs: &Inputs,
        decoding: &Decoding,
        maps: bool,
    ) -> anyhow::Result<Generated> {
        let device = self.device().clone();
        let path = self.path(maps);
        let recorder = maps.then(Recorder::start);
        let t0 = Instant::now();
        let (patches, early) = self.encode_image(&inputs.pixels, path)?;
        let patch_labels = self.patch_labels(&patches, early.as_ref())?;
        sync(&device)?;
        let t1 = Instant::now();
        let words = self.encode_text(&inputs.text_ids, &inputs.text_lens)?;
        sync(&device)?;
        let t2 = Instant::now();

        let mut kv = self.image_kv(&patches, patch_labels.as_ref(), inputs)?;
        self.match_named(&words, inputs, patch_labels.as_ref(), &mut kv)?;
        let b = inputs.text_lens.len();
        let mut processors: Vec<LogitsProcessor> = (0..b)
            .map(|_| LogitsProcessor::from_sampling(decoding.seed, decoding.sampling()))
            .collect();
        let mut steps: Vec<Vec<Step>> = vec![Vec::new(); b];
        let mut ids: Vec<Vec<u32>> = vec![vec![self.cfg.boa_token_id]; b];
        // Each step computes only the newest position, against the fusion
        // blocks' cached keys and values of the earlier ones. The steps are
        // not recorded: the maps come from one pass at the end.
        let boa = Tensor::from_vec(vec![self.cfg.boa_token_id; b], (b, 1), &device)?;
        let boa = self.embed_tokens.forward(&boa)?;
        let (mut cache, mut out) = record::paused(|| {
            self.fusion
                .decode_start(&words, &inputs.text_lens, &boa, &kv)
        })?;
        let boa_cross = out.cross.clone();
        let mut y_cross = None;
        for k in 0..MAX_ACTION_TOKENS {
            let logits = out.logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let mut next_ids = Vec::with_capacity(b);
            for (i, row) in logits.into_iter().enumerate() {
                let done = steps[i].last().is_some_and(|s| s.token == ActionToken::End);
                let next = if done {
                    ActionToken::End
                } else {
                    let prefix: Vec<ActionToken> = steps[i].iter().map(|s| s.token).collect();
                    let step = choose(&row, &prefix, &mut processors[i], &device)?;
                    let token = step.token;
                    steps[i].push(step);
                    token
                };
                next_ids.push(self.action_id(next));
            }
            let all_done = steps
                .iter()
                .all(|s| s.last().is_some_and(|s| s.token == ActionToken::End));
            if all_done || k + 1 == MAX_ACTION_TOKENS {
                break;
            }
            for (seq, id) in ids.iter_mut().zip(&next_ids) {
                seq.push(*id);
            }
            let next = self
                .embed_tokens
                .forward(&Tensor::from_vec(next_ids, (b, 1), &device)?)?;
            out = record::paused(|| self.fusion.decode_step(&mut cache, &next, &kv))?;
            if k == 0 {
                y_cross = Some(out.cross.clone());
            }
        }
        // The maps: one teacher-forced pass over the positions decoded, which
        // gives every row the cached steps computed, and the words' rows too.
        let maps = match recorder {
            Some(recorder) => {
                let a = ids[0].len();
                let flat: Vec<u32> = ids.into_iter().flatten().collect();
                let actions =
                    self.embed_tokens
                        .forward(&Tensor::from_vec(flat, (b, a), &device)?)?;
                self.fusion
                    .forward(&words, &inputs.text_lens, &actions, &kv)?;
                Some(recorder.finish(inputs.text_ids.dim(1)?).0)
            }
            None => None,
        };
        sync(&device)?;
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        Ok(Generated {
            steps,
            maps,
            path,
            boa_cross,
            y_cross,
            patch_labels,
            times: StageTimes {
                vision: ms(t0, t1),
                text: ms(t1, t2),
                decode: ms(t2, t3),
            },
        })
    }
}

/// Waits for the device, so stage timings measure work rather than queueing.
fn sync(device: &Device) -> Result<()> {
    device.synchronize()
}
