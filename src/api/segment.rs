//! Path parameters, percent-decoded: [`Segment`] for a route's one parameter, [`PathParams`]
//! for routes with several, [`decoded_segments`] for a wildcard's segments; and
//! [`encoded_segment`], the way back for a decoded segment put into a link. A rejection (a
//! segment that is not UTF-8 once decoded) is floe's JSON 400, like every other error, not
//! axum's plain-text one.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

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

/// The segments of a raw (still percent-encoded) path, each decoded on its own. A wildcard
/// parameter arrives decoded as a whole, where an escaped `/` (`%2F`) can no longer be told
/// from a separator; FiFo (cowboy) splits first and decodes each segment, so `a%2Fb` is the
/// one segment `a/b`. Invalid escapes are kept as they are, as axum keeps them.
pub fn decoded_segments(raw: &str) -> Result<Vec<String>, ApiError> {
    raw.split('/').map(percent_decoded).collect()
}

fn percent_decoded(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| ApiError::BadRequest("Invalid URL: a path segment is not UTF-8.".into()))
}

/// What a path segment must escape (RFC 3986 §3.3: anything but a `pchar`), `%` included, so
/// that a decoded segment keeps its bytes and stays one segment.
const NOT_IN_A_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A decoded segment made fit for a URL again: a link built from a request's path (a
/// `Location`) must name the same path, whatever the client's segment held.
pub fn encoded_segment(segment: &str) -> String {
    utf8_percent_encode(segment, NOT_IN_A_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_split_before_they_are_decoded() {
        let segments = |raw: &str| decoded_segments(raw).ok();
        assert_eq!(segments("a/b"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(segments("x%2Fy/z"), Some(vec!["x/y".into(), "z".into()]));
        assert_eq!(segments("%C3%A9%20"), Some(vec!["\u{e9} ".into()]));
        assert_eq!(
            segments("100%/%zz%4"),
            Some(vec!["100%".into(), "%zz%4".into()])
        );
        assert_eq!(segments("%ff"), None);
    }

    #[test]
    fn an_encoded_segment_decodes_to_itself_and_stays_one_segment() {
        for segment in [
            "2", "0.1.0", "a/b", "a?b", "a b", "\u{e9}", "100%", "\r\nX: 1", "#[]",
        ] {
            let encoded = encoded_segment(segment);
            assert!(
                encoded
                    .bytes()
                    .all(|byte| byte.is_ascii_graphic() && byte != b'/' && byte != b'?'),
                "{encoded}"
            );
            assert_eq!(decoded_segments(&encoded).unwrap(), [segment]);
        }
        assert_eq!(
            encoded_segment("0.1.0"),
            "0.1.0",
            "versions stay as they are"
        );
    }
}
