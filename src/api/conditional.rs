//! Preconditions: the only place that reads conditional request headers — `If-Match`,
//! `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`, `X-If-Configuration-Matches`,
//! `Idempotency-Key`, and the `Prefer: wait` that goes with an `If-None-Match` (whose value
//! [`super::waiting`] parses) — and turns them into typed values. Handlers pass those to the
//! store, which evaluates them atomically with the write ([`crate::model::precondition`] holds
//! the rules; reads evaluate the same rules here against their snapshot).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::answer::Answer;
use super::auth::Caller;
use super::identity::Identity;
use super::{ApiError, AppState};
use crate::model::precondition::{EntityTag, ResourceVersion, TagCondition, Validators, Verdict};
use crate::model::{Tagged, Target, Timestamp, Versioned};
use crate::store::{ConfigTag, Precondition, Snapshot};

/// Sent with the configuration tag on configuration reads and on every write's answer.
pub const CONFIGURATION_TAG: HeaderName = HeaderName::from_static("x-configuration-tag");

/// Makes a write conditional on the configuration tag.
pub const IF_CONFIGURATION_MATCHES: HeaderName =
    HeaderName::from_static("x-if-configuration-matches");

/// Makes a POST or DELETE safe to retry (draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Marks an answer replayed for a repeated idempotency key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Every header [`Conditions`] reads.
const CONDITION_HEADERS: [HeaderName; 6] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    IF_CONFIGURATION_MATCHES,
    IDEMPOTENCY_KEY,
];

/// The longest idempotency key accepted.
const MAX_KEY_LENGTH: usize = 255;

/// How entity tags are used, from `--if-match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IfMatchPolicy {
    /// No ETags are sent; `If-Match` and `If-None-Match` are ignored.
    Off,
    /// ETags are sent and honoured; the client decides whether to send validators.
    Optional,
    /// As `optional`, and a write to an existing resource without `If-Match`,
    /// `If-None-Match: *` or `X-If-Configuration-Matches` is refused with 428.
    Required,
}

/// The preconditions a request carries.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// What the store checks with the write.
    pub precondition: Precondition,
    /// The request's idempotency key, if any, scoped to who sent it (see `scoped_key`).
    pub idempotency_key: Option<String>,
    /// Whether ETags are in use (`--if-match` is not `off`).
    pub etags: bool,
    /// How long a read asks to be held until what it reads changes (`Prefer: wait=N`, before
    /// the server's cap); only with an `If-None-Match` to wait on. See [`super::waiting`].
    pub wait: Option<Duration>,
    /// The resource a write's path names, when the path alone names it (see
    /// [`Conditions::aimed_at`]).
    pub target: Option<Target>,
}

impl FromRequestParts<AppState> for Conditions {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let mut conditions =
            Conditions::from_headers(&parts.headers, &parts.method, state.settings.if_match)?;
        if let Some(key) = conditions.idempotency_key.take() {
            conditions.idempotency_key = Some(scoped_key(key, &parts.extensions));
        }
        Ok(conditions)
    }
}

/// The name under which an idempotent request's answer is kept: the client's key and who sent
/// it. Keyed by the client's key alone, a second client that happens to pick the same key
/// (low-entropy keys do collide) would be handed the first one's answer and have nothing
/// done. Keys never hold a line break, so `key \n who` cannot be mistaken for another pair;
/// an anonymous caller's key is kept as sent.
fn scoped_key(key: String, extensions: &Extensions) -> String {
    let who = match (extensions.get::<Caller>(), extensions.get::<Identity>()) {
        // A token names the caller even on a connection certified as someone else.
        (Some(Caller::User { name, .. }), _) | (_, Some(Identity::User(name))) => {
            format!("user:{name}")
        }
        (_, Some(Identity::Node(node))) => format!("node:{node}"),
        _ => return key,
    };
    format!("{key}\n{who}")
}

