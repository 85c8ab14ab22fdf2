//! The model's configuration: every number that fixes its shape and its
//! input conventions, saved as config.json beside the weights.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::ScoreFn;
use crate::action::Workspace;

/// How patches learn where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PositionEmbedding {
    /// Fixed 2-D sine-cosine codes (MAE, Dosovitskiy et al. appendix): half the
    /// channels encode the column, half the row.
    #[default]
    Sincos,
    /// A learned vector per patch.
    Learned,
}

/// Everything that fixes the model's shape and its input conventions. Saved as
/// config.json beside the weights, so inference never asks for it twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Side of the square image the encoder sees, in pixels.
    pub image_size: usize,
    pub patch_size: usize,
    /// Channels of an optional convolutional stem before the patch projection:
    /// each entry is a 3×3, stride-2 convolution + GELU ("hybrid" ViT;
    /// Xiao et al. 2021, "Early convolutions help transformers see better").
    /// Empty means a plain ViT that projects raw pixel patches.
    #[serde(default)]
    pub conv_stem: Vec<usize>,
    /// 3×3, stride-1 convolutions + GELU after the stride-2 ones, at the
    /// stem's last width. Each widens what a patch token sees by two steps
    /// of the stem's grid (8 px with two stride-2 layers): with two, a 16 px
    /// patch's token sees 35 px instead of 19. 0 in every model before them.
    #[serde(default)]
    pub stem_context: usize,
    /// Per-channel pixel normalisation, applied to RGB in [0, 1].
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub vision_layers: usize,
    pub text_layers: usize,
    pub fusion_layers: usize,
    pub position_embedding: PositionEmbedding,
    /// Score function of the fusion cross-attention (words/actions -> patches).
    /// Self-attention always uses the scaled dot-product.
    pub cross_score_fn: ScoreFn,
    /// Relation-aware position terms in the fusion cross-attention (see
    /// [`super::geometry::Geometry`]): each query can ask for a place ("left", "near
    /// the bowl") and learns where it looked. Off in checkpoints from before.
    #[serde(default)]
    pub cross_geometry: bool,
    /// The pointer reads each head's attention only within this many patches
    /// of the head's peak (a local soft-argmax; see [`super::pointer::Pointer`]).
    /// `None`, as in checkpoints from before, reads the whole image.
    #[serde(default)]
    pub pointer_window: Option<usize>,
    /// Every patch also says where, within about a patch of its centre, the
    /// object it shows lies, and the pointer averages those places instead
    /// of the bare patch centres (see [`super::pointer::Pointer`]). Off, as
    /// in checkpoints from before, the point is a mix of patch centres.
    #[serde(default)]
    pub patch_offsets: bool,
    /// A linear head on the patch tokens that names what each patch shows:
    /// its colour and its shape, each read apart (or "the table"). Training
    /// learns from it, as a dense signal for the vision encoder (see
    /// `patch_label_weight` in the training config), and `eval` scores it;
    /// the action reads it only with `fusion_reads_labels`.
    #[serde(default)]
    pub patch_labels: bool,
    /// The fusion head's image memory also carries what the patch head
    /// reads: each patch's colour and shape distributions, apart, through
    /// one linear layer, so that a query can match a colour word and a shape
    /// word one at a time. The readings are taken as they are (no gradient
    /// flows back through them). Needs `patch_labels`.
    #[serde(default)]
    pub fusion_reads_labels: bool,
    /// The command's named colour and shape are read apart and matched,
    /// one at a time, against the patch head's readings; the match biases
    /// the action queries' cross-attention scores (see
    /// [`super::named::NamedReader`]). Needs `patch_labels`.
    #[serde(default)]
    pub named_match: bool,
    /// With `named_match`: each patch's match is raised to at least this
    /// log-probability, so that patches which fit only half the name (or
    /// nothing) bias the scores alike and an absent name leaves attention
    /// to the content scores. `None`: no floor (the match runs down to
    /// `2 log ε`).
    #[serde(default)]
    pub named_floor: Option<f64>,
    /// The patch head's colours are read from the embedding's tokens (the
    /// stem and the patch projection, before any block), where colour does
    /// not yet depend on the object's shape; its shapes still from the
    /// encoder's output. Needs `patch_labels`; the CPU engine, which returns
    /// only the output, is not used for such a model.
    #[serde(default)]
    pub colour_from_embedding: bool,
    /// The fusion head reads the command both ways (a prefix-LM mask: every
    /// word sees every word; actions stay causal). Off, as in checkpoints
    /// from before, every fusion position attends only backwards.
    #[serde(default)]
    pub prefix_lm: bool,
    pub vocab_size: usize,
    /// Longest command, in tokens.
    pub max_text_len: usize,
    /// Token id of `<x_000>`; the action slice is `action_offset..+ACTION_VOCAB`.
    pub action_offset: u32,
    /// Begin-of-action token: the query that predicts the first action token.
    pub boa_token_id: u32,
    pub pad_token_id: u32,
    pub layer_norm_eps: f64,
    /// Metric size of the table the image shows.
    pub workspace: Workspace,
}

