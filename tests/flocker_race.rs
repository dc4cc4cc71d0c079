//! Races over real HTTP: Flocker's documented "list, check, create with the tag, retry on 412"
//! pattern with 50 concurrent clients, and concurrent creates of one explicit dataset id.
mod common;

use std::sync::Arc;

use common::{NODE_0, NODE_1, TestServer};
use serde_json::{Value, json};
use tokio::sync::Barrier;

const DATASETS: &str = "/v1/configuration/datasets";
const LEASES: &str = "/v1/configuration/leases";
const IF_MATCHES: &str = "X-If-Configuration-Matches";
const TAG: &str = "X-Configuration-Tag";
const MAX_ATTEMPTS: usize = 200;

/// What one client of the "my-db" race saw.
#[derive(Debug, Default)]
struct Outcome {
    created: usize,
    precondition_failed: usize,
    attempts: usize,
    /// Lists read right after a 412 that still carried the refused tag.
    stale_lists_after_412: usize,
}

async fn unique_name_client(
    client: reqwest::Client,
    base: String,
    barrier: Arc<Barrier>,
    listed_once: Arc<Barrier>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut refused_tag: Option<String> = None;
    barrier.wait().await;
    loop {
        outcome.attempts += 1;
        assert!(
            outcome.attempts <= MAX_ATTEMPTS,
            "a client needed more than {MAX_ATTEMPTS} attempts: {outcome:?}"
        );
        let listed = client
            .get(format!("{base}{DATASETS}"))
            .send()
            .await
            .expect("GET answered");
        assert_eq!(listed.status(), 200);
        let tag = listed
            .headers()
            .get(TAG)
            .expect("the list carries a tag")
            .to_str()
            .unwrap()
            .to_string();
        if refused_tag.take().as_deref() == Some(tag.as_str()) {
            // The server said this tag is stale, then served it as current.
            outcome.stale_lists_after_412 += 1;
        }
        let items: Value = listed.json().await.expect("a JSON list");
        let exists = items.as_array().unwrap().iter().any(|item| {
            item["deleted"] == json!(false) && item["metadata"]["name"] == json!("my-db")
        });
        if outcome.attempts == 1 {
            // Every client has listed before any creates: they all hold the same tag, so the
            // race is real and exactly one of these first attempts can win.
            assert!(!exists);
            listed_once.wait().await;
        }
        if exists {
            return outcome;
        }
        let answer = client
            .post(format!("{base}{DATASETS}"))
            .header(IF_MATCHES, tag.as_str())
            .json(&json!({"primary": NODE_0, "metadata": {"name": "my-db"}}))
            .send()
            .await
            .expect("POST answered");
        match answer.status().as_u16() {
            201 => outcome.created += 1,
            412 => {
                let current = answer
                    .headers()
                    .get(TAG)
                    .expect("a 412 carries the current tag")
                    .to_str()
                    .unwrap()
                    .to_string();
                assert_ne!(current, tag);
                let body: Value = answer.json().await.unwrap();
                assert_eq!(
                    body,
                    json!({"description": format!("Tag doesn't match. Required: {tag}, current: {current}")})
                );
                outcome.precondition_failed += 1;
                refused_tag = Some(tag);
            }
            other => panic!("unexpected {other}: {}", answer.text().await.unwrap()),
        }
    }
}

/// How many times each race is run; one run can miss an interleaving that the next one hits.
const ROUNDS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_clients_create_one_uniquely_named_dataset() {
    for _ in 0..ROUNDS {
        unique_name_round().await;
    }
}

