//! The live cluster state over real HTTP: agents' reports through `PUT /v1/agent/nodes/{uuid}`
//! and what `GET /v1/state/datasets`, `/v1/state/nodes` and `/v1/state/nodes/by_era/{era}`
//! show of them (Flocker §2.6–2.8, §5.2–5.4 and the DatasetsStateAPI, NodesStateAPI and
//! NodeByEra checklists of §7): shapes, order, omitted keys, mounted datasets listed once,
//! replacement by a later report or a new era, goodbye, expiry, state ETags and 304, and the
//! validation of reports.
mod common;

use std::time::{Duration, Instant};

use common::http::{Answer, UNDECODABLE, send};
use common::{NODE_0, NODE_1, TestServer};
use serde_json::{Value, json};
use tempfile::TempDir;

const STATE_DATASETS: &str = "/v1/state/datasets";
const STATE_NODES: &str = "/v1/state/nodes";
const STATE_CONTAINERS: &str = "/v1/state/containers";
const NO_ERA: &str = "No node found with given era.";
const NO_NODE: &str = "Node not found.";

// Dataset ids that sort in this order (the state lists nodes in id order; NODE_1 < NODE_0).
const D1: &str = "00000000-0000-4000-8000-000000000001";
const D2: &str = "00000000-0000-4000-8000-000000000002";
const D3: &str = "00000000-0000-4000-8000-000000000003";
const D4: &str = "00000000-0000-4000-8000-000000000004";
const D5: &str = "00000000-0000-4000-8000-000000000005";

const GIB: u64 = 1 << 30;

fn node_path(node: &str) -> String {
    format!("/v1/agent/nodes/{node}")
}

fn era_path(era: &str) -> String {
    format!("/v1/state/nodes/by_era/{era}")
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A report body with nothing mounted and nothing seen.
fn bare(host: &str, era: &str) -> Value {
    json!({"host": host, "era": era, "datasets": [], "nonmanifest_datasets": []})
}

fn mounted(id: &str, size: Option<u64>) -> Value {
    let mut item = json!({"dataset_id": id, "path": format!("/flocker/{id}")});
    if let Some(size) = size {
        item["maximum_size"] = json!(size);
    }
    item
}

fn seen(id: &str, size: Option<u64>) -> Value {
    let mut item = json!({ "dataset_id": id });
    if let Some(size) = size {
        item["maximum_size"] = json!(size);
    }
    item
}

fn report_body(host: &str, era: &str, datasets: Vec<Value>, nonmanifest: Vec<Value>) -> Value {
    json!({"host": host, "era": era, "datasets": datasets, "nonmanifest_datasets": nonmanifest})
}

async fn report(s: &TestServer, node: &str, body: &Value) -> Answer {
    send(s.client.put(s.url(&node_path(node))).json(body)).await
}

/// Reports and asserts the 200 answer.
async fn report_ok(s: &TestServer, node: &str, body: &Value) {
    let answer = report(s, node, body).await;
    assert_eq!(answer.status, 200, "report answered {}", answer.text);
}

async fn get(s: &TestServer, path: &str) -> Answer {
    send(s.client.get(s.url(path))).await
}

/// A state list: 200, JSON, an ETag, an array.
async fn list(s: &TestServer, path: &str) -> Vec<Value> {
    let answer = get(s, path).await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.text);
    answer.assert_json();
    etag(&answer);
    answer.body.as_array().expect("an array").clone()
}

fn etag(answer: &Answer) -> String {
    let etag = answer
        .headers
        .get("etag")
        .unwrap_or_else(|| panic!("no ETag on a {} answer", answer.status))
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        etag.starts_with("\"s") && etag.ends_with('"') && etag.len() > 4,
        "a state ETag is \"s<hex>\": {etag:?}"
    );
    assert!(
        etag[2..etag.len() - 1]
            .chars()
            .all(|c| c.is_ascii_hexdigit()),
        "a state ETag is \"s<hex>\": {etag:?}"
    );
    etag
}

