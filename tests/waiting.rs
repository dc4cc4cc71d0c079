//! Waiting for change instead of polling: a GET of a configuration list (datasets, leases,
//! containers, mathematicians) or a state list (state datasets, nodes, containers) carrying
//! `If-None-Match: <its current ETag>` and `Prefer: wait=N` is held until the list changes
//! (200 with the new ETag) or N seconds pass (304), N capped by `--max-wait`. Measured over
//! real HTTP: release by a change, timeout, cap, no wait without the headers, configuration
//! and state waiters woken only by their own changes, and 1,000 concurrent waiters released
//! by one change.
mod common;

use std::time::{Duration, Instant};

use common::http::{Answer, send};
use common::{NODE_0, NODE_1, TestServer};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;

const DATASETS: &str = "/v1/configuration/datasets";
const LEASES: &str = "/v1/configuration/leases";
const CONTAINERS: &str = "/v1/configuration/containers";
const MATHEMATICIANS: &str = "/api/mathematicians";
const PACKAGES: &str = "/api/2/packages";
const STATE_DATASETS: &str = "/v1/state/datasets";
const STATE_NODES: &str = "/v1/state/nodes";
const STATE_CONTAINERS: &str = "/v1/state/containers";

/// A server whose waits are capped at `max_wait` seconds.
async fn server(max_wait: u64) -> TestServer {
    TestServer::start_in(TempDir::new().unwrap(), |config| {
        config.node_expiry = 60;
        config.max_wait = max_wait;
    })
    .await
}

fn etag_of(answer: &Answer) -> String {
    answer
        .headers
        .get("etag")
        .unwrap_or_else(|| panic!("no ETag on a {} answer: {}", answer.status, answer.text))
        .to_str()
        .unwrap()
        .to_string()
}

async fn current_etag(s: &TestServer, path: &str) -> String {
    let answer = send(s.client.get(s.url(path))).await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.text);
    etag_of(&answer)
}

/// A waiting GET, answered with when it ended.
struct Waited {
    answer: Answer,
    started: Instant,
    ended: Instant,
}

impl Waited {
    fn took(&self) -> Duration {
        self.ended - self.started
    }
}

/// Starts a GET of `path` with `If-None-Match: etag` and `Prefer: <prefer>` in the background.
fn start_waiting(s: &TestServer, path: &str, etag: &str, prefer: &str) -> JoinHandle<Waited> {
    let request = s
        .client
        .get(s.url(path))
        .header("if-none-match", etag)
        .header("prefer", prefer);
    tokio::spawn(async move {
        let started = Instant::now();
        let answer = send(request).await;
        Waited {
            answer,
            started,
            ended: Instant::now(),
        }
    })
}

async fn wait_for(s: &TestServer, path: &str, etag: &str, prefer: &str) -> Waited {
    start_waiting(s, path, etag, prefer).await.unwrap()
}

fn assert_within(took: Duration, min_ms: u64, max_ms: u64, what: &str) {
    assert!(
        took >= Duration::from_millis(min_ms) && took <= Duration::from_millis(max_ms),
        "{what} took {took:?}, expected {min_ms}..{max_ms} ms"
    );
}

/// Asserts a 304 carrying `etag` and no body.
fn assert_not_modified(waited: &Waited, etag: &str, what: &str) {
    assert_eq!(waited.answer.status, 304, "{what}: {}", waited.answer.text);
    assert!(waited.answer.text.is_empty(), "{what}: a 304 has no body");
    assert_eq!(etag_of(&waited.answer), etag, "{what}: the 304's ETag");
}

