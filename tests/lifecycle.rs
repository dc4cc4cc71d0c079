//! The process lifecycle of the real binary: graceful shutdown on SIGTERM, refusal to start on
//! a database it cannot read or a data directory another floe holds, the command line and its
//! environment variables, and persistence across a clean restart.
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ChildServer, EXIT_WITHIN, NODE_0, run_floe, wait_for_exit};
use serde_json::{Value, json};
use uuid::Uuid;

const LIST: &str = "/v1/configuration/datasets";

/// `floe serve` over `dir` on a free port, run to completion.
fn serve_to_exit(dir: &Path) -> (ExitStatus, String) {
    let (status, _, stderr) = run_floe(
        &[
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            dir.as_os_str(),
        ],
        &[],
    );
    (status, stderr)
}

/// Sends SIGTERM to the server's process.
fn sigterm(server: &ChildServer) {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM failed: {status}");
}

/// Every log line the server writes until its standard error closes (it has exited).
fn remaining_log(server: &ChildServer) -> Vec<Value> {
    let mut lines = Vec::new();
    loop {
        match server.log.recv_timeout(EXIT_WITHIN) {
            Ok(line) => lines.push(
                serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}")),
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("standard error stayed open"),
        }
    }
}

/// The dataset list as the server lists it, and its configuration tag.
async fn list_in_order(server: &ChildServer) -> (Vec<Value>, String) {
    let response = common::client()
        .get(server.url(LIST))
        .send()
        .await
        .expect("GET list");
    assert_eq!(response.status(), 200);
    let tag = response
        .headers()
        .get("x-configuration-tag")
        .expect("a configuration tag")
        .to_str()
        .unwrap()
        .to_string();
    (response.json().await.unwrap(), tag)
}

/// The dataset list by id, and its configuration tag.
async fn list(server: &ChildServer) -> (BTreeMap<String, Value>, String) {
    let (items, tag) = list_in_order(server).await;
    let by_id = items
        .into_iter()
        .map(|d| (d["dataset_id"].as_str().unwrap().to_string(), d))
        .collect();
    (by_id, tag)
}

/// The ids of the dataset list, in the order it lists them.
async fn listed_ids(server: &ChildServer) -> Vec<String> {
    list_in_order(server)
        .await
        .0
        .iter()
        .map(|d| d["dataset_id"].as_str().unwrap().to_string())
        .collect()
}

/// The body of a create of `id` on NODE_0 with some metadata, and the dataset it makes.
fn create_body(id: Uuid, name: &str) -> (Value, Value) {
    (
        json!({"primary": NODE_0, "dataset_id": id.to_string(), "metadata": {"name": name}}),
        json!({
            "dataset_id": id.to_string(),
            "primary": NODE_0,
            "deleted": false,
            "metadata": {"name": name},
        }),
    )
}

/// Reads from `stream` until the end of an HTTP head (`\r\n\r\n`) and returns the head.
fn read_head(stream: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut byte).expect("reading the connection");
        assert_eq!(
            read, 1,
            "the connection closed in the middle of a head: {head:?}"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("an ASCII head")
}

