//! [`Answer`]: a response fully rendered in memory. Handlers build one; a write's can also be
//! recorded, so that an idempotent retry is sent the same bytes.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::{ConfigTag, RecordedAnswer};

use super::conditional::{CONFIGURATION_TAG, configuration_tag_value};

/// Status, headers and body of an answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// A JSON answer.
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Answer {
            status,
            headers,
            body: body.into(),
        }
    }

    /// Adds the configuration tag the answer was read at or written to.
    pub fn with_tag(mut self, tag: &ConfigTag) -> Self {
        self.headers
            .insert(CONFIGURATION_TAG, configuration_tag_value(tag));
        self
    }

    /// The form in which the answer is kept for idempotent retries.
    pub fn record(&self) -> RecordedAnswer {
        RecordedAnswer {
            status: self.status.as_u16(),
            headers: self
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
                })
                .collect(),
            body: self.body.to_vec(),
        }
    }

    /// Rebuilds a recorded answer.
    pub fn from_record(record: &RecordedAnswer) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in &record.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        Answer {
            status: StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK),
            headers,
            body: Bytes::from(record.body.clone()),
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        // Moves the header map in whole rather than inserting each header again.
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}
