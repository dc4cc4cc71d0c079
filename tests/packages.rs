//! The Project FiFo packages API over HTTP against an in-process floe: every packages item of
//! fifo_and_mathematicians.md A.9 that does not need authentication (1,
//! 8–18), safe creation (`/new`, retried POSTs, `Idempotency-Key`), ETags and the If-Match
//! policy, msgpack, and persistence across a restart.
mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::http::{Answer, UNDECODABLE, send};
use floe::api::conditional::IfMatchPolicy;
use floe::config::StoreKind;
use serde_json::{Value, json};
use tempfile::TempDir;

const MSGPACK: &str = "application/x-msgpack";

/// The description of the 410 for a create by the uuid of a deleted package.
const DELETED: &str = "This package was deleted: a create by its uuid does not bring it back. A new package needs a new uuid, from GET .../packages/new.";

fn packages(version: &str) -> String {
    format!("/api/{version}/packages")
}

fn one(uuid: &str) -> String {
    format!("/api/2/packages/{uuid}")
}

async fn create(server: &TestServer, body: &Value) -> Answer {
    send(server.client.post(server.url(&packages("2"))).json(body)).await
}

/// Creates a package and returns its id (from `Location`).
async fn created(server: &TestServer, body: &Value) -> String {
    let answer = create(server, body).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    let location = answer.headers["location"].to_str().unwrap().to_string();
    location.rsplit('/').next().unwrap().to_string()
}

/// Creates `body`, which names the uuid of a deleted package, once the package's tombstone is
/// forgotten (`--idempotency-ttl` after the delete, at the next sweep); a 410 until then.
async fn create_once_forgotten(server: &TestServer, body: &Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = create(server, body).await;
        if answer.status != 410 {
            assert_eq!(answer.status, 303, "{}", answer.text);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the tombstone is never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server that forgets idempotent answers, and the tombstones of deleted packages, `seconds`
/// after they were made (`--idempotency-ttl`).
async fn forgetting_after(seconds: u64) -> TestServer {
    TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.idempotency_ttl = seconds;
    })
    .await
}

async fn get(server: &TestServer, path: &str) -> Answer {
    send(server.client.get(server.url(path))).await
}

async fn put_metadata(server: &TestServer, uuid: &str, path: &str, body: &Value) -> Answer {
    let url = server.url(&format!("{}/metadata{path}", one(uuid)));
    send(server.client.put(url).json(body)).await
}

async fn delete(server: &TestServer, path: &str) -> Answer {
    send(server.client.delete(server.url(path))).await
}

async fn metadata(server: &TestServer, uuid: &str) -> Value {
    let answer = get(server, &one(uuid)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["metadata"].clone()
}

fn small() -> Value {
    json!({ "name": "small", "ram": 1024, "quota": 40, "cpu_cap": 100 })
}

#[tokio::test]
async fn any_version_string_reaches_the_same_packages() {
    let server = TestServer::start().await;
    let answer = send(
        server
            .client
            .post(server.url(&packages("0.1.0")))
            .json(&small()),
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    let location = answer.headers["location"].to_str().unwrap();
    assert!(location.starts_with("/api/0.1.0/packages/"), "{location}");
    let uuid = location.rsplit('/').next().unwrap();
    for version in ["0.1.0", "2", "3"] {
        let answer = get(&server, &format!("{}/{uuid}", packages(version))).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["name"], "small");
    }
}

/// FiFo does not check the version, so a client may send any segment there; the `Location`
/// built from it names the same path again, escaped, and leads to the package.
#[tokio::test]
async fn a_location_built_from_an_odd_version_leads_back_to_the_package() {
    let server = TestServer::start().await;
    for (sent, named) in [
        ("a%2Fb", "a%2Fb"),
        ("a%3Fb", "a%3Fb"),
        ("a%20b", "a%20b"),
        ("%C3%A9", "%C3%A9"),
        ("%0d%0aX-Injected:%201", "%0D%0AX-Injected:%201"),
    ] {
        let body = json!({ "name": format!("p-{named}"), "ram": 1, "quota": 1, "cpu_cap": 1 });
        let answer = send(server.client.post(server.url(&packages(sent))).json(&body)).await;
        assert_eq!(answer.status, 303, "{sent}: {}", answer.text);
        assert!(!answer.headers.contains_key("x-injected"));
        let location = answer.headers["location"].to_str().unwrap();
        let prefix = format!("/api/{named}/packages/");
        assert!(location.starts_with(&prefix), "{sent}: {location}");
        let read = get(&server, location).await;
        assert_eq!(read.status, 200, "{location}");
        assert_eq!(read.body["name"], body["name"]);
    }
}

#[tokio::test]
async fn create_answers_303_and_the_package_has_fifos_shape() {
    let server = TestServer::start().await;
    let answer = create(&server, &small()).await;
    assert_eq!(answer.status, 303);
    assert!(answer.text.is_empty());
    let location = answer.headers["location"].to_str().unwrap();
    let uuid = location.strip_prefix("/api/2/packages/").unwrap();
    let parsed = uuid::Uuid::parse_str(uuid).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(uuid, uuid.to_lowercase());
    assert!(answer.headers.contains_key("etag"));

    let answer = get(&server, location).await;
    assert_eq!(answer.status, 200);
    answer.assert_json();
    let etag = answer.body["_etag"].as_str().unwrap().to_string();
    assert_eq!(
        answer.headers["etag"].to_str().unwrap(),
        format!("\"{etag}\"")
    );
    let created = answer.body["_created"].clone();
    assert_eq!(
        answer.body,
        json!({
            "_created": created,
            "_etag": etag,
            "_updated": created,
            "compression": "off",
            "cpu_cap": 100,
            "metadata": {},
            "name": "small",
            "quota": 40,
            "ram": 1024,
            "requirements": [],
            "uuid": uuid,
        })
    );
    let keys: Vec<&String> = answer.body.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "keys are emitted sorted");
}

