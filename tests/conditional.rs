//! RFC 9110 conditional requests, the `--if-match` policies, `Idempotency-Key` and the
//! lost-update race, against an in-process floe (spec: concurrency.md §3.1–3.5).
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{NODE_0, NODE_1, TestServer};
use floe::api::conditional::IfMatchPolicy;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tempfile::TempDir;

const DATASETS: &str = "/v1/configuration/datasets";
const LEASES: &str = "/v1/configuration/leases";
const CONTAINERS: &str = "/v1/configuration/containers";
const ETAGS_DONT_MATCH: &str = "Client and server etags don't match";
const ETAG_REQUIRED: &str =
    "To edit a document its etag must be provided using the If-Match header";
const KEY_REUSED: &str = "This Idempotency-Key was already used for a different request.";
/// A well-formed strong tag that is never any resource's.
const OTHER_ETAG: &str = "\"00000000000000000000000000000000\"";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One answer, fully read.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    fn etag(&self) -> String {
        self.header("etag")
            .unwrap_or_else(|| panic!("no ETag header in {self:?}"))
    }

    fn tag(&self) -> String {
        self.header("x-configuration-tag")
            .unwrap_or_else(|| panic!("no X-Configuration-Tag header in {self:?}"))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }

    fn description(&self) -> String {
        self.json()["description"]
            .as_str()
            .unwrap_or_else(|| panic!("no description in {:?}", self.text))
            .to_string()
    }

    fn replayed(&self) -> bool {
        self.header("idempotent-replayed").as_deref() == Some("true")
    }
}

/// Sends one request; header values are sent as given, each pair as its own header line.
async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> Answer {
    send_with(&server.client, &server.url(path), method, headers, body).await
}

async fn send_with(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut builder = client.request(method, url);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    if let Some(body) = body {
        builder = builder
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("JSON"));
    }
    let response = builder.send().await.expect("the request is answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a readable body");
    Answer {
        status,
        headers,
        text,
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn dataset_path(id: &str) -> String {
    format!("{DATASETS}/{id}")
}

/// Creates a dataset on NODE_0 and returns the answer (asserting 201).
async fn create(server: &TestServer, id: &str) -> Answer {
    let answer = send(
        server,
        "POST",
        DATASETS,
        &[],
        Some(json!({"primary": NODE_0, "dataset_id": id})),
    )
    .await;
    assert_eq!(answer.status, 201, "create {id}: {answer:?}");
    answer
}

async fn get(server: &TestServer, id: &str) -> Answer {
    send(server, "GET", &dataset_path(id), &[], None).await
}

/// Whether `etag` is a strong tag of 32 lower-case hex digits.
fn assert_strong_hex_etag(etag: &str) {
    let inner = etag
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("ETag {etag:?} is not a quoted strong tag"));
    assert!(
        inner.len() == 32
            && inner
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "ETag {etag:?} is not 32 lower-case hex digits"
    );
}

fn parse_date(value: &str) -> SystemTime {
    httpdate::parse_http_date(value).unwrap_or_else(|e| panic!("{value:?} is no HTTP date: {e}"))
}

fn http_date(time: SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

fn weak(etag: &str) -> String {
    format!("W/{etag}")
}

// ---------------------------------------------------------------------------------------------
// The RFC 9110 §13.2.2 evaluation matrix on datasets
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Get,
    Move,
    Delete,
}

/// How a header value is made from the row's fresh dataset.
#[derive(Debug, Clone, Copy)]
enum V {
    /// The dataset's current ETag.
    Current,
    /// The current ETag marked weak.
    WeakCurrent,
    /// A tag that is not the dataset's.
    Other,
    /// `"other", <current>`.
    OtherThenCurrent,
    /// An hour before Last-Modified.
    Past,
    /// Last-Modified itself.
    AtLastModified,
    /// An hour from now.
    Future,
    /// The current configuration tag.
    ConfigTag,
    /// A literal value.
    Lit(&'static str),
}

const IM: &str = "If-Match";
const INM: &str = "If-None-Match";
const IMS: &str = "If-Modified-Since";
const IUS: &str = "If-Unmodified-Since";
const XIC: &str = "X-If-Configuration-Matches";

struct Row {
    policy: IfMatchPolicy,
    op: Op,
    conditions: &'static [(&'static str, V)],
    expect: u16,
}

const fn row(op: Op, conditions: &'static [(&'static str, V)], expect: u16) -> Row {
    Row {
        policy: IfMatchPolicy::Optional,
        op,
        conditions,
        expect,
    }
}

const fn required(op: Op, conditions: &'static [(&'static str, V)], expect: u16) -> Row {
    Row {
        policy: IfMatchPolicy::Required,
        op,
        conditions,
        expect,
    }
}

use Op::{Delete, Get, Move};
use V::{
    AtLastModified, ConfigTag, Current, Future, Lit, Other, OtherThenCurrent, Past, WeakCurrent,
};

const MATRIX: &[Row] = &[
    // ---- GET ----
    row(Get, &[], 200),
    row(Get, &[(IM, Current)], 200),
    row(Get, &[(IM, Other)], 412),
    row(Get, &[(IM, Lit("*"))], 200),
    row(Get, &[(IM, WeakCurrent)], 412),
    row(Get, &[(IM, OtherThenCurrent)], 200),
    row(Get, &[(INM, Current)], 304),
    row(Get, &[(INM, WeakCurrent)], 304),
    row(Get, &[(INM, Other)], 200),
    row(Get, &[(INM, Lit("*"))], 304),
    row(Get, &[(INM, OtherThenCurrent)], 304),
    row(Get, &[(IMS, Past)], 200),
    row(Get, &[(IMS, AtLastModified)], 304),
    row(Get, &[(IMS, Future)], 304),
    row(Get, &[(IMS, Lit("not a date"))], 200),
    row(Get, &[(IUS, Past)], 412),
    row(Get, &[(IUS, Future)], 200),
    row(Get, &[(IUS, Lit("yesterday"))], 200),
    row(Get, &[(IM, Current), (INM, Current)], 304),
    row(Get, &[(IM, Current), (INM, Other)], 200),
    row(Get, &[(IM, Other), (INM, Other)], 412),
    row(Get, &[(IM, Other), (INM, Current)], 412),
    row(Get, &[(IM, Current), (IUS, Past)], 200),
    row(Get, &[(INM, Other), (IMS, Future)], 200),
    row(Get, &[(INM, Current), (IMS, Past)], 304),
    row(Get, &[(IM, Lit("garbage"))], 400),
    row(Get, &[(INM, Lit("\"abc"))], 400),
    // ---- move (POST /v1/configuration/datasets/{id}) ----
    row(Move, &[], 200),
    row(Move, &[(IM, Current)], 200),
    row(Move, &[(IM, Other)], 412),
    row(Move, &[(IM, Lit("*"))], 200),
    row(Move, &[(IM, WeakCurrent)], 412),
    row(Move, &[(IM, OtherThenCurrent)], 200),
    row(Move, &[(INM, Current)], 412),
    row(Move, &[(INM, WeakCurrent)], 412),
    row(Move, &[(INM, Other)], 200),
    row(Move, &[(INM, Lit("*"))], 412),
    row(Move, &[(INM, OtherThenCurrent)], 412),
    row(Move, &[(IMS, Past)], 200),
    row(Move, &[(IMS, Future)], 200),
    row(Move, &[(IUS, Past)], 412),
    row(Move, &[(IUS, AtLastModified)], 200),
    row(Move, &[(IUS, Future)], 200),
    row(Move, &[(IUS, Lit("not a date"))], 200),
    row(Move, &[(IM, Current), (IUS, Past)], 200),
    row(Move, &[(IM, Other), (IUS, Future)], 412),
    row(Move, &[(IM, Current), (INM, Current)], 412),
    row(Move, &[(IM, Current), (INM, Other)], 200),
    row(Move, &[(IM, Other), (INM, Other)], 412),
    row(Move, &[(IUS, Future), (INM, Current)], 412),
    row(Move, &[(XIC, ConfigTag), (IM, Current)], 200),
    row(Move, &[(XIC, ConfigTag), (IM, Other)], 412),
    row(Move, &[(IM, Lit("garbage"))], 400),
    row(Move, &[(IM, Lit("\"abc"))], 400),
    row(Move, &[(IM, Lit("*, \"a\""))], 400),
    row(Move, &[(INM, Lit("garbage"))], 400),
    // ---- delete ----
    row(Delete, &[], 200),
    row(Delete, &[(IM, Current)], 200),
    row(Delete, &[(IM, Other)], 412),
    row(Delete, &[(IM, Lit("*"))], 200),
    row(Delete, &[(IM, WeakCurrent)], 412),
    row(Delete, &[(INM, Current)], 412),
    row(Delete, &[(INM, Other)], 200),
    row(Delete, &[(INM, Lit("*"))], 412),
    row(Delete, &[(IMS, Future)], 200),
    row(Delete, &[(IUS, Past)], 412),
    row(Delete, &[(IUS, Future)], 200),
    row(Delete, &[(IM, Current), (IUS, Past)], 200),
    row(Delete, &[(IM, Current), (INM, Current)], 412),
    row(Delete, &[(IM, Lit("garbage"))], 400),
    // ---- --if-match required ----
    required(Get, &[], 200),
    required(Move, &[], 428),
    required(Move, &[(IM, Current)], 200),
    required(Move, &[(IM, Other)], 412),
    required(Move, &[(IM, Lit("*"))], 200),
    required(Move, &[(XIC, ConfigTag)], 200),
    required(Move, &[(IUS, Future)], 428),
    required(Delete, &[], 428),
    required(Delete, &[(IM, Current)], 200),
    required(Delete, &[(IM, Other)], 412),
    required(Delete, &[(XIC, ConfigTag)], 200),
];

