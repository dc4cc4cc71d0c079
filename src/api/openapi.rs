//! `GET /openapi.json`: an OpenAPI 3.1 description of every route floe serves, for client
//! generators, API explorers and fuzzers.
//!
//! The document is built once for each `--auth` mode, from `OPERATIONS` (one line per method
//! and path), `LINKS` (where a create's answer leads) and the request schemas the handlers
//! validate bodies with ([`crate::model::schema`]), so the shape a body is documented with is
//! the shape that is enforced; which operations are public is asked of the permission table.
//! `tests/openapi.rs` holds the table to the routers (a route added without a line here, or a
//! line without a route, fails it), and `tests/openapi_fuzz.rs` holds floe's answers to the
//! document.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::AppState;
use super::answer::Answer;
use super::auth::Rule;
use super::version::VERSION;
use crate::model::schema::{self, RequestSchema};

/// The route of the document.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(serve_document))
}

/// Authentication on or off (`--auth`) changes what may be called without credentials, so
/// there is one document for each.
async fn serve_document(State(state): State<AppState>) -> Response {
    static WITH_AUTHENTICATION: LazyLock<Bytes> = LazyLock::new(|| rendered(true));
    static WITHOUT: LazyLock<Bytes> = LazyLock::new(|| rendered(false));
    let bytes = if state.accounts.is_some() {
        &WITH_AUTHENTICATION
    } else {
        &WITHOUT
    };
    Answer::json(StatusCode::OK, Bytes::clone(bytes)).into_response()
}

fn rendered(authentication: bool) -> Bytes {
    Bytes::from(serde_json::to_vec(&document(authentication)).expect("the document serialises"))
}

/// Which of floe's APIs an operation belongs to (the document's tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Flocker,
    Agents,
    Mathematicians,
    Packages,
    Accounts,
    Meta,
}

impl Api {
    fn tag(self) -> &'static str {
        match self {
            Api::Flocker => "flocker",
            Api::Agents => "agents",
            Api::Mathematicians => "mathematicians",
            Api::Packages => "packages",
            Api::Accounts => "accounts",
            Api::Meta => "meta",
        }
    }
}

/// What an operation does, which decides the conditional headers it takes and the answers
/// every operation of its kind may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A GET of one resource: `If-None-Match` (304) and `If-Match` (412).
    Read,
    /// A GET of a list: `If-None-Match`, and `Prefer: wait` to hold it until the list changes.
    List,
    /// A GET that takes no validators (a fresh id, the version, an era's node, this document).
    Unconditional,
    /// A create in the configuration: every precondition header and `Idempotency-Key`, and
    /// never a 428 (there is no version to name yet).
    Create,
    /// Any other change to the configuration: as a create, and where `--if-match required`
    /// is set, 428 without a validator.
    Write,
    /// Accounts, sessions, agents' reports, and requests refused whatever they say (a PUT of a
    /// package's fields): no preconditions.
    Plain,
    /// A browser's CORS preflight.
    Preflight,
}

/// What an operation's request body is.
#[derive(Clone, Copy)]
enum Body {
    None,
    /// JSON checked by one of the request schemas.
    Checked(&'static LazyLock<RequestSchema>),
    /// JSON of the shape given here (a body the handler checks itself).
    Json(&'static str),
    /// `application/x-www-form-urlencoded` with these fields (OAuth2's token request).
    Form(&'static str),
}

/// One method on one path.
struct Operation {
    method: &'static str,
    /// The route as axum declares it: `{name}` for a segment, `{*name}` for the rest.
    path: &'static str,
    api: Api,
    kind: Kind,
    summary: &'static str,
    body: Body,
    /// Parameters of its own from `components/parameters`, besides its kind's.
    parameters: &'static [&'static str],
    /// The answers particular to this operation; those of its kind are added.
    answers: &'static [(u16, &'static str)],
    /// The schema of its successful answer's JSON, when it has one worth naming.
    returns: Option<&'static str>,
    /// The schema of its errors' JSON: [`ERROR`] but for OAuth2's token endpoint.
    errors: &'static str,
}

/// The schema of every error's body but OAuth2's.
const ERROR: &str = "Error";

const fn op(
    method: &'static str,
    path: &'static str,
    api: Api,
    kind: Kind,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        api,
        kind,
        summary,
        body: Body::None,
        parameters: &[],
        answers: &[],
        returns: None,
        errors: ERROR,
    }
}

impl Operation {
    const fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    const fn parameters(mut self, parameters: &'static [&'static str]) -> Self {
        self.parameters = parameters;
        self
    }

    const fn answers(mut self, answers: &'static [(u16, &'static str)]) -> Self {
        self.answers = answers;
        self
    }

    const fn returns(mut self, schema: &'static str) -> Self {
        self.returns = Some(schema);
        self
    }

    const fn errors(mut self, schema: &'static str) -> Self {
        self.errors = schema;
        self
    }
}

use Api::{Accounts, Agents, Flocker, Mathematicians, Meta, Packages};
use Kind::{Create, List, Plain, Preflight, Read, Unconditional, Write};

const DATASETS: &str = "/v1/configuration/datasets";
const PACKAGES: &str = "/api/{version}/packages";

