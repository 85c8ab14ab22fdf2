//! `--export attn.npz`: every attention matrix of one run, for NumPy, with a
//! JSON manifest (`attn.manifest.json` beside it; not `attn.json`, which would
//! read as a scene's ground truth if it sat beside an image) that says what every axis means and
//! exactly which input pixels every patch covers.
//!
//! Arrays, all float32, one per layer (heads first):
//! - `vision/layer{l}` (H, N, N): ViT self-attention, query patch × key patch;
//! - `text/layer{l}` (H, T, T): the command decoder's causal self-attention;
//! - `fusion_self/layer{l}` (H, S, S): the fusion head's causal self-attention
//!   over `[command, <boa>, actions]`;
//! - `fusion_cross/layer{l}` (H, S, N) and `fusion_cross_scores/layer{l}`:
//!   the fusion cross-attention to the patches, after and before the softmax;
//! - `boa_attention` (N): the overlay's map; `patch_input_px` (N, 4): each
//!   patch's `[x0, y0, x1, y1]` in input pixels.
//!
//! ```python
//! import numpy as np, json
//! a = np.load("attn.npz"); m = json.load(open("attn.manifest.json"))
//! a["fusion_cross/layer1"][:, m["boa_position"]].mean(0)  # == a["boa_attention"]
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle::{DType, Device, Tensor};
use serde::Serialize;

use crate::grid::{Frame, PatchBox, PatchGrid};
use crate::model::{AttentionMaps, Config};
use crate::pipeline::Prediction;

#[derive(Debug, Clone, Serialize)]
pub struct ArrayInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub axes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub npz: String,
    pub command: String,
    /// The command's tokens; fusion positions `text_len - len .. text_len`.
    pub command_tokens: Vec<String>,
    pub text_len: usize,
    /// Label of every fusion position: padding, command tokens, `<boa>`, then
    /// the action tokens fed back in.
    pub fusion_sequence: Vec<String>,
    /// Fusion position of the `<boa>` query (predicts the first action token).
    pub boa_position: usize,
    pub action_tokens: Vec<String>,
    pub grid: usize,
    pub patch_size: usize,
    pub image_size: usize,
    pub patch_order: String,
    pub letterbox: Frame,
    pub mapping: String,
    pub patches: Vec<PatchBox>,
    pub arrays: Vec<ArrayInfo>,
}

/// The manifest's path: `attn.npz` -> `attn.manifest.json`.
pub fn manifest_path(npz: &Path) -> PathBuf {
    npz.with_extension("manifest.json")
}

