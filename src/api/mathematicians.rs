//! `/api/mathematicians`: the historical-modeling API. Creation is safe to retry because the
//! client holds the unique id before it POSTs (`GET /new` mints one and stores nothing); a
//! name is never overwritten — concurrent edits are kept as candidate versions, and a PUT that
//! names all of them merges them.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::answer::Answer;
use super::body::WriteRequest;
use super::conditional::{Conditions, record_headers};
use super::meta::MetaFields;
use super::segment::Segment;
use super::{ApiError, AppState, Render, list_answer};
use crate::model::mathematician::{Mathematician, VersionHash};
use crate::model::{Collection, NameChange, Operation, Outcome, Target, Versioned, schema};
use crate::store::Committed;

const NOT_FOUND: &str = "Mathematician not found.";

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/mathematicians",
            get(list_mathematicians).post(create_mathematician),
        )
        // A literal segment wins over the parameter, so `new` is never taken for an id.
        .route("/api/mathematicians/new", get(new_mathematician))
        .route(
            "/api/mathematicians/{unique}",
            get(get_mathematician).put(name_mathematician),
        )
}

/// The body of a POST or PUT.
#[derive(Debug, Deserialize)]
struct MathematicianBody {
    unique: String,
    name: NameBody,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameBody {
    ids: Vec<String>,
    first_name: String,
    last_name: String,
}

/// Decodes a POST or PUT body into the name change it asks for.
fn decode_name_change(request: &WriteRequest) -> Result<NameChange, ApiError> {
    let body: MathematicianBody = request.decode(&schema::MATHEMATICIAN)?;
    let unique = parse_unique(&body.unique).ok_or_else(|| {
        ApiError::BadRequest(format!("\"unique\" must be a GUID, not {:?}.", body.unique))
    })?;
    let mut seen = Vec::with_capacity(body.name.ids.len());
    for (index, id) in body.name.ids.iter().enumerate() {
        match VersionHash::from_base64(id) {
            Ok(Some(hash)) => seen.push(hash),
            // A well-formed id that cannot be any version's: it names nothing, and unknown
            // ids are ignored.
            Ok(None) => {}
            Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "name.ids[{index}] is not base64: {id:?}."
                )));
            }
        }
    }
    Ok(NameChange {
        unique,
        seen,
        first_name: Some(body.name.first_name),
        last_name: Some(body.name.last_name),
    })
}

/// Any spelling .NET's `Guid.TryParse` accepts: 32 digits, hyphenated, in braces or
/// parentheses, any case.
fn parse_unique(text: &str) -> Option<Uuid> {
    let inner = text
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(text);
    Uuid::try_parse(inner).ok()
}

/// Where this server is, as the client addressed it, for absolute links: `--public-url` if
/// given, else the request's host and the scheme it came in by (the original's `Url.Link`
/// takes both from the request).
///
/// A `Host` that is not a host and port (spaces, quotes, a path, user info) is a 400, as the
/// original's server (Kestrel) answers it, rather than a link and a `Location` made from it.
fn base_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    // Behind a proxy, what the client addressed is not what floe sees; the operator says it.
    if let Some(public_url) = &state.settings.public_url {
        return Ok(public_url.clone());
    }
    let scheme = if state.settings.https {
        "https"
    } else {
        "http"
    };
    // No host, or an empty one (which HTTP allows), names no host: this one, then.
    let Some(host) = headers.get(header::HOST).filter(|host| !host.is_empty()) else {
        return Ok(format!("{scheme}://localhost"));
    };
    let authority = host
        .to_str()
        .ok()
        .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
        .filter(|authority| !authority.as_str().contains('@'))
        .filter(|authority| has_valid_port(authority.as_str()))
        .ok_or_else(|| ApiError::BadRequest("Invalid Host header.".into()))?;
    Ok(format!("{scheme}://{authority}"))
}

/// Whether a host's port, if it has one, is a number (the `Authority` parser takes any text).
fn has_valid_port(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        // An IPv6 literal without a port ends in `]`; its colons are not a port's.
        Some((_, port)) if !authority.ends_with(']') => port.parse::<u16>().is_ok(),
        _ => true,
    }
}

fn self_href(base: &str, unique: &Uuid) -> String {
    format!("{base}/api/mathematicians/{unique}")
}

/// The representation: the current version ids in creation order, and the name of the one
/// with the smallest hash (several ids mean unresolved concurrent edits).
fn representation(record: &Versioned<Mathematician>, base: &str, meta: &MetaFields) -> Value {
    let mathematician = &record.value;
    let ids: Vec<String> = mathematician
        .current()
        .iter()
        .map(|version| version.hash.to_base64())
        .collect();
    let shown = mathematician.shown();
    let mut object = Map::new();
    object.insert("unique".into(), json!(mathematician.unique));
    object.insert(
        "name".into(),
        json!({
            "ids": ids,
            "firstName": shown.and_then(|v| v.first_name.as_deref()),
            "lastName": shown.and_then(|v| v.last_name.as_deref()),
        }),
    );
    object.insert(
        "_links".into(),
        json!({ "self": { "href": self_href(base, &mathematician.unique) } }),
    );
    meta.annotate(&mut object, record);
    Value::Object(object)
}

