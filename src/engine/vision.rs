//! The vision encoder at inference on the CPU, one image per task.
//!
//! Run layer by layer, every layer is its own pass over the whole batch. At
//! batch 32 the first
//! stem convolution alone writes a 26 MB tensor that the next layer reads
//! back from memory; each encoder block writes eleven batch-sized tensors
//! (two LNs; Q, K, V; the attention output and its projection; the MLP's
//! hidden layer and output; two residual sums); the threads meet
//! at a barrier after each pass; and each tensor is a fresh allocation that
//! has to be faulted in and zeroed.
//!
//! Here the loop is turned inside out. A task takes one image and runs it
//! through the whole encoder before it moves on to the next:
//!
//! ```text
//! pixels (3, S, S) ─conv, GELU─> … ─conv, GELU─> features (S', S', C')
//!   ─patch conv (P × P, stride P)─> + position ─> x (N, C)
//! per block:
//!   x ─LN─> h ─gemm─> q k v (N, 3C) ─per head: q kᵀ/√D, softmax, · v─> a (N, C)
//!   x += a Woᵀ + bo                        (the gemm adds into x: no residual pass)
//!   x ─LN─> h ─gemm, + b1, GELU─> u (N, I) ─gemm─> x += u W2ᵀ + b2
//! final LN ─> out (N, C)
//! ```
//!
//! An image's buffers (about 2 MB at 160 px) are reused from image to image
//! and stay in the cache, and the threads never wait for each other. It is
//! the same arithmetic as the reference [`VisionEncoder::forward`] (tested
//! below), so it is used only where nothing needs the attention maps or a
//! gradient (`Path::CpuEngine`). A batch keeps min(B, threads) threads busy.

use std::sync::Arc;

use candle::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{self, Act};
use super::layers::{host, ConvLayer, Layer, Norm};
use super::simd;
use crate::model::block::Block;
use crate::model::vision::VisionEncoder;
use crate::model::ScoreFn;

/// One pre-LN encoder block's weights, with Q, K and V stacked into one
/// (3C, C) projection.
#[derive(Debug)]
struct BlockWeights {
    norm1: Norm,
    qkv: Layer,
    out: Layer,
    norm2: Norm,
    fc1: Layer,
    fc2: Layer,
    heads: usize,
}

impl BlockWeights {
    /// Copies a block's loaded weights, with Q, K and V stacked.
    fn compile(block: &Block) -> Result<Self> {
        let attn = &block.attn;
        if attn.score_fn() != ScoreFn::ScaledDot {
            candle::bail!("encoder kernel: scaled dot-product attention only");
        }
        let (q, k, v, o) = (&attn.q_proj, &attn.k_proj, &attn.v_proj, &attn.o_proj);
        let (fc1, fc2) = (&block.mlp.fc1, &block.mlp.fc2);
        let heads = attn.num_heads;
        let [norm1, norm2] = block.norms();
        let qkv = Layer::stack(&[q, k, v])?;
        let c = qkv.k;
        if heads == 0 || c % heads != 0 || qkv.n != 3 * c {
            candle::bail!("encoder kernel: {c} channels do not split into {heads} heads");
        }
        let (out, fc1, fc2) = (
            Layer::stack(&[o])?,
            Layer::stack(&[fc1])?,
            Layer::stack(&[fc2])?,
        );
        if (out.k, out.n, fc1.k, fc2.k, fc2.n) != (c, c, c, fc1.n, c) {
            candle::bail!("encoder kernel: the block's layers do not chain");
        }
        let (norm1, norm2) = (Norm::new(norm1)?, Norm::new(norm2)?);
        if [&norm1, &norm2]
            .iter()
            .any(|n| n.w.len() != c || n.b.len() != c)
        {
            candle::bail!("encoder kernel: layer norms not {c} wide");
        }
        Ok(Self {
            norm1,
            qkv,
            out,
            norm2,
            fc1,
            fc2,
            heads,
        })
    }

    fn channels(&self) -> usize {
        self.qkv.k
    }
}

/// The whole encoder: the stem's convolutions, the patch projection as a
/// stride-P convolution, the position codes, every block, the final norm.
#[derive(Debug)]
pub struct EncoderWeights {
    stem: Vec<ConvLayer>,
    patch: ConvLayer,
    position: Vec<f32>,
    blocks: Vec<BlockWeights>,
    norm: Norm,
}

