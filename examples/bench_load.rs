//! The loader for `bench/run`: fills a floe (or etcd) on loopback over HTTP with many
//! requests in flight, so that floe's writer group-commits them, and writes the data files the
//! wrk scripts read.
//!
//! ```text
//! bench_load create  --base URL --count N [--concurrency C] [--primary UUID]
//! bench_load movable --base URL --count N [--concurrency C] --a UUID --b UUID --out FILE
//! bench_load reset   --base URL --out FILE
//! bench_load etcd    --base URL --count N [--concurrency C] --out FILE
//! bench_load waiters --base URL --count N --settle S --idle S
//! ```
//!
//! `create` makes N datasets (primary A, two metadata keys each). `movable` does the same and
//! then moves every one to B and back to A, learning the ETag of each state; FILE becomes a
//! Lua table `{a=, b=, items={{id, etag_at_a, etag_at_b}, ...}}` for `bench/lua/floe_move.lua`.
//! `reset --out FILE` moves every dataset of a `movable` FILE that is on B back to A.
//! `etcd` puts N keys `bench/NNNNNNNN` with value `A` through the v3 JSON gateway and writes
//! `{a=, b=, keys={...}}` (base64) for the etcd scripts. Each prints how long it took.
//! `waiters` opens N connections, each a GET of the dataset list that waits for a change
//! (`If-None-Match` + `Prefer: wait`); after `--settle` + `--idle` seconds (the harness
//! measures floe's CPU during the idle part) it makes one change and reports how long it took
//! until every waiter had its 200.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    base: String,
    count: usize,
    concurrency: usize,
    a: Uuid,
    b: Uuid,
    out: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, Error> {
    let mut flags = HashMap::new();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or(format!("{flag} needs a value"))?;
        flags.insert(flag.trim_start_matches("--").to_string(), value.clone());
    }
    let base = flags.remove("base").ok_or("--base is required")?;
    if !(base.starts_with("http://127.") || base.starts_with("http://localhost")) {
        return Err(format!("{base}: only loopback addresses are allowed").into());
    }
    let uuid = |value: Option<String>, default: &str| -> Result<Uuid, Error> {
        Ok(Uuid::parse_str(value.as_deref().unwrap_or(default))?)
    };
    Ok(Options {
        base: base.trim_end_matches('/').to_string(),
        count: flags
            .remove("count")
            .map(|c| c.parse())
            .transpose()?
            .unwrap_or(0),
        concurrency: flags
            .remove("concurrency")
            .map(|c| c.parse())
            .transpose()?
            .unwrap_or(64),
        a: uuid(
            flags.remove("a").or(flags.remove("primary")),
            "cf0f0346-17b2-4812-beca-1434997d6c3f",
        )?,
        b: uuid(flags.remove("b"), "5f9b2b1e-8f7d-4c1a-9c3e-2a6b7d8e9f01")?,
        out: flags.remove("out"),
    })
}

/// Runs `job(i)` for every i in 0..count with `concurrency` in flight; results in order.
async fn run_all<T, F, Fut>(count: usize, concurrency: usize, job: F) -> Result<Vec<T>, Error>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, Error>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let next = Arc::clone(&next);
        let job = Arc::clone(&job);
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, Error>(done);
                }
                done.push((i, job(i).await?));
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for worker in workers {
        all.extend(worker.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, value)| value).collect())
}

fn etag_of(response: &reqwest::Response) -> Result<String, Error> {
    Ok(response
        .headers()
        .get("etag")
        .ok_or("the answer has no ETag")?
        .to_str()?
        .to_string())
}

async fn expect(response: reqwest::Response, status: u16, what: &str) -> Result<String, Error> {
    if response.status().as_u16() != status {
        let got = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{what}: expected {status}, got {got}: {body}").into());
    }
    etag_of(&response)
}

async fn create(
    client: &reqwest::Client,
    base: &str,
    primary: Uuid,
    i: usize,
) -> Result<(Uuid, String), Error> {
    let id = Uuid::new_v4();
    let body = json!({
        "primary": primary,
        "dataset_id": id,
        "metadata": {"name": format!("bench-{i}"), "tier": "gold"},
    });
    let response = client
        .post(format!("{base}/v1/configuration/datasets"))
        .json(&body)
        .send()
        .await?;
    Ok((id, expect(response, 201, "create").await?))
}

