//! Crash durability of the real binary: a stream of concurrent writes is cut by SIGKILL, and
//! the restarted process must hold every acknowledged write with exactly its content, nothing
//! that was never sent, and a configuration tag that never names two different configurations.
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ChildServer, NODE_0, NODE_1};
use serde_json::{Value, json};
use uuid::Uuid;

/// Concurrent writer tasks per round.
const WRITERS: usize = 16;
/// When a round kills the process.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Under the running stream, once this many writes are acknowledged (or after
    /// [`KILL_AFTER`]).
    MidStream(usize),
    /// Likewise, but the writers stop first and every request sent is answered before the kill:
    /// exactly the acknowledged writes must come back.
    Quiesced(usize),
    /// Without writing anything.
    Idle,
}

/// The kill/restart rounds, all over the same data directory.
const ROUNDS: [Kill; 7] = [
    Kill::MidStream(200),
    Kill::MidStream(600),
    Kill::Quiesced(150),
    Kill::MidStream(20),
    Kill::Idle,
    Kill::MidStream(1500),
    Kill::Quiesced(400),
];
/// The longest a round's stream runs before the kill.
const KILL_AFTER: Duration = Duration::from_millis(400);
/// Every created dataset asks for this size.
const SIZE: u64 = 67_108_864;

const LIST: &str = "/v1/configuration/datasets";

/// What a write asked for.
#[derive(Debug, Clone)]
enum Write {
    Create {
        id: Uuid,
        metadata: BTreeMap<String, String>,
    },
    Move {
        id: Uuid,
    },
}

/// An answer received over HTTP (any status).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    tag: Option<String>,
    at: Instant,
}

/// One request of the stream, as sent and as answered.
#[derive(Debug, Clone)]
struct Record {
    write: Write,
    sent_at: Instant,
    answer: Option<Answer>,
}

impl Record {
    fn acknowledged(&self) -> bool {
        self.answer
            .as_ref()
            .is_some_and(|a| (200..300).contains(&a.status))
    }
}

/// What the writers share.
#[derive(Default)]
struct Shared {
    records: Vec<Record>,
    /// Datasets at NODE_0 that no move of this round has been sent for yet.
    movable: Vec<Uuid>,
}

/// The dataset as floe renders it.
fn dataset(id: Uuid, primary: &str, metadata: &BTreeMap<String, String>) -> Value {
    json!({
        "dataset_id": id.to_string(),
        "primary": primary,
        "deleted": false,
        "metadata": metadata,
        "maximum_size": SIZE,
    })
}

/// GET the dataset list: the datasets by id, and the configuration tag.
async fn list(client: &reqwest::Client, server: &ChildServer) -> (BTreeMap<Uuid, Value>, String) {
    let response = client.get(server.url(LIST)).send().await.expect("GET list");
    assert_eq!(response.status(), 200, "GET {LIST}");
    let tag = response
        .headers()
        .get("x-configuration-tag")
        .expect("GET list carries X-Configuration-Tag")
        .to_str()
        .expect("an ASCII tag")
        .to_string();
    let items: Vec<Value> = response.json().await.expect("a JSON list");
    let mut datasets = BTreeMap::new();
    for item in items {
        let id: Uuid = item["dataset_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a dataset without a valid id: {item}"));
        assert!(
            datasets.insert(id, item).is_none(),
            "dataset {id} listed twice"
        );
    }
    (datasets, tag)
}

/// A create by writer `task` of a fresh dataset.
fn fresh_create(task: usize, seq: u64) -> Write {
    Write::Create {
        id: Uuid::new_v4(),
        metadata: [
            ("writer".to_string(), task.to_string()),
            ("seq".to_string(), seq.to_string()),
        ]
        .into(),
    }
}

