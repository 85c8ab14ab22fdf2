//! The vision encoder: a small ViT (Dosovitskiy et al. 2020, "An Image is
//! Worth 16x16 Words").
//!
//! image (B, 3, S, S) -> [conv stem] -> patches (B, N, C_in·p·p) -> linear
//! projection -> + position -> pre-LN self-attention blocks -> (B, N, C). At
//! 160 px with 16 px patches, N = 10 × 10 = 100 tokens (at 224 px, 196), and
//! every block lets each patch look at all others.
//!
//! The optional stem of stride-2 convolutions turns pixels into local edge
//! and colour features before the patches are cut (the "hybrid" ViT of the
//! original paper); it makes a small ViT learn from little data much faster.

use candle::{Device, Result, Tensor};
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Init, Linear, VarBuilder};

use super::conv::{conv2d_nhwc, ConvGeometry};
use super::dense::{self, Act};
use super::encoder_kernel::{self, ConvLayer, EncoderWeights};
use super::{fused, Block, Config, LayerNorm, PositionEmbedding};

/// Cuts images into non-overlapping patches, row by row.
/// (B, 3, S, S) -> (B, N, 3·P·P), each patch flattened as (channel, row, column),
/// the same order a stride-P convolution's kernel reads it in.
pub fn patchify(pixels: &Tensor, patch: usize) -> Result<Tensor> {
    let (b, c, h, w) = pixels.dims4()?;
    let (gh, gw) = (h / patch, w / patch);
    pixels
        .reshape((b, c, gh, patch, gw, patch))? // (B, C, gh, P, gw, P)
        .permute((0, 2, 4, 1, 3, 5))? // (B, gh, gw, C, P, P)
        .reshape((b, gh * gw, c * patch * patch))
}

/// [`patchify`] for a channels-last image (B, S, S, C): the same patches,
/// flattened in the same (channel, row, column) order.
pub fn patchify_nhwc(features: &Tensor, patch: usize) -> Result<Tensor> {
    let (b, h, w, c) = features.dims4()?;
    let (gh, gw) = (h / patch, w / patch);
    features
        .reshape((b, gh, patch, gw, patch, c))? // (B, gh, P, gw, P, C)
        .permute((0, 1, 3, 5, 2, 4))? // (B, gh, gw, C, P, P)
        .reshape((b, gh * gw, c * patch * patch))
}

