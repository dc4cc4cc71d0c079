//! `/api/{version}/packages`: Project FiFo's packages API (wiggle), for any version string
//! (`0.1.0`, `2`, …). Lists, creates (303 See Other), reads and deletes packages and changes
//! their metadata path by path with FiFo's deep-merge rules. Bodies are JSON or msgpack, by
//! `Content-Type` and `Accept`. Writes go through [`AppState::write`], so preconditions,
//! `Idempotency-Key` and the configuration tag work here as everywhere; creation is also safe
//! to retry by a client-held `uuid` from `GET .../packages/new`.

use std::borrow::Cow;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::answer::Answer;
use super::auth::Caller;
use super::body::{WriteRequest, checked, integer_out_of_range};
use super::conditional::{Conditions, representation_tag, version_headers};
use super::cors::{self, options};
use super::meta::MetaFields;
use super::segment::{PathParams, decoded_segments, encoded_segment};
use super::{ApiError, AppState, Render};
use crate::model::package::{Package, Requirement, sorted};
use crate::model::precondition::ResourceVersion;
use crate::model::{Collection, Operation, Outcome, Target, Versioned, schema, tag_of_canonical};
use crate::store::{Committed, Snapshot, StoreError};

const NOT_FOUND: &str = "Package not found.";

/// The msgpack media type FiFo speaks.
pub const MSGPACK: &str = "application/x-msgpack";

/// What a package's msgpack representation adds to its stored entity tag, which names the JSON
/// one, to make its own.
const MSGPACK_TAG_SUFFIX: &str = "-msgpack";

/// How deeply a msgpack body may nest (serde_json's limit for JSON bodies).
const MAX_DEPTH: usize = 128;

const FULL_LIST: HeaderName = HeaderName::from_static("x-full-list");
const FULL_LIST_FIELDS: HeaderName = HeaderName::from_static("x-full-list-fields");

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/{version}/packages",
            get(list_packages)
                .post(create_package)
                .options(|| options("HEAD, OPTIONS, GET, POST")),
        )
        // A literal segment wins over the parameter, so `new` is never taken for an id.
        .route(
            "/api/{version}/packages/new",
            get(new_package).options(|| options("HEAD, OPTIONS, GET")),
        )
        .route(
            "/api/{version}/packages/{uuid}",
            get(get_package)
                .put(put_package)
                .delete(delete_package)
                .options(|| options("HEAD, OPTIONS, GET, PUT, DELETE")),
        )
        .route(
            "/api/{version}/packages/{uuid}/metadata",
            put(set_metadata)
                .delete(delete_metadata)
                .options(|| options("HEAD, OPTIONS, PUT, DELETE")),
        )
        .route(
            "/api/{version}/packages/{uuid}/metadata/{*path}",
            put(set_metadata)
                .delete(delete_metadata)
                .options(|| options("HEAD, OPTIONS, PUT, DELETE")),
        )
        .layer(axum::middleware::from_fn(cors::cors))
}

/// The two media types of this API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`, the default.
    Json,
    /// `application/x-msgpack`.
    MsgPack,
}

