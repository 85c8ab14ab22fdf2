//! The vision encoder's convolutions (the stem, and the patch embedding as a
//! stride-P convolution) on the CPU as im2col + one matrix multiply, with a
//! backward pass for training.
//!
//! A convolution with a k × k kernel is a matrix multiply in disguise: copy
//! the k·k·C input values under each output pixel into one row ("im2col"),
//! and every output channel is that row times one column of weights. So
//!
//! ```text
//! input (B, H, W, C) --im2col--> rows (B·OH·OW, k·k·C) x W (k·k·C, C_out) --> (B, OH, OW, C_out)
//! ```
//!
//! candle 0.11's CPU `conv2d` does the same per tile of 512 output pixels,
//! after a single-threaded copy of the whole input from NCHW to NHWC, and
//! its backward pass goes through a transposed convolution. Here the copy is
//! the im2col itself, parallel over output rows and reading any strided
//! input (so NCHW pixels need no copy first), the multiply is one large
//! multi-threaded gemm, and the backward of im2col is the matching
//! scatter-add ("col2im"). Activations stay channels-last (NHWC) between the
//! stem's layers. The weights keep candle's `(C_out, C_in, k, k)` layout, so
//! checkpoints are the same either way; off the CPU, or for dtypes other
//! than f32, [`conv2d_nhwc`] uses candle's `conv2d`.

use candle::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::simd::written;

/// Geometry of one square convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvGeometry {
    pub fn out_size(&self, size: usize) -> usize {
        (size + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// The input coordinate that kernel tap `k` of output coordinate `o`
    /// reads, or `None` where it falls in the zero padding.
    #[inline]
    fn input_at(&self, o: usize, k: usize, size: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.padding)
            .filter(|&i| i < size)
    }
}

/// im2col over a channels-last view (B, H, W, C), any strides:
/// -> (B, OH, OW, k·k·C), each row ordered (kernel row, kernel column, channel).
struct Im2Col(ConvGeometry);

/// The backward of [`Im2Col`]: scatter-add rows (B, OH, OW, k·k·C) back onto
/// a contiguous (B, H, W, C) input.
struct Col2Im {
    geometry: ConvGeometry,
    height: usize,
    width: usize,
}