/// The npz archive and its manifest, as bytes to write (with
/// `checkpoint::write_atomic`) to `npz` and [`manifest_path`]`(npz)`.
pub fn encode(
    npz: &Path,
    maps: &AttentionMaps,
    pred: &Prediction,
    cfg: &Config,
    command: &str,
    pad: &str,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let t = maps.text_len;
    let n = cfg.num_patches();
    let mut arrays: Vec<(String, Tensor, Vec<&str>)> = Vec::new();
    let groups: [(&str, &Vec<Tensor>, [&str; 3]); 5] = [
        ("vision", &maps.vision, ["head", "query patch", "key patch"]),
        ("text", &maps.text, ["head", "query token", "key token"]),
        (
            "fusion_self",
            &maps.fusion_self,
            ["head", "query position", "key position"],
        ),
        (
            "fusion_cross",
            &maps.fusion_cross,
            ["head", "query position", "key patch"],
        ),
        (
            "fusion_cross_scores",
            &maps.fusion_cross_scores,
            ["head", "query position", "key patch"],
        ),
    ];
    for (group, tensors, axes) in groups {
        for (l, x) in tensors.iter().enumerate() {
            arrays.push((
                format!("{group}/layer{l}"),
                x.to_dtype(DType::F32)?.squeeze(0)?,
                axes.to_vec(),
            ));
        }
    }
    let patches = PatchGrid::new(pred.frame, cfg).patch_boxes();
    let boxes: Vec<f32> = patches.iter().flat_map(|p| p.input_px).collect();
    arrays.push((
        "boa_attention".into(),
        Tensor::new(pred.boa_attention.as_slice(), &Device::Cpu)?,
        vec!["key patch"],
    ));
    arrays.push((
        "patch_input_px".into(),
        Tensor::from_vec(boxes, (n, 4), &Device::Cpu)?,
        vec!["patch", "x0 y0 x1 y1"],
    ));

    let a = maps
        .fusion_cross
        .first()
        .map_or(Ok(0), |x| x.dim(2))?
        .saturating_sub(t);
    let mut sequence: Vec<String> =
        std::iter::repeat_n(pad.to_string(), t.saturating_sub(pred.command.tokens.len())).collect();
    sequence.extend(pred.command.tokens.iter().cloned());
    sequence.push("<boa>".into());
    sequence.extend((1..a).map(|k| {
        pred.steps
            .get(k - 1)
            .map_or("<eoa>".into(), |s| s.token.text())
    }));
    let manifest = Manifest {
        npz: npz.display().to_string(),
        command: command.to_string(),
        command_tokens: pred.command.tokens.clone(),
        text_len: t,
        fusion_sequence: sequence,
        boa_position: t,
        action_tokens: pred.steps.iter().map(|s| s.token.text()).collect(),
        grid: cfg.grid(),
        patch_size: cfg.patch_size,
        image_size: cfg.image_size,
        patch_order: "row-major: patch n is row n / grid, column n % grid".into(),
        letterbox: pred.frame,
        mapping: "input x = (model x - pad_x) / scale, input y = (model y - pad_y) / scale; patch (row, col) covers model pixels [col·P, (col+1)·P) × [row·P, (row+1)·P)".into(),
        patches,
        arrays: arrays.iter().map(|(name, x, axes)| ArrayInfo { name: name.clone(), shape: x.dims().to_vec(), axes: axes.iter().map(|s| s.to_string()).collect() }).collect(),
    };

    let named: Vec<(&str, &Tensor)> = arrays
        .iter()
        .map(|(name, x, _)| (name.as_str(), x))
        .collect();
    let bytes = npz_bytes(&named).context("cannot build the npz archive")?;
    Ok((bytes, serde_json::to_string_pretty(&manifest)?.into_bytes()))
}

/// f32 arrays as an npz archive (a zip of stored .npy files), in memory, so
/// nothing touches the disk until the caller writes the whole file.
pub fn npz_bytes(arrays: &[(&str, &Tensor)]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    for (name, x) in arrays {
        let shape: Vec<String> = x.dims().iter().map(|d| d.to_string()).collect();
        let shape = match shape.len() {
            1 => format!("{},", shape[0]),
            _ => shape.join(","),
        };
        let mut header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
        // NPY 1.0: magic, version, header length; the data starts 64-aligned.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        header.push('\n');
        zip.start_file(format!("{name}.npy"), options)?;
        zip.write_all(b"\x93NUMPY\x01\x00")?;
        zip.write_all(&(header.len() as u16).to_le_bytes())?;
        zip.write_all(header.as_bytes())?;
        let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        zip.write_all(&data)?;
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_npz_reads_back_with_numpy_layout() {
        let a = Tensor::arange(0f32, 24., &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let b = Tensor::new(&[1.5f32, -2.0], &Device::Cpu).unwrap();
        let bytes = npz_bytes(&[("vision/layer0", &a), ("b", &b)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npz");
        std::fs::write(&path, &bytes).unwrap();
        let back = Tensor::read_npz(&path).unwrap();
        let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["vision/layer0", "b"]);
        assert_eq!(back[0].1.dims(), [2, 3, 4]);
        assert_eq!(
            back[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(back[1].1.to_vec1::<f32>().unwrap(), [1.5, -2.0]);
        // Every array's data starts 64-byte aligned inside its .npy.
        let at = bytes.windows(6).position(|w| w == b"\x93NUMPY").unwrap();
        let len = u16::from_le_bytes([bytes[at + 8], bytes[at + 9]]);
        assert_eq!((10 + len as usize) % 64, 0);
    }
}