/// The `message` of each JSON log line (for short failure messages).
fn messages(log: &[Value]) -> Vec<&str> {
    log.iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_writes_and_exits_cleanly() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut server = ChildServer::start(dir.path(), &[]);
    let mut expected = BTreeMap::new();

    // One create is held half-sent: floe has started reading its body (it answered
    // `100 Continue`) when SIGTERM arrives, so it is certainly in flight.
    let slow_id = Uuid::new_v4();
    let (slow_body, slow_dataset) = create_body(slow_id, "slow");
    expected.insert(slow_id.to_string(), slow_dataset.clone());
    let slow_body = serde_json::to_vec(&slow_body).unwrap();
    let (first_half, second_half) = slow_body.split_at(slow_body.len() / 2);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(EXIT_WITHIN)).unwrap();
    let head = format!(
        "POST {LIST} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        server.addr,
        slow_body.len()
    );
    slow.write_all(head.as_bytes()).unwrap();
    let interim = tokio::task::block_in_place(|| read_head(&mut slow));
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "expected 100 Continue, got {interim:?}"
    );
    slow.write_all(first_half).unwrap();

    // Fifty concurrent creates.
    let client = common::client();
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..50 {
        let id = Uuid::new_v4();
        let (body, dataset) = create_body(id, &format!("volume-{i}"));
        expected.insert(id.to_string(), dataset);
        let request = client.post(server.url(LIST)).json(&body);
        let answered = answered.clone();
        tokio::spawn(async move {
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await;
                    Ok((status, body.map_err(|e| e.to_string())))
                }
                Err(error) => Err(error.to_string()),
            };
            let _ = answered.send((id.to_string(), outcome));
        });
    }
    drop(answered);

    // SIGTERM as soon as the first of them is answered, while the others are in flight.
    let mut outcomes = Vec::new();
    outcomes.push(answers.recv().await.expect("an answer"));
    sigterm(&server);

    // Once floe has seen the signal, the held create is sent in full: it must still be
    // answered, and made durable.
    let mut log = Vec::new();
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + EXIT_WITHIN;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = server
                .log
                .recv_timeout(remaining)
                .expect("floe logs that shutdown was requested");
            let event: Value = serde_json::from_str(&line).expect("a JSON log line");
            let done = event["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutdown requested"));
            log.push(event);
            if done {
                break;
            }
        }
    });
    slow.write_all(second_half).unwrap();
    let mut answer = Vec::new();
    tokio::task::block_in_place(|| slow.read_to_end(&mut answer))
        .expect("the held create is answered (within the read timeout)");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the create in flight at SIGTERM was answered {answer:?}"
    );
    let (answer_head, answer_body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        answer_head
            .to_ascii_lowercase()
            .contains("x-configuration-tag: "),
        "no tag on {answer_head:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(answer_body).expect("a JSON body"),
        slow_dataset
    );

    while let Some(outcome) = answers.recv().await {
        outcomes.push(outcome);
    }
    assert_eq!(outcomes.len(), 50);
    let status = wait_for_exit(&mut server.child, EXIT_WITHIN, "floe after SIGTERM");
    assert!(status.success(), "floe exited with {status} after SIGTERM");
    log.extend(remaining_log(&server));
    assert!(
        messages(&log).contains(&"floe stopped"),
        "the log does not say \"floe stopped\": {:?}",
        messages(&log)
    );

    // Every answer is a success; a request may also have been cut off (connection closed
    // without an answer) if it arrived after the listener closed.
    let mut acknowledged = vec![slow_id.to_string()];
    for (id, outcome) in &outcomes {
        match outcome {
            Ok((201, Ok(_))) => acknowledged.push(id.clone()),
            Ok(other) => panic!("a create answered during shutdown with {other:?}"),
            Err(_) => {}
        }
    }
    let shutdown_at = messages(&log)
        .iter()
        .position(|m| m.starts_with("shutdown requested"))
        .unwrap();
    eprintln!(
        "{} of 51 creates acknowledged around SIGTERM; {} logged after the shutdown request",
        acknowledged.len(),
        messages(&log)[shutdown_at..]
            .iter()
            .filter(|m| **m == "dataset created")
            .count()
    );

    let restarted = ChildServer::start(dir.path(), &[]);
    let (found, _) = list(&restarted).await;
    for id in &acknowledged {
        assert_eq!(
            found.get(id),
            Some(&expected[id]),
            "the acknowledged create of {id} after restart"
        );
    }
    for (id, dataset) in &found {
        assert_eq!(
            expected.get(id),
            Some(dataset),
            "a dataset after restart that was never sent like this"
        );
    }
}

#[test]
fn garbage_database_is_refused_and_left_alone() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("floe.db");
    let garbage: Vec<u8> = b"not a database"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
    std::fs::write(&db, &garbage).unwrap();

    let (status, stderr) = serve_to_exit(dir.path());
    assert!(!status.success(), "floe started on a garbage database");
    assert!(
        stderr.contains(&db.display().to_string()) || stderr.contains("cannot open the database"),
        "stderr names neither the database nor the failure: {stderr}"
    );
    assert!(
        !stderr.contains("floe listening"),
        "it listened before failing: {stderr}"
    );
    let after = std::fs::read(&db).unwrap();
    assert!(
        after == garbage,
        "the unreadable database was modified: {} bytes, first difference at byte {:?}",
        after.len(),
        first_difference(&garbage, &after)
    );
}

