//! The vision encoder: a small ViT (Dosovitskiy et al. 2020, "An Image is
//! Worth 16x16 Words").
//!
//! image (B, 3, S, S) -> [conv stem] -> patch embedding (a P × P convolution
//! of stride P, as in candle's `vit.rs`: cutting patches and projecting each
//! is exactly that) -> + position -> pre-LN self-attention blocks -> (B, N, C).
//! At 160 px with 16 px patches, N = 10 × 10 = 100 tokens (at 224 px, 196),
//! and every block lets each patch look at all others.
//!
//! The optional stem of stride-2 convolutions turns pixels into local edge
//! and colour features before the patches are cut (the "hybrid" ViT of the
//! original paper); it makes a small ViT learn from little data much faster.
//! Stride-1 context convolutions (`stem_context`) may follow, so that each
//! patch's token also sees the pixels around its patch.
//! Between the convolutions the features stay channels-last (B, H, W, C).

use candle::{Device, Module, Result, Tensor};
use candle_nn::{Conv2dConfig, Init, VarBuilder};

use super::block::{Block, LayerNorm};
use super::record::Site;
use super::{Config, PositionEmbedding};
use crate::engine::im2col::{conv2d_nhwc, ConvGeometry};
use crate::engine::ops;

/// The stem's convolutions: 3 × 3, stride 2, padding 1 (each halves the side).
const STEM: ConvGeometry = ConvGeometry {
    kernel: 3,
    stride: 2,
    padding: 1,
};

/// The stem's context convolutions (`stem_context`): 3 × 3, stride 1,
/// padding 1. They keep the side and widen what each position sees.
const CONTEXT: ConvGeometry = ConvGeometry {
    kernel: 3,
    stride: 1,
    padding: 1,
};

/// Fixed 2-D sine-cosine position codes, (grid², C): the first half of the
/// channels encodes the column, the second half the row.
pub fn sincos_2d(grid: usize, hidden: usize, device: &Device) -> Result<Tensor> {
    let quarter = hidden / 4;
    let mut out = Vec::with_capacity(grid * grid * hidden);
    for row in 0..grid {
        for col in 0..grid {
            for pos in [col, row] {
                for fun in 0..2 {
                    for i in 0..quarter {
                        let freq = 1.0 / 10_000f32.powf(i as f32 / quarter as f32);
                        let a = pos as f32 * freq;
                        out.push(if fun == 0 { a.sin() } else { a.cos() });
                    }
                }
            }
        }
    }
    Tensor::from_vec(out, (grid * grid, hidden), device)
}

/// A convolution's weights, as candle stores them: (C_out, C_in, k, k).
#[derive(Debug, Clone)]
pub struct Conv {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) geometry: ConvGeometry,
}

impl Conv {
    /// A stem layer, with candle's `conv2d` weights and initialisation.
    fn stem(c_in: usize, c_out: usize, g: ConvGeometry, vb: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding: g.padding,
            stride: g.stride,
            ..Default::default()
        };
        let conv = candle_nn::conv2d(c_in, c_out, g.kernel, cfg, vb)?;
        Self::with(conv.weight().clone(), conv.bias(), g)
    }

    /// The patch embedding, stored as the linear layer it is,
    /// (C, C_in·p·p), and read as a convolution's (C, C_in, p, p).
    fn patch(c_in: usize, hidden: usize, p: usize, vb: VarBuilder) -> Result<Self> {
        let proj = candle_nn::linear(c_in * p * p, hidden, vb)?;
        let geometry = ConvGeometry {
            kernel: p,
            stride: p,
            padding: 0,
        };
        Self::with(
            proj.weight().reshape((hidden, c_in, p, p))?,
            proj.bias(),
            geometry,
        )
    }

    fn with(weight: Tensor, bias: Option<&Tensor>, geometry: ConvGeometry) -> Result<Self> {
        match bias {
            Some(b) => Ok(Self {
                weight,
                bias: b.clone(),
                geometry,
            }),
            None => candle::bail!("a convolution without a bias"),
        }
    }

    /// (B, H, W, C_in) channels-last -> (B, OH, OW, C_out).
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        conv2d_nhwc(xs, &self.weight, Some(&self.bias), self.geometry)
    }
}

#[derive(Debug, Clone)]
pub struct VisionEncoder {
    pub(crate) stem: Vec<Conv>,
    pub(crate) patch_embed: Conv,
    pub(crate) position: Tensor,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: LayerNorm,
}

