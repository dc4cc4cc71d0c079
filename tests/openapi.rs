//! `GET /openapi.json`: served to anyone, and describing exactly the routes the routers
//! declare, with the request schemas the handlers enforce.
mod common;

use std::collections::BTreeSet;

use common::TestServer;
use common::routes::declared_routes;
use serde_json::{Value, json};

async fn fetch_document(server: &TestServer) -> Value {
    let answer = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("the document is answered");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "application/json",
        "the document is JSON"
    );
    answer.json().await.expect("the document parses")
}

/// No credentials are needed to read the document, also with authentication on.
#[tokio::test]
async fn the_document_is_public_and_is_openapi_3_1() {
    let (server, _admin) = TestServer::start_with_auth().await;
    let document = fetch_document(&server).await;
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    // Public operations say so; the others take the document's security requirements.
    assert_eq!(
        document["paths"]["/v1/version"]["get"]["security"],
        json!([{}])
    );
    assert!(
        document["paths"]["/v1/configuration/datasets"]["get"]
            .get("security")
            .is_none()
    );
    server.stop().await;
}

/// Every method on every route the routers declare is documented, and nothing else is: a
/// route added without its line in `src/api/openapi.rs` fails here.
#[tokio::test]
async fn every_declared_route_is_documented_and_no_other() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await;
    let documented: BTreeSet<String> = document["paths"]
        .as_object()
        .expect("paths is an object")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item is an object")
                .keys()
                .map(move |method| format!("{} {path}", method.to_ascii_uppercase()))
        })
        .collect();
    let declared: BTreeSet<String> = declared_routes()
        .into_iter()
        .map(|route| {
            format!(
                "{} {}",
                route.method,
                floe::api::openapi::openapi_path(&route.path)
            )
        })
        .collect();
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "declared but not documented: {undocumented:#?}\ndocumented but not declared: {unrouted:#?}"
    );
    server.stop().await;
}

/// The validator of the request body `method path` takes, as the document describes it, with
/// its references resolved within the document.
fn documented_body(document: &Value, method: &str, path: &str) -> jsonschema::Validator {
    let mut schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]
        ["schema"]
        .clone();
    assert!(schema.is_object(), "{method} {path} documents no JSON body");
    schema["components"] = document["components"].clone();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

/// Sends each body and checks that the document and floe agree on it: accepted with
/// `accepted`, or refused with 400.
async fn agree(
    document: &Value,
    (method, path): (&str, &str),
    request: impl Fn(Value) -> reqwest::RequestBuilder,
    accepted: u16,
    cases: &[(Value, bool)],
) {
    let validator = documented_body(document, method, path);
    for (body, valid) in cases {
        assert_eq!(validator.is_valid(body), *valid, "the document on {body}");
        let answer = request(body.clone()).send().await.expect("answered");
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        assert_eq!(
            status,
            if *valid { accepted } else { 400 },
            "floe on {body}: {text}"
        );
    }
}

/// A documented request schema is the one the handler enforces: a body the document's schema
/// refuses is refused by floe, and one it accepts is accepted. For a dataset, both use the
/// same schema document.
#[tokio::test]
async fn a_documented_request_schema_is_the_enforced_one() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await;
    let node = "cf0f0346-17b2-4812-beca-1434997d6c3f";
    agree(
        &document,
        ("post", "/v1/configuration/datasets"),
        |body| {
            server
                .client
                .post(server.url("/v1/configuration/datasets"))
                .json(&body)
        },
        201,
        &[
            (json!({"primary": node}), true),
            (json!({"primary": node, "maximum_size": 67108864}), true),
            (json!({"primary": node, "maximum_size": 1024}), false),
            (json!({"primary": "not-a-uuid"}), false),
            (json!({"primary": node, "junk": 1}), false),
            (json!({}), false),
        ],
    )
    .await;
    server.stop().await;
}

/// Account bodies are checked with the request schemas the document shows: what the document
/// refuses, floe refuses, and what it accepts, floe accepts.
#[tokio::test]
async fn account_bodies_are_documented_as_they_are_checked() {
    let (server, admin) = TestServer::start_with_auth().await;
    let document = fetch_document(&server).await;
    let create = |body: Value| {
        server
            .client
            .post(server.url("/api/2/users"))
            .bearer_auth(&admin)
            .json(&body)
    };
    agree(
        &document,
        ("post", "/api/{version}/users"),
        create,
        303,
        &[
            (json!({"user": "ann", "password": "pw"}), true),
            (
                json!({"user": "eve", "password": "pw", "permissions": [["cloud", "packages", "list"]]}),
                true,
            ),
            (json!({"user": "x.y@z", "password": "pw"}), true),
            (json!({"user": "gus", "password": "pw", "permissions": null}), true),
            (json!({"user": "bob", "password": ""}), false),
            (json!({"user": "_", "password": "pw"}), false),
            (json!({"user": "...", "password": "pw"}), false),
            (json!({"user": "cid", "password": "pw", "permissions": [[]]}), false),
            (json!({"user": "dan", "password": "pw", "permissions": [["cloud", ""]]}), false),
            (json!({"user": "fay", "password": "pw", "permissions": "all"}), false),
            (json!({"password": "pw"}), false),
            (json!({"user": 5, "password": "pw"}), false),
        ],
    )
    .await;
    let change = |body: Value| {
        server
            .client
            .put(server.url("/api/2/users/ann"))
            .bearer_auth(&admin)
            .json(&body)
    };
    agree(
        &document,
        ("put", "/api/{version}/users/{name}"),
        change,
        204,
        &[
            (json!({"password": "new"}), true),
            (json!({"password": ""}), false),
            (json!({"password": 5}), false),
            (json!({}), false),
        ],
    )
    .await;
    server.stop().await;
}

/// `floe openapi` prints the document a server answers with, for either `--auth`, so a client
/// can be generated without running one.
#[tokio::test]
async fn floe_openapi_prints_the_served_document() {
    let printed = |auth: &str| -> Value {
        let output = std::process::Command::new(common::floe_binary())
            .args(["openapi", "--auth", auth])
            .output()
            .expect("run floe openapi");
        assert!(output.status.success(), "floe openapi --auth {auth} failed");
        serde_json::from_slice(&output.stdout).expect("floe openapi prints JSON")
    };
    let (with_auth, _admin) = TestServer::start_with_auth().await;
    assert_eq!(printed("token"), fetch_document(&with_auth).await);
    with_auth.stop().await;
    let without = TestServer::start().await;
    let served = fetch_document(&without).await;
    assert_eq!(printed("none"), served);
    assert!(
        served.get("security").is_none(),
        "--auth none needs no credentials"
    );
    without.stop().await;
}
