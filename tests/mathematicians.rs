//! The mathematicians API (historical modeling, idempotent REST) over HTTP against an
//! in-process floe: the acceptance scenario and every checklist item of
//! fifo_and_mathematicians.md B.6, the 400s, concurrency (first POST race,
//! 16 concurrent candidates and their merge), persistence across a restart, and the
//! ETag / 304 / 412 / Idempotency-Key bits.
mod common;

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::TestServer;
use common::http::{Answer, SCHEMA, TAG, UNDECODABLE, send};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const MATHEMATICIANS: &str = "/api/mathematicians";
const NOT_FOUND: &str = "Mathematician not found.";
const ETAGS_DONT_MATCH: &str = "Client and server etags don't match";
const KEY_REUSED: &str = "This Idempotency-Key was already used for a different request.";

/// The version ids of B.3.
const EULER: &str = "nnqhwfVkOmSjZ2u5ssH9wU4r1b516s0IsegWOKmug8o=";
const LEONARD: &str = "u+eSWBxzqKy0SMrRoSHbL/wbqFbloHFpDq5Qm1jzwwM=";
const LEONHARD: &str = "lVSGRERNFRpYA/IOOnaqZyHDDGxlEMUnZLjf3tsGD5U=";
const MERGED: &str = "qpS965Ft8qQVFkqKjQToMjNQzDDMbLOJwe+KzGMRkDs=";
const MERGED_OTHER_ORDER: &str = "sQrxxDUcwURQqtOLvN1XfsA+gi1ZS8Q/5PPahnlJkB8=";
const LEONARD_ROOT: &str = "4cCcrDB+UMc50wenX7Y8tcX8Ir8FbOdS0m/IZlVXKLI=";
const NULL_ROOT: &str = "QH/rSkuDA7r0+E4pogng3P1i6B+IyO23Z1xaldkOXJA=";

// ---------------------------------------------------------------------------------------------
// An independent implementation of the version hash (B.3), for expected ids.
// ---------------------------------------------------------------------------------------------

/// `BigInteger.ToByteArray()`: minimal little-endian two's complement.
fn minimal(value: &[u8; 32]) -> &[u8] {
    let mut length = 32;
    while length > 1 {
        let (high, next) = (value[length - 1], value[length - 2]);
        if (high == 0x00 && next < 0x80) || (high == 0xff && next >= 0x80) {
            length -= 1;
        } else {
            break;
        }
    }
    &value[..length]
}

