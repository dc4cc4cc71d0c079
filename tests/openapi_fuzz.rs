//! floe's own OpenAPI document, checked by openapi-spec-validator and then used by
//! schemathesis: thousands of requests generated from `GET /openapi.json`, valid and
//! deliberately invalid, and sequences that follow the document's links (create, then read,
//! change or delete what was created), each answer checked against the document. It fails on
//! any 5xx, on a status code, media type or body the document does not declare, and on a
//! request that breaks the document's schemas yet is accepted
//! (`tests/schemathesis/schemathesis.toml` says which checks run and why).
//!
//! It needs both tools, which `tests/schemathesis/setup` installs into `target/schemathesis`,
//! so it is ignored by a plain `cargo test`; `.ci/run` runs the setup and then
//! `cargo test --test openapi_fuzz -- --ignored`. The run is seeded, so CI sees the same
//! requests every time; `FLOE_FUZZ_SEED` and `FLOE_FUZZ_EXAMPLES` (per operation, 30 by
//! default) explore further.
mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;
use tempfile::TempDir;

/// Authentication on, as floe runs by default, with the admin's token on every request.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs schemathesis: run tests/schemathesis/setup (as .ci/run does)"]
async fn every_answer_conforms_to_the_openapi_document() {
    conforms(floe::config::AuthMode::Token).await;
}

/// Authentication off: the document then makes every operation public and requests carry no
/// credentials. This reaches what the admin's token does not (an agent's report, which only
/// its node may send) and the answers of accounts when authentication is off.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs schemathesis: run tests/schemathesis/setup (as .ci/run does)"]
async fn every_answer_conforms_to_the_openapi_document_without_authentication() {
    conforms(floe::config::AuthMode::None).await;
}

async fn conforms(auth: floe::config::AuthMode) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tools = root.join("target/schemathesis/venv/bin");
    let st = tools.join("st");
    assert!(
        st.exists(),
        "schemathesis is not installed: run tests/schemathesis/setup first"
    );
    // Requests that ask to wait for a change are held for a second at most, so that a
    // generated `Prefer: wait` does not stall the run.
    let authenticated = auth == floe::config::AuthMode::Token;
    let server = TestServer::start_in(TempDir::new().expect("a temp dir"), |config| {
        config.auth = auth;
        config.max_wait = 1;
    })
    .await;
    let credentials = if authenticated {
        vec![
            "--header".to_string(),
            format!("Authorization: Bearer {}", server.admin_token().await),
        ]
    } else {
        Vec::new()
    };
    let document = server.url("/openapi.json");
    let text = server
        .client
        .get(&document)
        .send()
        .await
        .expect("the document is answered")
        .text()
        .await
        .expect("the document is text");
    // schemathesis keeps a cache in the directory it runs in: a temporary one, not the tree.
    let work = TempDir::new().expect("a temp dir");
    let saved = work.path().join("openapi.json");
    std::fs::write(&saved, &text).expect("save the document");

    // First, the document itself is valid OpenAPI 3.1.
    let validated = Command::new(tools.join("openapi-spec-validator"))
        .arg(&saved)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        validated.status.success(),
        "GET /openapi.json is not valid OpenAPI:\n{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let parsed: serde_json::Value = serde_json::from_str(&text).expect("the document is JSON");
    let operations: usize = parsed["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().expect("a path item").len())
        .sum();
    let seed = std::env::var("FLOE_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("FLOE_FUZZ_EXAMPLES").unwrap_or_else(|_| "30".into());
    let config = root.join("tests/schemathesis/schemathesis.toml");

    // schemathesis blocks; the server it talks to runs on this test's runtime.
    let cwd = work.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(cwd)
            .arg("--config-file")
            .arg(config)
            .args(["run", &document])
            .args(&credentials)
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--max-examples", &examples, "--seed", &seed])
            // A 303 is an answer to check, not a redirect to follow.
            .args(["--max-redirects", "0", "--workers", "2"])
            // That health check is about how many generated values schemathesis throws away
            // (path parameters cannot carry every string), not about floe's answers; it once
            // stopped a deep run's fuzzing of a metadata path.
            .args(["--suppress-health-check", "filter_too_much"])
            .env("NO_COLOR", "1")
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("the schemathesis process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found answers that do not conform to the document ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The run must have reached every documented operation but the document itself, which
    // schemathesis leaves out.
    let tested = operations - 1;
    assert!(
        stdout.contains(&format!("Tested: {tested}\n")),
        "not all {tested} operations were tested:\n{stdout}"
    );
    server.stop().await;
}