impl Format {
    fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::MsgPack => MSGPACK,
        }
    }

    /// The format a request body is in, from its `Content-Type` (parameters ignored); any
    /// other type, or none, is a 415.
    pub fn of_request(headers: &HeaderMap) -> Result<Format, ApiError> {
        let essence = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        match essence.as_deref() {
            Some("application/json") => Ok(Format::Json),
            Some("application/x-msgpack") | Some("application/msgpack") => Ok(Format::MsgPack),
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }

    /// The format to answer in, from `Accept`: the acceptable type with the highest quality,
    /// where the most specific matching range decides a type's quality; JSON on a tie and when
    /// there is no `Accept` (FiFo answered msgpack to `*/*`; JSON is what curl users expect).
    /// Nothing acceptable is a 406.
    pub fn of_answer(headers: &HeaderMap) -> Result<Format, ApiError> {
        let ranges: Vec<(String, f32)> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(parse_range)
            .collect();
        if ranges.is_empty() {
            return Ok(Format::Json);
        }
        let quality = |format: Format| {
            let (kind, _) = format.media_type().split_once('/').expect("a media type");
            ranges
                .iter()
                .filter_map(|(range, q)| {
                    let specificity = if range == format.media_type() {
                        2
                    } else if range == &format!("{kind}/*") {
                        1
                    } else if range == "*/*" {
                        0
                    } else {
                        return None;
                    };
                    Some((specificity, *q))
                })
                .max_by_key(|(specificity, _)| *specificity)
                .map_or(0.0, |(_, q)| q)
        };
        let (json, msgpack) = (quality(Format::Json), quality(Format::MsgPack));
        if json <= 0.0 && msgpack <= 0.0 {
            Err(ApiError::NotAcceptable)
        } else if msgpack > json {
            Ok(Format::MsgPack)
        } else {
            Ok(Format::Json)
        }
    }

    /// The strong entity tag of `record` in this format: the stored tag for JSON, and one
    /// derived from it for msgpack, so that the two never share a tag and a validator of one
    /// never revalidates the other.
    fn etag(self, record: &Versioned<Package>) -> Cow<'_, str> {
        match self {
            Format::Json => Cow::Borrowed(record.etag.as_str()),
            Format::MsgPack => {
                Cow::Owned(representation_tag(record.etag.as_str(), MSGPACK_TAG_SUFFIX))
            }
        }
    }

    /// Decodes a body in this format into a JSON value.
    fn decode(self, body: &[u8]) -> Result<Value, ApiError> {
        match self {
            Format::Json => {
                let value = serde_json::from_slice(body).map_err(|_| ApiError::UndecodableBody)?;
                if let Some(literal) = integer_out_of_range(body) {
                    return Err(ApiError::BadRequest(format!(
                        "The integer {literal} is out of range: integers must fit in 64 bits."
                    )));
                }
                Ok(value)
            }
            Format::MsgPack => {
                let mut decoder = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
                // The same nesting limit as serde_json's: rmp_serde's own (1024) is deep
                // enough to overflow a worker thread's stack.
                decoder.set_max_depth(MAX_DEPTH);
                let value =
                    Value::deserialize(&mut decoder).map_err(|_| ApiError::UndecodableBody)?;
                // One value and nothing after it, as serde_json demands of a JSON body: bytes
                // left over mean a damaged or concatenated body, whose first value is not
                // necessarily what the client meant to send.
                if decoder.position() != body.len() as u64 {
                    return Err(ApiError::UndecodableBody);
                }
                Ok(value)
            }
        }
    }

    /// An answer with `value` in this format.
    fn answer(self, status: StatusCode, value: &Value) -> Answer {
        let body = match self {
            Format::Json => serde_json::to_vec(value).expect("JSON"),
            Format::MsgPack => rmp_serde::to_vec_named(value).expect("msgpack"),
        };
        let mut answer = Answer::json(status, body);
        answer.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.media_type()),
        );
        answer
    }
}

/// One media range of `Accept` (parameters other than `q` ignored) with its quality.
fn parse_range(text: &str) -> Option<(String, f32)> {
    let mut parts = text.split(';');
    let range = parts.next()?.trim().to_ascii_lowercase();
    if range.is_empty() {
        return None;
    }
    let mut quality = 1.0;
    for parameter in parts {
        if let Some((name, value)) = parameter.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            quality = value.trim().parse::<f32>().unwrap_or(0.0);
        }
    }
    Some((range, quality))
}

/// An answer without a body.
fn empty(status: StatusCode) -> Answer {
    Answer {
        status,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

/// The path parameters of this API's routes.
struct PackagePath {
    version: String,
    /// The package id; `None` when the segment is not a UUID, which finds no package.
    uuid: Option<Uuid>,
    /// The metadata path after `/metadata` (empty for `/metadata` itself).
    metadata: Vec<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for PackagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathParams(mut params) = PathParams::from_request_parts(parts, state).await?;
        let version = params.remove("version").unwrap_or_default();
        let uuid = params
            .get("uuid")
            .and_then(|uuid| Uuid::try_parse(uuid).ok());
        let metadata = match params.get("path") {
            Some(_) => {
                // From the raw path (`/api/{version}/packages/{uuid}/metadata/…`, none of whose
                // first segments can hold a `/`): the decoded parameter has lost which `/`
                // were escaped, and `%2F` belongs inside a key.
                let raw = parts.uri.path().splitn(7, '/').nth(6).unwrap_or_default();
                let segments = decoded_segments(raw.trim_end_matches('/'))?;
                if segments.iter().any(String::is_empty) {
                    return Err(ApiError::BadRequest(
                        "A metadata path has no empty segments.".into(),
                    ));
                }
                segments
            }
            None => Vec::new(),
        };
        Ok(PackagePath {
            version,
            uuid,
            metadata,
        })
    }
}

fn location(version: &str, uuid: &Uuid) -> String {
    format!("/api/{}/packages/{uuid}", encoded_segment(version))
}

/// The representation whose entity tag is `etag`: FiFo's object with its keys sorted, plus the
/// meta fields.
fn representation(
    record: &Versioned<Package>,
    meta: &MetaFields,
    etag: &str,
) -> Map<String, Value> {
    let Value::Object(mut object) = serde_json::to_value(&record.value).expect("packages are JSON")
    else {
        unreachable!("a package serialises to an object")
    };
    meta.annotate_as(&mut object, record, etag);
    object.sort_keys();
    object
}

/// A list option: the query parameter (API 2) wins over FiFo's older header.
fn wants(
    query: &[(String, String)],
    name: &str,
    headers: &HeaderMap,
    header: &HeaderName,
) -> Option<String> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .or_else(|| {
            headers
                .get(header)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        })
}

