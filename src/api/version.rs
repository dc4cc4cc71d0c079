//! `GET /v1/version`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

/// The Flocker API release floe implements, with floe's own version as build metadata, so
/// clients that parse the version see a Flocker version they know.
pub const VERSION: &str = concat!("1.15.0+floe.", env!("CARGO_PKG_VERSION"));

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/version", get(version))
}

async fn version() -> Json<Value> {
    Json(json!({ "flocker": VERSION }))
}
