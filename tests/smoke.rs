//! The test helpers themselves work: an in-process server and the real binary both answer.
mod common;

use common::{ChildServer, TestServer};

#[tokio::test]
async fn in_process_server_answers_version() {
    let server = TestServer::start().await;
    let answer: serde_json::Value = server
        .client
        .get(server.url("/v1/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["flocker"].as_str().unwrap().starts_with("1.15.0"));
    server.stop().await;
}

#[tokio::test]
async fn binary_answers_version() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = ChildServer::start(dir.path(), &[]);
    let status = common::client()
        .get(server.url("/v1/version"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}