/// Every route floe serves.
#[rustfmt::skip]
static OPERATIONS: &[Operation] = &[
    op("GET", "/openapi.json", Meta, Unconditional, "This document"),
    op("GET", "/v1/version", Flocker, Unconditional, "The Flocker API version floe speaks")
        .returns("Version"),
    // Flocker's configuration.
    op("GET", DATASETS, Flocker, List, "Every dataset, deleted ones too")
        .returns("DatasetList"),
    op("POST", DATASETS, Flocker, Create, "Create a dataset")
        .body(Body::Checked(&schema::DATASET_CREATE))
        .answers(&[(201, "Created"), (409, "The dataset id is already in use")])
        .returns("Dataset"),
    op("GET", DATASET, Flocker, Read, "One dataset")
        .answers(&[(404, "No such dataset")])
        .returns("Dataset"),
    op("POST", DATASET, Flocker, Write, "Move a dataset to another primary node")
        .body(Body::Checked(&schema::DATASET_UPDATE))
        .answers(&[(200, "Moved (or unchanged)"), (404, "No such dataset"), (405, "The dataset has been deleted"), (409, "A container uses the dataset")])
        .returns("Dataset"),
    op("DELETE", DATASET, Flocker, Write, "Mark a dataset deleted (idempotent)")
        .answers(&[(200, "Marked deleted"), (404, "No such dataset")])
        .returns("Dataset"),
    op("GET", "/v1/configuration/leases", Flocker, List, "Every lease, with the seconds it has left")
        .returns("LeaseList"),
    op("POST", "/v1/configuration/leases", Flocker, Write, "Acquire or renew a lease")
        .body(Body::Checked(&schema::LEASE))
        .answers(&[(200, "Renewed by the node that holds it"), (201, "Acquired"), (409, "Another node holds the lease")])
        .returns("Lease"),
    op("DELETE", "/v1/configuration/leases/{dataset_id}", Flocker, Write, "Release a lease")
        .answers(&[(200, "Released"), (404, "No such lease")])
        .returns("Lease"),
    op("GET", "/v1/configuration/containers", Flocker, List, "Every configured container"),
    op("POST", "/v1/configuration/containers", Flocker, Create, "Create a container")
        .body(Body::Checked(&schema::CONTAINER_CREATE))
        .answers(&[(201, "Created"), (404, "A volume names an unknown dataset"), (409, "The name, dataset, port or link is taken")]),
    op("POST", "/v1/configuration/containers/{name}", Flocker, Write, "Move a container, with its dataset, to another node")
        .body(Body::Checked(&schema::CONTAINER_MOVE))
        .answers(&[(200, "Moved"), (404, "No such container")]),
    op("DELETE", "/v1/configuration/containers/{name}", Flocker, Write, "Remove a container (answers null)")
        .answers(&[(200, "Removed"), (404, "No such container")]),
    // Flocker's cluster state, and floe's agents.
    op("GET", "/v1/state/datasets", Flocker, List, "Datasets as the agents see them: mounted ones, then the others")
        .returns("StateDatasetList"),
    op("GET", "/v1/state/nodes", Flocker, List, "Every live node")
        .returns("NodeList"),
    op("GET", "/v1/state/nodes/by_era/{era}", Flocker, Unconditional, "The node in an era")
        .answers(&[(200, "The node"), (400, "The era is not a UUID"), (404, "No node found with given era.")])
        .returns("NodeOfEra"),
    op("GET", "/v1/state/containers", Flocker, List, "Containers as the agents report them"),
    op("PUT", "/v1/agent/nodes/{node_uuid}", Agents, Plain, "An agent's full report of its node")
        .body(Body::Checked(&schema::AGENT_REPORT))
        .answers(&[(200, "Recorded")])
        .returns("ReportReceived"),
    op("DELETE", "/v1/agent/nodes/{node_uuid}", Agents, Plain, "The node leaves the state")
        .answers(&[(204, "Forgotten"), (404, "No such node")]),
    // The Mathematicians API.
    op("GET", "/api/mathematicians", Mathematicians, List, "Every mathematician")
        .returns("MathematicianList"),
    op("POST", "/api/mathematicians", Mathematicians, Create, "Create a mathematician (idempotent by unique)")
        .body(Body::Checked(&schema::MATHEMATICIAN))
        .answers(&[(201, "Created, or the one created before")])
        .returns("Mathematician"),
    op("GET", "/api/mathematicians/new", Mathematicians, Unconditional, "A fresh unique and an empty name; stores nothing")
        .answers(&[(400, "The Host header cannot make a link")])
        .returns("Mathematician"),
    op("GET", "/api/mathematicians/{unique}", Mathematicians, Read, "One mathematician")
        .answers(&[(404, "No such mathematician")])
        .returns("Mathematician"),
    op("PUT", "/api/mathematicians/{unique}", Mathematicians, Write, "Name a mathematician; naming every current version id merges them")
        .body(Body::Checked(&schema::MATHEMATICIAN))
        .answers(&[(200, "Named"), (404, "No such mathematician")])
        .returns("Mathematician"),
    // Project FiFo's packages.
    op("GET", PACKAGES, Packages, List, "Package ids, or whole packages with full-list")
        .parameters(&["FullList", "FullListFields", "FullListHeader", "FullListFieldsHeader"]),
    op("POST", PACKAGES, Packages, Create, "Create a package (idempotent by uuid)")
        .body(Body::Checked(&schema::PACKAGE_CREATE))
        .answers(&[(303, "Created, or the same again: see Location"), (409, "The name is in use"), (410, "The uuid is a deleted package's"), (415, "Unsupported media type")]),
    op("OPTIONS", PACKAGES, Packages, Preflight, "CORS preflight"),
    op("GET", "/api/{version}/packages/new", Packages, Unconditional, "A fresh uuid and an empty template; stores nothing")
        .answers(&[(400, "The path is malformed")]),
    op("OPTIONS", "/api/{version}/packages/new", Packages, Preflight, "CORS preflight"),
    op("GET", "/api/{version}/packages/{uuid}", Packages, Read, "One package")
        .answers(&[(404, "No such package")]),
    op("PUT", "/api/{version}/packages/{uuid}", Packages, Plain, "Refused: a package's fields cannot be changed, only its metadata")
        .answers(&[(400, "Always")]),
    op("DELETE", "/api/{version}/packages/{uuid}", Packages, Write, "Delete a package")
        .answers(&[(204, "Deleted"), (404, "No such package")]),
    op("OPTIONS", "/api/{version}/packages/{uuid}", Packages, Preflight, "CORS preflight"),
    op("PUT", "/api/{version}/packages/{uuid}/metadata", Packages, Write, "Set one metadata key, merging objects")
        .body(Body::Json(METADATA_BODY))
        .answers(&[(204, "Set"), (404, "No such package"), (415, "Unsupported media type")]),
    op("DELETE", "/api/{version}/packages/{uuid}/metadata", Packages, Plain, "Refused: name the key to delete")
        .answers(&[(400, "Always")]),
    op("OPTIONS", "/api/{version}/packages/{uuid}/metadata", Packages, Preflight, "CORS preflight"),
    op("PUT", "/api/{version}/packages/{uuid}/metadata/{*path}", Packages, Write, "Set one key below a metadata path, merging objects")
        .body(Body::Json(METADATA_BODY))
        .answers(&[(204, "Set"), (404, "No such package"), (409, "The path runs through a value that is not an object"), (415, "Unsupported media type")]),
    op("DELETE", "/api/{version}/packages/{uuid}/metadata/{*path}", Packages, Write, "Delete a metadata path (also when absent)")
        .answers(&[(204, "Deleted"), (404, "No such package")]),
    op("OPTIONS", "/api/{version}/packages/{uuid}/metadata/{*path}", Packages, Preflight, "CORS preflight"),
    // Accounts: sessions, tokens, users and their permissions.
    op("POST", "/api/{version}/sessions", Accounts, Plain, "Log in: a token in x-snarl-token, a cookie and Location")
        .body(Body::Checked(&schema::LOGIN))
        .answers(&[(303, "Logged in"), (401, "Unknown user or wrong password"), (503, "The accounts cannot be written")]),
    op("GET", "/api/{version}/sessions", Accounts, Plain, "The caller's own user")
        .answers(&[(200, "The user")])
        .returns("User"),
    op("OPTIONS", "/api/{version}/sessions", Accounts, Preflight, "CORS preflight"),
    op("GET", "/api/{version}/sessions/{token}", Accounts, Plain, "A session's user")
        .answers(&[(200, "The user"), (404, "No such session")])
        .returns("User"),
    op("DELETE", "/api/{version}/sessions/{token}", Accounts, Plain, "Log out a session")
        .answers(&[(204, "Ended"), (404, "No such session"), (503, "The accounts cannot be written")]),
    op("OPTIONS", "/api/{version}/sessions/{token}", Accounts, Preflight, "CORS preflight"),
    op("POST", "/api/{version}/oauth/token", Accounts, Plain, "OAuth2 password grant")
        .body(Body::Form(OAUTH_FORM))
        .answers(&[(200, "A bearer token"), (400, "Not a password grant, or a wrong user name or password"), (503, "The accounts cannot be written")])
        .errors("TokenError")
        .returns("Token"),
    op("GET", "/api/{version}/users", Accounts, Plain, "Every user")
        .answers(&[(200, "The users")])
        .returns("UserNames"),
    op("OPTIONS", "/api/{version}/users", Accounts, Preflight, "CORS preflight"),
    op("POST", "/api/{version}/users", Accounts, Plain, "Create a user")
        .body(Body::Checked(&schema::USER_CREATE))
        .answers(&[(303, "Created: see Location"), (409, "The name is taken"), (503, "The accounts cannot be written")]),
    op("GET", "/api/{version}/users/{name}", Accounts, Plain, "One user")
        .answers(&[(200, "The user"), (404, "No such user")])
        .returns("User"),
    op("PUT", "/api/{version}/users/{name}", Accounts, Plain, "Change a user's password")
        .body(Body::Checked(&schema::PASSWORD_CHANGE))
        .answers(&[(204, "Changed"), (404, "No such user"), (503, "The accounts cannot be written")]),
    op("DELETE", "/api/{version}/users/{name}", Accounts, Plain, "Delete a user and end their sessions")
        .answers(&[(204, "Deleted"), (404, "No such user"), (503, "The accounts cannot be written")]),
    op("OPTIONS", "/api/{version}/users/{name}", Accounts, Preflight, "CORS preflight"),
    op("PUT", "/api/{version}/users/{name}/permissions/{*permission}", Accounts, Plain, "Grant a permission (its segments are the path)")
        .answers(&[(204, "Granted"), (404, "No such user"), (503, "The accounts cannot be written")]),
    op("DELETE", "/api/{version}/users/{name}/permissions/{*permission}", Accounts, Plain, "Revoke a permission")
        .answers(&[(204, "Revoked"), (404, "No such user"), (503, "The accounts cannot be written")]),
    op("OPTIONS", "/api/{version}/users/{name}/permissions/{*permission}", Accounts, Preflight, "CORS preflight"),
];