async fn report(s: &TestServer, node: &str, body: &Value) {
    let answer = send(
        s.client
            .put(s.url(&format!("/v1/agent/nodes/{node}")))
            .json(body),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

fn node_report(dataset: &str, container: &str) -> Value {
    json!({
        "host": "10.0.0.1",
        "era": "5f0c2a3e-7d4b-4c1a-9e2f-0a1b2c3d4e5f",
        "datasets": [{"dataset_id": dataset, "path": format!("/flocker/{dataset}")}],
        "nonmanifest_datasets": [],
        "containers": [{"name": container, "image": "nginx", "running": true}],
    })
}

async fn create_dataset(s: &TestServer) -> Answer {
    let answer = send(
        s.client
            .post(s.url(DATASETS))
            .json(&json!({ "primary": NODE_0 })),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer
}

/// One change to each list: what to wait on, and the write that changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Dataset,
    Lease,
    Container,
    Mathematician,
}

impl Change {
    fn path(self) -> &'static str {
        match self {
            Change::Dataset => DATASETS,
            Change::Lease => LEASES,
            Change::Container => CONTAINERS,
            Change::Mathematician => MATHEMATICIANS,
        }
    }

    /// Prepares the write (anything that is not itself a change) and returns it unsent.
    async fn prepare(self, s: &TestServer) -> reqwest::RequestBuilder {
        match self {
            Change::Dataset => s
                .client
                .post(s.url(DATASETS))
                .json(&json!({ "primary": NODE_0 })),
            Change::Lease => s.client.post(s.url(LEASES)).json(&json!({
                "dataset_id": uuid::Uuid::new_v4().to_string(),
                "node_uuid": NODE_0,
                "expires": null,
            })),
            Change::Container => s.client.post(s.url(CONTAINERS)).json(&json!({
                "node_uuid": NODE_0, "name": "web", "image": "nginx",
            })),
            Change::Mathematician => {
                // Minting a unique is not a change.
                let minted = send(s.client.get(s.url("/api/mathematicians/new"))).await;
                assert_eq!(minted.status, 200, "{}", minted.text);
                let unique = minted.body["unique"].as_str().unwrap().to_string();
                s.client.post(s.url(MATHEMATICIANS)).json(&json!({
                    "unique": unique,
                    "name": {"ids": [], "firstName": "Emmy", "lastName": "Noether"},
                }))
            }
        }
    }
}

#[tokio::test]
async fn a_held_configuration_list_is_released_by_a_change() {
    for change in [
        Change::Dataset,
        Change::Lease,
        Change::Container,
        Change::Mathematician,
    ] {
        let s = server(5).await;
        let path = change.path();
        let before = current_etag(&s, path).await;
        let write = change.prepare(&s).await;
        let held = start_waiting(&s, path, &before, "wait=5");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !held.is_finished(),
            "{change:?}: answered before any change"
        );
        let changed_at = Instant::now();
        let written = send(write).await;
        assert!(
            written.status == 200 || written.status == 201,
            "{change:?}: {}",
            written.text
        );
        let waited = held.await.unwrap();
        let after_change = waited.ended - changed_at;
        assert!(
            after_change < Duration::from_secs(1),
            "{change:?}: released {after_change:?} after the change"
        );
        assert_within(waited.took(), 450, 1_600, &format!("{change:?} wait"));
        assert_eq!(
            waited.answer.status, 200,
            "{change:?}: {}",
            waited.answer.text
        );
        let new_etag = etag_of(&waited.answer);
        assert_ne!(new_etag, before, "{change:?}");
        assert_eq!(new_etag, current_etag(&s, path).await, "{change:?}");
        assert_eq!(
            waited.answer.body.as_array().map(Vec::len),
            Some(1),
            "{change:?}: the new list: {}",
            waited.answer.text
        );
    }
}