impl Config {
    /// The plain-world preset (models/tiny, configs/train-tiny.json), before
    /// the tokenizer fills in the vocabulary ids; the default model,
    /// models/landmark, adds two vision blocks and a wider stem to it. It sees
    /// 160 px through 16 px patches, 10 × 10 = 100 patch tokens; at 224 px the
    /// same model would see 14 × 14 = 196 and train about twice as slowly.
    pub fn tiny() -> Self {
        Self {
            image_size: 160,
            patch_size: 16,
            conv_stem: vec![32, 64],
            stem_context: 0,
            image_mean: [0.5, 0.5, 0.5],
            image_std: [0.25, 0.25, 0.25],
            hidden_size: 128,
            num_attention_heads: 4,
            intermediate_size: 256,
            vision_layers: 4,
            text_layers: 2,
            fusion_layers: 2,
            position_embedding: PositionEmbedding::Sincos,
            cross_score_fn: ScoreFn::ScaledDot,
            cross_geometry: true,
            pointer_window: Some(1),
            patch_offsets: false,
            patch_labels: false,
            fusion_reads_labels: false,
            named_match: false,
            named_floor: None,
            colour_from_embedding: false,
            prefix_lm: true,
            vocab_size: 0,
            max_text_len: 32,
            action_offset: 0,
            boa_token_id: 0,
            pad_token_id: 0,
            layer_norm_eps: 1e-5,
            workspace: Workspace::default(),
        }
    }

