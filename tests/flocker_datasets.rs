//! Flocker's control API for the version and datasets, over real HTTP: every behaviour of the
//! acceptance checklist (spec §7: Version, CreateDataset, UpdateDatasetGeneral,
//! UpdatePrimaryDataset, DeleteDataset, GetDatasetConfiguration), the schema cases after it,
//! the conditional-request rules of §3, and the general conventions of §1.
mod common;

use common::http::{Answer, IF_MATCHES, SCHEMA, UNDECODABLE, send};
use common::{NODE_0, NODE_1, TestServer};
use serde_json::{Value, json};

const NOT_FOUND: &str = "Dataset not found.";
const IN_USE: &str = "The provided dataset_id is already in use.";
const DELETED: &str = "The dataset has been deleted.";
const DATASETS: &str = "/v1/configuration/datasets";

async fn get(s: &TestServer, path: &str) -> Answer {
    send(s.client.get(s.url(path))).await
}

async fn post(s: &TestServer, path: &str, body: &Value) -> Answer {
    send(s.client.post(s.url(path)).json(body)).await
}

async fn post_if(s: &TestServer, path: &str, body: &Value, tag: &str) -> Answer {
    send(
        s.client
            .post(s.url(path))
            .header(IF_MATCHES, tag)
            .json(body),
    )
    .await
}

async fn delete(s: &TestServer, path: &str) -> Answer {
    send(s.client.delete(s.url(path))).await
}

async fn delete_if(s: &TestServer, path: &str, tag: &str) -> Answer {
    send(s.client.delete(s.url(path)).header(IF_MATCHES, tag)).await
}

async fn create(s: &TestServer, body: Value) -> Answer {
    let answer = post(s, DATASETS, &body).await;
    assert_eq!(answer.status, 201, "create {body}: {}", answer.body);
    answer
}

/// The dataset list, sorted by id, and its tag.
async fn list(s: &TestServer) -> (Vec<Value>, String) {
    let answer = get(s, DATASETS).await;
    assert_eq!(answer.status, 200);
    answer.assert_json();
    (sorted(answer.body.clone()), answer.tag())
}

async fn current_tag(s: &TestServer) -> String {
    list(s).await.1
}

fn sorted(list: Value) -> Vec<Value> {
    let mut items = list.as_array().expect("a JSON array").clone();
    items.sort_by(|a, b| {
        a["dataset_id"]
            .as_str()
            .unwrap()
            .cmp(b["dataset_id"].as_str().unwrap())
    });
    items
}

fn sorted_values(items: &[Value]) -> Vec<Value> {
    sorted(Value::Array(items.to_vec()))
}