#[tokio::test]
async fn every_optional_field_and_requirement_shape_is_kept() {
    let server = TestServer::start().await;
    let rule = json!({ "weight": "must", "condition": ">=", "attribute": "resources.free-memory", "value": 5 });
    let scale =
        json!({ "weight": "scale", "attribute": "resources.free-memory", "low": 0, "high": 10 });
    let random = json!({ "weight": "random", "low": 0, "high": 10 });
    let weighted = json!({ "weight": 3, "condition": "element", "attribute": "a", "value": ["x"] });
    let uuid = created(
        &server,
        &json!({
            "name": "full", "ram": 1, "quota": 2, "cpu_cap": 3, "max_swap": 4,
            "zfs_io_priority": 5, "blocksize": 6, "compression": "gzip-9",
            "requirements": [rule, scale, random, weighted, rule],
        }),
    )
    .await;
    let answer = get(&server, &one(&uuid)).await;
    for (key, value) in [
        ("ram", json!(1)),
        ("quota", json!(2)),
        ("cpu_cap", json!(3)),
        ("max_swap", json!(4)),
        ("zfs_io_priority", json!(5)),
        ("blocksize", json!(6)),
        ("compression", json!("gzip-9")),
    ] {
        assert_eq!(answer.body[key], value, "{key}");
    }
    let requirements = answer.body["requirements"].as_array().unwrap();
    assert_eq!(
        requirements.len(),
        4,
        "duplicates collapse: {requirements:?}"
    );
    assert!(answer.body.get("cpu_shares").is_none());
}

/// Requirements in the order a client might send them: a rule without `weight` and the same
/// rule with `"weight": "must"`, which FiFo's `js2req` makes one and the same requirement.
fn unordered_requirements() -> Value {
    json!([
        { "attribute": "a", "condition": ">=", "value": 5 },
        { "weight": "scale", "attribute": "cpu", "low": 0, "high": 10 },
        { "condition": "<", "attribute": "b", "value": 9 },
        { "weight": 10, "attribute": "d", "condition": "element", "value": ["x"] },
        { "weight": "must", "attribute": "a", "condition": ">=", "value": 5 },
        { "weight": "cant", "attribute": "c", "condition": "=:=", "value": "x" },
        { "weight": "random", "low": 1, "high": 2 },
        { "weight": 3, "attribute": "e", "condition": "subset", "value": { "k": 1, "j": [] } },
    ])
}

/// What FiFo lists for [`unordered_requirements`]: every rule with its weight (`must` when it
/// had none), the duplicate gone, in Erlang's order of FiFo's tuples — `{random, Low, High}`
/// (the only 3-tuple) first, then the rules by weight (integers, then `cant`, then `must`) and
/// condition, then `{scale, …}`.
fn fifos_requirements() -> Value {
    json!([
        { "high": 2, "low": 1, "weight": "random" },
        { "attribute": "e", "condition": "subset", "value": { "j": [], "k": 1 }, "weight": 3 },
        { "attribute": "d", "condition": "element", "value": ["x"], "weight": 10 },
        { "attribute": "c", "condition": "=:=", "value": "x", "weight": "cant" },
        { "attribute": "b", "condition": "<", "value": 9, "weight": "must" },
        { "attribute": "a", "condition": ">=", "value": 5, "weight": "must" },
        { "attribute": "cpu", "high": 10, "low": 0, "weight": "scale" },
    ])
}

