//! The routes and their handlers (documented in docs/SERVE.md).
//!
//! | route | what |
//! |---|---|
//! | `GET /` `/app.js` `/style.css` `/fonts/…` | the page, embedded |
//! | `GET /api/health` | the model, the limits, how busy the pool is |
//! | `GET /api/scenes` | the example scenes and the splits |
//! | `GET /api/scene?name=…` or `?split=…&seed=…` | one scene as a PNG data URL, with its commands |
//! | `POST /api/predict` | multipart: `cmd` and `image`, `scene` or `split` + `seed` |

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::extract::{DefaultBodyLimit, State as Shared};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::scenes::{self, SceneRef};
use super::{assets, predict, State};
use crate::eval::Split;

pub fn router(state: Arc<State>) -> Router {
    // Room for the multipart framing around an upload of the full size.
    let body_limit = state.limits.max_upload_bytes.saturating_add(64 << 10);
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/style.css", get(assets::style))
        .route("/fonts/DejaVuSans.ttf", get(assets::dejavu))
        .route("/fonts/NanumSquareR.ttf", get(assets::nanum))
        .route("/api/health", get(health))
        .route("/api/scenes", get(scene_list))
        .route("/api/scene", get(scene))
        .route("/api/predict", post(predict_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such page or endpoint: see docs/SERVE.md for the API")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method: see docs/SERVE.md",
    )
}

async fn health(Shared(state): Shared<Arc<State>>) -> Json<Value> {
    let p = &state.pipeline;
    let l = &state.limits;
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "model": p.origin,
        "device": crate::device::describe(&p.device),
        "methods": super::views::method_names(),
        "workers": l.workers,
        "queue": l.queue,
        "in_use": state.pool.in_use(l),
        "timeout_s": l.timeout.as_secs_f64(),
        "max_upload_bytes": l.max_upload_bytes,
        "max_pixels": l.max_pixels,
        "max_command_bytes": crate::limits::MAX_COMMAND_BYTES,
    }))
}

async fn scene_list() -> Json<Value> {
    let scenes: Vec<Value> = scenes::SHIPPED
        .iter()
        .map(|s| json!({ "name": s.name, "has_truth": s.truth.is_some() }))
        .collect();
    let splits: Vec<Value> = Split::ALL
        .iter()
        .map(|s| json!({ "name": s.name(), "first_seed": s.first_seed() }))
        .collect();
    Json(json!({ "scenes": scenes, "splits": splits }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SceneQuery {
    name: Option<String>,
    split: Option<String>,
    seed: Option<String>,
}

async fn scene(
    Shared(state): Shared<Arc<State>>,
    q: Result<Query<SceneQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: use ?name=red_cup, or ?split=iid&seed=200000",
            e.body_text()
        ))
    })?;
    let r = SceneRef::parse(q.name.as_deref(), q.split.as_deref(), q.seed.as_deref())?;
    let ticket = state.pool.admit()?;
    let shared = state.clone();
    let body = state
        .pool
        .run(ticket, move || {
            let s = scenes::load(&r, shared.pipeline.config())?;
            let png = base64::engine::general_purpose::STANDARD.encode(&s.png);
            let objects: Vec<String> = s
                .truth
                .as_ref()
                .map(|t| {
                    let layout = t.layout();
                    t.objects
                        .iter()
                        .map(|o| crate::grounding::object_name(&layout, o.id))
                        .collect()
                })
                .unwrap_or_default();
            let (name, split, seed) = match &r {
                SceneRef::Shipped(n) => (Some(n.clone()), None, None),
                SceneRef::Split { split, seed } => (None, Some(split.name()), Some(*seed)),
            };
            Ok(json!({
                "label": s.label,
                "name": name,
                "split": split,
                "seed": seed,
                "width": s.image.width(),
                "height": s.image.height(),
                "image": format!("data:image/png;base64,{png}"),
                "has_truth": s.truth.is_some(),
                "objects": objects,
                "commands": s.suggestions,
            }))
        })
        .await?;
    Ok(Json(body))
}

async fn predict_route(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let max = state.limits.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > max as u64 + (64 << 10)) {
        return Err(ApiError::too_large(format!(
            "the request is {n} bytes; uploads are at most {max} bytes"
        )));
    }
    let mut form = form.map_err(|e| {
        ApiError::bad_request(format!(
            "{}: send multipart/form-data with a cmd field and an image, scene, or split and seed",
            e.body_text()
        ))
    })?;
    let ticket = state.pool.admit()?;
    let request = tokio::time::timeout(ticket.remaining(), predict::read_form(&mut form, max))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the upload did not arrive within the server's time limit",
            )
        })??;
    let shared = state.clone();
    let body = state
        .pool
        .run(ticket, move || predict::run(&shared, request))
        .await?;
    Ok(Json(body))
}