/// An answer that names a resource, and an operation on that resource (an OpenAPI link): how
/// a client gets from a create to what it created. schemathesis follows them too.
struct Link {
    from: (&'static str, &'static str),
    status: u16,
    to: (&'static str, &'static str),
    /// Each path parameter of `to`, as a runtime expression on this request and answer.
    parameters: &'static [(&'static str, &'static str)],
}

const DATASET: &str = "/v1/configuration/datasets/{dataset_id}";
const MATHEMATICIAN: &str = "/api/mathematicians/{unique}";
const USER: &str = "/api/{version}/users/{name}";

/// Where the answers of creates lead.
#[rustfmt::skip]
static LINKS: &[Link] = &[
    Link { from: ("POST", DATASETS), status: 201, to: ("GET", DATASET), parameters: &[("dataset_id", "$response.body#/dataset_id")] },
    Link { from: ("POST", DATASETS), status: 201, to: ("POST", DATASET), parameters: &[("dataset_id", "$response.body#/dataset_id")] },
    Link { from: ("POST", DATASETS), status: 201, to: ("DELETE", DATASET), parameters: &[("dataset_id", "$response.body#/dataset_id")] },
    Link { from: ("POST", "/v1/configuration/leases"), status: 201, to: ("DELETE", "/v1/configuration/leases/{dataset_id}"), parameters: &[("dataset_id", "$response.body#/dataset_id")] },
    Link { from: ("POST", "/api/mathematicians"), status: 201, to: ("GET", MATHEMATICIAN), parameters: &[("unique", "$response.body#/unique")] },
    Link { from: ("POST", "/api/mathematicians"), status: 201, to: ("PUT", MATHEMATICIAN), parameters: &[("unique", "$response.body#/unique")] },
    Link { from: ("PUT", "/v1/agent/nodes/{node_uuid}"), status: 200, to: ("DELETE", "/v1/agent/nodes/{node_uuid}"), parameters: &[("node_uuid", "$response.body#/node_uuid")] },
    Link { from: ("POST", "/api/{version}/users"), status: 303, to: ("GET", USER), parameters: &[("version", "$request.path.version"), ("name", "$request.body#/user")] },
    Link { from: ("POST", "/api/{version}/users"), status: 303, to: ("DELETE", USER), parameters: &[("version", "$request.path.version"), ("name", "$request.body#/user")] },
];