/// The version of `record` that validators are compared with, as a representation of it whose
/// entity tag is `etag` shows it.
fn shown_version<'a>(record: &Versioned<Package>, etag: &'a str) -> ResourceVersion<'a> {
    ResourceVersion::strong(etag, Some(record.updated))
}

/// UUIDs, or full objects (optionally reduced to some top-level keys, matched exactly).
async fn list_packages(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    caller: Option<axum::Extension<Caller>>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = caller.map_or(Caller::Anyone, |axum::Extension(caller)| caller);
    let who = caller.key();
    let format = Format::of_answer(&headers)?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::BadRequest(format!("Invalid query: {}.", rejection.body_text()))
    })?;
    // Only `true` and `True` mean yes, as in FiFo.
    let full = wants(&query, "full-list", &headers, &FULL_LIST)
        .is_some_and(|value| value == "true" || value == "True");
    let fields: Option<Vec<String>> =
        wants(&query, "full-list-fields", &headers, &FULL_LIST_FIELDS)
            .filter(|_| full)
            .map(|fields| fields.split(',').map(String::from).collect());
    // The list's ETag follows the configuration, the shape asked for and who asks.
    let list_etag = |tag: &str| {
        tag_of_canonical(format!("{tag}|{format:?}|{full}|{fields:?}|{who}").as_bytes()).to_string()
    };
    // `Prefer: wait=N` with the current ETag holds the request until the list changes.
    state
        .waits
        .hold_while_unchanged(
            &conditions,
            || state.store.subscribe(),
            || list_etag(state.store.read().lists.tag(Collection::Packages).as_str()),
        )
        .await;
    let snapshot = state.store.read();
    let etag = list_etag(snapshot.lists.tag(Collection::Packages).as_str());
    let version = ResourceVersion::strong(&etag, None);
    conditions.read_version(version, &snapshot.tag, || {
        Ok(format.answer(
            StatusCode::OK,
            &Value::Array(listed(
                &snapshot,
                &caller,
                &state.settings.meta,
                format,
                full,
                fields.as_deref(),
            )),
        ))
    })
}

/// The items of a packages list: the packages `caller` may get, as FiFo filters its list,
/// each its uuid or (`full`) its representation, reduced to `fields` if given.
fn listed(
    snapshot: &Snapshot,
    caller: &Caller,
    meta: &MetaFields,
    format: Format,
    full: bool,
    fields: Option<&[String]>,
) -> Vec<Value> {
    snapshot
        .configuration
        .packages()
        .filter(|record| {
            let uuid = record.value.uuid.to_string();
            caller.may(&[String::from("packages"), uuid, String::from("get")])
        })
        .map(|record| {
            if !full {
                return json!(record.value.uuid);
            }
            let object = representation(record, meta, &format.etag(record));
            match &fields {
                None => Value::Object(object),
                Some(fields) => Value::Object(
                    object
                        .into_iter()
                        .filter(|(key, _)| fields.contains(key))
                        .collect(),
                ),
            }
        })
        .collect()
}

