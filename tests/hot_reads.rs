//! The hot reads (GET of the dataset list and of one dataset, answered before routing) answer
//! exactly as the routes do. The same request is sent twice: once as is, which the hot reads
//! answer, and once in a form only the router takes (a percent-encoded letter in the id, a
//! `HEAD`, a list read that asks to wait); status, body and every header that describes the
//! answer must agree. Authentication is checked for the hot reads as for any route.
mod common;

use common::http::{Answer, send};
use common::{NODE_0, TestServer};
use reqwest::Method;
use serde_json::json;

const DATASETS: &str = "/v1/configuration/datasets";

/// The headers that describe an answer (everything but `Date` and the connection's own).
const DESCRIBING: [&str; 5] = [
    "content-type",
    "etag",
    "last-modified",
    "x-configuration-tag",
    "content-length",
];

fn assert_same(hot: &Answer, routed: &Answer, what: &str) {
    assert_eq!(hot.status, routed.status, "{what}: status");
    assert_eq!(hot.text, routed.text, "{what}: body");
    for name in DESCRIBING {
        assert_eq!(
            hot.headers.get(name),
            routed.headers.get(name),
            "{what}: {name}"
        );
    }
}

async fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = server.client.get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

/// `id` with its first hex letter percent-encoded: the same dataset, but a path the hot reads
/// leave to the router (which decodes it).
fn encoded(id: &str) -> String {
    let at = id
        .find(|c: char| c.is_ascii_alphabetic())
        .expect("a letter");
    format!("{}%{:02X}{}", &id[..at], id.as_bytes()[at], &id[at + 1..])
}

#[tokio::test]
async fn one_dataset_answers_as_its_route_does_whatever_the_conditions() {
    let server = TestServer::start().await;
    let created = send(server.client.post(server.url(DATASETS)).json(&json!({
        "primary": NODE_0,
        "metadata": {"name": "hot"},
    })))
    .await;
    assert_eq!(created.status, 201);
    let id = created.body["dataset_id"].as_str().unwrap().to_string();
    let etag = created.headers["etag"].to_str().unwrap().to_string();
    let hot_path = format!("{DATASETS}/{id}");
    let routed_path = format!("{DATASETS}/{}", encoded(&id));

    let cases: [(&str, Vec<(&str, &str)>); 6] = [
        ("plain", vec![]),
        ("current If-None-Match: 304", vec![("If-None-Match", &etag)]),
        (
            "stale If-None-Match: 200",
            vec![("If-None-Match", "\"old\"")],
        ),
        ("stale If-Match: 412", vec![("If-Match", "\"old\"")]),
        ("current If-Match: 200", vec![("If-Match", &etag)]),
        ("malformed If-Match: 400", vec![("If-Match", "no quotes")]),
    ];
    for (what, headers) in &cases {
        let hot = get(&server, &hot_path, headers).await;
        let routed = get(&server, &routed_path, headers).await;
        assert_same(&hot, &routed, what);
    }
    let hot = get(&server, &hot_path, &[]).await;
    assert_eq!(hot.status, 200);
    assert_eq!(hot.body, created.body);
    assert_eq!(hot.headers["etag"], etag.as_str());
    assert!(hot.headers.contains_key("last-modified"));
    assert!(hot.headers.contains_key("x-configuration-tag"));
    assert_eq!(
        get(&server, &hot_path, &cases[1].1).await.status,
        304,
        "the hot read honours If-None-Match"
    );
    assert_eq!(get(&server, &hot_path, &cases[3].1).await.status, 412);

    // Unknown and malformed ids: the same 404 either way.
    let unknown = "5f6c9b2e-0000-4000-8000-00000000abcd";
    assert_same(
        &get(&server, &format!("{DATASETS}/{unknown}"), &[]).await,
        &get(&server, &format!("{DATASETS}/{}", encoded(unknown)), &[]).await,
        "unknown id",
    );
    let not_an_id = get(&server, &format!("{DATASETS}/not-an-id"), &[]).await;
    not_an_id.assert_error(404, "Dataset not found.");
    let uppercase = get(&server, &format!("{DATASETS}/{}", id.to_uppercase()), &[]).await;
    assert_eq!(
        uppercase.status, 404,
        "ids are matched as spelled, as in Flocker"
    );
    // A trailing slash is no dataset route at all.
    let slash = get(&server, &format!("{DATASETS}/{id}/"), &[]).await;
    assert_eq!(slash.status, 404);

    // HEAD goes to the router, and describes the same answer.
    let head = send(server.client.request(Method::HEAD, server.url(&hot_path))).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers.get("etag"), hot.headers.get("etag"));
    server.stop().await;
}

#[tokio::test]
async fn the_list_answers_as_its_route_does() {
    let server = TestServer::start().await;
    for name in ["a", "b", "c"] {
        let created = send(server.client.post(server.url(DATASETS)).json(&json!({
            "primary": NODE_0,
            "metadata": {"name": name},
        })))
        .await;
        assert_eq!(created.status, 201);
    }
    let hot = get(&server, DATASETS, &[]).await;
    assert_eq!(hot.status, 200);
    assert_eq!(hot.body.as_array().unwrap().len(), 3);
    let tag = hot.tag();
    assert_eq!(hot.headers["etag"], format!("\"{tag}\"").as_str());

    // A list read that asks to wait goes to the router; with a stale ETag it answers at once,
    // exactly as the hot read does.
    let stale = [("If-None-Match", "\"stale\"")];
    let waiting = [("If-None-Match", "\"stale\""), ("Prefer", "wait=5")];
    assert_same(
        &get(&server, DATASETS, &stale).await,
        &get(&server, DATASETS, &waiting).await,
        "stale If-None-Match",
    );
    let current = format!("\"{tag}\"");
    let not_modified = get(&server, DATASETS, &[("If-None-Match", &current)]).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.headers["etag"], current.as_str());
    let malformed = get(&server, DATASETS, &[("If-None-Match", "no quotes")]).await;
    assert_eq!(
        malformed.status, 400,
        "the router answers a malformed validator"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_hot_reads_are_authenticated_like_every_route() {
    let (server, token) = TestServer::start_with_auth().await;
    let created = send(
        server
            .client
            .post(server.url(DATASETS))
            .bearer_auth(&token)
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["dataset_id"].as_str().unwrap().to_string();
    for path in [DATASETS.to_string(), format!("{DATASETS}/{id}")] {
        let anonymous = get(&server, &path, &[]).await;
        assert_eq!(anonymous.status, 401, "{path} without a token");
        let forged = get(&server, &path, &[("Authorization", "Bearer forged")]).await;
        assert_eq!(forged.status, 403, "{path} with a token nobody was given");
        let admin = send(server.client.get(server.url(&path)).bearer_auth(&token)).await;
        assert_eq!(admin.status, 200, "{path} as admin");
    }
    server.stop().await;
}