/// Runs the `sqlite3` tool, or says why not.
fn sqlite3(db: &Path, sql: &str) -> bool {
    match Command::new("sqlite3").arg(db).arg(sql).status() {
        Ok(status) => {
            assert!(status.success(), "sqlite3 {sql} failed");
            true
        }
        Err(error) => {
            eprintln!("NOTE: sqlite3 is not available ({error}); skipping this case");
            false
        }
    }
}

/// `a` and `b` differ first at this byte, if at all (for short failure messages).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// A data directory whose `floe.db` is another program's valid SQLite database.
fn foreign_database() -> Option<tempfile::TempDir> {
    let dir = tempfile::TempDir::new().unwrap();
    sqlite3(
        &dir.path().join("floe.db"),
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT); \
         INSERT INTO accounts (owner) VALUES ('alice');",
    )
    .then_some(dir)
}

#[test]
fn someone_elses_sqlite_database_is_refused() {
    let Some(dir) = foreign_database() else {
        return;
    };
    let (status, stderr) = serve_to_exit(dir.path());
    assert!(
        !status.success(),
        "floe started on another program's database"
    );
    assert!(
        stderr.contains("cannot open the database") && stderr.contains("not a floe store"),
        "stderr does not explain the refusal: {stderr}"
    );
}

#[test]
fn someone_elses_sqlite_database_is_left_alone() {
    let Some(dir) = foreign_database() else {
        return;
    };
    let db = dir.path().join("floe.db");
    let before = std::fs::read(&db).unwrap();
    let (status, _) = serve_to_exit(dir.path());
    assert!(
        !status.success(),
        "floe started on another program's database"
    );
    let after = std::fs::read(&db).unwrap();
    let journal_mode = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA journal_mode;")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        before == after,
        "floe refused the database but modified it: {} bytes before, {} after, first difference \
         at byte {:?}; its journal mode is now {journal_mode:?}",
        before.len(),
        after.len(),
        first_difference(&before, &after)
    );
}

#[test]
fn database_from_a_newer_floe_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("floe.db");
    if !sqlite3(&db, "PRAGMA user_version = 99;") {
        return;
    }
    let (status, stderr) = serve_to_exit(dir.path());
    assert!(!status.success(), "floe started on a newer schema");
    assert!(
        stderr.contains("cannot open the database") && stderr.contains("99"),
        "stderr does not explain the refusal: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_data_directory_is_refused_and_its_owner_keeps_working() {
    let dir = tempfile::TempDir::new().unwrap();
    let first = ChildServer::start(dir.path(), &[]);
    let (before, tag_before) = list(&first).await;

    let (status, stderr) = serve_to_exit(dir.path());
    assert!(
        !status.success(),
        "a second floe started on a held directory"
    );
    assert!(
        stderr.contains("another floe process"),
        "stderr does not name the lock holder: {stderr}"
    );

    // The first one is unharmed: its store is as it was and it still writes.
    let (after, tag_after) = list(&first).await;
    assert_eq!((after, tag_after), (before, tag_before.clone()));
    let id = Uuid::new_v4();
    let (body, dataset) = create_body(id, "still-works");
    let response = common::client()
        .post(first.url(LIST))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (now, tag_now) = list(&first).await;
    assert_eq!(now.get(&id.to_string()), Some(&dataset));
    assert_ne!(tag_now, tag_before);
}

