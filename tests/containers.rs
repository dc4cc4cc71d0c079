//! Flocker's legacy container API over real HTTP (spec §2.10 and the CreateContainer,
//! GetContainerConfiguration, UpdateContainerConfiguration, DeleteContainer and
//! ContainerStateAPI checklists of §7): rendering and normalisation, every 409/404 in
//! Flocker's order, moves that carry the attached dataset, deletes that answer `null`, the
//! state form with `running`, floe's two deliberate differences (a port without `external` is
//! a 400; a dataset in use cannot be moved on its own), `X-If-Configuration-Matches` ahead of
//! everything, `Idempotency-Key`, `X-Configuration-Tag`, and persistence across a restart.
mod common;

use common::http::{Answer, IF_MATCHES, UNDECODABLE, send};
use common::{NODE_0, NODE_1, TestServer};
use serde_json::{Value, json};

const CONTAINERS: &str = "/v1/configuration/containers";
const DATASETS: &str = "/v1/configuration/datasets";
const STATE_CONTAINERS: &str = "/v1/state/containers";

const NAME_EXISTS: &str = "The container name already exists.";
const DATASET_NOT_FOUND: &str = "Dataset not found.";
const OTHER_NODE: &str = "The dataset is on another node.";
const IN_USE: &str = "The dataset is being used by another container.";
const PORT_IN_USE: &str = "A specified external port is already in use.";
const ALIASES: &str = "Link aliases must be unique.";
const LOCAL_PORTS: &str = "The local ports in a container's links must be unique.";
const NOT_FOUND: &str = "Container not found.";
const ATTACHED: &str = "The dataset is attached to a container; move the container instead.";
const KEY_REUSED: &str = "This Idempotency-Key was already used for a different request.";

/// A node that no dataset or container mentions before the test does.
const NODE_2: &str = "5c6d1a7e-9a0b-4c3d-8e4f-1a2b3c4d5e6f";

fn container_path(name: &str) -> String {
    format!("{CONTAINERS}/{name}")
}

fn minimal(node: &str, name: &str, image: &str) -> Value {
    json!({"node_uuid": node, "name": name, "image": image})
}