impl VisionEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        // The stride-2 layers, then the stride-1 context layers at the last
        // width, numbered on: stem.0, stem.1, ...
        let mut stem = Vec::new();
        let mut channels = 3;
        let last = cfg.conv_stem.last().copied().unwrap_or(channels);
        let widths = cfg.conv_stem.iter().map(|&c| (c, STEM));
        let context = std::iter::repeat_n((last, CONTEXT), cfg.stem_context);
        for (i, (c, g)) in widths.chain(context).enumerate() {
            stem.push(Conv::stem(channels, c, g, vb.pp(format!("stem.{i}")))?);
            channels = c;
        }
        // Patch side on the stem's output grid.
        let p = cfg.patch_size >> cfg.conv_stem.len();
        let patch_embed = Conv::patch(channels, cfg.hidden_size, p, vb.pp("patch_proj"))?;
        let position = match cfg.position_embedding {
            PositionEmbedding::Sincos => {
                sincos_2d(cfg.grid(), cfg.hidden_size, vb.device())?.to_dtype(vb.dtype())?
            }
            PositionEmbedding::Learned => vb.get_with_hints(
                (cfg.num_patches(), cfg.hidden_size),
                "position_embedding",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
        };
        let blocks = (0..cfg.vision_layers)
            .map(|i| Block::new(cfg, Site::Vision, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            stem,
            patch_embed,
            position,
            blocks,
            norm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("norm"))?,
        })
    }

    /// Pixels to the tokens the blocks read: conv stem, patch embedding,
    /// plus the position codes. (B, 3, S, S) -> (B, N, C).
    pub fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        let mut xs = pixels.permute((0, 2, 3, 1))?; // (B, S, S, 3), a view
        for conv in &self.stem {
            xs = ops::gelu(&conv.forward(&xs)?)?; // (B, S/2, S/2, C')
        }
        let tokens = self.patch_embed.forward(&xs)?; // (B, g, g, C)
        let (b, gh, gw, c) = tokens.dims4()?;
        tokens
            .reshape((b, gh * gw, c))? // (B, N, C), patches row by row
            .broadcast_add(&self.position)
    }

    /// The position code of every patch, (N, C).
    pub fn position(&self) -> &Tensor {
        &self.position
    }

    /// `pixels` (B, 3, S, S) -> patch tokens (B, N, C).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        self.forward_embedded(&self.embed(pixels)?)
    }

    /// The blocks and the final norm on [`Self::embed`]'s tokens.
    pub fn forward_embedded(&self, embedded: &Tensor) -> Result<Tensor> {
        let mut xs = embedded.clone();
        for block in &self.blocks {
            xs = block.forward(&xs, None)?;
        }
        self.norm.forward(&xs)
    }

    /// Every stage's patch tokens, (B, N, C) each: the embedding, each
    /// block's output, then the final norm's (what [`Self::forward`]
    /// returns). For probing what each layer holds (`examples/probe.rs`).
    pub fn layers(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        let mut xs = self.embed(pixels)?;
        let mut layers = vec![xs.clone()];
        for block in &self.blocks {
            xs = block.forward(&xs, None)?;
            layers.push(xs.clone());
        }
        layers.push(self.norm.forward(&xs)?);
        Ok(layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::max_diff;

    #[test]
    fn the_patch_embedding_is_cut_patches_times_a_projection() {
        let mut cfg = Config::tiny();
        cfg.conv_stem = vec![];
        cfg.image_size = 32;
        cfg.hidden_size = 16;
        let vars = candle_nn::VarMap::new();
        let vb = crate::train::init::SeededInit::var_builder(&vars, 3, &Device::Cpu);
        let enc = VisionEncoder::new(&cfg, vb).unwrap();
        let px = Tensor::randn(0f32, 1., (2, 3, 32, 32), &Device::Cpu).unwrap();
        let conv = enc
            .embed(&px)
            .unwrap()
            .broadcast_sub(enc.position())
            .unwrap();
        // Cut the 16 px patches by hand: (B, 3, 2, 16, 2, 16) -> (B, 4, 3·16·16),
        // each flattened (channel, row, column), then multiply by the weights.
        let patches = px
            .reshape((2, 3, 2, 16, 2, 16))
            .unwrap()
            .permute((0, 2, 4, 1, 3, 5))
            .unwrap()
            .reshape((2, 4, 3 * 16 * 16))
            .unwrap();
        let w = enc.patch_embed.weight.reshape((16, 3 * 16 * 16)).unwrap();
        let by_hand = patches
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&enc.patch_embed.bias)
            .unwrap();
        assert!(max_diff(&conv, &by_hand) < 1e-4);
    }

    #[test]
    fn sincos_codes_are_distinct() {
        let pe = sincos_2d(4, 16, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for i in 0..16 {
            for j in 0..i {
                let d: f32 = pe[i].iter().zip(&pe[j]).map(|(a, b)| (a - b).abs()).sum();
                assert!(d > 1e-3, "patches {i} and {j} share a code");
            }
        }
    }

    #[test]
    fn the_layers_run_from_the_embedding_to_the_encoders_output() {
        let cfg = Config::tiny();
        let vars = candle_nn::VarMap::new();
        let vb = crate::train::init::SeededInit::var_builder(&vars, 4, &Device::Cpu);
        let enc = VisionEncoder::new(&cfg, vb).unwrap();
        let s = cfg.image_size;
        let px = Tensor::randn(0f32, 1., (1, 3, s, s), &Device::Cpu).unwrap();
        let layers = enc.layers(&px).unwrap();
        assert_eq!(layers.len(), cfg.vision_layers + 2);
        assert_eq!(max_diff(&layers[0], &enc.embed(&px).unwrap()), 0.0);
        let last = layers.last().unwrap();
        assert_eq!(max_diff(last, &enc.forward(&px).unwrap()), 0.0);
        // Each block changes the tokens.
        for pair in layers.windows(2) {
            assert!(max_diff(&pair[0], &pair[1]) > 1e-4);
        }
    }
}
