//! The library's front door: load a checkpoint, give it images and commands,
//! get actions (and, if asked, every attention weight) back.
//!
//! ```no_run
//! let vla = vla_demo::Pipeline::load(&vla_demo::checkpoint::Source::Embedded, "cpu")?;
//! let image = vla_demo::preprocess::load_image("scene.png".as_ref())?;
//! let p = vla.predict(&[image], &["pick up the red cup"], &Default::default(), false)?;
//! println!("{:?}", p[0].waypoints);
//! # anyhow::Ok(())
//! ```

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle::{DType, Device};
use image::DynamicImage;
use serde::Serialize;

use crate::action::{Gripper, Outcome, Workspace};
use crate::checkpoint::{Checkpoint, Source};
use crate::grid::{patch_label_name, read_patch_label, Frame};
use crate::model::vla::{Decoding, Generated, Inputs, StageTimes, Step};
use crate::model::AttentionMaps;
use crate::model::{Config, Vla};
use crate::preprocess::{letterbox, to_pixels};
use crate::tokens::{self, CommandTokenizer, Encoded};

/// A loaded model with its tokenizer.
pub struct Pipeline {
    pub model: Vla,
    pub tokenizer: CommandTokenizer,
    pub device: Device,
    /// Where the checkpoint came from.
    pub origin: String,
}

/// One waypoint in every frame a learner may want.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Normalised in the input image, x right, y down.
    pub x: f32,
    pub y: f32,
    /// Metres on the table, origin at the image's top-left corner.
    pub metric: [f32; 2],
    /// Pixels of the input image.
    pub pixel: [f32; 2],
    pub gripper: Gripper,
}

/// The model's answer for one (image, command) pair.
pub struct Prediction {
    pub command: Encoded,
    pub steps: Vec<Step>,
    pub waypoints: Vec<Point>,
    /// Act, or a refusal: the named object is absent, or more than one fits.
    pub outcome: Outcome,
    /// Set when the tokens did not form a valid action (cannot happen with
    /// the constrained decoder, but a sampled run reports rather than panics).
    pub error: Option<String>,
    pub frame: Frame,
    /// Head-averaged `<boa>` cross-attention over patches (last fusion block).
    pub boa_attention: Vec<f32>,
    /// What the patch head says the attention's peak patch shows ("red
    /// cup", "the table"), for a model with one.
    pub peak_reads_as: Option<String>,
    /// Every attention map, this example's slice, when asked for.
    pub maps: Option<AttentionMaps>,
    /// Which code computed it (`engine::Path::choose`).
    pub path: crate::engine::Path,
    pub times: Timings,
}

/// Milliseconds per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    pub preprocess: f64,
    pub vision: f64,
    pub text: f64,
    pub decode: f64,
}

impl Pipeline {
    /// Loads a checkpoint onto a device (`auto`, `cpu`, `cuda[:N]`, `metal`).
    pub fn load(source: &Source, device: &str) -> Result<Self> {
        Self::load_as(source, device, "f32")
    }

    /// Like [`Pipeline::load`], computing in `dtype` (`f32`, or `f16`/`bf16`
    /// where the device supports them).
    pub fn load_as(source: &Source, device: &str, dtype: &str) -> Result<Self> {
        let device = crate::device::select(device)?;
        let dtype = crate::device::dtype(dtype, &device)?;
        Self::load_on(source, device, dtype)
    }

    pub fn load_on(source: &Source, device: Device, dtype: DType) -> Result<Self> {
        let ckpt = Checkpoint::open(source)?;
        let model = ckpt.load(&device, dtype)?;
        Ok(Self {
            model,
            tokenizer: ckpt.tokenizer,
            device,
            origin: ckpt.origin,
        })
    }

    pub fn config(&self) -> &Config {
        self.model.config()
    }

    /// Tokenises each command once, checked against the model's length limit.
    pub fn encode(&self, commands: &[&str]) -> Result<Vec<Encoded>> {
        self.tokenizer
            .encode_all(commands, self.config().max_text_len)
    }

    /// The model's inputs for (image, command) pairs: letterboxed, normalised
    /// pixels and left-padded token ids, with each command's tokens and each
    /// image's frame.
    pub fn prepare(
        &self,
        images: &[DynamicImage],
        commands: &[&str],
    ) -> Result<(Inputs, Vec<Encoded>, Vec<Frame>)> {
        let encoded = self.encode(commands)?;
        let (inputs, frames) = self.prepare_encoded(images, &encoded)?;
        Ok((inputs, encoded, frames))
    }