/// The stem's convolutions: 3 × 3, stride 2, padding 1 (each halves the side).
const STEM: ConvGeometry = ConvGeometry {
    kernel: 3,
    stride: 2,
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

#[derive(Debug, Clone)]
pub struct VisionEncoder {
    stem: Vec<Conv2d>,
    /// Patch side on the stem's output grid.
    patch: usize,
    patch_proj: Linear,
    position: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    /// The blocks' weights as the per-image kernel reads them, copied on
    /// first use (`encoder_kernel.rs`).
    kernel: std::sync::OnceLock<std::sync::Arc<EncoderWeights>>,
}

impl VisionEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let n = cfg.num_patches();
        let conv = Conv2dConfig {
            padding: STEM.padding,
            stride: STEM.stride,
            ..Default::default()
        };
        let mut stem = Vec::new();
        let mut channels = 3;
        for (i, &c) in cfg.conv_stem.iter().enumerate() {
            stem.push(conv2d(
                channels,
                c,
                STEM.kernel,
                conv,
                vb.pp(format!("stem.{i}")),
            )?);
            channels = c;
        }
        let patch = cfg.patch_size >> cfg.conv_stem.len();
        let patch_dim = channels * patch * patch;
        let position = match cfg.position_embedding {
            PositionEmbedding::Sincos => {
                sincos_2d(cfg.grid(), cfg.hidden_size, vb.device())?.to_dtype(vb.dtype())?
            }
            PositionEmbedding::Learned => vb.get_with_hints(
                (n, cfg.hidden_size),
                "position_embedding",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
        };
        let blocks = (0..cfg.vision_layers)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            stem,
            patch,
            patch_proj: linear(patch_dim, cfg.hidden_size, vb.pp("patch_proj"))?,
            position,
            blocks,
            norm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("norm"))?,
            kernel: Default::default(),
        })
    }

    /// The conv stem, then the patches: (B, 3, S, S) -> (B, N, C·p·p).
    /// On the CPU in f32 the convolutions run as im2col + one matmul on
    /// channels-last features (`conv.rs`; at inference, tile by tile with
    /// the bias and GELU fused in, `dense.rs`); elsewhere as candle's `conv2d`.
    /// The two are the same function of the same weights (tested).
    pub fn stem_patches(&self, pixels: &Tensor) -> Result<Tensor> {
        if self.stem.is_empty() || !fused::fused_here(pixels) {
            return self.stem_patches_candle(pixels);
        }
        patchify_nhwc(&self.stem_features(pixels)?, self.patch)
    }

    /// The conv stem on the CPU in f32: (B, 3, S, S) -> channels-last
    /// features (B, S', S', C).
    fn stem_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let mut features = pixels.permute((0, 2, 3, 1))?; // (B, S, S, 3), a view
        for conv in &self.stem {
            let (w, b) = (conv.weight(), conv.bias());
            features = match b {
                // Not training: one pass of im2col tiles, gemm, bias and GELU.
                Some(b) if dense::inference_here(&features, w) => {
                    dense::conv2d_nhwc(&features, w, b, STEM, Act::Gelu)?
                }
                _ => fused::gelu(&conv2d_nhwc(&features, w, b, STEM)?)?,
            };
        }
        Ok(features)
    }

    /// The same as [`Self::stem_patches`], always through candle's `conv2d`.
    pub fn stem_patches_candle(&self, pixels: &Tensor) -> Result<Tensor> {
        let mut features = pixels.clone();
        for conv in &self.stem {
            features = fused::gelu(&features.apply(conv)?)?; // (B, C, S/2, S/2)
        }
        patchify(&features, self.patch)
    }

    /// Pixels to the tokens the blocks read: conv stem, patches, linear
    /// projection, plus the position codes. (B, 3, S, S) -> (B, N, C).
    fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        let proj = &self.patch_proj;
        if let Some(bias) = proj.bias() {
            if !self.stem.is_empty() && dense::inference_here(pixels, proj.weight()) {
                // Cutting P × P patches and projecting each is a convolution
                // with a P × P kernel and stride P, so at inference it runs
                // as one more pass of im2col tiles: no patchified copy of the
                // stem's features is ever made.
                let features = self.stem_features(pixels)?; // (B, S', S', C)
                let (hidden, _) = proj.weight().dims2()?;
                let c = features.dim(3)?;
                let w = proj.weight().reshape((hidden, c, self.patch, self.patch))?;
                let g = ConvGeometry {
                    kernel: self.patch,
                    stride: self.patch,
                    padding: 0,
                };
                let tokens = dense::conv2d_nhwc(&features, &w, bias, g, Act::None)?;
                let (b, gh, gw, _) = tokens.dims4()?;
                return tokens
                    .reshape((b, gh * gw, hidden))?
                    .broadcast_add(&self.position);
            }
        }
        let patches = self.stem_patches(pixels)?; // (B, N, C·p·p)
        dense::linear(&patches, proj, Act::None)?.broadcast_add(&self.position)
    }

    /// The position code of every patch, (N, C).
    pub fn position(&self) -> &Tensor {
        &self.position
    }

    /// Whether the whole encoder can run as the per-image kernel on
    /// `pixels`: at inference, with every layer biased (as `Vla` builds them).
    fn kernel_applies(&self, pixels: &Tensor) -> bool {
        let biased =
            self.patch_proj.bias().is_some() && self.stem.iter().all(|c| c.bias().is_some());
        biased && encoder_kernel::applies(pixels, self.patch_proj.weight())
    }

    /// The weights as the kernel reads them, copied on first use.
    fn kernel_weights(&self) -> Result<&std::sync::Arc<EncoderWeights>> {
        if let Some(w) = self.kernel.get() {
            return Ok(w);
        }
        let conv = |w: &Tensor, b: Option<&Tensor>, g: ConvGeometry, act: Act| match b {
            Some(b) => ConvLayer::new(w, b, g, act),
            None => candle::bail!("encoder kernel: a layer without a bias"),
        };
        let stem = self
            .stem
            .iter()
            .map(|c| conv(c.weight(), c.bias(), STEM, Act::Gelu))
            .collect::<Result<_>>()?;
        // The patch projection (C, C'·p·p) is a p × p convolution of stride p.
        let (hidden, patch_dim) = self.patch_proj.weight().dims2()?;
        let channels = patch_dim / (self.patch * self.patch);
        let patch = conv(
            &self
                .patch_proj
                .weight()
                .reshape((hidden, channels, self.patch, self.patch))?,
            self.patch_proj.bias(),
            ConvGeometry {
                kernel: self.patch,
                stride: self.patch,
                padding: 0,
            },
            Act::None,
        )?;
        let blocks = self
            .blocks
            .iter()
            .map(Block::kernel_weights)
            .collect::<Result<_>>()?;
        let weights = EncoderWeights::new(stem, patch, &self.position, blocks, self.norm.parts())?;
        Ok(self.kernel.get_or_init(|| std::sync::Arc::new(weights)))
    }

    /// `pixels` (B, 3, S, S) -> patch tokens (B, N, C), plus each block's
    /// self-attention weights (B, H, N, N) when `capture` is set.
    pub fn forward(
        &self,
        pixels: &Tensor,
        capture: bool,
        train: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        if !capture && !train && self.kernel_applies(pixels) {
            // The whole encoder, one image per task.
            return Ok((
                encoder_kernel::forward(pixels, self.kernel_weights()?)?,
                vec![],
            ));
        }
        self.forward_layers(pixels, capture, train)
    }

    /// [`Self::forward`] layer by layer over the whole batch (candle's ops
    /// when training, `dense.rs` kernels at inference on the CPU).
    fn forward_layers(
        &self,
        pixels: &Tensor,
        capture: bool,
        train: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut xs = self.embed(pixels)?;
        let mut maps = Vec::new();
        for block in &self.blocks {
            if capture {
                let (next, weights) = block.forward(&xs, None, train)?;
                xs = next;
                maps.push(weights);
            } else {
                xs = block.forward_unmapped(&xs, train)?;
            }
        }
        Ok((self.norm.forward(&xs, train)?, maps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fused_inference_path_matches_the_trainable_one() {
        let dev = Device::Cpu;
        let mut cfg = Config::tiny();
        cfg.image_size = 64;
        cfg.hidden_size = 32;
        cfg.intermediate_size = 64;
        let (trainable, loaded) = trainable_and_loaded(&cfg);
        // The layer-by-layer path (`dense.rs` at inference), called directly:
        // `forward` may pick the per-image kernel, tested below.
        let px = Tensor::randn(0f32, 1., (1, 3, 64, 64), &dev).unwrap();
        let w = |e: &VisionEncoder| e.stem[0].weight().clone();
        assert!(!dense::inference_here(&px, &w(&trainable)));
        assert!(dense::inference_here(&px, &w(&loaded)));
        let (want, _) = trainable.forward(&px, false, false).unwrap();
        let (got, _) = loaded.forward_layers(&px, false, false).unwrap();
        let diff = crate::model::fused::tests::max_diff(&got, &want);
        assert!(diff < 1e-4, "fused inference path is {diff} off");
        // Capturing the maps takes the unfused attention: the same states.
        let (mapped, maps) = loaded.forward(&px, true, false).unwrap();
        assert_eq!(maps.len(), cfg.vision_layers);
        assert!(crate::model::fused::tests::max_diff(&mapped, &got) < 1e-4);
    }

    /// A small encoder as training has it (`Var`s) and the same weights as a
    /// loaded checkpoint has them (plain tensors).
    fn trainable_and_loaded(cfg: &Config) -> (VisionEncoder, VisionEncoder) {
        use candle_nn::VarMap;
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let vb = crate::model::init::SeededInit::var_builder(&vars, 7, &dev);
        let trainable = VisionEncoder::new(cfg, vb).unwrap();
        let frozen: std::collections::HashMap<String, Tensor> = vars
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let vb = VarBuilder::from_tensors(frozen, candle::DType::F32, &dev);
        (trainable, VisionEncoder::new(cfg, vb).unwrap())
    }

    #[test]
    fn the_per_image_kernel_matches_the_trainable_encoder() {
        // With the conv stem, and without it (patches cut from the pixels).
        for stem in [vec![8, 16], vec![]] {
            let mut cfg = Config::tiny();
            cfg.image_size = 64;
            cfg.hidden_size = 32;
            cfg.intermediate_size = 48;
            cfg.conv_stem = stem.clone();
            let (trainable, loaded) = trainable_and_loaded(&cfg);
            let px = Tensor::randn(0f32, 1., (3, 3, 64, 64), &Device::Cpu).unwrap();
            let (want, _) = trainable.forward(&px, false, false).unwrap();
            // The kernel itself, whatever the thread count would choose.
            let got = encoder_kernel::forward(&px, loaded.kernel_weights().unwrap()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = crate::model::fused::tests::max_diff(&got, &want);
            assert!(diff < 1e-4, "stem {stem:?}: the kernel is {diff} off");
            // And through `forward`, which picks it for a batch this size
            // when there are at most 6 threads.
            let (through, _) = loaded.forward(&px, false, false).unwrap();
            assert!(crate::model::fused::tests::max_diff(&through, &want) < 1e-4);
        }
    }

    #[test]
    fn the_per_image_kernel_is_not_used_for_training_or_maps() {
        let mut cfg = Config::tiny();
        cfg.image_size = 64;
        cfg.hidden_size = 32;
        let (trainable, loaded) = trainable_and_loaded(&cfg);
        let px = Tensor::randn(0f32, 1., (4, 3, 64, 64), &Device::Cpu).unwrap();
        assert!(
            !trainable.kernel_applies(&px),
            "a Var must keep its gradient"
        );
        // One image on more than two threads: the rows are split instead.
        let one = px.narrow(0, 0, 1).unwrap();
        assert_eq!(
            loaded.kernel_applies(&one),
            rayon::current_num_threads() <= 2
        );
        // Asking for the maps takes the block-by-block path.
        let (_, maps) = loaded.forward(&px, true, false).unwrap();
        assert_eq!(maps.len(), cfg.vision_layers);
    }

    #[test]
    fn patchify_keeps_each_patch_together() {
        // A 1x3x4x4 image whose pixel value encodes (channel, row, column).
        let v: Vec<f32> = (0..3)
            .flat_map(|c| (0..16).map(move |i| (c * 100 + i) as f32))
            .collect();
        let img = Tensor::from_vec(v, (1, 3, 4, 4), &Device::Cpu).unwrap();
        let p = patchify(&img, 2).unwrap();
        assert_eq!(p.dims(), &[1, 4, 12]);
        let p = p.to_vec3::<f32>().unwrap();
        // Patch 1 is the top-right 2x2 block: rows 0-1, columns 2-3 of channel 0.
        assert_eq!(&p[0][1][..4], &[2., 3., 6., 7.]);
        assert_eq!(&p[0][1][4..6], &[102., 103.]);
        // Patch 2 is the bottom-left block.
        assert_eq!(&p[0][2][..4], &[8., 9., 12., 13.]);
    }

    #[test]
    fn patchify_nhwc_matches_patchify() {
        let v: Vec<f32> = (0..2 * 5 * 8 * 8).map(|i| i as f32).collect();
        let img = Tensor::from_vec(v, (2, 5, 8, 8), &Device::Cpu).unwrap();
        let nchw = patchify(&img, 4).unwrap();
        let nhwc =
            patchify_nhwc(&img.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap(), 4).unwrap();
        assert_eq!(
            nchw.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            nhwc.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn the_cpu_stem_matches_candle_conv2d() {
        let cfg = Config::tiny();
        assert!(!cfg.conv_stem.is_empty());
        let vars = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, candle::DType::F32, &Device::Cpu);
        let enc = VisionEncoder::new(&cfg, vb).unwrap();
        let s = cfg.image_size;
        let pixels = Tensor::randn(0f32, 1., (2, 3, s, s), &Device::Cpu).unwrap();
        let ours = enc.stem_patches(&pixels).unwrap();
        let candle = enc.stem_patches_candle(&pixels).unwrap();
        assert_eq!(ours.dims(), &[2, cfg.num_patches(), candle.dim(2).unwrap()]);
        let diff = crate::model::fused::tests::max_diff(&ours, &candle);
        assert!(diff < 1e-4, "{diff}");
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
}
