//! Test helpers: an in-process [`TestServer`] and a [`ChildServer`] running the real binary,
//! both on 127.0.0.1 port 0 over a temporary data directory, both stopped on drop.
#![allow(dead_code)]

pub mod http;
pub mod routes;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use floe::config::{ServeConfig, StoreKind};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A v4 UUID used as a node in tests (Flocker's docs' NODE_0).
pub const NODE_0: &str = "cf0f0346-17b2-4812-beca-1434997d6c3f";
/// Another node (Flocker's docs' NODE_1).
pub const NODE_1: &str = "7ec3c4eb-6b1c-43da-8015-a163f7d15244";

/// The revision a configuration tag names: its last 16 hex digits, after the store's id.
/// Every start draws a new id (so that a restored backup cannot bring back tags already
/// published), so across a restart only the revision carries over.
pub fn revision_of(tag: &str) -> &str {
    let tag = tag.trim_matches('"');
    &tag[tag.len().saturating_sub(16)..]
}

/// Asserts that `after`, read after a restart, names the same revision as `before` under a new
/// store id.
pub fn assert_same_revision_new_tag(before: &str, after: &str, context: &str) {
    assert_eq!(
        revision_of(after),
        revision_of(before),
        "{context}: the revision carries over a restart"
    );
    assert_ne!(after, before, "{context}: a restart draws a new tag");
}

/// A client that never goes through a proxy and never follows redirects (a 303 is an answer
/// the tests check).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client")
}

/// floe running inside the test process, with its SQLite store in a temporary directory.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A client for it.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    dir: TempDir,
}

impl TestServer {
    /// Starts a server with a durable store in a fresh temporary directory.
    pub async fn start() -> Self {
        Self::start_in(TempDir::new().expect("a temp dir"), |_| {}).await
    }

    /// Starts a server with authentication on, over a fresh durable store, and returns it with
    /// the token of the `admin` user it created.
    pub async fn start_with_auth() -> (Self, String) {
        let server = Self::start_in(TempDir::new().expect("a temp dir"), |config| {
            config.auth = floe::config::AuthMode::Token;
        })
        .await;
        let token = server.admin_token().await;
        (server, token)
    }

    /// Creates a user through the API, as the admin whose token is `admin`, with a password
    /// and `permissions` (FiFo paths, e.g. `[["cloud", "packages", "list"]]`).
    pub async fn create_user(
        &self,
        admin: &str,
        name: &str,
        password: &str,
        permissions: serde_json::Value,
    ) {
        let answer = self
            .client
            .post(self.url("/api/2/users"))
            .bearer_auth(admin)
            .json(&serde_json::json!({
                "user": name,
                "password": password,
                "permissions": permissions,
            }))
            .send()
            .await
            .expect("the user creation is answered");
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert_eq!(status, 303, "creating user {name}: {text}");
    }

    /// The token in the data directory's `admin-token` file (auth on), once the starting
    /// server has written it.
    pub async fn admin_token(&self) -> String {
        let path = self.data_dir().join(floe::ADMIN_TOKEN_FILE);
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&path)
                && text.ends_with('\n')
            {
                return text.trim().to_string();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no admin-token file in {}", path.display())
    }

    /// Starts a server over `dir` after letting `adjust` change the settings.
    pub async fn start_in(dir: TempDir, adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let mut config = ServeConfig::ephemeral();
        config.store = StoreKind::Sqlite;
        config.data_dir = dir.path().to_path_buf();
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a local address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            floe::run(&config, listener, async {
                let _ = stop.await;
            })
            .await
            .expect("the server runs");
        });
        TestServer {
            addr,
            client: client(),
            shutdown: Some(shutdown),
            task: Some(task),
            dir,
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server gracefully, waits for it, and hands back its data directory so that
    /// a new server can be started over the same store.
    pub async fn stop(mut self) -> TempDir {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task ends cleanly");
        }
        let placeholder = TempDir::new().expect("a temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The real `floe` binary as a child process (`floe serve --listen 127.0.0.1:0`), for tests
/// of what only a real process shows: SIGKILL, SIGTERM, exit codes, start-up errors.
pub struct ChildServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The process.
    pub child: Child,
    /// Every log line it has written so far arrives here (JSON, one object per line).
    pub log: mpsc::Receiver<String>,
}

/// The path of the built binary.
pub fn floe_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_floe"))
}

impl ChildServer {
    /// Starts `floe serve` over `data_dir` with extra `args` on a fresh loopback port, and
    /// waits until it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Self {
        Self::start_at(data_dir, "127.0.0.1:0", args)
    }

    /// As [`ChildServer::start`], listening on `listen` (a restart where clients expect it).
    pub fn start_at(data_dir: &Path, listen: &str, args: &[&str]) -> Self {
        Self::start_with_env(data_dir, listen, args, &[])
    }

    /// As [`ChildServer::start_at`], with environment variables `env` set last (`RUST_LOG`
    /// to see what another log level writes, for example).
    pub fn start_with_env(
        data_dir: &Path,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(floe_binary())
            .arg("serve")
            .args(["--listen", listen, "--log-format", "json", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            // The suite tests the API, not authentication: tests of auth set it with --auth.
            .env("FLOE_AUTH", "none")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("floe starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let line = log.recv_timeout(remaining).unwrap_or_else(|_| {
                panic!(
                    "floe did not report listening (exit: {:?})",
                    child.try_wait()
                )
            });
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "floe listening" {
                let addr = event["fields"]["address"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .expect("the listening line names the address");
                return ChildServer { addr, child, log };
            }
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a process may take to exit when it should.
pub const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// Waits for `child` to exit, failing the test (after killing it) if it takes longer than
/// `within`.
pub fn wait_for_exit(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `floe` with `args` to completion (bounded), giving its exit status, stdout and stderr.
pub fn run_floe(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut command = Command::new(floe_binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("floe starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_for_exit(&mut child, EXIT_WITHIN, &format!("floe {args:?}"));
    (status, out.join().unwrap(), err.join().unwrap())
}
