//! Request bodies: read within the size limit, decoded as JSON whatever the `Content-Type`
//! (Flocker never looked at it), checked against the endpoint's schema, then typed.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiError;
use crate::model::schema::RequestSchema;

/// The raw body, with size and read failures reported in floe's JSON error form.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::UndecodableBody
                }
            })
    }
}

impl RawBody {
    /// Decodes the body as JSON, validates it against `schema` and converts it to `T`.
    /// Returns the validated JSON too, for handlers that must see which keys were present.
    pub fn decode<T: DeserializeOwned>(
        &self,
        schema: &RequestSchema,
    ) -> Result<(T, Value), ApiError> {
        let value: Value =
            serde_json::from_slice(&self.0).map_err(|_| ApiError::UndecodableBody)?;
        schema.check(&value).map_err(ApiError::Schema)?;
        let typed = serde_json::from_value(value.clone())
            .map_err(|error| ApiError::Schema(vec![error.to_string()]))?;
        Ok((typed, value))
    }
}
