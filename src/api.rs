//! The HTTP surface: one module per resource, each with its own `router()`, merged here with
//! the cross-cutting layers (body limit, tracing, JSON errors) and JSON answers for unknown
//! routes and wrong methods.

pub mod body;
pub mod conditional;
pub mod datasets;
pub mod error;
pub mod leases;
pub mod version;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::trace::TraceLayer;

use crate::model::Operation;
use crate::store::{Command, Committed, ConfigTag, Store};
use conditional::{CONFIGURATION_TAG, Conditions};
pub use error::ApiError;

/// Request bodies larger than this are refused with 413 before they are read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The configuration store.
    pub store: Store,
    /// The dataset list, rendered once per revision.
    pub rendered: Arc<datasets::RenderedList>,
}

impl AppState {
    /// State over `store`.
    pub fn new(store: Store) -> Self {
        AppState {
            store,
            rendered: Arc::default(),
        }
    }

    /// Sends `operation` to the store under the request's preconditions and waits until it
    /// is durable.
    pub async fn submit(
        &self,
        conditions: Conditions,
        operation: Operation,
    ) -> Result<Committed, ApiError> {
        let command = Command {
            precondition: conditions.0,
            operation,
        };
        Ok(self.store.submit(command).await?)
    }
}

/// The complete application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(version::router())
        .merge(datasets::router())
        .merge(leases::router())
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(errors_as_json))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        )
        .with_state(state)
}

/// A JSON answer carrying the configuration tag it was read at or written to.
pub(crate) fn json_response(status: StatusCode, tag: &ConfigTag, body: Bytes) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                CONFIGURATION_TAG,
                HeaderValue::from_str(tag.as_str()).expect("tags are hex"),
            ),
        ],
        body,
    )
        .into_response()
}

/// A safety net under every handler: an error answer that is not JSON (a rejection from the
/// framework itself, such as an undecodable path segment) is rewritten into floe's
/// `{"description": ...}` form, keeping its status and headers.
async fn errors_as_json(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let description = if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_string()
    } else {
        text
    };
    let body = serde_json::to_vec(&serde_json::json!({ "description": description }))
        .expect("a description serialises");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
