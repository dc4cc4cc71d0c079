//! Bad input never gets a 5xx, never crashes, panics or hangs floe: every route is sent tables
//! of hostile bodies, path segments, headers, methods and credentials. Every answer must come
//! within [`ANSWER_WITHIN`] and must not be a 5xx (none is documented for any input; the code's
//! only one, 503, says the store is unavailable, which no request content may cause); a 4xx
//! must carry a JSON body, as every floe error does. After each sweep the server must still run
//! with nothing alarming in its log, answer `GET /v1/version`, accept a valid create, and start
//! again over the data the sweep left.
//!
//! The servers are the real binary ([`ChildServer`]) with authentication on, floe's default, not
//! the in-process `TestServer`: a stack overflow aborts the whole process, and in-process it would
//! take this test runner down without saying which request did it. Here a child's death, panics
//! and error lines are pinned on the request that caused them, and a dead or stuck child is
//! replaced so that the rest of the table still runs.
mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::routes::{declared_routes, unnamed};
use common::{ChildServer, NODE_0, NODE_1};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// The longest any answer may take. The servers cap `Prefer: wait=N` at [`MAX_WAIT_SECONDS`],
/// so even a request that asks to be held for a change is answered well within it.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The servers' `--max-wait`: short, so that held requests are tested without waiting long
/// (with floe's default of 300 s, `Prefer: wait=99999999999` is held for five minutes).
const MAX_WAIT_SECONDS: u64 = 1;

/// floe's request body limit.
const LIMIT: usize = floe::api::MAX_BODY_BYTES;

/// Depth of the deeply nested bodies and paths: far beyond any real document, and far beyond
/// what a recursive parser survives on a thread's stack.
const DEEP: usize = 10_000;

/// The password of `carol`, the user the sweeps may edit, log in as and delete (never the
/// admin, whose token every other request carries).
const CAROL_PASSWORD: &str = "carol-password";

/// What a route does with a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// Decodes it as JSON (or msgpack, on the packages API).
    Json,
    /// Decodes it as an HTML form (the OAuth2 token endpoint).
    Form,
    /// Ignores it.
    Nothing,
}

/// One method on one path pattern, as the routers declare it.
#[derive(Debug, Clone, Copy)]
struct Route {
    method: &'static str,
    /// With `{name}` for each path parameter (see [`Fixtures::value`]).
    path: &'static str,
    reads: Reads,
    /// Needs no credentials.
    public: bool,
    /// Hashes or verifies a password (Argon2, slow on purpose), so that the header and
    /// credential tables, which vary everything but the body, send it a body refused before
    /// the hash.
    hashes: bool,
}

impl Route {
    const fn new(method: &'static str, path: &'static str, reads: Reads) -> Route {
        Route {
            method,
            path,
            reads,
            public: false,
            hashes: false,
        }
    }

    const fn public(self) -> Route {
        Route {
            public: true,
            ..self
        }
    }

    const fn hashes(self) -> Route {
        Route {
            hashes: true,
            ..self
        }
    }
}

/// Every route of every router in `src/api/`, with what each does with a body (checked against
/// the routers' source by `the_route_table_is_every_declared_route`).
const ROUTES: &[Route] = &[
    Route::new("GET", "/v1/version", Reads::Nothing).public(),
    Route::new("GET", "/openapi.json", Reads::Nothing).public(),
    Route::new("GET", "/v1/configuration/datasets", Reads::Nothing),
    Route::new("POST", "/v1/configuration/datasets", Reads::Json),
    Route::new(
        "GET",
        "/v1/configuration/datasets/{dataset}",
        Reads::Nothing,
    ),
    Route::new("POST", "/v1/configuration/datasets/{dataset}", Reads::Json),
    Route::new(
        "DELETE",
        "/v1/configuration/datasets/{dataset}",
        Reads::Nothing,
    ),
    Route::new("GET", "/v1/configuration/leases", Reads::Nothing),
    Route::new("POST", "/v1/configuration/leases", Reads::Json),
    Route::new(
        "DELETE",
        "/v1/configuration/leases/{dataset}",
        Reads::Nothing,
    ),
    Route::new("GET", "/v1/configuration/containers", Reads::Nothing),
    Route::new("POST", "/v1/configuration/containers", Reads::Json),
    Route::new(
        "POST",
        "/v1/configuration/containers/{container}",
        Reads::Json,
    ),
    Route::new(
        "DELETE",
        "/v1/configuration/containers/{container}",
        Reads::Nothing,
    ),
    Route::new("GET", "/v1/state/datasets", Reads::Nothing),
    Route::new("GET", "/v1/state/nodes", Reads::Nothing),
    Route::new("GET", "/v1/state/nodes/by_era/{era}", Reads::Nothing),
    Route::new("GET", "/v1/state/containers", Reads::Nothing),
    Route::new("PUT", "/v1/agent/nodes/{node}", Reads::Json),
    Route::new("DELETE", "/v1/agent/nodes/{node}", Reads::Nothing),
    Route::new("GET", "/api/mathematicians", Reads::Nothing),
    Route::new("POST", "/api/mathematicians", Reads::Json),
    Route::new("GET", "/api/mathematicians/new", Reads::Nothing),
    Route::new("GET", "/api/mathematicians/{mathematician}", Reads::Nothing),
    Route::new("PUT", "/api/mathematicians/{mathematician}", Reads::Json),
    Route::new("GET", "/api/{version}/packages", Reads::Nothing),
    Route::new("POST", "/api/{version}/packages", Reads::Json),
    Route::new("OPTIONS", "/api/{version}/packages", Reads::Nothing).public(),
    Route::new("GET", "/api/{version}/packages/new", Reads::Nothing),
    Route::new("OPTIONS", "/api/{version}/packages/new", Reads::Nothing).public(),
    Route::new("GET", "/api/{version}/packages/{package}", Reads::Nothing),
    // FiFo has no update of a package's fields: always a 400, body unread.
    Route::new("PUT", "/api/{version}/packages/{package}", Reads::Nothing),
    Route::new(
        "DELETE",
        "/api/{version}/packages/{package}",
        Reads::Nothing,
    ),
    Route::new(
        "OPTIONS",
        "/api/{version}/packages/{package}",
        Reads::Nothing,
    )
    .public(),
    Route::new(
        "PUT",
        "/api/{version}/packages/{package}/metadata",
        Reads::Json,
    ),
    Route::new(
        "DELETE",
        "/api/{version}/packages/{package}/metadata",
        Reads::Nothing,
    ),
    Route::new(
        "OPTIONS",
        "/api/{version}/packages/{package}/metadata",
        Reads::Nothing,
    )
    .public(),
    Route::new(
        "PUT",
        "/api/{version}/packages/{package}/metadata/{key}",
        Reads::Json,
    ),
    Route::new(
        "DELETE",
        "/api/{version}/packages/{package}/metadata/{key}",
        Reads::Nothing,
    ),
    Route::new(
        "OPTIONS",
        "/api/{version}/packages/{package}/metadata/{key}",
        Reads::Nothing,
    )
    .public(),
    Route::new("POST", "/api/{version}/sessions", Reads::Json)
        .public()
        .hashes(),
    Route::new("GET", "/api/{version}/sessions", Reads::Nothing),
    Route::new("OPTIONS", "/api/{version}/sessions", Reads::Nothing).public(),
    Route::new("GET", "/api/{version}/sessions/{token}", Reads::Nothing),
    Route::new("DELETE", "/api/{version}/sessions/{token}", Reads::Nothing),
    Route::new("OPTIONS", "/api/{version}/sessions/{token}", Reads::Nothing).public(),
    Route::new("POST", "/api/{version}/oauth/token", Reads::Form)
        .public()
        .hashes(),
    Route::new("GET", "/api/{version}/users", Reads::Nothing),
    Route::new("POST", "/api/{version}/users", Reads::Json).hashes(),
    Route::new("OPTIONS", "/api/{version}/users", Reads::Nothing).public(),
    Route::new("GET", "/api/{version}/users/{user}", Reads::Nothing),
    Route::new("PUT", "/api/{version}/users/{user}", Reads::Json).hashes(),
    Route::new("DELETE", "/api/{version}/users/{user}", Reads::Nothing),
    Route::new("OPTIONS", "/api/{version}/users/{user}", Reads::Nothing).public(),
    Route::new(
        "PUT",
        "/api/{version}/users/{user}/permissions/{permission}",
        Reads::Nothing,
    ),
    Route::new(
        "DELETE",
        "/api/{version}/users/{user}/permissions/{permission}",
        Reads::Nothing,
    ),
    Route::new(
        "OPTIONS",
        "/api/{version}/users/{user}/permissions/{permission}",
        Reads::Nothing,
    )
    .public(),
];

