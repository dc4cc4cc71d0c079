//! FiFo's CORS headers, on every answer under its paths (packages, sessions, users), and its
//! OPTIONS answers: wiggle serves them to browser clients, whose requests are cross-origin.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Adds FiFo's CORS headers and `Vary: Accept` (two media types) to every answer of the
/// routers it wraps: the packages', and the sessions' and users' (see `is_fifo_path`). The
/// router's fallbacks (404, 405) and the authentication layer (401, 403) add them themselves
/// for these paths, so that no other request pays for this layer.
pub async fn cors(request: Request, next: Next) -> Response {
    let ours = is_fifo_path(request.uri().path());
    let mut response = next.run(request).await;
    if ours {
        add_cors_headers(&mut response);
    }
    response
}

/// FiFo's CORS headers, for an answer to a request for `path` under FiFo's paths.
pub fn with_cors(path: &str, mut response: Response) -> Response {
    if is_fifo_path(path) {
        add_cors_headers(&mut response);
    }
    response
}

/// FiFo's CORS headers, on every answer under FiFo's paths.
fn add_cors_headers(response: &mut Response) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("access-control-allow-origin", "*"),
        (
            "access-control-allow-headers",
            "Authorization, content-type, x-snarl-token, x-full-list, x-full-list-fields",
        ),
        (
            "access-control-expose-headers",
            "x-snarl-token, x-full-list, x-full-list-fields",
        ),
        ("access-control-allow-credentials", "true"),
        ("vary", "accept"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

/// Whether `path` is one of FiFo's APIs whose every answer carries the CORS headers: the
/// packages, and the sessions and users, which wiggle serves with the same REST handler (a
/// browser client's login is a cross-origin POST of JSON, preflighted with OPTIONS).
fn is_fifo_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/") else {
        return false;
    };
    let Some((_version, rest)) = rest.split_once('/') else {
        return false;
    };
    let resource = rest.split('/').next().unwrap_or_default();
    matches!(resource, "packages" | "sessions" | "users")
}

/// OPTIONS: 200 without credentials, naming the methods of the resource.
pub async fn options(methods: &'static str) -> Response {
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(
        HeaderName::from_static("access-control-allow-methods"),
        HeaderValue::from_static(methods),
    );
    response
}
