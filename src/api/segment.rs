//! Path parameters, percent-decoded: [`Segment`] for a route's one parameter, [`PathParams`]
//! for routes with several. A rejection (a segment that is not UTF-8 once decoded) is floe's
//! JSON 400, like every other error, not axum's plain-text one.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
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
            .map_err(invalid_url)
    }
}

/// Every path parameter of the route, by name, decoded.
pub struct PathParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(params)| PathParams(params))
            .map_err(invalid_url)
    }
}

/// axum's text already starts with "Invalid URL: ".
fn invalid_url(rejection: PathRejection) -> ApiError {
    ApiError::BadRequest(format!("{}.", rejection.body_text()))
}
