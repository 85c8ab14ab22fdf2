//! `POST /api/predict`: read the form, check every input, run the model on
//! a worker, and answer with the CLI's `--json` report plus the maps
//! ([`super::views`]) and the library's explanation of `<boa>`.

use std::io::Cursor;

use axum::extract::multipart::Multipart;
use axum::http::StatusCode;
use image::{DynamicImage, ImageReader};
use serde_json::Value;

use super::error::ApiError;
use super::scenes::{self, SceneRef};
use super::{views, State};
use crate::model::vla::Decoding;
use crate::{explain, grounding, preprocess, report};

/// Where the picture comes from.
pub enum Picture {
    Upload(Vec<u8>),
    Scene(SceneRef),
}

/// One checked-in request.
pub struct Request {
    pub cmd: String,
    pub picture: Picture,
}

/// A form that cannot be read is the client's fault: a malformed or cut
/// chunked body, which the multipart reader reports as a 500, is a 400.
fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    if status.is_server_error() {
        return ApiError::bad_request(format!(
            "the request body could not be read ({}): it is malformed or was cut off",
            e.body_text()
        ));
    }
    ApiError::new(status, e.body_text())
}

/// Reads the form's fields: `cmd`, and `image` (a file), `scene` (an
/// example's name), or `split` and `seed`.
pub async fn read_form(form: &mut Multipart, max_upload: usize) -> Result<Request, ApiError> {
    let (mut cmd, mut image, mut scene, mut split, mut seed) = (None, None, None, None, None);
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" => {
                let bytes = field.bytes().await.map_err(multipart_error)?;
                if bytes.len() > max_upload {
                    return Err(ApiError::too_large(format!(
                        "the image is {} bytes; uploads are at most {max_upload} bytes",
                        bytes.len()
                    )));
                }
                image = Some(bytes.to_vec());
            }
            "cmd" | "scene" | "split" | "seed" => {
                let text = field.text().await.map_err(multipart_error)?;
                let slot = match name.as_str() {
                    "cmd" => &mut cmd,
                    "scene" => &mut scene,
                    "split" => &mut split,
                    _ => &mut seed,
                };
                *slot = Some(text);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?}: use cmd, and image, scene, or split and seed"
                )))
            }
        }
    }
    let cmd = cmd.ok_or_else(|| {
        ApiError::bad_request(
            "the form has no cmd field: say what to do, e.g. cmd=pick up the red cup",
        )
    })?;
    let picture = match (image, scene.is_some() || split.is_some() || seed.is_some()) {
        (Some(bytes), false) => Picture::Upload(bytes),
        (None, true) => Picture::Scene(SceneRef::parse(
            scene.as_deref(),
            split.as_deref(),
            seed.as_deref(),
        )?),
        (Some(_), true) => return Err(ApiError::bad_request("give an image or a scene, not both")),
        (None, false) => {
            return Err(ApiError::bad_request(
                "the form has no picture: add an image file, a scene name, or a split and seed",
            ))
        }
    };
    Ok(Request { cmd, picture })
}

/// An uploaded image, refused with the right status: not an image (415),
/// over the pixel limit (413), or corrupt (422).
pub fn decode_upload(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, ApiError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::unprocessable(format!("the image cannot be read: {e}")))?;
    if !reader.format().is_some_and(|f| f.reading_enabled()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the upload is not an image in a format vla-demo reads ({})",
                preprocess::FORMATS
            ),
        ));
    }
    let (w, h) = reader.into_dimensions().map_err(|_| {
        ApiError::unprocessable("the image is not readable (corrupt or truncated?)")
    })?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(ApiError::too_large(format!(
            "the image is {w}×{h} = {pixels} pixels; the limit is {max_pixels} pixels"
        )));
    }
    preprocess::decode_image(bytes, None)
        .map_err(|e| ApiError::unprocessable(format!("the image {e:#}")))
}

/// Runs one prediction (on a worker thread) and builds the answer.
pub fn run(state: &State, req: Request) -> Result<Value, ApiError> {
    let p = &state.pipeline;
    let cfg = p.config();
    let internal = |e: anyhow::Error| ApiError::internal(&e);
    let cmd = req.cmd.as_str();
    let unprocessable = |e: anyhow::Error| ApiError::unprocessable(format!("{e:#}"));
    crate::tokens::check_command(cmd).map_err(unprocessable)?;
    let command = p.tokenizer.encode(cmd).map_err(unprocessable)?;
    crate::tokens::check_length(&command, cfg.max_text_len).map_err(unprocessable)?;
    let (label, img, scene) = match req.picture {
        Picture::Upload(bytes) => (
            "upload".to_string(),
            decode_upload(&bytes, state.limits.max_pixels)?,
            None,
        ),
        Picture::Scene(r) => {
            let s = scenes::load(&r, cfg)?;
            (s.label.clone(), s.image.clone(), Some(s))
        }
    };
    let pred = p
        .predict_encoded(
            std::slice::from_ref(&img),
            vec![command],
            &Decoding::default(),
            true,
        )
        .map_err(internal)?
        .remove(0);
    let mut rep = report::build(p, &label, cmd, &pred);
    let truth = scene
        .as_ref()
        .and_then(|s| s.grounding(&pred.frame, cfg.grid()));
    if let Some(t) = &truth {
        rep.grounding = Some(grounding::ground(t, cmd, &pred).map_err(internal)?);
    }
    let objects = truth.map(|t| t.objects).unwrap_or_default();
    let relevance = match &pred.maps {
        Some(m) if pred.outcome.is_act() && pred.error.is_none() => {
            let (inputs, _) = p
                .prepare_encoded(
                    std::slice::from_ref(&img),
                    std::slice::from_ref(&pred.command),
                )
                .map_err(internal)?;
            let case = crate::faithfulness::Case::from_inputs(&inputs).map_err(internal)?;
            let steps: Vec<_> = pred.steps.iter().map(|s| s.token).collect();
            Some(
                crate::faithfulness::relevance_rows(&p.model, &case, m, &steps)
                    .map_err(internal)?,
            )
        }
        _ => None,
    };
    let maps = views::build(&pred, cfg.grid(), &objects, relevance.as_ref()).map_err(internal)?;
    let explanation = explain::explain(&pred, cfg, cmd, &objects, None, 5).map_err(internal)?;
    // Through text, so every f32 prints as the CLI's `--json` prints it.
    let json = |v: String| serde_json::from_str::<Value>(&v).map_err(|e| internal(e.into()));
    let text = |r: serde_json::Result<String>| r.map_err(|e| internal(e.into()));
    let mut body = json(text(serde_json::to_string(&rep))?)?;
    if let Value::Object(o) = &mut body {
        o.insert("maps".into(), json(text(serde_json::to_string(&maps))?)?);
        o.insert(
            "explain".into(),
            json(text(serde_json::to_string(&explanation))?)?,
        );
    }
    Ok(body)
}
