//! `floe import-flocker`: a Flocker configuration file imported into a fresh data directory is
//! served exactly by the API; an import into a non-empty store, or into a data directory a
//! running server holds, is refused and changes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TestServer, floe_binary};
use serde_json::{Value, json};
use tempfile::TempDir;

const NODE_A: &str = "5d5f4c2e-8b0e-4c1a-9f4e-1b2c3d4e5f60";
const NODE_B: &str = "e2a1b3c4-d5e6-4f70-8a91-b2c3d4e5f607";
const PG: &str = "11111111-2222-4333-8444-555555555555";
const GONE: &str = "aaaaaaaa-bbbb-4ccc-9ddd-eeeeeeeeeeee";
const LOGS: &str = "01234567-89ab-4def-a123-456789abcdef";

/// The hand-written version 6 file the model's unit tests read too.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flocker_v6.json")
}

fn import(file: &Path, data_dir: &Path) -> Output {
    Command::new(floe_binary())
        .arg("import-flocker")
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("FLOE_DATA_DIR")
        .output()
        .expect("floe runs")
}

/// Whether `floe import-flocker` succeeded, and what it said on standard error.
fn import_outcome(file: &Path, data_dir: &Path) -> (bool, String) {
    let output = import(file, data_dir);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}

/// The fixture with `change` made to its JSON, written into `dir`.
fn edited_fixture(dir: &TempDir, change: impl FnOnce(&mut Value)) -> PathBuf {
    let mut document: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap();
    change(&mut document);
    let file = dir.path().join("current_configuration.json");
    std::fs::write(&file, document.to_string()).unwrap();
    file
}

async fn get(server: &TestServer, path: &str) -> (Value, Option<String>) {
    let answer = server.client.get(server.url(path)).send().await.unwrap();
    assert_eq!(answer.status(), 200, "{path}");
    let tag = answer
        .headers()
        .get("x-configuration-tag")
        .map(|tag| tag.to_str().unwrap().to_string());
    (answer.json().await.unwrap(), tag)
}

/// Sorted by a key, for lists whose order the API leaves open.
fn sorted(mut list: Value, key: &str) -> Value {
    list.as_array_mut()
        .unwrap()
        .sort_by(|a, b| a[key].as_str().cmp(&b[key].as_str()));
    list
}

/// The three lists, as comparable values; the lease expiry is checked apart (it counts down).
async fn lists(server: &TestServer) -> (Value, Value, Value, String) {
    let (datasets, tag) = get(server, "/v1/configuration/datasets").await;
    let (leases, _) = get(server, "/v1/configuration/leases").await;
    let (containers, _) = get(server, "/v1/configuration/containers").await;
    (
        sorted(datasets, "dataset_id"),
        sorted(leases, "dataset_id"),
        sorted(containers, "name"),
        tag.expect("the dataset list carries the configuration tag"),
    )
}

#[tokio::test]
async fn an_imported_file_is_served_exactly_as_it_was_held() {
    let dir = TempDir::new().unwrap();
    let output = import(&fixture(), dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "imported Flocker configuration (version 6): 3 datasets (1 deleted), 2 leases, 2 containers"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("not carried over: 1 entries of persistent_state.blockdevice_ownership"),
        "{stdout}"
    );
    assert!(stdout.contains("not carried over: 1 replica"), "{stdout}");

    let server = TestServer::start_in(dir, |_| {}).await;
    let (datasets, mut leases, containers, _) = lists(&server).await;
    assert_eq!(
        datasets,
        json!([
            {"dataset_id": LOGS, "primary": NODE_B, "deleted": false, "metadata": {"name": "logs"}},
            {"dataset_id": PG, "primary": NODE_A, "deleted": false,
             "metadata": {"name": "pg-main", "owner": "team-a"}, "maximum_size": 134217728},
            {"dataset_id": GONE, "primary": NODE_A, "deleted": true, "metadata": {}},
        ])
    );
    // The expiry is 2100-01-01 00:00:00 UTC, told as the seconds left now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let left = leases[0]["expires"].as_f64().expect("a number");
    assert!((left - (4_102_444_800.0 - now)).abs() < 60.0, "{left}");
    leases[0]["expires"] = json!("checked");
    assert_eq!(
        leases,
        json!([
            {"dataset_id": LOGS, "node_uuid": NODE_B, "expires": "checked"},
            {"dataset_id": PG, "node_uuid": NODE_A, "expires": null},
        ])
    );
    assert_eq!(
        containers,
        json!([
            {"node_uuid": NODE_B, "name": "cache", "image": "redis:3.2",
             "restart_policy": {"name": "always"},
             "ports": [{"internal": 6379, "external": 16379}]},
            {"node_uuid": NODE_A, "name": "pgmain", "image": "postgres:9.6",
             "restart_policy": {"name": "on-failure", "maximum_retry_count": 3},
             "ports": [{"internal": 5432, "external": 15432}],
             "links": [{"alias": "cache", "local_port": 6379, "remote_port": 16379}],
             "environment": {"PGDATA": "/var/lib/postgresql/data"},
             "volumes": [{"dataset_id": PG, "mountpoint": "/var/lib/postgresql"}],
             "cpu_shares": 512, "memory_limit": 268435456,
             "command_line": ["postgres", "-c", "fsync=on"]},
        ])
    );
    server.stop().await;
}