impl Conditions {
    /// The preconditions `headers` carry for a `method` request, read under `policy`; a
    /// malformed validator is a 400.
    pub fn from_headers(
        headers: &HeaderMap,
        method: &Method,
        policy: IfMatchPolicy,
    ) -> Result<Self, ApiError> {
        let mut conditions = Conditions {
            precondition: Precondition {
                require_validator: policy == IfMatchPolicy::Required,
                ..Precondition::default()
            },
            idempotency_key: None,
            etags: policy != IfMatchPolicy::Off,
            wait: None,
            target: None,
        };
        // Most requests carry none of these headers: one pass over the few names that were
        // sent is cheaper than looking each of the six up.
        if !headers.keys().any(|name| CONDITION_HEADERS.contains(name)) {
            return Ok(conditions);
        }
        // Each header line is one whole tag: Flocker splits on nothing, not even commas.
        // A line that is not visible ASCII can never equal a tag, so it is kept (lossily) and
        // simply fails to match.
        conditions.precondition.configuration_matches = headers
            .get_all(IF_CONFIGURATION_MATCHES)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        if policy != IfMatchPolicy::Off {
            conditions.precondition.validators = Validators {
                if_match: tag_condition(headers, &header::IF_MATCH, "If-Match")?,
                if_none_match: tag_condition(headers, &header::IF_NONE_MATCH, "If-None-Match")?,
                if_unmodified_since: http_date(headers, &header::IF_UNMODIFIED_SINCE),
                if_modified_since: http_date(headers, &header::IF_MODIFIED_SINCE),
            };
        }
        // A key makes a retry safe; a safe method is safe to retry without one, so its key
        // (sent by a client that adds it to every request) is ignored, not checked.
        if !method.is_safe() {
            conditions.idempotency_key = idempotency_key(headers)?;
        }
        if conditions.precondition.validators.if_none_match.is_some() {
            conditions.wait = super::waiting::preferred_wait(headers);
        }
        Ok(conditions)
    }

    /// Checks the configuration tag against `snapshot` before the body is decoded, so that a
    /// stale tag answers 412 ahead of 400/404/405/409 as in Flocker (a body too large or too
    /// slow to be read at all is still a 413 or 408 first). The writer checks again,
    /// atomically, when the command is applied; this early check only decides which error a
    /// request that would fail anyway gets.
    pub fn check_tag_early(&self, snapshot: &Snapshot) -> Result<(), ApiError> {
        self.precondition
            .check_tag(&snapshot.tag)
            .map_err(ApiError::from)
    }

    /// Names the resource a write's path names, so that its preconditions take precedence
    /// over its body (RFC 9110 §13.2.1: preconditions come before the content is processed):
    /// a stale `If-Match` is a 412, and a missing one where it is required a 428, even when
    /// the body would have been a 400. Only for writes that edit the resource, never create it.
    pub fn aimed_at(mut self, target: Option<Target>) -> Self {
        self.target = target;
        self
    }

    /// Judges the preconditions against the resource of [`Conditions::aimed_at`] in
    /// `snapshot`, for a request whose body was refused: a 412 or 428 then comes before the
    /// body's 400. A body that decodes goes to the writer, which judges them atomically with
    /// the same rule ([`Precondition::judge`]); this only decides which error a request that
    /// fails anyway gets. A resource that does not exist is left alone: the 404 it would meet
    /// anyway takes precedence over the preconditions.
    pub fn check_preconditions_early(&self, snapshot: &Snapshot) -> Result<(), ApiError> {
        let precondition = &self.precondition;
        let Some(target) = self
            .target
            .clone()
            .filter(|_| precondition.require_validator || !precondition.validators.is_empty())
        else {
            return Ok(());
        };
        let Some(current) = snapshot.configuration.version_of(target) else {
            return Ok(());
        };
        precondition
            .judge(Some(&current), false)
            .map_err(|error| ApiError::Refused {
                error,
                tag: snapshot.tag.clone(),
            })
    }

    /// Evaluates the validators of a GET or HEAD against what it would return. `Some` is the
    /// answer to send instead: 304 (with the validators a cache needs) or 412. Either carries
    /// `tag`, the configuration tag the read was made at, as the 200 would: a list's ETag
    /// follows its own kind only, so a client that gets a 304 for it may still need the newer
    /// configuration tag for its next conditional write.
    pub fn check_read(
        &self,
        current: Option<ResourceVersion<'_>>,
        tag: Option<&ConfigTag>,
    ) -> Option<Response> {
        let mut response = match self.precondition.validators.evaluate(current, true) {
            Verdict::Proceed => return None,
            Verdict::NotModified => {
                let mut response = StatusCode::NOT_MODIFIED.into_response();
                if let Some(version) = current
                    && self.etags
                {
                    version_headers(response.headers_mut(), version);
                }
                response
            }
            Verdict::Failed => ApiError::Store(crate::store::StoreError::resource_changed(
                &self.precondition.validators,
                current,
            ))
            .into_response(),
        };
        if let Some(tag) = tag {
            response
                .headers_mut()
                .insert(CONFIGURATION_TAG, configuration_tag_value(tag));
        }
        Some(response)
    }

