//! Request bodies, read within the size limit, and write requests: method, path and body.
//! Bodies are decoded as JSON whatever the `Content-Type` (Flocker never looked at it),
//! checked against the endpoint's schema, then typed. GET and DELETE bodies are ignored, as in
//! Flocker.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode};
use http_body_util::Limited;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ApiError, MAX_BODY_BYTES};
use crate::model::schema::RequestSchema;

/// A request body of at most [`MAX_BODY_BYTES`]; a larger one is a 413.
///
/// The limit is applied here, by the extractors that read bodies, rather than by a layer on
/// the router: such a layer wraps every route and costs every request, reads included.
pub struct LimitedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let request = request.map(|body| Body::new(Limited::new(body, MAX_BODY_BYTES)));
        Bytes::from_request(request, state)
            .await
            .map(LimitedBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::UndecodableBody
                }
            })
    }
}

/// Validates a decoded body against `schema` and converts it to `T`: every write body, whatever
/// its media type, passes here before anything is stored.
pub fn checked<T: DeserializeOwned>(value: Value, schema: &RequestSchema) -> Result<T, ApiError> {
    schema.check(&value).map_err(ApiError::Schema)?;
    serde_json::from_value(value).map_err(|error| ApiError::Schema(vec![error.to_string()]))
}

/// What a write handler needs of its request besides headers and path parameters.
pub struct WriteRequest {
    /// The method.
    pub method: Method,
    /// The path and query, as sent.
    pub target: String,
    /// The body (empty for DELETE).
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for WriteRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = request.method().clone();
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let body = if method == Method::DELETE || method == Method::GET {
            Bytes::new()
        } else {
            LimitedBody::from_request(request, state).await?.0
        };
        Ok(WriteRequest {
            method,
            target,
            body,
        })
    }
}

impl WriteRequest {
    /// Decodes the body as JSON, validates it against `schema` and converts it to `T`.
    pub fn decode<T: DeserializeOwned>(&self, schema: &RequestSchema) -> Result<T, ApiError> {
        let value: Value =
            serde_json::from_slice(&self.body).map_err(|_| ApiError::UndecodableBody)?;
        checked(value, schema)
    }

    /// A digest of method, path and body: a retry under the same idempotency key must be the
    /// same request.
    pub fn fingerprint(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(self.method.as_str());
        digest.update(b"\n");
        digest.update(&self.target);
        digest.update(b"\n");
        digest.update(&self.body);
        hex::encode(digest.finalize())
    }
}
