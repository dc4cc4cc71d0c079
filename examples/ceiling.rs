//! The framework ceiling for `bench/run`: the smallest axum server that does what floe's
//! hottest paths do, minus floe's own work, so that floe's numbers can be read as a fraction
//! of what axum and tokio can do on the same machine.
//!
//! - `GET /static`: a fixed dataset-shaped JSON object with a strong `ETag`.
//! - `POST /echo`: parses the JSON body and sends it back re-serialised.
//! - `GET /list`: a pre-built JSON list (by default 1,000 dataset-shaped items; `--list FILE`
//!   serves the bytes of FILE instead, such as floe's own 1,000-dataset list).
//!
//! Usage: `ceiling --listen 127.0.0.1:PORT [--list FILE]`. Loopback only by default.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Clone)]
struct Bodies {
    single: Bytes,
    list: Bytes,
}

fn dataset(i: u32) -> Value {
    json!({
        "dataset_id": format!("{:08x}-0000-4000-8000-{:012x}", i, i),
        "primary": "cf0f0346-17b2-4812-beca-1434997d6c3f",
        "deleted": false,
        "metadata": {"name": format!("bench-{i}"), "tier": "gold"},
    })
}

async fn get_static(State(bodies): State<Bodies>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::ETAG,
                HeaderValue::from_static("\"5d41402abc4b2a76b9719d911017c592\""),
            ),
        ],
        bodies.single,
    )
        .into_response()
}

async fn get_list(State(bodies): State<Bodies>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bodies.list,
    )
        .into_response()
}

async fn echo(axum::Json(value): axum::Json<Value>) -> axum::Json<Value> {
    axum::Json(value)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 4600));
    let mut list_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().expect("--listen needs an address");
                listen = value.parse().expect("--listen needs IP:PORT");
            }
            "--list" => list_file = Some(args.next().expect("--list needs a file")),
            other => panic!("unknown argument {other}"),
        }
    }
    let list = match list_file {
        Some(path) => Bytes::from(std::fs::read(path)?),
        None => Bytes::from(
            serde_json::to_vec(&(0..1000).map(dataset).collect::<Vec<_>>())
                .expect("the list serialises"),
        ),
    };
    let bodies = Bodies {
        single: Bytes::from(serde_json::to_vec(&dataset(1)).expect("a dataset serialises")),
        list,
    };
    let app = Router::new()
        .route("/static", get(get_static))
        .route("/list", get(get_list))
        .route("/echo", post(echo))
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "ceiling listening on {} (list {} bytes, static {} bytes)",
        listener.local_addr()?,
        bodies.list.len(),
        bodies.single.len()
    );
    axum::serve(listener, app).await
}