/// A fresh id and an empty template; stores nothing.
async fn new_package(headers: HeaderMap, path: PackagePath) -> Result<Response, ApiError> {
    let format = Format::of_answer(&headers)?;
    let uuid = Uuid::new_v4();
    let template = json!({
        "compression": "off",
        "metadata": {},
        "name": "",
        "requirements": [],
        "uuid": uuid,
    });
    let mut answer = format.answer(StatusCode::OK, &template);
    // Every call mints a new id: never cache it.
    answer
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(href) = HeaderValue::from_str(&location(&path.version, &uuid)) {
        answer.headers.insert(header::CONTENT_LOCATION, href);
    }
    Ok(answer.into_response())
}

async fn get_package(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    path: PackagePath,
) -> Result<Response, ApiError> {
    let format = Format::of_answer(&headers)?;
    let snapshot = state.store.read();
    let record = path
        .uuid
        .and_then(|uuid| snapshot.configuration.package(&uuid))
        .ok_or(ApiError::NotFound(NOT_FOUND))?;
    // The validators are compared with the tag of the representation this GET is answered
    // with: a client that holds the other one has not seen this one.
    let etag = format.etag(record);
    let version = shown_version(record, &etag);
    conditions.read_version(version, &snapshot.tag, || {
        let body = Value::Object(representation(record, &state.settings.meta, &etag));
        Ok(format.answer(StatusCode::OK, &body))
    })
}