async fn unique_name_round() {
    let s = TestServer::start().await;
    // Something unrelated already exists, including a deleted "my-db" that must not count.
    let old = s
        .client
        .post(s.url(DATASETS))
        .json(&json!({"primary": NODE_1, "metadata": {"name": "my-db"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 201);
    let old: Value = old.json().await.unwrap();
    let old_id = old["dataset_id"].as_str().unwrap().to_string();
    let deleted = s
        .client
        .delete(s.url(&format!("{DATASETS}/{old_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);

    let clients = 50;
    let barrier = Arc::new(Barrier::new(clients));
    let listed_once = Arc::new(Barrier::new(clients));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(unique_name_client(
                common::client(),
                format!("http://{}", s.addr),
                barrier.clone(),
                listed_once.clone(),
            ))
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("a client task finishes"));
    }
    let created: usize = outcomes.iter().map(|o| o.created).sum();
    let refused: usize = outcomes.iter().map(|o| o.precondition_failed).sum();
    assert_eq!(created, 1, "exactly one client created the dataset");
    assert_eq!(
        outcomes.iter().filter(|o| o.created == 1).count(),
        1,
        "exactly one client got a 201"
    );
    assert!(refused >= 1, "at least one client saw a 412: {outcomes:?}");
    let stale: usize = outcomes.iter().map(|o| o.stale_lists_after_412).sum();
    assert_eq!(
        stale, 0,
        "after a 412 naming a newer tag, a GET still listed the refused tag (the 412 was \
         answered before the write it reports was visible)"
    );
    assert_eq!(
        refused,
        clients - 1,
        "all other first attempts were stale: {outcomes:?}"
    );

    let items: Value = s
        .client
        .get(s.url(DATASETS))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let live: Vec<&Value> = items
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["metadata"]["name"] == json!("my-db") && i["deleted"] == json!(false))
        .collect();
    assert_eq!(live.len(), 1, "exactly one live my-db: {items}");
    assert_eq!(live[0]["primary"], json!(NODE_0));
    assert_eq!(items.as_array().unwrap().len(), 2, "{items}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_dataset_id_created_concurrently() {
    let s = TestServer::start().await;
    for round in 0..ROUNDS {
        same_id_round(&s, round).await;
    }
}

async fn same_id_round(s: &TestServer, round: usize) {
    let id = uuid::Uuid::new_v4().to_string();
    let clients = 32;
    let barrier = Arc::new(Barrier::new(clients));
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let client = common::client();
            let url = s.url(DATASETS);
            let url_base = url.clone();
            let barrier = barrier.clone();
            // Half of them spell the id in upper case: the same id.
            let dataset_id = if i % 2 == 0 {
                id.clone()
            } else {
                id.to_uppercase()
            };
            let node = if i % 3 == 0 { NODE_0 } else { NODE_1 };
            tokio::spawn(async move {
                barrier.wait().await;
                let answer = client
                    .post(url)
                    .json(&json!({"primary": node, "dataset_id": dataset_id, "metadata": {"client": i.to_string()}}))
                    .send()
                    .await
                    .expect("POST answered");
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.expect("a JSON body");
                // A 409 says the id is in use: the dataset must be visible from then on.
                let visible = if status == 409 {
                    client
                        .get(format!("{}/{}", url_base, dataset_id.to_lowercase()))
                        .send()
                        .await
                        .expect("GET answered")
                        .status()
                        .as_u16()
                } else {
                    200
                };
                (status, body, visible)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(status, ..)| *status == 201)
        .map(|(_, body, _)| body)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one 201: {answers:?}");
    let invisible = answers
        .iter()
        .filter(|(.., visible)| *visible != 200)
        .count();
    assert_eq!(
        invisible, 0,
        "a GET right after a 409 did not find the dataset (the 409 was answered before the \
         conflicting create was visible): {answers:?}"
    );
    let losers = answers.iter().filter(|(status, body, _)| {
        *status == 409
            && *body == json!({"description": "The provided dataset_id is already in use."})
    });
    assert_eq!(losers.count(), clients - 1, "{answers:?}");
    let items: Value = s
        .client
        .get(s.url(DATASETS))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), round + 1);
    let item = items.iter().find(|i| i["dataset_id"] == json!(id)).unwrap();
    assert_eq!(item, winners[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_writes_with_one_tag_let_exactly_one_through() {
    let s = TestServer::start().await;
    let clients = 24;
    let rounds = 5;
    for round in 0..rounds {
        let tag = s
            .client
            .get(s.url(DATASETS))
            .send()
            .await
            .unwrap()
            .headers()
            .get(TAG)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let barrier = Arc::new(Barrier::new(clients));
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let client = common::client();
                let url = s.url(DATASETS);
                let barrier = barrier.clone();
                let tag = tag.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    client
                        .post(url)
                        .header(IF_MATCHES, tag)
                        .json(&json!({"primary": NODE_0, "metadata": {"client": i.to_string()}}))
                        .send()
                        .await
                        .expect("POST answered")
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 412).count(),
            clients - 1,
            "round {round}: {statuses:?}"
        );
        let items: Value = s
            .client
            .get(s.url(DATASETS))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(items.as_array().unwrap().len(), round + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_lease_acquired_concurrently_by_many_nodes() {
    let s = TestServer::start().await;
    let dataset = uuid::Uuid::new_v4().to_string();
    let clients = 32;
    let barrier = Arc::new(Barrier::new(clients));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = common::client();
            let url = s.url(LEASES);
            let barrier = barrier.clone();
            let dataset = dataset.clone();
            let node = uuid::Uuid::new_v4().to_string();
            tokio::spawn(async move {
                barrier.wait().await;
                let answer = client
                    .post(url.as_str())
                    .json(&json!({"dataset_id": dataset, "node_uuid": node, "expires": null}))
                    .send()
                    .await
                    .expect("POST answered");
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap();
                // A 409 says the lease is held: it must be listed from then on.
                let listed: Value = client
                    .get(url)
                    .send()
                    .await
                    .expect("GET answered")
                    .json()
                    .await
                    .unwrap();
                let visible = status != 409 || listed.as_array().unwrap().len() == 1;
                (status, node, body, visible)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let winners: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == 201)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|(status, _, body, _)| *status == 409
                && *body == json!({"description": "Lease already held."}))
            .count(),
        clients - 1
    );
    let held: Value = s
        .client
        .get(s.url(LEASES))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        held,
        json!([{"dataset_id": dataset, "node_uuid": winners[0].1, "expires": null}])
    );
}