async fn move_to(
    client: &reqwest::Client,
    base: &str,
    id: Uuid,
    primary: Uuid,
    if_match: &str,
) -> Result<String, Error> {
    let response = client
        .post(format!("{base}/v1/configuration/datasets/{id}"))
        .header("If-Match", if_match)
        .json(&json!({ "primary": primary }))
        .send()
        .await?;
    expect(response, 200, "move").await
}

fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        return Err("usage: bench_load create|movable|etcd --base URL --count N ...".into());
    };
    let options = parse(rest)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let started = Instant::now();
    let Options {
        base,
        count,
        concurrency,
        a,
        b,
        out,
    } = options;
    match mode.as_str() {
        "create" => {
            let (c, u) = (client.clone(), base.clone());
            run_all(count, concurrency, move |i| {
                let (c, u) = (c.clone(), u.clone());
                async move { create(&c, &u, a, i).await.map(|_| ()) }
            })
            .await?;
        }
        "movable" => {
            let out = out.ok_or("--out is required")?;
            let (c, u) = (client.clone(), base.clone());
            let items = run_all(count, concurrency, move |i| {
                let (c, u) = (c.clone(), u.clone());
                async move {
                    let (id, etag_a) = create(&c, &u, a, i).await?;
                    let etag_b = move_to(&c, &u, id, b, &etag_a).await?;
                    let again = move_to(&c, &u, id, a, &etag_b).await?;
                    if again != etag_a {
                        return Err(
                            format!("{id}: ETag at A changed: {etag_a} then {again}").into()
                        );
                    }
                    Ok((id, etag_a, etag_b))
                }
            })
            .await?;
            let mut lua = format!("return {{ a = \"{a}\", b = \"{b}\", items = {{\n");
            for (id, etag_a, etag_b) in &items {
                lua += &format!(
                    "  {{ \"{id}\", {}, {} }},\n",
                    lua_string(etag_a),
                    lua_string(etag_b)
                );
            }
            lua += "} }\n";
            std::fs::write(&out, lua)?;
            let tsv: String = items
                .iter()
                .map(|(id, etag_a, etag_b)| format!("{id}\t{etag_a}\t{etag_b}\n"))
                .collect();
            std::fs::write(format!("{out}.tsv"), tsv)?;
            println!("FIRST_ID={}", items.first().ok_or("--count must be > 0")?.0);
        }
        "reset" => {
            // Puts every dataset of a `movable` file back on A, whatever state a wrk run
            // left it in, so that the next run's first If-Match holds.
            let out = out.ok_or("--out is required")?;
            let items: Vec<(Uuid, String, String)> = std::fs::read_to_string(format!("{out}.tsv"))?
                .lines()
                .map(|line| -> Result<_, Error> {
                    let mut fields = line.split('\t');
                    let mut next = || fields.next().ok_or("a short line in the .tsv");
                    Ok((
                        Uuid::parse_str(next()?)?,
                        next()?.to_string(),
                        next()?.to_string(),
                    ))
                })
                .collect::<Result<_, _>>()?;
            let items = Arc::new(items);
            let (c, u, all) = (client.clone(), base.clone(), Arc::clone(&items));
            let moved = run_all(items.len(), concurrency, move |i| {
                let (c, u, all) = (c.clone(), u.clone(), Arc::clone(&all));
                async move {
                    let (id, etag_a, etag_b) = &all[i];
                    let response = c
                        .get(format!("{u}/v1/configuration/datasets/{id}"))
                        .send()
                        .await?;
                    let etag = expect(response, 200, "get").await?;
                    if etag == *etag_a {
                        Ok(0)
                    } else if etag == *etag_b {
                        move_to(&c, &u, *id, a, etag_b).await?;
                        Ok(1)
                    } else {
                        Err(format!("{id}: ETag {etag} is neither A's nor B's").into())
                    }
                }
            })
            .await?;
            println!("RESET moved={}", moved.iter().sum::<usize>());
        }
        "etcd" => {
            use base64_lite::encode;
            let out = out.ok_or("--out is required")?;
            let (c, u) = (client.clone(), base.clone());
            let keys = run_all(count, concurrency, move |i| {
                let (c, u) = (c.clone(), u.clone());
                async move {
                    let key = encode(format!("bench/{i:08}").as_bytes());
                    let response = c
                        .post(format!("{u}/v3/kv/put"))
                        .json(&json!({ "key": key, "value": encode(b"A") }))
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        return Err(format!("etcd put: {}", response.status()).into());
                    }
                    let _: Value = response.json().await?;
                    Ok(key)
                }
            })
            .await?;
            let mut lua = format!(
                "return {{ a = \"{}\", b = \"{}\", keys = {{\n",
                encode(b"A"),
                encode(b"B")
            );
            for key in &keys {
                lua += &format!("  \"{key}\",\n");
            }
            lua += "} }\n";
            std::fs::write(&out, lua)?;
        }
        "waiters" => {
            let settle = flags_seconds(rest, "settle")?;
            let idle = flags_seconds(rest, "idle")?;
            waiters(&base, count, a, settle, idle).await?;
            return Ok(());
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = match mode.as_str() {
        "movable" => count * 3,
        _ => count,
    };
    println!(
        "LOADED mode={mode} count={count} requests={requests} seconds={elapsed:.2} rate={:.0}/s",
        requests as f64 / elapsed
    );
    Ok(())
}

