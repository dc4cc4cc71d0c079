//! Acceptance against Project FiFo's own client: PyFi 0.2.9 (`fifo`, Python 2.7), configured
//! with a `~/.fifo` that points at an in-process floe over plain HTTP with API version 2, lists,
//! creates, reads and deletes packages and sets and deletes their metadata, by UUID, logging
//! in with the OAuth2 password grant as FiFo's users do (checklist A.9, item 19).
//!
//! It needs Python 2.7 and PyFi, which `tests/pyfi/setup` installs into `target/pyfi`, so it is
//! ignored by a plain `cargo test`; `.ci/run` runs the setup and then this test with
//! `cargo test --test pyfi -- --ignored`.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use serde_json::{Value, json};
use tempfile::TempDir;

/// Where `tests/pyfi/setup` puts PyFi and the interpreter.
fn pyfi_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyfi")
}

/// PyFi pointed at one floe: a home directory holding its `~/.fifo`.
struct Pyfi {
    home: TempDir,
}

impl Pyfi {
    fn new(server: &TestServer, user: &str, password: &str) -> Self {
        let dir = pyfi_dir();
        assert!(
            dir.join("ready").exists(),
            "PyFi is not installed: run tests/pyfi/setup first"
        );
        let home = TempDir::new().expect("a temp dir");
        // PyFi's own configuration file, as its README describes it.
        let config = format!(
            "[GENERAL]\nactive = floe\n\n[floe]\napiversion = 2\nhost = {}\nuser = {user}\npass = {password}\ninsecure = true\n",
            server.addr
        );
        std::fs::write(home.path().join(".fifo"), config).expect("write ~/.fifo");
        Pyfi { home }
    }