/// fifo_and_mathematicians.md A.5: `weight` is `must` when absent, and requirements are a
/// set — the same requirement twice is kept once — listed in sorted term order. Every form
/// of the package (JSON, full list, msgpack, after a restart) shows the same set.
#[tokio::test]
async fn requirements_default_to_must_collapse_and_keep_fifos_order() {
    let server = TestServer::start().await;
    let uuid = created(
        &server,
        &json!({ "name": "w1", "requirements": unordered_requirements() }),
    )
    .await;
    let answer = get(&server, &one(&uuid)).await;
    assert_eq!(answer.body["requirements"], fifos_requirements());
    let text = &answer.text;
    let first = text.find("\"requirements\"").unwrap();
    assert!(
        text[first..].starts_with(r#""requirements":[{"high":2,"low":1,"weight":"random"},{"attribute":"e","condition":"subset","value":{"j":[],"k":1},"weight":3}"#),
        "keys are emitted sorted: {text}"
    );

    let full = get(&server, &format!("{}?full-list=true", packages("2"))).await;
    assert_eq!(full.body[0]["requirements"], fifos_requirements());

    let response = server
        .client
        .get(server.url(&one(&uuid)))
        .header("accept", MSGPACK)
        .send()
        .await
        .unwrap();
    let decoded: Value = rmp_serde::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(decoded["requirements"], fifos_requirements());

    // The same set, however it was written, is the same package.
    let mut reversed = unordered_requirements();
    reversed.as_array_mut().unwrap().reverse();
    let twin = created(&server, &json!({ "name": "w2", "requirements": reversed })).await;
    assert_eq!(
        get(&server, &one(&twin)).await.body["requirements"],
        fifos_requirements()
    );

    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let again = get(&server, &one(&uuid)).await;
    assert_eq!(again.body["requirements"], fifos_requirements());
    assert_eq!(again.headers["etag"], answer.headers["etag"]);
}

/// Packages stored before requirements were normalised (without `weight`, with duplicates, in
/// another order) load normalised: no migration is needed.
#[tokio::test]
async fn requirements_stored_without_weights_load_normalised() {
    let server = TestServer::start().await;
    let uuid = created(&server, &json!({ "name": "old" })).await;
    let dir = server.stop().await;

    let database = dir.path().join(floe::store::DATABASE_FILE);
    let connection = rusqlite::Connection::open(&database).expect("open floe's database");
    let document: String = connection
        .query_row(
            "SELECT document FROM packages WHERE uuid = ?1",
            [&uuid],
            |row| row.get(0),
        )
        .expect("the package's row");
    let mut document: Value = serde_json::from_str(&document).unwrap();
    document["requirements"] = unordered_requirements();
    connection
        .execute(
            "UPDATE packages SET document = ?1 WHERE uuid = ?2",
            [document.to_string(), uuid.clone()],
        )
        .expect("write the old form");
    drop(connection);

    let server = TestServer::start_in(dir, |_| {}).await;
    let answer = get(&server, &one(&uuid)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["requirements"], fifos_requirements());
    let full = get(&server, &format!("{}?full-list=true", packages("2"))).await;
    assert_eq!(full.body[0]["requirements"], fifos_requirements());
}

#[tokio::test]
async fn invalid_bodies_are_400_and_store_nothing() {
    let server = TestServer::start().await;
    let before = get(&server, &packages("2")).await.tag();
    let bad = [
        json!({}),
        json!({ "name": 7 }),
        json!({ "name": "" }),
        json!({ "name": "x", "ram": 0 }),
        json!({ "name": "x", "ram": -1 }),
        json!({ "name": "x", "ram": 1024.5 }),
        json!({ "name": "x", "ram": "1024" }),
        json!({ "name": "x", "quota": 0 }),
        json!({ "name": "x", "compression": "zip" }),
        json!({ "name": "x", "cpu_shares": 10 }),
        json!({ "name": "x", "junk": 1 }),
        json!({ "name": "x", "uuid": "not-a-uuid" }),
        json!({ "name": "x", "requirements": [{ "weight": "must" }] }),
        json!({ "name": "x", "requirements": [{ "weight": "scale", "low": 1, "high": 2 }] }),
        json!({ "name": "x", "requirements": [{ "condition": "~", "attribute": "a", "value": 1 }] }),
        json!({ "name": "x", "requirements": "none" }),
        json!(["small"]),
    ];
    for body in bad {
        create(&server, &body).await.assert_schema_error();
    }
    let undecodable = send(
        server
            .client
            .post(server.url(&packages("2")))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    undecodable.assert_bad_request();
    let list = get(&server, &packages("2")).await;
    assert_eq!(list.body, json!([]));
    assert_eq!(list.tag(), before, "nothing was stored");
}

#[tokio::test]
async fn a_duplicate_name_is_409() {
    let server = TestServer::start().await;
    created(&server, &small()).await;
    let answer = create(&server, &json!({ "name": "small", "ram": 2048 })).await;
    answer.assert_error(409, "A package with this name already exists.");
    assert_eq!(
        get(&server, &packages("2"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn new_mints_an_id_stores_nothing_and_a_post_by_it_is_safe_to_retry() {
    let server = TestServer::start().await;
    let tag = get(&server, &packages("2")).await.tag();
    let first = get(&server, &format!("{}/new", packages("2"))).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["cache-control"], "no-store");
    let uuid = first.body["uuid"].as_str().unwrap().to_string();
    assert_eq!(first.body["requirements"], json!([]));
    let second = get(&server, &format!("{}/new", packages("2"))).await;
    assert_ne!(second.body["uuid"], first.body["uuid"]);
    assert_eq!(get(&server, &packages("2")).await.tag(), tag);
    assert_eq!(get(&server, &one(&uuid)).await.status, 404);

    let mut body = first.body.clone();
    body["name"] = json!("small");
    body["ram"] = json!(512);
    let answer = create(&server, &body).await;
    assert_eq!(answer.status, 303);
    let location = answer.headers["location"].clone();
    assert_eq!(location, format!("/api/2/packages/{uuid}").as_str());
    let after_first = get(&server, &packages("2")).await.tag();
    let retry = create(&server, &body).await;
    assert_eq!(retry.status, 303);
    assert_eq!(retry.headers["location"], location);
    assert_eq!(retry.headers["etag"], answer.headers["etag"]);
    let list = get(&server, &packages("2")).await;
    assert_eq!(list.body, json!([uuid]));
    assert_eq!(list.tag(), after_first, "the retry changed nothing");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_303() {
    let server = TestServer::start().await;
    let post = || {
        server
            .client
            .post(server.url(&packages("2")))
            .header("idempotency-key", "k-1")
            .json(&small())
    };
    let first = send(post()).await;
    assert_eq!(first.status, 303);
    let again = send(post()).await;
    assert_eq!(again.status, 303);
    assert_eq!(again.headers["location"], first.headers["location"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        get(&server, &packages("2"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn lists_are_ids_or_full_objects_with_selected_fields() {
    let server = TestServer::start().await;
    let a = created(&server, &small()).await;
    let b = created(&server, &json!({ "name": "big", "ram": 4096 })).await;
    let mut ids = vec![a.clone(), b.clone()];
    ids.sort();

    let list = get(&server, &packages("2")).await;
    assert_eq!(list.status, 200);
    assert!(list.headers.contains_key("etag"));
    let mut got: Vec<String> = serde_json::from_value(list.body.clone()).unwrap();
    got.sort();
    assert_eq!(got, ids);

    let full = get(&server, &format!("{}?full-list=true", packages("2"))).await;
    let objects = full.body.as_array().unwrap();
    assert_eq!(objects.len(), 2);
    assert!(
        objects
            .iter()
            .all(|o| o["compression"] == "off" && o["uuid"].is_string())
    );
    assert_ne!(full.headers["etag"], list.headers["etag"]);

    let fields = get(
        &server,
        &format!(
            "{}?full-list=true&full-list-fields=name,ram,nope",
            packages("2")
        ),
    )
    .await;
    for object in fields.body.as_array().unwrap() {
        let keys: Vec<&String> = object.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "ram"]);
    }
    // Exact names, no trimming: " ram" selects nothing.
    let spaced = get(
        &server,
        &format!(
            "{}?full-list=true&full-list-fields=name,%20ram",
            packages("2")
        ),
    )
    .await;
    for object in spaced.body.as_array().unwrap() {
        assert_eq!(object.as_object().unwrap().len(), 1, "{object}");
    }
    // Fields without a full list are ignored.
    let ignored = get(&server, &format!("{}?full-list-fields=name", packages("2"))).await;
    assert!(
        ignored
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );

    // FiFo's headers: `True` counts, anything else does not; the query wins over them.
    let by_header = send(
        server
            .client
            .get(server.url(&packages("0.1.0")))
            .header("x-full-list", "True")
            .header("x-full-list-fields", "uuid"),
    )
    .await;
    for object in by_header.body.as_array().unwrap() {
        assert_eq!(object.as_object().unwrap().len(), 1);
    }
    let yes_is_not_true = send(
        server
            .client
            .get(server.url(&packages("2")))
            .header("x-full-list", "yes"),
    )
    .await;
    assert!(
        yes_is_not_true
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );
    let query_wins = send(
        server
            .client
            .get(server.url(&format!("{}?full-list=false", packages("2"))))
            .header("x-full-list", "true"),
    )
    .await;
    assert!(
        query_wins
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );

    // A list read with its ETag is 304.
    let etag = list.headers["etag"].clone();
    let again = server
        .client
        .get(server.url(&packages("2")))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

/// A create by a client-held uuid is idempotent, but its retry must not undo a delete: client
/// A creates (and loses the answer), client B deletes and is told so, A retries. The retry
/// is a 410 that says why, and changes nothing: not the package, not the list, not the
/// configuration tag; in memory, and on disk across a restart. The name is free again.
#[tokio::test]
async fn a_create_retried_after_its_package_was_deleted_is_410_and_brings_nothing_back() {
    for store in [StoreKind::Memory, StoreKind::Sqlite] {
        let mut server =
            TestServer::start_in(TempDir::new().unwrap(), |config| config.store = store).await;
        let uuid = uuid::Uuid::new_v4().to_string();
        let body = json!({ "uuid": uuid, "name": "small" });
        assert_eq!(create(&server, &body).await.status, 303);
        assert_eq!(delete(&server, &one(&uuid)).await.status, 204);
        let before = get(&server, "/api/2/packages?full-list=true").await;

        create(&server, &body).await.assert_error(410, DELETED);
        let create_only = server
            .client
            .post(server.url(&packages("2")))
            .header("if-none-match", "*")
            .json(&body);
        send(create_only).await.assert_error(410, DELETED);
        assert_eq!(get(&server, &one(&uuid)).await.status, 404, "{store:?}");
        assert_eq!(delete(&server, &one(&uuid)).await.status, 404);
        let after = get(&server, "/api/2/packages?full-list=true").await;
        assert_eq!(after.body, json!([]), "{store:?}");
        assert_eq!(after.tag(), before.tag(), "the retry changed nothing");
        if store == StoreKind::Sqlite {
            server = TestServer::start_in(server.stop().await, |_| {}).await;
            create(&server, &body).await.assert_error(410, DELETED);
            assert_eq!(get(&server, &one(&uuid)).await.status, 404);
        }
        assert_eq!(
            created(&server, &json!({ "name": "small" })).await.len(),
            36
        );
    }
}

/// A tombstone is kept as long as idempotent answers are (`--idempotency-ttl`): a create by the
/// uuid after that is a new request, and creates the package again.
#[tokio::test]
async fn a_deleted_package_s_uuid_creates_again_once_idempotent_answers_are_forgotten() {
    let server = forgetting_after(1).await;
    let uuid = uuid::Uuid::new_v4().to_string();
    let body = json!({ "uuid": uuid, "name": "small" });
    assert_eq!(create(&server, &body).await.status, 303);
    let deleting = Instant::now();
    assert_eq!(delete(&server, &one(&uuid)).await.status, 204);
    create(&server, &body).await.assert_error(410, DELETED);

    create_once_forgotten(&server, &body).await;
    assert!(
        deleting.elapsed() >= Duration::from_secs(1),
        "{:?}",
        deleting.elapsed()
    );
    assert_eq!(get(&server, &one(&uuid)).await.status, 200);
    assert_eq!(get(&server, &packages("2")).await.body, json!([uuid]));
}

#[tokio::test]
async fn delete_is_204_then_404_and_unknown_ids_are_404() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let answer = delete(&server, &one(&uuid)).await;
    assert_eq!(answer.status, 204);
    assert!(answer.text.is_empty());
    delete(&server, &one(&uuid))
        .await
        .assert_error(404, "Package not found.");
    get(&server, &one(&uuid))
        .await
        .assert_error(404, "Package not found.");
    get(&server, &one("abc"))
        .await
        .assert_error(404, "Package not found.");
    assert_eq!(
        get(&server, &format!("{}/foo", one(&uuid))).await.status,
        404
    );
    // The name is free again.
    created(&server, &small()).await;
}

#[tokio::test]
async fn put_of_a_package_is_400() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let answer = send(
        server
            .client
            .put(server.url(&one(&uuid)))
            .json(&json!({ "ram": 1 })),
    )
    .await;
    answer.assert_bad_request();
    assert_eq!(get(&server, &one(&uuid)).await.body["ram"], 1024);
}

#[tokio::test]
async fn metadata_puts_deep_merge_and_deletes_remove_subtrees() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let before = get(&server, &one(&uuid)).await;

    let answer = put_metadata(&server, &uuid, "/jingles", &json!({ "notes": ["c", "d"] })).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    assert!(answer.text.is_empty());
    assert_ne!(answer.headers["etag"], before.headers["etag"]);
    assert_eq!(
        metadata(&server, &uuid).await,
        json!({ "jingles": { "notes": ["c", "d"] } })
    );

    put_metadata(
        &server,
        &uuid,
        "",
        &json!({ "jingles": { "color": "red" } }),
    )
    .await;
    assert_eq!(
        metadata(&server, &uuid).await,
        json!({ "jingles": { "color": "red", "notes": ["c", "d"] } })
    );
    // Arrays replace; deep paths create intermediate objects.
    put_metadata(&server, &uuid, "/jingles", &json!({ "notes": ["e"] })).await;
    put_metadata(&server, &uuid, "/a/b", &json!({ "c": 1 })).await;
    assert_eq!(
        metadata(&server, &uuid).await,
        json!({ "a": { "b": { "c": 1 } }, "jingles": { "color": "red", "notes": ["e"] } })
    );
    // Below a scalar: refused, nothing changes.
    let below = put_metadata(&server, &uuid, "/jingles/color", &json!({ "x": 1 })).await;
    assert_eq!(below.status, 409, "{}", below.text);

    // Not exactly one key.
    for body in [json!({}), json!({ "a": 1, "b": 2 }), json!([1]), json!("x")] {
        put_metadata(&server, &uuid, "/a", &body)
            .await
            .assert_bad_request();
    }
    let empty_body = send(
        server
            .client
            .put(server.url(&format!("{}/metadata/a", one(&uuid))))
            .header("content-type", "application/json"),
    )
    .await;
    empty_body.assert_bad_request();

    let answer = delete(&server, &format!("{}/metadata/a/b", one(&uuid))).await;
    assert_eq!(answer.status, 204);
    // Absent paths are still 204.
    for path in ["nope", "a/x/y", "jingles/color/z"] {
        let answer = delete(&server, &format!("{}/metadata/{path}", one(&uuid))).await;
        assert_eq!(answer.status, 204, "{path}");
    }
    // Emptied parents stay.
    assert_eq!(
        metadata(&server, &uuid).await,
        json!({ "a": {}, "jingles": { "color": "red", "notes": ["e"] } })
    );
    delete(&server, &format!("{}/metadata", one(&uuid)))
        .await
        .assert_bad_request();

    // A missing package is 404, for both.
    let missing = uuid::Uuid::new_v4().to_string();
    put_metadata(&server, &missing, "/a", &json!({ "b": 1 }))
        .await
        .assert_error(404, "Package not found.");
    delete(&server, &format!("{}/metadata/a", one(&missing)))
        .await
        .assert_error(404, "Package not found.");
}

/// FiFo (cowboy) splits the path into segments before it decodes them, so an escaped `/` is
/// part of a key: `.../metadata/team%2Fops` addresses the key `team/ops`, not `team.ops`.
#[tokio::test]
async fn an_escaped_slash_in_a_metadata_path_is_part_of_a_key() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    put_metadata(&server, &uuid, "/team%2Fops", &json!({ "lead": "ada" })).await;
    put_metadata(&server, &uuid, "/team/ops", &json!({ "lead": "bob" })).await;
    assert_eq!(
        metadata(&server, &uuid).await,
        json!({ "team": { "ops": { "lead": "bob" } }, "team/ops": { "lead": "ada" } })
    );
    let answer = delete(&server, &format!("{}/metadata/team%2Fops/lead", one(&uuid))).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    assert_eq!(
        metadata(&server, &uuid).await,
        json!({ "team": { "ops": { "lead": "bob" } }, "team/ops": {} })
    );
    // Other escapes are decoded as before.
    put_metadata(&server, &uuid, "/caf%C3%A9", &json!({ "open": true })).await;
    assert_eq!(
        metadata(&server, &uuid).await["café"],
        json!({ "open": true })
    );
}

#[tokio::test]
async fn methods_options_cors_and_vary() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let cases = [
        (packages("2"), "HEAD, OPTIONS, GET, POST"),
        (one(&uuid), "HEAD, OPTIONS, GET, PUT, DELETE"),
        (
            format!("{}/metadata/a", one(&uuid)),
            "HEAD, OPTIONS, PUT, DELETE",
        ),
    ];
    for (path, methods) in &cases {
        let answer = send(
            server
                .client
                .request(reqwest::Method::OPTIONS, server.url(path)),
        )
        .await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.headers["access-control-allow-methods"], *methods);
    }
    let wrong = send(server.client.patch(server.url(&packages("2")))).await;
    assert_eq!(wrong.status, 405);
    let allow = wrong.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let wrong = send(
        server
            .client
            .get(server.url(&format!("{}/metadata/a", one(&uuid)))),
    )
    .await;
    assert_eq!(wrong.status, 405);
    for answer in [
        get(&server, &packages("2")).await,
        get(&server, &one(&uuid)).await,
        get(&server, &one("missing")).await,
        wrong,
    ] {
        assert_eq!(answer.headers["access-control-allow-origin"], "*");
        assert_eq!(answer.headers["access-control-allow-credentials"], "true");
        assert!(
            answer.headers["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("x-snarl-token")
        );
        assert_eq!(answer.headers["vary"], "accept");
    }
}

#[tokio::test]
async fn msgpack_in_and_out_json_by_default_415_and_406() {
    let server = TestServer::start().await;
    let body = rmp_serde::to_vec_named(&small()).unwrap();
    let answer = send(
        server
            .client
            .post(server.url(&packages("2")))
            .header("content-type", "application/x-msgpack; charset=binary")
            .body(body),
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    let location = answer.headers["location"].to_str().unwrap().to_string();

    let response = server
        .client
        .get(server.url(&location))
        .header("accept", MSGPACK)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], MSGPACK);
    let bytes = response.bytes().await.unwrap();
    let decoded: Value = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(decoded["name"], "small");
    assert_eq!(decoded["ram"], 1024);

    // A msgpack list, and a msgpack metadata PUT.
    let response = server
        .client
        .get(server.url(&packages("2")))
        .header("accept", "application/json;q=0.1, application/x-msgpack")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], MSGPACK);
    let list: Value = rmp_serde::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let answer = send(
        server
            .client
            .put(server.url(&format!("{location}/metadata")))
            .header("content-type", MSGPACK)
            .body(rmp_serde::to_vec_named(&json!({ "owner": "ops" })).unwrap()),
    )
    .await;
    assert_eq!(answer.status, 204, "{}", answer.text);

    // JSON for no Accept and for */*.
    for accept in [None, Some("*/*")] {
        let mut request = server.client.get(server.url(&location));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let answer = send(request).await;
        answer.assert_json();
        assert_eq!(answer.body["metadata"], json!({ "owner": "ops" }));
    }

    // 415 for other or missing request types; 406 for an unsatisfiable Accept.
    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let mut request = server
            .client
            .post(server.url(&packages("2")))
            .body(r#"{"name":"other"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = send(request).await;
        assert_eq!(answer.status, 415, "{content_type:?}");
        answer.assert_json();
        let mut request = server
            .client
            .put(server.url(&format!("{location}/metadata")))
            .body(r#"{"a":1}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        assert_eq!(send(request).await.status, 415);
    }
    let answer = send(
        server
            .client
            .get(server.url(&location))
            .header("accept", "text/html"),
    )
    .await;
    assert_eq!(answer.status, 406);
    let answer = send(
        server
            .client
            .post(server.url(&packages("2")))
            .header("accept", "text/html")
            .json(&json!({ "name": "other" })),
    )
    .await;
    assert_eq!(answer.status, 406);
    let bad_msgpack = send(
        server
            .client
            .post(server.url(&packages("2")))
            .header("content-type", MSGPACK)
            .body(vec![0xc1]),
    )
    .await;
    bad_msgpack.assert_bad_request();
    assert_eq!(
        get(&server, &packages("2"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A msgpack body is one value, as a JSON body is: bytes after it (garbage, or a second value
/// sent along) make it as undecodable as a malformed one, and nothing is stored.
#[tokio::test]
async fn msgpack_bodies_with_bytes_after_their_value_are_refused_as_malformed_ones_are() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let post = |body: Vec<u8>| {
        server
            .client
            .post(server.url(&packages("2")))
            .header("content-type", MSGPACK)
            .body(body)
    };
    let put = |body: Vec<u8>| {
        server
            .client
            .put(server.url(&format!("{}/metadata", one(&uuid))))
            .header("content-type", MSGPACK)
            .body(body)
    };
    let package = rmp_serde::to_vec_named(&json!({ "name": "other" })).unwrap();
    let entry = rmp_serde::to_vec_named(&json!({ "owner": "ops" })).unwrap();
    let followed_by = |value: &[u8], after: &[u8]| [value, after].concat();

    send(post(vec![0xc1])).await.assert_error(400, UNDECODABLE);
    for after in [&b"\xc1GARBAGE"[..], &[0xc0][..], &entry[..]] {
        send(post(followed_by(&package, after)))
            .await
            .assert_error(400, UNDECODABLE);
        send(put(followed_by(&entry, after)))
            .await
            .assert_error(400, UNDECODABLE);
    }
    let list = get(&server, &packages("2")).await;
    assert_eq!(list.body, json!([uuid]), "no package was created");
    assert_eq!(
        metadata(&server, &uuid).await,
        json!({}),
        "no metadata was set"
    );

    // The same values without the bytes after them are taken.
    assert_eq!(send(post(package)).await.status, 303);
    assert_eq!(send(put(entry)).await.status, 204);
    assert_eq!(metadata(&server, &uuid).await, json!({ "owner": "ops" }));
}

#[tokio::test]
async fn etags_304_412_and_the_required_if_match_policy() {
    let dir = TempDir::new().unwrap();
    let server =
        TestServer::start_in(dir, |config| config.if_match = IfMatchPolicy::Required).await;
    let uuid = created(&server, &small()).await;
    let answer = get(&server, &one(&uuid)).await;
    let etag = answer.headers["etag"].to_str().unwrap().to_string();

    let not_modified = server
        .client
        .get(server.url(&one(&uuid)))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);

    // Without If-Match: 428, for metadata writes and for delete.
    let url = server.url(&format!("{}/metadata/a", one(&uuid)));
    let answer = send(server.client.put(&url).json(&json!({ "b": 1 }))).await;
    assert_eq!(answer.status, 428, "{}", answer.text);
    let answer = send(server.client.delete(&url)).await;
    assert_eq!(answer.status, 428);
    let answer = delete(&server, &one(&uuid)).await;
    assert_eq!(answer.status, 428);

    // A stale If-Match: 412 with the current ETag.
    let answer = send(
        server
            .client
            .put(&url)
            .header("if-match", "\"stale\"")
            .json(&json!({ "b": 1 })),
    )
    .await;
    assert_eq!(answer.status, 412);
    assert_eq!(answer.headers["etag"].to_str().unwrap(), etag);

    // The current one: 204 and the new ETag, which then deletes the package.
    let answer = send(
        server
            .client
            .put(&url)
            .header("if-match", &etag)
            .json(&json!({ "b": 1 })),
    )
    .await;
    assert_eq!(answer.status, 204);
    let new_etag = answer.headers["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    let answer = send(
        server
            .client
            .delete(server.url(&one(&uuid)))
            .header("if-match", &new_etag),
    )
    .await;
    assert_eq!(answer.status, 204);
}

#[tokio::test]
async fn if_none_match_star_makes_a_create_by_id_create_only() {
    let server = TestServer::start().await;
    let fresh = uuid::Uuid::new_v4().to_string();
    let body = json!({ "uuid": fresh, "name": "once" });
    let first = send(
        server
            .client
            .post(server.url(&packages("2")))
            .header("if-none-match", "*")
            .json(&body),
    )
    .await;
    assert_eq!(first.status, 303);
    let second = send(
        server
            .client
            .post(server.url(&packages("2")))
            .header("if-none-match", "*")
            .json(&body),
    )
    .await;
    assert_eq!(second.status, 412);
}

/// One package read as JSON or as msgpack: the status, the `ETag` header (if any) and the body
/// decoded from whichever format it came in (`null` when empty).
struct Read {
    status: u16,
    etag: Option<String>,
    body: Value,
}

async fn read(server: &TestServer, path: &str, accept: &str, if_none_match: Option<&str>) -> Read {
    let mut request = server.client.get(server.url(path)).header("accept", accept);
    if let Some(etag) = if_none_match {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|etag| etag.to_str().unwrap().to_string());
    let msgpack = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t == MSGPACK);
    let bytes = response.bytes().await.unwrap();
    let body = match (bytes.is_empty(), msgpack) {
        (true, _) => Value::Null,
        (false, true) => rmp_serde::from_slice(&bytes).unwrap(),
        (false, false) => serde_json::from_slice(&bytes).unwrap(),
    };
    Read { status, etag, body }
}

/// JSON and msgpack are two representations of a package, so each has its own strong ETag
/// (RFC 9110 §8.8.3), named by its `_etag` too: `If-None-Match` answers 304 only for the
/// representation the client holds. A write changes the package whichever representation the
/// client read, so its `If-Match` takes the ETag of either, of the current version only.
#[tokio::test]
async fn each_representation_of_a_package_has_its_own_strong_etag() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let path = one(&uuid);
    let json = read(&server, &path, "application/json", None).await;
    let msgpack = read(&server, &path, MSGPACK, None).await;
    let (json_etag, msgpack_etag) = (json.etag.unwrap(), msgpack.etag.unwrap());
    assert_ne!(json_etag, msgpack_etag);
    assert!(
        json_etag.starts_with('"') && msgpack_etag.starts_with('"'),
        "both strong"
    );
    assert_eq!(json.body["_etag"], json_etag.trim_matches('"'));
    assert_eq!(msgpack.body["_etag"], msgpack_etag.trim_matches('"'));
    let mut same = msgpack.body.clone();
    same["_etag"] = json.body["_etag"].clone();
    assert_eq!(same, json.body, "the same package otherwise");

    // Revalidation: 304 only for the representation the client holds.
    for (accept, held, served, status) in [
        (MSGPACK, &json_etag, &msgpack_etag, 200),
        ("application/json", &msgpack_etag, &json_etag, 200),
        (MSGPACK, &msgpack_etag, &msgpack_etag, 304),
        ("application/json", &json_etag, &json_etag, 304),
    ] {
        let answer = read(&server, &path, accept, Some(held)).await;
        assert_eq!(answer.status, status, "{accept} with If-None-Match {held}");
        assert_eq!(answer.etag.as_ref(), Some(served), "{accept}");
    }
    let list = read(&server, "/api/2/packages?full-list=true", MSGPACK, None).await;
    assert_eq!(list.body[0]["_etag"], msgpack.body["_etag"]);

    // A write may name the current version by the msgpack ETag; its answer carries the new
    // ETag of the representation it accepts.
    let url = server.url(&format!("{path}/metadata"));
    let put = |condition: &str, etag: &str, value: i32| {
        server
            .client
            .put(&url)
            .header("accept", MSGPACK)
            .header(condition, etag)
            .json(&json!({ "k": value }))
    };
    let written = send(put("if-match", &msgpack_etag, 1)).await;
    assert_eq!(written.status, 204, "{}", written.text);
    let now = read(&server, &path, MSGPACK, None).await;
    assert_eq!(now.body["metadata"], json!({ "k": 1 }));
    let new_msgpack_etag = now.etag.unwrap();
    assert_eq!(written.headers["etag"].to_str().unwrap(), new_msgpack_etag);

    // Nothing else: neither representation's ETag of the old version, a weak one, or a tag
    // that only looks derived from the current one.
    let current = new_msgpack_etag
        .trim_matches('"')
        .trim_end_matches("-msgpack");
    for stale in [
        msgpack_etag.clone(),
        json_etag.clone(),
        format!("W/{new_msgpack_etag}"),
        format!("\"{current}-json\""),
        format!("\"{current}-msgpack-msgpack\""),
    ] {
        let answer = send(put("if-match", &stale, 2)).await;
        assert_eq!(answer.status, 412, "If-Match {stale}: {}", answer.text);
        // The 412 names the current version in the representation this client reads, so
        // it can try again with that tag without another GET.
        assert_eq!(
            answer.headers["etag"].to_str().unwrap(),
            new_msgpack_etag,
            "the 412 for If-Match {stale}"
        );
    }
    let from_json_client = server
        .client
        .put(&url)
        .header("accept", "application/json")
        .header("if-match", &msgpack_etag)
        .json(&json!({ "k": 2 }));
    let answer = send(from_json_client).await;
    assert_eq!(answer.status, 412, "{}", answer.text);
    assert_eq!(
        answer.headers["etag"].to_str().unwrap(),
        format!("\"{current}\""),
        "a JSON client is told the JSON tag"
    );
    let refused = send(put("if-none-match", &new_msgpack_etag, 3)).await;
    assert_eq!(
        refused.status, 412,
        "If-None-Match names the current version too"
    );
    assert_eq!(metadata(&server, &uuid).await, json!({ "k": 1 }));

    let deleted = server
        .client
        .delete(server.url(&path))
        .header("if-match", &new_msgpack_etag);
    assert_eq!(send(deleted).await.status, 204);
    assert_eq!(get(&server, &path).await.status, 404);
}

/// A package's representation shows `_created` and `_updated`, so its strong ETag must change
/// with them (RFC 9110 §8.8.1): a package deleted and created again under its id with the
/// same content, or whose metadata is changed and changed back, is not the one a client read.
/// The old ETag gets no 304, and an `If-Match` with it is refused rather than deleting or
/// editing the newer package.
#[tokio::test]
async fn an_etag_is_never_that_of_a_representation_with_other_times() {
    // A deleted package's uuid creates again only once its tombstone is forgotten.
    let server = forgetting_after(0).await;
    let fresh = uuid::Uuid::new_v4().to_string();
    let body = json!({ "uuid": fresh, "name": "again" });
    let etag_of = |answer: &Answer| answer.headers["etag"].to_str().unwrap().to_string();
    let not_modified = |etag: String| {
        let request = server
            .client
            .get(server.url(&one(&fresh)))
            .header("if-none-match", etag);
        async move { send(request).await.status }
    };
    let gap = || tokio::time::sleep(Duration::from_millis(5));

    assert_eq!(create(&server, &body).await.status, 303);
    let first = get(&server, &one(&fresh)).await;
    let first_etag = etag_of(&first);
    gap().await;
    assert_eq!(delete(&server, &one(&fresh)).await.status, 204);
    create_once_forgotten(&server, &body).await;
    let second = get(&server, &one(&fresh)).await;
    assert_ne!(second.body["_created"], first.body["_created"]);
    assert_ne!(etag_of(&second), first_etag, "{:?}", second.body);
    assert_eq!(second.body["_etag"], etag_of(&second).trim_matches('"'));
    assert_eq!(not_modified(first_etag.clone()).await, 200);
    let stale = server
        .client
        .delete(server.url(&one(&fresh)))
        .header("if-match", &first_etag);
    assert_eq!(send(stale).await.status, 412);

    // Changed and changed back: the content is the same again, `_updated` is not.
    let mut etags = Vec::new();
    for value in [1, 2, 1] {
        gap().await;
        let answer = put_metadata(&server, &fresh, "", &json!({ "k": value })).await;
        assert_eq!(answer.status, 204, "{}", answer.text);
        etags.push(etag_of(&answer));
    }
    assert_ne!(etags[2], etags[0]);
    assert_eq!(not_modified(etags[0].clone()).await, 200);
    assert_eq!(not_modified(etags[2].clone()).await, 304);
    // A write that changes nothing keeps the ETag.
    let again = put_metadata(&server, &fresh, "", &json!({ "k": 1 })).await;
    assert_eq!(etag_of(&again), etags[2]);
}

#[tokio::test]
async fn packages_survive_a_restart() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    put_metadata(&server, &uuid, "/a", &json!({ "b": [1, 2] })).await;
    let gone = created(&server, &json!({ "name": "gone" })).await;
    assert_eq!(delete(&server, &one(&gone)).await.status, 204);
    let before = get(&server, &one(&uuid)).await;
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, |_| {}).await;
    let after = get(&server, &one(&uuid)).await;
    assert_eq!(after.body, before.body);
    assert_eq!(after.headers["etag"], before.headers["etag"]);
    assert_eq!(get(&server, &one(&gone)).await.status, 404);
    create(&server, &small())
        .await
        .assert_error(409, "A package with this name already exists.");
    assert_eq!(created(&server, &json!({ "name": "gone" })).await.len(), 36);
}

/// `levels` arrays, one inside the other.
fn nested_arrays(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!([inner]))
}

#[tokio::test]
async fn metadata_and_requirements_nest_at_most_120_levels_and_what_is_kept_loads_again() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let too_deep = "Metadata and requirements nest at most 120 levels of arrays and objects (a metadata path's segments count as levels).";

    // The path's segments and the value's nesting count together: 118 + 1 (the key) + 1.
    let path: String = (0..118).map(|i| format!("/p{i}")).collect();
    let answer = put_metadata(&server, &uuid, &path, &json!({ "k": [1] })).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let before = get(&server, &one(&uuid)).await;
    put_metadata(&server, &uuid, &path, &json!({ "k": [[1]] }))
        .await
        .assert_error(400, too_deep);
    put_metadata(&server, &uuid, "/a", &json!({ "k": nested_arrays(120) }))
        .await
        .assert_error(400, too_deep);
    // Ten thousand segments used to overflow the writer thread's stack.
    let endless: String = (0..10_000).map(|_| "/a").collect();
    put_metadata(&server, &uuid, &endless, &json!({ "k": 1 }))
        .await
        .assert_error(400, too_deep);
    assert_eq!(get(&server, &one(&uuid)).await.body, before.body);

    // A requirement's `value` may be any JSON; the rule around it is one level.
    let rule = |value: Value| json!({ "condition": "=:=", "attribute": "a", "value": value });
    for body in [
        json!({ "name": "deep-requirement", "requirements": [rule(nested_arrays(120))] }),
        json!({ "name": "deep-metadata", "metadata": { "k": nested_arrays(120) } }),
    ] {
        create(&server, &body).await.assert_error(400, too_deep);
    }
    let kept = created(
        &server,
        &json!({ "name": "deepest", "requirements": [rule(nested_arrays(119))], "metadata": { "k": nested_arrays(119) } }),
    )
    .await;

    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(get(&server, &one(&uuid)).await.body, before.body);
    assert_eq!(
        get(&server, &one(&kept)).await.body["requirements"],
        json!([{ "weight": "must", "condition": "=:=", "attribute": "a", "value": nested_arrays(119) }])
    );
}