impl EncoderWeights {
    /// Copies a loaded encoder's weights into the kernel's layout.
    pub fn compile(encoder: &VisionEncoder) -> Result<Self> {
        let stem = encoder
            .stem
            .iter()
            .map(|c| ConvLayer::new(c, Act::Gelu))
            .collect::<Result<Vec<_>>>()?;
        let patch = ConvLayer::new(&encoder.patch_embed, Act::None)?;
        let blocks = encoder
            .blocks
            .iter()
            .map(BlockWeights::compile)
            .collect::<Result<Vec<_>>>()?;
        let position = &encoder.position;
        let norm = Norm::new(&encoder.norm)?;
        let c = norm.w.len();
        if norm.b.len() != c || !position.elem_count().is_multiple_of(c.max(1)) {
            candle::bail!("encoder kernel: final norm or position codes not {c} wide");
        }
        let mut channels = 3;
        for layer in stem.iter().chain([&patch]) {
            if layer.c_in != channels {
                candle::bail!(
                    "encoder kernel: a conv of {} inputs after {channels}",
                    layer.c_in
                );
            }
            channels = layer.c_out();
        }
        if channels != c || blocks.iter().any(|b| b.channels() != c) {
            candle::bail!("encoder kernel: layers of different widths");
        }
        Ok(Self {
            stem,
            patch,
            position: host(position)?,
            blocks,
            norm,
        })
    }

    /// Side of each feature map: the image, then after each stem layer.
    fn sides(&self, image: usize) -> Vec<usize> {
        let mut sides = vec![image];
        for layer in &self.stem {
            sides.push(layer.geometry.out_size(*sides.last().unwrap_or(&image)));
        }
        sides
    }
}

/// `pixels` (B, 3, S, S) through the whole encoder: tokens (B, N, C).
pub fn forward(pixels: &Tensor, weights: &Arc<EncoderWeights>) -> Result<Tensor> {
    let (_, c, h, w) = pixels.dims4()?;
    if c != 3 || h != w {
        candle::bail!(
            "encoder kernel: want square RGB images, got {:?}",
            pixels.dims()
        );
    }
    let n = weights.position.len() / weights.norm.w.len();
    let side = *weights.sides(h).last().unwrap_or(&h);
    let grid = weights.patch.geometry.out_size(side);
    if grid * grid != n {
        candle::bail!("encoder kernel: {h} px images give {grid}² patches, not {n}");
    }
    pixels
        .contiguous()?
        .apply_op1_no_bwd(&EncoderOp(weights.clone()))
}

struct EncoderOp(Arc<EncoderWeights>);

/// One task's buffers, reused from image to image.
struct Scratch {
    /// Each stem layer's output, channels-last.
    features: Vec<Vec<f32>>,
    /// An im2col tile.
    cols: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    scores: Vec<f32>,
    hidden: Vec<f32>,
}

impl Scratch {
    fn new(w: &EncoderWeights, side: usize, n: usize) -> Self {
        let c = w.norm.w.len();
        let inner = w.blocks.iter().map(|b| b.fc1.n).max().unwrap_or(0);
        let sides = w.sides(side);
        let one_row = w
            .stem
            .iter()
            .chain([&w.patch])
            .zip(&sides)
            .map(|(l, &s)| {
                let g = l.geometry;
                g.out_size(s) * g.kernel * g.kernel * l.c_in
            })
            .max()
            .unwrap_or(0);
        Self {
            features: w
                .stem
                .iter()
                .zip(&sides[1..])
                .map(|(l, s)| vec![0.0; s * s * l.c_out()])
                .collect(),
            // A tile is CONV_TILE_VALUES, or one output row where that is more.
            cols: vec![0.0; gemm::CONV_TILE_VALUES.max(one_row)],
            h: vec![0.0; n * c],
            qkv: vec![0.0; n * 3 * c],
            att: vec![0.0; n * c],
            scores: vec![0.0; n * n],
            hidden: vec![0.0; n * inner],
        }
    }
}

