//! The one place where errors become HTTP answers. Every error body is JSON
//! `{"description": "..."}` (Flocker's form); schema failures add `"errors": [...]`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::answer::Answer;
use super::conditional::etag_value;
use crate::model::Rejection;
use crate::model::package::MetadataError;
use crate::store::accounts::AccountsError;
use crate::store::{ConfigTag, StoreError};

/// Flocker's exact text for an undecodable body, embedded newline included.
pub const UNDECODABLE_BODY: &str =
    "The request body could not be decoded according to the value of the\nContent-Type header.";

/// Flocker's exact text for a schema failure.
pub const SCHEMA_MISMATCH: &str = "The provided JSON doesn't match the required schema.";

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("{UNDECODABLE_BODY}")]
    UndecodableBody,
    /// The body is JSON but not what the endpoint takes.
    #[error("{SCHEMA_MISMATCH}")]
    Schema(Vec<String>),
    /// Some other malformed input, described.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than [`super::MAX_BODY_BYTES`].
    #[error("The request body is larger than {} bytes.", super::MAX_BODY_BYTES)]
    PayloadTooLarge,
    /// The body did not arrive within the body read timeout.
    #[error("The request body did not arrive in time; the connection is closed.")]
    BodyTimedOut,
    /// A resource that does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// No route has this path.
    #[error("No resource at this path.")]
    NoRoute,
    /// The route exists but not with this method; axum adds `Allow`.
    #[error("The method is not allowed for this resource.")]
    MethodNotAllowed,
    /// The client's identity may not make this request.
    #[error("{0}")]
    IdentityForbidden(String),
    /// The request body's `Content-Type` is not one the endpoint reads.
    #[error("The Content-Type must be application/json or application/x-msgpack.")]
    UnsupportedMediaType,
    /// No media type the endpoint can answer in is acceptable to the client.
    #[error("This resource can be answered only as application/json or application/x-msgpack.")]
    NotAcceptable,
    /// No credentials: authentication is on and the request presented no token.
    #[error(
        "Authentication required: send a token as x-snarl-token, Authorization: Bearer or the x-snarl-token cookie."
    )]
    Unauthenticated,
    /// The token is unknown or revoked, or its user lacks the permission the request needs.
    #[error("Forbidden.")]
    Forbidden,
    /// A login with a wrong user name or password.
    #[error("Forbidden!")]
    BadCredentials,
    /// The accounts store refused or failed.
    #[error(transparent)]
    Accounts(AccountsError),
    /// A request with this idempotency key is still being processed.
    #[error("A request with this Idempotency-Key is still being processed; retry later.")]
    IdempotencyKeyInFlight,
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store refused a write; `tag` is the configuration it was refused at, or a later
    /// one, sent with the refusal as with every write's answer.
    #[error("{error}")]
    Refused {
        /// Why.
        error: StoreError,
        /// The configuration tag to send.
        tag: ConfigTag,
    },
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::UndecodableBody | ApiError::Schema(_) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimedOut => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdentityForbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthenticated | ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Accounts(error) => match error {
                AccountsError::UserNotFound => StatusCode::NOT_FOUND,
                AccountsError::UserExists => StatusCode::CONFLICT,
                AccountsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ApiError::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            ApiError::Store(error) | ApiError::Refused { error, .. } => match error {
                StoreError::TagMismatch { .. } | StoreError::ResourceChanged { .. } => {
                    StatusCode::PRECONDITION_FAILED
                }
                StoreError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
                StoreError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
                StoreError::Rejected(rejection) => match rejection {
                    Rejection::DatasetIdInUse
                    | Rejection::LeaseHeld
                    | Rejection::ContainerNameInUse
                    | Rejection::DatasetOnAnotherNode
                    | Rejection::DatasetInUse
                    | Rejection::ExternalPortInUse
                    | Rejection::DuplicateLinkAlias
                    | Rejection::DuplicateLinkPort
                    | Rejection::DatasetAttached
                    | Rejection::PackageNameInUse
                    | Rejection::NotEmpty { .. }
                    | Rejection::ImportItem { .. }
                    | Rejection::Metadata(MetadataError::NotAnObject(_)) => StatusCode::CONFLICT,
                    Rejection::Metadata(MetadataError::TooDeep) => StatusCode::BAD_REQUEST,
                    Rejection::DatasetNotFound
                    | Rejection::LeaseNotFound
                    | Rejection::MathematicianNotFound
                    | Rejection::ContainerNotFound
                    | Rejection::PackageNotFound => StatusCode::NOT_FOUND,
                    Rejection::DatasetDeleted => StatusCode::METHOD_NOT_ALLOWED,
                    Rejection::PackageDeleted => StatusCode::GONE,
                },
                StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }
}

impl ApiError {
    /// The answer for this error: JSON, with the headers that let a client recover (the
    /// current configuration tag after a stale one, the current ETag after a stale one).
    pub fn answer(&self) -> Answer {
        if let ApiError::Refused { error, tag } = self {
            let answer = ApiError::Store(error.clone()).answer();
            // A stale tag's 412 already names the tag it was refused at.
            return match error {
                StoreError::TagMismatch { .. } => answer,
                _ => answer.with_tag(tag),
            };
        }
        let body = match self {
            ApiError::Schema(errors) => json!({ "description": SCHEMA_MISMATCH, "errors": errors }),
            ApiError::Accounts(AccountsError::Unavailable(reason)) => {
                tracing::error!(%reason, "account store unavailable");
                json!({ "description": "The account store is unavailable; nothing was changed. Try again." })
            }
            ApiError::Store(StoreError::Unavailable(reason)) => {
                // The cause is for the operator's log, not the client; the writer logs it
                // (within a budget: a full disk fails every write).
                tracing::debug!(%reason, "store unavailable");
                json!({ "description": "The configuration store is unavailable; nothing was changed. Try again." })
            }
            other => json!({ "description": other.to_string() }),
        };
        let body = serde_json::to_vec(&body).expect("error bodies serialise");
        let mut answer = Answer::json(self.status(), body);
        let header = match self {
            ApiError::Store(StoreError::TagMismatch { current, .. }) => {
                return answer.with_tag(current);
            }
            ApiError::Store(StoreError::ResourceChanged {
                current_etag: Some(etag),
                ..
            }) => Some((header::ETAG, etag_value(etag, false))),
            // The rest of the body may still come: nothing after it on this connection could
            // be told apart from it.
            ApiError::BodyTimedOut => Some((header::CONNECTION, HeaderValue::from_static("close"))),
            ApiError::Unauthenticated => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("x-snarl-token"),
            )),
            _ => None,
        };
        if let Some((name, value)) = header {
            answer.headers.insert(name, value);
        }
        answer
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.answer().into_response()
    }
}