#[tokio::test]
async fn a_list_read_with_its_etag_and_prefer_wait_is_held_until_a_change() {
    let server = TestServer::start().await;
    let list = get(&server, &format!("{}?full-list=true", packages("2"))).await;
    let etag = list.headers["etag"].clone();
    let started = std::time::Instant::now();
    let held = server
        .client
        .get(server.url(&format!("{}?full-list=true", packages("2"))))
        .header("if-none-match", etag.clone())
        .header("prefer", "wait=10")
        .send();
    let change = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        created(&server, &small()).await
    };
    let (held, uuid) = tokio::join!(held, change);
    let held = held.unwrap();
    assert_eq!(held.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_ne!(held.headers()["etag"], etag);
    let body: Value = held.json().await.unwrap();
    assert_eq!(body[0]["uuid"], uuid.as_str());
}

#[tokio::test]
async fn head_answers_without_a_body_and_deep_or_odd_bodies_never_fail_the_server() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let head = server
        .client
        .head(server.url(&one(&uuid)))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("etag"));
    assert!(head.bytes().await.unwrap().is_empty());

    // Deeply nested metadata: stored or refused, never a 5xx.
    let mut deep = json!("leaf");
    for _ in 0..100 {
        deep = json!({ "k": deep });
    }
    let answer = put_metadata(&server, &uuid, "/deep", &json!({ "v": deep })).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let nested = "[".repeat(100_000) + &"]".repeat(100_000);
    let answer = send(
        server
            .client
            .put(server.url(&format!("{}/metadata", one(&uuid))))
            .header("content-type", "application/json")
            .body(nested),
    )
    .await;
    answer.assert_bad_request();
    let mut msgpack = vec![0x91u8; 100_000];
    msgpack.push(0xc0);
    let answer = send(
        server
            .client
            .put(server.url(&format!("{}/metadata", one(&uuid))))
            .header("content-type", MSGPACK)
            .body(msgpack),
    )
    .await;
    answer.assert_bad_request();
    // Binary and non-string keys in msgpack are not JSON: 400.
    let answer = send(
        server
            .client
            .put(server.url(&format!("{}/metadata", one(&uuid))))
            .header("content-type", MSGPACK)
            .body(vec![0x81, 0x01, 0x02]),
    )
    .await;
    answer.assert_bad_request();
    assert_eq!(get(&server, &one(&uuid)).await.status, 200);
}

