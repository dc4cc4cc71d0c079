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

/// A documented request schema is the one the handler enforces: a body the document's schema
/// refuses is refused by floe with the same schema's errors, and one it accepts is accepted.
#[tokio::test]
async fn a_documented_request_schema_is_the_enforced_one() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await;
    let operation = &document["paths"]["/v1/configuration/datasets"]["post"];
    let reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .expect("the create names its schema");
    let name = reference
        .strip_prefix("#/components/schemas/")
        .expect("a component");
    let schema = &document["components"]["schemas"][name];
    // The document's schema, with its references resolved within the document, decides.
    let mut resolvable = schema.clone();
    resolvable["components"] = document["components"].clone();
    let validator = jsonschema::validator_for(&resolvable).expect("the schema compiles");

    let node = "cf0f0346-17b2-4812-beca-1434997d6c3f";
    for (body, valid) in [
        (json!({"primary": node}), true),
        (json!({"primary": node, "maximum_size": 67108864}), true),
        (json!({"primary": node, "maximum_size": 1024}), false),
        (json!({"primary": "not-a-uuid"}), false),
        (json!({"primary": node, "junk": 1}), false),
        (json!({}), false),
    ] {
        assert_eq!(validator.is_valid(&body), valid, "the document on {body}");
        let status = server
            .client
            .post(server.url("/v1/configuration/datasets"))
            .json(&body)
            .send()
            .await
            .expect("answered")
            .status();
        assert_eq!(
            status.as_u16(),
            if valid { 201 } else { 400 },
            "floe on {body}"
        );
    }
    server.stop().await;
}