/// The im2col rows of output row `oy` of image `bi`: `dst` (OW, k·k·C),
/// every value written (the taps that fall in the padding get 0), so `dst`
/// need not be zeroed first. `x` is the input from its start offset, with
/// `strides` for (B, H, W, C).
pub(crate) fn im2col_row(
    x: &[f32],
    strides: [usize; 4],
    (h, w, c): (usize, usize, usize),
    g: ConvGeometry,
    bi: usize,
    oy: usize,
    dst: &mut [f32],
) {
    let [sb, sh, sw, sc] = strides;
    let (ow, k) = (g.out_size(w), g.kernel);
    let row = k * k * c;
    for ky in 0..k {
        let iy = g.input_at(oy, ky, h);
        for ox in 0..ow {
            for kx in 0..k {
                let at = ox * row + (ky * k + kx) * c;
                let dst = &mut dst[at..at + c];
                let (Some(iy), Some(ix)) = (iy, g.input_at(ox, kx, w)) else {
                    dst.fill(0.0);
                    continue;
                };
                let src = bi * sb + iy * sh + ix * sw;
                if sc == 1 {
                    dst.copy_from_slice(&x[src..src + c]);
                } else {
                    for (ci, d) in dst.iter_mut().enumerate() {
                        *d = x[src + ci * sc];
                    }
                }
            }
        }
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(x) = s else {
            candle::bail!("im2col: f32 only");
        };
        let &[b, h, w, c] = l.dims() else {
            candle::bail!("im2col: want (B, H, W, C), got {:?}", l.dims());
        };
        let &[sb, sh, sw, sc] = l.stride() else {
            unreachable!("four dims have four strides")
        };
        let x = &x[l.start_offset()..];
        let g = self.0;
        let (oh, ow) = (g.out_size(h), g.out_size(w));
        let row = g.kernel * g.kernel * c;
        // One chunk per output row of one image: (OW, k·k·C) values.
        let out = written(b * oh * ow * row, |out| {
            out.par_chunks_mut(ow * row)
                .enumerate()
                .for_each(|(by, dst)| {
                    im2col_row(x, [sb, sh, sw, sc], (h, w, c), g, by / oh, by % oh, dst)
                })
        });
        Ok((CpuStorage::F32(out), Shape::from((b, oh, ow, row))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, h, w, _) = arg.dims4()?;
        let op = Col2Im {
            geometry: self.0,
            height: h,
            width: w,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(g) = s else {
            candle::bail!("col2im: f32 only");
        };
        let Some((start, end)) = l.contiguous_offsets() else {
            candle::bail!("col2im: the gradient must be contiguous");
        };
        let g = &g[start..end];
        let &[b, oh, ow, row] = l.dims() else {
            candle::bail!("col2im: want (B, OH, OW, k·k·C), got {:?}", l.dims());
        };
        let geo = self.geometry;
        let (h, w, k) = (self.height, self.width, geo.kernel);
        let c = row / (k * k);
        let mut dx = vec![0f32; b * h * w * c];
        // One chunk per image: overlapping kernel windows add into the same
        // input pixel, so images are the unit of parallel work.
        dx.par_chunks_mut(h * w * c)
            .zip(g.par_chunks(oh * ow * row))
            .for_each(|(dx, g)| {
                for oy in 0..oh {
                    for ky in 0..k {
                        let Some(iy) = geo.input_at(oy, ky, h) else {
                            continue;
                        };
                        for ox in 0..ow {
                            for kx in 0..k {
                                let Some(ix) = geo.input_at(ox, kx, w) else {
                                    continue;
                                };
                                let src = (oy * ow + ox) * row + (ky * k + kx) * c;
                                let dst = (iy * w + ix) * c;
                                for (d, s) in dx[dst..dst + c].iter_mut().zip(&g[src..src + c]) {
                                    *d += s;
                                }
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from((b, h, w, c))))
    }
}

/// One convolution on a channels-last input: `x` (B, H, W, C_in), any
/// strides; `weight` (C_out, C_in, k, k) as candle stores it; `bias` (C_out).
/// Returns (B, OH, OW, C_out), contiguous. Differentiable in all three.
pub fn conv2d_nhwc(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geometry: ConvGeometry,
) -> Result<Tensor> {
    if !super::ops::fused_here(x) {
        // Off the CPU: candle's conv2d, on an NCHW view and back.
        let nchw = x.permute((0, 3, 1, 2))?.contiguous()?;
        let out = nchw.conv2d(weight, geometry.padding, geometry.stride, 1, 1)?;
        let out = match bias {
            Some(b) => out.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
            None => out,
        };
        return out.permute((0, 2, 3, 1))?.contiguous();
    }
    let (b, height, width, _) = x.dims4()?;
    let (c_out, c_in, k, _) = weight.dims4()?;
    let (oh, ow) = (geometry.out_size(height), geometry.out_size(width));
    // Rows (B, OH, OW, k·k·C_in), and the kernel in the rows' order, as a
    // linear layer's weight: (C_out, C_in, k, k) -> (C_out, k, k, C_in)
    // -> (C_out, k·k·C_in). The fused linear op also sums the bias's
    // gradient over the rows in one pass.
    let rows = x.apply_op1(Im2Col(geometry))?;
    let kernel = weight
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((c_out, k * k * c_in))?;
    let rows = rows.reshape((b * oh * ow, k * k * c_in))?;
    let out = match bias {
        Some(bias) => super::linear_op::linear(&rows, &kernel, bias)?,
        None => rows.matmul(&kernel.t()?)?,
    };
    out.reshape((b, oh, ow, c_out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::tests::{max_diff, randn};
    use candle::Var;
    use candle_nn::{Conv2dConfig, Module};

    /// Both ways of convolving, from NCHW `x`: candle's conv2d and im2col +
    /// matmul on the channels-last view. Both return NCHW.
    fn both(x: &Tensor, w: &Tensor, b: &Tensor, g: ConvGeometry) -> (Tensor, Tensor) {
        let cfg = Conv2dConfig {
            padding: g.padding,
            stride: g.stride,
            ..Default::default()
        };
        let candle = candle_nn::Conv2d::new(w.clone(), Some(b.clone()), cfg)
            .forward(x)
            .unwrap();
        let ours = conv2d_nhwc(&x.permute((0, 2, 3, 1)).unwrap(), w, Some(b), g)
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap();
        (candle, ours)
    }

    #[test]
    fn im2col_matches_candle_conv2d() {
        let geo = |kernel, stride, padding| ConvGeometry {
            kernel,
            stride,
            padding,
        };
        for (g, size, c_in) in [
            (geo(3, 2, 1), 16, 3),
            (geo(3, 2, 1), 9, 5),
            (geo(3, 1, 0), 7, 2),
            (geo(1, 1, 0), 4, 4),
        ] {
            let x = randn(&[2, c_in, size, size], 1);
            let w = randn(&[6, c_in, g.kernel, g.kernel], 2);
            let b = randn(&[6], 3);
            let (candle, ours) = both(&x, &w, &b, g);
            assert_eq!(candle.dims(), ours.dims(), "{g:?}");
            assert!(max_diff(&candle, &ours) < 1e-5, "{g:?}");
        }
    }

    #[test]
    fn an_im2col_row_writes_every_value_and_zeros_in_the_padding() {
        // Its output is not zeroed first, so nothing may be left as it was.
        let g = ConvGeometry {
            kernel: 3,
            stride: 2,
            padding: 1,
        };
        let (h, w, c) = (5, 7, 2);
        let x: Vec<f32> = (1..=h * w * c).map(|v| v as f32).collect();
        let strides = [h * w * c, w * c, c, 1];
        let (oh, ow, row) = (g.out_size(h), g.out_size(w), 9 * c);
        for oy in 0..oh {
            let mut dst = vec![f32::NAN; ow * row];
            im2col_row(&x, strides, (h, w, c), g, 0, oy, &mut dst);
            for ox in 0..ow {
                for (tap, values) in dst[ox * row..][..row].chunks(c).enumerate() {
                    let (ky, kx) = (tap / 3, tap % 3);
                    let want: Vec<f32> = match (g.input_at(oy, ky, h), g.input_at(ox, kx, w)) {
                        (Some(iy), Some(ix)) => x[(iy * w + ix) * c..][..c].to_vec(),
                        _ => vec![0.0; c],
                    };
                    assert_eq!(values, want.as_slice(), "({oy}, {ox}) tap {tap}");
                }
            }
        }
    }

    #[test]
    fn im2col_gradients_match_candle_conv2d() {
        // The stem's two geometries: stride 2, and the context layers' stride 1.
        for stride in [2, 1] {
            let g = ConvGeometry {
                kernel: 3,
                stride,
                padding: 1,
            };
            gradients_match(g);
        }
    }

    fn gradients_match(g: ConvGeometry) {
        let x = Var::from_tensor(&randn(&[2, 3, 10, 10], 4)).unwrap();
        let w = Var::from_tensor(&randn(&[5, 3, 3, 3], 5)).unwrap();
        let b = Var::from_tensor(&randn(&[5], 6)).unwrap();
        let side = g.out_size(10);
        let probe = randn(&[2, 5, side, side], 7);
        let (candle, ours) = both(&x, &w, &b, g);
        let grads = |out: &Tensor| {
            (out * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (gc, go) = (grads(&candle), grads(&ours));
        for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
            let (a, b) = (gc.get(v).unwrap(), go.get(v).unwrap());
            assert!(max_diff(a, b) < 1e-4, "d{name} {g:?}");
            assert!(
                max_diff(b, &b.zeros_like().unwrap()) > 0.0,
                "d{name} is zero {g:?}"
            );
        }
    }
}