/// A.9 item 18: while the database cannot be written (here another program holds its write
/// lock), writes answer 503 with a description and change nothing, reads go on, and writing
/// works again once the lock is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_cannot_write_answers_503_and_keeps_nothing_of_the_refused_writes() {
    let server = TestServer::start().await;
    let uuid = created(&server, &small()).await;
    let database = server.data_dir().join(floe::store::DATABASE_FILE);

    let holder = rusqlite::Connection::open(&database).expect("open floe's database");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let refused = create(&server, &json!({ "name": "medium", "ram": 2048 })).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(
        refused.body["description"]
            .as_str()
            .is_some_and(|text| text.contains("unavailable")),
        "{}",
        refused.text
    );
    let refused = put_metadata(&server, &uuid, "", &json!({ "color": "red" })).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    // Reads are answered from memory, and show nothing of the refused writes.
    let list = get(&server, "/api/2/packages").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body, json!([uuid]));
    assert_eq!(metadata(&server, &uuid).await, json!({}));
    holder.execute_batch("ROLLBACK").expect("release the lock");
    drop(holder);

    // The same writes now succeed, and a restart shows exactly them.
    let medium = created(&server, &json!({ "name": "medium", "ram": 2048 })).await;
    let answer = put_metadata(&server, &uuid, "", &json!({ "color": "red" })).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let mut expected = vec![uuid.clone(), medium];
    expected.sort();
    assert_eq!(get(&server, "/api/2/packages").await.body, json!(expected));
    assert_eq!(metadata(&server, &uuid).await, json!({ "color": "red" }));
    server.stop().await;
}