fn dataset_path(id: &str) -> String {
    format!("{DATASETS}/{id}")
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn id_of(answer: &Answer) -> String {
    answer.body["dataset_id"].as_str().unwrap().to_string()
}

async fn restart(s: TestServer) -> TestServer {
    let dir = s.stop().await;
    TestServer::start_in(dir, |_| {}).await
}

/// Asserts that a failed write changed nothing: same list, same tag.
async fn assert_unchanged(s: &TestServer, before: &(Vec<Value>, String)) {
    let after = list(s).await;
    assert_eq!(&after, before, "a refused write changed the configuration");
}

// ----------------------------------------------------------------------------------------------
// Version

#[tokio::test]
async fn version() {
    let s = TestServer::start().await;
    let answer = get(&s, "/v1/version").await;
    assert_eq!(answer.status, 200);
    answer.assert_json();
    let object = answer.body.as_object().expect("an object");
    assert_eq!(object.len(), 1, "only `flocker`: {}", answer.body);
    assert!(
        object["flocker"].as_str().unwrap().starts_with("1.15.0"),
        "{}",
        answer.body
    );
    assert_eq!(answer.body, json!({"flocker": "1.15.0+floe.0.1.0"}));
}

// ----------------------------------------------------------------------------------------------
// CreateDataset

#[tokio::test]
async fn create_wrong_schema() {
    let s = TestServer::start().await;
    let before = list(&s).await;
    let answer = post(&s, DATASETS, &json!({"primary": NODE_0, "junk": "garbage"})).await;
    answer.assert_schema_errors(&["Additional properties are not allowed ('junk' was unexpected)"]);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn create_missing_primary() {
    let s = TestServer::start().await;
    let answer = post(&s, DATASETS, &json!({})).await;
    answer.assert_schema_errors(&["\"primary\" is a required property"]);
    assert_eq!(list(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn create_collision_same_node() {
    let s = TestServer::start().await;
    let id = new_id();
    create(&s, json!({"primary": NODE_0, "dataset_id": id})).await;
    let before = list(&s).await;
    let answer = post(&s, DATASETS, &json!({"primary": NODE_0, "dataset_id": id})).await;
    answer.assert_error(409, IN_USE);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn create_collision_different_node() {
    let s = TestServer::start().await;
    let id = new_id();
    create(
        &s,
        json!({"primary": NODE_0, "dataset_id": id, "metadata": {"a": "b"}}),
    )
    .await;
    let before = list(&s).await;
    let answer = post(&s, DATASETS, &json!({"primary": NODE_1, "dataset_id": id})).await;
    answer.assert_error(409, IN_USE);
    assert_unchanged(&s, &before).await;
    assert_eq!(
        before.0,
        vec![
            json!({"dataset_id": id, "primary": NODE_0, "deleted": false, "metadata": {"a": "b"}})
        ]
    );
}

#[tokio::test]
async fn create_collision_different_case() {
    let s = TestServer::start().await;
    let id = new_id();
    let upper = id.to_uppercase();
    assert_ne!(id, upper);
    // An upper-case id is stored and answered in lower case.
    let answer = create(&s, json!({"primary": NODE_0, "dataset_id": upper})).await;
    assert_eq!(
        answer.body,
        json!({"dataset_id": id, "primary": NODE_0, "deleted": false, "metadata": {}})
    );
    let before = list(&s).await;
    assert_eq!(before.0, vec![answer.body.clone()]);
    // Both other spellings collide.
    post(&s, DATASETS, &json!({"primary": NODE_1, "dataset_id": id}))
        .await
        .assert_error(409, IN_USE);
    post(
        &s,
        DATASETS,
        &json!({"primary": NODE_0, "dataset_id": upper}),
    )
    .await
    .assert_error(409, IN_USE);
    assert_unchanged(&s, &before).await;
    // And the other way round: lower case first, then upper case.
    let id2 = new_id();
    create(&s, json!({"primary": NODE_0, "dataset_id": id2})).await;
    post(
        &s,
        DATASETS,
        &json!({"primary": NODE_0, "dataset_id": id2.to_uppercase()}),
    )
    .await
    .assert_error(409, IN_USE);
}

#[tokio::test]
async fn create_collision_with_deleted_dataset() {
    let s = TestServer::start().await;
    let id = new_id();
    create(&s, json!({"primary": NODE_0, "dataset_id": id})).await;
    assert_eq!(delete(&s, &dataset_path(&id)).await.status, 200);
    let before = list(&s).await;
    post(&s, DATASETS, &json!({"primary": NODE_0, "dataset_id": id}))
        .await
        .assert_error(409, IN_USE);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn minimal_create_generates_an_id_and_persists() {
    let s = TestServer::start().await;
    let tag_before = current_tag(&s).await;
    let answer = create(&s, json!({"primary": NODE_0})).await;
    answer.assert_json();
    let id = id_of(&answer);
    let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 4, "a v4 UUID: {id}");
    assert_eq!(id, parsed.to_string(), "lower-case hyphenated form");
    let expected = json!({"dataset_id": id, "primary": NODE_0, "deleted": false, "metadata": {}});
    assert_eq!(answer.body, expected);
    let (items, tag) = list(&s).await;
    assert_eq!(items, vec![expected.clone()]);
    assert_ne!(tag, tag_before, "the tag changes on create");
    assert_eq!(answer.tag(), tag, "the 201 carries the tag after the write");

    let s = restart(s).await;
    let (items, tag_after_restart) = list(&s).await;
    assert_eq!(items, vec![expected]);
    common::assert_same_revision_new_tag(&tag, &tag_after_restart, "datasets");
}

#[tokio::test]
async fn create_ignores_other_nodes() {
    let s = TestServer::start().await;
    let first = create(
        &s,
        json!({"primary": NODE_1, "metadata": {"name": "other"}, "maximum_size": 67108864}),
    )
    .await
    .body;
    let second = create(&s, json!({"primary": NODE_0})).await.body;
    let third = create(&s, json!({"primary": NODE_1})).await.body;
    let (items, _) = list(&s).await;
    assert_eq!(items, sorted_values(&[first, second, third]));
}

#[tokio::test]
async fn create_generates_different_dataset_ids() {
    let s = TestServer::start().await;
    let a = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let b = id_of(&create(&s, json!({"primary": NODE_0})).await);
    assert_ne!(a, b);
    assert_eq!(list(&s).await.0.len(), 2);
}

#[tokio::test]
async fn create_with_metadata_persists() {
    let s = TestServer::start().await;
    let metadata = json!({"name": "my-db", "owner": "données ☃", "empty": ""});
    let answer = create(&s, json!({"primary": NODE_0, "metadata": metadata})).await;
    let expected = json!({
        "dataset_id": id_of(&answer), "primary": NODE_0, "deleted": false, "metadata": metadata,
    });
    assert_eq!(answer.body, expected);
    assert_eq!(list(&s).await.0, vec![expected.clone()]);
    let s = restart(s).await;
    assert_eq!(list(&s).await.0, vec![expected]);
}

#[tokio::test]
async fn create_with_maximum_size_persists() {
    let s = TestServer::start().await;
    let size: u64 = 42 * 1024 * 1024 * 1024;
    let id = new_id();
    let answer = create(
        &s,
        json!({"primary": NODE_0, "dataset_id": id, "maximum_size": size}),
    )
    .await;
    let expected = json!({
        "dataset_id": id, "primary": NODE_0, "deleted": false, "metadata": {},
        "maximum_size": size,
    });
    assert_eq!(answer.body, expected);
    assert!(answer.body["maximum_size"].is_u64(), "an integer");
    assert_eq!(list(&s).await.0, vec![expected.clone()]);
    let s = restart(s).await;
    let (items, _) = list(&s).await;
    assert_eq!(items, vec![expected]);
    assert!(items[0]["maximum_size"].is_u64(), "still an integer");
}

#[tokio::test]
async fn create_with_maximum_size_null() {
    let s = TestServer::start().await;
    let answer = create(&s, json!({"primary": NODE_0, "maximum_size": null})).await;
    let expected = json!({
        "dataset_id": id_of(&answer), "primary": NODE_0, "deleted": false, "metadata": {},
    });
    assert_eq!(answer.body, expected, "maximum_size is omitted");
    assert_eq!(list(&s).await.0, vec![expected]);
}

#[tokio::test]
async fn create_unknown_primary_node_is_accepted() {
    let s = TestServer::start().await;
    let node = new_id();
    let answer = create(&s, json!({"primary": node})).await;
    assert_eq!(answer.body["primary"], json!(node));
    assert_eq!(list(&s).await.0, vec![answer.body]);
}

#[tokio::test]
async fn create_upper_case_primary_is_answered_in_canonical_form() {
    let s = TestServer::start().await;
    let answer = create(&s, json!({"primary": NODE_0.to_uppercase()})).await;
    assert_eq!(answer.body["primary"], json!(NODE_0));
    assert_eq!(list(&s).await.0[0]["primary"], json!(NODE_0));
}

#[tokio::test]
async fn create_with_deleted_key_is_refused() {
    let s = TestServer::start().await;
    let before = list(&s).await;
    for deleted in [true, false] {
        let answer = post(
            &s,
            DATASETS,
            &json!({"primary": NODE_0, "deleted": deleted}),
        )
        .await;
        assert_eq!(answer.status, 400, "deleted: {deleted}: {}", answer.body);
        answer.assert_json();
        let description = answer.body["description"].as_str().expect("a description");
        assert_ne!(description, SCHEMA);
        assert!(description.contains("deleted"), "{description}");
    }
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn create_if_matches_success() {
    let s = TestServer::start().await;
    let tag = current_tag(&s).await;
    let answer = post_if(&s, DATASETS, &json!({"primary": NODE_0}), &tag).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let (items, new_tag) = list(&s).await;
    assert_eq!(items, vec![answer.body.clone()]);
    assert_eq!(answer.tag(), new_tag);
    assert_ne!(new_tag, tag);
    // The new tag works too, the old one no longer does.
    let second = post_if(&s, DATASETS, &json!({"primary": NODE_1}), &new_tag).await;
    assert_eq!(second.status, 201);
    let third = post_if(&s, DATASETS, &json!({"primary": NODE_1}), &tag).await;
    assert_eq!(third.status, 412);
}

#[tokio::test]
async fn create_if_matches_failure() {
    let s = TestServer::start().await;
    create(&s, json!({"primary": NODE_0})).await;
    let before = list(&s).await;
    let answer = post_if(&s, DATASETS, &json!({"primary": NODE_0}), "willnotmatch").await;
    answer.assert_error(
        412,
        &format!(
            "Tag doesn't match. Required: willnotmatch, current: {}",
            before.1
        ),
    );
    assert_eq!(answer.tag(), before.1, "the 412 carries the current tag");
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn create_precondition_comes_before_body_and_conflict() {
    let s = TestServer::start().await;
    let id = new_id();
    create(&s, json!({"primary": NODE_0, "dataset_id": id})).await;
    let before = list(&s).await;
    let expected = format!("Tag doesn't match. Required: nope, current: {}", before.1);
    // 412 before 400 (undecodable body).
    let answer = send(
        s.client
            .post(s.url(DATASETS))
            .header(IF_MATCHES, "nope")
            .body("{not json"),
    )
    .await;
    answer.assert_error(412, &expected);
    // 412 before 400 (empty body).
    let answer = send(s.client.post(s.url(DATASETS)).header(IF_MATCHES, "nope")).await;
    answer.assert_error(412, &expected);
    // 412 before 400 (schema).
    post_if(&s, DATASETS, &json!({"junk": 1}), "nope")
        .await
        .assert_error(412, &expected);
    // 412 before 400 (the `deleted` key).
    post_if(
        &s,
        DATASETS,
        &json!({"primary": NODE_0, "deleted": true}),
        "nope",
    )
    .await
    .assert_error(412, &expected);
    // 412 before 409 (duplicate id).
    let answer = post_if(
        &s,
        DATASETS,
        &json!({"primary": NODE_0, "dataset_id": id}),
        "nope",
    )
    .await;
    answer.assert_error(412, &expected);
    assert_eq!(answer.tag(), before.1);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn create_if_matches_several_header_lines() {
    let s = TestServer::start().await;
    let tag = current_tag(&s).await;
    // Any matching line lets the write through.
    let answer = send(
        s.client
            .post(s.url(DATASETS))
            .header(IF_MATCHES, "first-wrong")
            .header(IF_MATCHES, tag.as_str())
            .header(IF_MATCHES, "third-wrong")
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    // None matching: 412 naming the first line.
    let before = list(&s).await;
    let answer = send(
        s.client
            .post(s.url(DATASETS))
            .header(IF_MATCHES, "first-wrong")
            .header(IF_MATCHES, tag.as_str())
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    answer.assert_error(
        412,
        &format!(
            "Tag doesn't match. Required: first-wrong, current: {}",
            before.1
        ),
    );
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn create_undecodable_and_empty_bodies() {
    let s = TestServer::start().await;
    let before = list(&s).await;
    for body in ["", "{not json", "{\"primary\": ", "\u{0}\u{1}"] {
        let answer = send(
            s.client
                .post(s.url(DATASETS))
                .header("Content-Type", "application/json")
                .body(body),
        )
        .await;
        answer.assert_error(400, UNDECODABLE);
    }
    // No Content-Type at all, empty body.
    send(s.client.post(s.url(DATASETS)))
        .await
        .assert_error(400, UNDECODABLE);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn create_ignores_content_type() {
    let s = TestServer::start().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = s
            .client
            .post(s.url(DATASETS))
            .body(json!({"primary": NODE_0}).to_string());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let answer = send(request).await;
        assert_eq!(answer.status, 201, "{content_type:?}: {}", answer.body);
        assert_eq!(answer.body["primary"], json!(NODE_0));
    }
    assert_eq!(list(&s).await.0.len(), 3);
}

#[tokio::test]
async fn create_accepts_and_ignores_eliot_task_id() {
    let s = TestServer::start().await;
    let answer = send(
        s.client
            .post(s.url(DATASETS))
            .header("X-Eliot-Task-Id", "not a task id")
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(answer.status, 201);
}

// ----------------------------------------------------------------------------------------------
// GET one dataset (floe addition)

#[tokio::test]
async fn get_one_dataset() {
    let s = TestServer::start().await;
    let answer = create(
        &s,
        json!({"primary": NODE_0, "metadata": {"name": "x"}, "maximum_size": 134217728}),
    )
    .await;
    let id = id_of(&answer);
    let one = get(&s, &dataset_path(&id)).await;
    assert_eq!(one.status, 200);
    one.assert_json();
    assert_eq!(one.body, answer.body);
    assert_eq!(one.tag(), current_tag(&s).await);

    get(&s, &dataset_path(&new_id()))
        .await
        .assert_error(404, NOT_FOUND);
    // Deleted datasets are still found, marked deleted.
    delete(&s, &dataset_path(&id)).await;
    let one = get(&s, &dataset_path(&id)).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["deleted"], json!(true));
}

// ----------------------------------------------------------------------------------------------
// UpdateDatasetGeneral

#[tokio::test]
async fn update_unknown_dataset() {
    let s = TestServer::start().await;
    create(&s, json!({"primary": NODE_0})).await;
    let before = list(&s).await;
    post(&s, &dataset_path(&new_id()), &json!({}))
        .await
        .assert_error(404, NOT_FOUND);
    post(&s, &dataset_path(&new_id()), &json!({"primary": NODE_1}))
        .await
        .assert_error(404, NOT_FOUND);
    assert_unchanged(&s, &before).await;
}

// ----------------------------------------------------------------------------------------------
// UpdatePrimaryDataset

#[tokio::test]
async fn change_primary_to_unconfigured_node_persists() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let tag_before = current_tag(&s).await;
    let target = new_id();
    let answer = post(&s, &dataset_path(&id), &json!({"primary": target})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.assert_json();
    let expected = json!({"dataset_id": id, "primary": target, "metadata": {}, "deleted": false});
    assert_eq!(answer.body, expected);
    let (items, tag) = list(&s).await;
    assert_eq!(items, vec![expected.clone()]);
    assert_ne!(tag, tag_before, "a move changes the tag");
    assert_eq!(answer.tag(), tag, "the 200 carries the tag after the write");
    let s = restart(s).await;
    assert_eq!(list(&s).await.0, vec![expected]);
}

#[tokio::test]
async fn change_primary_to_configured_node() {
    let s = TestServer::start().await;
    let other = create(&s, json!({"primary": NODE_1})).await.body;
    let moved = create(
        &s,
        json!({"primary": NODE_0, "metadata": {"k": "v"}, "maximum_size": 67108864}),
    )
    .await;
    let id = id_of(&moved);
    let answer = post(&s, &dataset_path(&id), &json!({"primary": NODE_1})).await;
    assert_eq!(answer.status, 200);
    let expected = json!({
        "dataset_id": id, "primary": NODE_1, "metadata": {"k": "v"}, "deleted": false,
        "maximum_size": 67108864,
    });
    assert_eq!(answer.body, expected);
    assert_eq!(list(&s).await.0, sorted_values(&[other, expected.clone()]));
    // And back.
    let back = post(&s, &dataset_path(&id), &json!({"primary": NODE_0})).await;
    assert_eq!(back.status, 200);
    assert_eq!(back.body["primary"], json!(NODE_0));
}

#[tokio::test]
async fn primary_unchanged_keeps_the_tag() {
    let s = TestServer::start().await;
    let created = create(&s, json!({"primary": NODE_0})).await.body;
    let id = created["dataset_id"].as_str().unwrap().to_string();
    let before = list(&s).await;
    let answer = post(&s, &dataset_path(&id), &json!({"primary": NODE_0})).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, created);
    assert_eq!(answer.tag(), before.1, "a no-op move keeps the tag");
    assert_unchanged(&s, &before).await;
    // The same with the node written in upper case.
    let answer = post(
        &s,
        &dataset_path(&id),
        &json!({"primary": NODE_0.to_uppercase()}),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, created);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn empty_update_is_a_no_op() {
    let s = TestServer::start().await;
    let created = create(&s, json!({"primary": NODE_0, "metadata": {"a": "b"}}))
        .await
        .body;
    let id = created["dataset_id"].as_str().unwrap().to_string();
    let before = list(&s).await;
    let answer = post(&s, &dataset_path(&id), &json!({})).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, created);
    assert_eq!(answer.tag(), before.1);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn primary_invalid() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let before = list(&s).await;
    for primary in [json!("192.0.2.257"), json!("example.com"), json!(5)] {
        post(&s, &dataset_path(&id), &json!({"primary": primary}))
            .await
            .assert_schema_error();
    }
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn update_extra_key_and_undecodable_body() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let before = list(&s).await;
    post(
        &s,
        &dataset_path(&id),
        &json!({"primary": NODE_1, "junk": true}),
    )
    .await
    .assert_schema_errors(&["Additional properties are not allowed ('junk' was unexpected)"]);
    post(&s, &dataset_path(&id), &json!({"metadata": {}}))
        .await
        .assert_schema_errors(&[
            "Additional properties are not allowed ('metadata' was unexpected)",
        ]);
    send(s.client.post(s.url(&dataset_path(&id))).body("nope"))
        .await
        .assert_error(400, UNDECODABLE);
    send(s.client.post(s.url(&dataset_path(&id))))
        .await
        .assert_error(400, UNDECODABLE);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn update_upper_case_id_in_url_is_not_found() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let before = list(&s).await;
    post(
        &s,
        &dataset_path(&id.to_uppercase()),
        &json!({"primary": NODE_1}),
    )
    .await
    .assert_error(404, NOT_FOUND);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn update_if_matches_success() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let tag = current_tag(&s).await;
    let answer = post_if(&s, &dataset_path(&id), &json!({"primary": NODE_1}), &tag).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["primary"], json!(NODE_1));
    let (_, new_tag) = list(&s).await;
    assert_ne!(new_tag, tag);
    assert_eq!(answer.tag(), new_tag);
}

#[tokio::test]
async fn update_if_matches_failure_and_precedence() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let gone = id_of(&create(&s, json!({"primary": NODE_0})).await);
    delete(&s, &dataset_path(&gone)).await;
    let before = list(&s).await;
    let expected = format!("Tag doesn't match. Required: bad, current: {}", before.1);
    // On an existing dataset.
    let answer = post_if(&s, &dataset_path(&id), &json!({"primary": NODE_1}), "bad").await;
    answer.assert_error(412, &expected);
    assert_eq!(answer.tag(), before.1);
    // 412, not 404, on a random id.
    post_if(&s, &dataset_path(&new_id()), &json!({}), "bad")
        .await
        .assert_error(412, &expected);
    // 412, not 400, for a bad body (schema, then undecodable).
    post_if(
        &s,
        &dataset_path(&id),
        &json!({"primary": "192.0.2.257"}),
        "bad",
    )
    .await
    .assert_error(412, &expected);
    send(
        s.client
            .post(s.url(&dataset_path(&id)))
            .header(IF_MATCHES, "bad")
            .body("garbage"),
    )
    .await
    .assert_error(412, &expected);
    // 412, not 405, on a deleted dataset.
    post_if(&s, &dataset_path(&gone), &json!({"primary": NODE_1}), "bad")
        .await
        .assert_error(412, &expected);
    assert_unchanged(&s, &before).await;
}

// ----------------------------------------------------------------------------------------------
// DeleteDataset

#[tokio::test]
async fn delete_unknown_dataset() {
    let s = TestServer::start().await;
    create(&s, json!({"primary": NODE_0})).await;
    let before = list(&s).await;
    delete(&s, &dataset_path(&new_id()))
        .await
        .assert_error(404, NOT_FOUND);
    let id = before.0[0]["dataset_id"].as_str().unwrap().to_uppercase();
    delete(&s, &dataset_path(&id))
        .await
        .assert_error(404, NOT_FOUND);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn delete_marks_deleted_and_persists() {
    let s = TestServer::start().await;
    let other = create(&s, json!({"primary": NODE_1})).await.body;
    let id = id_of(
        &create(
            &s,
            json!({"primary": NODE_0, "metadata": {"n": "v"}, "maximum_size": 1073741824}),
        )
        .await,
    );
    let tag_before = current_tag(&s).await;
    let answer = delete(&s, &dataset_path(&id)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.assert_json();
    let expected = json!({
        "dataset_id": id, "primary": NODE_0, "metadata": {"n": "v"}, "deleted": true,
        "maximum_size": 1073741824,
    });
    assert_eq!(answer.body, expected);
    let (items, tag) = list(&s).await;
    assert_eq!(
        items,
        sorted_values(&[other.clone(), expected.clone()]),
        "deleted datasets stay listed"
    );
    assert_ne!(tag, tag_before, "the first delete changes the tag");
    assert_eq!(answer.tag(), tag, "the 200 carries the tag after the write");
    let s = restart(s).await;
    assert_eq!(list(&s).await.0, sorted_values(&[other, expected.clone()]));
    // Still deleted (and still refusing moves) after the restart.
    post(&s, &dataset_path(&id), &json!({"primary": NODE_1}))
        .await
        .assert_error(405, DELETED);
}

#[tokio::test]
async fn delete_idempotent() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let first = delete(&s, &dataset_path(&id)).await;
    assert_eq!(first.status, 200);
    let before = list(&s).await;
    let second = delete(&s, &dataset_path(&id)).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body, "identical body");
    assert_eq!(
        second.body,
        json!({"dataset_id": id, "primary": NODE_0, "metadata": {}, "deleted": true})
    );
    assert_eq!(second.tag(), before.1, "a repeat delete keeps the tag");
    assert_eq!(second.tag(), first.tag());
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn update_deleted_dataset() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    delete(&s, &dataset_path(&id)).await;
    let before = list(&s).await;
    post(&s, &dataset_path(&id), &json!({"primary": NODE_1}))
        .await
        .assert_error(405, DELETED);
    post(&s, &dataset_path(&id), &json!({}))
        .await
        .assert_error(405, DELETED);
    assert_unchanged(&s, &before).await;
}

#[tokio::test]
async fn delete_if_matches_success() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let tag = current_tag(&s).await;
    let answer = delete_if(&s, &dataset_path(&id), &tag).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["deleted"], json!(true));
    let new_tag = current_tag(&s).await;
    assert_ne!(new_tag, tag);
    assert_eq!(answer.tag(), new_tag);
}

#[tokio::test]
async fn delete_if_matches_failure_and_precedence() {
    let s = TestServer::start().await;
    let id = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let before = list(&s).await;
    let expected = format!("Tag doesn't match. Required: stale, current: {}", before.1);
    // 412, not 404, on a random id.
    let answer = delete_if(&s, &dataset_path(&new_id()), "stale").await;
    answer.assert_error(412, &expected);
    assert_eq!(answer.tag(), before.1);
    // On an existing dataset: not deleted.
    delete_if(&s, &dataset_path(&id), "stale")
        .await
        .assert_error(412, &expected);
    assert_unchanged(&s, &before).await;
    assert_eq!(before.0[0]["deleted"], json!(false));
}

#[tokio::test]
async fn delete_ignores_body_and_content_type() {
    let s = TestServer::start().await;
    let a = id_of(&create(&s, json!({"primary": NODE_0})).await);
    let b = id_of(&create(&s, json!({"primary": NODE_0})).await);
    // As flocker-go does: a JSON Content-Type and an empty body.
    let answer = send(
        s.client
            .delete(s.url(&dataset_path(&a)))
            .header("Content-Type", "application/json")
            .body(""),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["deleted"], json!(true));
    // A body that is not JSON at all.
    let answer = send(
        s.client
            .delete(s.url(&dataset_path(&b)))
            .header("Content-Type", "application/json")
            .body("{definitely not json"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["deleted"], json!(true));
}

// ----------------------------------------------------------------------------------------------
// GetDatasetConfiguration

#[tokio::test]
async fn list_empty() {
    let s = TestServer::start().await;
    let answer = get(&s, DATASETS).await;
    assert_eq!(answer.status, 200);
    answer.assert_json();
    assert_eq!(answer.body, json!([]));
    assert!(!answer.tag().is_empty());
}

#[tokio::test]
async fn list_tag_is_stable_between_reads() {
    let s = TestServer::start().await;
    let a = current_tag(&s).await;
    let b = current_tag(&s).await;
    assert_eq!(a, b);
    create(&s, json!({"primary": NODE_0})).await;
    let c = current_tag(&s).await;
    assert_ne!(c, a);
    assert_eq!(c, current_tag(&s).await);
}

#[tokio::test]
async fn list_several_datasets_on_several_nodes() {
    let s = TestServer::start().await;
    let mut expected = Vec::new();
    for (node, extra) in [
        (NODE_0, json!({})),
        (NODE_0, json!({"metadata": {"name": "a"}})),
        (NODE_1, json!({"maximum_size": 1099511627776u64})),
        (
            NODE_1,
            json!({"maximum_size": 67108864, "metadata": {"x": "y", "z": ""}}),
        ),
    ] {
        let mut body = extra.clone();
        body["primary"] = json!(node);
        let answer = create(&s, body).await;
        let mut item = json!({
            "dataset_id": id_of(&answer), "primary": node, "deleted": false,
            "metadata": extra.get("metadata").cloned().unwrap_or(json!({})),
        });
        if let Some(size) = extra.get("maximum_size") {
            item["maximum_size"] = size.clone();
        }
        assert_eq!(answer.body, item);
        expected.push(item);
    }
    assert_eq!(list(&s).await.0, sorted_values(&expected));
}

#[tokio::test]
async fn list_ignores_a_body() {
    let s = TestServer::start().await;
    create(&s, json!({"primary": NODE_0})).await;
    let answer = send(
        s.client
            .get(s.url(DATASETS))
            .header("Content-Type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tag_follows_every_write() {
    let s = TestServer::start().await;
    let mut seen = vec![current_tag(&s).await];
    let mut check = |answer: &Answer, tag: String, changes: bool| {
        assert_eq!(answer.tag(), tag, "the write answer carries the list's tag");
        if changes {
            assert!(
                !seen.contains(&tag),
                "a fresh tag after an effective change"
            );
        } else {
            assert_eq!(seen.last(), Some(&tag), "no-op writes keep the tag");
        }
        seen.push(tag);
    };
    let created = create(&s, json!({"primary": NODE_0})).await;
    let id = id_of(&created);
    check(&created, current_tag(&s).await, true);
    let moved = post(&s, &dataset_path(&id), &json!({"primary": NODE_1})).await;
    check(&moved, current_tag(&s).await, true);
    let same = post(&s, &dataset_path(&id), &json!({"primary": NODE_1})).await;
    check(&same, current_tag(&s).await, false);
    let empty = post(&s, &dataset_path(&id), &json!({})).await;
    check(&empty, current_tag(&s).await, false);
    let back = post(&s, &dataset_path(&id), &json!({"primary": NODE_0})).await;
    check(&back, current_tag(&s).await, true);
    let deleted = delete(&s, &dataset_path(&id)).await;
    check(&deleted, current_tag(&s).await, true);
    let again = delete(&s, &dataset_path(&id)).await;
    check(&again, current_tag(&s).await, false);
}

// ----------------------------------------------------------------------------------------------
// Schema cases (test_schemas.py)

#[tokio::test]
async fn schema_metadata() {
    let s = TestServer::start().await;
    let long_key = "k".repeat(257);
    let long_value = "v".repeat(257);
    let too_many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("key{i}"), json!("v"))).collect();
    for metadata in [
        json!({ long_key: "v" }),
        json!({ "k": long_value }),
        Value::Object(too_many),
        json!({ "": "v" }),
        json!({ "line\nbreak": "v" }),
        json!({ "k": 1 }),
        json!({ "k": null }),
        json!(["k", "v"]),
        json!("k=v"),
    ] {
        let answer = post(
            &s,
            DATASETS,
            &json!({"primary": NODE_0, "metadata": metadata}),
        )
        .await;
        assert_eq!(answer.status, 400, "metadata {metadata} was accepted");
        answer.assert_schema_error();
    }
    assert_eq!(list(&s).await.0, Vec::<Value>::new());
    // Limits that pass: 16 keys of 256 characters with values of 256 characters.
    let full: serde_json::Map<String, Value> = (0..16)
        .map(|i| (format!("{i:0>256}"), json!("v".repeat(256))))
        .collect();
    let full = Value::Object(full);
    let answer = create(&s, json!({"primary": NODE_0, "metadata": full})).await;
    assert_eq!(answer.body["metadata"], full);
    assert_eq!(list(&s).await.0[0]["metadata"], full);
    // Non-ASCII keys count characters, not bytes.
    let key = "é".repeat(256);
    let answer = create(
        &s,
        json!({"primary": NODE_0, "metadata": {key.clone(): "ü"}}),
    )
    .await;
    assert_eq!(answer.body["metadata"], json!({ key: "ü" }));
}

#[tokio::test]
async fn schema_maximum_size() {
    let s = TestServer::start().await;
    for size in [
        json!(1024),
        json!(0),
        json!(-67108864),
        json!(67108864 + 1023),
        json!(67108864 - 1024),
        json!("123"),
        json!(true),
    ] {
        let answer = post(
            &s,
            DATASETS,
            &json!({"primary": NODE_0, "maximum_size": size}),
        )
        .await;
        assert_eq!(answer.status, 400, "maximum_size {size} was accepted");
        answer.assert_schema_error();
    }
    // A float is the wrong type, with jsonschema's message.
    let answer = send(s.client.post(s.url(DATASETS)).body(format!(
        r#"{{"primary": "{NODE_0}", "maximum_size": 67108864.0}}"#
    )))
    .await;
    answer.assert_schema_errors(&["67108864.0 is not of types \"null\", \"integer\""]);
    assert_eq!(list(&s).await.0, Vec::<Value>::new());
    for size in [json!(67108864), json!(67108864 + 1024), json!(null)] {
        create(&s, json!({"primary": NODE_0, "maximum_size": size})).await;
    }
    assert_eq!(list(&s).await.0.len(), 3);
}

#[tokio::test]
async fn schema_dataset_id() {
    let s = TestServer::start().await;
    let id = new_id();
    let non_v4 = format!("{}1{}", &id[..14], &id[15..]);
    assert_eq!(non_v4.len(), 36);
    let bad_variant = format!("{}c{}", &id[..19], &id[20..]);
    for dataset_id in [
        json!(&id[..35]),
        json!(format!("{id}0")),
        json!(non_v4),
        json!(bad_variant),
        json!("x".repeat(36)),
        json!(10),
        json!(null),
    ] {
        let answer = post(
            &s,
            DATASETS,
            &json!({"primary": NODE_0, "dataset_id": dataset_id}),
        )
        .await;
        assert_eq!(answer.status, 400, "dataset_id {dataset_id} was accepted");
        answer.assert_schema_error();
    }
    assert_eq!(list(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn schema_primary_and_deleted_and_shape() {
    let s = TestServer::start().await;
    for body in [
        json!({"primary": "10.0.0.257"}),
        json!({"primary": "example.com"}),
        json!({"primary": null}),
        json!({"primary": NODE_0, "deleted": "hello"}),
        json!([{"primary": NODE_0}]),
        json!("primary"),
        json!(null),
    ] {
        let answer = post(&s, DATASETS, &body).await;
        assert_eq!(answer.status, 400, "{body} was accepted");
        answer.assert_schema_error();
    }
    assert_eq!(list(&s).await.0, Vec::<Value>::new());
}

// ----------------------------------------------------------------------------------------------
// Routing and transport

#[tokio::test]
async fn unknown_routes_are_json_404() {
    let s = TestServer::start().await;
    for path in [
        "/v1/nothing",
        "/v1/configuration/datasets/",
        "/v1/configuration/datasets/a/b",
        "/elsewhere",
    ] {
        let answer = get(&s, path).await;
        assert_eq!(answer.status, 404, "{path}");
        answer.assert_json();
        assert!(answer.body["description"].is_string(), "{path}");
    }
}

#[tokio::test]
async fn wrong_method_is_json_405_with_allow() {
    let s = TestServer::start().await;
    let answer = send(
        s.client
            .put(s.url(DATASETS))
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(answer.status, 405);
    answer.assert_json();
    assert!(answer.body["description"].is_string());
    let allow = answer
        .headers
        .get(reqwest::header::ALLOW)
        .expect("an Allow header")
        .to_str()
        .unwrap()
        .to_uppercase();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let answer = send(s.client.delete(s.url(DATASETS))).await;
    assert_eq!(answer.status, 405);
    assert!(answer.headers.contains_key(reqwest::header::ALLOW));
    let answer = send(s.client.put(s.url("/v1/version"))).await;
    assert_eq!(answer.status, 405);
    answer.assert_json();
    assert_eq!(list(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn oversized_body_is_json_413() {
    let s = TestServer::start().await;
    let big = format!(
        r#"{{"primary": "{NODE_0}", "metadata": {{"k": "{}"}}}}"#,
        "x".repeat(1024 * 1024 + 16)
    );
    let answer = send(s.client.post(s.url(DATASETS)).body(big)).await;
    assert_eq!(answer.status, 413);
    answer.assert_json();
    assert!(answer.body["description"].is_string());
    assert_eq!(list(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_a_json_400() {
    let s = TestServer::start().await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/configuration/datasets/%FF"),
        (reqwest::Method::POST, "/v1/configuration/datasets/%FF"),
        (reqwest::Method::DELETE, "/v1/configuration/datasets/%FF"),
        (reqwest::Method::DELETE, "/v1/configuration/leases/%FF"),
        (reqwest::Method::GET, "/v1/state/nodes/by_era/%FF"),
        (reqwest::Method::GET, "/api/mathematicians/%FF"),
    ] {
        let answer = send(s.client.request(method.clone(), s.url(path)).body("{}")).await;
        answer.assert_bad_request();
        let description = answer.body["description"].as_str().unwrap();
        assert!(
            description.starts_with("Invalid URL"),
            "{method} {path}: {description}"
        );
    }
}

/// A `maximum_size` past 64 bits (a multiple of 1024, as the schema asks) is a schema error
/// that names the number, not the float serde read it as.
#[tokio::test]
async fn a_maximum_size_past_64_bits_names_the_number() {
    let s = TestServer::start().await;
    let body = format!(r#"{{"primary": "{NODE_0}", "maximum_size": 18446744073709551616}}"#);
    let answer = send(
        s.client
            .post(s.url(DATASETS))
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    answer
        .assert_schema_errors(&["18446744073709551616 is too large: integers must fit in 64 bits"]);
}