/// A route added to a router but not to [`ROUTES`] would escape every sweep; one left in the
/// table after its route is gone would sweep a 404.
#[test]
fn the_route_table_is_every_declared_route() {
    let mut table: Vec<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.method.to_string(), unnamed(route.path)))
        .collect();
    table.sort();
    let declared: Vec<(String, String)> = declared_routes()
        .into_iter()
        .map(|route| (route.method, unnamed(&route.path)))
        .collect();
    let missing: Vec<_> = declared.iter().filter(|r| !table.contains(r)).collect();
    let stale: Vec<_> = table.iter().filter(|r| !declared.contains(r)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "declared in src/api but not in ROUTES: {missing:?}; in ROUTES but not declared: {stale:?}"
    );
    let before = table.len();
    table.dedup();
    assert_eq!(table.len(), before, "ROUTES names a route twice");
}

/// The routes with every DELETE last, so that the fixtures they remove are there for as much
/// of each table as possible.
fn routes() -> Vec<Route> {
    let mut routes = ROUTES.to_vec();
    routes.sort_by_key(|route| route.method == "DELETE");
    routes
}

/// The resources the path parameters name, created through the API before a sweep.
struct Fixtures {
    dataset: String,
    container: String,
    node: String,
    era: String,
    mathematician: String,
    package: String,
    user: String,
    /// A session token of `user` (one the sweeps may revoke).
    token: String,
}

impl Fixtures {
    /// Creates the fixtures; `carol` and her token only `with_user`, since creating a user
    /// and logging in cost two Argon2 hashes (otherwise the user does not exist and the token
    /// names no session).
    async fn create(
        client: &reqwest::Client,
        server: &ChildServer,
        admin: &str,
        with_user: bool,
    ) -> Fixtures {
        let fixtures = Fixtures {
            dataset: Uuid::new_v4().to_string(),
            container: "web".into(),
            node: NODE_0.into(),
            era: Uuid::new_v4().to_string(),
            mathematician: Uuid::new_v4().to_string(),
            package: Uuid::new_v4().to_string(),
            user: "carol".into(),
            token: String::new(),
        };
        let setup = [
            (
                "POST",
                "/v1/configuration/datasets".to_string(),
                json!({ "primary": NODE_0, "dataset_id": fixtures.dataset }),
                201,
            ),
            (
                "POST",
                "/v1/configuration/leases".to_string(),
                json!({ "dataset_id": fixtures.dataset, "node_uuid": NODE_0, "expires": null }),
                201,
            ),
            (
                "POST",
                "/v1/configuration/containers".to_string(),
                json!({ "node_uuid": NODE_0, "name": fixtures.container, "image": "nginx" }),
                201,
            ),
            (
                "PUT",
                format!("/v1/agent/nodes/{}", fixtures.node),
                report(&fixtures),
                200,
            ),
            (
                "POST",
                "/api/mathematicians".to_string(),
                mathematician(&fixtures),
                201,
            ),
            (
                "POST",
                "/api/2/packages".to_string(),
                json!({ "uuid": fixtures.package, "name": "fixture" }),
                303,
            ),
        ];
        let user = (
            "POST",
            "/api/2/users".to_string(),
            json!({ "user": fixtures.user, "password": CAROL_PASSWORD }),
            303,
        );
        let setup = setup.into_iter().chain(with_user.then_some(user));
        for (method, path, body, status) in setup {
            let answer = client
                .request(method.parse().expect("a method"), server.url(&path))
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("setting up, {method} {path}: {e}"));
            let got = answer.status().as_u16();
            let text = answer.text().await.unwrap_or_default();
            assert_eq!(got, status, "setting up, {method} {path}: {text}");
        }
        if !with_user {
            let token = Uuid::new_v4().to_string();
            return Fixtures { token, ..fixtures };
        }
        let answer = client
            .post(server.url("/api/2/oauth/token"))
            .body(format!(
                "grant_type=password&username={}&password={CAROL_PASSWORD}",
                fixtures.user
            ))
            .send()
            .await
            .expect("setting up, carol's login is answered");
        let body: Value = answer.json().await.expect("setting up, a token as JSON");
        let token = body["access_token"]
            .as_str()
            .expect("setting up, carol's token")
            .to_string();
        Fixtures { token, ..fixtures }
    }

    /// The value of path parameter `name`.
    fn value(&self, name: &str) -> String {
        match name {
            "version" => "2".into(),
            "dataset" => self.dataset.clone(),
            "container" => self.container.clone(),
            "node" => self.node.clone(),
            "era" => self.era.clone(),
            "mathematician" => self.mathematician.clone(),
            "package" => self.package.clone(),
            "key" => "a/b".into(),
            "user" => self.user.clone(),
            "token" => self.token.clone(),
            "permission" => "packages/_/get".into(),
            other => panic!("no fixture for path parameter {{{other}}}"),
        }
    }
}

/// A node agent's report of the fixture node.
fn report(fixtures: &Fixtures) -> Value {
    json!({
        "host": "10.0.0.1",
        "era": fixtures.era,
        "datasets": [{
            "dataset_id": fixtures.dataset,
            "path": "/flocker/data",
            "maximum_size": 1_073_741_824u64,
        }],
        "nonmanifest_datasets": [{
            "dataset_id": "00000000-0000-4000-8000-0000000000c2",
            "maximum_size": 1024,
        }],
        "containers": [{
            "name": "site",
            "image": "nginx",
            "running": true,
            "ports": [{ "internal": 80, "external": 8080 }],
        }],
    })
}

/// A representation of the fixture mathematician, as POSTed and PUT.
fn mathematician(fixtures: &Fixtures) -> Value {
    json!({
        "unique": fixtures.mathematician,
        "name": { "ids": [], "firstName": "Leonhard", "lastName": "Euler" },
    })
}

/// The names of a path pattern's parameters.
fn params(pattern: &str) -> Vec<&str> {
    pattern
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// `pattern` with its parameters filled in from `fixtures`, except `raw` for the parameter
/// `replaced` names.
fn fill(pattern: &str, fixtures: &Fixtures, replaced: Option<(&str, &str)>) -> String {
    pattern
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match replaced {
                    Some((target, raw)) if target == name => raw.to_string(),
                    _ => fixtures.value(name),
                },
                None => segment.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// A body the route accepts (or, for the Argon2 routes when `cheap`, one it refuses before
/// hashing), so that a table that varies something else reaches as deep as it can.
fn body_for(route: &Route, fixtures: &Fixtures, cheap: bool) -> Vec<u8> {
    match route.reads {
        Reads::Nothing => Vec::new(),
        Reads::Form => b"grant_type=password".to_vec(),
        Reads::Json if cheap && route.hashes => cheap_json(route).to_string().into_bytes(),
        Reads::Json => valid_json(route, fixtures).to_string().into_bytes(),
    }
}

/// A valid body for each route that reads JSON.
fn valid_json(route: &Route, fixtures: &Fixtures) -> Value {
    match (route.method, route.path) {
        ("POST", "/v1/configuration/datasets") => json!({
            "primary": NODE_0,
            "metadata": { "name": "robust" },
            "maximum_size": 67_108_864,
        }),
        ("POST", "/v1/configuration/datasets/{dataset}") => json!({ "primary": NODE_1 }),
        ("POST", "/v1/configuration/leases") => json!({
            "dataset_id": fixtures.dataset,
            "node_uuid": NODE_0,
            "expires": 60,
        }),
        ("POST", "/v1/configuration/containers") => json!({
            "node_uuid": NODE_0,
            "name": "robust-web",
            "image": "nginx:1.9",
            "ports": [{ "internal": 80, "external": 8081 }],
            "environment": { "MODE": "robust" },
            "restart_policy": { "name": "on-failure", "maximum_retry_count": 5 },
            "links": [{ "alias": "db", "local_port": 5432, "remote_port": 5432 }],
            "volumes": [{ "dataset_id": fixtures.dataset, "mountpoint": "/data" }],
            "cpu_shares": 512,
            "memory_limit": 262_144_000,
            "command_line": ["sh", "-c", "true"],
            "swappiness": 10,
        }),
        ("POST", "/v1/configuration/containers/{container}") => json!({ "node_uuid": NODE_1 }),
        ("PUT", "/v1/agent/nodes/{node}") => report(fixtures),
        ("POST", "/api/mathematicians") | ("PUT", "/api/mathematicians/{mathematician}") => {
            mathematician(fixtures)
        }
        ("POST", "/api/{version}/packages") => json!({
            "name": "robust",
            "ram": 1024,
            "quota": 40,
            "cpu_cap": 100,
            "compression": "lz4",
            "requirements": [
                { "weight": "must", "condition": ">=", "attribute": "ram", "value": 1 },
                { "weight": "scale", "attribute": "cpu", "low": 0, "high": 10 },
            ],
            "metadata": { "owner": { "team": ["ops"] } },
        }),
        ("PUT", "/api/{version}/packages/{package}/metadata")
        | ("PUT", "/api/{version}/packages/{package}/metadata/{key}") => {
            json!({ "k": { "v": [1, "x"] } })
        }
        // Nobody's: the password is then never verified (Argon2), however the table varies
        // the body; the form table verifies a wrong password of a real user.
        ("POST", "/api/{version}/sessions") => json!({ "user": "nobody", "password": "x" }),
        ("POST", "/api/{version}/users") => json!({
            "user": "dave",
            "password": "dave-password",
            "permissions": [["packages", "_", "get"]],
        }),
        ("PUT", "/api/{version}/users/{user}") => json!({ "password": "new-password" }),
        (method, path) => panic!("no valid body for {method} {path}"),
    }
}

/// A body the Argon2 routes refuse before hashing anything.
fn cheap_json(route: &Route) -> Value {
    match (route.method, route.path) {
        ("POST", "/api/{version}/sessions") => json!({ "user": "nobody", "password": "x" }),
        ("POST", "/api/{version}/users") => json!({ "user": "not a name!", "password": "x" }),
        _ => json!({}),
    }
}

/// What an answer must be, beyond the rules every answer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Only those rules.
    NoServerError,
    /// A 4xx: the input can never be acted on.
    Refused,
    /// Exactly this status.
    Status(u16),
}

/// One hostile request.
#[derive(Debug, Clone)]
struct Probe {
    method: String,
    /// The request target, exactly as sent.
    target: String,
    /// What is hostile about it, for failure messages.
    what: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    expect: Expect,
    /// Send these exact bytes over TCP: reqwest would resolve `..`, `.` and `%2e` segments.
    raw: bool,
    /// Present the admin's token (a probe about credentials brings its own instead).
    admin: bool,
}

impl Probe {
    fn new(method: &str, target: impl Into<String>, what: impl Into<String>) -> Probe {
        Probe {
            method: method.into(),
            target: target.into(),
            what: what.into(),
            headers: Vec::new(),
            body: Vec::new(),
            expect: Expect::NoServerError,
            raw: false,
            admin: true,
        }
    }

    /// A request to `route` with its fixtures, `body` and the route's usual `Content-Type`.
    fn to(route: &Route, fixtures: &Fixtures, body: Vec<u8>, what: impl Into<String>) -> Probe {
        let mut probe = Probe::new(route.method, fill(route.path, fixtures, None), what);
        probe.body = body;
        probe.header("content-type", content_type(route));
        probe
    }

    fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Probe {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    fn without_header(&mut self, name: &str) -> &mut Probe {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    fn expect(mut self, expect: Expect) -> Probe {
        self.expect = expect;
        self
    }

    fn describe(&self) -> String {
        format!(
            "{} {} [{}]",
            self.method,
            shorten(&self.target, 120),
            shorten(&self.what, 160)
        )
    }
}

/// The `Content-Type` a route's body is sent with by default.
fn content_type(route: &Route) -> &'static str {
    match route.reads {
        Reads::Form => "application/x-www-form-urlencoded",
        Reads::Json | Reads::Nothing => "application/json",
    }
}

/// `text` cut to about `max` characters, saying how long it was.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…({} bytes)", text.len())
}

/// Bytes for a failure message.
fn show(bytes: &[u8]) -> String {
    shorten(&bytes.escape_ascii().to_string(), 200)
}

/// An answer as the tests see it.
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    elapsed: Duration,
}