const METADATA_BODY: &str = r#"{"description": "One key and its value, which may be any JSON.", "type": "object", "minProperties": 1, "maxProperties": 1}"#;
const OAUTH_FORM: &str = r#"{"type": "object", "properties": {"grant_type": {"const": "password"}, "username": {"type": "string"}, "password": {"type": "string"}, "scope": {"type": "string"}}, "required": ["grant_type", "username", "password"]}"#;

/// The schemas of answers, beside the request schemas in `components/schemas`.
fn answer_schemas() -> Value {
    json!({
        "Error": {
            "description": "Every error's body. A body that fails its schema also lists each violation.",
            "type": "object",
            "properties": {
                "description": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["description"]
        },
        "OAuthError": {
            "description": "An OAuth2 error (RFC 6749 §5.2).",
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "error_description": {"type": "string"}
            },
            "required": ["error"]
        },
        "TokenError": {
            "description": "The token endpoint's refusals are OAuth2's; a body too large or too slow, or an unavailable store, is floe's own error.",
            "anyOf": [{"$ref": "#/components/schemas/OAuthError"}, {"$ref": "#/components/schemas/Error"}]
        },
        "Version": {
            "type": "object",
            "properties": {"flocker": {"type": "string", "examples": [VERSION]}},
            "required": ["flocker"]
        },
        "Dataset": {
            "type": "object",
            "properties": {
                "dataset_id": {"type": "string", "format": "uuid"},
                "primary": {"type": "string", "format": "uuid"},
                "deleted": {"type": "boolean"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                "maximum_size": {"type": "integer", "description": "Present only when set."}
            },
            "required": ["dataset_id", "primary", "deleted", "metadata"]
        },
        "DatasetList": {"type": "array", "items": {"$ref": "#/components/schemas/Dataset"}},
        "Lease": {
            "type": "object",
            "properties": {
                "dataset_id": {"type": "string", "format": "uuid"},
                "node_uuid": {"type": "string", "format": "uuid"},
                "expires": {"type": ["number", "null"], "description": "Seconds left, or null for a lease that does not expire."}
            },
            "required": ["dataset_id", "node_uuid", "expires"]
        },
        "LeaseList": {"type": "array", "items": {"$ref": "#/components/schemas/Lease"}},
        "Node": {
            "type": "object",
            "properties": {
                "host": {"type": "string", "description": "The node's IP address."},
                "uuid": {"type": "string", "format": "uuid"}
            },
            "required": ["host", "uuid"]
        },
        "NodeList": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
        "NodeOfEra": {
            "type": "object",
            "properties": {"uuid": {"type": "string", "format": "uuid"}},
            "required": ["uuid"]
        },
        "StateDatasetList": {
            "description": "Mounted datasets (with their node and path), then the datasets no node has mounted.",
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "dataset_id": {"type": "string", "format": "uuid"},
                    "primary": {"type": "string", "format": "uuid"},
                    "path": {"type": "string"},
                    "maximum_size": {"type": "integer"}
                },
                "required": ["dataset_id"],
                "additionalProperties": false
            }
        },
        "ReportReceived": {
            "type": "object",
            "properties": {
                "node_uuid": {"type": "string", "format": "uuid"},
                "expires_in": {"type": "integer", "description": "Seconds until the node drops out of the state unless it reports again."}
            },
            "required": ["node_uuid", "expires_in"]
        },
        "Mathematician": {
            "description": "Besides these, the meta fields named by --meta-*-field (_etag, _created, _updated by default).",
            "type": "object",
            "properties": {
                "unique": {"type": "string", "format": "uuid"},
                "name": {
                    "type": "object",
                    "properties": {
                        "ids": {"description": "The current version ids: more than one while concurrent names are candidates.", "type": "array", "items": {"type": "string"}},
                        "firstName": {"type": ["string", "null"]},
                        "lastName": {"type": ["string", "null"]}
                    },
                    "required": ["ids", "firstName", "lastName"]
                },
                "_links": {
                    "type": "object",
                    "properties": {"self": {"type": "object", "properties": {"href": {"type": "string"}}, "required": ["href"]}},
                    "required": ["self"]
                }
            },
            "required": ["unique", "name", "_links"]
        },
        "MathematicianList": {"type": "array", "items": {"$ref": "#/components/schemas/Mathematician"}},
        "UserNames": {"type": "array", "items": {"$ref": "#/components/schemas/user_name"}},
        "User": {
            "type": "object",
            "properties": {
                "name": {"$ref": "#/components/schemas/user_name"},
                "permissions": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                "session": {"type": "string", "description": "The session's token (sessions only)."}
            },
            "required": ["name", "permissions"]
        },
        "Token": {
            "type": "object",
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"const": "bearer"},
                "expires_in": {"type": "integer"},
                "scope": {"type": "string"}
            },
            "required": ["access_token", "token_type", "expires_in"]
        }
    })
}