async fn current_etag(s: &TestServer, path: &str) -> String {
    let answer = get(s, path).await;
    assert_eq!(answer.status, 200);
    etag(&answer)
}

async fn get_if_none_match(s: &TestServer, path: &str, etag: &str) -> Answer {
    send(s.client.get(s.url(path)).header("if-none-match", etag)).await
}

async fn sorted_nodes(s: &TestServer) -> Vec<Value> {
    let mut nodes = list(s, STATE_NODES).await;
    nodes.sort_by(|a, b| a["uuid"].as_str().cmp(&b["uuid"].as_str()));
    nodes
}

#[tokio::test]
async fn a_fresh_cluster_has_empty_state() {
    let s = TestServer::start().await;
    for path in [STATE_DATASETS, STATE_NODES, STATE_CONTAINERS] {
        assert_eq!(list(&s, path).await, Vec::<Value>::new(), "{path}");
    }
    get(&s, &era_path(&new_uuid()))
        .await
        .assert_error(404, NO_ERA);
}

#[tokio::test]
async fn a_report_is_acknowledged_with_the_node_and_its_expiry() {
    let s = TestServer::start().await;
    let answer = report(&s, NODE_0, &bare("10.0.0.1", &new_uuid())).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.assert_json();
    assert_eq!(answer.body, json!({"node_uuid": NODE_0, "expires_in": 120}));

    // The node id is answered (and listed) in its canonical lower-case form.
    let upper = NODE_1.to_uppercase();
    let answer = report(&s, &upper, &bare("10.0.0.2", &new_uuid())).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body, json!({"node_uuid": NODE_1, "expires_in": 120}));
    assert_eq!(
        sorted_nodes(&s).await,
        vec![
            json!({"host": "10.0.0.2", "uuid": NODE_1}),
            json!({"host": "10.0.0.1", "uuid": NODE_0}),
        ]
    );

    // The configured expiry is what the agent is told.
    let t = TestServer::start_in(TempDir::new().unwrap(), |config| config.node_expiry = 7).await;
    let answer = report(&t, NODE_0, &bare("10.0.0.1", &new_uuid())).await;
    assert_eq!(answer.body, json!({"node_uuid": NODE_0, "expires_in": 7}));
}

#[tokio::test]
async fn state_datasets_mounted_first_then_nonmanifest_without_absent_keys() {
    let s = TestServer::start().await;
    // NODE_0 mounts D2 (with a size) and D3 (size unknown: null), and sees D1 (mounted on
    // NODE_1), D4 and D5 unmounted.
    report_ok(
        &s,
        NODE_0,
        &json!({
            "host": "10.0.0.1",
            "era": new_uuid(),
            "datasets": [
                mounted(D2, Some(GIB)),
                {"dataset_id": D3, "path": "/flocker/d3", "maximum_size": null},
            ],
            "nonmanifest_datasets": [seen(D1, Some(GIB)), seen(D4, Some(2 * GIB)), seen(D5, None)],
        }),
    )
    .await;
    // NODE_1 mounts D1 (without a size) and also sees D4 unmounted.
    report_ok(
        &s,
        NODE_1,
        &report_body(
            "10.0.0.2",
            &new_uuid(),
            vec![mounted(D1, None)],
            vec![seen(D4, Some(2 * GIB))],
        ),
    )
    .await;

    let items = list(&s, STATE_DATASETS).await;
    // Mounted datasets first, nodes in id order (NODE_1 sorts before NODE_0); D1 is listed
    // once, as mounted, although NODE_0 sees it unmounted; D4, seen by both, once.
    assert_eq!(items.len(), 5, "{items:#?}");
    assert_eq!(
        items[..3],
        [
            json!({"dataset_id": D1, "primary": NODE_1, "path": format!("/flocker/{D1}")}),
            json!({"dataset_id": D2, "primary": NODE_0, "path": format!("/flocker/{D2}"), "maximum_size": GIB}),
            json!({"dataset_id": D3, "primary": NODE_0, "path": "/flocker/d3"}),
        ]
    );
    let mut nonmanifest = items[3..].to_vec();
    nonmanifest.sort_by(|a, b| a["dataset_id"].as_str().cmp(&b["dataset_id"].as_str()));
    assert_eq!(
        nonmanifest,
        vec![
            json!({"dataset_id": D4, "maximum_size": 2 * GIB}),
            json!({"dataset_id": D5}),
        ]
    );
    // No key is ever null.
    for item in &items {
        assert!(
            item.as_object().unwrap().values().all(|v| !v.is_null()),
            "{item}"
        );
    }
}