#[test]
fn serve_help_lists_every_flag_with_its_environment_variable() {
    let (status, stdout, _) = run_floe(&["serve".as_ref(), "--help".as_ref()], &[]);
    assert!(status.success(), "floe serve --help exited with {status}");
    // Split the help into one block per option: a block starts at a line whose first
    // non-blank characters are `-`.
    let mut blocks: Vec<String> = Vec::new();
    for line in stdout.lines() {
        // An option line starts with `-x` or `--x`; a possible-value line with `- `.
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') && !trimmed.starts_with("- ") {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    for (flag, variable) in [
        ("--listen", "FLOE_LISTEN"),
        ("--data-dir", "FLOE_DATA_DIR"),
        ("--store", "FLOE_STORE"),
        ("--log-format", "FLOE_LOG_FORMAT"),
        ("--idempotency-max-keys", "FLOE_IDEMPOTENCY_MAX_KEYS"),
    ] {
        let block = blocks
            .iter()
            .find(|b| {
                b.lines().next().is_some_and(|first| {
                    first
                        .split_whitespace()
                        .any(|word| word.trim_end_matches(',') == flag)
                })
            })
            .unwrap_or_else(|| panic!("floe serve --help does not list {flag}:\n{stdout}"));
        assert!(
            block.contains(variable),
            "floe serve --help does not give {variable} for {flag}:\n{block}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_request_traces_do_not_log_session_tokens() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = ChildServer::start_with_env(
        dir.path(),
        "127.0.0.1:0",
        &["--auth", "token"],
        &[("RUST_LOG", "debug")],
    );
    let token = std::fs::read_to_string(dir.path().join("admin-token")).expect("admin-token");
    let token = token.trim();
    let http = common::client();
    // A session's URL names its token: reading it, then revoking it (as logging out does).
    let path = format!("/api/2/sessions/{token}");
    let read = http
        .get(server.url(&path))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET session");
    assert_eq!(read.status(), 200);
    let revoked = http
        .delete(server.url(&path))
        .header("x-snarl-token", token)
        .send()
        .await
        .expect("DELETE session");
    assert_eq!(revoked.status(), 204);
    sigterm(&server);
    let log = remaining_log(&server);
    let text: Vec<String> = log.iter().map(Value::to_string).collect();
    assert!(
        text.iter().any(|line| line.contains("/api/2/sessions/")),
        "the requests were not traced at debug level:\n{}",
        text.join("\n")
    );
    let leaks: Vec<&String> = text.iter().filter(|line| line.contains(token)).collect();
    assert!(leaks.is_empty(), "the session token is logged: {leaks:#?}");
}

#[test]
fn a_start_up_failure_is_one_line_on_standard_error() {
    // The port is taken: a failure after logging is set up, as every start-up failure is.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().expect("a temp dir");
    let (status, _, stderr) = run_floe(
        &[
            "serve".as_ref(),
            "--listen".as_ref(),
            address.as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
        ],
        &[("RUST_LOG", "info"), ("FLOE_LOG_FORMAT", "text")],
    );
    assert!(!status.success(), "floe started on a port in use");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line saying why floe did not start, got:\n{stderr}"
    );
    assert!(
        lines[0].starts_with(&format!("floe: cannot listen on {address}")),
        "{stderr}"
    );
}