/// The parameters operations refer to by name: the request headers of floe's concurrency
/// rules, and the packages list's `full-list` as a query parameter or a header.
fn header_parameters() -> Value {
    let header = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "header", "required": false, "description": description, "schema": schema});
    // A malformed value is a 400, so each is described as floe reads it.
    let entity_tags = json!({
        "type": "string",
        "pattern": r#"^[ \t]*(\*|(W/)?"[\x21\x23-\x7e]*"([ \t]*,[ \t]*(W/)?"[\x21\x23-\x7e]*")*)[ \t]*$"#
    });
    let http_date = json!({"type": "string", "examples": ["Sun, 06 Nov 1994 08:49:37 GMT"]});
    json!({
        "IfMatch": header("If-Match", "Proceed only if the resource's current ETag is one of these (or `*`: it exists); otherwise 412. Required (428 without it) when floe runs with `--if-match required`.", entity_tags.clone()),
        "IfNoneMatch": header("If-None-Match", "On a read, 304 if the current ETag is one of these; on a write, 412 if it is (`*`: create only).", entity_tags),
        "IfModifiedSince": header("If-Modified-Since", "On a read without If-None-Match, 304 if the resource has not changed since (an invalid date is ignored).", http_date.clone()),
        "IfUnmodifiedSince": header("If-Unmodified-Since", "Without If-Match, proceed only if the resource has not changed since; otherwise 412 (an invalid date is ignored).", http_date),
        "IfConfigurationMatches": header("X-If-Configuration-Matches", "Proceed only if the whole configuration is still at this X-Configuration-Tag, compared byte for byte; otherwise 412.", json!({"type": "string"})),
        "IdempotencyKey": header("Idempotency-Key", "A retry under the same key (and the same body) is answered with the first answer, with Idempotent-Replayed: true; the same key with another body is a 422, and one still in progress a 409.", json!({"type": "string", "pattern": r#"^[ \t]*("([\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])+"(;[\x20-\x7e]*)?|[\x20\x21\x23-\x5b\x5d-\x7e]+)[ \t]*$"#, "description": "A structured-field string of 1 to 255 visible ASCII characters (the bare key is read too)."})),
        "FullList": {"name": "full-list", "in": "query", "required": false, "description": "`true` (or `True`): whole packages instead of their ids, as FiFo's clients ask.", "schema": {"type": "string"}},
        "FullListFields": {"name": "full-list-fields", "in": "query", "required": false, "description": "With full-list: the fields to keep, separated by commas.", "schema": {"type": "string"}},
        "FullListHeader": header("x-full-list", "As the full-list query parameter, which wins when both are sent.", json!({"type": "string"})),
        "FullListFieldsHeader": header("x-full-list-fields", "As the full-list-fields query parameter.", json!({"type": "string"})),
        "PreferWait": header("Prefer", "`wait=N` with `If-None-Match` set to the list's current ETag: hold the request up to N seconds (at most `--max-wait`) until the list changes. Other preferences are ignored.", json!({"type": "string", "examples": ["wait=60"]}))
    })
}

/// The parameters an operation of `kind` takes besides its path's.
fn kind_parameters(kind: Kind) -> &'static [&'static str] {
    match kind {
        Read => &[
            "IfNoneMatch",
            "IfMatch",
            "IfModifiedSince",
            "IfUnmodifiedSince",
        ],
        List => &["IfNoneMatch", "PreferWait"],
        Create | Write => &[
            "IfMatch",
            "IfNoneMatch",
            "IfUnmodifiedSince",
            "IfConfigurationMatches",
            "IdempotencyKey",
        ],
        Unconditional | Plain | Preflight => &[],
    }
}

/// The answers every operation of `kind` may give, besides its own, by status: a later line
/// for a status describes it more precisely than an earlier one.
fn kind_answers(kind: Kind, public: bool, body: bool) -> BTreeMap<u16, &'static str> {
    let mut answers = BTreeMap::new();
    match kind {
        Read => answers.extend([
            (200, "The resource"),
            (400, "A conditional header is malformed"),
            (304, "Not modified since the ETag in If-None-Match"),
            (412, "If-Match names another version"),
        ]),
        List => answers.extend([
            (200, "The list"),
            (400, "A conditional header is malformed"),
            (304, "Not modified since the ETag in If-None-Match"),
        ]),
        Unconditional => answers.extend([(200, "OK")]),
        Create | Write => answers.extend([
            (400, "The request is malformed"),
            (
                409,
                "A request under the same Idempotency-Key is still in progress",
            ),
            (
                412,
                "A precondition failed: the resource or the configuration has changed",
            ),
            (
                422,
                "The Idempotency-Key was used before with another request",
            ),
            (
                503,
                "The store cannot be written (the disk is full, say); nothing was changed",
            ),
        ]),
        Plain => answers.extend([(400, "The request is malformed")]),
        Preflight => answers.extend([(200, "The methods a browser may use")]),
    }
    // A create names no version yet, so a validator is never required of it.
    if kind == Write {
        answers.insert(428, "If-Match is required and missing");
    }
    if body {
        answers.extend([
            (400, "The body is not the JSON this operation takes"),
            (408, "The body arrived too slowly"),
            (413, "The body is too large"),
        ]);
    }
    if !public {
        answers.extend([
            (401, "No credentials were presented"),
            (
                403,
                "The token is unknown or has expired, or its user lacks the permission this needs",
            ),
        ]);
    }
    answers
}

