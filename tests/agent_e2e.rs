//! End to end: the control service and two `floe agent`s as real processes on 127.0.0.1.
//! Datasets are created, moved, pinned by a lease and deleted through the API, and the agents'
//! directories and reports follow; then an agent dies, the service restarts, and an agent
//! leaves and comes back.

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ChildServer, client, floe_binary};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The longest any one step may take to show.
const STEP: Duration = Duration::from_secs(10);
/// How often a step is checked.
const POLL: Duration = Duration::from_millis(100);

/// A `floe agent` child process with its own state and dataset directories; killed on drop.
struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    node: String,
    era: String,
    /// Its dataset root, as the agent reports paths under it (canonical).
    root: PathBuf,
    state_dir: TempDir,
    root_dir: TempDir,
}

impl Agent {
    /// Starts an agent with fresh directories and waits for its start-up line.
    fn start(control: &str) -> Self {
        Self::start_in(control, TempDir::new().unwrap(), TempDir::new().unwrap())
    }

    /// Starts an agent over existing directories (a restart of the same node).
    fn start_in(control: &str, state_dir: TempDir, root_dir: TempDir) -> Self {
        Self::start_reporting_every(control, state_dir, root_dir, "1")
    }

    /// As [`Agent::start_in`], reporting every `seconds` when nothing changes.
    fn start_reporting_every(
        control: &str,
        state_dir: TempDir,
        root_dir: TempDir,
        seconds: &str,
    ) -> Self {
        let mut child = Command::new(floe_binary())
            .args(["agent", "--control", control, "--host", "127.0.0.1"])
            .arg("--state-dir")
            .arg(state_dir.path())
            .arg("--root")
            .arg(root_dir.path())
            .args(["--report-interval", seconds, "--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("floe agent starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + STEP;
        let started = loop {
            let found = lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|event| event["fields"]["message"] == "agent started");
            if let Some(event) = found {
                break event;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not start (exit: {:?}); log:\n{}",
                child.try_wait(),
                lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(POLL);
        };
        let field = |name: &str| {
            started["fields"][name]
                .as_str()
                .unwrap_or_else(|| panic!("the start-up line has no {name}: {started}"))
                .to_string()
        };
        let root = root_dir.path().canonicalize().unwrap();
        assert_eq!(field("root"), root.display().to_string());
        Agent {
            node: field("node_uuid"),
            era: field("era"),
            child,
            lines,
            root,
            state_dir,
            root_dir,
        }
    }

    /// The node UUID as kept in the state directory.
    fn stored_node(&self) -> String {
        std::fs::read_to_string(self.state_dir.path().join("node_uuid"))
            .expect("the node UUID file")
            .trim()
            .to_string()
    }

    /// Where it mounts `dataset`.
    fn path_of(&self, dataset: &str) -> PathBuf {
        self.root.join(dataset)
    }

    /// The messages it has logged so far.
    fn messages(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|event| event["fields"]["message"].as_str().map(str::to_string))
            .collect()
    }

    /// Its whole log, for failure messages.
    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Stops it with SIGTERM and waits for it to exit; hands back its directories.
    fn terminate(mut self) -> (ExitStatus, TempDir, TempDir) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed: {status}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit after SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let state = std::mem::replace(&mut self.state_dir, TempDir::new().unwrap());
        let root = std::mem::replace(&mut self.root_dir, TempDir::new().unwrap());
        (exit, state, root)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks `probe` every [`POLL`] until it yields a value, for at most [`STEP`].
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// A GET's JSON body; `null` when the service does not answer (it may be restarting).
async fn get(http: &reqwest::Client, url: String) -> Value {
    match http.get(url).send().await {
        Ok(response) if response.status() == 200 => response.json().await.unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// A write's status and JSON body.
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The node UUIDs in `/v1/state/nodes`.
async fn nodes(http: &reqwest::Client, server: &ChildServer) -> Vec<String> {
    get(http, server.url("/v1/state/nodes"))
        .await
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|node| node["uuid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `/v1/state/datasets` entry for `dataset`, if listed.
async fn state_of(http: &reqwest::Client, server: &ChildServer, dataset: &str) -> Option<Value> {
    get(http, server.url("/v1/state/datasets"))
        .await
        .as_array()?
        .iter()
        .find(|entry| entry["dataset_id"] == dataset)
        .cloned()
}

/// Whether the state shows `dataset` mounted on `agent`, at its path under the agent's root.
async fn mounted_on(
    http: &reqwest::Client,
    server: &ChildServer,
    dataset: &str,
    agent: &Agent,
) -> bool {
    state_of(http, server, dataset).await.is_some_and(|entry| {
        entry["primary"] == agent.node.as_str()
            && entry["path"] == agent.path_of(dataset).display().to_string()
    })
}

async fn move_to(http: &reqwest::Client, server: &ChildServer, dataset: &str, node: &str) {
    let url = server.url(&format!("/v1/configuration/datasets/{dataset}"));
    let (status, body) = send(http.post(url).json(&json!({ "primary": node }))).await;
    assert_eq!(status, 200, "move: {body}");
}

async fn create_on(http: &reqwest::Client, server: &ChildServer, node: &str) -> String {
    let url = server.url("/v1/configuration/datasets");
    let body = json!({ "primary": node, "maximum_size": 1_073_741_824 });
    let (status, body) = send(http.post(url).json(&body)).await;
    assert_eq!(status, 201, "create: {body}");
    body["dataset_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_follow_the_configuration_and_survive_failures() {
    let began = Instant::now();
    let http = client();
    let data = TempDir::new().unwrap();
    let mut server = ChildServer::start(data.path(), &["--node-expiry", "3"]);
    let control = server.url("");
    let a = Agent::start(&control);
    let b = Agent::start(&control);
    assert_eq!(a.stored_node(), a.node);
    assert_eq!(b.stored_node(), b.node);
    assert_ne!(a.node, b.node);

    // 1. Both nodes report.
    eventually("both nodes in /v1/state/nodes", || async {
        let nodes = nodes(&http, &server).await;
        (nodes.contains(&a.node) && nodes.contains(&b.node)).then_some(())
    })
    .await;

    // 2. A dataset configured on A is mounted on A.
    let dataset = create_on(&http, &server, &a.node).await;
    eventually("the dataset mounted on A", || async {
        mounted_on(&http, &server, &dataset, &a).await.then_some(())
    })
    .await;
    assert!(a.path_of(&dataset).is_dir());
    let entry = state_of(&http, &server, &dataset).await.unwrap();
    assert_eq!(entry["maximum_size"], 1_073_741_824, "{entry}");

    // 3. Moved to B: B mounts it once A has let it go.
    move_to(&http, &server, &dataset, &b.node).await;
    eventually("the dataset moved to B", || async {
        (mounted_on(&http, &server, &dataset, &b).await
            && b.path_of(&dataset).is_dir()
            && !a.path_of(&dataset).exists())
        .then_some(())
    })
    .await;
    assert!(
        a.messages()
            .iter()
            .any(|m| m.starts_with("released dataset")),
        "A logged no release:\n{}",
        a.log()
    );

    // 4. A lease held by B pins the dataset on B although it is moved to A ...
    let lease = json!({ "dataset_id": dataset, "node_uuid": b.node, "expires": null });
    let (status, body) = send(
        http.post(server.url("/v1/configuration/leases"))
            .json(&lease),
    )
    .await;
    assert_eq!(status, 201, "lease: {body}");
    move_to(&http, &server, &dataset, &a.node).await;
    let pinned_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < pinned_until {
        assert!(
            mounted_on(&http, &server, &dataset, &b).await,
            "the leased dataset left B: {:?}",
            state_of(&http, &server, &dataset).await
        );
        assert!(b.path_of(&dataset).is_dir());
        assert!(!a.path_of(&dataset).exists());
        tokio::time::sleep(POLL).await;
    }
    // ... until the lease is released.
    let url = server.url(&format!("/v1/configuration/leases/{dataset}"));
    let (status, body) = send(http.delete(url)).await;
    assert_eq!(status, 200, "release: {body}");
    eventually("the dataset moved to A after the lease went", || async {
        (mounted_on(&http, &server, &dataset, &a).await
            && a.path_of(&dataset).is_dir()
            && !b.path_of(&dataset).exists())
        .then_some(())
    })
    .await;

    // 5. Deleted: it leaves the state and its directory goes.
    let url = server.url(&format!("/v1/configuration/datasets/{dataset}"));
    let (status, body) = send(http.delete(url)).await;
    assert_eq!(status, 200, "delete: {body}");
    eventually("the deleted dataset gone", || async {
        (state_of(&http, &server, &dataset).await.is_none() && !a.path_of(&dataset).exists())
            .then_some(())
    })
    .await;
    assert!(
        a.messages()
            .iter()
            .any(|m| m.starts_with("removed deleted dataset")),
        "A logged no removal:\n{}",
        a.log()
    );

    // 6. B dies without a goodbye: it drops out after the node expiry, not before.
    let b_node = b.node.clone();
    drop(b);
    let killed = Instant::now();
    eventually("B expired", || async {
        (!nodes(&http, &server).await.contains(&b_node)).then_some(())
    })
    .await;
    let silent = killed.elapsed();
    assert!(
        silent >= Duration::from_millis(1500),
        "B dropped out {silent:?} after it died; the expiry is 3 s"
    );
    assert!(nodes(&http, &server).await.contains(&a.node));

    // 7. A's era names A.
    let by_era = get(
        &http,
        server.url(&format!("/v1/state/nodes/by_era/{}", a.era)),
    )
    .await;
    assert_eq!(by_era, json!({ "uuid": a.node }));

    // 8. The service restarts (losing the state, which lives in memory); A reports again.
    let kept = create_on(&http, &server, &a.node).await;
    eventually("a second dataset mounted on A", || async {
        mounted_on(&http, &server, &kept, &a).await.then_some(())
    })
    .await;
    let address = server.addr;
    server.kill();
    let restarted = Instant::now();
    server = ChildServer::start_at(data.path(), &address.to_string(), &["--node-expiry", "3"]);
    eventually("A back in the state after the restart", || async {
        (nodes(&http, &server).await.contains(&a.node)
            && mounted_on(&http, &server, &kept, &a).await)
            .then_some(())
    })
    .await;
    let back_after = restarted.elapsed();
    assert!(
        a.messages()
            .iter()
            .any(|m| m.starts_with("control service unreachable"))
            && a.messages()
                .iter()
                .any(|m| m.starts_with("reconnected to the control service")),
        "A logged no outage and reconnection:\n{}",
        a.log()
    );

    // 9. SIGTERM: A says goodbye, leaves the state at once, and exits 0.
    let a_node = a.node.clone();
    let a_era = a.era.clone();
    let (exit, state_dir, root_dir) = a.terminate();
    assert!(exit.success(), "the agent exited with {exit}");
    assert!(
        !nodes(&http, &server).await.contains(&a_node),
        "A is still listed right after its goodbye"
    );

    // 10. Started again over the same directories: same node, new era, same datasets.
    let a = Agent::start_in(&control, state_dir, root_dir);
    assert_eq!(a.node, a_node);
    assert_ne!(a.era, a_era);
    eventually("A back with its dataset after its own restart", || async {
        mounted_on(&http, &server, &kept, &a).await.then_some(())
    })
    .await;
    let by_era = get(
        &http,
        server.url(&format!("/v1/state/nodes/by_era/{}", a.era)),
    )
    .await;
    assert_eq!(by_era, json!({ "uuid": a.node }));

    eprintln!(
        "agent e2e: B expired {silent:?} after SIGKILL; A back {back_after:?} after the service restart; whole test {:?}",
        began.elapsed()
    );
}

/// A control service stopped gracefully answers the agent's held waits at once; the agent
/// asks again within seconds, not at the end of its report interval, so after a restart
/// (which forgets every node) the node is listed again within seconds.
#[tokio::test]
async fn after_a_graceful_restart_the_node_is_listed_again_within_seconds() {
    let http = client();
    let data = TempDir::new().unwrap();
    let mut server = ChildServer::start(data.path(), &[]);
    let agent = Agent::start_reporting_every(
        &server.url(""),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        "30",
    );
    eventually("the node listed", || async {
        nodes(&http, &server)
            .await
            .contains(&agent.node)
            .then_some(())
    })
    .await;
    let address = server.addr.to_string();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = server.child.wait();
    server = ChildServer::start_at(data.path(), &address, &[]);
    let restarted = Instant::now();
    eventually("the node listed again", || async {
        nodes(&http, &server)
            .await
            .contains(&agent.node)
            .then_some(())
    })
    .await;
    assert!(
        restarted.elapsed() < Duration::from_secs(15),
        "listed again only after {:?}, near the 30 s report interval",
        restarted.elapsed()
    );
}