#[test]
fn agent_help_does_not_print_the_token_from_the_environment() {
    let secret = "d6f1b0a4-secret-agent-token";
    let (status, stdout, stderr) = run_floe(
        &["agent".as_ref(), "--help".as_ref()],
        &[("FLOE_AGENT_TOKEN", secret)],
    );
    assert!(status.success(), "floe agent --help exited with {status}");
    assert!(
        stdout.contains("FLOE_AGENT_TOKEN"),
        "floe agent --help does not name FLOE_AGENT_TOKEN:\n{stdout}"
    );
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "floe agent --help prints the token set in FLOE_AGENT_TOKEN:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floe_store_environment_variable_selects_the_memory_store() {
    let parent = tempfile::TempDir::new().unwrap();
    let dir = parent.path().join("absent");
    let mut child = Command::new(common::floe_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(&dir)
        .env("FLOE_STORE", "memory")
        .env("FLOE_AUTH", "none")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("floe starts");
    let stderr = child.stderr.take().unwrap();
    let (lines, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for the listening line (bounded), then drive it through the shared helper type
    // so that it is killed on drop.
    let deadline = Instant::now() + EXIT_WITHIN;
    let addr = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = log.recv_timeout(remaining) else {
            let _ = child.kill();
            panic!(
                "floe with FLOE_STORE=memory did not listen: {:?}",
                child.wait()
            );
        };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["fields"]["message"] == "floe listening" {
            break event["fields"]["address"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    let server = ChildServer { addr, child, log };

    let id = Uuid::new_v4();
    let (body, dataset) = create_body(id, "in-memory");
    let response = common::client()
        .post(server.url(LIST))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (found, _) = list(&server).await;
    assert_eq!(found.get(&id.to_string()), Some(&dataset));
    assert!(
        !dir.join("floe.db").exists(),
        "FLOE_STORE=memory still wrote {}",
        dir.join("floe.db").display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_the_configuration_its_order_and_its_revision() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut server = ChildServer::start(dir.path(), &[]);
    let (_, empty_tag) = list(&server).await;
    let mut expected = BTreeMap::new();
    // Created in descending order of id, so that listing in creation order and listing in id
    // order cannot be confused.
    let mut created: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    created.sort_unstable_by(|a, b| b.cmp(a));
    for (i, &id) in created.iter().enumerate() {
        let (body, dataset) = create_body(id, &format!("kept-{i}"));
        let response = common::client()
            .post(server.url(LIST))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        expected.insert(id.to_string(), dataset);
    }
    let (before, tag_before) = list(&server).await;
    assert_eq!(before, expected);
    assert_ne!(tag_before, empty_tag);
    let created: Vec<String> = created.iter().map(Uuid::to_string).collect();
    assert_eq!(
        listed_ids(&server).await,
        created,
        "the list is not in creation order"
    );

    sigterm(&server);
    let status = wait_for_exit(&mut server.child, EXIT_WITHIN, "floe after SIGTERM");
    assert!(status.success(), "floe exited with {status} after SIGTERM");

    let restarted = ChildServer::start(dir.path(), &[]);
    let (after, tag_after) = list(&restarted).await;
    assert_eq!(after, before, "the datasets changed across a clean restart");
    assert_eq!(
        listed_ids(&restarted).await,
        created,
        "the list's order changed across a clean restart"
    );
    common::assert_same_revision_new_tag(&tag_before, &tag_after, "a clean restart");
}

/// `FLOE_INSECURE` takes the usual spellings of a yes or a no, as an environment variable is
/// often set, and refuses anything else naming the accepted ones. A port in use makes each
/// accepted value end in the listen failure, after the settings were read, without serving.
#[test]
fn floe_insecure_takes_the_usual_spellings_of_yes_and_no() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().expect("a temp dir");
    let args = [
        "serve".as_ref(),
        "--listen".as_ref(),
        address.as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
    ];
    for value in ["1", "yes", "on", "true", "0", "no", "off", "false"] {
        let (status, _, stderr) = run_floe(&args, &[("FLOE_INSECURE", value)]);
        assert!(!status.success(), "FLOE_INSECURE={value}: floe started");
        assert!(
            stderr.contains(&format!("cannot listen on {address}")),
            "FLOE_INSECURE={value} was not taken:\n{stderr}"
        );
    }
    let (status, _, stderr) = run_floe(&args, &[("FLOE_INSECURE", "maybe")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("FLOE_INSECURE") || stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(stderr.contains("maybe"), "{stderr}");
}

#[test]
fn an_idempotency_key_cap_of_zero_is_refused_before_starting() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let serve = [
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
    ];
    let flag = [
        &serve[..],
        &["--idempotency-max-keys".as_ref(), "0".as_ref()],
    ]
    .concat();
    for (args, env) in [
        (&flag[..], &[][..]),
        (&serve[..], &[("FLOE_IDEMPOTENCY_MAX_KEYS", "0")][..]),
    ] {
        let (status, _, stderr) = run_floe(args, env);
        assert_eq!(status.code(), Some(2), "a cap of 0 was taken:\n{stderr}");
        assert!(
            stderr.contains("--idempotency-max-keys") && stderr.contains("at least 1"),
            "the refusal does not say what is wrong:\n{stderr}"
        );
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a refused start left files in the data directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicting_idempotency_answers_warns_once_a_minute_with_the_retention() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = ChildServer::start(dir.path(), &["--idempotency-max-keys", "1"]);
    let http = common::client();
    // The second and the third each evict the one before: two evictions within a minute.
    for key in ["\"first\"", "\"second\"", "\"third\""] {
        let answer = http
            .post(server.url(LIST))
            .header("Idempotency-Key", key)
            .json(&json!({"primary": NODE_0}))
            .send()
            .await
            .expect("POST dataset");
        assert_eq!(answer.status(), 201, "{key}");
    }
    sigterm(&server);
    let log = remaining_log(&server);
    let warnings: Vec<&Value> = log
        .iter()
        .filter(|event| {
            event["level"] == "WARN"
                && event["fields"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("--idempotency-max-keys"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "expected one warning: {log:#?}");
    let fields = &warnings[0]["fields"];
    assert_eq!(fields["evicted"], 1, "{fields}");
    assert_eq!(fields["max_keys"], 1, "{fields}");
    assert!(fields["retention_seconds"].is_u64(), "{fields}");
}

#[test]
fn serve_raises_its_open_file_limit_to_the_hard_limit() {
    // A child inherits its parent's limits: start the server below the hard limit, so that
    // there is something to raise wherever the suite runs. One below is enough, and starves
    // nothing else in this process meanwhile.
    let (soft, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
    rlimit::Resource::NOFILE
        .set(soft.min(hard - 1), hard)
        .expect("lowering the soft limit");
    let dir = tempfile::tempdir().expect("a temp dir");
    let server = ChildServer::start(dir.path(), &[]);
    rlimit::Resource::NOFILE
        .set(soft, hard)
        .expect("restoring the soft limit");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id()))
        .expect("the server's limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a line for open files")
        .split_whitespace()
        .collect();
    // "Max open files <soft> <hard> files"
    assert_eq!(
        open_files[3..5],
        [hard.to_string(), hard.to_string()],
        "{limits}"
    );
}

/// `floe serve --auth token` over `dir`, run to completion (it fails to start).
fn serve_with_tokens_to_exit(dir: &Path, store: &str) -> (ExitStatus, String) {
    let (status, _, stderr) = run_floe(
        &[
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--auth".as_ref(),
            "token".as_ref(),
            "--store".as_ref(),
            store.as_ref(),
            "--data-dir".as_ref(),
            dir.as_os_str(),
        ],
        &[],
    );
    (status, stderr)
}

/// Starts a server over `dir` with `args`, and stops it with SIGTERM.
fn start_and_stop(dir: &Path, args: &[&str]) {
    let server = ChildServer::start(dir, args);
    sigterm(&server);
    remaining_log(&server);
}

/// A data directory whose database went missing or empty, while the administrator's token
/// file or a WAL of the old store is still there, is a lost store, not a new one: floe refuses
/// to start empty over it (and writes no new token), and starts again once the database is
/// back.
#[test]
fn a_used_data_directory_whose_database_is_gone_is_not_started_empty() {
    let dir = tempfile::TempDir::new().unwrap();
    start_and_stop(dir.path(), &["--auth", "token"]);
    let db = dir.path().join("floe.db");
    let token_file = dir.path().join(floe::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let moved = dir.path().join("moved-away.db");
    std::fs::rename(&db, &moved).unwrap();

    let (status, stderr) = serve_with_tokens_to_exit(dir.path(), "sqlite");
    assert_eq!(
        status.code(),
        Some(1),
        "it started over a lost store:\n{stderr}"
    );
    assert!(
        stderr.contains("refusing to start an empty store") && stderr.contains("admin-token"),
        "the refusal does not say why:\n{stderr}"
    );
    assert!(!db.exists(), "a new database was created");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);

    std::fs::write(&db, b"").unwrap();
    let (status, stderr) = serve_with_tokens_to_exit(dir.path(), "sqlite");
    assert_eq!(
        status.code(),
        Some(1),
        "it started over an empty file:\n{stderr}"
    );
    assert!(stderr.contains("the database file is empty"), "{stderr}");
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "the empty file was written"
    );

    std::fs::rename(&moved, &db).unwrap();
    start_and_stop(dir.path(), &["--auth", "token"]);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);

    // Without a token file: a WAL left by a crash tells of the old store too.
    let crashed = tempfile::TempDir::new().unwrap();
    let mut server = ChildServer::start(crashed.path(), &[]);
    let wal = crashed.path().join("floe.db-wal");
    server.kill();
    assert!(
        std::fs::metadata(&wal).is_ok_and(|file| file.len() > 0),
        "no WAL after a kill"
    );
    std::fs::remove_file(crashed.path().join("floe.db")).unwrap();
    let (status, stderr) = serve_to_exit(crashed.path());
    assert_eq!(
        status.code(),
        Some(1),
        "it started over a lost store:\n{stderr}"
    );
    assert!(stderr.contains("floe.db-wal"), "{stderr}");
}

/// The database and its WAL are created readable by their owner only: they hold password
/// hashes and token digests.
#[test]
fn a_new_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::TempDir::new().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--auth", "token"]);
    server.kill();
    for name in ["floe.db", "floe.db-wal", floe::ADMIN_TOKEN_FILE] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} has mode {:o}", mode & 0o777);
    }
}

/// A memory store's administrator token never replaces a SQLite store's token file, and a
/// first start that cannot write the token file leaves no administrator behind without a way
/// in: the next start creates one, with a token that works.
#[tokio::test]
async fn the_admin_token_is_never_lost_or_overwritten() {
    let dir = tempfile::TempDir::new().unwrap();
    start_and_stop(dir.path(), &["--auth", "token"]);
    let token_file = dir.path().join(floe::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let (status, stderr) = serve_with_tokens_to_exit(dir.path(), "memory");
    assert_eq!(status.code(), Some(1), "a memory store started:\n{stderr}");
    assert!(stderr.contains("--store memory"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);

    // A store that has no accounts yet, and a token file that cannot be written.
    let fresh = tempfile::TempDir::new().unwrap();
    start_and_stop(fresh.path(), &[]);
    let token_file = fresh.path().join(floe::ADMIN_TOKEN_FILE);
    std::fs::create_dir(&token_file).unwrap();
    let (status, stderr) = serve_with_tokens_to_exit(fresh.path(), "sqlite");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write"), "{stderr}");
    std::fs::remove_dir(&token_file).unwrap();

    let server = ChildServer::start(fresh.path(), &["--auth", "token"]);
    let token = std::fs::read_to_string(&token_file).expect("the next start writes a token");
    let session = common::client()
        .get(server.url("/api/2/sessions"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200, "the new token does not work");
}

/// Meta field names that would hide a resource's data are refused before anything starts.
#[test]
fn meta_field_names_that_would_hide_data_are_refused_before_starting() {
    let dir = tempfile::TempDir::new().unwrap();
    let serve = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        run_floe(&args, &[("FLOE_AUTH", "none")])
    };
    for (flags, says) in [
        (
            &["--meta-etag-field", ""][..],
            "--meta-etag-field must not be empty",
        ),
        (&["--meta-etag-field", "name"][..], "\"name\" is a field"),
        (
            &["--meta-etag-field", "_x", "--meta-created-field", "_x"][..],
            "one would replace the other",
        ),
    ] {
        let (status, _, stderr) = serve(flags);
        assert_eq!(status.code(), Some(1), "{flags:?} was taken:\n{stderr}");
        assert!(stderr.contains(says), "{flags:?}:\n{stderr}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a refused start left files in the data directory"
    );
}

/// A client that sent half a request, its head or part of its body, holds a graceful stop for
/// the grace period only (5 s), not for the head or body timeout (30 s by default): past it the
/// connection is closed, and floe exits cleanly.
#[test]
fn half_sent_requests_hold_a_stop_for_the_grace_period_only() {
    for half in [
        "GET /v1/version HTTP/1.1\r\nHost: x\r\n".to_string(),
        format!("POST {LIST} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"primary\""),
    ] {
        let dir = tempfile::TempDir::new().unwrap();
        let mut server = ChildServer::start(dir.path(), &[]);
        let mut client = std::net::TcpStream::connect(server.addr).unwrap();
        client.write_all(half.as_bytes()).unwrap();
        // The request reaches floe before the signal does.
        std::thread::sleep(Duration::from_millis(200));
        let asked = Instant::now();
        sigterm(&server);
        let status = wait_for_exit(&mut server.child, EXIT_WITHIN, "floe after SIGTERM");
        let took = asked.elapsed();
        assert!(status.success(), "{half:?}: floe exited with {status}");
        assert!(
            took >= Duration::from_secs(4),
            "{half:?}: the request in flight was not given its grace ({took:?})"
        );
        let log = remaining_log(&server);
        assert!(
            messages(&log)
                .iter()
                .any(|m| m.starts_with("closing the connections whose request")),
            "{half:?}: {:?}",
            messages(&log)
        );
    }
}

/// `--listen` takes an address, not a host name, and says so with an example.
#[test]
fn a_host_name_for_listen_is_refused_with_an_example() {
    let (status, _, stderr) = run_floe(
        &[
            "serve".as_ref(),
            "--listen".as_ref(),
            "localhost:4523".as_ref(),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("must be an IP address and a port, such as 127.0.0.1:4523"),
        "{stderr}"
    );
}

/// An administrator whose token was revoked (or whose token file was lost) gets back in with
/// `floe admin-token`, which refuses to run while a server holds the store.
#[tokio::test]
async fn a_revoked_admin_token_is_replaced_offline_with_floe_admin_token() {
    let dir = tempfile::TempDir::new().unwrap();
    let token_file = dir.path().join(floe::ADMIN_TOKEN_FILE);
    let admin_token = |dir: &Path, user: &str| {
        run_floe(
            &[
                "admin-token".as_ref(),
                "--data-dir".as_ref(),
                dir.as_os_str(),
                "--user".as_ref(),
                user.as_ref(),
            ],
            &[],
        )
    };
    let session = |server: &ChildServer, token: String| {
        let request = common::client()
            .get(server.url("/api/2/sessions"))
            .bearer_auth(token.trim());
        async move { request.send().await.unwrap().status().as_u16() }
    };

    let server = ChildServer::start(dir.path(), &["--auth", "token"]);
    let first = std::fs::read_to_string(&token_file).unwrap();
    let revoked = common::client()
        .delete(server.url(&format!("/api/2/sessions/{}", first.trim())))
        .bearer_auth(first.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(session(&server, first.clone()).await, 403, "revoked");

    let (status, _, stderr) = admin_token(dir.path(), "admin");
    assert_eq!(status.code(), Some(1), "it ran beside the server: {stderr}");
    assert!(
        stderr.contains("another floe process is using it"),
        "{stderr}"
    );
    sigterm(&server);
    remaining_log(&server);

    let (status, stdout, stderr) = admin_token(dir.path(), "admin");
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("wrote a new token for admin"), "{stdout}");
    let second = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(second, first);
    let server = ChildServer::start(dir.path(), &["--auth", "token"]);
    assert_eq!(session(&server, second).await, 200, "the new token works");
    sigterm(&server);
    remaining_log(&server);

    let (status, _, stderr) = admin_token(dir.path(), "nobody");
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("there is no user \"nobody\""), "{stderr}");
    let empty = tempfile::TempDir::new().unwrap();
    let (status, _, stderr) = admin_token(empty.path(), "admin");
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("holds no store"), "{stderr}");
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());
}

/// A hang-up stops floe as gracefully as SIGTERM does, saying so.
#[test]
fn sighup_stops_floe_gracefully() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut server = ChildServer::start(dir.path(), &[]);
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let status = wait_for_exit(&mut server.child, EXIT_WITHIN, "floe after SIGHUP");
    assert!(status.success(), "floe exited with {status} after SIGHUP");
    let log = remaining_log(&server);
    assert!(
        messages(&log).contains(&"floe stopped"),
        "{:?}",
        messages(&log)
    );
}

/// A `RUST_LOG` that does not parse is said to be so, rather than silently ignored.
#[test]
fn an_invalid_rust_log_is_reported() {
    let dir = tempfile::TempDir::new().unwrap();
    // A refused setting ends the start right after logging is set up.
    let (status, _, stderr) = run_floe(
        &[
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
            "--meta-etag-field=".as_ref(),
        ],
        &[("RUST_LOG", "floe=loudest"), ("FLOE_AUTH", "none")],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("RUST_LOG is not a valid filter") && stderr.contains("floe=loudest"),
        "{stderr}"
    );
}

/// A `--data-dir` that is a file says so.
#[test]
fn a_data_dir_that_is_a_file_says_so() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let (status, stderr) = serve_to_exit(&file);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("it is a file, not a directory"), "{stderr}");
}

/// A port that accepts connections is one that answers them: `floe serve` opens its store and
/// accounts (writing the first administrator's token) before it listens, so a script that
/// waits for the port and then reads the token file finds it.
#[test]
fn the_port_opens_only_once_the_store_and_the_admin_token_are_ready() {
    let dir = tempfile::TempDir::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(common::floe_binary())
        .args([
            "serve",
            "--auth",
            "token",
            "--listen",
            &listen,
            "--data-dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("floe starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let connected = loop {
        if let Ok(stream) = std::net::TcpStream::connect(&listen) {
            break stream;
        }
        assert!(Instant::now() < deadline, "floe never listened");
        assert!(child.try_wait().unwrap().is_none(), "floe exited");
        std::thread::sleep(Duration::from_millis(1));
    };
    let token = std::fs::read_to_string(dir.path().join(floe::ADMIN_TOKEN_FILE));
    drop(connected);
    let _ = child.kill();
    let _ = child.wait();
    let token = token.expect("the token file exists once the port accepts");
    assert!(!token.trim().is_empty(), "the token file is complete");
}