/// Records `write` as sent, sends it and records the answer. True if it was acknowledged.
async fn send(url: &str, client: &reqwest::Client, shared: &Mutex<Shared>, write: Write) -> bool {
    let index = {
        let mut shared = shared.lock().unwrap();
        shared.records.push(Record {
            write: write.clone(),
            sent_at: Instant::now(),
            answer: None,
        });
        shared.records.len() - 1
    };
    let request = match &write {
        Write::Create { id, metadata } => client.post(format!("{url}{LIST}")).json(&json!({
            "primary": NODE_0,
            "dataset_id": id.to_string(),
            "metadata": metadata,
            "maximum_size": SIZE,
        })),
        Write::Move { id } => client
            .post(format!("{url}{LIST}/{id}"))
            .json(&json!({ "primary": NODE_1 })),
    };
    let Ok(response) = request.send().await else {
        return false;
    };
    let status = response.status().as_u16();
    let tag = response
        .headers()
        .get("x-configuration-tag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Ok(bytes) = response.bytes().await else {
        return false;
    };
    let at = Instant::now();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    let ok = (200..300).contains(&status);
    let mut shared = shared.lock().unwrap();
    shared.records[index].answer = Some(Answer {
        status,
        body,
        tag,
        at,
    });
    if ok && let Write::Create { id, .. } = write {
        shared.movable.push(id);
    }
    ok
}

/// One writer: creates, and now and then moves an acknowledged dataset, until a request fails
/// (the process was killed) or `stop` is set.
async fn writer(
    task: usize,
    url: String,
    client: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let moving = seq
            .is_multiple_of(4)
            .then(|| shared.lock().unwrap().movable.pop())
            .flatten();
        let write = match moving {
            Some(id) => Write::Move { id },
            None => fresh_create(task, seq),
        };
        if !send(&url, &client, &shared, write).await {
            return;
        }
        acks.fetch_add(1, Ordering::SeqCst);
    }
}