impl EncoderOp {
    /// One image: `px` (3, S, S) channels-first -> `x` (N, C).
    fn image(&self, px: &[f32], side: usize, x: &mut [f32], s: &mut Scratch) {
        let w = &self.0;
        let n = x.len() / w.norm.w.len();
        // The stem, then the patch projection, each reading the previous
        // output; the pixels are read channels-first through their strides.
        let (mut input, mut strides, mut at) = (px, [side, 1, side * side], side);
        for (layer, out) in w.stem.iter().zip(s.features.iter_mut()) {
            layer.apply(input, strides, (at, at), out, &mut s.cols);
            at = layer.geometry.out_size(at);
            (input, strides) = (out.as_slice(), [at * layer.c_out(), layer.c_out(), 1]);
        }
        w.patch.apply(input, strides, (at, at), x, &mut s.cols);
        for (x, p) in x.iter_mut().zip(&w.position) {
            *x += p;
        }
        for blk in &w.blocks {
            let c = blk.channels();
            let (heads, d) = (blk.heads, c / blk.heads);
            // x += attention(LN(x)) Woᵀ + bo
            blk.norm1.apply(&mut s.h, x);
            blk.qkv.apply(&mut s.qkv, &s.h, false);
            for head in 0..heads {
                head_attention(&s.qkv, &mut s.att, &mut s.scores, n, c, head * d, d);
            }
            blk.out.apply(x, &s.att, true);
            // x += GELU(LN(x) W1ᵀ + b1) W2ᵀ + b2
            blk.norm2.apply(&mut s.h, x);
            let inner = blk.fc1.n;
            let hidden = &mut s.hidden[..n * inner];
            blk.fc1.apply(hidden, &s.h, false);
            simd::gelu_in_place(hidden);
            blk.fc2.apply(x, hidden, true);
        }
        s.h.copy_from_slice(x);
        w.norm.apply(x, &s.h);
    }
}

/// One head of self-attention for one image: from `qkv` (N, 3C), whose
/// row holds q, k and v side by side, the head's columns `col..col + d`
/// of each; its output goes to the same columns of `att` (N, C).
fn head_attention(
    qkv: &[f32],
    att: &mut [f32],
    scores: &mut [f32],
    n: usize,
    c: usize,
    col: usize,
    d: usize,
) {
    assert!(
        qkv.len() == n * 3 * c && att.len() == n * c && scores.len() == n * n && col + d <= c,
        "encoder kernel: attention operands do not fit"
    );
    // SAFETY: q, k and v of the head are the columns col.., c + col.., and
    // 2c + col.. (d wide) of n rows 3c apart in `qkv`, all inside it since
    // col + d ≤ c; the output is d columns of n rows c apart in `att`, a
    // distinct mutable borrow; `scores` is n × n (all asserted above).
    unsafe {
        let p = qkv.as_ptr();
        let heads = [p.add(col), p.add(c + col), p.add(2 * c + col)];
        gemm::head_attention(heads, 3 * c, att.as_mut_ptr().add(col), c, scores, n, d);
    }
}

impl CustomOp1 for EncoderOp {
    fn name(&self) -> &'static str {
        "vision-blocks-per-image"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let px = simd::slice(s, l, self.name())?;
        let (b, _, side, _) = l.shape().dims4()?;
        let c = self.0.norm.w.len();
        let n = self.0.position.len() / c;
        let mut out = vec![0f32; b * n * c];
        out.par_chunks_mut(n * c)
            .zip(px.par_chunks(3 * side * side))
            .for_each_init(
                || Scratch::new(&self.0, side, n),
                |scratch, (x, px)| self.image(px, side, x, scratch),
            );
        Ok((CpuStorage::F32(out), Shape::from((b, n, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::max_diff;
    use crate::model::Config;
    use candle::Device;

    #[test]
    fn the_per_image_kernel_matches_the_reference_encoder() {
        // With the conv stem, with its context convolutions too, and
        // without a stem (patches cut from the pixels).
        for (stem, context) in [(vec![8, 16], 0), (vec![8, 16], 2), (vec![], 0)] {
            let mut cfg = Config::tiny();
            cfg.image_size = 64;
            cfg.hidden_size = 32;
            cfg.intermediate_size = 48;
            cfg.conv_stem = stem.clone();
            cfg.stem_context = context;
            let vars = candle_nn::VarMap::new();
            let vb = crate::train::init::SeededInit::var_builder(&vars, 7, &Device::Cpu);
            let encoder = VisionEncoder::new(&cfg, vb).unwrap();
            let px = Tensor::randn(0f32, 1., (3, 3, 64, 64), &Device::Cpu).unwrap();
            let want = encoder.forward(&px).unwrap();
            let got = forward(&px, &Arc::new(EncoderWeights::compile(&encoder).unwrap())).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = max_diff(&got, &want);
            assert!(
                diff < 1e-4,
                "stem {stem:?} + {context}: the kernel is {diff} off"
            );
        }
    }
}