/// Why there is no answer.
enum Trouble {
    TimedOut,
    Failed(String),
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trouble::TimedOut => write!(f, "no answer within {ANSWER_WITHIN:?} (a hang)"),
            Trouble::Failed(error) => write!(f, "no answer: {error}"),
        }
    }
}

/// The rules every answer follows, then the probe's own expectation.
fn judge(probe: &Probe, reply: &Reply) -> Option<String> {
    let status = reply.status;
    let body = show(&reply.body);
    if status >= 500 {
        return Some(format!("answered {status}: {body}"));
    }
    match probe.expect {
        Expect::Refused if !(400..500).contains(&status) => {
            return Some(format!("expected a 4xx refusal, got {status}: {body}"));
        }
        Expect::Status(expected) if status != expected => {
            return Some(format!("expected {expected}, got {status}: {body}"));
        }
        _ => {}
    }
    // 414 and 431 come from hyper, which refuses the request before floe sees it.
    let floe_error =
        (400..500).contains(&status) && !matches!(status, 414 | 431) && probe.method != "HEAD";
    if floe_error && serde_json::from_slice::<Value>(&reply.body).is_err() {
        return Some(format!(
            "a {status} whose body is not JSON (Content-Type {:?}): {body}",
            reply.content_type
        ));
    }
    None
}

/// Whether a line of the server's standard error means something went wrong inside it.
fn alarming(line: &str) -> bool {
    line.contains("panicked")
        || line.contains("overflowed its stack")
        || line.contains("fatal runtime error")
        || line.contains("\"level\":\"ERROR\"")
}

/// A client that never reuses a connection (no request inherits one a previous hostile request
/// left in an odd state) and gives up after [`ANSWER_WITHIN`].
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(ANSWER_WITHIN)
        .build()
        .expect("a reqwest client")
}

/// Where to send and as whom; cheap to clone into concurrent tasks.
#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    addr: SocketAddr,
    admin: String,
}

impl Target {
    async fn send(&self, probe: &Probe) -> Result<Reply, Trouble> {
        let started = Instant::now();
        let result = if probe.raw {
            self.send_raw(probe).await
        } else {
            self.send_reqwest(probe).await
        };
        result.map(|(status, content_type, body)| Reply {
            status,
            content_type,
            body,
            elapsed: started.elapsed(),
        })
    }

    async fn send_reqwest(&self, probe: &Probe) -> Result<(u16, String, Vec<u8>), Trouble> {
        let method = reqwest::Method::from_bytes(probe.method.as_bytes()).expect("a method");
        let url = format!("http://{}{}", self.addr, probe.target);
        let mut request = self.client.request(method, url);
        if probe.admin {
            request = request.bearer_auth(&self.admin);
        }
        for (name, value) in &probe.headers {
            let value = HeaderValue::from_bytes(value).expect("a header value reqwest can send");
            request = request.header(name.as_str(), value);
        }
        let failed = |error: reqwest::Error| {
            if error.is_timeout() {
                Trouble::TimedOut
            } else {
                Trouble::Failed(error_chain(&error.without_url()))
            }
        };
        let response = request
            .body(probe.body.clone())
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        let body = response.bytes().await.map_err(failed)?;
        Ok((status, content_type, body.to_vec()))
    }

    /// One HTTP/1.1 exchange written by hand, on its own connection.
    async fn send_raw(&self, probe: &Probe) -> Result<(u16, String, Vec<u8>), Trouble> {
        let mut request = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
            probe.method, probe.target, self.addr,
        )
        .into_bytes();
        let chunked = probe
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"));
        if !chunked {
            request
                .extend_from_slice(format!("content-length: {}\r\n", probe.body.len()).as_bytes());
        }
        if probe.admin {
            request
                .extend_from_slice(format!("authorization: Bearer {}\r\n", self.admin).as_bytes());
        }
        for (name, value) in &probe.headers {
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(&probe.body);
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            // A server may answer (414, say) and close before reading everything: what it
            // answered counts, not whether the rest could still be written.
            let written = stream.write_all(&request).await;
            let mut answer = Vec::new();
            let read = stream.read_to_end(&mut answer).await;
            if answer.is_empty() {
                return Err(format!(
                    "the connection closed without an answer (write: {written:?}, read: {read:?})"
                ));
            }
            parse_response(&answer, probe.method == "HEAD")
        };
        match tokio::time::timeout(ANSWER_WITHIN, exchange).await {
            Err(_) => Err(Trouble::TimedOut),
            Ok(result) => result.map_err(Trouble::Failed),
        }
    }
}