    /// Patches per side and in all.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Checks the numbers fit together and lie within the documented bounds
    /// (`crate::limits::config`); every message names the field to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.validate_sizes()?;
        let vocab = self.vocab_size;
        anyhow::ensure!(
            (self.action_offset as usize).saturating_add(crate::action::ACTION_VOCAB) <= vocab,
            "config: vocab_size {vocab} must cover the {} action tokens from action_offset {}",
            crate::action::ACTION_VOCAB,
            self.action_offset
        );
        for (name, id) in [
            ("boa_token_id", self.boa_token_id),
            ("pad_token_id", self.pad_token_id),
        ] {
            anyhow::ensure!(
                (id as usize) < vocab,
                "config: {name} {id} is outside the vocabulary of {vocab}"
            );
        }
        Ok(())
    }

    /// The architecture's sizes and numbers alone, before the tokenizer
    /// fills in the vocabulary (training configs are checked with this).
    pub fn validate_sizes(&self) -> anyhow::Result<()> {
        use crate::limits::config::*;
        let within = |name: &str, v: usize, lo: usize, hi: usize| {
            anyhow::ensure!(
                (lo..=hi).contains(&v),
                "config: {name} {v} is outside {lo}..={hi}"
            );
            Ok(())
        };
        within("image_size", self.image_size, 1, MAX_IMAGE_SIZE)?;
        within("patch_size", self.patch_size, 1, self.image_size)?;
        within("hidden_size", self.hidden_size, 1, MAX_HIDDEN_SIZE)?;
        within(
            "num_attention_heads",
            self.num_attention_heads,
            1,
            MAX_HEADS,
        )?;
        within(
            "intermediate_size",
            self.intermediate_size,
            1,
            MAX_INTERMEDIATE_SIZE,
        )?;
        within("vision_layers", self.vision_layers, 1, MAX_LAYERS)?;
        within("text_layers", self.text_layers, 1, MAX_LAYERS)?;
        within("fusion_layers", self.fusion_layers, 1, MAX_LAYERS)?;
        within("max_text_len", self.max_text_len, 1, MAX_TEXT_LEN)?;
        within("vocab_size", self.vocab_size, 0, MAX_VOCAB_SIZE)?;
        within("conv_stem length", self.conv_stem.len(), 0, MAX_STEM_LAYERS)?;
        for &c in &self.conv_stem {
            within("conv_stem channels", c, 1, MAX_STEM_CHANNELS)?;
        }
        within("stem_context", self.stem_context, 0, MAX_STEM_CONTEXT)?;
        anyhow::ensure!(
            self.stem_context == 0 || !self.conv_stem.is_empty(),
            "config: stem_context needs a conv_stem to widen"
        );
        let down = 1usize << self.conv_stem.len();
        anyhow::ensure!(
            self.patch_size.is_multiple_of(down),
            "config: patch_size {} is not a multiple of the conv stem's downsampling {down}",
            self.patch_size
        );
        anyhow::ensure!(
            self.image_size.is_multiple_of(self.patch_size),
            "config: image_size {} is not a multiple of patch_size {}",
            self.image_size,
            self.patch_size
        );
        within("the number of patches", self.num_patches(), 1, MAX_PATCHES)?;
        anyhow::ensure!(
            self.hidden_size.is_multiple_of(self.num_attention_heads),
            "config: hidden_size {} is not divisible by num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        anyhow::ensure!(
            self.position_embedding != PositionEmbedding::Sincos
                || self.hidden_size.is_multiple_of(4),
            "config: sincos position embedding needs hidden_size divisible by 4"
        );
        if let Some(w) = self.pointer_window {
            within("pointer_window", w, 0, self.grid())?;
        }
        for c in 0..3 {
            let (m, sd) = (self.image_mean[c], self.image_std[c]);
            anyhow::ensure!(
                (0.0..=1.0).contains(&m),
                "config: image_mean[{c}] {m} is outside 0..=1"
            );
            anyhow::ensure!(
                (MIN_IMAGE_STD..=MAX_IMAGE_STD).contains(&sd),
                "config: image_std[{c}] {sd} is outside {MIN_IMAGE_STD}..={MAX_IMAGE_STD}"
            );
        }
        anyhow::ensure!(
            (MIN_LAYER_NORM_EPS..=MAX_LAYER_NORM_EPS).contains(&self.layer_norm_eps),
            "config: layer_norm_eps {} is outside {MIN_LAYER_NORM_EPS}..={MAX_LAYER_NORM_EPS}",
            self.layer_norm_eps
        );
        let ws = self.workspace;
        anyhow::ensure!(
            [ws.width_m, ws.height_m]
                .iter()
                .all(|&m| m > 0.0 && m <= MAX_WORKSPACE_M),
            "config: workspace {} m × {} m: each side must be above 0 and at most {MAX_WORKSPACE_M} m",
            ws.width_m,
            ws.height_m
        );
        anyhow::ensure!(
            self.patch_labels || !self.fusion_reads_labels,
            "config: fusion_reads_labels needs \"patch_labels\": true"
        );
        anyhow::ensure!(
            self.patch_labels || !self.named_match,
            "config: named_match needs \"patch_labels\": true"
        );
        anyhow::ensure!(
            self.patch_labels || !self.colour_from_embedding,
            "config: colour_from_embedding needs \"patch_labels\": true"
        );
        if let Some(f) = self.named_floor {
            anyhow::ensure!(
                self.named_match && f.is_finite() && (-20.0..=0.0).contains(&f),
                "config: named_floor {f} needs \"named_match\": true and a value from -20 to 0"
            );
        }
        Ok(())
    }

    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let cfg: Config =
            serde_json::from_str(text).context("config.json is not a valid model config")?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_floor_and_early_colours_need_what_they_read() {
        let mut cfg = Config::tiny();
        cfg.vocab_size = 1024;
        cfg.validate().unwrap();
        let err = |cfg: &Config| cfg.validate().unwrap_err().to_string();
        cfg.named_floor = Some(-3.0);
        assert!(err(&cfg).contains("named_floor -3 needs"), "{}", err(&cfg));
        cfg.patch_labels = true;
        cfg.named_match = true;
        cfg.validate().unwrap();
        for bad in [1.0, -21.0, f64::NAN] {
            cfg.named_floor = Some(bad);
            assert!(err(&cfg).contains("named_floor"), "floor {bad}");
        }
        cfg.named_floor = None;
        cfg.colour_from_embedding = true;
        cfg.validate().unwrap();
        cfg.named_match = false;
        cfg.patch_labels = false;
        assert!(
            err(&cfg).contains("colour_from_embedding needs"),
            "{}",
            err(&cfg)
        );
    }
}