#[tokio::test]
async fn nonmanifest_only_and_manifest_then_nonmanifest() {
    // Flocker's test_nonmanifest_listed and test_nonmanifest_and_manifest.
    let s = TestServer::start().await;
    report_ok(
        &s,
        NODE_0,
        &report_body("10.0.0.1", &new_uuid(), vec![], vec![seen(D2, None)]),
    )
    .await;
    assert_eq!(
        list(&s, STATE_DATASETS).await,
        vec![json!({"dataset_id": D2})]
    );
    report_ok(
        &s,
        NODE_0,
        &report_body(
            "10.0.0.1",
            &new_uuid(),
            vec![mounted(D3, None)],
            vec![seen(D2, None)],
        ),
    )
    .await;
    assert_eq!(
        list(&s, STATE_DATASETS).await,
        vec![
            json!({"dataset_id": D3, "primary": NODE_0, "path": format!("/flocker/{D3}")}),
            json!({"dataset_id": D2}),
        ]
    );
}

#[tokio::test]
async fn state_nodes_list_host_and_uuid() {
    let s = TestServer::start().await;
    report_ok(&s, NODE_0, &bare("192.0.2.10", &new_uuid())).await;
    report_ok(&s, NODE_1, &bare("2001:db8::1", &new_uuid())).await;
    let nodes = sorted_nodes(&s).await;
    assert_eq!(
        nodes,
        vec![
            json!({"host": "2001:db8::1", "uuid": NODE_1}),
            json!({"host": "192.0.2.10", "uuid": NODE_0}),
        ]
    );
}

#[tokio::test]
async fn a_new_report_replaces_the_previous_one() {
    let s = TestServer::start().await;
    let era = new_uuid();
    report_ok(
        &s,
        NODE_0,
        &report_body(
            "10.0.0.1",
            &era,
            vec![mounted(D1, None)],
            vec![seen(D2, None)],
        ),
    )
    .await;
    assert_eq!(list(&s, STATE_DATASETS).await.len(), 2);

    // Same era, different content: replaced, not merged.
    report_ok(
        &s,
        NODE_0,
        &report_body("10.0.0.9", &era, vec![mounted(D3, Some(GIB))], vec![]),
    )
    .await;
    assert_eq!(
        list(&s, STATE_DATASETS).await,
        vec![
            json!({"dataset_id": D3, "primary": NODE_0, "path": format!("/flocker/{D3}"), "maximum_size": GIB})
        ]
    );
    assert_eq!(
        list(&s, STATE_NODES).await,
        vec![json!({"host": "10.0.0.9", "uuid": NODE_0})]
    );
    let answer = get(&s, &era_path(&era)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({ "uuid": NODE_0 }));

    // A new era (the node rebooted): the old state is gone, the old era is unknown.
    let rebooted = new_uuid();
    report_ok(&s, NODE_0, &bare("10.0.0.9", &rebooted)).await;
    assert_eq!(list(&s, STATE_DATASETS).await, Vec::<Value>::new());
    get(&s, &era_path(&era)).await.assert_error(404, NO_ERA);
    let answer = get(&s, &era_path(&rebooted)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({ "uuid": NODE_0 }));
}

