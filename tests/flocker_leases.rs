//! Flocker's lease API over real HTTP: every Leases behaviour of the acceptance checklist
//! (spec §7) and of §2.9, expiry by the sweeper, persistence, and how leases move the
//! configuration tag (leases are part of the tagged configuration; floe also honours
//! `X-If-Configuration-Matches` on acquire and release).
mod common;

use std::time::{Duration, Instant};

use common::http::{Answer, IF_MATCHES, SCHEMA, UNDECODABLE, send};
use common::{NODE_0, NODE_1, TestServer};
use serde_json::{Value, json};

const LEASES: &str = "/v1/configuration/leases";
const DATASETS: &str = "/v1/configuration/datasets";
const HELD: &str = "Lease already held.";
const NOT_FOUND: &str = "Lease not found.";

fn lease_path(id: &str) -> String {
    format!("{LEASES}/{id}")
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn lease(dataset: &str, node: &str, expires: Value) -> Value {
    json!({"dataset_id": dataset, "node_uuid": node, "expires": expires})
}

async fn acquire(s: &TestServer, dataset: &str, node: &str, expires: Value) -> Answer {
    send(
        s.client
            .post(s.url(LEASES))
            .json(&lease(dataset, node, expires)),
    )
    .await
}

async fn acquire_if(
    s: &TestServer,
    dataset: &str,
    node: &str,
    expires: Value,
    tag: &str,
) -> Answer {
    send(
        s.client
            .post(s.url(LEASES))
            .header(IF_MATCHES, tag)
            .json(&lease(dataset, node, expires)),
    )
    .await
}

async fn release(s: &TestServer, dataset: &str) -> Answer {
    send(s.client.delete(s.url(&lease_path(dataset)))).await
}

async fn release_if(s: &TestServer, dataset: &str, tag: &str) -> Answer {
    send(
        s.client
            .delete(s.url(&lease_path(dataset)))
            .header(IF_MATCHES, tag),
    )
    .await
}

/// The lease list, sorted by dataset id, and its tag.
async fn leases(s: &TestServer) -> (Vec<Value>, String) {
    let answer = send(s.client.get(s.url(LEASES))).await;
    assert_eq!(answer.status, 200);
    answer.assert_json();
    let mut items = answer.body.as_array().expect("an array").clone();
    items.sort_by(|a, b| {
        a["dataset_id"]
            .as_str()
            .unwrap()
            .cmp(b["dataset_id"].as_str().unwrap())
    });
    for item in &items {
        let object = item.as_object().expect("a lease object");
        assert_eq!(
            object.len(),
            3,
            "exactly dataset_id, node_uuid, expires: {item}"
        );
        assert!(
            object["expires"].is_null() || object["expires"].is_f64(),
            "{item}"
        );
    }
    (items, answer.tag())
}

async fn datasets_tag(s: &TestServer) -> String {
    let answer = send(s.client.get(s.url(DATASETS))).await;
    assert_eq!(answer.status, 200);
    answer.tag()
}

/// The list with `expires` replaced by `"<number>"` / null, and the expires values, for
/// comparisons that tolerate the clock.
fn split_expires(items: &[Value]) -> (Vec<Value>, Vec<Option<f64>>) {
    let mut shapes = Vec::new();
    let mut expires = Vec::new();
    for item in items {
        let mut shape = item.clone();
        let value = item["expires"].as_f64();
        if value.is_some() {
            shape["expires"] = json!("<number>");
        }
        shapes.push(shape);
        expires.push(value);
    }
    (shapes, expires)
}

fn assert_between(value: f64, low: f64, high: f64) {
    assert!(
        (low..=high).contains(&value),
        "{value} not in [{low}, {high}]"
    );
}

async fn restart(s: TestServer) -> TestServer {
    let dir = s.stop().await;
    TestServer::start_in(dir, |_| {}).await
}

// ----------------------------------------------------------------------------------------------
// GET

#[tokio::test]
async fn get_empty() {
    let s = TestServer::start().await;
    let answer = send(s.client.get(s.url(LEASES))).await;
    assert_eq!(answer.status, 200);
    answer.assert_json();
    assert_eq!(answer.body, json!([]));
    assert_eq!(
        answer.tag(),
        datasets_tag(&s).await,
        "one configuration, one tag"
    );
}

#[tokio::test]
async fn get_lists_remaining_seconds_and_null() {
    let s = TestServer::start().await;
    let (a, b) = {
        let mut ids = [new_id(), new_id()];
        ids.sort();
        (ids[0].clone(), ids[1].clone())
    };
    assert_eq!(acquire(&s, &a, NODE_0, json!(15)).await.status, 201);
    assert_eq!(acquire(&s, &b, NODE_1, json!(null)).await.status, 201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (items, _) = leases(&s).await;
    let (shapes, expires) = split_expires(&items);
    assert_eq!(
        shapes,
        vec![
            lease(&a, NODE_0, json!("<number>")),
            lease(&b, NODE_1, json!(null))
        ]
    );
    // Seconds remaining, counting down.
    assert_between(expires[0].unwrap(), 13.0, 14.8);
    assert_eq!(expires[1], None);
}

#[tokio::test]
async fn get_ignores_a_body() {
    let s = TestServer::start().await;
    acquire(&s, &new_id(), NODE_0, json!(null)).await;
    let answer = send(
        s.client
            .get(s.url(LEASES))
            .header("Content-Type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.as_array().unwrap().len(), 1);
}

// ----------------------------------------------------------------------------------------------
// POST (acquire / renew)

#[tokio::test]
async fn acquire_no_expiration() {
    let s = TestServer::start().await;
    let tag_before = leases(&s).await.1;
    let dataset = new_id();
    let answer = acquire(&s, &dataset, NODE_0, json!(null)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.assert_json();
    assert_eq!(answer.body, lease(&dataset, NODE_0, json!(null)));
    let (items, tag) = leases(&s).await;
    assert_eq!(items, vec![lease(&dataset, NODE_0, json!(null))]);
    assert_ne!(tag, tag_before, "acquiring changes the tag");
    assert_eq!(answer.tag(), tag, "the 201 carries the tag after the write");
    assert_eq!(datasets_tag(&s).await, tag);
}

#[tokio::test]
async fn acquire_with_expiration() {
    let s = TestServer::start().await;
    let dataset = new_id();
    let answer = acquire(&s, &dataset, NODE_0, json!(60)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    // The requested number, echoed as a float.
    assert_eq!(answer.body, lease(&dataset, NODE_0, json!(60.0)));
    assert!(answer.text.contains("60.0"), "{}", answer.text);
    let (items, tag) = leases(&s).await;
    assert_eq!(answer.tag(), tag);
    let (shapes, expires) = split_expires(&items);
    assert_eq!(shapes, vec![lease(&dataset, NODE_0, json!("<number>"))]);
    assert_between(expires[0].unwrap(), 58.0, 60.0);
    assert!(expires[0].unwrap() < 60.0, "time has passed");
}

#[tokio::test]
async fn acquire_echoes_fractional_and_float_expiry() {
    let s = TestServer::start().await;
    let a = new_id();
    let answer = acquire(&s, &a, NODE_0, json!(1.5e3)).await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.body["expires"], json!(1500.0));
    let b = new_id();
    let answer = acquire(&s, &b, NODE_0, json!(30.25)).await;
    assert_eq!(answer.body["expires"], json!(30.25));
    let c = new_id();
    let answer = acquire(&s, &c, NODE_0, json!(30)).await;
    assert_eq!(answer.body["expires"], json!(30.0));
    // About 31 years is fine.
    let d = new_id();
    let answer = acquire(&s, &d, NODE_0, json!(1_000_000_000)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.body["expires"], json!(1e9));
}

#[tokio::test]
async fn acquire_already_held_by_another_node() {
    let s = TestServer::start().await;
    let dataset = new_id();
    assert_eq!(acquire(&s, &dataset, NODE_0, json!(null)).await.status, 201);
    let before = leases(&s).await;
    acquire(&s, &dataset, NODE_1, json!(null))
        .await
        .assert_error(409, HELD);
    acquire(&s, &dataset, NODE_1, json!(100))
        .await
        .assert_error(409, HELD);
    assert_eq!(leases(&s).await, before, "unchanged, tag included");
    assert_eq!(before.0, vec![lease(&dataset, NODE_0, json!(null))]);
}

#[tokio::test]
async fn renew_updates_the_expiration() {
    let s = TestServer::start().await;
    let dataset = new_id();
    assert_eq!(acquire(&s, &dataset, NODE_0, json!(10)).await.status, 201);
    let tag_before = leases(&s).await.1;
    let answer = acquire(&s, &dataset, NODE_0, json!(100)).await;
    assert_eq!(answer.status, 200, "a renewal: {}", answer.text);
    answer.assert_json();
    assert_eq!(answer.body, lease(&dataset, NODE_0, json!(100.0)));
    let (items, tag) = leases(&s).await;
    assert_between(items[0]["expires"].as_f64().unwrap(), 98.0, 100.0);
    assert_ne!(tag, tag_before, "a renewal changes the tag");
    assert_eq!(answer.tag(), tag);
    // Renew to never-expiring.
    let answer = acquire(&s, &dataset, NODE_0, json!(null)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, lease(&dataset, NODE_0, json!(null)));
    let (items, tag2) = leases(&s).await;
    assert_eq!(items, vec![lease(&dataset, NODE_0, json!(null))]);
    assert_ne!(tag2, tag);
    assert_eq!(answer.tag(), tag2);
    // And back to expiring.
    let answer = acquire(&s, &dataset, NODE_0, json!(50)).await;
    assert_eq!(answer.status, 200);
    assert_between(
        leases(&s).await.0[0]["expires"].as_f64().unwrap(),
        48.0,
        50.0,
    );
}

#[tokio::test]
async fn identical_renewal_keeps_the_tag() {
    let s = TestServer::start().await;
    let dataset = new_id();
    assert_eq!(acquire(&s, &dataset, NODE_0, json!(null)).await.status, 201);
    let before = leases(&s).await;
    let answer = acquire(&s, &dataset, NODE_0, json!(null)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, lease(&dataset, NODE_0, json!(null)));
    assert_eq!(
        answer.tag(),
        before.1,
        "renewing to an identical lease is a no-op"
    );
    assert_eq!(leases(&s).await, before);
}

#[tokio::test]
async fn dataset_existence_is_not_checked() {
    let s = TestServer::start().await;
    // Neither a dataset nor a node exists; any UUID (even a non-v4 one) is a dataset id.
    let dataset = "00000000-0000-1000-8000-000000000000";
    let answer = acquire(&s, dataset, NODE_0, json!(null)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(
        leases(&s).await.0,
        vec![lease(dataset, NODE_0, json!(null))]
    );
    // And a lease does not stop a dataset from being deleted.
    let created = send(
        s.client
            .post(s.url(DATASETS))
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    let id = created.body["dataset_id"].as_str().unwrap().to_string();
    assert_eq!(acquire(&s, &id, NODE_0, json!(null)).await.status, 201);
    let deleted = send(s.client.delete(s.url(&format!("{DATASETS}/{id}")))).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(
        leases(&s).await.0.len(),
        2,
        "the lease outlives the dataset"
    );
}

#[tokio::test]
async fn acquire_schema_failures() {
    let s = TestServer::start().await;
    let dataset = new_id();
    let before = leases(&s).await;
    for body in [
        json!({"dataset_id": dataset, "node_uuid": NODE_0}),
        json!({"dataset_id": dataset, "expires": null}),
        json!({"node_uuid": NODE_0, "expires": null}),
        json!({"dataset_id": dataset, "node_uuid": NODE_0, "expires": "10"}),
        json!({"dataset_id": dataset, "node_uuid": NODE_0, "expires": true}),
        json!({"dataset_id": dataset, "node_uuid": "192.0.2.1", "expires": null}),
        json!({"dataset_id": &dataset[..35], "node_uuid": NODE_0, "expires": null}),
        json!({"dataset_id": format!("{dataset}0"), "node_uuid": NODE_0, "expires": null}),
        json!({"dataset_id": 10, "node_uuid": NODE_0, "expires": null}),
        json!([]),
        json!(null),
    ] {
        let answer = send(s.client.post(s.url(LEASES)).json(&body)).await;
        assert_eq!(answer.status, 400, "{body} was accepted");
        answer.assert_schema_error();
    }
    let answer = send(s.client.post(s.url(LEASES)).json(&json!({
        "dataset_id": dataset, "node_uuid": NODE_0, "expires": null, "junk": 1,
    })))
    .await;
    assert_eq!(
        answer.body,
        json!({
            "description": SCHEMA,
            "errors": ["Additional properties are not allowed ('junk' was unexpected)"],
        })
    );
    assert_eq!(leases(&s).await, before);
}

#[tokio::test]
async fn acquire_non_uuid_36_char_dataset_id_is_a_schema_error() {
    let s = TestServer::start().await;
    for dataset in ["x".repeat(36), "g".repeat(8) + &new_id()[8..]] {
        assert_eq!(dataset.len(), 36);
        let answer = acquire(&s, &dataset, NODE_0, json!(null)).await;
        answer.assert_schema_error();
    }
    assert_eq!(leases(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn acquire_expiry_beyond_a_century_is_refused() {
    let s = TestServer::start().await;
    for expires in [1e300, -1e300, 1e12, -1e12] {
        let answer = send(s.client.post(s.url(LEASES)).body(format!(
            r#"{{"dataset_id": "{}", "node_uuid": "{NODE_0}", "expires": {expires:e}}}"#,
            new_id()
        )))
        .await;
        answer.assert_bad_request();
    }
    assert_eq!(leases(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn acquire_undecodable_body() {
    let s = TestServer::start().await;
    for body in ["", "nope", "{\"dataset_id\": "] {
        send(
            s.client
                .post(s.url(LEASES))
                .header("Content-Type", "application/json")
                .body(body),
        )
        .await
        .assert_error(400, UNDECODABLE);
    }
    // Content-Type is ignored for a good body.
    let dataset = new_id();
    let answer = send(
        s.client
            .post(s.url(LEASES))
            .header("Content-Type", "text/plain")
            .body(lease(&dataset, NODE_0, json!(null)).to_string()),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
}

// ----------------------------------------------------------------------------------------------
// DELETE (release)

#[tokio::test]
async fn delete_existing() {
    let s = TestServer::start().await;
    let kept = new_id();
    let dataset = new_id();
    acquire(&s, &kept, NODE_1, json!(null)).await;
    assert_eq!(acquire(&s, &dataset, NODE_0, json!(60)).await.status, 201);
    let tag_before = leases(&s).await.1;
    let answer = release(&s, &dataset).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.assert_json();
    // The lease as it was, expiry relative to now.
    let (shape, expires) = split_expires(std::slice::from_ref(&answer.body));
    assert_eq!(shape, vec![lease(&dataset, NODE_0, json!("<number>"))]);
    assert_between(expires[0].unwrap(), 58.0, 60.0);
    let (items, tag) = leases(&s).await;
    assert_eq!(items, vec![lease(&kept, NODE_1, json!(null))]);
    assert_ne!(tag, tag_before, "releasing changes the tag");
    assert_eq!(answer.tag(), tag, "the 200 carries the tag after the write");
    // Releasing a never-expiring lease returns null; any node's lease can be released.
    let answer = release(&s, &kept).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, lease(&kept, NODE_1, json!(null)));
    assert_eq!(leases(&s).await.0, Vec::<Value>::new());
    // Released: another node may now take it.
    assert_eq!(acquire(&s, &dataset, NODE_1, json!(null)).await.status, 201);
}

#[tokio::test]
async fn delete_non_existent() {
    let s = TestServer::start().await;
    let kept = new_id();
    acquire(&s, &kept, NODE_0, json!(null)).await;
    let before = leases(&s).await;
    release(&s, &new_id()).await.assert_error(404, NOT_FOUND);
    assert_eq!(leases(&s).await, before, "nothing removed, tag unchanged");
    // Releasing twice: the second is a 404.
    assert_eq!(release(&s, &kept).await.status, 200);
    release(&s, &kept).await.assert_error(404, NOT_FOUND);
}

#[tokio::test]
async fn delete_non_uuid_id_is_400() {
    let s = TestServer::start().await;
    for id in [
        "not-a-uuid".to_string(),
        "x".repeat(36),
        "%ZZ".to_string(),
        "12345".to_string(),
    ] {
        let answer = release(&s, &id).await;
        assert_eq!(answer.status, 400, "{id}: {}", answer.text);
        answer.assert_bad_request();
    }
}

#[tokio::test]
async fn delete_ignores_body_and_content_type() {
    let s = TestServer::start().await;
    let a = new_id();
    let b = new_id();
    acquire(&s, &a, NODE_0, json!(null)).await;
    acquire(&s, &b, NODE_0, json!(null)).await;
    let answer = send(
        s.client
            .delete(s.url(&lease_path(&a)))
            .header("Content-Type", "application/json")
            .body(""),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body, lease(&a, NODE_0, json!(null)));
    let answer = send(
        s.client
            .delete(s.url(&lease_path(&b)))
            .header("Content-Type", "application/json")
            .body("{junk"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(leases(&s).await.0, Vec::<Value>::new());
}

// ----------------------------------------------------------------------------------------------
// Expiry, persistence

#[tokio::test]
async fn expired_lease_is_swept() {
    let s = TestServer::start().await;
    let forever = new_id();
    acquire(&s, &forever, NODE_1, json!(null)).await;
    let dataset = new_id();
    let started = Instant::now();
    let answer = acquire(&s, &dataset, NODE_0, json!(1)).await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.body, lease(&dataset, NODE_0, json!(1.0)));
    let tag_with_lease = answer.tag();
    loop {
        let (items, tag) = leases(&s).await;
        if items.len() == 1 {
            assert_eq!(items, vec![lease(&forever, NODE_1, json!(null))]);
            assert_ne!(tag, tag_with_lease, "expiry changes the tag");
            assert_eq!(datasets_tag(&s).await, tag);
            assert!(
                started.elapsed() >= Duration::from_millis(900),
                "swept before it expired"
            );
            break;
        }
        assert_eq!(tag, tag_with_lease, "nothing else changes meanwhile");
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "the lease was not swept within 2.5 s: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The dataset is free again.
    assert_eq!(acquire(&s, &dataset, NODE_1, json!(null)).await.status, 201);
}

#[tokio::test]
async fn expired_lease_can_be_taken_by_another_node_before_or_after_sweep() {
    // A lease past its expiry no longer blocks another node, whether or not the sweeper ran.
    let s = TestServer::start().await;
    let dataset = new_id();
    assert_eq!(acquire(&s, &dataset, NODE_0, json!(0.2)).await.status, 201);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let answer = acquire(&s, &dataset, NODE_1, json!(null)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(
        leases(&s).await.0,
        vec![lease(&dataset, NODE_1, json!(null))]
    );
}

#[tokio::test]
async fn leases_persist_across_restart() {
    let s = TestServer::start().await;
    let (a, b) = {
        let mut ids = [new_id(), new_id()];
        ids.sort();
        (ids[0].clone(), ids[1].clone())
    };
    acquire(&s, &a, NODE_0, json!(1000)).await;
    acquire(&s, &b, NODE_1, json!(null)).await;
    let s = restart(s).await;
    let (items, _) = leases(&s).await;
    let (shapes, expires) = split_expires(&items);
    assert_eq!(
        shapes,
        vec![
            lease(&a, NODE_0, json!("<number>")),
            lease(&b, NODE_1, json!(null))
        ]
    );
    // Whole seconds may be lost, no more.
    assert_between(expires[0].unwrap(), 997.0, 1000.0);
    // Still held after the restart.
    acquire(&s, &a, NODE_1, json!(null))
        .await
        .assert_error(409, HELD);
    assert_eq!(acquire(&s, &b, NODE_1, json!(5)).await.status, 200);
}

// ----------------------------------------------------------------------------------------------
// Conditional requests on leases (floe addition)

#[tokio::test]
async fn acquire_if_matches() {
    let s = TestServer::start().await;
    let tag = leases(&s).await.1;
    let dataset = new_id();
    let answer = acquire_if(&s, &dataset, NODE_0, json!(null), &tag).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let (items, new_tag) = leases(&s).await;
    assert_eq!(items.len(), 1);
    assert_eq!(answer.tag(), new_tag);
    // The old tag is stale now.
    let other = new_id();
    let answer = acquire_if(&s, &other, NODE_0, json!(null), &tag).await;
    answer.assert_error(
        412,
        &format!("Tag doesn't match. Required: {tag}, current: {new_tag}"),
    );
    assert_eq!(answer.tag(), new_tag, "the 412 carries the current tag");
    assert_eq!(leases(&s).await, (items, new_tag.clone()));
    // A renewal with the current tag works.
    let answer = acquire_if(&s, &dataset, NODE_0, json!(30), &new_tag).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn acquire_precondition_comes_first() {
    let s = TestServer::start().await;
    let dataset = new_id();
    acquire(&s, &dataset, NODE_0, json!(null)).await;
    let before = leases(&s).await;
    let expected = format!("Tag doesn't match. Required: wrong, current: {}", before.1);
    // Before 409 (held by another node).
    acquire_if(&s, &dataset, NODE_1, json!(null), "wrong")
        .await
        .assert_error(412, &expected);
    // Before 400 (schema, undecodable).
    send(
        s.client
            .post(s.url(LEASES))
            .header(IF_MATCHES, "wrong")
            .json(&json!({"junk": 1})),
    )
    .await
    .assert_error(412, &expected);
    send(
        s.client
            .post(s.url(LEASES))
            .header(IF_MATCHES, "wrong")
            .body("garbage"),
    )
    .await
    .assert_error(412, &expected);
    assert_eq!(leases(&s).await, before);
}

#[tokio::test]
async fn release_if_matches() {
    let s = TestServer::start().await;
    let dataset = new_id();
    acquire(&s, &dataset, NODE_0, json!(null)).await;
    let before = leases(&s).await;
    let expected = format!("Tag doesn't match. Required: wrong, current: {}", before.1);
    let answer = release_if(&s, &dataset, "wrong").await;
    answer.assert_error(412, &expected);
    assert_eq!(answer.tag(), before.1);
    // Before 404.
    release_if(&s, &new_id(), "wrong")
        .await
        .assert_error(412, &expected);
    assert_eq!(leases(&s).await, before, "still held");
    // With the current tag (one of several header lines).
    let answer = send(
        s.client
            .delete(s.url(&lease_path(&dataset)))
            .header(IF_MATCHES, "wrong")
            .header(IF_MATCHES, before.1.as_str()),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let (items, tag) = leases(&s).await;
    assert_eq!(items, Vec::<Value>::new());
    assert_eq!(answer.tag(), tag);
}

#[tokio::test]
async fn lease_changes_invalidate_dataset_tags() {
    // Leases are inside the tagged configuration: a dataset write conditioned on a tag read
    // before a lease change fails.
    let s = TestServer::start().await;
    let tag = datasets_tag(&s).await;
    acquire(&s, &new_id(), NODE_0, json!(null)).await;
    let answer = send(
        s.client
            .post(s.url(DATASETS))
            .header(IF_MATCHES, tag.as_str())
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(answer.status, 412, "{}", answer.text);
    // And a dataset write changes the lease list's tag.
    let lease_tag = leases(&s).await.1;
    let created = send(
        s.client
            .post(s.url(DATASETS))
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_ne!(leases(&s).await.1, lease_tag);
    assert_eq!(leases(&s).await.1, created.tag());
}

#[tokio::test]
async fn failed_lease_writes_keep_the_tag() {
    let s = TestServer::start().await;
    let dataset = new_id();
    acquire(&s, &dataset, NODE_0, json!(null)).await;
    let before = leases(&s).await;
    acquire(&s, &dataset, NODE_1, json!(null)).await; // 409
    release(&s, &new_id()).await; // 404
    acquire(&s, "bad", NODE_0, json!(null)).await; // 400
    assert_eq!(leases(&s).await, before);
}