#[tokio::test]
async fn held_state_lists_are_released_by_a_report() {
    let s = server(5).await;
    let paths = [STATE_DATASETS, STATE_NODES, STATE_CONTAINERS];
    let mut held = Vec::new();
    for path in paths {
        let before = current_etag(&s, path).await;
        held.push((
            path,
            before.clone(),
            start_waiting(&s, path, &before, "wait=5"),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(held.iter().all(|(_, _, h)| !h.is_finished()));
    let changed_at = Instant::now();
    report(
        &s,
        NODE_0,
        &node_report("00000000-0000-4000-8000-000000000001", "web"),
    )
    .await;
    for (path, before, handle) in held {
        let waited = handle.await.unwrap();
        let after_change = waited.ended - changed_at;
        assert!(
            after_change < Duration::from_secs(1),
            "{path}: released {after_change:?} after the change"
        );
        assert_eq!(waited.answer.status, 200, "{path}: {}", waited.answer.text);
        assert_ne!(etag_of(&waited.answer), before, "{path}");
        assert_eq!(
            waited.answer.body.as_array().map(Vec::len),
            Some(1),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_wait_with_no_change_ends_in_304_after_n_seconds() {
    let s = server(5).await;
    report(
        &s,
        NODE_0,
        &node_report("00000000-0000-4000-8000-000000000001", "web"),
    )
    .await;
    let mut held = Vec::new();
    for path in [DATASETS, LEASES, CONTAINERS, MATHEMATICIANS, STATE_NODES] {
        let etag = current_etag(&s, path).await;
        held.push((path, etag.clone(), start_waiting(&s, path, &etag, "wait=1")));
    }
    // A refresh that repeats the same report is no change: the state waiter keeps waiting.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        report(
            &s,
            NODE_0,
            &node_report("00000000-0000-4000-8000-000000000001", "web"),
        )
        .await;
    }
    for (path, etag, handle) in held {
        let waited = handle.await.unwrap();
        assert_not_modified(&waited, &etag, path);
        assert_within(waited.took(), 950, 1_700, path);
    }
}

#[tokio::test]
async fn waits_are_capped_by_max_wait() {
    let s = server(1).await;
    let (config, state) = (
        current_etag(&s, DATASETS).await,
        current_etag(&s, STATE_NODES).await,
    );
    let held_config = start_waiting(&s, DATASETS, &config, "wait=60");
    let held_state = start_waiting(&s, STATE_NODES, &state, "wait=3600");
    for (what, handle, etag) in [
        ("configuration", held_config, config),
        ("state", held_state, state),
    ] {
        let waited = handle.await.unwrap();
        assert_not_modified(&waited, &etag, what);
        assert_within(waited.took(), 950, 1_800, what);
    }
}

/// A wait as long as `--max-wait` allows at its largest is held, not a panic: a change
/// still releases it with the new list.
#[tokio::test]
async fn the_longest_wait_there_is_is_held_until_a_change() {
    let s = server(u64::MAX).await;
    let etag = current_etag(&s, DATASETS).await;
    let held = start_waiting(&s, DATASETS, &etag, &format!("wait={}", u64::MAX));
    tokio::time::sleep(Duration::from_millis(200)).await;
    create_dataset(&s).await;
    let waited = held.await.expect("the held request is answered");
    assert_eq!(waited.answer.status, 200, "{}", waited.answer.text);
    assert_ne!(etag_of(&waited.answer), etag);
}

/// Each configuration list has a version of its own: a write to one kind releases the
/// requests waiting on that kind's list and leaves the others waiting (their ETags do not
/// change), so that agents waiting on datasets do not wake for every lease or mathematician.
#[tokio::test]
async fn a_write_releases_only_the_waiters_on_its_own_list() {
    let kinds = [
        Change::Dataset,
        Change::Lease,
        Change::Container,
        Change::Mathematician,
    ];
    for change in kinds {
        let s = server(5).await;
        let write = change.prepare(&s).await;
        let mut held = Vec::new();
        for other in kinds {
            let path = other.path();
            let etag = current_etag(&s, path).await;
            held.push((
                other,
                etag.clone(),
                start_waiting(&s, path, &etag, "wait=1"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let written = send(write).await;
        assert!(written.status < 300, "{change:?}: {}", written.text);
        for (other, etag, handle) in held {
            let waited = handle.await.unwrap();
            let what = format!("{other:?} list after a {change:?} write");
            if other == change {
                assert_eq!(waited.answer.status, 200, "{what}");
                assert_within(waited.took(), 150, 900, &what);
            } else {
                assert_not_modified(&waited, &etag, &what);
                assert_within(waited.took(), 950, 1_700, &what);
            }
        }
    }
}

/// A held wait is a request in flight, which a graceful stop lets finish: the stop releases
/// it (304, nothing changed) at once instead of lasting as long as the wait asked for.
#[tokio::test]
async fn a_stop_releases_held_waits_at_once() {
    let s = server(300).await;
    let mut held = Vec::new();
    for path in [DATASETS, PACKAGES, STATE_NODES] {
        let etag = current_etag(&s, path).await;
        held.push((
            path,
            etag.clone(),
            start_waiting(&s, path, &etag, "wait=60"),
        ));
    }
    // Long enough for every request to be held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    let stopped = tokio::spawn(s.stop());
    for (path, etag, handle) in held {
        let waited = handle.await.unwrap();
        assert_not_modified(&waited, &etag, path);
        assert_within(waited.took(), 250, 5_000, path);
    }
    stopped.await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the stop took {:?}",
        stopping.elapsed()
    );
}

#[tokio::test]
async fn no_wait_without_prefer_or_with_a_stale_etag() {
    let s = server(5).await;
    create_dataset(&s).await;
    for path in [DATASETS, STATE_NODES] {
        let etag = current_etag(&s, path).await;
        let quick = |waited: &Waited, what: &str| {
            assert!(
                waited.took() < Duration::from_millis(400),
                "{path} {what}: took {:?}",
                waited.took()
            );
        };
        // If-None-Match alone: 304 at once.
        let started = Instant::now();
        let answer = send(s.client.get(s.url(path)).header("if-none-match", &etag)).await;
        let waited = Waited {
            answer,
            started,
            ended: Instant::now(),
        };
        assert_not_modified(&waited, &etag, path);
        quick(&waited, "without Prefer");
        // Prefer alone: 200 at once.
        let started = Instant::now();
        let answer = send(s.client.get(s.url(path)).header("prefer", "wait=5")).await;
        assert_eq!(answer.status, 200);
        assert!(started.elapsed() < Duration::from_millis(400), "{path}");
        // A stale If-None-Match: 200 at once with the current list.
        let waited = wait_for(&s, path, "\"stale\"", "wait=5").await;
        assert_eq!(waited.answer.status, 200, "{path}");
        assert_eq!(etag_of(&waited.answer), etag);
        quick(&waited, "with a stale ETag");
        // wait=0, or a wait that does not parse (ignored, RFC 7240): 304 at once.
        for prefer in ["wait=0", "wait=soon", "return=minimal"] {
            let waited = wait_for(&s, path, &etag, prefer).await;
            assert_not_modified(&waited, &etag, prefer);
            quick(&waited, prefer);
        }
    }
}

#[tokio::test]
async fn configuration_and_state_waiters_wake_only_for_their_own_changes() {
    async fn one_side(state_changes: bool) {
        let s = server(5).await;
        let config = current_etag(&s, DATASETS).await;
        let state = current_etag(&s, STATE_NODES).await;
        let held_config = start_waiting(&s, DATASETS, &config, "wait=2");
        let held_state = start_waiting(&s, STATE_NODES, &state, "wait=2");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let changed_at = Instant::now();
        if state_changes {
            report(
                &s,
                NODE_1,
                &node_report("00000000-0000-4000-8000-000000000002", "db"),
            )
            .await;
        } else {
            create_dataset(&s).await;
        }
        let (woken, woken_etag, sleeper, sleeper_etag, label) = if state_changes {
            (held_state, state, held_config, config, "a report")
        } else {
            (
                held_config,
                config,
                held_state,
                state,
                "a configuration write",
            )
        };
        let woken = woken.await.unwrap();
        assert_eq!(woken.answer.status, 200, "{label}: {}", woken.answer.text);
        assert_ne!(etag_of(&woken.answer), woken_etag);
        assert!(
            woken.ended - changed_at < Duration::from_secs(1),
            "{label}: its waiter was released {:?} after it",
            woken.ended - changed_at
        );
        let sleeper = sleeper.await.unwrap();
        assert_not_modified(&sleeper, &sleeper_etag, label);
        assert_within(sleeper.took(), 1_950, 2_800, label);
    }
    tokio::join!(one_side(true), one_side(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_waiters_are_released_by_one_change() {
    const WAITERS: usize = 1_000;
    let s = server(10).await;
    let before = current_etag(&s, DATASETS).await;
    let held: Vec<JoinHandle<Waited>> = (0..WAITERS)
        .map(|_| start_waiting(&s, DATASETS, &before, "wait=10"))
        .collect();
    // Let every request reach the server and be held.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let finished_early = held.iter().filter(|h| h.is_finished()).count();
    assert_eq!(
        finished_early, 0,
        "{finished_early} waiters answered before any change"
    );
    let changed_at = Instant::now();
    let created = create_dataset(&s).await;
    let new_id = created.body["dataset_id"].clone();
    let all = tokio::time::timeout(Duration::from_secs(8), async {
        let mut answers = Vec::with_capacity(WAITERS);
        for handle in held {
            answers.push(handle.await.unwrap());
        }
        answers
    })
    .await
    .expect("every waiter is answered within 8 s");
    let after = current_etag(&s, DATASETS).await;
    let mut slowest = Duration::ZERO;
    for waited in &all {
        assert_eq!(waited.answer.status, 200, "{}", waited.answer.text);
        assert_eq!(etag_of(&waited.answer), after);
        assert_eq!(waited.answer.body[0]["dataset_id"], new_id);
        slowest = slowest.max(waited.ended - changed_at);
    }
    assert!(
        slowest < Duration::from_secs(2),
        "the last of {WAITERS} waiters was released {slowest:?} after the change"
    );
}