    /// For a write to a resource served in several media types, whose representations' tags
    /// are its stored tag followed by one of `suffixes` (see [`representation_tag`]): lets
    /// `If-Match` and `If-None-Match` name the current version by the tag of any of its
    /// representations. The store compares against the stored tag, and a write changes the
    /// resource, not one of its representations; a tag of none of the current version's
    /// representations still fails. Reads are not widened: a 304 is for the representation
    /// asked for only.
    pub fn for_any_representation(mut self, suffixes: &[&str]) -> Self {
        let validators = &mut self.precondition.validators;
        for condition in [&mut validators.if_match, &mut validators.if_none_match]
            .into_iter()
            .flatten()
        {
            let TagCondition::Tags(tags) = condition else {
                continue;
            };
            for tag in tags {
                if let Some(stored) = suffixes
                    .iter()
                    .find_map(|suffix| tag.opaque.strip_suffix(suffix))
                {
                    tag.opaque.truncate(stored.len());
                }
            }
        }
        self
    }

    /// Answers a GET or HEAD of a stored record read at `tag`: the 304 or 412 its validators
    /// call for, or the 200 `body` builds, with the configuration tag and the record's
    /// validators (from the bytes stored with it). `body` runs only when it is needed.
    pub fn read_record<T: Tagged>(
        &self,
        record: &Versioned<T>,
        tag: &ConfigTag,
        body: impl FnOnce() -> Result<Answer, ApiError>,
    ) -> Result<Response, ApiError> {
        self.read(record.version(), tag, body, |headers| {
            self.add_record_validators(headers, record)
        })
    }

    /// As [`Conditions::read_record`], for a representation whose validators are `version`
    /// (a list, or one of several media types).
    pub fn read_version(
        &self,
        version: ResourceVersion<'_>,
        tag: &ConfigTag,
        body: impl FnOnce() -> Result<Answer, ApiError>,
    ) -> Result<Response, ApiError> {
        self.read(version, tag, body, |headers| {
            self.add_validators(headers, version)
        })
    }

    /// The steps both share; `validators` adds the 200's `ETag` and `Last-Modified`.
    fn read(
        &self,
        version: ResourceVersion<'_>,
        tag: &ConfigTag,
        body: impl FnOnce() -> Result<Answer, ApiError>,
        validators: impl FnOnce(&mut HeaderMap),
    ) -> Result<Response, ApiError> {
        if let Some(answer) = self.check_read(Some(version), Some(tag)) {
            return Ok(answer);
        }
        let mut answer = body()?.with_tag(tag);
        validators(&mut answer.headers);
        Ok(answer.into_response())
    }

    /// Adds `ETag` and `Last-Modified` for a stored record, unless ETags are off.
    pub fn add_record_validators<T>(&self, headers: &mut HeaderMap, record: &Versioned<T>) {
        if self.etags {
            record_headers(headers, record);
        }
    }

    /// Adds `ETag` and `Last-Modified` for `version`, unless ETags are off.
    pub fn add_validators(&self, headers: &mut HeaderMap, version: ResourceVersion<'_>) {
        if self.etags {
            version_headers(headers, version);
        }
    }
}

/// The strong entity tag of a representation of a resource served in several media types,
/// other than the one its stored tag names: that tag followed by the representation's
/// `suffix`. Representations must not share a strong tag (RFC 9110 §8.8.3), and this one costs
/// no hash; [`Conditions::for_any_representation`] takes it back to the stored tag.
pub fn representation_tag(stored: &str, suffix: &str) -> String {
    let mut tag = String::with_capacity(stored.len() + suffix.len());
    tag.push_str(stored);
    tag.push_str(suffix);
    tag
}