fn describe(row: &Row) -> String {
    format!(
        "[{:?}] {:?} with {:?} (expect {})",
        row.policy, row.op, row.conditions, row.expect
    )
}

/// Runs one row against a fresh dataset on `server`; returns a failure description.
async fn run_row(server: &TestServer, row: &Row) -> Result<(), String> {
    let label = describe(row);
    let id = new_id();
    let created = create(server, &id).await;
    let etag = created.etag();
    let config_tag = created.tag();
    let last_modified = parse_date(
        &created
            .header("last-modified")
            .ok_or_else(|| format!("{label}: create answered no Last-Modified"))?,
    );
    let now = SystemTime::now();
    let headers: Vec<(&str, String)> = row
        .conditions
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Current => etag.clone(),
                WeakCurrent => weak(&etag),
                Other => OTHER_ETAG.to_string(),
                OtherThenCurrent => format!("{OTHER_ETAG}, {etag}"),
                Past => http_date(last_modified - Duration::from_secs(3600)),
                AtLastModified => http_date(last_modified),
                Future => http_date(now + Duration::from_secs(3600)),
                ConfigTag => config_tag.clone(),
                Lit(s) => s.to_string(),
            };
            (*name, value)
        })
        .collect();
    let path = dataset_path(&id);
    let answer = match row.op {
        Get => send(server, "GET", &path, &headers, None).await,
        Move => {
            send(
                server,
                "POST",
                &path,
                &headers,
                Some(json!({"primary": NODE_1})),
            )
            .await
        }
        Delete => send(server, "DELETE", &path, &headers, None).await,
    };
    let fail = |what: String| Err(format!("{label}: {what}\n  answer: {answer:?}"));
    if answer.status != row.expect {
        return fail(format!("status {}", answer.status));
    }
    let after = get(server, &id).await;
    match answer.status {
        200 => {
            let got = answer.etag();
            assert_strong_hex_etag(&got);
            if answer.header("last-modified").is_none() {
                return fail("no Last-Modified".into());
            }
            if got != after.etag() {
                return fail(format!(
                    "ETag {got} but a following GET says {}",
                    after.etag()
                ));
            }
            let body = answer.json();
            match row.op {
                Get => {
                    if got != etag || body["primary"] != NODE_0 {
                        return fail(format!("GET changed something (created with {etag})"));
                    }
                }
                Move => {
                    if got == etag || body["primary"] != NODE_1 {
                        return fail(format!("the move did not change the ETag/primary ({etag})"));
                    }
                }
                Delete => {
                    if got == etag || body["deleted"] != true {
                        return fail(format!(
                            "the delete did not change the ETag/deleted ({etag})"
                        ));
                    }
                }
            }
        }
        304 => {
            if !answer.text.is_empty() {
                return fail("a 304 with a body".into());
            }
            if answer.header("etag").as_deref() != Some(etag.as_str()) {
                return fail(format!("the 304 does not carry ETag {etag}"));
            }
        }
        _ => {
            if after.etag() != etag || after.json()["primary"] != NODE_0 {
                return fail(format!(
                    "a refused request changed the dataset: {:?}",
                    after.text
                ));
            }
            let description = answer.description();
            let if_match_fails = row
                .conditions
                .iter()
                .any(|(name, value)| *name == IM && matches!(value, Other | WeakCurrent));
            let checks_tag_first = row.conditions.iter().any(|(name, _)| *name == XIC);
            match answer.status {
                412 if if_match_fails => {
                    if description != ETAGS_DONT_MATCH {
                        return fail(format!("description {description:?}"));
                    }
                    if answer.header("etag").as_deref() != Some(etag.as_str()) {
                        return fail(format!("the 412 does not carry the current ETag {etag}"));
                    }
                    if checks_tag_first && description.starts_with("Tag doesn't match") {
                        return fail("the configuration tag was current".into());
                    }
                }
                428 if description != ETAG_REQUIRED => {
                    return fail(format!("description {description:?}"));
                }
                400 => {
                    let header = row.conditions[0].0;
                    if !description.contains(header) {
                        return fail(format!(
                            "description {description:?} does not name {header}"
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn rfc9110_evaluation_matrix_on_datasets() {
    let mut failures = Vec::new();
    for policy in [IfMatchPolicy::Optional, IfMatchPolicy::Required] {
        let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
            config.if_match = policy;
        })
        .await;
        for row in MATRIX.iter().filter(|row| row.policy == policy) {
            if let Err(failure) = run_row(&server, row).await {
                failures.push(failure);
            }
        }
        server.stop().await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        MATRIX.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Creates: the target is the dataset named by the body's dataset_id
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Target {
    /// A dataset_id that is configured.
    Existing,
    /// A dataset_id that is not.
    New,
    /// No dataset_id: floe generates one, which never exists.
    Generated,
}

/// One create row: the policy, which dataset the body names, the conditions, the status.
type CreateRow<'a> = (IfMatchPolicy, Target, &'a [(&'a str, V)], u16);

#[tokio::test]
async fn create_preconditions_target_the_named_dataset() {
    use Target::{Existing, Generated, New};
    let rows: &[CreateRow] = &[
        (IfMatchPolicy::Optional, Existing, &[], 409),
        (IfMatchPolicy::Optional, Existing, &[(INM, Lit("*"))], 412),
        (IfMatchPolicy::Optional, Existing, &[(INM, Current)], 412),
        (IfMatchPolicy::Optional, Existing, &[(INM, Other)], 409),
        (IfMatchPolicy::Optional, Existing, &[(IM, Current)], 409),
        (IfMatchPolicy::Optional, Existing, &[(IM, Lit("*"))], 409),
        (IfMatchPolicy::Optional, Existing, &[(IM, Other)], 412),
        (IfMatchPolicy::Optional, Existing, &[(IUS, Past)], 412),
        (IfMatchPolicy::Optional, Existing, &[(IMS, Future)], 409),
        (IfMatchPolicy::Optional, New, &[], 201),
        (IfMatchPolicy::Optional, New, &[(INM, Lit("*"))], 201),
        (IfMatchPolicy::Optional, New, &[(IM, Lit("*"))], 412),
        (IfMatchPolicy::Optional, New, &[(IM, Other)], 412),
        (IfMatchPolicy::Optional, Generated, &[(INM, Lit("*"))], 201),
        (IfMatchPolicy::Optional, Generated, &[(IM, Lit("*"))], 412),
        (IfMatchPolicy::Optional, New, &[(IM, Lit("garbage"))], 400),
        (IfMatchPolicy::Required, New, &[], 201),
        (IfMatchPolicy::Required, Generated, &[], 201),
        // A duplicate create meets its 409 under `required` too: no validator would change it.
        (IfMatchPolicy::Required, Existing, &[], 409),
        (IfMatchPolicy::Required, Existing, &[(INM, Lit("*"))], 412),
        (IfMatchPolicy::Required, Existing, &[(INM, Other)], 409),
        (IfMatchPolicy::Required, Existing, &[(IM, Current)], 409),
        (IfMatchPolicy::Required, Existing, &[(XIC, ConfigTag)], 409),
        (IfMatchPolicy::Required, Existing, &[(IM, Other)], 412),
    ];
    let mut failures = Vec::new();
    for policy in [IfMatchPolicy::Optional, IfMatchPolicy::Required] {
        let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
            config.if_match = policy;
        })
        .await;
        for (_, target, conditions, expect) in rows.iter().filter(|row| row.0 == policy) {
            let existing = new_id();
            let created = create(&server, &existing).await;
            let etag = created.etag();
            let last_modified = parse_date(&created.header("last-modified").unwrap());
            let headers: Vec<(&str, String)> = conditions
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        Current => etag.clone(),
                        Other => OTHER_ETAG.to_string(),
                        Past => http_date(last_modified - Duration::from_secs(3600)),
                        Future => http_date(SystemTime::now() + Duration::from_secs(3600)),
                        ConfigTag => created.tag(),
                        Lit(s) => s.to_string(),
                        other => unreachable!("{other:?}"),
                    };
                    (*name, value)
                })
                .collect();
            let body = match target {
                Existing => json!({"primary": NODE_1, "dataset_id": existing}),
                New => json!({"primary": NODE_1, "dataset_id": new_id()}),
                Generated => json!({"primary": NODE_1}),
            };
            let answer = send(&server, "POST", DATASETS, &headers, Some(body)).await;
            let label = format!("[{policy:?}] create {target:?} with {conditions:?}");
            if answer.status != *expect {
                failures.push(format!("{label}: expected {expect}, got {answer:?}"));
                continue;
            }
            match answer.status {
                201 => assert_strong_hex_etag(&answer.etag()),
                412 if matches!(target, Existing)
                    && answer.header("etag").as_deref() != Some(etag.as_str()) =>
                {
                    failures.push(format!("{label}: the 412 lacks ETag {etag}: {answer:?}"));
                }
                428 if answer.description() != ETAG_REQUIRED => {
                    failures.push(format!("{label}: {answer:?}"))
                }
                _ => {}
            }
            if conditions
                .iter()
                .any(|(n, v)| *n == IM && matches!(v, Other))
                && answer.status == 412
                && answer.description() != ETAGS_DONT_MATCH
            {
                failures.push(format!("{label}: description {:?}", answer.text));
            }
            let after = get(&server, &existing).await;
            if after.etag() != etag {
                failures.push(format!("{label}: the existing dataset changed: {after:?}"));
            }
        }
        server.stop().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// ETag and Last-Modified headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn etags_are_content_hashes_and_stable() {
    let server = TestServer::start().await;
    let id = new_id();
    let created = create(&server, &id).await;
    let e0 = created.etag();
    assert_strong_hex_etag(&e0);
    parse_date(
        &created
            .header("last-modified")
            .expect("Last-Modified on create"),
    );

    // Reading twice gives the same ETag, the one the create returned, and a Last-Modified.
    let first = get(&server, &id).await;
    let second = get(&server, &id).await;
    assert_eq!(first.etag(), e0);
    assert_eq!(second.etag(), e0);
    parse_date(&first.header("last-modified").expect("Last-Modified on GET"));

    // An empty update changes nothing, the ETag included.
    let noop = send(&server, "POST", &dataset_path(&id), &[], Some(json!({}))).await;
    assert_eq!((noop.status, noop.etag()), (200, e0.clone()));

    // A move changes it; moving back restores the content and hence the ETag.
    let moved = send(
        &server,
        "POST",
        &dataset_path(&id),
        &[],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(moved.status, 200);
    let e1 = moved.etag();
    assert_strong_hex_etag(&e1);
    assert_ne!(e1, e0, "a move must change the ETag");
    assert_eq!(get(&server, &id).await.etag(), e1);
    parse_date(
        &moved
            .header("last-modified")
            .expect("Last-Modified on move"),
    );
    let back = send(
        &server,
        "POST",
        &dataset_path(&id),
        &[],
        Some(json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(back.etag(), e0, "same content, same ETag");

    // Different datasets have different ETags.
    let other = create(&server, &new_id()).await;
    assert_ne!(other.etag(), e0);

    // Delete changes it; deleting again answers the same ETag.
    let deleted = send(&server, "DELETE", &dataset_path(&id), &[], None).await;
    assert_eq!(deleted.status, 200);
    let e2 = deleted.etag();
    assert_strong_hex_etag(&e2);
    assert_ne!(e2, e0);
    parse_date(
        &deleted
            .header("last-modified")
            .expect("Last-Modified on delete"),
    );
    assert_eq!(get(&server, &id).await.etag(), e2);
    let again = send(&server, "DELETE", &dataset_path(&id), &[], None).await;
    assert_eq!((again.status, again.etag()), (200, e2));

    // Lists: each carries the configuration tag of the last change to its own kind, quoted
    // for datasets, weak for leases.
    let list = send(&server, "GET", DATASETS, &[], None).await;
    assert_eq!(list.etag(), format!("\"{}\"", deleted.tag()));
    let leases = send(&server, "GET", LEASES, &[], None).await;
    assert!(leases.etag().starts_with("W/\""), "{leases:?}");
    assert_ne!(leases.etag(), format!("W/\"{}\"", leases.tag()));

    // Leases: acquire and release carry a strong content ETag; same content, same ETag.
    let lease_body = json!({"dataset_id": id, "node_uuid": NODE_0, "expires": null});
    let acquired = send(&server, "POST", LEASES, &[], Some(lease_body.clone())).await;
    assert_eq!(acquired.status, 201);
    let l0 = acquired.etag();
    assert_strong_hex_etag(&l0);
    let leases = send(&server, "GET", LEASES, &[], None).await;
    assert_eq!(leases.etag(), format!("W/\"{}\"", acquired.tag()));
    let unchanged = send(&server, "GET", DATASETS, &[], None).await;
    assert_eq!(
        unchanged.etag(),
        list.etag(),
        "a lease leaves the dataset list alone"
    );
    let renewed = send(&server, "POST", LEASES, &[], Some(lease_body)).await;
    assert_eq!((renewed.status, renewed.etag()), (200, l0.clone()));
    let released = send(&server, "DELETE", &format!("{LEASES}/{id}"), &[], None).await;
    assert_eq!((released.status, released.etag()), (200, l0));
    server.stop().await;
}

#[tokio::test]
async fn lists_answer_304_to_a_matching_if_none_match() {
    let server = TestServer::start().await;
    create(&server, &new_id()).await;
    let mut failures = Vec::new();
    for path in [DATASETS, LEASES] {
        let full = send(&server, "GET", path, &[], None).await;
        assert_eq!(full.status, 200);
        let etag = full.etag();
        let strong = etag.trim_start_matches("W/").to_string();
        for value in [
            etag.clone(),
            strong.clone(),
            weak(&strong),
            "*".to_string(),
            format!("{OTHER_ETAG}, {etag}"),
        ] {
            let answer = send(&server, "GET", path, &[(INM, value.clone())], None).await;
            // RFC 9110 §15.4.5: a 304 carries the ETag a 200 would have carried.
            if answer.status != 304
                || !answer.text.is_empty()
                || answer.header("etag").as_deref() != Some(etag.as_str())
            {
                failures.push(format!(
                    "GET {path} If-None-Match: {value}: expected 304, no body, ETag {etag}; got {} {:?} ETag {:?}",
                    answer.status,
                    answer.text,
                    answer.header("etag")
                ));
            }
        }
        let miss = send(&server, "GET", path, &[(INM, OTHER_ETAG.to_string())], None).await;
        assert_eq!(miss.status, 200, "{miss:?}");
        assert_eq!(miss.etag(), etag);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // After a write the old tags no longer match.
    let before = send(&server, "GET", DATASETS, &[], None).await.etag();
    let leases_before = send(&server, "GET", LEASES, &[], None).await.etag();
    create(&server, &new_id()).await;
    let answer = send(&server, "GET", DATASETS, &[(INM, before.clone())], None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_ne!(answer.etag(), before);
    // The lease list did not change: its ETag still matches.
    let answer = send(&server, "GET", LEASES, &[(INM, leases_before)], None).await;
    assert_eq!(answer.status, 304, "{answer:?}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lease_preconditions() {
    let server = TestServer::start().await;
    let id = new_id();
    let body = |node: &str| json!({"dataset_id": id, "node_uuid": node, "expires": null});
    let release = format!("{LEASES}/{id}");

    // If-Match: * on a lease nobody holds fails; If-None-Match: * takes it.
    let answer = send(
        &server,
        "POST",
        LEASES,
        &[(IM, "*".into())],
        Some(body(NODE_0)),
    )
    .await;
    assert_eq!(answer.status, 412, "{answer:?}");
    let taken = send(
        &server,
        "POST",
        LEASES,
        &[(INM, "*".into())],
        Some(body(NODE_0)),
    )
    .await;
    assert_eq!(taken.status, 201, "{taken:?}");
    let etag = taken.etag();

    // Held now: If-None-Match: * or the current tag fail; a wrong If-Match fails with the ETag.
    for (name, value) in [(INM, "*".to_string()), (INM, etag.clone())] {
        let answer = send(
            &server,
            "POST",
            LEASES,
            &[(name, value)],
            Some(body(NODE_0)),
        )
        .await;
        assert_eq!(answer.status, 412, "{answer:?}");
    }
    let stale = send(
        &server,
        "POST",
        LEASES,
        &[(IM, OTHER_ETAG.into())],
        Some(body(NODE_0)),
    )
    .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    assert_eq!(stale.description(), ETAGS_DONT_MATCH);
    assert_eq!(stale.header("etag"), Some(etag.clone()));
    let weak_tag = send(
        &server,
        "POST",
        LEASES,
        &[(IM, weak(&etag))],
        Some(body(NODE_0)),
    )
    .await;
    assert_eq!(
        weak_tag.status, 412,
        "a weak tag never matches If-Match: {weak_tag:?}"
    );

    // The right If-Match renews.
    let renewed = send(
        &server,
        "POST",
        LEASES,
        &[(IM, etag.clone())],
        Some(body(NODE_0)),
    )
    .await;
    assert_eq!(renewed.status, 200, "{renewed:?}");

    // Release: a wrong If-Match fails, the right one releases.
    let answer = send(
        &server,
        "DELETE",
        &release,
        &[(IM, OTHER_ETAG.into())],
        None,
    )
    .await;
    assert_eq!(answer.status, 412, "{answer:?}");
    assert_eq!(answer.header("etag"), Some(renewed.etag()));
    let answer = send(&server, "DELETE", &release, &[(IM, renewed.etag())], None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_strong_hex_etag(&answer.etag());
    // Gone: the 404 a release of no lease meets anyway takes precedence over the failed
    // If-Match (RFC 9110 §13.2.1).
    let answer = send(&server, "DELETE", &release, &[(IM, "*".into())], None).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    let plain = send(&server, "DELETE", &release, &[], None).await;
    assert_eq!(
        (plain.status, plain.text),
        (404, answer.text),
        "the same 404"
    );
    let answer = send(&server, "DELETE", &release, &[(IM, "garbage".into())], None).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.description().contains("If-Match"), "{answer:?}");
    server.stop().await;
}

#[tokio::test]
async fn required_policy_on_leases() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.if_match = IfMatchPolicy::Required;
    })
    .await;
    let id = new_id();
    let body = json!({"dataset_id": id, "node_uuid": NODE_0, "expires": null});
    let release = format!("{LEASES}/{id}");
    let taken = send(&server, "POST", LEASES, &[], Some(body.clone())).await;
    assert_eq!(
        taken.status, 201,
        "a new lease needs no validator: {taken:?}"
    );
    let renew = send(&server, "POST", LEASES, &[], Some(body.clone())).await;
    assert_eq!(renew.status, 428, "{renew:?}");
    assert_eq!(renew.description(), ETAG_REQUIRED);
    // Create-only is a condition too: it fails (412), it is not missing (428).
    let create_only = [(INM, "*".to_string())];
    let again = send(&server, "POST", LEASES, &create_only, Some(body.clone())).await;
    assert_eq!(again.status, 412, "{again:?}");
    assert_eq!(again.etag(), taken.etag(), "{again:?}");
    let renew = send(
        &server,
        "POST",
        LEASES,
        &[(IM, taken.etag())],
        Some(body.clone()),
    )
    .await;
    assert_eq!(renew.status, 200, "{renew:?}");
    let tag = send(&server, "GET", LEASES, &[], None).await.tag();
    let renew = send(&server, "POST", LEASES, &[(XIC, tag)], Some(body)).await;
    assert_eq!(renew.status, 200, "{renew:?}");
    let answer = send(&server, "DELETE", &release, &[], None).await;
    assert_eq!(answer.status, 428, "{answer:?}");
    assert_eq!(answer.description(), ETAG_REQUIRED);
    let answer = send(&server, "DELETE", &release, &[(IM, renew.etag())], None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    server.stop().await;
}

/// An `--idempotency-ttl` as large as it goes keeps answers (it once wrapped around to a
/// negative time and had the sweeper forget every answer at once, so a retry applied its
/// request again).
#[tokio::test]
async fn the_longest_idempotency_ttl_keeps_answers() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.idempotency_ttl = u64::MAX;
    })
    .await;
    let key = [("Idempotency-Key", "\"keep-me\"".to_string())];
    let body = json!({"primary": NODE_0});
    let first = send(&server, "POST", DATASETS, &key, Some(body.clone())).await;
    assert_eq!(first.status, 201, "{first:?}");
    // Past a few sweeps (every 250 ms).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let retry = send(&server, "POST", DATASETS, &key, Some(body)).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(retry.replayed(), "the retry was applied again: {retry:?}");
    let list = send(&server, "GET", DATASETS, &[], None).await;
    assert_eq!(list.json().as_array().unwrap().len(), 1, "{list:?}");
    server.stop().await;
}

/// Under `--if-match required`, retrying a create by a client-held id (a mathematician's
/// `unique`, a package's `uuid`) is a replay, not an edit: it answers as the first attempt did
/// (201, 303), never 428, and changes nothing (DESIGN rule 3; mathematicians spec B.6.3).
#[tokio::test]
async fn required_policy_lets_creates_be_retried_and_duplicates_meet_their_409() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.if_match = IfMatchPolicy::Required;
    })
    .await;
    let unique = new_id();
    let mathematician = json!({
        "unique": unique,
        "name": {"ids": [], "firstName": "Ada", "lastName": "Lovelace"},
    });
    let uuid = new_id();
    let package = json!({"uuid": uuid, "name": "small"});
    for (path, body, status) in [
        ("/api/mathematicians", mathematician, 201),
        ("/api/2/packages", package, 303),
    ] {
        let first = send(&server, "POST", path, &[], Some(body.clone())).await;
        assert_eq!(first.status, status, "{first:?}");
        let before = send(&server, "GET", DATASETS, &[], None).await.tag();
        let retry = send(&server, "POST", path, &[], Some(body)).await;
        assert_eq!(
            retry.status, status,
            "a retried create of {path}: {retry:?}"
        );
        assert_eq!(retry.etag(), first.etag(), "{retry:?}");
        assert_eq!(retry.tag(), before, "the retry changed nothing: {retry:?}");
    }
    // A duplicate create edits nothing either: it meets its 409, which no If-Match would
    // change.
    let dataset_id = new_id();
    create(&server, &dataset_id).await;
    let duplicate = send(
        &server,
        "POST",
        DATASETS,
        &[],
        Some(json!({"primary": NODE_1, "dataset_id": dataset_id})),
    )
    .await;
    assert_eq!(duplicate.status, 409, "{duplicate:?}");
    let container = json!({"name": "web", "node_uuid": NODE_0, "image": "nginx"});
    let created = send(&server, "POST", CONTAINERS, &[], Some(container.clone())).await;
    assert_eq!(created.status, 201, "{created:?}");
    let duplicate = send(&server, "POST", CONTAINERS, &[], Some(container)).await;
    assert_eq!(duplicate.status, 409, "{duplicate:?}");

    // An edit of what exists still needs a validator.
    let rename = json!({
        "unique": unique,
        "name": {"ids": [], "firstName": "Augusta", "lastName": "King"},
    });
    let path = format!("/api/mathematicians/{unique}");
    let answer = send(&server, "PUT", &path, &[], Some(rename)).await;
    assert_eq!(answer.status, 428, "{answer:?}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// X-If-Configuration-Matches comes first; the Off policy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn configuration_tag_is_checked_before_etags() {
    let server = TestServer::start().await;
    let id = new_id();
    let created = create(&server, &id).await;
    let stale = created.tag();
    create(&server, &new_id()).await;
    let current = send(&server, "GET", DATASETS, &[], None).await.tag();
    for if_match in [created.etag(), OTHER_ETAG.to_string()] {
        let answer = send(
            &server,
            "POST",
            &dataset_path(&id),
            &[(XIC, stale.clone()), (IM, if_match)],
            Some(json!({"primary": NODE_1})),
        )
        .await;
        assert_eq!(answer.status, 412, "{answer:?}");
        assert_eq!(
            answer.description(),
            format!("Tag doesn't match. Required: {stale}, current: {current}")
        );
    }
    assert_eq!(get(&server, &id).await.etag(), created.etag());
    server.stop().await;
}

#[tokio::test]
async fn off_policy_sends_no_validators_and_ignores_them() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.if_match = IfMatchPolicy::Off;
    })
    .await;
    let id = new_id();
    let created = create(&server, &id).await;
    let no_validators = |answer: &Answer, what: &str| {
        assert_eq!(answer.header("etag"), None, "{what}: {answer:?}");
        assert_eq!(answer.header("last-modified"), None, "{what}: {answer:?}");
    };
    no_validators(&created, "create");
    let read = get(&server, &id).await;
    assert_eq!(read.status, 200);
    no_validators(&read, "GET");
    let read = send(
        &server,
        "GET",
        &dataset_path(&id),
        &[(INM, "*".into())],
        None,
    )
    .await;
    assert_eq!(read.status, 200, "If-None-Match is ignored: {read:?}");
    let read = send(
        &server,
        "GET",
        &dataset_path(&id),
        &[(IM, OTHER_ETAG.into())],
        None,
    )
    .await;
    assert_eq!(read.status, 200, "If-Match is ignored: {read:?}");
    for path in [DATASETS, LEASES] {
        let list = send(&server, "GET", path, &[(INM, "*".into())], None).await;
        assert_eq!(list.status, 200, "{path}: {list:?}");
        no_validators(&list, path);
    }
    let moved = send(
        &server,
        "POST",
        &dataset_path(&id),
        &[(IM, OTHER_ETAG.into())],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(
        moved.status, 200,
        "a wrong If-Match still succeeds: {moved:?}"
    );
    no_validators(&moved, "move");
    let duplicate = send(
        &server,
        "POST",
        DATASETS,
        &[(INM, "*".into())],
        Some(json!({"primary": NODE_0, "dataset_id": id})),
    )
    .await;
    assert_eq!(
        duplicate.status, 409,
        "If-None-Match is ignored: {duplicate:?}"
    );
    let lease = send(
        &server,
        "POST",
        LEASES,
        &[(IM, "*".into())],
        Some(json!({"dataset_id": id, "node_uuid": NODE_0, "expires": null})),
    )
    .await;
    assert_eq!(lease.status, 201, "{lease:?}");
    no_validators(&lease, "lease acquire");
    // The configuration tag is still honoured.
    let answer = send(
        &server,
        "DELETE",
        &dataset_path(&id),
        &[(XIC, created.tag())],
        None,
    )
    .await;
    assert_eq!(answer.status, 412, "{answer:?}");
    assert!(
        answer.description().starts_with("Tag doesn't match"),
        "{answer:?}"
    );
    let deleted = send(&server, "DELETE", &dataset_path(&id), &[], None).await;
    assert_eq!(deleted.status, 200);
    no_validators(&deleted, "delete");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------------

fn key(value: &str) -> (&'static str, String) {
    ("Idempotency-Key", format!("\"{value}\""))
}

/// The replay must repeat the first answer exactly, plus `Idempotent-Replayed: true`.
fn assert_replay_of(first: &Answer, replay: &Answer) {
    assert!(
        !first.replayed(),
        "the first answer is not a replay: {first:?}"
    );
    assert!(
        replay.replayed(),
        "no Idempotent-Replayed: true in {replay:?}"
    );
    assert_eq!(replay.status, first.status, "{replay:?}");
    assert_eq!(replay.text, first.text, "the replayed body differs");
    for name in [
        "etag",
        "x-configuration-tag",
        "content-type",
        "last-modified",
    ] {
        assert_eq!(
            replay.header(name),
            first.header(name),
            "replayed header {name}"
        );
    }
}

async fn dataset_count(server: &TestServer) -> usize {
    send(server, "GET", DATASETS, &[], None)
        .await
        .json()
        .as_array()
        .expect("a list")
        .len()
}

#[tokio::test]
async fn idempotent_writes_replay_their_first_answer() {
    let server = TestServer::start().await;
    let body = json!({"primary": NODE_0});

    // A create with a generated id: the replay names the same dataset and creates nothing.
    let first = send(
        &server,
        "POST",
        DATASETS,
        &[key("create-1")],
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 201, "{first:?}");
    let tag_after = send(&server, "GET", DATASETS, &[], None).await.tag();
    for _ in 0..2 {
        let replay = send(
            &server,
            "POST",
            DATASETS,
            &[key("create-1")],
            Some(body.clone()),
        )
        .await;
        assert_replay_of(&first, &replay);
    }
    assert_eq!(dataset_count(&server).await, 1);
    assert_eq!(
        send(&server, "GET", DATASETS, &[], None).await.tag(),
        tag_after
    );

    // An unquoted token is accepted as a key too.
    let token = ("Idempotency-Key", "token-key-1".to_string());
    let first_token = send(
        &server,
        "POST",
        DATASETS,
        std::slice::from_ref(&token),
        Some(body.clone()),
    )
    .await;
    assert_eq!(first_token.status, 201, "{first_token:?}");
    let replay = send(&server, "POST", DATASETS, &[token], Some(body.clone())).await;
    assert_replay_of(&first_token, &replay);
    assert_eq!(dataset_count(&server).await, 2);

    // The same key for another body or another path: 422.
    let dataset_id = first.json()["dataset_id"].as_str().unwrap().to_string();
    let reuse = send(
        &server,
        "POST",
        DATASETS,
        &[key("create-1")],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(reuse.status, 422, "{reuse:?}");
    assert_eq!(reuse.description(), KEY_REUSED);
    let reuse = send(
        &server,
        "POST",
        &dataset_path(&dataset_id),
        &[key("create-1")],
        Some(body.clone()),
    )
    .await;
    assert_eq!(reuse.status, 422, "{reuse:?}");
    assert_eq!(reuse.description(), KEY_REUSED);
    assert_eq!(dataset_count(&server).await, 2);

    // A move and a delete replay too, and are not applied again.
    let path = dataset_path(&dataset_id);
    let moved = send(
        &server,
        "POST",
        &path,
        &[key("move-1")],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(moved.status, 200);
    send(
        &server,
        "POST",
        &path,
        &[],
        Some(json!({"primary": NODE_0})),
    )
    .await;
    let replay = send(
        &server,
        "POST",
        &path,
        &[key("move-1")],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_replay_of(&moved, &replay);
    assert_eq!(get(&server, &dataset_id).await.json()["primary"], NODE_0);
    let deleted = send(&server, "DELETE", &path, &[key("delete-1")], None).await;
    assert_eq!(deleted.status, 200);
    let replay = send(&server, "DELETE", &path, &[key("delete-1")], None).await;
    assert_replay_of(&deleted, &replay);

    // 4xx answers decided by the operation are recorded: 404, 409 (a precondition's 412 is
    // not; see `precondition_refusals_are_not_recorded`).
    let missing = new_id();
    let not_found = send(
        &server,
        "POST",
        &dataset_path(&missing),
        &[key("404")],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(not_found.status, 404, "{not_found:?}");
    create(&server, &missing).await;
    let replay = send(
        &server,
        "POST",
        &dataset_path(&missing),
        &[key("404")],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_replay_of(&not_found, &replay);
    assert_eq!(get(&server, &missing).await.json()["primary"], NODE_0);

    let duplicate_body = json!({"primary": NODE_0, "dataset_id": missing});
    let conflict = send(
        &server,
        "POST",
        DATASETS,
        &[key("409")],
        Some(duplicate_body.clone()),
    )
    .await;
    assert_eq!(conflict.status, 409, "{conflict:?}");
    let replay = send(
        &server,
        "POST",
        DATASETS,
        &[key("409")],
        Some(duplicate_body),
    )
    .await;
    assert_replay_of(&conflict, &replay);

    let stale = send(
        &server,
        "POST",
        &dataset_path(&missing),
        &[key("412"), (IM, OTHER_ETAG.into())],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    let again = send(
        &server,
        "POST",
        &dataset_path(&missing),
        &[key("412"), (IM, OTHER_ETAG.into())],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(again.status, 412, "evaluated again: {again:?}");
    assert!(!again.replayed(), "{again:?}");

    // A lease acquire replays its 201 (a second, real acquire would say 200).
    let lease = json!({"dataset_id": missing, "node_uuid": NODE_0, "expires": null});
    let acquired = send(
        &server,
        "POST",
        LEASES,
        &[key("lease-1")],
        Some(lease.clone()),
    )
    .await;
    assert_eq!(acquired.status, 201, "{acquired:?}");
    let replay = send(&server, "POST", LEASES, &[key("lease-1")], Some(lease)).await;
    assert_replay_of(&acquired, &replay);
    let released = send(
        &server,
        "DELETE",
        &format!("{LEASES}/{missing}"),
        &[key("release-1")],
        None,
    )
    .await;
    assert_eq!(released.status, 200);
    let replay = send(
        &server,
        "DELETE",
        &format!("{LEASES}/{missing}"),
        &[key("release-1")],
        None,
    )
    .await;
    assert_replay_of(&released, &replay);
    server.stop().await;
}

/// A key is the sender's own: another user who picks the same key has their request done,
/// not answered with the first user's result (and a different body is no reuse either).
#[tokio::test]
async fn idempotency_keys_are_kept_per_user() {
    let (server, admin) = TestServer::start_with_auth().await;
    let mut bearers = Vec::new();
    for name in ["alice", "bob"] {
        server
            .create_user(
                &admin,
                name,
                "secret",
                json!([["cloud", "datasets", "create"]]),
            )
            .await;
        let login = server
            .client
            .post(server.url("/api/0.1.0/sessions"))
            .json(&json!({"user": name, "password": "secret"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 303, "log in {name}");
        let token = login.headers()["x-snarl-token"].to_str().unwrap();
        bearers.push(("Authorization", format!("Bearer {token}")));
    }
    let body = json!({"primary": NODE_0});
    let create = |bearer: &(&'static str, String), body: &Value| {
        let headers = [bearer.clone(), key("1")];
        let body = body.clone();
        let server = &server;
        async move { send(server, "POST", DATASETS, &headers, Some(body)).await }
    };
    let alices = create(&bearers[0], &body).await;
    assert_eq!(alices.status, 201, "{alices:?}");
    let bobs = create(&bearers[1], &body).await;
    assert_eq!(bobs.status, 201, "{bobs:?}");
    assert!(!bobs.replayed(), "bob got alice's answer: {bobs:?}");
    let id = |answer: &Answer| answer.json()["dataset_id"].as_str().unwrap().to_string();
    assert_ne!(id(&bobs), id(&alices), "one dataset for two users");
    // Each user's retry replays their own answer.
    assert_replay_of(&alices, &create(&bearers[0], &body).await);
    assert_replay_of(&bobs, &create(&bearers[1], &body).await);
    // The key is bob's now too: another body under it is a reuse for bob alone.
    let other = json!({"primary": NODE_1});
    assert_eq!(create(&bearers[1], &other).await.status, 422);
    server.stop().await;
}

#[tokio::test]
async fn malformed_idempotency_keys_are_refused_on_writes_and_ignored_on_reads() {
    let server = TestServer::start().await;
    let body = Some(json!({"primary": NODE_0}));
    let long = "k".repeat(256);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("empty quoted", vec![("Idempotency-Key", "\"\"".into())]),
        ("empty", vec![("Idempotency-Key", String::new())]),
        ("unterminated", vec![("Idempotency-Key", "\"abc".into())]),
        ("256 characters", vec![key(&long)]),
        ("two lines", vec![key("a"), key("b")]),
    ];
    for (what, headers) in cases {
        let answer = send(&server, "POST", DATASETS, &headers, body.clone()).await;
        assert_eq!(answer.status, 400, "{what}: {answer:?}");
        assert!(
            answer.description().contains("Idempotency-Key"),
            "{what}: {answer:?}"
        );
        // A read is safe to retry without a key: one sent with it is ignored, not checked.
        for path in [DATASETS, "/v1/configuration/leases", "/api/mathematicians"] {
            let read = send(&server, "GET", path, &headers, None).await;
            assert_eq!(read.status, 200, "{what}, GET {path}: {read:?}");
        }
    }
    assert_eq!(dataset_count(&server).await, 0);
    // 255 characters are fine.
    let answer = send(&server, "POST", DATASETS, &[key(&"k".repeat(255))], body).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    server.stop().await;
}

#[tokio::test]
async fn body_validation_400s_are_not_recorded() {
    let server = TestServer::start().await;
    let bad = send(
        &server,
        "POST",
        DATASETS,
        &[key("fix-me")],
        Some(json!({"primary": NODE_0, "junk": 1})),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let fixed = send(
        &server,
        "POST",
        DATASETS,
        &[key("fix-me")],
        Some(json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(
        fixed.status, 201,
        "the 400 must not have been recorded: {fixed:?}"
    );
    assert!(!fixed.replayed());
    let replay = send(
        &server,
        "POST",
        DATASETS,
        &[key("fix-me")],
        Some(json!({"primary": NODE_0})),
    )
    .await;
    assert_replay_of(&fixed, &replay);
    assert_eq!(dataset_count(&server).await, 1);
    server.stop().await;
}

/// A refusal for preconditions depends on headers the fingerprint leaves out, and changed
/// nothing: the request corrected with fresh validators, under the same key, is applied.
#[tokio::test]
async fn precondition_refusals_are_not_recorded() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.if_match = IfMatchPolicy::Required;
    })
    .await;
    let id = new_id();
    let path = dataset_path(&id);
    let stale = create(&server, &id).await.etag();
    let moved = send(
        &server,
        "POST",
        &path,
        &[("If-Match", stale.clone())],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    let move_back = |validators: Vec<(&'static str, String)>| {
        let (server, path) = (&server, &path);
        async move {
            let mut headers = vec![key("move-back")];
            headers.extend(validators);
            let body = json!({"primary": NODE_0});
            send(server, "POST", path, &headers, Some(body)).await
        }
    };
    let stale_validator = move_back(vec![("If-Match", stale)]).await;
    assert_eq!(stale_validator.status, 412, "{stale_validator:?}");
    let no_validator = move_back(vec![]).await;
    assert_eq!(no_validator.status, 428, "{no_validator:?}");
    assert!(!no_validator.replayed(), "the 412 was not recorded");

    let fresh = get(&server, &id).await.etag();
    let corrected = move_back(vec![("If-Match", fresh.clone())]).await;
    assert_eq!(corrected.status, 200, "nor the 428: {corrected:?}");
    assert!(!corrected.replayed());
    assert_eq!(get(&server, &id).await.json()["primary"], NODE_0);
    // What was applied is what the key now replays.
    let replay = move_back(vec![("If-Match", fresh)]).await;
    assert_replay_of(&corrected, &replay);
    server.stop().await;
}

#[tokio::test]
async fn idempotency_records_survive_a_restart() {
    let server = TestServer::start().await;
    let body = json!({"primary": NODE_0});
    let first = send(
        &server,
        "POST",
        DATASETS,
        &[key("durable")],
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 201);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let replay = send(&server, "POST", DATASETS, &[key("durable")], Some(body)).await;
    assert_replay_of(&first, &replay);
    assert_eq!(dataset_count(&server).await, 1);
    let reuse = send(
        &server,
        "POST",
        DATASETS,
        &[key("durable")],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(reuse.status, 422, "{reuse:?}");
    server.stop().await;
}

#[tokio::test]
async fn idempotency_keys_expire_after_the_ttl() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.idempotency_ttl = 1;
    })
    .await;
    let body = json!({"primary": NODE_0});
    let first = send(
        &server,
        "POST",
        DATASETS,
        &[key("short-lived")],
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 201);
    let created_at = Instant::now();
    let replay = send(
        &server,
        "POST",
        DATASETS,
        &[key("short-lived")],
        Some(body.clone()),
    )
    .await;
    assert_replay_of(&first, &replay);
    let fresh = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let answer = send(
            &server,
            "POST",
            DATASETS,
            &[key("short-lived")],
            Some(body.clone()),
        )
        .await;
        if !answer.replayed() {
            break answer;
        }
        assert!(
            created_at.elapsed() < Duration::from_secs(5),
            "the key was still remembered after 5 s with a 1 s TTL"
        );
    };
    assert_eq!(fresh.status, 201, "{fresh:?}");
    assert_ne!(fresh.json()["dataset_id"], first.json()["dataset_id"]);
    assert_eq!(dataset_count(&server).await, 2);
    server.stop().await;
}

/// Creates a dataset under `Idempotency-Key: name`, a few milliseconds after the last: answers
/// recorded in one millisecond are ordered by key, and these tests need them ordered by age.
async fn create_keyed(server: &TestServer, name: &str) -> Answer {
    tokio::time::sleep(Duration::from_millis(3)).await;
    let body = json!({"primary": NODE_0});
    send(server, "POST", DATASETS, &[key(name)], Some(body)).await
}

#[tokio::test]
async fn past_the_key_cap_the_oldest_answer_is_forgotten_also_across_a_restart() {
    let with_cap = |config: &mut floe::config::ServeConfig| config.idempotency_max_keys = 3;
    let server = TestServer::start_in(TempDir::new().unwrap(), with_cap).await;
    let mut first = std::collections::HashMap::new();
    for name in ["cap-1", "cap-2", "cap-3", "cap-4"] {
        let answer = create_keyed(&server, name).await;
        assert_eq!(answer.status, 201, "{name}: {answer:?}");
        first.insert(name, answer);
    }
    for name in ["cap-2", "cap-3", "cap-4"] {
        let replay = create_keyed(&server, name).await;
        assert_replay_of(&first[name], &replay);
    }
    // The fourth answer evicted the oldest: its retry is a new request, applied again.
    let again = create_keyed(&server, "cap-1").await;
    assert_eq!(again.status, 201, "{again:?}");
    assert!(!again.replayed(), "the evicted key was replayed: {again:?}");
    assert_ne!(
        again.json()["dataset_id"],
        first["cap-1"].json()["dataset_id"]
    );
    assert_eq!(dataset_count(&server).await, 5);
    first.insert("cap-1", again);

    // Recording it again evicted cap-2, the oldest then; the disk agrees after a restart.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, with_cap).await;
    for name in ["cap-3", "cap-4", "cap-1"] {
        let replay = create_keyed(&server, name).await;
        assert_replay_of(&first[name], &replay);
    }
    let again = create_keyed(&server, "cap-2").await;
    assert!(!again.replayed(), "cap-2 was kept past the cap: {again:?}");
    // The order by age was rebuilt at start: cap-3 is now the oldest, and went.
    let again = create_keyed(&server, "cap-3").await;
    assert!(!again.replayed(), "cap-3 was kept past the cap: {again:?}");
    assert_replay_of(&first["cap-1"], &create_keyed(&server, "cap-1").await);
    assert_eq!(dataset_count(&server).await, 7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_with_one_key_apply_once() {
    let server = TestServer::start().await;
    let url = server.url(DATASETS);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = server.client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            send_with(
                &client,
                &url,
                "POST",
                &[key("together")],
                Some(json!({"primary": NODE_0})),
            )
            .await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let created: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    assert!(!created.is_empty(), "nobody got 201: {answers:?}");
    assert_eq!(
        created.iter().filter(|a| !a.replayed()).count(),
        1,
        "exactly one answer is the original: {answers:?}"
    );
    for answer in &answers {
        match answer.status {
            201 => assert_eq!(answer.text, created[0].text),
            409 => {}
            other => panic!("unexpected {other}: {answer:?}"),
        }
    }
    assert_eq!(dataset_count(&server).await, 1);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The lost-update race
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_one_of_32_concurrent_conditional_moves_wins() {
    let server = TestServer::start().await;
    let id = new_id();
    create(&server, &id).await;
    let url = Arc::new(server.url(&dataset_path(&id)));
    for round in 0..20 {
        let etag = get(&server, &id).await.etag();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let client = server.client.clone();
            let url = url.clone();
            let etag = etag.clone();
            let primary = new_id();
            tasks.push(tokio::spawn(async move {
                let answer = send_with(
                    &client,
                    &url,
                    "POST",
                    &[(IM, etag)],
                    Some(json!({"primary": primary})),
                )
                .await;
                (primary, answer)
            }));
        }
        let mut winners = Vec::new();
        let mut refused = 0;
        for task in tasks {
            let (primary, answer) = task.await.unwrap();
            match answer.status {
                200 => winners.push((primary, answer)),
                412 => {
                    assert_eq!(answer.description(), ETAGS_DONT_MATCH);
                    refused += 1;
                }
                other => panic!("round {round}: unexpected {other}: {answer:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        assert_eq!(refused, 31, "round {round}");
        let now = get(&server, &id).await;
        let (primary, answer) = &winners[0];
        assert_eq!(now.json()["primary"], primary.as_str(), "round {round}");
        assert_eq!(now.etag(), answer.etag(), "round {round}");
    }
    server.stop().await;
}

/// RFC 9110 §13.2.1: an error a request meets anyway, such as the 404 for a missing resource,
/// takes precedence over its preconditions; only a request that would succeed (a create
/// under `If-Match`) answers 412. Each request is sent with a failing `If-Match` first, then
/// without it: where the plain one fails, the conditional one must fail the same way.
#[tokio::test]
async fn a_failed_if_match_on_a_missing_resource_answers_what_the_request_meets_anyway() {
    let server = TestServer::start().await;
    let missing = new_id();
    let mathematician = json!({
        "unique": missing,
        "name": { "ids": [], "firstName": "Emmy", "lastName": "Noether" },
    });
    let cases = [
        ("DELETE", dataset_path(&missing), None),
        (
            "POST",
            dataset_path(&missing),
            Some(json!({"primary": NODE_1})),
        ),
        ("DELETE", format!("{LEASES}/{missing}"), None),
        (
            "DELETE",
            "/v1/configuration/containers/site".to_string(),
            None,
        ),
        ("DELETE", format!("/api/2/packages/{missing}"), None),
        (
            "PUT",
            format!("/api/mathematicians/{missing}"),
            Some(mathematician),
        ),
        (
            "POST",
            DATASETS.to_string(),
            Some(json!({"primary": NODE_0, "dataset_id": missing})),
        ),
    ];
    let mut created = 0;
    for (method, path, body) in cases {
        for condition in [OTHER_ETAG, "*"] {
            let conditional = send(
                &server,
                method,
                &path,
                &[(IM, condition.into())],
                body.clone(),
            )
            .await;
            let plain = send(&server, method, &path, &[], body.clone()).await;
            let what = format!("{method} {path} with If-Match: {condition}");
            if (200..300).contains(&plain.status) {
                // It created the resource: the conditional request had no representation
                // to match, and would have created it.
                assert_eq!(conditional.status, 412, "{what}: {conditional:?}");
                created += 1;
                break;
            }
            assert_eq!(
                (conditional.status, &conditional.text),
                (plain.status, &plain.text),
                "{what}: the plain request's answer"
            );
            assert_ne!(plain.status, 412, "{what}: {plain:?}");
        }
    }
    assert!(created >= 1, "no case exercised a create");
    server.stop().await;
}

/// Flocker has no GET of one container, so the answer to a write is where a client learns the
/// container's ETag: creates and moves carry it, it works in `If-Match`, and a tag the
/// container has moved on from is refused with the current one.
#[tokio::test]
async fn container_writes_carry_the_etag_that_if_match_takes() {
    let server = TestServer::start().await;
    let path = "/v1/configuration/containers/site";
    let created = send(
        &server,
        "POST",
        "/v1/configuration/containers",
        &[],
        Some(json!({"name": "site", "node_uuid": NODE_0, "image": "nginx"})),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let first = created.etag();
    assert!(created.header("last-modified").is_some(), "{created:?}");

    let moved = send(
        &server,
        "POST",
        path,
        &[(IM, first.clone())],
        Some(json!({"node_uuid": NODE_1})),
    )
    .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    let second = moved.etag();
    assert_ne!(second, first, "a move changes the representation");

    let stale = send(
        &server,
        "POST",
        path,
        &[(IM, first.clone())],
        Some(json!({"node_uuid": NODE_0})),
    )
    .await;
    assert_eq!(stale.status, 412, "{stale:?}");
    assert_eq!(stale.etag(), second);

    let deleted = send(&server, "DELETE", path, &[(IM, second)], None).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    server.stop().await;
}

/// A list's ETag follows its own kind only, so a 304 for it does not mean the configuration
/// tag is unchanged: every 304 (and a read's 412) carries the current configuration tag, as
/// the 200 would, so that the client's next `X-If-Configuration-Matches` can be current.
#[tokio::test]
async fn a_304_carries_the_current_configuration_tag() {
    let server = TestServer::start().await;
    let id = new_id();
    create(&server, &id).await;
    let list = send(&server, "GET", DATASETS, &[], None).await;
    let one = get(&server, &id).await;
    let before = list.tag();

    // A lease changes the configuration, not the dataset list nor the dataset.
    let lease = json!({"dataset_id": id, "node_uuid": NODE_0, "expires": null});
    let acquired = send(&server, "POST", LEASES, &[], Some(lease)).await;
    assert_eq!(acquired.status, 201, "{acquired:?}");
    let now = acquired.tag();
    assert_ne!(now, before);

    for (path, etag) in [
        (DATASETS.to_string(), list.etag()),
        (dataset_path(&id), one.etag()),
    ] {
        let unchanged = send(&server, "GET", &path, &[(INM, etag.clone())], None).await;
        assert_eq!(unchanged.status, 304, "{path}: {unchanged:?}");
        assert_eq!(unchanged.tag(), now, "{path}");
        assert_eq!(unchanged.etag(), etag, "{path}");
        let refused = send(&server, "GET", &path, &[(IM, OTHER_ETAG.into())], None).await;
        assert_eq!(refused.status, 412, "{path}: {refused:?}");
        assert_eq!(refused.tag(), now, "{path}");
    }
    // The tag the 304 carried is the one a conditional write takes.
    let moved = send(
        &server,
        "POST",
        &dataset_path(&id),
        &[(XIC, now)],
        Some(json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    server.stop().await;
}

/// The lease list's ETag is weak (its seconds left change while its version does not), and
/// If-Match compares strongly: no tag matches it, its own opaque part included.
#[tokio::test]
async fn if_match_never_matches_the_weak_etag_of_the_lease_list() {
    let server = TestServer::start().await;
    let list = send(&server, "GET", LEASES, &[], None).await;
    let weak_etag = list.header("etag").expect("the list has an ETag");
    let opaque = weak_etag
        .strip_prefix("W/")
        .expect("the lease list's ETag is weak")
        .to_string();
    for if_match in [opaque, weak_etag.clone()] {
        let answer = send(&server, "GET", LEASES, &[(IM, if_match.clone())], None).await;
        assert_eq!(answer.status, 412, "If-Match: {if_match}: {answer:?}");
        assert_eq!(answer.header("etag"), None, "nothing If-Match could use");
    }
    let any = send(&server, "GET", LEASES, &[(IM, "*".into())], None).await;
    assert_eq!(any.status, 200, "{any:?}");
    let revalidated = send(&server, "GET", LEASES, &[(INM, weak_etag)], None).await;
    assert_eq!(revalidated.status, 304, "If-None-Match compares weakly");
    server.stop().await;
}

/// A write refused by the store (404, 405, 409, 412, 428) carries the configuration tag it
/// was judged against, as a successful write's answer does, so a client can go on with
/// `X-If-Configuration-Matches` without listing again; with an `Idempotency-Key` the recorded
/// refusal carries it too, and so does its replay.
#[tokio::test]
async fn refused_writes_carry_the_configuration_tag() {
    let server = TestServer::start().await;
    let id = new_id();
    let current = create(&server, &id).await.tag();
    let deleted = new_id();
    create(&server, &deleted).await;
    let current_after = send(&server, "DELETE", &dataset_path(&deleted), &[], None)
        .await
        .tag();
    assert_ne!(current, current_after);
    let current = current_after;
    let create_body = Some(json!({"primary": NODE_0, "dataset_id": id}));
    let refusals = [
        (
            "POST",
            DATASETS.to_string(),
            vec![],
            create_body.clone(),
            409,
        ),
        (
            "POST",
            dataset_path(&new_id()),
            vec![],
            Some(json!({})),
            404,
        ),
        ("POST", dataset_path(&deleted), vec![], Some(json!({})), 405),
        (
            "POST",
            dataset_path(&id),
            vec![("If-Match", "\"stale\"".to_string())],
            Some(json!({})),
            412,
        ),
        (
            "POST",
            DATASETS.to_string(),
            vec![key("refused-create")],
            create_body,
            409,
        ),
    ];
    for (method, path, headers, body, status) in refusals {
        for attempt in ["first", "replay"] {
            let answer = send(&server, method, &path, &headers, body.clone()).await;
            assert_eq!(
                answer.status, status,
                "{method} {path} {headers:?}: {answer:?}"
            );
            assert_eq!(
                answer.tag(),
                current,
                "{attempt} {method} {path} {headers:?}"
            );
        }
    }

    let required = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.if_match = IfMatchPolicy::Required;
    })
    .await;
    let current = create(&required, &id).await.tag();
    let answer = send(&required, "DELETE", &dataset_path(&id), &[], None).await;
    assert_eq!(answer.status, 428, "{answer:?}");
    assert_eq!(answer.tag(), current);
}

/// Creates a package; returns its path.
async fn created_package(server: &TestServer) -> String {
    let package = json!({ "name": "small", "ram": 1024, "quota": 40, "cpu_cap": 100 });
    let created = send(server, "POST", "/api/2/packages", &[], Some(package)).await;
    assert_eq!(created.status, 303, "{created:?}");
    created.header("location").unwrap()
}

/// Creates a mathematician; returns its path and the answer to the POST.
async fn created_mathematician(server: &TestServer) -> (String, Answer) {
    let new = send(server, "GET", "/api/mathematicians/new", &[], None).await;
    let mut mathematician = new.json();
    mathematician["name"]["firstName"] = json!("Ada");
    mathematician["name"]["lastName"] = json!("Lovelace");
    let posted = send(
        server,
        "POST",
        "/api/mathematicians",
        &[],
        Some(mathematician),
    )
    .await;
    assert_eq!(posted.status, 201, "{posted:?}");
    // The Location is absolute: the path starts at `/api/`.
    let location = posted.header("location").unwrap();
    let path = location[location.find("/api/").unwrap()..].to_string();
    (path, posted)
}

/// With entity tags off, no write's answer carries a validator, whatever it writes.
#[tokio::test]
async fn off_policy_write_answers_carry_no_validators() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.if_match = IfMatchPolicy::Off;
    })
    .await;
    let id = new_id();
    let package = created_package(&server).await;
    let (mathematician_path, posted) = created_mathematician(&server).await;
    let mut mathematician = posted.json();
    mathematician["name"]["firstName"] = json!("Augusta");
    let writes: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            DATASETS.into(),
            Some(json!({"primary": NODE_0, "dataset_id": id})),
        ),
        ("POST", dataset_path(&id), Some(json!({"primary": NODE_1}))),
        (
            "POST",
            LEASES.into(),
            Some(json!({"dataset_id": id, "node_uuid": NODE_1, "expires": 60})),
        ),
        ("DELETE", format!("{LEASES}/{id}"), None),
        (
            "POST",
            CONTAINERS.into(),
            Some(json!({"name": "site", "node_uuid": NODE_0, "image": "nginx"})),
        ),
        (
            "POST",
            format!("{CONTAINERS}/site"),
            Some(json!({"node_uuid": NODE_1})),
        ),
        ("PUT", format!("{package}/metadata"), Some(json!({"a": 1}))),
        ("PUT", mathematician_path.clone(), Some(mathematician)),
        ("DELETE", dataset_path(&id), None),
    ];
    for (method, path, body) in writes {
        let answer = send(&server, method, &path, &[], body).await;
        assert!(answer.status < 300, "{method} {path}: {answer:?}");
        assert_eq!(answer.header("etag"), None, "{method} {path}");
        assert_eq!(answer.header("last-modified"), None, "{method} {path}");
    }
    server.stop().await;
}

/// With entity tags off, the packages' and mathematicians' bodies carry no `_etag` either
/// (the times stay: they are data, not validators).
#[tokio::test]
async fn off_policy_puts_no_entity_tag_in_bodies() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.if_match = IfMatchPolicy::Off;
    })
    .await;
    let location = created_package(&server).await;
    let (mathematician_path, _) = created_mathematician(&server).await;
    let mathematician_path = mathematician_path.as_str();
    for (path, body_of) in [
        (location.as_str(), None),
        ("/api/2/packages?full-list=true", Some(0)),
        (mathematician_path, None),
        ("/api/mathematicians", Some(0)),
    ] {
        let answer = send(&server, "GET", path, &[], None).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.header("etag"), None, "{path}");
        let body = answer.json();
        let object = match body_of {
            Some(index) => body[index].clone(),
            None => body,
        };
        assert!(object.get("_updated").is_some(), "{path}: {object}");
        assert!(object.get("_etag").is_none(), "{path}: {object}");
    }
}

/// A write whose path names its resource has its validators evaluated before its body is
/// read (RFC 9110 §13.2.1): a stale `If-Match` or `If-Unmodified-Since` is a 412, with the
/// current ETag, even when the body would have been a 400; a current one lets the 400 through.
/// One write for each kind of write whose path names an existing resource (a dataset move
/// on dataset `id`, which it creates, a container move, a package's metadata, a mathematician's
/// name): its path, the resource's current ETag, and a body that is refused (400).
async fn writes_aimed_at_resources(server: &TestServer, id: &str) -> Vec<(String, String, Value)> {
    let dataset_etag = create(server, id).await.etag();
    let container = send(
        server,
        "POST",
        CONTAINERS,
        &[],
        Some(json!({"name": "site", "node_uuid": NODE_0, "image": "nginx"})),
    )
    .await;
    let container_etag = container.etag();
    let package_path = created_package(server).await;
    let package_etag = send(server, "GET", &package_path, &[], None).await.etag();
    let (mathematician_path, posted) = created_mathematician(server).await;
    let mathematician_etag = posted.etag();
    vec![
        (dataset_path(id), dataset_etag, json!({"primary": 5})),
        (
            format!("{CONTAINERS}/site"),
            container_etag,
            json!({"node_uuid": 5}),
        ),
        (format!("{package_path}/metadata"), package_etag, json!([])),
        (mathematician_path, mathematician_etag, json!({})),
    ]
}

/// The method of a write in [`writes_aimed_at_resources`].
fn write_method(path: &str) -> &'static str {
    if path.starts_with("/api/") {
        "PUT"
    } else {
        "POST"
    }
}

#[tokio::test]
async fn stale_validators_are_412_before_the_body_is_read() {
    let server = TestServer::start().await;
    let id = new_id();
    let writes = writes_aimed_at_resources(&server, &id).await;
    let long_ago = "Sat, 01 Jan 2000 00:00:00 GMT".to_string();
    for (path, current, bad_body) in writes {
        for stale in [
            (IM, OTHER_ETAG.to_string()),
            ("If-Unmodified-Since", long_ago.clone()),
        ] {
            let answer = send(
                &server,
                write_method(&path),
                &path,
                std::slice::from_ref(&stale),
                Some(bad_body.clone()),
            )
            .await;
            assert_eq!(answer.status, 412, "{path} {stale:?}: {answer:?}");
            assert_eq!(answer.etag(), current, "{path}: the current ETag");
            assert!(answer.header("x-configuration-tag").is_some(), "{path}");
        }
        let answer = send(
            &server,
            write_method(&path),
            &path,
            &[(IM, current.clone())],
            Some(bad_body),
        )
        .await;
        assert_eq!(
            answer.status, 400,
            "{path} with its current ETag: {answer:?}"
        );
    }

    // A failed date says so, wherever it is evaluated: before the body, in the writer (a
    // delete), or on a read; a failed entity tag keeps Eve's message.
    let since = [("If-Unmodified-Since", long_ago)];
    let early = send(&server, "POST", &dataset_path(&id), &since, Some(json!({}))).await;
    let in_writer = send(&server, "DELETE", &dataset_path(&id), &since, None).await;
    let on_read = send(&server, "GET", &dataset_path(&id), &since, None).await;
    for answer in [early, in_writer, on_read] {
        assert_eq!(answer.status, 412, "{answer:?}");
        assert_eq!(
            answer.description(),
            "The resource was modified after the If-Unmodified-Since date"
        );
    }
    let by_tag = send(
        &server,
        "DELETE",
        &dataset_path(&id),
        &[(IM, OTHER_ETAG.into())],
        None,
    )
    .await;
    assert_eq!(by_tag.description(), ETAGS_DONT_MATCH);
}

/// Where `If-Match` is required, a write to an existing resource without a validator is a 428
/// even when its body would be a 400, as a stale one is a 412: both are preconditions, judged
/// before the body by the rule the writer uses.
#[tokio::test]
async fn where_validators_are_required_a_missing_one_is_428_before_the_body_is_read() {
    let server = TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.if_match = IfMatchPolicy::Required;
    })
    .await;
    for (path, current, bad_body) in writes_aimed_at_resources(&server, &new_id()).await {
        let method = write_method(&path);
        let missing = send(&server, method, &path, &[], Some(bad_body.clone())).await;
        assert_eq!(missing.status, 428, "{path}: {missing:?}");
        assert!(missing.header("x-configuration-tag").is_some(), "{path}");
        let with_it = send(&server, method, &path, &[(IM, current)], Some(bad_body)).await;
        assert_eq!(with_it.status, 400, "{path}: {with_it:?}");
    }
    server.stop().await;
}

/// A HEAD answered 304 carries no `Content-Length` (a 0 would misstate the length of the
/// representation, RFC 9110 §8.6), as a GET's 304 does not; a HEAD's 200 carries the GET's.
#[tokio::test]
async fn a_head_answered_304_claims_no_length() {
    let (authenticated, admin) = TestServer::start_with_auth().await;
    for (server, auth) in [
        (&TestServer::start().await, None),
        (
            &authenticated,
            Some(("authorization", format!("Bearer {admin}"))),
        ),
    ] {
        let id = new_id();
        let created = send(
            server,
            "POST",
            DATASETS,
            &auth.clone().into_iter().collect::<Vec<_>>(),
            Some(json!({"primary": NODE_0, "dataset_id": id})),
        )
        .await;
        assert_eq!(created.status, 201, "{created:?}");
        for path in [dataset_path(&id), DATASETS.to_string()] {
            let mut headers: Vec<(&str, String)> = auth.clone().into_iter().collect();
            let got = send(server, "GET", &path, &headers, None).await;
            let head = send(server, "HEAD", &path, &headers, None).await;
            assert_eq!(head.status, 200);
            assert_eq!(
                head.header("content-length"),
                Some(got.text.len().to_string()),
                "{path}: a HEAD's length is the GET's"
            );
            headers.push((INM, got.etag()));
            for method in ["GET", "HEAD"] {
                let answer = send(server, method, &path, &headers, None).await;
                assert_eq!(answer.status, 304, "{method} {path}");
                assert_eq!(answer.header("content-length"), None, "{method} {path}");
            }
        }
    }
}