/// An error with its causes, which is where reqwest says what happened.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Status, `Content-Type` and body of a raw HTTP/1.1 answer.
fn parse_response(answer: &[u8], head: bool) -> Result<(u16, String, Vec<u8>), String> {
    let malformed = || format!("a malformed answer: {}", show(answer));
    let end = find(answer, b"\r\n\r\n").ok_or_else(malformed)?;
    let head_text = String::from_utf8_lossy(&answer[..end]);
    let mut lines = head_text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(malformed)?;
    let mut content_type = String::new();
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = value.to_string(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let rest = &answer[end + 4..];
    let body = if head {
        Vec::new()
    } else if chunked {
        dechunk(rest).ok_or_else(malformed)?
    } else {
        rest.to_vec()
    };
    Ok((status, content_type, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The arguments every server runs with, then those of the sweep's `mode`.
fn serve_args(mode: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--auth".into(),
        "token".into(),
        "--max-wait".into(),
        MAX_WAIT_SECONDS.to_string(),
    ];
    args.extend(mode.iter().map(|arg| arg.to_string()));
    args
}

fn start_server(dir: &TempDir, mode: &[&str]) -> ChildServer {
    let args = serve_args(mode);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ChildServer::start(dir.path(), &args)
}

fn admin_token(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.path().join(floe::ADMIN_TOKEN_FILE))
        .expect("the admin's token file")
        .trim()
        .to_string()
}

/// A floe child process under a sweep, and what the sweep found so far.
struct Floe {
    name: &'static str,
    /// Arguments beyond [`serve_args`]'s, such as `--if-match required`.
    mode: &'static [&'static str],
    server: ChildServer,
    dir: TempDir,
    target: Target,
    fixtures: Fixtures,
    with_user: bool,
    sent: usize,
    failures: Vec<String>,
    started: Instant,
}

impl Floe {
    async fn start(name: &'static str, with_user: bool) -> Floe {
        Floe::start_in_mode(name, with_user, &[]).await
    }

    async fn start_in_mode(
        name: &'static str,
        with_user: bool,
        mode: &'static [&'static str],
    ) -> Floe {
        let dir = TempDir::new().expect("a temp dir");
        let server = start_server(&dir, mode);
        let target = Target {
            client: client(),
            addr: server.addr,
            admin: admin_token(&dir),
        };
        let fixtures = Fixtures::create(&target.client, &server, &target.admin, with_user).await;
        Floe {
            name,
            mode,
            server,
            dir,
            target,
            fixtures,
            with_user,
            sent: 0,
            failures: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Replaces a dead or stuck server with a fresh one over a fresh store.
    async fn replace(&mut self) {
        let dir = TempDir::new().expect("a temp dir");
        let server = start_server(&dir, self.mode);
        self.target.addr = server.addr;
        self.target.admin = admin_token(&dir);
        self.fixtures = Fixtures::create(
            &self.target.client,
            &server,
            &self.target.admin,
            self.with_user,
        )
        .await;
        // The old server is killed as it is dropped, before its directory goes.
        self.server = server;
        self.dir = dir;
    }

    fn fail(&mut self, probe: &Probe, problem: impl AsRef<str>) {
        let mut failure = format!("{}: {}", probe.describe(), problem.as_ref());
        if !probe.body.is_empty() {
            let _ = write!(
                failure,
                " (body sent: {})",
                shorten(&show(&probe.body), 120)
            );
        }
        self.failures.push(failure);
    }

    /// Sends `probe`, judges the answer and reads what the server logged meanwhile.
    async fn check(&mut self, probe: Probe) {
        self.sent += 1;
        match self.target.send(&probe).await {
            Ok(reply) => {
                if let Some(problem) = judge(&probe, &reply) {
                    self.fail(&probe, problem);
                }
            }
            Err(trouble) => {
                self.fail(&probe, trouble.to_string());
                self.recover(&probe).await;
            }
        }
        self.read_log(&probe);
    }

    /// After a request got no answer: if the server died or stopped answering, says so and
    /// replaces it.
    async fn recover(&mut self, probe: &Probe) {
        // A dying process writes its last words (a panic, a stack overflow) just after.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.read_log(probe);
        if let Ok(Some(status)) = self.server.child.try_wait() {
            self.fail(
                probe,
                format!("the server died ({status}); a fresh one runs the rest of the table"),
            );
        } else if !self.answers_version().await {
            self.fail(
                probe,
                "the server stopped answering GET /v1/version; a fresh one runs the rest of the table",
            );
        } else {
            return;
        }
        self.replace().await;
    }

    async fn answers_version(&self) -> bool {
        let probe = Probe::new("GET", "/v1/version", "liveness");
        tokio::time::timeout(Duration::from_secs(2), self.target.send(&probe))
            .await
            .is_ok_and(|reply| reply.is_ok_and(|reply| reply.status == 200))
    }

    /// Every alarming line the server wrote since last time, with a panic's message line.
    fn read_log(&mut self, probe: &Probe) {
        let lines: Vec<String> = std::iter::from_fn(|| self.server.log.try_recv().ok()).collect();
        for (index, line) in lines.iter().enumerate() {
            if alarming(line) {
                let mut text = shorten(line, 300);
                if line.contains("panicked")
                    && let Some(message) = lines.get(index + 1)
                {
                    let _ = write!(text, " / {}", shorten(message, 300));
                }
                self.fail(probe, format!("server log: {text}"));
            }
        }
    }

    /// The checks after a sweep, then the verdict: the server is alive, answers a normal read
    /// and a valid create, and starts again over the data the sweep left.
    async fn finish(mut self) {
        let version =
            Probe::new("GET", "/v1/version", "after the sweep").expect(Expect::Status(200));
        self.check(version.clone()).await;
        let mut create = Probe::new(
            "POST",
            "/v1/configuration/datasets",
            "a valid create after the sweep",
        )
        .expect(Expect::Status(201));
        create.body = json!({ "primary": NODE_0 }).to_string().into_bytes();
        create.header("content-type", "application/json");
        self.check(create).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.read_log(&version);
        if let Ok(Some(status)) = self.server.child.try_wait() {
            self.fail(&version, format!("the server is gone ({status})"));
        }
        let sweep = Probe::new("*", "*", "the whole sweep");
        self.restart_over_the_same_data(&sweep).await;
        println!(
            "{}: {} requests in {:.1?}, {} failures",
            self.name,
            self.sent,
            self.started.elapsed(),
            self.failures.len()
        );
        if !self.failures.is_empty() {
            let mut report = format!(
                "{}: {} of {} requests misbehaved:\n",
                self.name,
                self.failures.len(),
                self.sent
            );
            for failure in self.failures.iter().take(80) {
                let _ = writeln!(report, "  - {failure}");
            }
            if self.failures.len() > 80 {
                let _ = writeln!(report, "  … and {} more", self.failures.len() - 80);
            }
            panic!("{report}");
        }
    }

    /// floe must start over whatever was stored: an accepted input that the store cannot
    /// load again takes the service down at its next start. A failure is blamed on `cause`,
    /// and a fresh server over a fresh store takes over.
    async fn restart_over_the_same_data(&mut self, cause: &Probe) {
        self.server.kill();
        let restarted =
            std::panic::catch_unwind(AssertUnwindSafe(|| start_server(&self.dir, self.mode)));
        match restarted {
            Ok(server) => {
                self.target.addr = server.addr;
                self.server = server;
                let what = format!("after a restart over the data left by {}", cause.describe());
                let probe = Probe::new("GET", "/v1/version", what).expect(Expect::Status(200));
                self.check(probe).await;
            }
            Err(_) => {
                let why = start_error(&self.dir, self.mode);
                self.fail(
                    cause,
                    format!("floe no longer starts over the data this left: {why}"),
                );
                self.replace().await;
            }
        }
    }
}

/// What floe says when it refuses to start over `dir` (run once more to read it).
fn start_error(dir: &TempDir, mode: &[&str]) -> String {
    let mut child = Command::new(common::floe_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(serve_args(mode))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("floe runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            let last = stderr.lines().rfind(|line| !line.trim().is_empty());
            return format!("{status}: {}", shorten(last.unwrap_or(""), 300));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    "it failed once, then started the second time".into()
}

/// A body and how it is labelled and must be answered.
struct BodyCase {
    what: String,
    body: Vec<u8>,
    content_type: &'static str,
    expect: Expect,
    /// Sent with `Transfer-Encoding: chunked` (`body` is already encoded): no length is known
    /// up front, so the limit must hold while the body streams in.
    chunked: bool,
}

fn case(what: impl Into<String>, body: impl Into<Vec<u8>>, expect: Expect) -> BodyCase {
    BodyCase {
        what: what.into(),
        body: body.into(),
        content_type: "application/json",
        expect,
        chunked: false,
    }
}

/// `body` in chunks of 64 KiB.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

/// A JSON value put in place of a field.
struct Scalar {
    what: &'static str,
    raw: String,
    /// No JSON reader accepts it, so the whole body must be refused.
    unreadable: bool,
    /// A short, readable string.
    benign_string: bool,
}

fn scalars() -> Vec<Scalar> {
    let scalar = |what, raw: &str, unreadable| Scalar {
        what,
        raw: raw.to_string(),
        unreadable,
        benign_string: raw.starts_with('"') && raw.len() < 100 && !unreadable,
    };
    vec![
        scalar("null", "null", false),
        scalar("true", "true", false),
        scalar("0", "0", false),
        scalar("-1", "-1", false),
        scalar("1.5", "1.5", false),
        scalar("1e400", "1e400", true),
        scalar("-1e400", "-1e400", true),
        scalar("2^64", "18446744073709551616", false),
        scalar("u64::MAX", "18446744073709551615", false),
        // The largest u64 that sizes (multiples of 1024) accept; SQLite stores an i64.
        scalar("2^64 - 1024", "18446744073709550592", false),
        scalar("i64::MIN - 1", "-9223372036854775809", false),
        scalar("1e308", "1e308", false),
        scalar("an empty string", "\"\"", false),
        scalar("a string with NUL", "\"a\\u0000b\"", false),
        scalar(
            "non-ASCII text",
            "\"\u{2603} \\ud83d\\ude00 \u{e9}\"",
            false,
        ),
        scalar("a lone surrogate", "\"\\ud800\"", true),
        scalar(
            "a 64 KiB string",
            &format!("\"{}\"", "x".repeat(65_536)),
            false,
        ),
        scalar("[]", "[]", false),
        scalar("{}", "{}", false),
        scalar("10,000 nested arrays", &deep_arrays(DEEP), true),
    ]
}

fn deep_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn deep_objects(depth: usize) -> String {
    format!("{}0{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// A JSON object of exactly `size` bytes that no endpoint accepts (unknown keys, two of them).
fn padded(size: usize) -> Vec<u8> {
    let (head, tail) = ("{\"pad\":\"", "\",\"pad2\":0}");
    format!("{head}{}{tail}", "a".repeat(size - head.len() - tail.len())).into_bytes()
}

/// A step into a JSON document.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every position in `value` below its root: every object member and array item, at any
/// depth.
fn positions(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let children: Vec<(Step, &Value)> = match value {
            Value::Object(map) => map.iter().map(|(k, v)| (Step::Key(k.clone()), v)).collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Step::Index(i), v))
                .collect(),
            _ => Vec::new(),
        };
        for (step, child) in children {
            path.push(step);
            out.push(path.clone());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// The value at `path` in `value`.
fn pointer<'a>(value: &'a Value, path: &[Step]) -> &'a Value {
    path.iter().fold(value, |value, step| match step {
        Step::Key(key) => &value[key.as_str()],
        Step::Index(index) => &value[*index],
    })
}

fn position_label(path: &[Step]) -> String {
    let mut label = String::new();
    for step in path {
        match step {
            Step::Key(key) if label.is_empty() => label.push_str(key),
            Step::Key(key) => {
                let _ = write!(label, ".{key}");
            }
            Step::Index(index) => {
                let _ = write!(label, "[{index}]");
            }
        }
    }
    label
}

/// `value` serialised with `raw` JSON text at `path` (raw, so that values no JSON library
/// would produce, such as `1e400`, can be sent).
fn replaced_at(value: &Value, path: &[Step], raw: &str) -> Vec<u8> {
    const HOLE: &str = "@@robustness-hole@@";
    let mut value = value.clone();
    let slot = path.iter().fold(&mut value, |value, step| match step {
        Step::Key(key) => &mut value[key.as_str()],
        Step::Index(index) => &mut value[*index],
    });
    *slot = Value::String(HOLE.into());
    value
        .to_string()
        .replacen(&format!("\"{HOLE}\""), raw, 1)
        .into_bytes()
}

/// The body table of a route.
fn body_cases(route: &Route, fixtures: &Fixtures) -> Vec<BodyCase> {
    match route.reads {
        Reads::Json => json_cases(route, fixtures),
        Reads::Form => form_cases(fixtures),
        // Bodies a route ignores must stay ignored, however hostile.
        Reads::Nothing => vec![
            case(
                "ignored body: not JSON",
                "hello, world",
                Expect::NoServerError,
            ),
            case(
                "ignored body: invalid UTF-8",
                *b"\xff\xfe",
                Expect::NoServerError,
            ),
            case(
                "ignored body: 10,000 nested arrays",
                deep_arrays(DEEP),
                Expect::NoServerError,
            ),
        ],
    }
}

fn json_cases(route: &Route, fixtures: &Fixtures) -> Vec<BodyCase> {
    use Expect::{NoServerError, Refused, Status};
    let valid = valid_json(route, fixtures);
    let text = valid.to_string();
    let first_key = valid
        .as_object()
        .and_then(|object| object.keys().next())
        .expect("valid bodies are objects")
        .clone();
    let mut unknown = valid.clone();
    unknown["zzz_unknown"] = json!({ "nested": [1] });
    unknown[""] = Value::Null;
    let mut with_bom = b"\xef\xbb\xbf".to_vec();
    with_bom.extend_from_slice(text.as_bytes());
    let mut cases = vec![
        case("an empty body", "", Refused),
        case("not JSON", "hello, world", Refused),
        case(
            "truncated JSON",
            &text.as_bytes()[..text.len() / 2],
            Refused,
        ),
        case("a JSON array", "[]", Refused),
        case(
            "the valid body inside an array",
            format!("[{text}]"),
            Refused,
        ),
        case("a JSON string", "\"text\"", Refused),
        case("a JSON number", "42", Refused),
        case("JSON null", "null", Refused),
        case("a JSON boolean", "true", Refused),
        case("invalid UTF-8", *b"{\"k\": \"\xff\xfe\"}", Refused),
        case("a raw NUL byte in a string", *b"{\"k\": \"a\0b\"}", Refused),
        case("a lone NUL byte", *b"\0", Refused),
        case("a byte order mark before the valid body", with_bom, Refused),
        case(
            "trailing garbage after the valid body",
            format!("{text}}}}}"),
            Refused,
        ),
        case("two JSON documents", format!("{text}{text}"), Refused),
        case("10,000 nested arrays", deep_arrays(DEEP), Refused),
        case("10,000 nested objects", deep_objects(DEEP), Refused),
        case("a body of exactly the size limit", padded(LIMIT), Refused),
        case(
            "a body one byte over the size limit",
            padded(LIMIT + 1),
            Status(413),
        ),
        BodyCase {
            chunked: true,
            ..case(
                "a chunked body one byte over the size limit",
                chunked(&padded(LIMIT + 1)),
                Status(413),
            )
        },
        BodyCase {
            chunked: true,
            ..case(
                "a chunked body with a malformed chunk size",
                format!("zz\r\n{text}\r\n0\r\n\r\n"),
                Refused,
            )
        },
        case("unknown fields", unknown.to_string(), NoServerError),
        case(
            format!("\"{first_key}\" given twice"),
            format!("{{\"{first_key}\":12345,{}", &text[1..]),
            NoServerError,
        ),
    ];
    let scalars = scalars();
    for path in positions(&valid) {
        let label = position_label(&path);
        let string_there = pointer(&valid, &path).is_string();
        for scalar in &scalars {
            // On the Argon2 routes a string where a string goes is hashed, at 0.4 s a time in
            // a debug build; of those only the longest string says something the others do
            // not, and every other value there is refused before any hash.
            if route.hashes && string_there && scalar.benign_string {
                continue;
            }
            let expect = if scalar.unreadable {
                Refused
            } else {
                NoServerError
            };
            cases.push(case(
                format!("{label} = {}", scalar.what),
                replaced_at(&valid, &path, &scalar.raw),
                expect,
            ));
        }
    }
    if route.path.starts_with("/api/{version}/packages") {
        cases.extend(msgpack_cases(&valid));
    }
    cases
}

/// The packages API also reads msgpack, with its own decoder and its own limits.
fn msgpack_cases(valid: &Value) -> Vec<BodyCase> {
    use Expect::{NoServerError, Refused};
    let encoded = rmp_serde::to_vec_named(valid).expect("msgpack");
    let mut nested_maps = Vec::new();
    for _ in 0..DEEP {
        nested_maps.extend_from_slice(&[0x81, 0xa1, b'a']);
    }
    nested_maps.push(0xc0);
    let mut nested_arrays = vec![0x91; DEEP];
    nested_arrays.push(0xc0);
    let field = |value: &[u8]| {
        let mut body = vec![0x81, 0xa1, b'k'];
        body.extend_from_slice(value);
        body
    };
    let cases = vec![
        ("the valid body", encoded.clone(), NoServerError),
        ("truncated", encoded[..encoded.len() / 2].to_vec(), Refused),
        ("the reserved byte 0xc1", vec![0xc1], Refused),
        ("10,000 nested arrays", nested_arrays, Refused),
        ("10,000 nested maps", nested_maps, Refused),
        (
            "an array claiming 2^32-1 items",
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
            Refused,
        ),
        (
            "a map claiming 2^32-1 entries",
            vec![0xdf, 0xff, 0xff, 0xff, 0xff],
            Refused,
        ),
        (
            "a string claiming 4 GiB",
            field(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']),
            Refused,
        ),
        (
            "binary claiming 4 GiB",
            field(&[0xc6, 0xff, 0xff, 0xff, 0xff]),
            Refused,
        ),
        (
            "a string of invalid UTF-8",
            field(&[0xa2, 0xff, 0xfe]),
            NoServerError,
        ),
        (
            "NaN",
            field(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
            NoServerError,
        ),
        (
            "u64::MAX",
            field(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            NoServerError,
        ),
        ("an ext value", field(&[0xd4, 0x01, 0x00]), NoServerError),
        (
            "a map with an integer key",
            vec![0x81, 0x01, 0x02],
            NoServerError,
        ),
    ];
    cases
        .into_iter()
        .map(|(what, body, expect)| BodyCase {
            what: format!("msgpack: {what}"),
            body,
            content_type: "application/x-msgpack",
            expect,
            chunked: false,
        })
        .collect()
}

/// The OAuth2 token endpoint reads a form whatever the `Content-Type`; none of these forms
/// holds valid credentials, so every one is refused.
fn form_cases(fixtures: &Fixtures) -> Vec<BodyCase> {
    use Expect::{Refused, Status};
    let cases = vec![
        case("an empty body", "", Refused),
        case("not a form", "%%%&&&===", Refused),
        case(
            "invalid UTF-8",
            *b"grant_type=password&username=\xff\xfe&password=\xff",
            Refused,
        ),
        case(
            "NUL bytes",
            *b"grant_type=password\0&username=a\0b&password=\0",
            Refused,
        ),
        case(
            "bad percent escapes",
            "grant_type=%FF%00&username=%zz&password=%",
            Refused,
        ),
        case(
            "JSON instead of a form",
            json!({ "grant_type": "password", "username": fixtures.user, "password": "x" })
                .to_string(),
            Refused,
        ),
        case("a grant type only", "grant_type=password", Refused),
        case(
            "another grant type",
            "grant_type=client_credentials",
            Refused,
        ),
        case(
            "an unknown user",
            "grant_type=password&username=nobody&password=x",
            Refused,
        ),
        case(
            "a wrong password",
            format!(
                "grant_type=password&username={}&password=wrong",
                fixtures.user
            ),
            Refused,
        ),
        case(
            "grant_type given twice",
            "grant_type=x&grant_type=password&username=nobody&password=x",
            Refused,
        ),
        case("10,000 parameters", "a=1&".repeat(10_000), Refused),
        case(
            "a 64 KiB user name",
            format!(
                "grant_type=password&username={}&password=x",
                "u".repeat(65_536)
            ),
            Refused,
        ),
        case(
            "a body one byte over the size limit",
            padded(LIMIT + 1),
            Status(413),
        ),
    ];
    cases
        .into_iter()
        .map(|c| BodyCase {
            content_type: "application/x-www-form-urlencoded",
            ..c
        })
        .collect()
}

/// A body with the names and the port that must be unique made fresh, so that a create that
/// succeeded once gets past the uniqueness checks again and on to the checks after them.
fn fresh(body: Vec<u8>, n: usize) -> Vec<u8> {
    match String::from_utf8(body) {
        Ok(text) => text
            .replace("\"robust-web\"", &format!("\"robust-web-{n}\""))
            .replace("\"robust\"", &format!("\"robust-{n}\""))
            .replace("\"external\":8081", &format!("\"external\":{}", 10_000 + n))
            .into_bytes(),
        Err(error) => error.into_bytes(),
    }
}

/// Sends the body table of every route `hashes` selects.
async fn sweep_bodies(floe: &mut Floe, hashes: bool) {
    for route in routes().into_iter().filter(|route| route.hashes == hashes) {
        for body in body_cases(&route, &floe.fixtures) {
            let body_bytes = fresh(body.body, floe.sent);
            let mut probe = Probe::to(&route, &floe.fixtures, body_bytes, body.what);
            probe
                .without_header("content-type")
                .header("content-type", body.content_type);
            if body.chunked {
                probe.raw = true;
                probe.header("transfer-encoding", "chunked");
            }
            floe.check(probe.expect(body.expect)).await;
        }
    }
}

#[tokio::test]
async fn hostile_bodies_are_refused_without_a_server_error() {
    let mut floe = Floe::start("bodies", false).await;
    sweep_bodies(&mut floe, false).await;
    floe.finish().await;
}

/// The account routes apart: each body they accept costs an Argon2 hash, so their table runs
/// beside the others rather than after them.
#[tokio::test]
async fn hostile_bodies_on_the_account_routes_are_refused_without_a_server_error() {
    let mut floe = Floe::start("account bodies", true).await;
    sweep_bodies(&mut floe, true).await;
    floe.finish().await;
}

/// Path segments put in place of each path parameter, exactly as they go on the wire.
fn hostile_segments() -> Vec<(&'static str, String)> {
    let mut segments: Vec<(&'static str, String)> = [
        ("not a UUID", "not-a-uuid"),
        ("an encoded slash", "a%2Fb"),
        ("only an encoded slash", "%2F"),
        ("dot-dot", ".."),
        ("dot", "."),
        ("an encoded dot-dot", "%2e%2e"),
        ("an encoded ../..", "%2e%2e%2f%2e%2e"),
        ("an encoded NUL", "a%00b"),
        ("encoded invalid UTF-8", "%FF%FE"),
        ("an overlong UTF-8 slash", "%C0%AF"),
        ("a lone percent sign", "%"),
        ("a bad percent escape", "%zz"),
        ("raw non-ASCII bytes", "\u{2603}"),
        ("encoded non-ASCII", "%E2%98%83"),
        ("an encoded space", "%20"),
        ("a plus", "+"),
        ("the literal new", "new"),
        ("a star", "*"),
        ("nothing (an empty segment)", ""),
        (
            "a UUID in braces",
            "%7B00000000-0000-4000-8000-000000000000%7D",
        ),
    ]
    .into_iter()
    .map(|(what, raw)| (what, raw.to_string()))
    .collect();
    segments.push(("8 KiB long", "a".repeat(8 * 1024)));
    segments.push(("70 KiB long, more than a URI may be", "a".repeat(70 * 1024)));
    segments
}

/// Whole-path variations of a filled-in `path`.
fn hostile_shapes(path: &str) -> Vec<(&'static str, String)> {
    let first_end = path[1..].find('/').map_or(path.len(), |i| i + 1);
    let (first, rest) = path.split_at(first_end);
    let last_slash = path.rfind('/').expect("paths start with a slash");
    vec![
        ("a trailing slash", format!("{path}/")),
        ("a doubled leading slash", format!("/{path}")),
        (
            "a doubled last slash",
            format!("{}/{}", &path[..last_slash], &path[last_slash..]),
        ),
        ("a /./ segment", format!("{first}/.{rest}")),
        ("a /x/../ detour", format!("{first}/x/..{rest}")),
        ("a garbage query", format!("{path}?%zz=%&a=%FF%00&&=&a")),
    ]
}

#[tokio::test]
async fn hostile_paths_are_answered_without_a_server_error() {
    let mut floe = Floe::start("paths", false).await;
    for route in routes() {
        let fixtures = &floe.fixtures;
        let body = body_for(&route, fixtures, true);
        let mut targets: Vec<(String, String)> = Vec::new();
        for param in params(route.path) {
            let mut segments = hostile_segments();
            let fixture = fixtures.value(param);
            if fixture.to_uppercase() != fixture {
                segments.push(("the fixture in upper case", fixture.to_uppercase()));
            }
            for (what, raw) in segments {
                targets.push((
                    format!("{{{param}}} = {what}"),
                    fill(route.path, fixtures, Some((param, &raw))),
                ));
            }
        }
        for (what, target) in hostile_shapes(&fill(route.path, fixtures, None)) {
            targets.push((what.to_string(), target));
        }
        for (what, target) in targets {
            let mut probe = Probe::new(route.method, target, what);
            probe.body = body.clone();
            probe.header("content-type", content_type(&route));
            probe.raw = true;
            floe.check(probe).await;
        }
    }
    floe.finish().await;
}

/// The wildcard routes take any number of segments, and each one becomes a level of nesting
/// (metadata) or a segment of a stored grant.
#[tokio::test]
async fn very_deep_wildcard_paths_are_answered_without_a_server_error() {
    let mut floe = Floe::start("deep wildcard paths", true).await;
    let metadata = "/api/{version}/packages/{package}/metadata/{key}";
    let grants = "/api/{version}/users/{user}/permissions/{permission}";
    let deep = vec!["a"; DEEP].join("/");
    for (method, pattern, param) in [
        ("PUT", metadata, "key"),
        ("DELETE", metadata, "key"),
        ("PUT", grants, "permission"),
        ("DELETE", grants, "permission"),
    ] {
        let target = fill(pattern, &floe.fixtures, Some((param, &deep)));
        let mut probe = Probe::new(method, target, format!("{{{param}}} = {DEEP} segments"));
        if method == "PUT" && pattern == metadata {
            probe.body = br#"{"k": 1}"#.to_vec();
            probe.header("content-type", "application/json");
        }
        floe.check(probe).await;
    }
    // Deeper than the JSON reader the store loads records with allows (127 levels), yet
    // stored: whatever is stored must load again. Once through the path alone, once through a
    // body that is itself within the limit.
    let nested = vec!["a"; 200].join("/");
    let cases = [
        (
            nested.as_str(),
            r#"{"k": 1}"#.to_string(),
            "{key} = 200 segments",
        ),
        (
            "a",
            format!("{{\"k\": {}}}", deep_arrays(126)),
            "a body nested 127 levels deep under {key} = a",
        ),
    ];
    for (key, body, what) in cases {
        let target = fill(metadata, &floe.fixtures, Some(("key", key)));
        let mut probe = Probe::new("PUT", target, format!("{what}, then a restart"));
        probe.body = body.into_bytes();
        probe.header("content-type", "application/json");
        floe.check(probe.clone()).await;
        floe.restart_over_the_same_data(&probe).await;
    }
    floe.finish().await;
}

/// Header lines, as (name, value).
type Headers = Vec<(&'static str, Vec<u8>)>;

/// A set of headers, added to a request the route would otherwise accept.
struct HeaderCase {
    what: String,
    headers: Headers,
    /// Send no `Content-Type` at all.
    no_content_type: bool,
}

fn header_cases() -> Vec<HeaderCase> {
    let one = |name: &'static str, value: &[u8]| HeaderCase {
        what: format!("{name}: {}", show(value)),
        headers: vec![(name, value.to_vec())],
        no_content_type: false,
    };
    let two = |name: &'static str, first: &[u8], second: &[u8]| HeaderCase {
        what: format!("{name} twice: {} and {}", show(first), show(second)),
        headers: vec![(name, first.to_vec()), (name, second.to_vec())],
        no_content_type: false,
    };
    let long_tag = format!("\"{}\"", "t".repeat(8 * 1024));
    let entity_tags: Vec<&[u8]> = vec![
        b"garbage",
        b"W/\"x\"",
        b"\"a\", garbage",
        b"*",
        b"\"a\", *",
        b",",
        b"\"\"",
        b"\"unterminated",
        b"\"a b\"",
        long_tag.as_bytes(),
        b"\"\xff\"",
        b"W/",
    ];
    let dates: Vec<&[u8]> = vec![
        b"yesterday",
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Fri, 31 Dec 9999 23:59:59 GMT",
        b"Thu, 01 Jan 1970 00:00:00 GMT",
        b"Sat, 01 Jan 0000 00:00:00 GMT",
        b"\xff\xfe",
        b"99999999999999999999",
    ];
    let long_key = "k".repeat(8 * 1024);
    let quoted_300 = format!("\"{}\"", "k".repeat(300));
    let keys: Vec<&[u8]> = vec![
        b"",
        b"\"\"",
        &long_key.as_bytes()[..256],
        quoted_300.as_bytes(),
        long_key.as_bytes(),
        b"\"\xff\"",
        b"\"a\"b\"",
        b"\"unterminated",
        b"\"\t\"",
        // One key shared by every route: a key reused for another request.
        b"\"robustness-shared-key\"",
    ];
    let mut cases = Vec::new();
    for name in ["if-match", "if-none-match"] {
        cases.extend(entity_tags.iter().map(|value| one(name, value)));
    }
    for name in ["if-modified-since", "if-unmodified-since"] {
        cases.extend(dates.iter().map(|value| one(name, value)));
    }
    let long_tag_line = "c".repeat(8 * 1024);
    for value in [b"\xff\xfe".as_slice(), b"", long_tag_line.as_bytes(), b"*"] {
        cases.push(one("x-if-configuration-matches", value));
    }
    cases.extend(keys.iter().map(|value| one("idempotency-key", value)));
    for value in [
        b"wait=abc".as_slice(),
        b"wait=99999999999",
        b"wait=-1",
        b"wait=",
        b"wait=1e9",
        b"wait=18446744073709551616",
        b"wait=\"5\"",
        b"respond-async;;;, wait==1",
        b"\xff",
    ] {
        cases.push(one("prefer", value));
    }
    for value in [
        b"text/plain".as_slice(),
        b"application/x-www-form-urlencoded",
        b"application/json; charset=utf-16",
        b"multipart/form-data; boundary=x",
        b"application/x-msgpack",
        b"\xff/\xfe",
    ] {
        cases.push(one("content-type", value));
    }
    cases.push(HeaderCase {
        what: "no Content-Type".into(),
        headers: Vec::new(),
        no_content_type: true,
    });
    for value in [
        b"text/html".as_slice(),
        b"application/x-msgpack;q=NaN",
        b"*/*;q=abc",
        b",,;;;",
        b"\xff",
        b"application/x-msgpack",
    ] {
        cases.push(one("accept", value));
    }
    for value in [b"exa mple".as_slice(), b"\xff\xfe", b"a\"b<c>"] {
        cases.push(one("host", value));
    }
    cases.push(HeaderCase {
        what: "x-full-list: true, x-full-list-fields: \\xff,,".into(),
        headers: vec![
            ("x-full-list", b"true".to_vec()),
            ("x-full-list-fields", b"\xff,,".to_vec()),
        ],
        no_content_type: false,
    });
    cases.push(one("x-full-list", b"\xff"));
    cases.push(two("if-match", b"\"a\"", b"garbage"));
    cases.push(two("if-none-match", b"\"a\"", b"*"));
    cases.push(two(
        "if-modified-since",
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"garbage",
    ));
    cases.push(two("x-if-configuration-matches", b"garbage", b"\x80"));
    cases.push(two("idempotency-key", b"\"a\"", b"\"b\""));
    cases.push(two("prefer", b"wait=abc", b"wait=99999999999"));
    cases.push(two("content-type", b"application/json", b"text/plain"));
    cases
}

#[tokio::test]
async fn hostile_headers_are_answered_without_a_server_error() {
    sweep_headers("headers", &[]).await;
}

/// The same table where `If-Match` is required for every write to an existing resource (428
/// without it), and where ETags are off (validators ignored): other code paths decide.
#[tokio::test]
async fn hostile_headers_are_answered_without_a_server_error_whatever_the_if_match_policy() {
    sweep_headers("headers, --if-match required", &["--if-match", "required"]).await;
    sweep_headers("headers, --if-match off", &["--if-match", "off"]).await;
}

async fn sweep_headers(name: &'static str, mode: &'static [&'static str]) {
    let mut floe = Floe::start_in_mode(name, false, mode).await;
    let cases = header_cases();
    for route in routes() {
        for case in &cases {
            let body = fresh(body_for(&route, &floe.fixtures, true), floe.sent);
            let mut probe = Probe::to(&route, &floe.fixtures, body, case.what.clone());
            let replaces_type = case.headers.iter().any(|(name, _)| *name == "content-type");
            if replaces_type || case.no_content_type {
                probe.without_header("content-type");
            }
            for (name, value) in &case.headers {
                probe.header(name, value);
            }
            floe.check(probe).await;
        }
    }
    floe.finish().await;
}

/// Requests that ask to be held until a list changes are held at most `--max-wait`, however
/// long they ask for; sent all at once, so that the table takes one wait, not one per request.
#[tokio::test]
async fn waits_are_capped_however_long_they_ask_for() {
    let mut floe = Floe::start("waits", false).await;
    let lists = [
        "/v1/configuration/datasets",
        "/v1/configuration/leases",
        "/v1/configuration/containers",
        "/api/mathematicians",
        "/api/2/packages",
        "/v1/state/datasets",
        "/v1/state/nodes",
        "/v1/state/containers",
    ];
    let waits = [
        "wait=99999999999",
        "wait=18446744073709551615",
        "wait=\"100000\"",
        "respond-async, wait=99999999999",
        "wait=300",
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for list in lists {
        for wait in waits {
            // `*` matches the list as it is, so the request is held until the list changes.
            let mut probe = Probe::new("GET", list, format!("If-None-Match: *, Prefer: {wait}"));
            probe.header("if-none-match", "*").header("prefer", wait);
            let probe = probe.expect(Expect::Status(304));
            let target = floe.target.clone();
            tasks.spawn(async move {
                let result = target.send(&probe).await;
                (probe, result)
            });
        }
    }
    let longest = Duration::from_secs(MAX_WAIT_SECONDS) + Duration::from_secs(2);
    while let Some(joined) = tasks.join_next().await {
        let (probe, result) = joined.expect("a sending task");
        floe.sent += 1;
        match result {
            Ok(reply) => {
                if let Some(problem) = judge(&probe, &reply) {
                    floe.fail(&probe, problem);
                }
                if reply.elapsed > longest {
                    floe.fail(
                        &probe,
                        format!(
                            "held {:.1?}, longer than --max-wait {MAX_WAIT_SECONDS} s allows",
                            reply.elapsed
                        ),
                    );
                }
            }
            Err(trouble) => floe.fail(&probe, trouble.to_string()),
        }
        floe.read_log(&probe);
    }
    floe.finish().await;
}

#[tokio::test]
async fn unsupported_methods_answer_405() {
    let mut floe = Floe::start("methods", false).await;
    let mut patterns: Vec<&str> = ROUTES.iter().map(|route| route.path).collect();
    patterns.sort_unstable();
    patterns.dedup();
    for pattern in patterns {
        let allowed: Vec<&str> = ROUTES
            .iter()
            .filter(|route| route.path == pattern)
            .map(|route| route.method)
            .collect();
        let target = fill(pattern, &floe.fixtures, None);
        for method in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND",
            "BREW", "CONNECT",
        ] {
            let served =
                allowed.contains(&method) || (method == "HEAD" && allowed.contains(&"GET"));
            if served {
                continue;
            }
            let mut probe = Probe::new(method, target.clone(), "a method the route does not serve")
                .expect(Expect::Status(405));
            // reqwest cannot send CONNECT with a path.
            probe.raw = method == "CONNECT";
            floe.check(probe).await;
        }
    }
    floe.finish().await;
}

/// Credentials that must not work, with the status each must get where credentials are
/// needed.
fn credential_cases(admin: &str) -> Vec<(&'static str, Headers, u16)> {
    let header = |name: &'static str, value: &[u8]| vec![(name, value.to_vec())];
    vec![
        ("no credentials", Vec::new(), 401),
        (
            "a garbage bearer token",
            header("authorization", b"Bearer garbage"),
            403,
        ),
        (
            "an 8 KiB bearer token",
            header(
                "authorization",
                format!("Bearer {}", "g".repeat(8192)).as_bytes(),
            ),
            403,
        ),
        (
            "Bearer and no token",
            header("authorization", b"Bearer"),
            401,
        ),
        (
            "the admin's token in the Basic scheme",
            header("authorization", format!("Basic {admin}").as_bytes()),
            401,
        ),
        (
            "the admin's token in an unknown scheme",
            header("authorization", format!("Token {admin}").as_bytes()),
            401,
        ),
        (
            "the admin's token with no scheme",
            header("authorization", admin.as_bytes()),
            401,
        ),
        (
            "a non-ASCII Authorization",
            header("authorization", b"Bearer \xff\xfe"),
            401,
        ),
        (
            "a garbage x-snarl-token",
            header("x-snarl-token", b"garbage"),
            403,
        ),
        (
            "a non-ASCII x-snarl-token",
            header("x-snarl-token", b"\xff\xfe"),
            401,
        ),
        (
            "a garbage token cookie",
            header("cookie", b"x-snarl-token=garbage"),
            403,
        ),
        (
            "a cookie without a token",
            header("cookie", b"x-snarl-token; ;=;"),
            401,
        ),
        (
            "a garbage x-snarl-token beside the admin's bearer token",
            vec![
                ("x-snarl-token", b"garbage".to_vec()),
                ("authorization", format!("Bearer {admin}").into_bytes()),
            ],
            403,
        ),
    ]
}

#[tokio::test]
async fn bad_credentials_are_refused_without_a_server_error() {
    let mut floe = Floe::start("credentials", false).await;
    for route in routes() {
        for (what, headers, status) in credential_cases(&floe.target.admin) {
            let body = body_for(&route, &floe.fixtures, true);
            let mut probe = Probe::to(&route, &floe.fixtures, body, what);
            probe.admin = false;
            for (name, value) in headers {
                probe.header(name, value);
            }
            let expect = if route.public {
                Expect::NoServerError
            } else {
                Expect::Status(status)
            };
            floe.check(probe.expect(expect)).await;
        }
    }
    floe.finish().await;
}

/// A grant is stored as given and matched against every later request of its holder, so a
/// hostile one (many `...` wildcards) must not make those requests hang.
#[tokio::test]
async fn a_grant_full_of_wildcards_does_not_hang_its_holder() {
    let mut floe = Floe::start("wildcard grant", true).await;
    let user = floe.fixtures.user.clone();
    let grant = format!("/api/2/users/{user}/permissions/{}x", ".../".repeat(1000));
    floe.check(Probe::new(
        "PUT",
        grant,
        "a grant of 1,000 `...` wildcards then x",
    ))
    .await;
    let mut request = Probe::new(
        "GET",
        "/v1/configuration/datasets",
        format!("as {user}, who holds that grant"),
    );
    request.admin = false;
    request.header("authorization", format!("Bearer {}", floe.fixtures.token));
    floe.check(request).await;
    floe.finish().await;
}

/// A plain TCP connection to `addr`, for requests sent byte by byte.
fn raw_connection(addr: SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    // Far beyond any timeout a test sets: a server that never answers or never closes fails
    // the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    stream
}

/// Reads from `stream` until the server closes it (or the read fails), returning what arrived
/// and how long that took.
fn read_until_closed(stream: &mut std::net::TcpStream) -> (Vec<u8>, Duration) {
    use std::io::Read;
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return (received, started.elapsed()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// A client that sends its request's head slowly or never, or leaves a keep-alive connection
/// idle, is cut off after `--header-read-timeout`; a request held for a change longer than
/// that is answered all the same (the deadline covers reading a head, not waiting for an
/// answer).
#[test]
fn slow_silent_and_idle_clients_are_cut_off_after_the_header_read_timeout() {
    use std::io::Write;
    let dir = TempDir::new().expect("a temp dir");
    let server = ChildServer::start(
        dir.path(),
        &[
            "--auth",
            "none",
            "--header-read-timeout",
            "1",
            "--max-wait",
            "3",
        ],
    );
    let connect = || raw_connection(server.addr);
    let cut_off_in_time = |what: &str, elapsed: Duration| {
        assert!(
            elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(5),
            "{what}: closed after {elapsed:?}, expected about the 1 s timeout"
        );
    };

    for (what, sent) in [
        ("a connection that sends nothing", ""),
        (
            "half a request head",
            "GET /v1/version HTTP/1.1\r\nHost: floe\r\nAcc",
        ),
    ] {
        let mut stream = connect();
        stream.write_all(sent.as_bytes()).expect("write");
        let (received, elapsed) = read_until_closed(&mut stream);
        cut_off_in_time(what, elapsed);
        let text = String::from_utf8_lossy(&received);
        assert!(
            received.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{what}: answered {text:?}"
        );
    }

    // One whole request, answered; then the connection idles until it is closed.
    let mut stream = connect();
    stream
        .write_all(b"GET /v1/version HTTP/1.1\r\nHost: floe\r\n\r\n")
        .expect("write");
    let (received, elapsed) = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "answered {text:?}");
    cut_off_in_time("an idle keep-alive connection", elapsed);

    // Held for the 3 s --max-wait, three times the head deadline, and still answered.
    let mut stream = connect();
    let started = Instant::now();
    stream
        .write_all(
            b"GET /v1/configuration/datasets HTTP/1.1\r\nHost: floe\r\nIf-None-Match: *\r\nPrefer: wait=10\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let (received, _) = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 304"), "answered {text:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(2800),
        "answered after {:?}, before the 3 s wait was over",
        started.elapsed()
    );
}

/// A client that stops sending a request's body halfway is answered 408 after
/// `--body-read-timeout`, and its connection is closed; a body that arrives slowly, but within
/// the deadline, is taken as usual.
#[test]
fn a_body_that_stops_arriving_is_answered_408_and_its_connection_closed() {
    use std::io::Write;
    let dir = TempDir::new().expect("a temp dir");
    let server = ChildServer::start(dir.path(), &["--auth", "none", "--body-read-timeout", "2"]);
    let connect = || raw_connection(server.addr);
    let create = |id: Uuid| {
        let body = format!(r#"{{"primary": "{NODE_0}", "dataset_id": "{id}"}}"#);
        let head = format!(
            "POST /v1/configuration/datasets HTTP/1.1\r\nHost: floe\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        (head, body)
    };

    let stalled = Uuid::new_v4();
    let (head, body) = create(stalled);
    let mut stream = connect();
    stream.write_all(head.as_bytes()).expect("write the head");
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .expect("write half the body");
    let (received, elapsed) = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "answered {text:?}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "the 408 says the connection closes: {text:?}"
    );
    assert!(
        text.contains(r#"{"description":"The request body did not arrive in time"#),
        "the 408 explains itself in JSON: {text:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_secs(6),
        "answered after {elapsed:?}, expected about the 2 s timeout"
    );

    // The same kind of body in four parts, 200 ms apart: well within the deadline.
    let slow = Uuid::new_v4();
    let (head, body) = create(slow);
    let mut stream = connect();
    stream.write_all(head.as_bytes()).expect("write the head");
    for part in body.as_bytes().chunks(body.len().div_ceil(4)) {
        std::thread::sleep(Duration::from_millis(200));
        stream.write_all(part).expect("write part of the body");
    }
    let (received, _) = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 201"), "answered {text:?}");

    let mut stream = connect();
    stream
        .write_all(
            b"GET /v1/configuration/datasets HTTP/1.1\r\nHost: floe\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let (received, _) = read_until_closed(&mut stream);
    let listed = String::from_utf8_lossy(&received);
    assert!(listed.starts_with("HTTP/1.1 200"), "answered {listed:?}");
    assert!(
        listed.contains(&slow.to_string()),
        "the slow create is stored"
    );
    assert!(
        !listed.contains(&stalled.to_string()),
        "the stalled create is not"
    );
}
