//! `vla-demo --batch pairs.jsonl`: many (image, command) pairs, every line
//! checked before the model runs, then one forward pass and one report per pair.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{base_report, check_command, default_overlay, figure, same_file, ModelSpec};
use crate::faithfulness::Method;
use crate::limits::{MAX_BATCH_FILE_BYTES, MAX_BATCH_PAIRS, MAX_BATCH_PIXELS};
use crate::model::vla::Decoding;
use crate::output::Staged;
use crate::overlay::{self, Style};
use crate::pipeline::Pipeline;
use crate::preprocess;
use crate::report::RunReport;
use crate::tokens::check_length;

#[derive(serde::Deserialize)]
struct Pair {
    image: std::path::PathBuf,
    cmd: String,
}

/// Many (image, command) pairs from a JSON Lines file, in one forward pass;
/// one report per pair, in order, with its line number.
/// Every line is checked before the model runs; an error names its line.
/// With `overlay_dir`, each pair's overlay is staged there as
/// `NNN-<stem>.overlay.png` (NNN = line number). At most
/// [`MAX_BATCH_PAIRS`] pairs and [`MAX_BATCH_PIXELS`] pixels in all.
pub fn batch(
    pairs_path: &Path,
    decoding: &Decoding,
    style: &Style,
    overlay_dir: Option<&Path>,
    model: &ModelSpec,
) -> Result<(Vec<(usize, RunReport)>, Staged)> {
    let text = read_batch_file(pairs_path)?;
    let mut pairs = Vec::new();
    let mut pixels = 0u64;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", pairs_path.display(), i + 1);
        if pairs.len() == MAX_BATCH_PAIRS {
            bail!("{}: a batch holds at most {MAX_BATCH_PAIRS} pairs", at());
        }
        let pair: Pair = serde_json::from_str(line)
            .with_context(|| format!("{}: expected {{\"image\": PATH, \"cmd\": TEXT}}", at()))?;
        check_command(&pair.cmd).with_context(at)?;
        let img = preprocess::load_image(&pair.image).with_context(at)?;
        pixels += img.width() as u64 * img.height() as u64;
        if pixels > MAX_BATCH_PIXELS {
            bail!(
                "{}: the batch's images hold more than {MAX_BATCH_PIXELS} pixels in all",
                at()
            );
        }
        pairs.push((i + 1, pair, img));
    }
    if pairs.is_empty() {
        bail!("the batch file {} holds no pairs", pairs_path.display());
    }
    let p = Pipeline::load_as(&model.source, &model.device, &model.dtype)?;
    let cfg = p.config().clone();
    let mut encoded = Vec::with_capacity(pairs.len());
    for (line, pair, _) in &pairs {
        let at = || format!("{} line {line}", pairs_path.display());
        let e = p.tokenizer.encode(&pair.cmd).with_context(at)?;
        check_length(&e, cfg.max_text_len).with_context(at)?;
        encoded.push(e);
    }
    let images: Vec<image::DynamicImage> = pairs.iter().map(|(_, _, img)| img.clone()).collect();
    let preds = p.predict_encoded(&images, encoded, decoding, false)?;
    let mut reports = Vec::with_capacity(preds.len());
    let mut files = Staged::new();
    for ((line, pair, img), pred) in pairs.iter().zip(&preds) {
        let mut rep = base_report(&p, &pair.image, &pair.cmd, pred)?;
        if let Some(dir) = overlay_dir {
            let t0 = Instant::now();
            let path = dir.join(format!(
                "{line:03}-{}",
                default_overlay(&pair.image).display()
            ));
            for (_, other, _) in &pairs {
                let inputs = [other.image.clone(), other.image.with_extension("json")];
                if let Some(x) = inputs.iter().find(|x| same_file(x, &path)) {
                    bail!(
                        "refusing to overwrite {} (an input) with an overlay; choose another --overlay-dir",
                        x.display()
                    );
                }
            }
            let fig = overlay::draw_prediction(img, pred, &cfg, style)?;
            let peak = crate::maps::argmax(&pred.boa_attention);
            let size = (img.width(), img.height());
            rep.overlay = Some(figure(
                &path,
                &fig,
                size,
                Method::Attention,
                peak,
                cfg.grid(),
            ));
            files.add(&path, &overlay::png_bytes(&fig)?)?;
            rep.set_overlay_ms(t0.elapsed().as_secs_f64() * 1e3);
        }
        reports.push((*line, rep));
    }
    Ok((reports, files))
}

/// The batch file as text: UTF-8, at most [`MAX_BATCH_FILE_BYTES`].
fn read_batch_file(path: &Path) -> Result<String> {
    crate::input::read_text(path, MAX_BATCH_FILE_BYTES, "the batch file")
}
