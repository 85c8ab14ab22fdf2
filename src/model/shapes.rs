//! The shape reader (`shape_reader_layers`): what shape each patch shows,
//! read from the image's brightness alone.
//!
//! pixels (I, 3, S, S) -> brightness (I, 1, S, S) -> a small ViT of its own
//! -> one linear layer -> shape logits (I, N, PATCH_SHAPES)
//!
//! The patch head reads colour and shape from the same tokens, and those
//! tokens learn whatever tells the training pictures apart. Where training
//! never showed a ball in purple, "purple and round" is not a ball to them:
//! the head calls most purple balls bowls, the purple shape it has seen. The
//! reader cannot make that mistake, because it never sees a hue: a purple
//! ball is to it a darkish ball, like the red and blue ones it learned on.
//! With it, the fusion head's memory (`fusion_reads_labels`) takes each
//! patch's colour from the patch head and its shape from the reader.

use candle::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::{linear, Linear};
use super::vision::VisionEncoder;
use super::Config;
use crate::grid::PATCH_SHAPES;

/// Rec. 601 luma weights of red, green and blue.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

#[derive(Debug, Clone)]
pub struct ShapeReader {
    pub(crate) encoder: VisionEncoder,
    head: Linear,
}

impl ShapeReader {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            encoder: VisionEncoder::reading(1, cfg.shape_reader_layers, cfg, vb.pp("encoder"))?,
            head: linear(cfg.hidden_size, PATCH_SHAPES, vb.pp("head"))?,
        })
    }

    /// Normalised pixels (I, 3, S, S) -> shape logits (I, N, PATCH_SHAPES).
    pub fn forward(&self, pixels: &Tensor, cfg: &Config) -> Result<Tensor> {
        self.head
            .forward(&self.encoder.forward(&brightness(pixels, cfg)?)?)
    }
}

/// The luma of normalised pixels, normalised as one channel of mean 0.5 and
/// standard deviation 0.25: (I, 3, S, S) -> (I, 1, S, S). Each pixel is
/// first un-normalised with the config's own mean and deviation, so that two
/// pictures of the same brightness give the same channel whatever their
/// hues.
pub fn brightness(pixels: &Tensor, cfg: &Config) -> Result<Tensor> {
    let (mut scale, mut offset) = ([0f32; 3], 0f32);
    for c in 0..3 {
        // luma = Σ w_c (p_c·std_c + mean_c); the channel is (luma − 0.5) / 0.25.
        scale[c] = LUMA[c] * cfg.image_std[c] / 0.25;
        offset += LUMA[c] * cfg.image_mean[c];
    }
    let scale = Tensor::new(&scale, pixels.device())?
        .to_dtype(pixels.dtype())?
        .reshape((1, 3, 1, 1))?;
    pixels
        .broadcast_mul(&scale)?
        .sum_keepdim(1)?
        .affine(1.0, ((offset - 0.5) / 0.25) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn brightness_is_the_luma_of_the_picture_however_it_was_normalised() {
        let mut cfg = Config::tiny();
        cfg.image_mean = [0.4, 0.5, 0.6];
        cfg.image_std = [0.2, 0.25, 0.3];
        // One pixel of (r, g, b) = (1.0, 0.5, 0.0), normalised by the config.
        let rgb = [1.0f32, 0.5, 0.0];
        let px: Vec<f32> = (0..3)
            .map(|c| (rgb[c] - cfg.image_mean[c]) / cfg.image_std[c])
            .collect();
        let px = Tensor::from_vec(px, (1, 3, 1, 1), &Device::Cpu).unwrap();
        let got = brightness(&px, &cfg)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let luma = 0.299 * 1.0 + 0.587 * 0.5;
        assert_eq!(got.len(), 1);
        assert!((got[0] - (luma - 0.5) / 0.25).abs() < 1e-5, "{got:?}");
    }
}