#[tokio::test]
async fn an_import_into_a_non_empty_store_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let created = server
        .client
        .post(server.url("/v1/configuration/datasets"))
        .json(&json!({"primary": NODE_A, "metadata": {"name": "already here"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let before = lists(&server).await;

    // While the server runs, its lock keeps the import out.
    let (success, stderr) = import_outcome(&fixture(), server.data_dir());
    assert!(!success);
    assert!(
        stderr.contains("another floe process is using it")
            && stderr.contains("stop the floe server"),
        "{stderr}"
    );

    let dir = server.stop().await;
    let (success, stderr) = import_outcome(&fixture(), dir.path());
    assert!(!success);
    assert!(
        stderr.contains("import refused, nothing was changed")
            && stderr
                .contains("the configuration is not empty (1 datasets, 0 leases, 0 containers)"),
        "{stderr}"
    );

    let server = TestServer::start_in(dir, |_| {}).await;
    let after = lists(&server).await;
    assert_eq!(
        (&after.0, &after.1, &after.2),
        (&before.0, &before.1, &before.2),
        "same content"
    );
    common::assert_same_revision_new_tag(&before.3, &after.3, "import refused");
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_file_is_refused_naming_where_and_no_store_is_touched() {
    let dir = TempDir::new().unwrap();
    let file = edited_fixture(&dir, |document| document["version"] = json!(7));
    let data_dir = dir.path().join("data");
    let (success, stderr) = import_outcome(&file, &data_dir);
    assert!(!success);
    assert!(
        stderr.contains("version 7 is not supported; floe reads versions 1 to 6"),
        "{stderr}"
    );
    assert!(
        !data_dir.exists(),
        "the file is read before the store is opened"
    );

    let (success, stderr) = import_outcome(&dir.path().join("missing.json"), &data_dir);
    assert!(!success);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[tokio::test]
async fn an_item_the_api_refuses_leaves_no_data_directory_behind() {
    let dir = TempDir::new().unwrap();
    // Node B's application takes node A's application's name: each is valid alone, but the
    // API keeps container names unique across the cluster.
    let file = edited_fixture(&dir, |document| {
        let nodes = document["deployment"]["nodes"]["values"]
            .as_array_mut()
            .unwrap();
        let node_b = nodes
            .iter_mut()
            .find(|pair| pair[0]["hex"] == json!(NODE_B))
            .unwrap();
        let application = &mut node_b[1]["applications"]["values"][0];
        application[0] = json!("pgmain");
        application[1]["name"] = json!("pgmain");
    });
    let data_dir = dir.path().join("data");
    let (success, stderr) = import_outcome(&file, &data_dir);
    assert!(!success);
    assert!(
        stderr.contains("import refused, nothing was changed") && stderr.contains("pgmain"),
        "{stderr}"
    );
    assert!(
        !data_dir.exists(),
        "a refused import does not create the data directory"
    );
}