/// `new BigInteger(bytes)` sign-extended to 32 little-endian bytes.
fn from_id(id: &str) -> [u8; 32] {
    let bytes = BASE64.decode(id).expect("base64");
    assert!(bytes.len() <= 32, "{id} is longer than 32 bytes");
    let fill = if bytes.last().unwrap() & 0x80 != 0 {
        0xff
    } else {
        0x00
    };
    let mut value = [fill; 32];
    value[..bytes.len()].copy_from_slice(&bytes);
    value
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn h(text: Option<&str>) -> [u8; 32] {
    text.map_or([0; 32], |text| sha(text.as_bytes()))
}

/// `Concat(start, rest…)`: the rest's minimal bytes first, the start's last.
fn concat(start: [u8; 32], rest: &[[u8; 32]]) -> [u8; 32] {
    let mut data = Vec::new();
    for value in rest {
        data.extend_from_slice(minimal(value));
    }
    data.extend_from_slice(minimal(&start));
    sha(&data)
}

/// The wire id of a version with these names and priors (priors in creation order).
fn version_id_of(first: Option<&str>, last: Option<&str>, priors: &[&str]) -> String {
    let names = concat(h(first), &[h(last)]);
    let priors: Vec<[u8; 32]> = priors.iter().map(|id| from_id(id)).collect();
    BASE64.encode(minimal(&concat(names, &priors)))
}

fn version_id(first: &str, last: &str, priors: &[&str]) -> String {
    version_id_of(Some(first), Some(last), priors)
}

/// A key that orders ids as signed little-endian integers (.NET `BigInteger`) order.
fn signed_key(id: &str) -> [u8; 32] {
    let mut big_endian = from_id(id);
    big_endian.reverse();
    big_endian[0] ^= 0x80;
    big_endian
}

#[test]
fn the_test_helper_reproduces_the_b3_vectors() {
    assert_eq!(version_id("Leonhardt", "Euler", &[]), EULER);
    assert_eq!(version_id("Leonard", "Euler", &[EULER]), LEONARD);
    assert_eq!(version_id("Leonhard", "Euler", &[EULER]), LEONHARD);
    assert_eq!(
        version_id("Leonhard", "Euler", &[LEONARD, LEONHARD]),
        MERGED
    );
    assert_eq!(
        version_id("Leonhard", "Euler", &[LEONHARD, LEONARD]),
        MERGED_OTHER_ORDER
    );
    assert_eq!(version_id("Leonard", "Euler", &[]), LEONARD_ROOT);
    assert_eq!(version_id_of(None, None, &[]), NULL_ROOT);
    assert!(signed_key(LEONHARD) < signed_key(LEONARD));
    assert!(signed_key("/w==") < signed_key("AA=="), "-1 < 0");
    assert!(signed_key("AA==") < signed_key("AQ=="), "0 < 1");
    assert!(signed_key("gP8=") < signed_key("/w=="), "-128 < -1");
}

// ---------------------------------------------------------------------------------------------
// Requests and assertions
// ---------------------------------------------------------------------------------------------

fn path(unique: &str) -> String {
    format!("{MATHEMATICIANS}/{unique}")
}

/// A POST/PUT body, shaped like the representation.
fn body(unique: &str, ids: &[&str], first: &str, last: &str) -> Value {
    json!({
        "unique": unique,
        "name": { "ids": ids, "firstName": first, "lastName": last },
    })
}

async fn get(server: &TestServer, unique: &str) -> Answer {
    send(server.client.get(server.url(&path(unique)))).await
}

async fn list(server: &TestServer) -> Answer {
    send(server.client.get(server.url(MATHEMATICIANS))).await
}

async fn post(server: &TestServer, body: &Value) -> Answer {
    send(server.client.post(server.url(MATHEMATICIANS)).json(body)).await
}

async fn put(server: &TestServer, unique: &str, body: &Value) -> Answer {
    send(server.client.put(server.url(&path(unique))).json(body)).await
}

async fn new_unique(server: &TestServer) -> String {
    let answer = send(server.client.get(server.url(&path("new")))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["unique"].as_str().unwrap().to_string()
}

/// Mints a unique and POSTs it with `first last` and no ids.
async fn create(server: &TestServer, first: &str, last: &str) -> (String, Answer) {
    let unique = new_unique(server).await;
    let answer = post(server, &body(&unique, &[], first, last)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    (unique, answer)
}

fn header(answer: &Answer, name: &str) -> Option<String> {
    answer
        .headers
        .get(name)
        .map(|value| value.to_str().unwrap().to_string())
}

fn ids_of(answer: &Answer) -> Vec<String> {
    answer.body["name"]["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids: {}", answer.text))
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

fn is_rfc3339(text: &str) -> bool {
    humantime::parse_rfc3339(text).is_ok()
}

/// Asserts a stored mathematician's representation: keys in order, the name, the absolute
/// self link from `host`, `_etag` equal to the `ETag` header, RFC 3339 times, and the headers.
fn assert_stored(answer: &Answer, host: &str, unique: &str, ids: &[&str], first: &str, last: &str) {
    let body = &answer.body;
    let keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {}", answer.text))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["unique", "name", "_links", "_etag", "_created", "_updated"],
        "{}",
        answer.text
    );
    assert_eq!(body["unique"], unique);
    let name_keys: Vec<&str> = body["name"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(name_keys, ["ids", "firstName", "lastName"]);
    assert_eq!(
        body["name"],
        json!({ "ids": ids, "firstName": first, "lastName": last }),
        "{}",
        answer.text
    );
    assert_eq!(
        body["_links"],
        json!({ "self": { "href": format!("http://{host}/api/mathematicians/{unique}") } })
    );
    assert!(is_rfc3339(body["_created"].as_str().unwrap()));
    assert!(is_rfc3339(body["_updated"].as_str().unwrap()));
    assert!(body["_created"].as_str() <= body["_updated"].as_str());
    let etag = header(answer, "etag").expect("an ETag header");
    assert_eq!(etag, format!("\"{}\"", body["_etag"].as_str().unwrap()));
    assert!(header(answer, "last-modified").is_some(), "Last-Modified");
    assert!(header(answer, TAG).is_some(), "{TAG}");
    answer.assert_json();
}

fn host(server: &TestServer) -> String {
    server.addr.to_string()
}

// ---------------------------------------------------------------------------------------------
// B.6 item 11: the acceptance scenario
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn acceptance_scenario() {
    let server = TestServer::start().await;
    let host = host(&server);

    // new
    let minted = send(server.client.get(server.url(&path("new")))).await;
    assert_eq!(minted.status, 200);
    let unique = minted.body["unique"].as_str().unwrap().to_string();

    // POST (Leonhardt Euler) → nnqh…
    let created = post(&server, &body(&unique, &[], "Leonhardt", "Euler")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_stored(&created, &host, &unique, &[EULER], "Leonhardt", "Euler");
    assert_eq!(
        header(&created, "location").unwrap(),
        format!("http://{host}/api/mathematicians/{unique}")
    );

    // POST replay: the same 201 body
    let replay = post(&server, &body(&unique, &[], "Leonhardt", "Euler")).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.text, created.text);
    assert_eq!(header(&replay, "location"), header(&created, "location"));
    assert_eq!(header(&replay, "etag"), header(&created, "etag"));
    assert_eq!(replay.tag(), created.tag());

    // PUT [nnqh…] Leonard → u+eS…
    let leonard = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonard", "Euler"),
    )
    .await;
    assert_eq!(leonard.status, 200, "{}", leonard.text);
    assert_stored(&leonard, &host, &unique, &[LEONARD], "Leonard", "Euler");
    assert_eq!(leonard.body["_created"], created.body["_created"]);
    assert_ne!(leonard.body["_etag"], created.body["_etag"]);
    assert!(header(&leonard, "location").is_none(), "no Location on PUT");

    // PUT [nnqh…] Leonhard (stale) → two candidates, the smaller signed one shown
    let stale = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(stale.status, 200, "{}", stale.text);
    assert_stored(
        &stale,
        &host,
        &unique,
        &[LEONARD, LEONHARD],
        "Leonhard",
        "Euler",
    );
    let read = get(&server, &unique).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, stale.body);

    // PUT [u+eS…, lVSG…] Leonhard → qpS9…
    let merged = put(
        &server,
        &unique,
        &body(&unique, &[LEONARD, LEONHARD], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(merged.status, 200, "{}", merged.text);
    assert_stored(&merged, &host, &unique, &[MERGED], "Leonhard", "Euler");

    // Repeat that PUT: no change at all.
    let again = put(
        &server,
        &unique,
        &body(&unique, &[LEONARD, LEONHARD], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.text, merged.text);
    assert_eq!(header(&again, "etag"), header(&merged, "etag"));
    assert_eq!(again.tag(), merged.tag());

    // The priors listed in reverse order are the same merge (creation order wins): no change.
    let reversed = put(
        &server,
        &unique,
        &body(&unique, &[LEONHARD, LEONARD], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(reversed.status, 200);
    assert_eq!(reversed.text, merged.text);
    assert_eq!(reversed.tag(), merged.tag());

    // Replaying the stale edits changes nothing either (their versions exist).
    for (ids, first) in [(&[EULER], "Leonard"), (&[EULER], "Leonhard")] {
        let replayed = put(&server, &unique, &body(&unique, ids, first, "Euler")).await;
        assert_eq!(replayed.status, 200);
        assert_eq!(replayed.text, merged.text, "replay of {first}");
    }
    let final_read = get(&server, &unique).await;
    assert_eq!(final_read.body, merged.body);
    server.stop().await;
}

#[tokio::test]
async fn merge_with_priors_in_reverse_order_gives_the_creation_order_id() {
    let server = TestServer::start().await;
    let (unique, _) = create(&server, "Leonhardt", "Euler").await;
    put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonard", "Euler"),
    )
    .await;
    let conflict = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(ids_of(&conflict), [LEONARD, LEONHARD]);
    let merged = put(
        &server,
        &unique,
        &body(&unique, &[LEONHARD, LEONARD], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(merged.status, 200, "{}", merged.text);
    assert_stored(
        &merged,
        &host(&server),
        &unique,
        &[MERGED],
        "Leonhard",
        "Euler",
    );
    assert_ne!(ids_of(&merged), [MERGED_OTHER_ORDER]);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// B.6 item 1: GET /new
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn new_mints_a_fresh_unique_and_stores_nothing() {
    let server = TestServer::start().await;
    let (existing, _) = create(&server, "Carl", "Gauss").await;
    let before = list(&server).await;
    assert_eq!(before.status, 200);

    let first = send(server.client.get(server.url(&path("new")))).await;
    assert_eq!(first.status, 200, "{}", first.text);
    first.assert_json();
    assert_eq!(header(&first, "cache-control").as_deref(), Some("no-store"));
    let unique = first.body["unique"].as_str().unwrap().to_string();
    let parsed = Uuid::parse_str(&unique).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(
        unique,
        parsed.hyphenated().to_string(),
        "lowercase hyphenated"
    );
    assert_eq!(
        first.body,
        json!({
            "unique": unique,
            "name": { "ids": [], "firstName": null, "lastName": null },
            "_links": { "self": { "href": format!("http://{}/api/mathematicians/{unique}", host(&server)) } },
        })
    );
    let keys: Vec<&String> = first.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["unique", "name", "_links"]);

    // Stores nothing.
    get(&server, &unique)
        .await
        .assert_error(404, "Mathematician not found.");
    let after = list(&server).await;
    assert_eq!(after.body, before.body);
    assert_eq!(after.tag(), before.tag());

    // Every call mints another one.
    let second = send(server.client.get(server.url(&path("new")))).await;
    assert_ne!(second.body["unique"], first.body["unique"]);
    assert_ne!(second.body["unique"].as_str(), Some(existing.as_str()));

    // The href follows the Host the client used.
    let hosted = send(
        server
            .client
            .get(server.url(&path("new")))
            .header("host", "maths.example:8080"),
    )
    .await;
    let unique = hosted.body["unique"].as_str().unwrap();
    assert_eq!(
        hosted.body["_links"]["self"]["href"],
        format!("http://maths.example:8080/api/mathematicians/{unique}")
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// B.6 item 2: GET list and GET one
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_is_ordered_by_unique_and_get_finds_or_404s() {
    let server = TestServer::start().await;
    let empty = list(&server).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body, json!([]));
    assert!(header(&empty, TAG).is_some());

    let uniques = [
        "ffffffff-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "80000000-0000-4000-8000-000000000003",
    ];
    let mut bodies = Vec::new();
    for (unique, first) in uniques.iter().zip(["Emmy", "Sofia", "Ada"]) {
        let answer = post(&server, &body(unique, &[], first, "X")).await;
        assert_eq!(answer.status, 201);
        bodies.push((unique.to_string(), answer.body));
    }
    bodies.sort_by(|a, b| a.0.cmp(&b.0));
    let all = list(&server).await;
    assert_eq!(all.status, 200);
    all.assert_json();
    let expected: Vec<Value> = bodies.iter().map(|(_, body)| body.clone()).collect();
    assert_eq!(all.body, Value::Array(expected));

    let one = get(&server, uniques[1]).await;
    assert_stored(
        &one,
        &host(&server),
        uniques[1],
        &[&version_id("Sofia", "X", &[])],
        "Sofia",
        "X",
    );

    // Unknown and unparseable uniques are 404s with the same description.
    for missing in [
        "00000000-0000-4000-8000-0000000000ff",
        "not-a-guid",
        "12345",
        "00000000-0000-4000-8000-00000000000g",
    ] {
        get(&server, missing).await.assert_error(404, NOT_FOUND);
    }
    server.stop().await;
}

#[tokio::test]
async fn any_dotnet_guid_spelling_is_accepted_and_answered_lowercase() {
    let server = TestServer::start().await;
    let unique = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let upper = unique.to_uppercase();
    let digits = unique.replace('-', "");
    let braced = format!("{{{upper}}}");
    let parens = format!("({unique})");

    // Created with the upper-case spelling, answered lower-case.
    let created = post(&server, &body(&upper, &[], "Leonhardt", "Euler")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_stored(
        &created,
        &host(&server),
        unique,
        &[EULER],
        "Leonhardt",
        "Euler",
    );

    // Any spelling in the body is the same mathematician: a replay.
    for spelling in [&digits, &braced, &parens, &unique.to_string()] {
        let replay = post(&server, &body(spelling, &[], "Other", "Name")).await;
        assert_eq!(replay.status, 201, "{spelling}: {}", replay.text);
        assert_eq!(replay.text, created.text, "{spelling}");
    }
    // Any spelling in the URL.
    for spelling in [&upper, &digits, &braced, &parens] {
        let read = get(&server, spelling).await;
        assert_eq!(read.status, 200, "{spelling}: {}", read.text);
        assert_eq!(read.body, created.body, "{spelling}");
    }
    // PUT with different spellings in URL and body of the same GUID.
    let renamed = put(
        &server,
        &braced,
        &body(&parens, &[EULER], "Leonard", "Euler"),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_stored(
        &renamed,
        &host(&server),
        unique,
        &[LEONARD],
        "Leonard",
        "Euler",
    );
    assert_eq!(list(&server).await.body[0]["name"]["ids"], json!([LEONARD]));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// B.6 item 3: POST
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_creates_once_and_replays_change_nothing() {
    let server = TestServer::start().await;
    let unique = new_unique(&server).await;
    let mut representation = body(&unique, &[], "Leonhardt", "Euler");
    // Other keys of the representation (as a client would send back what it got) are ignored.
    representation["_links"] = json!({ "self": { "href": "http://elsewhere/x" } });
    representation["_etag"] = json!("whatever");
    let created = post(&server, &representation).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_stored(
        &created,
        &host(&server),
        &unique,
        &[EULER],
        "Leonhardt",
        "Euler",
    );
    assert_eq!(created.body["_created"], created.body["_updated"]);
    assert_eq!(
        header(&created, "location").unwrap(),
        created.body["_links"]["self"]["href"].as_str().unwrap()
    );

    // A replay with a different name: still 201, nothing changes, identical answer.
    let other = post(&server, &body(&unique, &[], "Leonard", "Euler")).await;
    assert_eq!(other.status, 201);
    assert_eq!(other.text, created.text);
    assert_eq!(other.tag(), created.tag());
    assert_eq!(header(&other, "location"), header(&created, "location"));

    // After a PUT, a replay answers the current representation.
    let renamed = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonard", "Euler"),
    )
    .await;
    assert_eq!(renamed.status, 200);
    let after = post(&server, &body(&unique, &[], "Leonhardt", "Euler")).await;
    assert_eq!(after.status, 201);
    assert_eq!(after.text, renamed.text);
    assert_eq!(after.tag(), renamed.tag());
    assert_eq!(list(&server).await.body.as_array().unwrap().len(), 1);

    // ids on a POST are priors of the first version; unknown to a new mathematician, they are
    // ignored (a root version).
    let fresh = new_unique(&server).await;
    let with_ids = post(
        &server,
        &body(&fresh, &[EULER, "AAAA"], "Leonhardt", "Euler"),
    )
    .await;
    assert_eq!(with_ids.status, 201);
    assert_eq!(ids_of(&with_ids), [EULER]);
    server.stop().await;
}

#[tokio::test]
async fn post_with_a_unique_that_is_no_guid_is_a_400() {
    let server = TestServer::start().await;
    for text in [
        "nope",
        "",
        "new",
        "3f2504e0-4f89-41d3-9a0c-0305e82c330",
        "{3f2504e0-4f89-41d3-9a0c-0305e82c3301",
    ] {
        let answer = post(&server, &body(text, &[], "A", "B")).await;
        answer.assert_error(400, &format!("\"unique\" must be a GUID, not {text:?}."));
    }
    assert_eq!(list(&server).await.body, json!([]));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// B.6 item 4: PUT
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn put_names_the_url_mathematician_404s_unknown_and_400s_a_mismatch() {
    let server = TestServer::start().await;
    let (unique, created) = create(&server, "Leonhardt", "Euler").await;
    let (other, other_created) = create(&server, "Carl", "Gauss").await;

    // Unknown (well-formed or not) → 404, nothing is created (no upsert).
    let unknown = "00000000-0000-4000-8000-0000000000aa";
    put(&server, unknown, &body(unknown, &[], "A", "B"))
        .await
        .assert_error(404, NOT_FOUND);
    put(&server, "garbage", &body(unknown, &[], "A", "B"))
        .await
        .assert_error(404, NOT_FOUND);
    get(&server, unknown).await.assert_error(404, NOT_FOUND);

    // The body's unique must be the URL's.
    let mismatch = put(&server, &unique, &body(&other, &[], "A", "B")).await;
    mismatch.assert_bad_request();
    let description = mismatch.body["description"].as_str().unwrap();
    assert!(description.contains(&unique), "{description}");
    assert!(description.contains(&other), "{description}");
    assert_eq!(get(&server, &unique).await.body, created.body);
    assert_eq!(get(&server, &other).await.body, other_created.body);

    // A body unique that is no GUID.
    put(&server, &unique, &body("nope", &[EULER], "A", "B"))
        .await
        .assert_error(400, "\"unique\" must be a GUID, not \"nope\".");

    // The normal edit: 200 + current representation.
    let renamed = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonard", "Euler"),
    )
    .await;
    assert_eq!(renamed.status, 200);
    assert_stored(
        &renamed,
        &host(&server),
        &unique,
        &[LEONARD],
        "Leonard",
        "Euler",
    );
    assert_eq!(get(&server, &unique).await.body, renamed.body);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// B.6 item 5: the version hash over HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn version_ids_are_the_b3_hashes_and_incoming_ids_compare_by_value() {
    let server = TestServer::start().await;
    // Same name, no history: 4cCc…
    let (leonard_root, answer) = create(&server, "Leonard", "Euler").await;
    assert_eq!(ids_of(&answer), [LEONARD_ROOT]);
    // Empty names are names (not null).
    let (_, empty) = create(&server, "", "").await;
    assert_eq!(ids_of(&empty), [version_id("", "", &[])]);
    assert_ne!(ids_of(&empty), [NULL_ROOT]);
    assert_eq!(empty.body["name"]["firstName"], "");
    // Non-ASCII names hash their UTF-8.
    let (_, accented) = create(&server, "Émilie", "du Châtelet").await;
    assert_eq!(
        ids_of(&accented),
        [version_id("Émilie", "du Châtelet", &[])]
    );

    // An id with redundant sign extension is the same value as the minimal one.
    let mut padded = BASE64.decode(LEONARD_ROOT).unwrap();
    let fill = if padded.last().unwrap() & 0x80 != 0 {
        0xff
    } else {
        0x00
    };
    padded.extend([fill; 4]);
    let padded = BASE64.encode(padded);
    assert_ne!(padded, LEONARD_ROOT);
    let edited = put(
        &server,
        &leonard_root,
        &body(&leonard_root, &[&padded], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(
        ids_of(&edited),
        [version_id("Leonhard", "Euler", &[LEONARD_ROOT])],
        "the padded id named the version (a normal edit, not a new root)"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// B.6 items 6–9: SetName, current versions, the shown name, candidates and merges
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unchanged_name_from_the_single_prior_is_a_no_op() {
    let server = TestServer::start().await;
    let (unique, created) = create(&server, "Leonhardt", "Euler").await;
    let same = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonhardt", "Euler"),
    )
    .await;
    assert_eq!(same.status, 200);
    assert_eq!(same.text, created.text);
    assert_eq!(header(&same, "etag"), header(&created, "etag"));
    assert_eq!(same.tag(), created.tag());
    assert_eq!(same.body["_updated"], created.body["_updated"]);

    // `ids: []` with the creation name while that version is current: the same root, no-op.
    let root = put(&server, &unique, &body(&unique, &[], "Leonhardt", "Euler")).await;
    assert_eq!(root.text, created.text);
    assert_eq!(root.tag(), created.tag());
    server.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_ignored() {
    let server = TestServer::start().await;
    let (unique, created) = create(&server, "Leonhardt", "Euler").await;
    // An unknown id next to the current one: a normal edit.
    let other = version_id("Someone", "Else", &[]);
    let edit = put(
        &server,
        &unique,
        &body(&unique, &["AAAA", &other, EULER], "Leonard", "Euler"),
    )
    .await;
    assert_eq!(edit.status, 200, "{}", edit.text);
    assert_eq!(ids_of(&edit), [LEONARD]);
    // Only unknown ids (including one too long to be any version): same as `ids: []`.
    let too_long = BASE64.encode([0x01u8; 40]);
    let root = put(
        &server,
        &unique,
        &body(&unique, &[&other, &too_long], "Leonhardt", "Euler"),
    )
    .await;
    assert_eq!(root.status, 200, "{}", root.text);
    // The root Leonhardt Euler exists already (the first version): no-op.
    assert_eq!(ids_of(&root), [LEONARD]);
    assert_eq!(root.tag(), edit.tag());
    let new_root = put(
        &server,
        &unique,
        &body(&unique, &[&other], "Leonard", "Euler"),
    )
    .await;
    assert_eq!(ids_of(&new_root), [LEONARD, LEONARD_ROOT]);
    assert_ne!(new_root.body["_etag"], created.body["_etag"]);
    server.stop().await;
}

#[tokio::test]
async fn missing_ids_add_a_root_candidate_stale_ids_a_branch_and_all_ids_merge() {
    let server = TestServer::start().await;
    let host = host(&server);
    let (unique, _) = create(&server, "Leonhardt", "Euler").await;
    let leonard = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonard", "Euler"),
    )
    .await;
    assert_eq!(ids_of(&leonard), [LEONARD]);

    // Missing ids: a new root; the current version stays current.
    let root = put(&server, &unique, &body(&unique, &[], "Leonhard", "Euler")).await;
    let root_id = version_id("Leonhard", "Euler", &[]);
    assert_eq!(ids_of(&root), [LEONARD, root_id.as_str()]);
    let shown = if signed_key(LEONARD) < signed_key(&root_id) {
        "Leonard"
    } else {
        "Leonhard"
    };
    assert_stored(&root, &host, &unique, &[LEONARD, &root_id], shown, "Euler");

    // Stale ids: a branch from the superseded first version: three candidates, creation order.
    let stale = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonhard", "Euler"),
    )
    .await;
    let candidates = [LEONARD, root_id.as_str(), LEONHARD];
    assert_eq!(ids_of(&stale), candidates);
    let smallest = candidates
        .iter()
        .min_by_key(|id| signed_key(id))
        .unwrap()
        .to_string();
    let shown = if smallest == LEONARD {
        "Leonard"
    } else {
        "Leonhard"
    };
    assert_stored(&stale, &host, &unique, &candidates, shown, "Euler");
    // Never arrays.
    assert!(stale.body["name"]["firstName"].is_string());
    assert!(stale.body["name"]["lastName"].is_string());

    // Naming only some of the candidates merges those, not the rest.
    let partial = put(
        &server,
        &unique,
        &body(&unique, &[LEONHARD, LEONARD], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(ids_of(&partial), [root_id.as_str(), MERGED]);

    // All current ids (any order), with a name equal to one candidate's: still a merge.
    let merge = put(
        &server,
        &unique,
        &body(&unique, &[MERGED, &root_id], "Leonhard", "Euler"),
    )
    .await;
    let merged = version_id("Leonhard", "Euler", &[&root_id, MERGED]);
    assert_eq!(ids_of(&merge), [merged.as_str()]);
    assert_stored(&merge, &host, &unique, &[&merged], "Leonhard", "Euler");

    // Any historical version is a valid prior: branch off the very first one again.
    let branch = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Léonard", "Euler"),
    )
    .await;
    let branched = version_id("Léonard", "Euler", &[EULER]);
    assert_eq!(ids_of(&branch), [merged.as_str(), branched.as_str()]);
    server.stop().await;
}

#[tokio::test]
async fn the_same_concurrent_edit_from_both_sides_is_no_conflict() {
    let server = TestServer::start().await;
    let (unique, _) = create(&server, "Leonhardt", "Euler").await;
    let first = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonhard", "Euler"),
    )
    .await;
    let second = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(ids_of(&first), [LEONHARD]);
    assert_eq!(second.text, first.text);
    assert_eq!(second.tag(), first.tag());
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// B.6 item 10: validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_bodies_are_400s_and_change_nothing() {
    let server = TestServer::start().await;
    let (unique, created) = create(&server, "Leonhardt", "Euler").await;
    let fresh = "00000000-0000-4000-8000-0000000000bb";
    let long = "x".repeat(51);
    let fifty = "y".repeat(50);

    // Bodies that are not JSON.
    for raw in ["not json", "", "{\"unique\": "] {
        let on_post = send(
            server
                .client
                .post(server.url(MATHEMATICIANS))
                .header("content-type", "application/json")
                .body(raw),
        )
        .await;
        on_post.assert_error(400, UNDECODABLE);
        let on_put = send(
            server
                .client
                .put(server.url(&path(&unique)))
                .header("content-type", "application/json")
                .body(raw),
        )
        .await;
        on_put.assert_error(400, UNDECODABLE);
    }

    // Schema failures.
    let schema_failures = |u: &str| {
        vec![
            json!({ "unique": u }),
            json!({ "unique": u, "name": null }),
            json!({ "name": { "ids": [], "firstName": "A", "lastName": "B" } }),
            json!({ "unique": 7, "name": { "ids": [], "firstName": "A", "lastName": "B" } }),
            json!({ "unique": u, "name": { "firstName": "A", "lastName": "B" } }),
            json!({ "unique": u, "name": { "ids": null, "firstName": "A", "lastName": "B" } }),
            json!({ "unique": u, "name": { "ids": [7], "firstName": "A", "lastName": "B" } }),
            json!({ "unique": u, "name": { "ids": [], "lastName": "B" } }),
            json!({ "unique": u, "name": { "ids": [], "firstName": null, "lastName": "B" } }),
            json!({ "unique": u, "name": { "ids": [], "firstName": "A" } }),
            json!({ "unique": u, "name": { "ids": [], "firstName": "A", "lastName": null } }),
            json!({ "unique": u, "name": { "ids": [], "firstName": long, "lastName": "B" } }),
            json!({ "unique": u, "name": { "ids": [], "firstName": "A", "lastName": long } }),
            json!([]),
            json!(null),
        ]
    };
    for bad in schema_failures(fresh) {
        let answer = post(&server, &bad).await;
        answer.assert_schema_error();
        assert_eq!(answer.body["description"], SCHEMA);
    }
    for bad in schema_failures(&unique) {
        put(&server, &unique, &bad).await.assert_schema_error();
    }

    // Ids that are not base64, named by index.
    for (ids, index, text) in [
        (vec!["!!"], 0, "!!"),
        (vec![EULER, "not base64"], 1, "not base64"),
        (vec![EULER, "AAAA", "AAA"], 2, "AAA"),
    ] {
        let description = format!("name.ids[{index}] is not base64: {text:?}.");
        post(&server, &body(fresh, &ids, "A", "B"))
            .await
            .assert_error(400, &description);
        put(&server, &unique, &body(&unique, &ids, "A", "B"))
            .await
            .assert_error(400, &description);
    }

    // Nothing was created or changed.
    get(&server, fresh).await.assert_error(404, NOT_FOUND);
    let read = get(&server, &unique).await;
    assert_eq!(read.body, created.body);
    assert_eq!(read.tag(), created.tag());

    // 50 characters are fine.
    let ok = put(&server, &unique, &body(&unique, &[EULER], &fifty, &fifty)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["name"]["firstName"], fifty.as_str());
    let ok = post(&server, &body(fresh, &[], &fifty, "B")).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_posts_of_one_unique_create_it_once() {
    let server = TestServer::start().await;
    let unique = new_unique(&server).await;
    let url = server.url(MATHEMATICIANS);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = common::client();
        let url = url.clone();
        let request = body(&unique, &[], "Leonhardt", "Euler");
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            send(client.post(url).json(&request)).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    for answer in &answers {
        assert_eq!(answer.status, 201, "{}", answer.text);
        assert_eq!(answer.text, answers[0].text);
        assert_eq!(header(answer, "location"), header(&answers[0], "location"));
    }
    assert_stored(
        &answers[0],
        &host(&server),
        &unique,
        &[EULER],
        "Leonhardt",
        "Euler",
    );
    let all = list(&server).await;
    assert_eq!(all.body.as_array().unwrap().len(), 1);
    assert_eq!(all.body[0], answers[0].body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_posts_with_different_names_keep_one() {
    let server = TestServer::start().await;
    let unique = new_unique(&server).await;
    let names: Vec<String> = (0..16).map(|i| format!("Name{i:02}")).collect();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for name in &names {
        let client = common::client();
        let url = server.url(MATHEMATICIANS);
        let request = body(&unique, &[], name, "Euler");
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            send(client.post(url).json(&request)).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    for answer in &answers {
        assert_eq!(answer.status, 201, "{}", answer.text);
        assert_eq!(
            answer.text, answers[0].text,
            "one creation, everyone sees it"
        );
    }
    let ids = ids_of(&answers[0]);
    assert_eq!(ids.len(), 1);
    let winner = answers[0].body["name"]["firstName"].as_str().unwrap();
    assert!(names.iter().any(|name| name == winner));
    assert_eq!(ids[0], version_id(winner, "Euler", &[]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_edits_become_candidates_and_one_put_merges_them() {
    let server = TestServer::start().await;
    let host = host(&server);
    let (unique, _) = create(&server, "Leonhardt", "Euler").await;
    let names: Vec<String> = (0..16).map(|i| format!("Leonhard{i:02}")).collect();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for name in &names {
        let client = common::client();
        let url = server.url(&path(&unique));
        let request = body(&unique, &[EULER], name, "Euler");
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            send(client.put(url).json(&request)).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let expected: BTreeSet<String> = names
        .iter()
        .map(|name| version_id(name, "Euler", &[EULER]))
        .collect();
    for (name, answer) in names.iter().zip(&answers) {
        assert_eq!(answer.status, 200, "{}", answer.text);
        // Each answer already holds its own candidate (and those committed before it).
        let own = version_id(name, "Euler", &[EULER]);
        let ids = ids_of(answer);
        assert!(ids.contains(&own), "{name}: {ids:?}");
        assert!(ids.iter().all(|id| expected.contains(id)), "{ids:?}");
    }

    let read = get(&server, &unique).await;
    assert_eq!(read.status, 200);
    let ids = ids_of(&read);
    assert_eq!(ids.len(), 16);
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), expected);
    // The shown name is the candidate with the smallest signed hash.
    let smallest = ids.iter().min_by_key(|id| signed_key(id)).unwrap();
    let shown = names
        .iter()
        .find(|name| &version_id(name, "Euler", &[EULER]) == smallest)
        .unwrap();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_stored(&read, &host, &unique, &id_refs, shown, "Euler");
    // The answers' ids grew in creation order: each is a prefix of the final list.
    for answer in &answers {
        let seen = ids_of(answer);
        assert_eq!(seen[..], ids[..seen.len()], "creation order");
    }

    // One PUT naming all 16 (in reverse) merges them; the priors count in creation order.
    let reversed: Vec<&str> = id_refs.iter().rev().copied().collect();
    let merge = put(
        &server,
        &unique,
        &body(&unique, &reversed, "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(merge.status, 200, "{}", merge.text);
    let merged = version_id("Leonhard", "Euler", &id_refs);
    assert_stored(&merge, &host, &unique, &[&merged], "Leonhard", "Euler");
    // Repeating it changes nothing.
    let again = put(
        &server,
        &unique,
        &body(&unique, &reversed, "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(again.text, merge.text);
    assert_eq!(again.tag(), merge.tag());
    assert_eq!(get(&server, &unique).await.body, merge.body);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn versions_survive_a_restart_and_old_ids_still_resolve() {
    let server = TestServer::start().await;
    let (unique, _) = create(&server, "Leonhardt", "Euler").await;
    put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonard", "Euler"),
    )
    .await;
    let conflict = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(ids_of(&conflict), [LEONARD, LEONHARD]);
    let (other, other_created) = create(&server, "Carl", "Gauss").await;
    let before = get(&server, &unique).await;
    let before_list = list(&server).await;
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, |_| {}).await;
    let after = get(&server, &unique).await;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_stored(
        &after,
        &host(&server),
        &unique,
        &[LEONARD, LEONHARD],
        "Leonhard",
        "Euler",
    );
    for key in ["unique", "name", "_etag", "_created", "_updated"] {
        assert_eq!(after.body[key], before.body[key], "{key}");
    }
    assert_eq!(header(&after, "etag"), header(&before, "etag"));
    assert_eq!(
        header(&after, "last-modified"),
        header(&before, "last-modified")
    );
    let after_list = list(&server).await;
    let strip = |list: &Value| -> Vec<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| {
                let mut item = item.clone();
                item.as_object_mut().unwrap().remove("_links");
                item
            })
            .collect()
    };
    assert_eq!(strip(&after_list.body), strip(&before_list.body));
    let gauss = get(&server, &other).await;
    assert_eq!(gauss.body["name"], other_created.body["name"]);

    // The merge and replays work as before the restart.
    let replay = put(
        &server,
        &unique,
        &body(&unique, &[EULER], "Leonard", "Euler"),
    )
    .await;
    assert_eq!(replay.body["_etag"], before.body["_etag"], "replay: no-op");
    // A superseded id is still a prior: a branch from it.
    let branch = put(&server, &unique, &body(&unique, &[EULER], "L.", "Euler")).await;
    let branched = version_id("L.", "Euler", &[EULER]);
    assert_eq!(ids_of(&branch), [LEONARD, LEONHARD, branched.as_str()]);
    let merge = put(
        &server,
        &unique,
        &body(&unique, &[LEONHARD, LEONARD], "Leonhard", "Euler"),
    )
    .await;
    assert_eq!(ids_of(&merge), [branched.as_str(), MERGED]);
    assert_eq!(merge.body["_created"], before.body["_created"]);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// ETag, 304, 412, Idempotency-Key
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn etags_make_reads_and_writes_conditional() {
    let server = TestServer::start().await;
    let (unique, created) = create(&server, "Leonhardt", "Euler").await;
    let etag = header(&created, "etag").unwrap();
    let read = get(&server, &unique).await;
    assert_eq!(header(&read, "etag").as_deref(), Some(etag.as_str()));

    // If-None-Match with the ETag: 304, no body.
    let not_modified = send(
        server
            .client
            .get(server.url(&path(&unique)))
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.text.is_empty());
    assert_eq!(
        header(&not_modified, "etag").as_deref(),
        Some(etag.as_str())
    );
    // Another tag: 200.
    let modified = send(
        server
            .client
            .get(server.url(&path(&unique)))
            .header("if-none-match", "\"0000\""),
    )
    .await;
    assert_eq!(modified.status, 200);

    // PUT with the right If-Match succeeds and changes the ETag.
    let renamed = send(
        server
            .client
            .put(server.url(&path(&unique)))
            .header("if-match", &etag)
            .json(&body(&unique, &[EULER], "Leonard", "Euler")),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let new_etag = header(&renamed, "etag").unwrap();
    assert_ne!(new_etag, etag);
    assert_eq!(
        new_etag,
        format!("\"{}\"", renamed.body["_etag"].as_str().unwrap())
    );

    // The stale one: 412, nothing changes.
    let stale = send(
        server
            .client
            .put(server.url(&path(&unique)))
            .header("if-match", &etag)
            .json(&body(&unique, &[EULER], "Leonhard", "Euler")),
    )
    .await;
    stale.assert_error(412, ETAGS_DONT_MATCH);
    assert_eq!(get(&server, &unique).await.body, renamed.body);
    // The old ETag no longer gives a 304.
    let changed = send(
        server
            .client
            .get(server.url(&path(&unique)))
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(changed.status, 200);

    // On POST: a replay with a stale If-Match is refused too; with the current one it answers.
    let replay_stale = send(
        server
            .client
            .post(server.url(MATHEMATICIANS))
            .header("if-match", &etag)
            .json(&body(&unique, &[], "Leonhardt", "Euler")),
    )
    .await;
    replay_stale.assert_error(412, ETAGS_DONT_MATCH);
    let replay_current = send(
        server
            .client
            .post(server.url(MATHEMATICIANS))
            .header("if-match", &new_etag)
            .json(&body(&unique, &[], "Leonhardt", "Euler")),
    )
    .await;
    assert_eq!(replay_current.status, 201);
    assert_eq!(replay_current.text, renamed.text);
    server.stop().await;
}

#[tokio::test]
async fn idempotency_keys_replay_posts_and_puts() {
    let server = TestServer::start().await;
    let unique = new_unique(&server).await;
    let key = "\"5b0c8f0e-8f7a-4c55-9d7e-1c0f4f5b9a01\"";
    let create = || {
        server
            .client
            .post(server.url(MATHEMATICIANS))
            .header("idempotency-key", key)
            .json(&body(&unique, &[], "Leonhardt", "Euler"))
    };
    let first = send(create()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(header(&first, "idempotent-replayed").is_none());
    let second = send(create()).await;
    assert_eq!(second.status, 201);
    assert_eq!(
        header(&second, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(second.text, first.text);
    assert_eq!(header(&second, "location"), header(&first, "location"));

    let put_key = "\"5b0c8f0e-8f7a-4c55-9d7e-1c0f4f5b9a02\"";
    let rename = |first_name: &str| {
        server
            .client
            .put(server.url(&path(&unique)))
            .header("idempotency-key", put_key)
            .json(&body(&unique, &[EULER], first_name, "Euler"))
    };
    let renamed = send(rename("Leonard")).await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(ids_of(&renamed), [LEONARD]);
    // Another edit in between; the replay still answers the first answer.
    put(
        &server,
        &unique,
        &body(&unique, &[LEONARD], "Leonhard", "Euler"),
    )
    .await;
    let replayed = send(rename("Leonard")).await;
    assert_eq!(replayed.status, 200);
    assert_eq!(
        header(&replayed, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replayed.text, renamed.text);
    // The same key for another request: 422.
    send(rename("Leo")).await.assert_error(422, KEY_REUSED);
    let now = get(&server, &unique).await;
    assert_eq!(ids_of(&now), [version_id("Leonhard", "Euler", &[LEONARD])]);
    server.stop().await;
}

/// Links are built from the request's `Host`, so one that is not a host and port is a 400
/// (as Kestrel answers it), never a link or a `Location` made of it; hosts with ports, IPv6
/// literals and names are used as sent.
#[tokio::test]
async fn links_come_from_a_valid_host_and_an_invalid_one_is_a_400() {
    let server = TestServer::start().await;
    let new = |host: &str| {
        server
            .client
            .get(server.url("/api/mathematicians/new"))
            .header("host", host)
    };
    for host in ["floe.example:8080", "[::1]:4523", "10.0.0.5", "floe"] {
        let answer = send(new(host)).await;
        assert_eq!(answer.status, 200, "{host}: {}", answer.text);
        let href = answer.body["_links"]["self"]["href"].as_str().unwrap();
        assert!(
            href.starts_with(&format!("http://{host}/api/mathematicians/")),
            "{host}: {href}"
        );
    }
    for host in ["a b", "\"quoted\"", "user@floe", "floe/path", "floe:port"] {
        send(new(host))
            .await
            .assert_error(400, "Invalid Host header.");
        let list = server
            .client
            .get(server.url("/api/mathematicians"))
            .header("host", host);
        send(list).await.assert_error(400, "Invalid Host header.");
        let create = server
            .client
            .post(server.url("/api/mathematicians"))
            .header("host", host)
            .json(&json!({
                "unique": Uuid::new_v4(),
                "name": { "ids": [], "firstName": "Ada", "lastName": "Lovelace" },
            }));
        send(create).await.assert_error(400, "Invalid Host header.");
    }
    // An empty Host (which HTTP allows) names no host: links name localhost.
    let answer = send(new("")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let href = answer.body["_links"]["self"]["href"].as_str().unwrap();
    assert!(href.starts_with("http://localhost/"), "{href}");
    // Nothing was created by the refused requests.
    let list = send(server.client.get(server.url("/api/mathematicians"))).await;
    assert_eq!(list.body, json!([]));
    server.stop().await;
}

/// Behind a proxy (TLS ended there, floe under a path), `--public-url` is where links start:
/// the self link and `Location` of a create, and the links of a read and of the list, whatever
/// `Host` the proxy forwards.
#[tokio::test]
async fn links_start_with_the_public_url_when_one_is_given() {
    let base = "https://floe.example.com:8443/config";
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start_in(dir, |config| {
        config.public_url = Some(base.to_string());
    })
    .await;
    let unique = new_unique(&server).await;
    let created = send(
        server
            .client
            .post(server.url(MATHEMATICIANS))
            .header("host", "10.0.0.7:4523")
            .json(&body(&unique, &[], "Emmy", "Noether")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let href = format!("{base}/api/mathematicians/{unique}");
    assert_eq!(created.body["_links"]["self"]["href"], href.as_str());
    assert_eq!(header(&created, "location").as_deref(), Some(href.as_str()));
    assert_eq!(
        get(&server, &unique).await.body["_links"]["self"]["href"],
        href.as_str()
    );
    assert_eq!(
        list(&server).await.body[0]["_links"]["self"]["href"],
        href.as_str()
    );
    server.stop().await;
}