/// An integer past 64 bits would be read as the nearest float and stored as another number
/// than the client sent (FiFo's Erlang keeps it exactly): it is refused, in a create and in
/// metadata, and nothing is stored; the largest 64-bit integers are kept exactly.
#[tokio::test]
async fn integers_past_64_bits_are_refused_rather_than_rounded() {
    let server = TestServer::start().await;
    let raw_create = |body: &'static str| {
        server
            .client
            .post(server.url(&packages("2")))
            .header("content-type", "application/json")
            .body(body)
    };
    let refused = send(raw_create(
        r#"{"name": "big", "ram": 1024, "quota": 40, "cpu_cap": 100, "requirements": [{"weight": 99999999999999999999999, "attribute": "a", "condition": "=:=", "value": "b"}]}"#,
    ))
    .await;
    refused.assert_error(
        400,
        "The integer 99999999999999999999999 is out of range: integers must fit in 64 bits.",
    );
    let list = get(&server, &packages("2")).await;
    assert_eq!(list.body, json!([]), "nothing was created");

    let uuid = created(&server, &small()).await;
    let url = server.url(&format!("{}/metadata", one(&uuid)));
    let put = |body: &'static str| {
        server
            .client
            .put(&url)
            .header("content-type", "application/json")
            .body(body)
    };
    let refused = send(put(r#"{"n": -123456789012345678901234567890}"#)).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(metadata(&server, &uuid).await, json!({}));
    let kept = send(put(
        r#"{"n": [18446744073709551615, -9223372036854775808, 1e30]}"#,
    ))
    .await;
    assert_eq!(kept.status, 204, "{}", kept.text);
    let read = get(&server, &one(&uuid)).await;
    assert!(
        read.text
            .contains("[18446744073709551615,-9223372036854775808,1e+30]"),
        "{}",
        read.text
    );
}