/// A `--NAME SECONDS` flag of `args`.
fn flags_seconds(args: &[String], name: &str) -> Result<f64, Error> {
    let flag = format!("--{name}");
    let value = args
        .iter()
        .position(|arg| *arg == flag)
        .and_then(|at| args.get(at + 1))
        .ok_or(format!("{flag} is required"))?;
    Ok(value.parse()?)
}

/// N waiting list requests; then one change; reports when all were released.
async fn waiters(base: &str, count: usize, a: Uuid, settle: f64, idle: f64) -> Result<(), Error> {
    let url = format!("{base}/v1/configuration/datasets");
    // One connection per waiter: HTTP/1.1 holds a connection for each request in flight.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs_f64(settle + idle + 60.0))
        .build()?;
    let listed = client.get(&url).send().await?;
    let etag = listed
        .headers()
        .get("etag")
        .ok_or("the list has no ETag")?
        .to_str()?
        .to_string();
    let wait = (settle + idle + 30.0).ceil() as u64;
    let released = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (client, url, etag, released) = (
            client.clone(),
            url.clone(),
            etag.clone(),
            Arc::clone(&released),
        );
        tasks.push(tokio::spawn(async move {
            let response = client
                .get(&url)
                .header("If-None-Match", etag)
                .header("Prefer", format!("wait={wait}"))
                .send()
                .await?;
            let status = response.status().as_u16();
            response.bytes().await?;
            released.lock().unwrap().push((Instant::now(), status));
            Ok::<_, reqwest::Error>(())
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs_f64(settle + idle)).await;
    let early = released.lock().unwrap().len();
    let changed_at = Instant::now();
    let body = json!({"primary": a, "metadata": {"name": "wake-up"}});
    client
        .post(&url)
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    let mut failed = 0;
    for task in tasks {
        if task.await.is_err() {
            failed += 1;
        }
    }
    let released = released.lock().unwrap();
    let ok = released.iter().filter(|(_, status)| *status == 200).count();
    let last = released
        .iter()
        .map(|(at, _)| at.saturating_duration_since(changed_at))
        .max()
        .unwrap_or_default();
    println!(
        "WAITERS count={count} released_before_change={early} released_200={ok} failed={failed} wake_seconds={:.3}",
        last.as_secs_f64()
    );
    Ok(())
}

/// Standard base64 with padding; etcd's JSON gateway takes keys and values in it.
mod base64_lite {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..4 {
                if k <= chunk.len() {
                    out.push(TABLE[(n >> (18 - 6 * k)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