/// The document, built from `OPERATIONS` and the request schemas, for a server with
/// `authentication` on (`--auth token`) or off (`--auth none`: every operation is public).
pub fn document(authentication: bool) -> Value {
    let mut schemas = Map::new();
    let answers = answer_schemas();
    schemas.extend(answers.as_object().expect("an object").clone());
    for request in schema::all() {
        let mut body = request.document().clone();
        let definitions = body
            .as_object_mut()
            .and_then(|object| object.remove("definitions"));
        if let Some(Value::Object(definitions)) = definitions {
            for (name, definition) in definitions {
                schemas.insert(name, components_refs(definition));
            }
        }
        schemas.insert(body_schema_name(request), components_refs(body));
    }

    let mut paths = Map::new();
    for operation in OPERATIONS {
        let path = openapi_path(operation.path);
        let item = paths
            .entry(path.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object");
        item.insert(
            operation.method.to_ascii_lowercase(),
            operation_object(operation, &path, authentication),
        );
    }
    for link in LINKS {
        let (method, path) = link.from;
        let response = &mut paths[&openapi_path(path)][method.to_ascii_lowercase()]["responses"]
            [link.status.to_string()];
        let (to_method, to_path) = link.to;
        let target = operation_id(to_method, to_path);
        let parameters: Map<String, Value> = link
            .parameters
            .iter()
            .map(|(name, expression)| (name.to_string(), json!(expression)))
            .collect();
        response["links"][&target] = json!({"operationId": target, "parameters": parameters});
    }

    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "floe",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A control service for a cluster's configuration. It speaks Flocker's control API (/v1), Project FiFo's packages API (/api/{version}/packages) and the Mathematicians API (/api/mathematicians), with one set of concurrency rules across them: X-Configuration-Tag and X-If-Configuration-Matches for the whole configuration, ETags with If-Match and If-None-Match for each resource, and Idempotency-Key for safe retries. Every write is durable before it is answered. Every read of the configuration and every answer to a write carries the X-Configuration-Tag it was read at or written to. floe checks request bodies as JSON Schema draft 4, as Flocker did: where a schema asks for an integer, a number written with a fraction (67108864.0) is refused, though JSON Schema 2020-12, this document's dialect, would count it as one.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "tags": [
            {"name": "flocker", "description": "Flocker's control API: datasets, leases, containers and the cluster's state."},
            {"name": "agents", "description": "Node agents report their node's state (floe's own; Flocker's agents spoke AMP)."},
            {"name": "mathematicians", "description": "Idempotent creation; concurrent names kept as candidate versions."},
            {"name": "packages", "description": "Project FiFo's packages and their metadata, as JSON or msgpack."},
            {"name": "accounts", "description": "FiFo's sessions, OAuth2 tokens, users and permissions."},
            {"name": "meta", "description": "This document."}
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": header_parameters(),
            "headers": header_definitions(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A token from POST /api/{version}/sessions or /api/{version}/oauth/token (or the admin-token file)."},
                "snarlToken": {"type": "apiKey", "in": "header", "name": "x-snarl-token"},
                "snarlCookie": {"type": "apiKey", "in": "cookie", "name": "x-snarl-token"},
                "clientCertificate": {"type": "mutualTLS", "description": "With --tls-client-ca: a certificate whose CN is user-<name> acts as that user."}
            }
        }
    });
    if authentication {
        document["security"] = json!([
            {"bearer": []},
            {"snarlToken": []},
            {"snarlCookie": []},
            {"clientCertificate": []}
        ]);
    }
    document
}