#[tokio::test]
async fn a_node_that_says_goodbye_leaves_every_state_list() {
    let s = TestServer::start().await;
    let era = new_uuid();
    report_ok(
        &s,
        NODE_0,
        &report_body(
            "10.0.0.1",
            &era,
            vec![mounted(D1, None)],
            vec![seen(D2, None)],
        ),
    )
    .await;
    report_ok(&s, NODE_1, &bare("10.0.0.2", &new_uuid())).await;
    let before = current_etag(&s, STATE_NODES).await;

    let answer = send(s.client.delete(s.url(&node_path(NODE_0)))).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    assert!(
        answer.text.is_empty(),
        "a 204 has no body: {:?}",
        answer.text
    );

    assert_eq!(list(&s, STATE_DATASETS).await, Vec::<Value>::new());
    assert_eq!(
        list(&s, STATE_NODES).await,
        vec![json!({"host": "10.0.0.2", "uuid": NODE_1})]
    );
    get(&s, &era_path(&era)).await.assert_error(404, NO_ERA);
    assert_ne!(current_etag(&s, STATE_NODES).await, before);

    // Again: the node is unknown.
    send(s.client.delete(s.url(&node_path(NODE_0))))
        .await
        .assert_error(404, NO_NODE);
    send(s.client.delete(s.url(&node_path(&new_uuid()))))
        .await
        .assert_error(404, NO_NODE);
    send(s.client.delete(s.url(&node_path("not-a-uuid"))))
        .await
        .assert_bad_request();
}

#[tokio::test]
async fn silent_nodes_expire_and_reporting_nodes_stay() {
    let s = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.node_expiry = 2;
        config.max_wait = 5;
    })
    .await;
    let era = new_uuid();
    let started = Instant::now();
    let answer = report(
        &s,
        NODE_0,
        &report_body(
            "10.0.0.1",
            &era,
            vec![mounted(D1, None)],
            vec![seen(D2, None)],
        ),
    )
    .await;
    assert_eq!(answer.body, json!({"node_uuid": NODE_0, "expires_in": 2}));
    // NODE_1 keeps reporting the same report every 0.25 s; NODE_0 falls silent.
    let node_1 = bare("10.0.0.2", &new_uuid());
    report_ok(&s, NODE_1, &node_1).await;
    let etag_before = current_etag(&s, STATE_NODES).await;

    let mut gone_after = None;
    while started.elapsed() < Duration::from_millis(4_000) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        report_ok(&s, NODE_1, &node_1).await;
        let nodes = sorted_nodes(&s).await;
        let elapsed = started.elapsed();
        let node_0_listed = nodes.iter().any(|n| n["uuid"] == NODE_0);
        assert!(
            nodes.iter().any(|n| n["uuid"] == NODE_1),
            "a reporting node never expires ({elapsed:?}): {nodes:?}"
        );
        if elapsed < Duration::from_millis(1_500) {
            assert!(node_0_listed, "NODE_0 expired after only {elapsed:?}");
        }
        if !node_0_listed {
            gone_after = Some(elapsed);
            break;
        }
    }
    let gone_after = gone_after.expect("NODE_0 never expired");
    assert!(
        gone_after < Duration::from_millis(3_500),
        "NODE_0 expired only after {gone_after:?}"
    );
    // Gone from every state endpoint.
    assert_eq!(list(&s, STATE_DATASETS).await, Vec::<Value>::new());
    get(&s, &era_path(&era)).await.assert_error(404, NO_ERA);
    assert_ne!(current_etag(&s, STATE_NODES).await, etag_before);
    // It can come back by reporting again.
    report_ok(&s, NODE_0, &bare("10.0.0.1", &era)).await;
    assert_eq!(sorted_nodes(&s).await.len(), 2);
}

