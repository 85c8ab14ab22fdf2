//! Taking patches away at the input: painting them with the table's colour.

use anyhow::Result;
use candle::{DType, Tensor};

/// The input's median colour per channel, (1, 3, 1, 1): the table's colour.
pub fn table_colour(pixels: &Tensor) -> Result<Tensor> {
    let (_, c, h, w) = pixels.dims4()?;
    let flat = pixels
        .to_dtype(DType::F32)?
        .reshape((c, h * w))?
        .to_vec2::<f32>()?;
    let median: Vec<f32> = flat
        .into_iter()
        .map(|mut ch| {
            ch.sort_by(f32::total_cmp);
            ch[ch.len() / 2]
        })
        .collect();
    Ok(Tensor::from_vec(median, (1, c, 1, 1), pixels.device())?)
}

/// `pixels` with every patch where `hidden` is 1 painted `colour`.
pub fn paint(
    pixels: &Tensor,
    hidden: &[f32],
    grid: usize,
    patch: usize,
    colour: &Tensor,
) -> Result<Tensor> {
    let side = grid * patch;
    let mask: Vec<f32> = (0..side * side)
        .map(|i| hidden[(i / side / patch) * grid + (i % side) / patch])
        .collect();
    let mask = Tensor::from_vec(mask, (1, 1, side, side), pixels.device())?;
    let keep = (1.0 - &mask)?;
    Ok((pixels.broadcast_mul(&keep)? + mask.broadcast_mul(colour)?)?)
}
