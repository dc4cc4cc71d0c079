//! Request bodies, read within the size limit, and write requests: method, path and body.
//! Bodies are decoded as JSON whatever the `Content-Type` (Flocker never looked at it),
//! checked against the endpoint's schema, then typed. GET and DELETE bodies are ignored, as in
//! Flocker.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState, MAX_BODY_BYTES};
use crate::model::schema::RequestSchema;

/// A request body of at most [`MAX_BODY_BYTES`]; a larger one is a 413, and one that has not
/// all arrived within the body read timeout a 408.
///
/// The limit is applied here, by the extractors that read bodies, rather than by a layer on
/// the router: such a layer wraps every route and costs every request, reads included.
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut collecting = pin!(Limited::new(request.into_body(), MAX_BODY_BYTES).collect());
        // Most bodies came in with their head: those are taken without arming a timer (one
        // per request would cost every write). A poll with a waker that does nothing is
        // harmless: the next poll brings the real one.
        let first_poll = collecting
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        let collected = match first_poll {
            Poll::Ready(collected) => collected,
            Poll::Pending => tokio::time::timeout(state.settings.body_read_timeout, collecting)
                .await
                .map_err(|_| ApiError::BodyTimedOut)?,
        };
        match collected {
            Ok(collected) => Ok(LimitedBody(collected.to_bytes())),
            Err(error) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge),
            Err(_) => Err(ApiError::UndecodableBody),
        }
    }
}

/// Validates a decoded body against `schema` and converts it to `T`: every write body, whatever
/// its media type, passes here before anything is stored.
pub fn checked<T: DeserializeOwned>(value: Value, schema: &RequestSchema) -> Result<T, ApiError> {
    schema.check(&value).map_err(ApiError::Schema)?;
    serde_json::from_value(value).map_err(|error| ApiError::Schema(vec![error.to_string()]))
}

/// The first integer literal in `json` (a valid JSON text) that fits neither `i64` nor `u64`.
/// serde_json reads such a literal as the nearest `f64`, so `12345678901234567890123` would
/// be stored and shown as `1.2345678901234568e22`: a body holding one is refused, rather
/// than kept with another value than it was sent with.
pub fn integer_out_of_range(json: &[u8]) -> Option<&str> {
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'"' => {
                at += 1;
                while at < json.len() && json[at] != b'"' {
                    at += if json[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while at < json.len()
                    && matches!(json[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    at += 1;
                }
                let literal = std::str::from_utf8(&json[start..at]).ok()?;
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    return Some(literal);
                }
            }
            _ => at += 1,
        }
    }
    None
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

impl FromRequest<AppState> for WriteRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
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

/// Decodes `body` as JSON, validates it against `schema` and converts it to `T`.
pub fn decode<T: DeserializeOwned>(body: &[u8], schema: &RequestSchema) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| ApiError::UndecodableBody)?;
    schema.check(&value).map_err(ApiError::Schema)?;
    // A number past 64 bits passes the schema (JSON has no limit, and 2^64 is a multiple
    // of 1024), and serde reports the float it was read as: name the number instead.
    serde_json::from_value(value).map_err(|error| {
        ApiError::Schema(vec![match integer_out_of_range(body) {
            Some(literal) => format!("{literal} is too large: integers must fit in 64 bits"),
            None => error.to_string(),
        }])
    })
}

impl WriteRequest {
    /// Decodes the body as JSON, validates it against `schema` and converts it to `T`.
    pub fn decode<T: DeserializeOwned>(&self, schema: &RequestSchema) -> Result<T, ApiError> {
        decode(&self.body, schema)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_past_64_bits_are_found_outside_strings_only() {
        let found = |json: &str| integer_out_of_range(json.as_bytes()).map(str::to_string);
        assert_eq!(
            found(r#"{"a": 99999999999999999999999}"#).as_deref(),
            Some("99999999999999999999999")
        );
        assert_eq!(
            found("[1, -9223372036854775809]").as_deref(),
            Some("-9223372036854775809")
        );
        assert_eq!(
            found("[18446744073709551616]").as_deref(),
            Some("18446744073709551616")
        );
        for fine in [
            "[18446744073709551615, -9223372036854775808, 0, -0]",
            "[1e400, 1.5, 99999999999999999999999.0, 1E30, 2e-5]",
            r#"{"99999999999999999999999": "99999999999999999999999"}"#,
            r#"["a \"99999999999999999999999\" \\", 7]"#,
        ] {
            assert_eq!(found(fine), None, "{fine}");
        }
    }
}