/// The body of a create: FiFo's settable fields, checked by the `package_create` schema.
#[derive(Debug, Deserialize)]
struct CreateBody {
    uuid: Option<Uuid>,
    name: String,
    ram: Option<u64>,
    quota: Option<u64>,
    cpu_cap: Option<u64>,
    max_swap: Option<u64>,
    zfs_io_priority: Option<u64>,
    blocksize: Option<u64>,
    compression: Option<String>,
    #[serde(default)]
    requirements: Vec<Requirement>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

impl CreateBody {
    fn into_package(self) -> Package {
        let mut package = Package::new(self.uuid.unwrap_or_else(Uuid::new_v4), self.name);
        package.ram = self.ram;
        package.quota = self.quota;
        package.cpu_cap = self.cpu_cap;
        package.max_swap = self.max_swap;
        package.zfs_io_priority = self.zfs_io_priority;
        package.blocksize = self.blocksize;
        if let Some(compression) = self.compression {
            package.compression = compression;
        }
        package.set_requirements(self.requirements);
        if let Value::Object(metadata) = sorted(Value::Object(self.metadata)) {
            package.metadata = metadata;
        }
        package
    }
}

/// Creates a package and answers 303 See Other to it, as FiFo does. With a `uuid` the client
/// got from `GET .../new`, a retry finds the package and answers the same 303.
async fn create_package(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    path: PackagePath,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    let answer_format = Format::of_answer(&headers)?;
    let format = Format::of_request(&headers)?;
    write_package(
        &state,
        conditions,
        &request,
        answer_format,
        move |request| {
            let body: CreateBody = checked(format.decode(&request.body)?, &schema::PACKAGE_CREATE)?;
            Ok((
                Operation::CreatePackage(body.into_package()),
                package_answer(
                    StatusCode::SEE_OTHER,
                    Some(path.version),
                    Some(answer_format),
                ),
            ))
        },
    )
    .await
}

/// FiFo has no in-place update of a package's fields.
async fn put_package(path: PackagePath) -> ApiError {
    ApiError::BadRequest(format!(
        "A package's fields cannot be changed; only its metadata (PUT /api/{}/packages/{{uuid}}/metadata/...).",
        path.version
    ))
}

async fn delete_package(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    path: PackagePath,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    let answer_format = Format::of_answer(&headers)?;
    let uuid = path.uuid.ok_or(ApiError::NotFound(NOT_FOUND))?;
    write_package(&state, conditions, &request, answer_format, move |_| {
        Ok((
            Operation::DeletePackage { uuid },
            package_answer(StatusCode::NO_CONTENT, None, None),
        ))
    })
    .await
}

/// `PUT .../metadata[/p1/…]` with `{"k": v}` sets `p1.….k` to `v`, merging objects.
async fn set_metadata(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    path: PackagePath,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    let answer_format = Format::of_answer(&headers)?;
    let format = Format::of_request(&headers)?;
    let uuid = path.uuid.ok_or(ApiError::NotFound(NOT_FOUND))?;
    write_package(
        &state,
        conditions.aimed_at(Some(Target::Package(uuid))),
        &request,
        answer_format,
        move |request| {
            let value = format.decode(&request.body)?;
            let Value::Object(object) = value else {
                return Err(one_key());
            };
            if object.len() != 1 {
                return Err(one_key());
            }
            let (key, value) = object.into_iter().next().expect("one key");
            let mut metadata = path.metadata;
            metadata.push(key);
            Ok((
                Operation::SetPackageMetadata {
                    uuid,
                    path: metadata,
                    value,
                },
                package_answer(StatusCode::NO_CONTENT, None, Some(answer_format)),
            ))
        },
    )
    .await
}

fn one_key() -> ApiError {
    ApiError::BadRequest("The body must be an object with exactly one key.".into())
}

/// `DELETE .../metadata/p1/…` removes that value; a path that leads nowhere is still a 204.
async fn delete_metadata(
    State(state): State<AppState>,
    conditions: Conditions,
    headers: HeaderMap,
    path: PackagePath,
    request: WriteRequest,
) -> Result<Response, ApiError> {
    let answer_format = Format::of_answer(&headers)?;
    if path.metadata.is_empty() {
        return Err(ApiError::BadRequest(
            "Name the metadata to delete: DELETE .../metadata/<key>[/<key>…].".into(),
        ));
    }
    let uuid = path.uuid.ok_or(ApiError::NotFound(NOT_FOUND))?;
    write_package(&state, conditions, &request, answer_format, move |_| {
        Ok((
            Operation::RemovePackageMetadata {
                uuid,
                path: path.metadata,
            },
            package_answer(StatusCode::NO_CONTENT, None, Some(answer_format)),
        ))
    })
    .await
}

/// Submits a write to a package. Its `If-Match` and `If-None-Match` may name the current
/// version by the ETag of either representation, JSON or msgpack; a 412 names it by the ETag
/// of the representation the client reads (`answer_format`), the one it can revalidate with.
async fn write_package(
    state: &AppState,
    conditions: Conditions,
    request: &WriteRequest,
    answer_format: Format,
    decode: impl FnOnce(&WriteRequest) -> Result<(Operation, Render), ApiError>,
) -> Result<Response, ApiError> {
    let conditions = conditions.for_any_representation(&[MSGPACK_TAG_SUFFIX]);
    state
        .write(conditions, request, decode)
        .await
        .map_err(|error| match (answer_format, error) {
            (
                Format::MsgPack,
                ApiError::Refused {
                    error:
                        StoreError::ResourceChanged {
                            current_etag: Some(stored),
                            by_date,
                        },
                    tag,
                },
            ) => ApiError::Refused {
                error: StoreError::ResourceChanged {
                    current_etag: Some(representation_tag(&stored, MSGPACK_TAG_SUFFIX)),
                    by_date,
                },
                tag,
            },
            (_, error) => error,
        })
}

/// Renders a package write: no body, the configuration tag, the package's new ETag, that of
/// its representation in `show_etag_of` (the format the client accepts; `None` after a
/// delete), and, on a create, `Location` (relative, as FiFo sends it). [`AppState::write`]
/// takes the ETag off when ETags are off.
fn package_answer(
    status: StatusCode,
    created_under: Option<String>,
    show_etag_of: Option<Format>,
) -> Render {
    Box::new(move |committed: &Committed| {
        let Outcome::Package(record) = &committed.outcome else {
            unreachable!("package operations answer with a package")
        };
        tracing::debug!(uuid = %record.value.uuid, revision = committed.revision, "package written");
        let mut answer = empty(status).with_tag(&committed.tag);
        if let Some(version) = created_under
            && let Ok(href) = HeaderValue::from_str(&location(&version, &record.value.uuid))
        {
            answer.headers.insert(header::LOCATION, href);
        }
        if let Some(format) = show_etag_of {
            version_headers(
                &mut answer.headers,
                shown_version(record, &format.etag(record)),
            );
        }
        answer
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::of_answer(&HeaderMap::new()).unwrap(), Format::Json);
        assert_eq!(Format::of_answer(&accept("*/*")).unwrap(), Format::Json);
        assert_eq!(
            Format::of_answer(&accept("application/x-msgpack")).unwrap(),
            Format::MsgPack
        );
        assert_eq!(
            Format::of_answer(&accept("application/json;q=0.5, application/x-msgpack")).unwrap(),
            Format::MsgPack
        );
        assert_eq!(
            Format::of_answer(&accept("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::of_answer(&accept("*/*, application/json;q=0")).unwrap(),
            Format::MsgPack
        );
        assert!(Format::of_answer(&accept("text/html")).is_err());
    }
}
