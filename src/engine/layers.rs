//! The engine's layers as plain f32 buffers, copied once from a loaded
//! model: a linear layer, a layer norm and a convolution (im2col tiles), each
//! applied to one image on the calling thread with the gemm of `gemm.rs`.

use candle::{Result, Tensor};

use super::gemm::{self, Act};
use super::im2col::{im2col_row, ConvGeometry};
use super::simd;
use crate::model::block::LayerNorm;
use crate::model::linear::Linear;
use crate::model::vision::Conv;

/// One row-major f32 matrix, copied out of a loaded tensor.
pub(crate) fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(candle::DType::F32)?.to_vec1()
}

/// A linear layer's weight (N, K) and bias (N), as plain vectors.
#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) n: usize,
    pub(crate) k: usize,
}

impl Layer {
    /// Stacks the layers' output rows: `[W₁; W₂; …]`, `[b₁; b₂; …]`.
    pub(crate) fn stack(layers: &[&Linear]) -> Result<Self> {
        let (mut w, mut b, mut n) = (Vec::new(), Vec::new(), 0);
        let k = match layers.first() {
            Some(l) => l.weight().dim(1)?,
            None => candle::bail!("encoder kernel: no layers to stack"),
        };
        for l in layers {
            let (ln, lk) = l.weight().dims2()?;
            let bias = l.bias();
            if lk != k || bias.elem_count() != ln {
                candle::bail!("encoder kernel: layers of different input sizes");
            }
            w.extend(host(l.weight())?);
            b.extend(host(bias)?);
            n += ln;
        }
        Ok(Self { w, b, n, k })
    }

    /// `dst (R, n) = src (R, k) · Wᵀ + b` on this thread; with `accumulate`,
    /// `dst +=` instead (a residual connection added inside the gemm).
    pub(crate) fn apply(&self, dst: &mut [f32], src: &[f32], accumulate: bool) {
        let rows = src.len() / self.k;
        let dst = &mut dst[..rows * self.n];
        gemm::gemm_tile(dst, src, &self.w, (rows, self.k, self.n), accumulate);
        gemm::epilogue(dst, &self.b, Act::None);
    }
}

/// A layer norm's scale and shift.
#[derive(Debug)]
pub(crate) struct Norm {
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) eps: f32,
}

impl Norm {
    pub(crate) fn new(norm: &LayerNorm) -> Result<Self> {
        Ok(Self {
            w: host(&norm.weight)?,
            b: host(&norm.bias)?,
            eps: norm.eps as f32,
        })
    }

    /// `dst` row = LN(`src` row), row by row.
    pub(crate) fn apply(&self, dst: &mut [f32], src: &[f32]) {
        let c = self.w.len();
        for (y, x) in dst.chunks_mut(c).zip(src.chunks(c)) {
            let (mean, r) = simd::row_stats(x, self.eps);
            for (((y, x), w), b) in y.iter_mut().zip(x).zip(&self.w).zip(&self.b) {
                *y = (x - mean) * r * w + b;
            }
        }
    }
}

/// One convolution: weights (C_out, k·k·C) with each row in im2col order
/// (kernel row, kernel column, channel), bias, geometry and activation.
#[derive(Debug)]
pub(crate) struct ConvLayer {
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) geometry: ConvGeometry,
    pub(crate) act: Act,
    pub(crate) c_in: usize,
}

impl ConvLayer {
    /// From candle's layout: weight (C_out, C, k, k), bias (C_out).
    pub(crate) fn new(conv: &Conv, act: Act) -> Result<Self> {
        let (weight, bias, geometry) = (&conv.weight, &conv.bias, conv.geometry);
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        let k = geometry.kernel;
        if (kh, kw) != (k, k) || bias.elem_count() != c_out {
            candle::bail!(
                "encoder kernel: conv weights {:?}, bias {:?}",
                weight.dims(),
                bias.dims()
            );
        }
        Ok(Self {
            w: host(&weight.permute((0, 2, 3, 1))?.contiguous()?)?,
            b: host(bias)?,
            geometry,
            act,
            c_in,
        })
    }

    pub(crate) fn c_out(&self) -> usize {
        self.b.len()
    }

    /// One image: `x` (H, W, C) read with `strides` -> `dst` (OH, OW, C_out),
    /// im2col tiles of a few output rows in `cols`.
    pub(crate) fn apply(
        &self,
        x: &[f32],
        strides: [usize; 3],
        (h, w): (usize, usize),
        dst: &mut [f32],
        cols: &mut [f32],
    ) {
        let g = self.geometry;
        let (c, c_out) = (self.c_in, self.c_out());
        let (oh, ow, row) = (g.out_size(h), g.out_size(w), g.kernel * g.kernel * c);
        let [sh, sw, sc] = strides;
        let tile = (gemm::CONV_TILE_VALUES / (ow * row).max(1)).clamp(1, oh.max(1));
        for (t, dst) in dst[..oh * ow * c_out]
            .chunks_mut(tile * ow * c_out)
            .enumerate()
        {
            let rows = dst.len() / (ow * c_out);
            let cols = &mut cols[..rows * ow * row];
            for (i, cols) in cols.chunks_mut(ow * row).enumerate() {
                im2col_row(x, [0, sh, sw, sc], (h, w, c), g, 0, t * tile + i, cols);
            }
            gemm::gemm_tile(dst, cols, &self.w, (rows * ow, row, c_out), false);
            gemm::epilogue(dst, &self.b, self.act);
        }
    }
}