fn operation_object(operation: &Operation, path: &str, authentication: bool) -> Value {
    let mut parameters: Vec<Value> = path_parameters(path)
        .map(|name| {
            let schema = path_parameter_schema(operation.kind, path, name);
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    parameters.extend(
        kind_parameters(operation.kind)
            .iter()
            .chain(operation.parameters)
            .map(|name| json!({"$ref": format!("#/components/parameters/{name}")})),
    );

    let has_body = !matches!(operation.body, Body::None);
    let public = !authentication || is_public(operation);
    let mut answers = kind_answers(operation.kind, public, has_body);
    if operation.api == Packages && operation.kind != Preflight {
        answers.insert(406, "Accept names neither JSON nor msgpack");
    }
    // An operation's own description of a status replaces its kind's.
    answers.extend(operation.answers.iter().copied());
    let responses: Map<String, Value> = answers
        .into_iter()
        .map(|(status, description)| (status.to_string(), response(operation, status, description)))
        .collect();

    let mut object = json!({
        "tags": [operation.api.tag()],
        "summary": operation.summary,
        "operationId": operation_id(operation.method, operation.path),
        "parameters": parameters,
        "responses": responses,
    });
    if public && authentication {
        object["security"] = json!([{}]);
    }
    let request_body = match operation.body {
        Body::None => None,
        Body::Checked(request) => Some((
            media_types(operation),
            json!({"$ref": format!("#/components/schemas/{}", body_schema_name(request))}),
        )),
        Body::Json(shape) => Some((media_types(operation), inline(shape))),
        Body::Form(shape) => Some((&["application/x-www-form-urlencoded"][..], inline(shape))),
    };
    if let Some((media_types, schema)) = request_body {
        object["requestBody"] = json!({"required": true, "content": content(media_types, schema)});
    }
    object
}

/// The media types of an operation's bodies: FiFo's packages come as JSON or msgpack.
fn media_types(operation: &Operation) -> &'static [&'static str] {
    if operation.api == Packages {
        &["application/json", super::packages::MSGPACK]
    } else {
        &["application/json"]
    }
}

fn content(media_types: &[&str], schema: Value) -> Value {
    media_types
        .iter()
        .map(|media_type| (media_type.to_string(), json!({"schema": schema})))
        .collect::<Map<String, Value>>()
        .into()
}

/// A request schema's name in the document: its own, marked as a body so that it cannot be
/// taken for the answer of the same name (`lease` and `Lease`) by a generator that ignores case.
fn body_schema_name(request: &RequestSchema) -> String {
    format!("{}_body", request.name())
}

fn inline(shape: &str) -> Value {
    serde_json::from_str(shape).expect("an inline schema is JSON")
}

fn response(operation: &Operation, status: u16, description: &str) -> Value {
    if operation.kind == Preflight {
        return json!({"description": description});
    }
    let headers = answer_headers(operation.kind, status);
    let (media_types, schema) = match status {
        // No body: not modified, a redirect, or nothing to say.
        204 | 303 | 304 => return json!({"description": description, "headers": headers}),
        200 | 201 => (
            media_types(operation),
            match operation.returns {
                Some(name) => json!({"$ref": format!("#/components/schemas/{name}")}),
                None => json!({}),
            },
        ),
        _ => (
            &["application/json"][..],
            json!({"$ref": format!("#/components/schemas/{}", operation.errors)}),
        ),
    };
    json!({
        "description": description,
        "headers": headers,
        "content": content(media_types, schema)
    })
}

/// The headers an answer of `kind` with `status` may carry, from `components/headers`.
fn answer_headers(kind: Kind, status: u16) -> Value {
    let names: &[&str] = match (kind, status) {
        (Read, 200 | 304) => &["ETag", "Last-Modified", "X-Configuration-Tag"],
        (List, 200 | 304) => &["ETag", "X-Configuration-Tag"],
        (Create | Write, 200..=299) => &[
            "ETag",
            "Last-Modified",
            "X-Configuration-Tag",
            "Idempotent-Replayed",
        ],
        (Create | Write, 303) => &["Location", "X-Configuration-Tag", "Idempotent-Replayed"],
        (Create | Write, 400..) => &["X-Configuration-Tag", "ETag"],
        (_, 201 | 303) => &["Location"],
        _ => &[],
    };
    names
        .iter()
        .map(|name| {
            (
                name.to_string(),
                json!({"$ref": format!("#/components/headers/{name}")}),
            )
        })
        .collect::<Map<String, Value>>()
        .into()
}

/// What the answer headers of floe's concurrency rules say.
fn header_definitions() -> Value {
    let header =
        |description: &str| json!({"description": description, "schema": {"type": "string"}});
    json!({
        "ETag": header("The strong entity tag of the resource (weak for a list whose bytes change on their own, such as leases with their seconds left); send it back in If-Match or If-None-Match. On a 412, the current one."),
        "Last-Modified": header("When the resource last changed (an HTTP date)."),
        "X-Configuration-Tag": header("The version of the whole configuration the answer was read at or written to (configuration reads and writes, refusals of a write included); send it back in X-If-Configuration-Matches."),
        "Idempotent-Replayed": header("`true` on an answer replayed for a retry under the same Idempotency-Key: nothing was applied again."),
        "Location": header("Where the created (or already existing) resource is.")
    })
}

/// `get /v1/configuration/datasets/{dataset_id}` → `get_v1_configuration_datasets_dataset_id`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for word in path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        id.push('_');
        id.push_str(word);
    }
    id
}