    /// [`Pipeline::prepare`] for commands tokenised already (a
    /// [`Prediction`]'s `command`), so a run tokenises each command once.
    pub fn prepare_encoded(
        &self,
        images: &[DynamicImage],
        encoded: &[Encoded],
    ) -> Result<(Inputs, Vec<Frame>)> {
        let cfg = self.config();
        let (text_ids, text_lens) = tokens::to_ids(encoded, self.tokenizer.pad_id(), &self.device)?;
        let (squares, frames): (Vec<_>, Vec<_>) =
            images.iter().map(|img| letterbox(img, cfg)).unzip();
        let refs: Vec<&image::RgbImage> = squares.iter().collect();
        let inputs = Inputs {
            pixels: to_pixels(&refs, cfg, &self.device)?,
            image_index: None,
            text_ids,
            text_lens,
            knockout: None,
        };
        Ok((inputs, frames))
    }

    /// Predicts one action per (image, command) pair, as one batched forward pass.
    pub fn predict(
        &self,
        images: &[DynamicImage],
        commands: &[&str],
        decoding: &Decoding,
        capture: bool,
    ) -> Result<Vec<Prediction>> {
        check_pairs(images.len(), commands.len())?;
        let encoded = self.encode(commands)?;
        self.predict_encoded(images, encoded, decoding, capture)
    }

    /// [`Pipeline::predict`] for commands tokenised already ([`Pipeline::encode`]).
    pub fn predict_encoded(
        &self,
        images: &[DynamicImage],
        encoded: Vec<Encoded>,
        decoding: &Decoding,
        capture: bool,
    ) -> Result<Vec<Prediction>> {
        check_pairs(images.len(), encoded.len())?;
        let cfg = self.config();
        let t0 = Instant::now();
        let (inputs, frames) = self.prepare_encoded(images, &encoded)?;
        let preprocess = t0.elapsed().as_secs_f64() * 1e3;
        let generated = self.model.generate(&inputs, decoding, capture)?;
        let boa = generated
            .boa_cross
            .to_dtype(DType::F32)?
            .mean(1)?
            .to_vec2::<f32>()?;
        check_finite_output(&generated)
            .with_context(|| format!("the model from {}", self.origin))?;
        let readings = match &generated.patch_labels {
            Some(t) => Some(t.to_dtype(DType::F32)?.to_vec3::<f32>()?),
            None => None,
        };
        let StageTimes {
            vision,
            text,
            decode,
        } = generated.times;
        let times = Timings {
            preprocess,
            vision,
            text,
            decode,
        };

        let mut out = Vec::with_capacity(images.len());
        for (b, (command, frame)) in encoded.into_iter().zip(frames).enumerate() {
            let (waypoints, outcome, error) = match generated.action(b) {
                Ok(a) => (
                    a.waypoints
                        .iter()
                        .map(|w| point(&frame, cfg.workspace, w.x, w.y, w.gripper))
                        .collect(),
                    a.outcome,
                    None,
                ),
                Err(e) => (Vec::new(), Outcome::Act, Some(format!("{e:#}"))),
            };
            let maps = match &generated.maps {
                Some(m) => Some(m.example(b)?),
                None => None,
            };
            let peak_reads_as = readings.as_ref().map(|r| {
                let peak = crate::maps::argmax(&boa[b]);
                patch_label_name(read_patch_label(&r[b][peak]))
            });
            out.push(Prediction {
                command,
                steps: generated.steps[b].clone(),
                waypoints,
                outcome,
                error,
                frame,
                boa_attention: boa[b].clone(),
                peak_reads_as,
                maps,
                path: generated.path,
                times,
            });
        }
        Ok(out)
    }
}

/// One command per image, and at least one of each.
fn check_pairs(images: usize, commands: usize) -> Result<()> {
    if images != commands || images == 0 {
        bail!("predict needs one command per image (got {images} images, {commands} commands)");
    }
    Ok(())
}

/// Finite weights can still overflow (a weight of 3e38): an answer built on
/// NaN or Inf is an error, never a "not a valid action" or a table of NaN.
pub fn check_finite_output(g: &Generated) -> Result<()> {
    let probs = g.steps.iter().flatten().map(|s| s.prob);
    let boa = g
        .boa_cross
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if !probs.chain(boa).all(f32::is_finite) {
        bail!("the model's output is not finite (NaN or Inf): its weights are broken");
    }
    Ok(())
}

/// A model-frame point in every output frame.
pub fn point(frame: &Frame, ws: Workspace, u: f32, v: f32, gripper: Gripper) -> Point {
    let (x, y) = frame.to_input_norm(u, v);
    let (px, py) = frame.to_input_px(u, v);
    let (mx, my) = ws.to_metric(x, y);
    Point {
        x,
        y,
        metric: [mx, my],
        pixel: [px, py],
        gripper,
    }
}
