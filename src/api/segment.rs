//! [`Segment`]: a route's one path parameter, percent-decoded. Its rejection (a segment that
//! is not UTF-8 once decoded) is floe's JSON 400, like every other error.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::ApiError;

/// The route's path parameter, decoded.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(segment)| Segment(segment))
            .map_err(|rejection| {
                ApiError::BadRequest(format!("Invalid URL: {}.", rejection.body_text()))
            })
    }
}
