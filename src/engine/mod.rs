//! The fast paths, kept apart from the model a learner reads (`src/model`).
//!
//! - **Inference on the CPU** ([`Engine`]): compiled once from a loaded
//!   model. It runs the whole vision encoder one image per task
//!   ([`vision`]), built from one tiled gemm with its bias and GELU
//!   ([`gemm`]), one convolution and one layer norm ([`layers`]), and one
//!   attention kernel ([`gemm::head_attention`]).
//! - **Training** ([`ops`], [`linear_op`], [`im2col`]): softmax, GELU,
//!   layer norm, the linear layer and the convolution as fused CPU ops
//!   *with* backward passes (candle 0.11's fused softmax and layer norm have
//!   none). The reference model calls them; off the CPU they fall back to
//!   candle's own ops.
//! - **Attention for long sequences** ([`long_attention`], with its CPU
//!   kernel in [`long_attention_cpu`]): tiled, flash-style attention and the
//!   device kernels, compared by `bench --attention-sweep`.
//!
//! One policy, [`Path::choose`], decides which path a run takes. It is asked
//! once per run, where the pipeline runs the model, and printed in the run
//! header and in `bench`.

pub mod gemm;
pub mod im2col;
pub mod layers;
pub mod linear_op;
pub mod long_attention;
pub mod long_attention_cpu;
pub mod ops;
pub mod simd;
pub mod vision;

use std::sync::Arc;

use candle::{DType, Device, Result, Tensor};

use crate::model::vision::VisionEncoder;

/// Which code computes a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// The model as written, in candle ops (with the fused training ops on
    /// the CPU): training, and every run that wants the attention maps.
    Reference,
    /// CPU inference in f32: the vision encoder runs as the compiled
    /// per-image kernel; text and fusion as written.
    CpuEngine,
    /// The model as written, on a GPU, through candle's device kernels.
    Device,
}

impl Path {
    /// The one policy. `maps`: whether the run wants every attention weight
    /// (the engine computes them but does not keep them).
    pub fn choose(device: &Device, dtype: DType, maps: bool) -> Path {
        if !device.is_cpu() {
            Path::Device
        } else if maps || dtype != DType::F32 {
            Path::Reference
        } else {
            Path::CpuEngine
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Path::Reference => "reference",
            Path::CpuEngine => "cpu-engine",
            Path::Device => "device",
        }
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The inference engine, compiled once from a loaded model's weights.
#[derive(Debug, Clone)]
pub struct Engine {
    vision: Arc<vision::EncoderWeights>,
}

impl Engine {
    /// Copies the vision encoder's weights into the per-image kernel's
    /// layout. `None` where the engine cannot run them: off the CPU, or not
    /// in f32.
    pub fn compile(encoder: &VisionEncoder, device: &Device, dtype: DType) -> Result<Option<Self>> {
        if Path::choose(device, dtype, false) != Path::CpuEngine {
            return Ok(None);
        }
        Ok(Some(Self {
            vision: Arc::new(vision::EncoderWeights::compile(encoder)?),
        }))
    }

    /// `pixels` (B, 3, S, S) -> patch tokens (B, N, C), one image per task.
    pub fn encode_image(&self, pixels: &Tensor) -> Result<Tensor> {
        vision::forward(pixels, &self.vision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy() {
        let cpu = Device::Cpu;
        assert_eq!(Path::choose(&cpu, DType::F32, false), Path::CpuEngine);
        assert_eq!(Path::choose(&cpu, DType::F32, true), Path::Reference);
        assert_eq!(Path::choose(&cpu, DType::F16, false), Path::Reference);
        assert_eq!(Path::CpuEngine.to_string(), "cpu-engine");
    }
}
