//! The page, embedded in the binary: one HTML file, one script, one style
//! sheet and the two fonts the figures use (DejaVu Sans, and NanumSquare for
//! Korean, from assets/fonts/ with their licences there), served with a Content-Security-Policy that lets the page load
//! nothing from anywhere but this server.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");
const DEJAVU: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const NANUM: &[u8] = include_bytes!("../../assets/fonts/NanumSquareR.ttf");

/// Only this origin; images may also be data: and blob: URLs (scenes and uploads).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'";

fn asset<B: IntoResponse>(content_type: &'static str, body: B) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

pub async fn dejavu() -> impl IntoResponse {
    asset("font/ttf", DEJAVU)
}

pub async fn nanum() -> impl IntoResponse {
    asset("font/ttf", NANUM)
}
