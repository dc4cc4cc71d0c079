//! Preconditions: the only place that reads conditional request headers and turns them into a
//! typed [`Precondition`] for the store, which checks it atomically with the write.

use axum::extract::FromRequestParts;
use axum::http::HeaderName;
use axum::http::request::Parts;

use super::ApiError;
use crate::store::{Precondition, Snapshot};

/// Sent with the configuration tag on configuration reads and on every write's answer.
pub const CONFIGURATION_TAG: HeaderName = HeaderName::from_static("x-configuration-tag");

/// Makes a write conditional on the configuration tag.
pub const IF_CONFIGURATION_MATCHES: HeaderName =
    HeaderName::from_static("x-if-configuration-matches");

/// The preconditions a request carries.
#[derive(Debug, Clone, Default)]
pub struct Conditions(pub Precondition);

impl<S: Send + Sync> FromRequestParts<S> for Conditions {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Each header line is one whole tag: Flocker splits on nothing, not even commas.
        // A line that is not visible ASCII can never equal a tag, so it is kept (lossily) and
        // simply fails to match.
        let configuration_matches = parts
            .headers
            .get_all(IF_CONFIGURATION_MATCHES)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        Ok(Conditions(Precondition {
            configuration_matches,
        }))
    }
}

impl Conditions {
    /// Checks the configuration tag against `snapshot` before the body is even read, so that a
    /// stale tag answers 412 ahead of 400/404/405/409 as in Flocker. The writer checks again,
    /// atomically, when the command is applied; this early check only decides which error a
    /// request that would fail anyway gets.
    pub fn check_early(&self, snapshot: &Snapshot) -> Result<(), ApiError> {
        self.0.check(&snapshot.tag).map_err(ApiError::from)
    }
}