    /// Runs `fifo <args>` and answers its standard output; panics with everything it printed
    /// when it exits with an error.
    async fn run<S: AsRef<str>>(&self, args: &[S]) -> String {
        let (output, shown) = self.run_status(args).await;
        assert!(output.status.success(), "{shown}");
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    async fn run_status<S: AsRef<str>>(&self, args: &[S]) -> (std::process::Output, String) {
        let dir = pyfi_dir();
        let home = self.home.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|arg| arg.as_ref().to_string()).collect();
        // PyFi blocks; the server it talks to runs on this test's runtime.
        tokio::task::spawn_blocking(move || {
            let output = Command::new(dir.join("python2.7"))
                .arg(dir.join("PyFi-0.2.9/bin/fifo"))
                .args(&args)
                .env("HOME", &home)
                .env("PYTHONPATH", dir.join("site"))
                .env_remove("PYENV_VERSION")
                .output()
                .expect("run python2.7");
            let shown = format!(
                "fifo {} exited with {}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            (output, shown)
        })
        .await
        .expect("the fifo process")
    }

    /// `fifo packages get <uuid>` as JSON.
    async fn package(&self, uuid: &str) -> Value {
        let text = self.run(&["packages", "get", uuid]).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
    }
}

/// A server with authentication on, the user `operator` (password `s3cret`) with the package
/// permissions FiFo's operators hold, and PyFi configured to log in as `operator` with
/// `password`. Answers the admin's token too.
async fn start_with_pyfi(password: &str) -> (TestServer, String, Pyfi) {
    let (server, admin) = TestServer::start_with_auth().await;
    let permissions = json!([["cloud", "packages", "..."], ["packages", "..."]]);
    server
        .create_user(&admin, "operator", "s3cret", permissions)
        .await;
    let pyfi = Pyfi::new(&server, "operator", password);
    (server, admin, pyfi)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Python 2.7 and PyFi 0.2.9: run tests/pyfi/setup (as .ci/run does)"]
async fn pyfi_manages_packages_and_their_metadata() {
    let (server, admin, pyfi) = start_with_pyfi("s3cret").await;

    // An empty list: `-H` drops the table header, `-p` prints parseable lines.
    assert_eq!(pyfi.run(&["packages", "list", "-H", "-p"]).await, "");

    // Create: PyFi posts JSON, follows the 303 and prints the new package's UUID.
    let uuid = pyfi
        .run(&[
            "packages", "create", "-p", "-m", "1GB", "-q", "10GB", "-c", "100", "small",
        ])
        .await
        .trim()
        .to_string();
    assert!(uuid::Uuid::parse_str(&uuid).is_ok(), "not a UUID: {uuid:?}");
    let listed = pyfi.run(&["packages", "list", "-H", "-p"]).await;
    assert_eq!(listed, format!("{uuid}:small:1024 MB:100%:10 GB\n"));

    let package = pyfi.package(&uuid).await;
    assert_eq!(package["uuid"], uuid);
    assert_eq!(package["name"], "small");
    assert_eq!(package["ram"], 1024);
    assert_eq!(package["quota"], 10);
    assert_eq!(package["cpu_cap"], 100);
    assert_eq!(package["compression"], "off");

    // A second package with the same name is refused, and nothing is added.
    let (duplicate, shown) = pyfi
        .run_status(&[
            "packages", "create", "-p", "-m", "2GB", "-q", "20GB", "-c", "50", "small",
        ])
        .await;
    assert!(!duplicate.status.success(), "{shown}");
    assert_eq!(pyfi.run(&["packages", "list", "-H", "-p"]).await, listed);

    // Metadata: dotted keys are paths; values are strings unless typed.
    let metadata = |args: &[&str]| {
        let mut command = vec!["packages", "metadata", uuid.as_str()];
        command.extend_from_slice(args);
        command.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for args in [
        metadata(&["set", "jingles.color", "red"]),
        metadata(&["set", "-i", "jingles.count", "3"]),
        metadata(&["set", "-j", "owner", r#"{"team": "ops"}"#]),
    ] {
        // PyFi prints the status of a write first (FiFo answers 204, as floe does).
        assert_eq!(
            pyfi.run(&args).await,
            "204\nMetadata successfully updated!\n"
        );
    }
    assert_eq!(
        pyfi.package(&uuid).await["metadata"],
        json!({"jingles": {"color": "red", "count": 3}, "owner": {"team": "ops"}})
    );
    let args = metadata(&["delete", "jingles.color"]);
    assert_eq!(pyfi.run(&args).await, "Metadata successfully updated!\n");
    assert_eq!(
        pyfi.package(&uuid).await["metadata"],
        json!({"jingles": {"count": 3}, "owner": {"team": "ops"}})
    );

    // Delete, by UUID; the package is gone for PyFi and for the API.
    let deleted = pyfi.run(&["packages", "delete", &uuid]).await;
    assert_eq!(deleted, format!("{uuid} deleted successful.\n"));
    assert_eq!(pyfi.run(&["packages", "list", "-H", "-p"]).await, "");
    let (missing, shown) = pyfi.run_status(&["packages", "get", &uuid]).await;
    assert!(!missing.status.success(), "{shown}");
    let status = server
        .client
        .get(server.url(&format!("/api/2/packages/{uuid}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get")
        .status();
    assert_eq!(status, 404);

    // PyFi kept the token it was given in its configuration, as it does with FiFo.
    let config = std::fs::read_to_string(pyfi.home.path().join(".fifo")).expect("~/.fifo");
    assert!(config.contains("token = "), "{config}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Python 2.7 and PyFi 0.2.9: run tests/pyfi/setup (as .ci/run does)"]
async fn pyfi_with_a_wrong_password_changes_nothing() {
    let (server, admin, pyfi) = start_with_pyfi("wrong").await;
    let (output, shown) = pyfi
        .run_status(&[
            "packages", "create", "-p", "-m", "1GB", "-q", "10GB", "-c", "100", "small",
        ])
        .await;
    assert!(!output.status.success(), "{shown}");
    let list: Value = server
        .client
        .get(server.url("/api/2/packages"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    assert_eq!(list, json!([]));
    server.stop().await;
}