#[tokio::test]
async fn by_era_finds_the_node_or_answers_404_or_400() {
    let s = TestServer::start().await;
    let (era_0, era_1) = (new_uuid(), new_uuid());
    report_ok(&s, NODE_0, &bare("10.0.0.1", &era_0)).await;
    report_ok(&s, NODE_1, &bare("10.0.0.2", &era_1)).await;
    for (era, node) in [(&era_0, NODE_0), (&era_1, NODE_1)] {
        let answer = get(&s, &era_path(era)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.assert_json();
        assert_eq!(answer.body, json!({ "uuid": node }));
    }
    get(&s, &era_path(&new_uuid()))
        .await
        .assert_error(404, NO_ERA);
    // Flocker answered 500 for an era that is not a UUID; floe says 400.
    for bad in ["not-an-era", "1234", "cf0f0346-17b2-4812-beca-1434997d6c3"] {
        let answer = get(&s, &era_path(bad)).await;
        answer.assert_bad_request();
    }
}

#[tokio::test]
async fn state_etags_change_only_with_visible_changes_and_answer_304() {
    let s = TestServer::start().await;
    let era = new_uuid();
    let first = report_body("10.0.0.1", &era, vec![mounted(D1, None)], vec![]);
    report_ok(&s, NODE_0, &first).await;

    for path in [STATE_DATASETS, STATE_NODES, STATE_CONTAINERS] {
        let answer = get(&s, path).await;
        let tag = etag(&answer);
        let again = get_if_none_match(&s, path, &tag).await;
        assert_eq!(again.status, 304, "{path}: {}", again.text);
        assert!(again.text.is_empty(), "a 304 has no body: {:?}", again.text);
        assert_eq!(
            again.headers.get("etag").map(|v| v.to_str().unwrap()),
            Some(tag.as_str()),
            "{path}: a 304 carries the ETag"
        );
        // Any other tag: the list.
        let other = get_if_none_match(&s, path, "\"s0\"").await;
        assert_eq!(other.status, 200, "{path}");
        assert_eq!(etag(&other), tag);
        assert_eq!(other.body, answer.body);
    }

    // A refresh that repeats the report changes nothing visible: same ETag, still 304.
    let tag = current_etag(&s, STATE_DATASETS).await;
    report_ok(&s, NODE_0, &first).await;
    assert_eq!(current_etag(&s, STATE_DATASETS).await, tag);
    assert_eq!(
        get_if_none_match(&s, STATE_DATASETS, &tag).await.status,
        304
    );

    // A visible change: a new ETag and the new list.
    report_ok(
        &s,
        NODE_0,
        &report_body("10.0.0.1", &era, vec![mounted(D1, Some(GIB))], vec![]),
    )
    .await;
    let answer = get_if_none_match(&s, STATE_DATASETS, &tag).await;
    assert_eq!(answer.status, 200);
    let changed = etag(&answer);
    assert_ne!(changed, tag);
    assert_eq!(answer.body[0]["maximum_size"], json!(GIB));
    // A new node changes it too; a failed report does not.
    report_ok(&s, NODE_1, &bare("10.0.0.2", &new_uuid())).await;
    let with_node_1 = current_etag(&s, STATE_NODES).await;
    assert_ne!(with_node_1, changed);
    report(&s, NODE_1, &json!({"host": "10.0.0.2"}))
        .await
        .assert_schema_error();
    assert_eq!(current_etag(&s, STATE_NODES).await, with_node_1);
}

#[tokio::test]
async fn reports_are_validated() {
    let s = TestServer::start().await;
    let era = new_uuid();
    let good = bare("10.0.0.1", &era);

    // The node id in the path must be a version-4 UUID.
    for node in [
        "not-a-uuid",
        "cf0f0346-17b2-4812-beca-1434997d6c3",
        // Version 1.
        "a8098c1a-f86e-11da-bd1a-00112444be1e",
        // Nil.
        "00000000-0000-0000-0000-000000000000",
    ] {
        report(&s, node, &good).await.assert_bad_request();
    }

    // host must be an IP literal.
    for host in ["example.com", "10.0.0.256", "node-1"] {
        let answer = report(&s, NODE_0, &bare(host, &era)).await;
        answer.assert_bad_request();
        assert!(
            answer.body.as_object().unwrap().len() == 1,
            "{}",
            answer.text
        );
    }

    // Schema failures: 400 with `errors`.
    let missing: Vec<Value> = ["host", "era", "datasets", "nonmanifest_datasets"]
        .iter()
        .map(|key| {
            let mut body = good.clone();
            body.as_object_mut().unwrap().remove(*key);
            body
        })
        .collect();
    let schema_failures = missing.into_iter().chain([
        json!({"host": "10.0.0.1", "era": "not-a-uuid", "datasets": [], "nonmanifest_datasets": []}),
        json!({"host": "10.0.0.1", "era": 7, "datasets": [], "nonmanifest_datasets": []}),
        json!({"host": 10, "era": era, "datasets": [], "nonmanifest_datasets": []}),
        json!({"host": "10.0.0.1", "era": era, "datasets": {}, "nonmanifest_datasets": []}),
        // A mounted dataset needs a path; a seen one needs no path (and may not have one).
        json!({"host": "10.0.0.1", "era": era, "datasets": [{"dataset_id": D1}], "nonmanifest_datasets": []}),
        json!({"host": "10.0.0.1", "era": era, "datasets": [], "nonmanifest_datasets": [{"dataset_id": D1, "path": "/x"}]}),
        json!({"host": "10.0.0.1", "era": era, "datasets": [{"dataset_id": "nope", "path": "/x"}], "nonmanifest_datasets": []}),
        json!({"host": "10.0.0.1", "era": era, "datasets": [{"dataset_id": D1, "path": "/x", "maximum_size": -1}], "nonmanifest_datasets": []}),
        json!({"host": "10.0.0.1", "era": era, "datasets": [{"dataset_id": D1, "path": "/x", "junk": 1}], "nonmanifest_datasets": []}),
        json!({"host": "10.0.0.1", "era": era, "datasets": [], "nonmanifest_datasets": [], "containers": [{"name": "web", "image": "nginx"}]}),
        json!([]),
    ]);
    for body in schema_failures {
        let answer = report(&s, NODE_0, &body).await;
        assert_eq!(answer.status, 400, "{body} was accepted: {}", answer.text);
        answer.assert_schema_error();
    }
    // An extra top-level key, with the exact message.
    let mut extra = good.clone();
    extra["junk"] = json!(1);
    report(&s, NODE_0, &extra)
        .await
        .assert_schema_errors(&["Additional properties are not allowed ('junk' was unexpected)"]);
    // Not JSON.
    send(
        s.client
            .put(s.url(&node_path(NODE_0)))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await
    .assert_error(400, UNDECODABLE);

    // A dataset named twice in one list, also in another case: a node mounts a dataset at
    // one path.
    let upper = D1.to_uppercase();
    for (datasets, nonmanifest) in [
        (vec![mounted(D1, None), mounted(&upper, None)], vec![]),
        (
            vec![mounted(D1, None), mounted(D2, None), mounted(D1, Some(GIB))],
            vec![],
        ),
        (vec![], vec![seen(D3, None), seen(D3, Some(GIB))]),
    ] {
        let body = report_body("10.0.0.1", &era, datasets, nonmanifest);
        report(&s, NODE_0, &body).await.assert_error(
            400,
            &format!(
                "Dataset {} is reported more than once in one list.",
                if body["datasets"].as_array().unwrap().is_empty() {
                    D3
                } else {
                    D1
                }
            ),
        );
    }

    // None of these was recorded.
    for path in [STATE_DATASETS, STATE_NODES, STATE_CONTAINERS] {
        assert_eq!(list(&s, path).await, Vec::<Value>::new(), "{path}");
    }
    get(&s, &era_path(&era)).await.assert_error(404, NO_ERA);
    // And the good report is accepted.
    report_ok(&s, NODE_0, &good).await;
}