/// Sets `ETag` (weak if the version's is) and, when known, `Last-Modified` for `version`.
pub fn version_headers(headers: &mut HeaderMap, version: ResourceVersion<'_>) {
    headers.insert(header::ETAG, etag_value(version.etag, version.weak));
    if let Some(modified) = version.last_modified {
        headers.insert(header::LAST_MODIFIED, http_date_value(modified));
    }
}

/// Sets `ETag` and `Last-Modified` for a stored record. The tag's bytes are shared, not
/// copied: every read of a resource answers with them.
pub fn record_headers<T>(headers: &mut HeaderMap, record: &Versioned<T>) {
    let etag = HeaderValue::from_maybe_shared(record.etag.quoted().clone())
        .expect("content tags are quoted hex");
    headers.insert(header::ETAG, etag);
    headers.insert(header::LAST_MODIFIED, http_date_value(record.updated));
}

/// The `X-Configuration-Tag` header value for `tag`, sharing its bytes rather than copying them.
pub fn configuration_tag_value(tag: &ConfigTag) -> HeaderValue {
    HeaderValue::from_maybe_shared(tag.to_bytes()).expect("tags are hex")
}

/// The `ETag` header value for an opaque tag.
pub fn etag_value(opaque: &str, weak: bool) -> HeaderValue {
    let mut text = String::with_capacity(opaque.len() + 4);
    if weak {
        text.push_str("W/");
    }
    text.push('"');
    text.push_str(opaque);
    text.push('"');
    // Takes the buffer over instead of copying it: this runs for every answer.
    HeaderValue::from_maybe_shared(Bytes::from(text)).expect("entity tags are visible ASCII")
}

fn http_date_value(millis: Timestamp) -> HeaderValue {
    HeaderValue::from_bytes(&imf_fixdate(millis)).expect("HTTP dates are ASCII")
}

/// `millis` (since the epoch, UTC) as an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`
/// (RFC 9110 §5.6.7), written straight into a buffer: `Last-Modified` goes out with every read,
/// and the general formatter cost more than the rest of the header work together.
fn imf_fixdate(millis: Timestamp) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let seconds = millis.max(0) / 1000;
    let days = seconds / 86_400;
    let in_day = seconds % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    let two = |out: &mut [u8; 29], at: usize, value: i64| {
        out[at] = b'0' + (value / 10) as u8;
        out[at + 1] = b'0' + (value % 10) as u8;
    };
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two(&mut out, 5, day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let year = year.min(9999);
    two(&mut out, 12, year / 100);
    two(&mut out, 14, year % 100);
    two(&mut out, 17, in_day / 3600);
    two(&mut out, 20, in_day / 60 % 60);
    two(&mut out, 23, in_day % 60);
    out
}

/// Parses `If-Match` or `If-None-Match`: `*`, or a comma-separated list of entity tags over
/// any number of header lines (RFC 9110 §13.1.1, §5.6.1). Anything else is a 400.
fn tag_condition(
    headers: &HeaderMap,
    name: &HeaderName,
    display_name: &str,
) -> Result<Option<TagCondition>, ApiError> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let malformed = || {
        ApiError::BadRequest(format!(
            "The {display_name} header must be \"*\" or a list of entity tags such as \"abc\" or W/\"abc\"."
        ))
    };
    let mut tags = Vec::new();
    let mut star = false;
    for value in values {
        let mut rest = value.to_str().map_err(|_| malformed())?.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start();
                continue;
            }
            if let Some(after) = rest.strip_prefix('*') {
                star = true;
                rest = after.trim_start();
            } else {
                let (weak, quoted) = match rest.strip_prefix("W/") {
                    Some(after) => (true, after),
                    None => (false, rest),
                };
                let body = quoted.strip_prefix('"').ok_or_else(malformed)?;
                let end = body.find('"').ok_or_else(malformed)?;
                let opaque = &body[..end];
                // etagc = %x21 / %x23-7E / obs-text: no spaces, no quotes.
                if !opaque
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
                {
                    return Err(malformed());
                }
                tags.push(EntityTag {
                    weak,
                    opaque: opaque.to_string(),
                });
                rest = body[end + 1..].trim_start();
            }
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(malformed()),
            }
        }
    }
    match (star, tags.is_empty()) {
        (true, true) => Ok(Some(TagCondition::Any)),
        (false, false) => Ok(Some(TagCondition::Tags(tags))),
        // "*" mixed with tags, or nothing but commas.
        _ => Err(malformed()),
    }
}