/// `minimal` plus `extra`'s keys.
fn with(node: &str, name: &str, image: &str, extra: Value) -> Value {
    let mut body = minimal(node, name, image);
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

async fn create(s: &TestServer, body: &Value) -> Answer {
    send(s.client.post(s.url(CONTAINERS)).json(body)).await
}

/// Creates and asserts 201; returns the body.
async fn created(s: &TestServer, body: &Value) -> Value {
    let answer = create(s, body).await;
    assert_eq!(answer.status, 201, "create {body}: {}", answer.text);
    answer.assert_json();
    answer.tag();
    answer.body
}

async fn move_to(s: &TestServer, name: &str, node: &str) -> Answer {
    send(
        s.client
            .post(s.url(&container_path(name)))
            .json(&json!({ "node_uuid": node })),
    )
    .await
}

async fn delete(s: &TestServer, name: &str) -> Answer {
    send(s.client.delete(s.url(&container_path(name)))).await
}

/// The configured containers, sorted by name, and the configuration tag.
async fn containers(s: &TestServer) -> (Vec<Value>, String) {
    let answer = send(s.client.get(s.url(CONTAINERS))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.assert_json();
    (sorted(&answer.body), answer.tag())
}

async fn state_containers(s: &TestServer) -> Vec<Value> {
    let answer = send(s.client.get(s.url(STATE_CONTAINERS))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.assert_json();
    sorted(&answer.body)
}

fn sorted(list: &Value) -> Vec<Value> {
    let mut items = list.as_array().expect("an array").clone();
    items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    items
}

/// Creates a dataset on `primary` (optionally with a size) and returns its id.
async fn dataset(s: &TestServer, primary: &str, maximum_size: Option<u64>) -> String {
    let mut body = json!({ "primary": primary });
    if let Some(size) = maximum_size {
        body["maximum_size"] = json!(size);
    }
    let answer = send(s.client.post(s.url(DATASETS)).json(&body)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.body["dataset_id"].as_str().unwrap().to_string()
}

/// The configured dataset with this id.
async fn configured_dataset(s: &TestServer, id: &str) -> Value {
    let answer = send(s.client.get(s.url(DATASETS))).await;
    answer
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("dataset {id} is not configured"))
}

fn never() -> Value {
    json!({"name": "never"})
}

// ---------------------------------------------------------------------------------------------
// CreateContainer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_minimal_container() {
    // test_response.
    let s = TestServer::start().await;
    let answer = create(&s, &minimal(NODE_0, "postgres", "postgres")).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.assert_json();
    assert_eq!(
        answer.body,
        json!({"node_uuid": NODE_0, "name": "postgres", "image": "postgres:latest", "restart_policy": never()})
    );
    let (list, tag) = containers(&s).await;
    assert_eq!(list, vec![answer.body.clone()]);
    assert_eq!(
        answer.tag(),
        tag,
        "the 201 carries the new configuration tag"
    );
}

#[tokio::test]
async fn create_rejects_a_wrong_schema() {
    // test_wrong_schema, and more schema failures.
    let s = TestServer::start().await;
    let mut junk = minimal(NODE_0, "web", "nginx");
    junk["junk"] = json!("x");
    create(&s, &junk)
        .await
        .assert_schema_errors(&["Additional properties are not allowed ('junk' was unexpected)"]);
    let bad = [
        json!({"name": "web", "image": "nginx"}),
        json!({"node_uuid": NODE_0, "image": "nginx"}),
        json!({"node_uuid": NODE_0, "name": "web"}),
        minimal("not-a-uuid", "web", "nginx"),
        minimal(NODE_0, "w", "nginx"),
        minimal(NODE_0, "-web", "nginx"),
        minimal(NODE_0, "web", ""),
        with(NODE_0, "web", "nginx", json!({"ports": []})),
        with(
            NODE_0,
            "web",
            "nginx",
            json!({"ports": [{"internal": 80, "external": 8080, "x": 1}]}),
        ),
        with(
            NODE_0,
            "web",
            "nginx",
            json!({"restart_policy": {"name": "sometimes"}}),
        ),
        with(
            NODE_0,
            "web",
            "nginx",
            json!({"restart_policy": {"name": "always", "maximum_retry_count": 3}}),
        ),
        with(
            NODE_0,
            "web",
            "nginx",
            json!({"restart_policy": {"name": "on-failure", "maximum_retry_count": 0}}),
        ),
        with(
            NODE_0,
            "web",
            "nginx",
            json!({"links": [{"alias": "db", "local_port": 5432}]}),
        ),
        with(
            NODE_0,
            "web",
            "nginx",
            json!({"links": [{"alias": "d-b", "local_port": 1, "remote_port": 2}]}),
        ),
        with(
            NODE_0,
            "web",
            "nginx",
            json!({"volumes": [{"dataset_id": NODE_1, "mountpoint": "relative"}]}),
        ),
        with(
            NODE_0,
            "web",
            "nginx",
            json!({"volumes": [
                {"dataset_id": NODE_1, "mountpoint": "/a"}, {"dataset_id": NODE_0, "mountpoint": "/b"}
            ]}),
        ),
        with(NODE_0, "web", "nginx", json!({"cpu_shares": 0})),
        with(NODE_0, "web", "nginx", json!({"cpu_shares": 1025})),
        with(NODE_0, "web", "nginx", json!({"memory_limit": 1048575})),
        with(NODE_0, "web", "nginx", json!({"swappiness": 101})),
        with(NODE_0, "web", "nginx", json!({"environment": {"A": 1}})),
        with(NODE_0, "web", "nginx", json!({"command_line": "sh -c"})),
        with(NODE_0, "web", "nginx", json!({"running": true})),
    ];
    for body in bad {
        let answer = create(&s, &body).await;
        assert_eq!(answer.status, 400, "{body} was accepted: {}", answer.text);
        answer.assert_schema_error();
    }
    send(
        s.client
            .post(s.url(CONTAINERS))
            .header("content-type", "application/json")
            .body("nope"),
    )
    .await
    .assert_error(400, UNDECODABLE);
    assert_eq!(containers(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn a_port_without_external_is_a_bad_request() {
    // floe difference: Flocker's schema allowed it and the handler crashed (500).
    let s = TestServer::start().await;
    let body = with(NODE_0, "web", "nginx", json!({"ports": [{"internal": 80}]}));
    let answer = create(&s, &body).await;
    answer.assert_schema_error();
    let body = with(
        NODE_0,
        "web",
        "nginx",
        json!({"ports": [{"external": 8080}]}),
    );
    create(&s, &body).await.assert_schema_error();
    assert_eq!(containers(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn image_names_need_a_repository_and_a_tag() {
    // floe difference: Flocker crashed on ":1.2" and stored "nginx:" as given.
    let s = TestServer::start().await;
    for image in [":1.2", "nginx:"] {
        let answer = create(&s, &minimal(NODE_0, "web", image)).await;
        answer.assert_bad_request();
        assert!(
            answer.body["description"]
                .as_str()
                .unwrap()
                .contains("is not an image name"),
            "{}",
            answer.text
        );
    }
    assert_eq!(containers(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn container_names_are_unique_across_nodes() {
    // test_container_name_collision_same_node / _different_node.
    let s = TestServer::start().await;
    let first = created(&s, &minimal(NODE_0, "web", "nginx")).await;
    let (_, tag) = containers(&s).await;
    for node in [NODE_0, NODE_1] {
        create(&s, &minimal(node, "web", "httpd"))
            .await
            .assert_error(409, NAME_EXISTS);
    }
    let (list, after) = containers(&s).await;
    assert_eq!(list, vec![first]);
    assert_eq!(after, tag, "a refused create changes nothing");
}

#[tokio::test]
async fn create_echoes_every_setting_and_normalises() {
    let s = TestServer::start().await;
    // Environment: echoed; image gets :latest; restart_policy defaults to never.
    let body = created(
        &s,
        &with(
            NODE_0,
            "env",
            "nginx",
            json!({"environment": {"HTTP_PORT": "8080", "B": "two"}}),
        ),
    )
    .await;
    assert_eq!(
        body,
        json!({"node_uuid": NODE_0, "name": "env", "image": "nginx:latest", "restart_policy": never(),
               "environment": {"HTTP_PORT": "8080", "B": "two"}})
    );
    // Restart policies.
    for (name, policy, echoed) in [
        (
            "always",
            json!({"name": "always"}),
            json!({"name": "always"}),
        ),
        ("never", never(), never()),
        (
            "onfailure5",
            json!({"name": "on-failure", "maximum_retry_count": 5}),
            json!({"name": "on-failure", "maximum_retry_count": 5}),
        ),
        (
            "onfailure10",
            json!({"name": "on-failure", "maximum_retry_count": 10}),
            json!({"name": "on-failure", "maximum_retry_count": 10}),
        ),
        (
            "onfailure",
            json!({"name": "on-failure"}),
            json!({"name": "on-failure"}),
        ),
    ] {
        let body = created(
            &s,
            &with(
                NODE_0,
                name,
                "busybox:1.2",
                json!({ "restart_policy": policy }),
            ),
        )
        .await;
        assert_eq!(
            body,
            json!({"node_uuid": NODE_0, "name": name, "image": "busybox:1.2", "restart_policy": echoed})
        );
    }
    // cpu_shares, memory_limit, command_line; swappiness is accepted but never echoed.
    let body = created(
        &s,
        &with(
            NODE_1,
            "limits",
            "registry.example.com/app",
            json!({"cpu_shares": 512, "memory_limit": 262144000, "command_line": ["a", "bc"], "swappiness": 30}),
        ),
    )
    .await;
    assert_eq!(
        body,
        json!({"node_uuid": NODE_1, "name": "limits", "image": "registry.example.com/app:latest",
               "restart_policy": never(), "cpu_shares": 512, "memory_limit": 262144000,
               "command_line": ["a", "bc"]})
    );
    // Ports and links: echoed, sorted.
    let body = created(
        &s,
        &with(
            NODE_1,
            "ports",
            "nginx:1.9",
            json!({
                "ports": [{"internal": 443, "external": 8443}, {"internal": 80, "external": 8080}],
                "links": [
                    {"alias": "postgres", "local_port": 5432, "remote_port": 15432},
                    {"alias": "cache", "local_port": 6379, "remote_port": 16379},
                ],
            }),
        ),
    )
    .await;
    assert_eq!(
        body,
        json!({"node_uuid": NODE_1, "name": "ports", "image": "nginx:1.9", "restart_policy": never(),
        "ports": [{"internal": 80, "external": 8080}, {"internal": 443, "external": 8443}],
        "links": [
            {"alias": "cache", "local_port": 6379, "remote_port": 16379},
            {"alias": "postgres", "local_port": 5432, "remote_port": 15432},
        ]})
    );
    // Empty environment and command line.
    let body = created(
        &s,
        &with(
            NODE_1,
            "empty",
            "nginx",
            json!({"environment": {}, "command_line": []}),
        ),
    )
    .await;
    assert_eq!(
        body,
        json!({"node_uuid": NODE_1, "name": "empty", "image": "nginx:latest", "restart_policy": never(),
               "command_line": []})
    );

    // The list shows each exactly as its create answered (test_*_persisted).
    let (list, _) = containers(&s).await;
    assert_eq!(list.len(), 9);
    let limits = list.iter().find(|c| c["name"] == "limits").unwrap();
    assert!(limits.get("swappiness").is_none(), "{limits}");
    assert_eq!(limits["memory_limit"], json!(262144000));
    let env = list.iter().find(|c| c["name"] == "env").unwrap();
    assert_eq!(env["environment"], json!({"HTTP_PORT": "8080", "B": "two"}));
    let ports = list.iter().find(|c| c["name"] == "ports").unwrap();
    assert_eq!(ports["ports"][0], json!({"internal": 80, "external": 8080}));
}

#[tokio::test]
async fn external_ports_are_unique_across_the_cluster() {
    // test_create_container_with_conflicting_ports / _different_node.
    let s = TestServer::start().await;
    created(
        &s,
        &with(
            NODE_0,
            "web",
            "nginx",
            json!({"ports": [{"internal": 80, "external": 8080}]}),
        ),
    )
    .await;
    for node in [NODE_0, NODE_1] {
        create(
            &s,
            &with(
                node,
                "other",
                "nginx",
                json!({"ports": [{"internal": 81, "external": 8080}]}),
            ),
        )
        .await
        .assert_error(409, PORT_IN_USE);
    }
    // The same internal port on another external one is fine.
    created(
        &s,
        &with(
            NODE_1,
            "other",
            "nginx",
            json!({"ports": [{"internal": 80, "external": 8081}]}),
        ),
    )
    .await;
}

#[tokio::test]
async fn link_aliases_and_local_ports_are_unique() {
    let s = TestServer::start().await;
    create(
        &s,
        &with(
            NODE_0,
            "web",
            "nginx",
            json!({"links": [
                {"alias": "db", "local_port": 5432, "remote_port": 15432},
                {"alias": "db", "local_port": 5433, "remote_port": 15433},
            ]}),
        ),
    )
    .await
    .assert_error(409, ALIASES);
    create(
        &s,
        &with(
            NODE_0,
            "web",
            "nginx",
            json!({"links": [
                {"alias": "db", "local_port": 5432, "remote_port": 15432},
                {"alias": "cache", "local_port": 5432, "remote_port": 16379},
            ]}),
        ),
    )
    .await
    .assert_error(409, LOCAL_PORTS);
    assert_eq!(containers(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn link_collisions_are_checked_link_by_link_in_request_order() {
    // Flocker's create_container_configuration loops over the links in request order and,
    // for each, checks its alias and then its local port against the links before it.
    let s = TestServer::start().await;
    // The second link repeats a local port before the third repeats an alias.
    create(
        &s,
        &with(
            NODE_0,
            "web",
            "nginx",
            json!({"links": [
                {"alias": "x", "local_port": 1, "remote_port": 1},
                {"alias": "y", "local_port": 1, "remote_port": 2},
                {"alias": "x", "local_port": 5, "remote_port": 3},
            ]}),
        ),
    )
    .await
    .assert_error(409, LOCAL_PORTS);
    assert_eq!(containers(&s).await.0, Vec::<Value>::new());
}

#[tokio::test]
async fn volumes_need_a_live_dataset_on_the_node_not_used_by_another_container() {
    let s = TestServer::start().await;
    let sized = dataset(&s, NODE_0, Some(1 << 30)).await;
    let volume = |id: &str| json!({"volumes": [{"dataset_id": id, "mountpoint": "/db"}]});

    // test_unknown_dataset.
    let unknown = uuid::Uuid::new_v4().to_string();
    create(&s, &with(NODE_0, "db", "postgres", volume(&unknown)))
        .await
        .assert_error(404, DATASET_NOT_FOUND);
    // test_deleted_dataset.
    let deleted = dataset(&s, NODE_0, None).await;
    assert_eq!(
        send(s.client.delete(s.url(&format!("{DATASETS}/{deleted}"))))
            .await
            .status,
        200
    );
    create(&s, &with(NODE_0, "db", "postgres", volume(&deleted)))
        .await
        .assert_error(404, DATASET_NOT_FOUND);
    // test_wrong_node_dataset.
    create(&s, &with(NODE_1, "db", "postgres", volume(&sized)))
        .await
        .assert_error(409, OTHER_NODE);
    // test_dataset_result: volumes echoed, without the dataset's maximum_size.
    let body = created(&s, &with(NODE_0, "db", "postgres", volume(&sized))).await;
    assert_eq!(
        body,
        json!({"node_uuid": NODE_0, "name": "db", "image": "postgres:latest", "restart_policy": never(),
               "volumes": [{"dataset_id": sized, "mountpoint": "/db"}]})
    );
    // test_in_use_dataset.
    create(&s, &with(NODE_0, "db2", "postgres", volume(&sized)))
        .await
        .assert_error(409, IN_USE);
    // test_dataset_updates_configuration: listed with its volume; the dataset is unchanged.
    let (list, _) = containers(&s).await;
    assert_eq!(list, vec![body]);
    let configured = configured_dataset(&s, &sized).await;
    assert_eq!(configured["primary"], NODE_0);
    assert_eq!(configured["deleted"], false);
}

#[tokio::test]
async fn create_checks_run_in_flockers_order() {
    let s = TestServer::start().await;
    let on_0 = dataset(&s, NODE_0, None).await;
    let free_on_1 = dataset(&s, NODE_1, None).await;
    created(
        &s,
        &with(
            NODE_0,
            "db",
            "postgres",
            json!({
                "ports": [{"internal": 5432, "external": 5432}],
                "volumes": [{"dataset_id": on_0, "mountpoint": "/db"}],
            }),
        ),
    )
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let dup_links = json!([
        {"alias": "a", "local_port": 1, "remote_port": 1},
        {"alias": "a", "local_port": 1, "remote_port": 2},
    ]);
    let taken_port = json!([{"internal": 1, "external": 5432}]);

    // Schema before the name.
    let mut body = minimal(NODE_0, "db", "postgres");
    body["junk"] = json!(1);
    create(&s, &body).await.assert_schema_error();
    // Name before the dataset (and everything else).
    create(
        &s,
        &with(
            NODE_1,
            "db",
            "postgres",
            json!({"volumes": [{"dataset_id": unknown, "mountpoint": "/x"}],
                   "ports": taken_port, "links": dup_links}),
        ),
    )
    .await
    .assert_error(409, NAME_EXISTS);
    // Unknown dataset before ports and links.
    create(
        &s,
        &with(
            NODE_1,
            "new",
            "postgres",
            json!({"volumes": [{"dataset_id": unknown, "mountpoint": "/x"}],
                   "ports": taken_port, "links": dup_links}),
        ),
    )
    .await
    .assert_error(404, DATASET_NOT_FOUND);
    // Another node before in use (on_0 is both in use and on NODE_0).
    create(
        &s,
        &with(
            NODE_1,
            "new",
            "postgres",
            json!({"volumes": [{"dataset_id": on_0, "mountpoint": "/x"}], "ports": taken_port}),
        ),
    )
    .await
    .assert_error(409, OTHER_NODE);
    // In use before ports.
    create(
        &s,
        &with(
            NODE_0,
            "new",
            "postgres",
            json!({"volumes": [{"dataset_id": on_0, "mountpoint": "/x"}], "ports": taken_port}),
        ),
    )
    .await
    .assert_error(409, IN_USE);
    // Ports before links.
    create(
        &s,
        &with(
            NODE_1,
            "new",
            "postgres",
            json!({"volumes": [{"dataset_id": free_on_1, "mountpoint": "/x"}],
                   "ports": taken_port, "links": dup_links}),
        ),
    )
    .await
    .assert_error(409, PORT_IN_USE);
    // Aliases before local ports.
    create(
        &s,
        &with(NODE_1, "new", "postgres", json!({ "links": dup_links })),
    )
    .await
    .assert_error(409, ALIASES);
    assert_eq!(containers(&s).await.0.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// GetContainerConfiguration
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_containers_over_nodes() {
    let s = TestServer::start().await;
    let (empty, empty_tag) = containers(&s).await;
    assert_eq!(empty, Vec::<Value>::new());
    let id = dataset(&s, NODE_1, None).await;
    let mut expected = vec![
        created(&s, &minimal(NODE_0, "a-web", "nginx")).await,
        created(&s, &minimal(NODE_0, "b-worker", "busybox")).await,
        created(
            &s,
            &with(
                NODE_1,
                "c-db",
                "postgres:9",
                json!({"volumes": [{"dataset_id": id, "mountpoint": "/var/lib/postgresql"}]}),
            ),
        )
        .await,
        created(&s, &minimal(NODE_2, "d-new-node", "nginx")).await,
    ];
    expected.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let (list, tag) = containers(&s).await;
    assert_eq!(list, expected);
    assert_ne!(tag, empty_tag);
    assert_eq!(
        list[2]["volumes"],
        json!([{"dataset_id": id, "mountpoint": "/var/lib/postgresql"}])
    );
}

// ---------------------------------------------------------------------------------------------
// UpdateContainerConfiguration (move)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn move_container() {
    let s = TestServer::start().await;
    created(&s, &minimal(NODE_0, "box", "busybox")).await;
    created(&s, &minimal(NODE_0, "other", "busybox")).await;
    let (_, before) = containers(&s).await;

    // test_update_same_host: 200, nothing changes (not even the tag).
    let answer = move_to(&s, "box", NODE_0).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.body,
        json!({"node_uuid": NODE_0, "name": "box", "image": "busybox:latest", "restart_policy": never()})
    );
    assert_eq!(answer.tag(), before);
    assert_eq!(containers(&s).await.1, before);

    // test_update_new_host / test_response.
    let answer = move_to(&s, "box", NODE_1).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.assert_json();
    assert_eq!(
        answer.body,
        json!({"node_uuid": NODE_1, "name": "box", "image": "busybox:latest", "restart_policy": never()})
    );
    let (list, after) = containers(&s).await;
    assert_ne!(after, before);
    assert_eq!(answer.tag(), after);
    assert_eq!(list[0]["node_uuid"], NODE_1);
    assert_eq!(list[1]["node_uuid"], NODE_0, "other containers stay");

    // test_update_nonexistent_host: any node, even one never seen.
    let answer = move_to(&s, "box", NODE_2).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["node_uuid"], NODE_2);

    // test_update_invalid_container_name.
    move_to(&s, "nope", NODE_0)
        .await
        .assert_error(404, NOT_FOUND);

    // The body: exactly {node_uuid}, a v4 UUID.
    for body in [
        json!({}),
        json!({"node_uuid": "nope"}),
        json!({"node_uuid": NODE_0, "name": "x"}),
        json!({"node_uuid": "a8098c1a-f86e-11da-bd1a-00112444be1e"}),
    ] {
        let answer = send(s.client.post(s.url(&container_path("box"))).json(&body)).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        answer.assert_schema_error();
    }
}

#[tokio::test]
async fn move_container_moves_its_dataset() {
    // test_update_moves_dataset.
    let s = TestServer::start().await;
    let id = dataset(&s, NODE_0, Some(1 << 30)).await;
    let untouched = dataset(&s, NODE_0, None).await;
    created(
        &s,
        &with(
            NODE_0,
            "db",
            "postgres",
            json!({"volumes": [{"dataset_id": id, "mountpoint": "/db"}]}),
        ),
    )
    .await;
    let answer = move_to(&s, "db", NODE_1).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.body,
        json!({"node_uuid": NODE_1, "name": "db", "image": "postgres:latest", "restart_policy": never(),
               "volumes": [{"dataset_id": id, "mountpoint": "/db"}]})
    );
    let moved = configured_dataset(&s, &id).await;
    assert_eq!(
        moved,
        json!({"dataset_id": id, "primary": NODE_1, "deleted": false, "metadata": {},
               "maximum_size": 1u64 << 30})
    );
    assert_eq!(configured_dataset(&s, &untouched).await["primary"], NODE_0);
}

#[tokio::test]
async fn a_dataset_in_use_cannot_move_alone() {
    // floe difference: Flocker broke its Node invariant and answered 500.
    let s = TestServer::start().await;
    let id = dataset(&s, NODE_0, None).await;
    created(
        &s,
        &with(
            NODE_0,
            "db",
            "postgres",
            json!({"volumes": [{"dataset_id": id, "mountpoint": "/db"}]}),
        ),
    )
    .await;
    let path = format!("{DATASETS}/{id}");
    let (_, tag) = containers(&s).await;
    send(
        s.client
            .post(s.url(&path))
            .json(&json!({ "primary": NODE_1 })),
    )
    .await
    .assert_error(409, ATTACHED);
    assert_eq!(containers(&s).await.1, tag, "nothing changed");
    assert_eq!(configured_dataset(&s, &id).await["primary"], NODE_0);
    // Not moving it is fine.
    for body in [json!({}), json!({ "primary": NODE_0 })] {
        let answer = send(s.client.post(s.url(&path)).json(&body)).await;
        assert_eq!(answer.status, 200, "{body}: {}", answer.text);
    }
    // Once the container is gone (DELETE keeps the dataset), it moves.
    assert_eq!(delete(&s, "db").await.status, 200);
    let answer = send(
        s.client
            .post(s.url(&path))
            .json(&json!({ "primary": NODE_1 })),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["primary"], NODE_1);
}

// ---------------------------------------------------------------------------------------------
// DeleteContainer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_container() {
    let s = TestServer::start().await;
    let id = dataset(&s, NODE_0, None).await;
    created(
        &s,
        &with(
            NODE_0,
            "db",
            "postgres",
            json!({"volumes": [{"dataset_id": id, "mountpoint": "/db"}]}),
        ),
    )
    .await;
    let keep = created(&s, &minimal(NODE_1, "keep", "nginx")).await;
    let (_, before) = containers(&s).await;

    // test_unknown_container.
    delete(&s, "nope").await.assert_error(404, NOT_FOUND);
    assert_eq!(containers(&s).await.1, before);

    // test_delete: 200, body null.
    let answer = delete(&s, "db").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.assert_json();
    assert_eq!(answer.text.trim(), "null");
    // test_delete_leaves_others; the dataset stays, not deleted.
    let (list, after) = containers(&s).await;
    assert_eq!(list, vec![keep]);
    assert_ne!(after, before);
    assert_eq!(answer.tag(), after);
    let configured = configured_dataset(&s, &id).await;
    assert_eq!(configured["deleted"], false);
    assert_eq!(configured["primary"], NODE_0);
    // Again: gone.
    delete(&s, "db").await.assert_error(404, NOT_FOUND);
    // The name and the dataset are free again.
    created(
        &s,
        &with(
            NODE_0,
            "db",
            "postgres",
            json!({"volumes": [{"dataset_id": id, "mountpoint": "/db"}]}),
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Conditional writes, idempotency keys, tags
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stale_configuration_tag_answers_412_before_anything_else() {
    let s = TestServer::start().await;
    let id = dataset(&s, NODE_0, None).await;
    created(&s, &minimal(NODE_0, "web", "nginx")).await;
    let (_, tag) = containers(&s).await;
    let expected = format!("Tag doesn't match. Required: stale, current: {tag}");

    let post = |path: &str| s.client.post(s.url(path)).header(IF_MATCHES, "stale");
    // Create: before 400 (undecodable, schema) and 409/404.
    send(post(CONTAINERS).body("nope"))
        .await
        .assert_error(412, &expected);
    send(post(CONTAINERS).json(&json!({"junk": 1})))
        .await
        .assert_error(412, &expected);
    send(post(CONTAINERS).json(&minimal(NODE_0, "web", "nginx")))
        .await
        .assert_error(412, &expected);
    send(post(CONTAINERS).json(&with(
        NODE_1,
        "db",
        "nginx",
        json!({"volumes": [{"dataset_id": id, "mountpoint": "/x"}]}),
    )))
    .await
    .assert_error(412, &expected);
    // Move: before 400 and 404.
    send(post(&container_path("nope")).json(&json!({ "node_uuid": NODE_1 })))
        .await
        .assert_error(412, &expected);
    send(post(&container_path("web")).json(&json!({})))
        .await
        .assert_error(412, &expected);
    // Delete: before 404.
    for name in ["web", "nope"] {
        let answer = send(
            s.client
                .delete(s.url(&container_path(name)))
                .header(IF_MATCHES, "stale"),
        )
        .await;
        answer.assert_error(412, &expected);
        assert_eq!(answer.tag(), tag, "the 412 carries the current tag");
    }
    assert_eq!(containers(&s).await.1, tag, "nothing changed");

    // The current tag: the writes go through, each answering the next tag.
    let answer = send(
        s.client
            .post(s.url(CONTAINERS))
            .header(IF_MATCHES, &tag)
            .json(&minimal(NODE_0, "second", "nginx")),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let tag = answer.tag();
    let answer = send(
        s.client
            .post(s.url(&container_path("second")))
            .header(IF_MATCHES, &tag)
            .json(&json!({ "node_uuid": NODE_1 })),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let tag = answer.tag();
    let answer = send(
        s.client
            .delete(s.url(&container_path("second")))
            .header(IF_MATCHES, &tag),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.tag(), containers(&s).await.1);
    // The old tag is stale now.
    let stale = send(
        s.client
            .delete(s.url(&container_path("web")))
            .header(IF_MATCHES, &tag),
    )
    .await;
    assert_eq!(stale.status, 412);
}

#[tokio::test]
async fn idempotency_keys_replay_container_writes() {
    let s = TestServer::start().await;
    let body = minimal(NODE_0, "web", "nginx");
    let first = send(
        s.client
            .post(s.url(CONTAINERS))
            .header("idempotency-key", "create-web")
            .json(&body),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    // A retry: the first answer again, not a 409.
    let again = send(
        s.client
            .post(s.url(CONTAINERS))
            .header("idempotency-key", "create-web")
            .json(&body),
    )
    .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.body, first.body);
    assert_eq!(again.tag(), first.tag());
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    // Without the key: the name is taken.
    create(&s, &body).await.assert_error(409, NAME_EXISTS);
    // The same key for another request.
    send(
        s.client
            .post(s.url(CONTAINERS))
            .header("idempotency-key", "create-web")
            .json(&minimal(NODE_0, "web2", "nginx")),
    )
    .await
    .assert_error(422, KEY_REUSED);
    // Delete with a key: a retry replays the 200 null, not a 404.
    for _ in 0..2 {
        let answer = send(
            s.client
                .delete(s.url(&container_path("web")))
                .header("idempotency-key", "delete-web"),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.text.trim(), "null");
    }
    assert_eq!(containers(&s).await.0, Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// ContainerStateAPI
// ---------------------------------------------------------------------------------------------

async fn report(s: &TestServer, node: &str, containers: Option<Value>) {
    let mut body = json!({"host": "10.0.0.1", "era": uuid::Uuid::new_v4().to_string(),
                          "datasets": [], "nonmanifest_datasets": []});
    if let Some(containers) = containers {
        body["containers"] = containers;
    }
    let answer = send(
        s.client
            .put(s.url(&format!("/v1/agent/nodes/{node}")))
            .json(&body),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn container_state_lists_reported_containers() {
    let s = TestServer::start().await;
    // test_empty.
    assert_eq!(state_containers(&s).await, Vec::<Value>::new());
    // test_unknown_containers: a node that reports no containers contributes nothing.
    report(&s, NODE_1, None).await;
    report(&s, NODE_2, Some(json!([]))).await;
    assert_eq!(state_containers(&s).await, Vec::<Value>::new());

    // test_one_container (+ _maximum_size, _not_running, test_two_containers).
    let dataset_id = "00000000-0000-4000-8000-000000000001";
    report(
        &s,
        NODE_0,
        Some(json!([
            {
                "name": "busy",
                "image": "busybox:1.2",
                "running": true,
                "restart_policy": {"name": "always"},
                "ports": [{"internal": 443, "external": 8443}, {"internal": 80, "external": 8080}],
                "links": [{"alias": "db", "local_port": 5432, "remote_port": 15432}],
                "cpu_shares": 512,
                "memory_limit": 262144000,
                "swappiness": 10,
                "environment": {"A": "b"},
                "command_line": ["sh", "-c", "true"],
                "volumes": [{"dataset_id": dataset_id, "mountpoint": "/data"}],
            },
            {"name": "idle", "image": "nginx", "running": false},
        ])),
    )
    .await;
    report(
        &s,
        NODE_1,
        Some(json!([{"name": "other", "image": "redis", "running": true,
                     "restart_policy": {"name": "on-failure", "maximum_retry_count": 3}}])),
    )
    .await;
    assert_eq!(
        state_containers(&s).await,
        vec![
            json!({
                "node_uuid": NODE_0, "name": "busy", "image": "busybox:1.2", "running": true,
                "restart_policy": {"name": "always"},
                "ports": [{"internal": 80, "external": 8080}, {"internal": 443, "external": 8443}],
                "links": [{"alias": "db", "local_port": 5432, "remote_port": 15432}],
                "cpu_shares": 512, "memory_limit": 262144000,
                "environment": {"A": "b"}, "command_line": ["sh", "-c", "true"],
                "volumes": [{"dataset_id": dataset_id, "mountpoint": "/data"}],
            }),
            json!({"node_uuid": NODE_0, "name": "idle", "image": "nginx:latest", "running": false,
                   "restart_policy": never()}),
            json!({"node_uuid": NODE_1, "name": "other", "image": "redis:latest", "running": true,
                   "restart_policy": {"name": "on-failure", "maximum_retry_count": 3}}),
        ]
    );
    // The state is not the configuration.
    assert_eq!(containers(&s).await.0, Vec::<Value>::new());
    // A node's next report replaces its containers.
    report(&s, NODE_0, None).await;
    let names: Vec<Value> = state_containers(&s)
        .await
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("other")]);
    // A reported container may not name its node (the reporting node is its node).
    let answer = send(
        s.client
            .put(s.url(&format!("/v1/agent/nodes/{NODE_0}")))
            .json(&json!({"host": "10.0.0.1", "era": uuid::Uuid::new_v4().to_string(),
                          "datasets": [], "nonmanifest_datasets": [],
                          "containers": [{"node_uuid": NODE_1, "name": "x1", "image": "x", "running": true}]})),
    )
    .await;
    answer.assert_schema_error();
}

// ---------------------------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn containers_persist_across_a_restart() {
    let s = TestServer::start().await;
    let id = dataset(&s, NODE_0, None).await;
    created(
        &s,
        &with(
            NODE_0,
            "db",
            "postgres",
            json!({"volumes": [{"dataset_id": id, "mountpoint": "/db"}],
                   "ports": [{"internal": 5432, "external": 5432}],
                   "links": [{"alias": "cache", "local_port": 6379, "remote_port": 6379}],
                   "environment": {"PGDATA": "/db"}, "cpu_shares": 100,
                   "memory_limit": 1048576, "command_line": ["postgres"], "swappiness": 0,
                   "restart_policy": {"name": "on-failure", "maximum_retry_count": 2}}),
        ),
    )
    .await;
    created(&s, &minimal(NODE_1, "gone", "nginx")).await;
    created(&s, &minimal(NODE_1, "web", "nginx")).await;
    assert_eq!(move_to(&s, "db", NODE_1).await.status, 200);
    assert_eq!(delete(&s, "gone").await.status, 200);
    let (before, tag) = containers(&s).await;
    let dataset_before = configured_dataset(&s, &id).await;

    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let (after, tag_after) = containers(&s).await;
    assert_eq!(after, before);
    common::assert_same_revision_new_tag(&tag, &tag_after, "containers");
    assert_eq!(configured_dataset(&s, &id).await, dataset_before);
    assert_eq!(dataset_before["primary"], NODE_1);
    // The checks still see them.
    create(&s, &minimal(NODE_0, "web", "nginx"))
        .await
        .assert_error(409, NAME_EXISTS);
    create(
        &s,
        &with(
            NODE_0,
            "x2",
            "nginx",
            json!({"ports": [{"internal": 1, "external": 5432}]}),
        ),
    )
    .await
    .assert_error(409, PORT_IN_USE);
    created(&s, &minimal(NODE_0, "gone", "nginx")).await;
}