async fn new_mathematician(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let unique = Uuid::new_v4();
    let body = json!({
        "unique": unique,
        "name": { "ids": [], "firstName": null, "lastName": null },
        "_links": { "self": { "href": self_href(&base_url(&state, &headers)?, &unique) } },
    });
    let mut answer = Answer::json(StatusCode::OK, serde_json::to_vec(&body).expect("JSON"));
    // Every call mints a new id: never cache it.
    answer
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(answer.into_response())
}

/// The list's ETag is the configuration tag of the last change to a mathematician, as for
/// every configuration list.
async fn list_mathematicians(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let base = base_url(&state, &headers)?;
    state
        .hold_for_list(&conditions, Collection::Mathematicians)
        .await;
    let snapshot = state.store.read();
    Ok(list_answer(
        &conditions,
        snapshot.lists.tag(Collection::Mathematicians).as_str(),
        Some(&snapshot.tag),
        || {
            let items: Vec<Value> = snapshot
                .configuration
                .mathematicians()
                .map(|record| representation(record, &base, &state.settings.meta))
                .collect();
            serde_json::to_vec(&items).expect("JSON")
        },
    ))
}

async fn get_mathematician(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    Segment(unique): Segment,
) -> Result<Response, ApiError> {
    let snapshot = state.store.read();
    let record = parse_unique(&unique)
        .and_then(|unique| snapshot.configuration.mathematician(&unique))
        .ok_or(ApiError::NotFound(NOT_FOUND))?;
    conditions.read_record(record, &snapshot.tag, || {
        let body = representation(record, &base_url(&state, &headers)?, &state.settings.meta);
        Ok(Answer::json(
            StatusCode::OK,
            serde_json::to_vec(&body).expect("JSON"),
        ))
    })
}

/// POST is idempotent by `unique`: the first creates, any later one changes nothing; both
/// answer 201 with the current representation.
async fn create_mathematician(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    let rendering = Rendering {
        base: base_url(&state, &headers)?,
        meta: state.settings.meta.clone(),
    };
    state
        .write(conditions, &request, |request| {
            let change = decode_name_change(request)?;
            Ok((
                Operation::CreateMathematician(change),
                mathematician_answer(StatusCode::CREATED, rendering),
            ))
        })
        .await
}

/// PUT names the mathematician in the URL; a different `unique` in the body is a 400 rather
/// than silently editing another mathematician (the original used the body's and ignored the
/// URL's).
async fn name_mathematician(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    Segment(unique): Segment,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    let url_unique = parse_unique(&unique).ok_or(ApiError::NotFound(NOT_FOUND))?;
    let rendering = Rendering {
        base: base_url(&state, &headers)?,
        meta: state.settings.meta.clone(),
    };
    let target = Some(Target::Mathematician(url_unique));
    state
        .write(conditions.aimed_at(target), &request, |request| {
            let change = decode_name_change(request)?;
            if change.unique != url_unique {
                return Err(ApiError::BadRequest(format!(
                    "The body's \"unique\" ({}) differs from the one in the URL ({url_unique}).",
                    change.unique
                )));
            }
            Ok((
                Operation::NameMathematician(change),
                mathematician_answer(StatusCode::OK, rendering),
            ))
        })
        .await
}

/// What a write's answer is rendered with, taken from its request before the write.
struct Rendering {
    /// The server's address as the client named it, for absolute links.
    base: String,
    /// The meta fields' names.
    meta: MetaFields,
}

/// Renders the mathematician a write left: the representation, with `Location` on a create.
fn mathematician_answer(status: StatusCode, rendering: Rendering) -> Render {
    let Rendering { base, meta } = rendering;
    Box::new(move |committed: &Committed| {
        let Outcome::Mathematician(record) = &committed.outcome else {
            unreachable!("mathematician operations answer with a mathematician")
        };
        tracing::debug!(unique = %record.value.unique, versions = record.value.versions.len(), revision = committed.revision, "mathematician written");
        let body = representation(record, &base, &meta);
        let mut answer =
            Answer::json(status, serde_json::to_vec(&body).expect("JSON")).with_tag(&committed.tag);
        if status == StatusCode::CREATED {
            let href = self_href(&base, &record.value.unique);
            if let Ok(location) = HeaderValue::from_str(&href) {
                answer.headers.insert(header::LOCATION, location);
            }
        }
        record_headers(&mut answer.headers, record);
        answer
    })
}