/// Parses `If-Modified-Since` or `If-Unmodified-Since`. RFC 9110 §13.1.3–4: a value that is
/// not a valid HTTP date is ignored, not an error.
fn http_date(headers: &HeaderMap, name: &HeaderName) -> Option<Timestamp> {
    let text = headers.get(name)?.to_str().ok()?;
    let time = httpdate::parse_http_date(text).ok()?;
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(since_epoch.as_millis() as Timestamp)
}

/// Parses `Idempotency-Key`: a structured-field string (`"…"` with `\"` and `\\` escapes and
/// optional parameters, which are ignored, as the draft specifies), or for convenience the
/// same characters unquoted. At most 255 characters of visible ASCII once unescaped.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::BadRequest(format!(
            "The Idempotency-Key header must be one quoted string of 1 to {MAX_KEY_LENGTH} visible ASCII characters, such as \"8e03978e-40d5-43e8-bc93-6894a57f9324\"."
        ))
    };
    if values.next().is_some() {
        return Err(malformed());
    }
    let text = value.to_str().map_err(|_| malformed())?.trim();
    let key = if text.starts_with('"') {
        let (key, parameters) = sf_string(text).ok_or_else(malformed)?;
        if !sf_parameters(parameters) {
            return Err(malformed());
        }
        key
    } else if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        text.to_string()
    } else {
        return Err(malformed());
    };
    if key.is_empty() || key.len() > MAX_KEY_LENGTH {
        return Err(malformed());
    }
    Ok(Some(key))
}

/// The sf-string at the start of `text` (RFC 8941 §3.3.3), unescaped, and what follows it.
fn sf_string(text: &str) -> Option<(String, &str)> {
    let quoted = text.strip_prefix('"')?;
    let mut string = String::new();
    let mut bytes = quoted.bytes().enumerate();
    while let Some((at, byte)) = bytes.next() {
        match byte {
            b'"' => return Some((string, &quoted[at + 1..])),
            b'\\' => match bytes.next() {
                Some((_, escaped @ (b'"' | b'\\'))) => string.push(char::from(escaped)),
                _ => return None,
            },
            0x20..=0x7e => string.push(char::from(byte)),
            _ => return None,
        }
    }
    None
}