/// Checks the configuration recovered after a crash against the one before the round (`base`,
/// itself recovered and checked) and the round's writes. `handed_out` holds every tag floe
/// gave out before this crash (acknowledged writes and lists, all earlier rounds included).
fn check_recovery(
    round: usize,
    base: &BTreeMap<Uuid, Value>,
    base_tag: &str,
    records: &[Record],
    recovered: &BTreeMap<Uuid, Value>,
    recovered_tag: &str,
    handed_out: &HashSet<String>,
) -> bool {
    let context = format!("round {round}");

    // Every answer is a success with the right status, content and a tag.
    let mut acked_tags: HashMap<&str, usize> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let Some(answer) = &record.answer else {
            continue;
        };
        let (expected_status, expected_body) = match &record.write {
            Write::Create { id, metadata } => (201, dataset(*id, NODE_0, metadata)),
            Write::Move { id } => {
                let before = base.get(id).cloned().unwrap_or_else(|| {
                    let create = records
                        .iter()
                        .find_map(|r| match &r.write {
                            Write::Create { id: c, metadata } if c == id && r.acknowledged() => {
                                Some(metadata.clone())
                            }
                            _ => None,
                        })
                        .expect("moves are only sent for existing datasets");
                    dataset(*id, NODE_0, &create)
                });
                let mut after = before;
                after["primary"] = json!(NODE_1);
                (200, after)
            }
        };
        assert_eq!(
            answer.status, expected_status,
            "{context}: {:?} answered {} {}",
            record.write, answer.status, answer.body
        );
        assert_eq!(
            answer.body, expected_body,
            "{context}: the answer to {:?}",
            record.write
        );
        let tag = answer
            .tag
            .as_deref()
            .unwrap_or_else(|| panic!("{context}: no tag on the answer to {:?}", record.write));
        // Each acknowledged write made a configuration that never existed before.
        assert!(
            !handed_out.contains(tag),
            "{context}: write {:?} was answered with the tag {tag} of an earlier configuration",
            record.write
        );
        assert_ne!(tag, base_tag, "{context}: a write kept the base tag");
        if let Some(other) = acked_tags.insert(tag, i) {
            panic!(
                "{context}: two writes got the same tag {tag}: {:?} and {:?}",
                records[other].write, record.write
            );
        }
    }

    // What was sent in this round, per dataset.
    let mut created: HashMap<Uuid, (&BTreeMap<String, String>, bool)> = HashMap::new();
    let mut moved: HashMap<Uuid, bool> = HashMap::new();
    for record in records {
        match &record.write {
            Write::Create { id, metadata } => {
                created.insert(*id, (metadata, record.acknowledged()));
            }
            Write::Move { id } => {
                assert!(
                    moved.insert(*id, record.acknowledged()).is_none(),
                    "{context}: the test moved {id} twice"
                );
            }
        }
    }

    // Nothing acknowledged is lost, nothing present was never sent, and nothing is partial.
    let mut exactly_acknowledged = true;
    for (id, (metadata, acked)) in &created {
        assert!(
            !base.contains_key(id),
            "{context}: the test reused the id {id}"
        );
        if *acked {
            assert!(
                recovered.contains_key(id),
                "{context}: the acknowledged create of {id} was lost"
            );
        }
        let Some(found) = recovered.get(id) else {
            continue;
        };
        if !acked {
            exactly_acknowledged = false;
        }
        let at_0 = dataset(*id, NODE_0, metadata);
        let at_1 = dataset(*id, NODE_1, metadata);
        match moved.get(id) {
            None => assert_eq!(found, &at_0, "{context}: recovered content of {id}"),
            Some(true) => assert_eq!(
                found, &at_1,
                "{context}: recovered content of {id}, whose move was acknowledged"
            ),
            Some(false) => {
                assert!(
                    found == &at_0 || found == &at_1,
                    "{context}: recovered content of {id} is neither as created nor as moved: {found}"
                );
                if found == &at_1 {
                    exactly_acknowledged = false;
                }
            }
        }
    }
    for (id, before) in base {
        let found = recovered
            .get(id)
            .unwrap_or_else(|| panic!("{context}: {id}, present before the round, was lost"));
        let mut after = before.clone();
        after["primary"] = json!(NODE_1);
        match moved.get(id) {
            None => assert_eq!(
                found, before,
                "{context}: {id} changed without being written"
            ),
            Some(true) => assert_eq!(
                found, &after,
                "{context}: recovered content of {id}, whose move was acknowledged"
            ),
            Some(false) => {
                assert!(
                    found == before || found == &after,
                    "{context}: recovered content of {id} is neither as before nor as moved: {found}"
                );
                if found != before {
                    exactly_acknowledged = false;
                }
            }
        }
    }
    for id in recovered.keys() {
        assert!(
            base.contains_key(id) || created.contains_key(id),
            "{context}: phantom dataset {id} was never sent: {}",
            recovered[id]
        );
    }

    // The tag. Every acknowledged write was effective, so the configurations handed out form a
    // chain, and a crash recovers a prefix of it (the checks above hold the prefix to contain
    // every acknowledged write).
    if exactly_acknowledged {
        // Nothing beyond the acknowledged writes was persisted: the recovered configuration is
        // the last one handed out, so its tag must be the one handed out with it.
        // A restart draws a new store id: the revision is what carries over.
        let recovered_revision = common::revision_of(recovered_tag);
        if acked_tags.is_empty() {
            assert_eq!(
                recovered_revision,
                common::revision_of(base_tag),
                "{context}: nothing was written, yet the revision changed"
            );
        } else {
            let acked_at = acked_tags
                .iter()
                .find(|(tag, _)| common::revision_of(tag) == recovered_revision)
                .map(|(_, index)| *index);
            let index = acked_at.unwrap_or_else(|| {
                panic!(
                    "{context}: the recovered configuration is exactly the acknowledged one, but \
                     its revision (tag {recovered_tag}) is none of those handed out with the writes"
                )
            });
            // That write must be the last in the chain. Revisions aside, check what order
            // is observable: no acknowledged write was sent after this one's answer arrived
            // (such a write would come later in the chain). In quiesced rounds the lone final
            // write was sent after every other answer, so this pins the tag to exactly its one.
            let last = &records[index];
            let answered_at = last.answer.as_ref().unwrap().at;
            for record in records.iter().filter(|r| r.acknowledged()) {
                assert!(
                    record.sent_at <= answered_at,
                    "{context}: the recovered tag {recovered_tag} is that of {:?}, but {:?} \
                     was sent after it was answered and acknowledged too",
                    last.write,
                    record.write
                );
            }
        }
    } else {
        // Something sent but never acknowledged was persisted: a configuration nobody was ever
        // told about, which must not carry a tag that named another configuration.
        assert!(
            !handed_out.contains(recovered_tag),
            "{context}: the recovered configuration includes unacknowledged writes, yet its tag \
             {recovered_tag} was handed out before the crash for another configuration"
        );
    }
    exactly_acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let dir = tempfile::TempDir::new().unwrap();
    let mut server = ChildServer::start(dir.path(), &[]);
    let (mut base, mut base_tag) = list(&common::client(), &server).await;
    assert!(base.is_empty(), "a fresh store lists nothing");
    let mut handed_out: HashSet<String> = HashSet::from([base_tag.clone()]);

    for (round, kill) in ROUNDS.into_iter().enumerate() {
        let round = round + 1;
        let client = common::client();
        let shared = Arc::new(Mutex::new(Shared {
            records: Vec::new(),
            movable: base
                .iter()
                .filter(|(_, d)| d["primary"] == NODE_0)
                .map(|(id, _)| *id)
                .collect(),
        }));
        let acks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("http://{}", server.addr);
        let writers: Vec<_> = match kill {
            Kill::Idle => Vec::new(),
            Kill::MidStream(_) | Kill::Quiesced(_) => (0..WRITERS)
                .map(|task| {
                    tokio::spawn(writer(
                        task,
                        url.clone(),
                        client.clone(),
                        Arc::clone(&shared),
                        Arc::clone(&acks),
                        Arc::clone(&stop),
                    ))
                })
                .collect(),
        };

        // Let the stream run.
        let wanted = match kill {
            Kill::Idle => 0,
            Kill::MidStream(n) | Kill::Quiesced(n) => n,
        };
        let round_start = Instant::now();
        while acks.load(Ordering::SeqCst) < wanted && round_start.elapsed() < KILL_AFTER {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let failures = |shared: &Shared| -> Vec<String> {
            shared
                .records
                .iter()
                .filter(|r| r.answer.as_ref().is_some_and(|a| a.status >= 300))
                .map(|r| format!("{:?} -> {:?}", r.write, r.answer))
                .collect()
        };
        assert!(
            writers.iter().all(|w| !w.is_finished()),
            "round {round}: writers stopped before the kill (a write failed): {:?}",
            failures(&shared.lock().unwrap())
        );
        if let Kill::Quiesced(_) = kill {
            // Stop sending and wait until every request sent has been answered.
            stop.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while writers.iter().any(|w| !w.is_finished()) {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: writers still running 10 s after being stopped"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // One last write, alone: it is unambiguously the last of the chain, so its tag is
            // the one the restarted process must report.
            assert!(
                send(&url, &client, &shared, fresh_create(WRITERS, 0)).await,
                "round {round}: the final write failed"
            );
        }

        // Kill the process (under the stream, unless quiesced).
        let in_flight_at_kill = {
            let shared = shared.lock().unwrap();
            server.kill();
            shared.records.iter().filter(|r| r.answer.is_none()).count()
        };

        // The writers must now fail and stop on their own; the flag is only a backstop.
        let deadline = Instant::now() + Duration::from_secs(10);
        while writers.iter().any(|w| !w.is_finished()) {
            assert!(
                Instant::now() < deadline,
                "round {round}: writers still running 10 s after SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.await.expect("a writer task ends without panicking");
        }
        let records = std::mem::take(&mut shared.lock().unwrap().records);
        let acked = records.iter().filter(|r| r.acknowledged()).count();
        let moves_acked = records
            .iter()
            .filter(|r| r.acknowledged() && matches!(r.write, Write::Move { .. }))
            .count();
        let unanswered = records.iter().filter(|r| r.answer.is_none()).count();
        match kill {
            Kill::Idle => assert!(records.is_empty()),
            Kill::MidStream(_) => {
                assert!(acked > 0, "round {round}: no write was acknowledged");
                assert!(
                    in_flight_at_kill > 0,
                    "round {round}: the kill hit no write in flight"
                );
            }
            Kill::Quiesced(_) => {
                assert!(acked > 0, "round {round}: no write was acknowledged");
                assert_eq!(
                    acked,
                    records.len(),
                    "round {round}: writes failed before the kill: {:?}",
                    failures(&Shared {
                        records: records.clone(),
                        movable: Vec::new()
                    })
                );
            }
        }

        // Restart over the same data directory and compare.
        server = ChildServer::start(dir.path(), &[]);
        let (recovered, recovered_tag) = list(&common::client(), &server).await;
        eprintln!(
            "round {round}: {} sent, {acked} acknowledged ({moves_acked} moves), {unanswered} \
             unanswered ({in_flight_at_kill} in flight at the kill); {} datasets before, {} \
             recovered",
            records.len(),
            base.len(),
            recovered.len()
        );
        let exactly = check_recovery(
            round,
            &base,
            &base_tag,
            &records,
            &recovered,
            &recovered_tag,
            &handed_out,
        );

        if let Kill::Quiesced(_) | Kill::Idle = kill {
            assert!(
                exactly,
                "round {round}: every write sent was answered, yet more came back"
            );
        }
        eprintln!(
            "round {round} ({kill:?}): recovered {}",
            if exactly {
                "exactly the acknowledged writes"
            } else {
                "unacknowledged writes too"
            }
        );

        // A second list right away names the same configuration with the same tag.
        let (again, again_tag) = list(&common::client(), &server).await;
        assert_eq!(
            again, recovered,
            "round {round}: the list changed by itself"
        );
        assert_eq!(
            again_tag, recovered_tag,
            "round {round}: the tag changed by itself"
        );

        handed_out.extend(
            records
                .iter()
                .filter(|r| r.acknowledged())
                .filter_map(|r| r.answer.as_ref().and_then(|a| a.tag.clone())),
        );
        handed_out.insert(recovered_tag.clone());
        base = recovered;
        base_tag = recovered_tag;
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the crash test took {:?}",
        started.elapsed()
    );
}

async fn create_named(server: &common::TestServer, name: &str) {
    let answer = server
        .client
        .post(server.url("/v1/configuration/datasets"))
        .json(&json!({"primary": NODE_0, "metadata": {"name": name}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
}

/// The README's online backup, restored: the revisions it brings back were published before,
/// with other content since. Their tags must name nothing now, or a stale list would be
/// confirmed by a 304 and a write conditional on a configuration that is gone would pass.
#[tokio::test]
async fn a_restored_backup_never_brings_back_a_published_tag() {
    let server = common::TestServer::start().await;
    create_named(&server, "first").await;
    let backup_dir = tempfile::TempDir::new().unwrap();
    let backup = backup_dir.path().join("backup.db");
    // What `sqlite3 floe.db ".backup backup.db"` makes, while floe runs.
    let db = rusqlite::Connection::open(server.data_dir().join("floe.db")).unwrap();
    db.execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    drop(db);
    create_named(&server, "before the restore").await;
    let before = server
        .client
        .get(server.url("/v1/configuration/datasets"))
        .send()
        .await
        .unwrap();
    let header = |answer: &reqwest::Response, name: &str| {
        answer.headers()[name].to_str().unwrap().to_string()
    };
    let (published_tag, published_etag) = (
        header(&before, "x-configuration-tag"),
        header(&before, "etag"),
    );

    let dir = server.stop().await;
    std::fs::copy(&backup, dir.path().join("floe.db")).unwrap();
    for stale in ["floe.db-wal", "floe.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(stale));
    }
    let server = common::TestServer::start_in(dir, |_| {}).await;
    // The same revision again, with other content.
    create_named(&server, "after the restore").await;
    let after = server
        .client
        .get(server.url("/v1/configuration/datasets"))
        .send()
        .await
        .unwrap();
    let tag = header(&after, "x-configuration-tag");
    assert_eq!(
        common::revision_of(&tag),
        common::revision_of(&published_tag)
    );
    assert_ne!(tag, published_tag, "one tag would name two configurations");

    let revalidated = server
        .client
        .get(server.url("/v1/configuration/datasets"))
        .header("If-None-Match", &published_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        revalidated.status(),
        200,
        "the list published before is gone"
    );
    let conditional = server
        .client
        .post(server.url("/v1/configuration/datasets"))
        .header("X-If-Configuration-Matches", &published_tag)
        .json(&json!({"primary": NODE_1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        conditional.status(),
        412,
        "the configuration it names is gone"
    );
    server.stop().await;
}