/// Whether the permission table lets anyone call `operation`, asked of a path with its
/// parameters filled in: the document says what is enforced.
fn is_public(operation: &Operation) -> bool {
    let path: Vec<&str> = operation
        .path
        .split('/')
        .map(|segment| match segment {
            s if s.starts_with("{*") => "some/rest",
            s if s.starts_with('{') => "some-id",
            s => s,
        })
        .collect();
    let method = operation
        .method
        .parse()
        .expect("the table's methods are HTTP methods");
    super::auth::required(&method, &path.join("/")) == Rule::Public
}

/// OpenAPI's template for an axum route: `{*rest}` is `{rest}` (its value spans segments).
pub fn openapi_path(route: &str) -> String {
    route.replace("{*", "{")
}

/// What a path parameter may be: ids are UUIDs (a malformed one is a 400 or a 404), names
/// follow their resource's rules; a CORS preflight takes any.
fn path_parameter_schema(kind: Kind, path: &str, name: &str) -> Value {
    let shared = |schema: &str| json!({"$ref": format!("#/components/schemas/{schema}")});
    match name {
        _ if kind == Preflight => json!({"type": "string", "minLength": 1}),
        "node_uuid" => shared("uuid"),
        "dataset_id" | "era" | "uuid" => shared("any_uuid"),
        "name" if path.contains("/users/") => shared("user_name"),
        "name" => shared("container_name"),
        "path" | "permission" => json!({
            "type": "string",
            "minLength": 1,
            "description": "One or more segments separated by `/`, sent as they are: an escaped `%2F` stays inside one segment."
        }),
        _ => json!({"type": "string", "minLength": 1}),
    }
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| {
        segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
    })
}

/// Points every `#/definitions/NAME` reference of a request schema (where `types.json` is
/// spliced in) at `#/components/schemas/NAME`, where the document keeps the shared types.
fn components_refs(mut schema: Value) -> Value {
    fn rewrite(value: &mut Value) {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    match child {
                        Value::String(target) if key == "$ref" => {
                            if let Some(name) = target.strip_prefix("#/definitions/") {
                                *target = format!("#/components/schemas/{name}");
                            }
                        }
                        _ => rewrite(child),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(rewrite),
            _ => {}
        }
    }
    rewrite(&mut schema);
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document names something the document holds.
    #[test]
    fn every_reference_resolves() {
        fn check(document: &Value, value: &Value, missing: &mut Vec<String>) {
            match value {
                Value::Object(object) => {
                    for (key, child) in object {
                        match child {
                            Value::String(target) if key == "$ref" => {
                                let pointer = target.strip_prefix('#').unwrap_or(target);
                                if document.pointer(pointer).is_none() {
                                    missing.push(target.clone());
                                }
                            }
                            _ => check(document, child, missing),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| check(document, item, missing)),
                _ => {}
            }
        }
        let document = document(true);
        let mut missing = Vec::new();
        check(&document, &document, &mut missing);
        assert!(missing.is_empty(), "unresolved references: {missing:?}");
    }

    /// The request schemas, the shared types and the answers share one namespace in the
    /// document, where a generator that ignores case must not find two of one name.
    #[test]
    fn no_schema_name_is_used_twice() {
        let mut names: Vec<String> = answer_schemas()
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        for request in schema::all() {
            names.push(body_schema_name(request));
            if let Some(Value::Object(definitions)) = request.document().get("definitions") {
                // Every request schema carries the same shared types: count them once.
                if request.name() == schema::DATASET_CREATE.name() {
                    names.extend(definitions.keys().cloned());
                }
            }
        }
        let count = names.len();
        let mut folded: Vec<String> = names.iter().map(|name| name.to_lowercase()).collect();
        folded.sort();
        folded.dedup();
        assert_eq!(
            folded.len(),
            count,
            "a schema name is used twice: {names:?}"
        );
    }

    /// A link leaves from a documented answer and names every path parameter of an operation
    /// that exists.
    #[test]
    fn every_link_leads_to_an_operation_with_its_parameters() {
        let document = document(true);
        for link in LINKS {
            let (method, path) = link.from;
            let answers =
                &document["paths"][openapi_path(path)][method.to_ascii_lowercase()]["responses"];
            assert!(
                answers.get(link.status.to_string()).is_some(),
                "{method} {path} documents no {}",
                link.status
            );
            let (to_method, to_path) = link.to;
            assert!(
                OPERATIONS
                    .iter()
                    .any(|operation| (operation.method, operation.path) == link.to),
                "no operation {to_method} {to_path}"
            );
            let mut named: Vec<&str> = link.parameters.iter().map(|(name, _)| *name).collect();
            let mut needed: Vec<&str> = path_parameters(to_path).collect();
            named.sort();
            needed.sort();
            assert_eq!(named, needed, "the parameters of {to_method} {to_path}");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut ids: Vec<String> = OPERATIONS
            .iter()
            .map(|operation| operation_id(operation.method, operation.path))
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count);
    }
}