/// Whether `text` is nothing but an item's parameters (RFC 8941 §3.1.2: `;key` or
/// `;key=value`, a value being a string or a token-like bare item).
fn sf_parameters(mut text: &str) -> bool {
    let is_key_start = |c: char| c.is_ascii_lowercase() || c == '*';
    let is_key = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.*".contains(c);
    let is_bare = |c: char| c.is_ascii_alphanumeric() || ":/!#$%&'*+-.^_`|~".contains(c);
    while let Some(rest) = text.strip_prefix(';') {
        let rest = rest.trim_start_matches(' ');
        if !rest.starts_with(is_key_start) {
            return false;
        }
        let rest = rest.trim_start_matches(is_key);
        text = match rest.strip_prefix('=') {
            Some(value) if value.starts_with('"') => match sf_string(value) {
                Some((_, after)) => after,
                None => return false,
            },
            Some(value) if value.starts_with(is_bare) => value.trim_start_matches(is_bare),
            Some(_) => return false,
            None => rest,
        };
    }
    text.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<Option<TagCondition>, ApiError> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header::IF_MATCH, HeaderValue::from_str(line).unwrap());
        }
        tag_condition(&headers, &header::IF_MATCH, "If-Match")
    }

    fn tag(opaque: &str, weak: bool) -> EntityTag {
        EntityTag {
            weak,
            opaque: opaque.into(),
        }
    }

    #[test]
    fn entity_tag_lists_star_and_weak_tags() {
        assert!(matches!(parse(&[]), Ok(None)));
        assert_eq!(parse(&["*"]).unwrap(), Some(TagCondition::Any));
        assert_eq!(
            parse(&["\"a\", W/\"b\"", " \"c\" ,,"]).unwrap(),
            Some(TagCondition::Tags(vec![
                tag("a", false),
                tag("b", true),
                tag("c", false)
            ]))
        );
        assert_eq!(
            parse(&["\"\""]).unwrap(),
            Some(TagCondition::Tags(vec![tag("", false)]))
        );
    }

    #[test]
    fn malformed_entity_tags_are_rejected() {
        for bad in [
            "abc",
            "\"abc",
            "W/abc",
            "\"a\" \"b\"",
            "*, \"a\"",
            ",",
            "\"a b\"",
            "w/\"a\"",
        ] {
            assert!(
                matches!(parse(&[bad]), Err(ApiError::BadRequest(_))),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn a_write_names_the_current_version_by_the_tag_of_any_representation() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_MATCH,
            HeaderValue::from_static(
                "\"abc-msgpack\", W/\"def-msgpack\", \"ghi\", \"-msgpack-msgpack\"",
            ),
        );
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"jkl-msgpack\""),
        );
        let conditions = Conditions::from_headers(&headers, &Method::PUT, IfMatchPolicy::Optional)
            .unwrap()
            .for_any_representation(&["-msgpack"]);
        let validators = &conditions.precondition.validators;
        assert_eq!(
            validators.if_match,
            Some(TagCondition::Tags(vec![
                tag("abc", false),
                tag("def", true),
                tag("ghi", false),
                tag("-msgpack", false),
            ]))
        );
        assert_eq!(
            validators.if_none_match,
            Some(TagCondition::Tags(vec![tag("jkl", false)]))
        );
        assert_eq!(representation_tag("abc", "-msgpack"), "abc-msgpack");

        headers.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        let star = Conditions::from_headers(&headers, &Method::PUT, IfMatchPolicy::Optional)
            .unwrap()
            .for_any_representation(&["-msgpack"]);
        assert_eq!(
            star.precondition.validators.if_match,
            Some(TagCondition::Any)
        );
    }

    #[test]
    fn idempotency_keys() {
        let key = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(value).unwrap());
            idempotency_key(&headers)
        };
        assert_eq!(key("\"abc-1\"").unwrap(), Some("abc-1".into()));
        assert_eq!(key("abc-1").unwrap(), Some("abc-1".into()));
        // Escapes and parameters, as any structured-field string may have.
        assert_eq!(key(r#""a\"b\\c""#).unwrap(), Some(r#"a"b\c"#.into()));
        assert_eq!(key(r#""x";p=1"#).unwrap(), Some("x".into()));
        assert_eq!(
            key(r#""x"; p="q;r";flag;*t=tok/en"#).unwrap(),
            Some("x".into())
        );
        assert_eq!(key("\"with space\"").unwrap(), Some("with space".into()));
        for malformed in [
            "\"\"",
            "\"abc",
            r#""a\b""#,
            r#""x";"#,
            r#""x";P=1"#,
            r#""x";p="#,
            r#""x" ;p=1"#,
            r#""x"y"#,
            "\"\u{e9}\"",
        ] {
            assert!(key(malformed).is_err(), "{malformed}");
        }
        assert!(key(&"x".repeat(256)).is_err());
        assert!(key(&format!("\"{}\"", "x".repeat(255))).is_ok());
        assert!(idempotency_key(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn dates_are_parsed_or_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        headers.insert(
            header::IF_UNMODIFIED_SINCE,
            HeaderValue::from_static("yesterday"),
        );
        assert_eq!(
            http_date(&headers, &header::IF_MODIFIED_SINCE),
            Some(784_111_777_000)
        );
        assert_eq!(http_date(&headers, &header::IF_UNMODIFIED_SINCE), None);
    }

    #[test]
    fn http_dates_match_the_general_formatter() {
        // Every day from 1970 to 2100 at varying times, leap days and century years included,
        // plus the edges: the epoch, a negative time (clamped to the epoch), the year 9999.
        let mut samples: Vec<Timestamp> = (0..47_847i64)
            .map(|day| day * 86_400_000 + (day * 7_919_123) % 86_400_000)
            .collect();
        samples.extend([0, 999, -5_000, 253_402_300_799_000]);
        for millis in samples {
            let time =
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis.max(0) as u64);
            assert_eq!(
                std::str::from_utf8(&imf_fixdate(millis)).unwrap(),
                httpdate::fmt_http_date(time),
                "{millis}"
            );
        }
    }
}
