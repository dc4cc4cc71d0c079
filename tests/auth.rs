//! Authentication and permissions over HTTP (spec A.2, A.3, A.9 items 2–7): the first admin
//! and its token file, the three ways to present a token, login by session and by OAuth2,
//! revocation, 401/403 before 404, the per-item list filter, users and grants managed through
//! the API, durability across a restart, and `--auth none` refused off loopback.
mod common;

use common::TestServer;
use common::http::{Answer, send};
use serde_json::{Value, json};

async fn as_user(server: &TestServer, token: &str, method: reqwest::Method, path: &str) -> Answer {
    send(
        server
            .client
            .request(method, server.url(path))
            .header("authorization", format!("Bearer {token}")),
    )
    .await
}

/// Creates a user with `permissions` (as admin) and logs them in; returns their token.
async fn user_with(server: &TestServer, admin: &str, name: &str, permissions: Value) -> String {
    server.create_user(admin, name, "secret", permissions).await;
    login(server, name, "secret").await
}

async fn login(server: &TestServer, user: &str, password: &str) -> String {
    let answer = send(
        server
            .client
            .post(server.url("/api/0.1.0/sessions"))
            .json(&json!({ "user": user, "password": password })),
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    answer.headers["x-snarl-token"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn first_start_creates_admin_with_a_private_token_file() {
    use std::os::unix::fs::PermissionsExt;
    let (server, token) = TestServer::start_with_auth().await;
    let path = server.data_dir().join(floe::ADMIN_TOKEN_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let answer = as_user(
        &server,
        &token,
        reqwest::Method::GET,
        "/v1/configuration/datasets",
    )
    .await;
    assert_eq!(answer.status, 200);
    // A restart keeps the admin and the token, and writes no new file.
    std::fs::remove_file(&path).unwrap();
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |c| c.auth = floe::config::AuthMode::Token).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let answer = as_user(&server, &token, reqwest::Method::GET, "/api/2/packages").await;
    assert_eq!(answer.status, 200);
    assert!(!path.exists());
}

#[tokio::test]
async fn no_credentials_401_unknown_token_403_and_three_ways_to_present_one() {
    let (server, admin) = TestServer::start_with_auth().await;
    let answer = send(server.client.get(server.url("/api/2/packages"))).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.headers["www-authenticate"], "x-snarl-token");
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    let answer = send(server.client.get(server.url("/v1/configuration/datasets"))).await;
    assert_eq!(answer.status, 401);
    let answer = as_user(&server, "nope", reqwest::Method::GET, "/api/2/packages").await;
    assert_eq!(answer.status, 403);

    let by_header = send(
        server
            .client
            .get(server.url("/api/0.1.0/packages"))
            .header("x-snarl-token", &admin),
    )
    .await;
    assert_eq!(by_header.status, 200);
    assert_eq!(by_header.headers["x-snarl-token"].to_str().unwrap(), admin);
    let by_cookie = send(
        server
            .client
            .get(server.url("/api/2/packages"))
            .header("cookie", format!("other=1; x-snarl-token={admin}")),
    )
    .await;
    assert_eq!(by_cookie.status, 200);
    // Public: the version, OPTIONS, login.
    assert_eq!(
        send(server.client.get(server.url("/v1/version")))
            .await
            .status,
        200
    );
    let options = send(
        server
            .client
            .request(reqwest::Method::OPTIONS, server.url("/api/2/packages")),
    )
    .await;
    assert_eq!(options.status, 200);
}

#[tokio::test]
async fn sessions_login_read_and_revoke() {
    let (server, admin) = TestServer::start_with_auth().await;
    user_with(
        &server,
        &admin,
        "alice",
        json!([["cloud", "packages", "list"]]),
    )
    .await;
    let answer = send(
        server
            .client
            .post(server.url("/api/0.1.0/sessions"))
            .json(&json!({ "user": "alice", "password": "secret" })),
    )
    .await;
    assert_eq!(answer.status, 303);
    let token = answer.headers["x-snarl-token"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        answer.headers["location"].to_str().unwrap(),
        format!("/api/0.1.0/sessions/{token}")
    );
    assert!(
        answer.headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with(&format!("x-snarl-token={token}"))
    );
    let wrong = send(
        server
            .client
            .post(server.url("/api/0.1.0/sessions"))
            .json(&json!({ "user": "alice", "password": "guess" })),
    )
    .await;
    wrong.assert_error(401, "Forbidden!");
    let missing = send(
        server
            .client
            .post(server.url("/api/0.1.0/sessions"))
            .json(&json!({ "user": "alice" })),
    )
    .await;
    missing.assert_error(400, "Missing JSON keys: user, password required.");

    // Reading a session needs a token (pyfi depends on a non-200 without one).
    let path = format!("/api/0.1.0/sessions/{token}");
    assert_eq!(send(server.client.get(server.url(&path))).await.status, 401);
    let session = send(
        server
            .client
            .get(server.url(&path))
            .header("x-snarl-token", &token),
    )
    .await;
    assert_eq!(session.status, 200);
    assert_eq!(session.body["session"], token.as_str());
    assert_eq!(session.body["name"], "alice");
    assert!(session.body.get("password").is_none());

    // Revoked: stops working at once.
    let answer = as_user(&server, &token, reqwest::Method::DELETE, &path).await;
    assert_eq!(answer.status, 204);
    let answer = as_user(&server, &token, reqwest::Method::GET, "/api/2/packages").await;
    assert_eq!(answer.status, 403);
}

/// Whether a token is a live session is not for every caller to find out: a caller who may
/// not read or revoke every user's sessions gets the same 403 for an unknown token as for a
/// live one of another user.
#[tokio::test]
async fn only_a_caller_who_may_see_every_session_learns_that_a_token_is_unknown() {
    let (server, admin) = TestServer::start_with_auth().await;
    let alice = user_with(&server, &admin, "alice", json!([])).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        for token in [&admin, &unknown] {
            let path = format!("/api/2/sessions/{token}");
            let answer = as_user(&server, &alice, method.clone(), &path).await;
            answer.assert_error(403, "Forbidden.");
        }
        let path = format!("/api/2/sessions/{unknown}");
        let answer = as_user(&server, &admin, method.clone(), &path).await;
        answer.assert_error(404, "Session not found.");
    }
    // The admin's session is untouched by alice's attempts, and her own is hers to read.
    let path = format!("/api/2/sessions/{admin}");
    assert_eq!(
        as_user(&server, &admin, reqwest::Method::GET, &path)
            .await
            .status,
        200
    );
    let path = format!("/api/2/sessions/{alice}");
    assert_eq!(
        as_user(&server, &alice, reqwest::Method::GET, &path)
            .await
            .status,
        200
    );
}

/// wiggle serves sessions and users with the REST handler its packages use: OPTIONS is 200
/// without credentials, and every answer carries the CORS headers, so that a browser client
/// can log in across origins (its JSON POST is preflighted).
#[tokio::test]
async fn sessions_and_users_answer_options_and_cors_like_packages() {
    let (server, admin) = TestServer::start_with_auth().await;
    user_with(&server, &admin, "alice", json!([])).await;
    for (path, methods) in [
        ("/api/0.1.0/sessions", "HEAD, OPTIONS, GET, POST"),
        (
            "/api/0.1.0/sessions/some-token",
            "HEAD, OPTIONS, GET, DELETE",
        ),
        ("/api/2/users", "HEAD, OPTIONS, GET, POST"),
        ("/api/2/users/alice", "HEAD, OPTIONS, GET, PUT, DELETE"),
    ] {
        let answer = send(
            server
                .client
                .request(reqwest::Method::OPTIONS, server.url(path))
                .header("origin", "http://ui.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        assert_eq!(answer.headers["access-control-allow-methods"], methods);
        assert_eq!(answer.headers["access-control-allow-origin"], "*");
    }
    let login = send(
        server
            .client
            .post(server.url("/api/0.1.0/sessions"))
            .json(&json!({ "user": "alice", "password": "secret" })),
    )
    .await;
    assert_eq!(login.status, 303);
    let wrong = send(
        server
            .client
            .post(server.url("/api/0.1.0/sessions"))
            .json(&json!({ "user": "alice", "password": "guess" })),
    )
    .await;
    let users = send(server.client.get(server.url("/api/2/users"))).await;
    assert_eq!(users.status, 401);
    for answer in [&login, &wrong, &users] {
        assert_eq!(answer.headers["access-control-allow-origin"], "*");
        assert_eq!(
            answer.headers["access-control-expose-headers"],
            "x-snarl-token, x-full-list, x-full-list-fields"
        );
    }
}

#[tokio::test]
async fn oauth_password_grant() {
    let (server, admin) = TestServer::start_with_auth().await;
    user_with(
        &server,
        &admin,
        "bob",
        json!([["cloud", "packages", "list"]]),
    )
    .await;
    let token = |body: &'static str| {
        server
            .client
            .post(server.url("/api/2/oauth/token"))
            // pyfi sends a form labelled JSON.
            .header("content-type", "application/json;charset=UTF-8")
            .body(body)
    };
    let answer = send(token("username=bob&password=secret&grant_type=password")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.body["token_type"], "bearer");
    assert!(answer.body["expires_in"].as_i64().unwrap() > 0);
    assert!(answer.body.get("scope").is_some());
    let access = answer.body["access_token"].as_str().unwrap().to_string();
    let list = as_user(&server, &access, reqwest::Method::GET, "/api/2/packages").await;
    assert_eq!(list.status, 200);

    let wrong = send(token("username=bob&password=nope&grant_type=password")).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.body["error"], "access_denied");
    let missing = send(token("grant_type=password")).await;
    assert_eq!(missing.body["error"], "invalid_request");
    let other = send(token("grant_type=client_credentials")).await;
    assert_eq!(other.body["error"], "unsupported_grant_type");
    let get = send(server.client.get(server.url("/api/2/oauth/token"))).await;
    assert_eq!(get.status, 405);
}

/// With authentication off, a password grant is refused in OAuth2's terms, as its other
/// refusals are, so that an OAuth2 client can read why.
#[tokio::test]
async fn oauth_refuses_in_its_own_terms_when_authentication_is_off() {
    let server = TestServer::start().await;
    let answer = send(
        server
            .client
            .post(server.url("/api/2/oauth/token"))
            .body("username=bob&password=secret&grant_type=password"),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.body["error"], "invalid_request");
    assert_eq!(
        answer.body["error_description"],
        "Authentication is off (--auth none)."
    );
    server.stop().await;
}

#[tokio::test]
async fn package_permissions_403_before_404_and_the_filtered_list() {
    let (server, admin) = TestServer::start_with_auth().await;
    let alice = user_with(
        &server,
        &admin,
        "alice",
        json!([
            ["cloud", "packages", "list"],
            ["cloud", "packages", "create"]
        ]),
    )
    .await;
    let created = send(
        server
            .client
            .post(server.url("/api/2/packages"))
            .header("authorization", format!("Bearer {alice}"))
            .json(&json!({ "name": "small", "ram": 1024 })),
    )
    .await;
    assert_eq!(created.status, 303);
    let location = created.headers["location"].to_str().unwrap().to_string();
    let uuid = location.rsplit('/').next().unwrap().to_string();

    // Listing needs cloud->packages->list, and shows only what the caller may get.
    let list = as_user(&server, &alice, reqwest::Method::GET, "/api/2/packages").await;
    assert_eq!(list.body, json!([]));
    let admin_list = as_user(&server, &admin, reqwest::Method::GET, "/api/2/packages").await;
    assert_eq!(admin_list.body, json!([uuid]));
    // 403 before 404, for an existing package and a missing one alike.
    let missing = uuid::Uuid::new_v4();
    for path in [location.clone(), format!("/api/2/packages/{missing}")] {
        let answer = as_user(&server, &alice, reqwest::Method::GET, &path).await;
        assert_eq!(answer.status, 403, "{path}");
    }
    // Grant packages->_->get through the API: the list and reads follow at once.
    let grant = send(
        server
            .client
            .put(server.url("/api/2/users/alice/permissions/packages/_/get"))
            .header("x-snarl-token", &admin),
    )
    .await;
    assert_eq!(grant.status, 204);
    let list = as_user(&server, &alice, reqwest::Method::GET, "/api/2/packages").await;
    assert_eq!(list.body, json!([uuid]));
    let answer = as_user(
        &server,
        &alice,
        reqwest::Method::GET,
        &format!("/api/2/packages/{missing}"),
    )
    .await;
    assert_eq!(answer.status, 404);
    // Delete needs packages->U->delete, metadata needs packages->U->edit.
    let answer = as_user(&server, &alice, reqwest::Method::DELETE, &location).await;
    assert_eq!(answer.status, 403);
    let answer = send(
        server
            .client
            .put(server.url(&format!("{location}/metadata")))
            .header("x-snarl-token", &alice)
            .json(&json!({ "a": 1 })),
    )
    .await;
    assert_eq!(answer.status, 403);
    // Revoking the grant takes effect at once.
    let revoke = send(
        server
            .client
            .delete(server.url("/api/2/users/alice/permissions/packages/_/get"))
            .header("x-snarl-token", &admin),
    )
    .await;
    assert_eq!(revoke.status, 204);
    let answer = as_user(&server, &alice, reqwest::Method::GET, &location).await;
    assert_eq!(answer.status, 403);
    // The /v1 APIs are guarded too.
    let answer = as_user(
        &server,
        &alice,
        reqwest::Method::GET,
        "/v1/configuration/datasets",
    )
    .await;
    assert_eq!(answer.status, 403);
}

#[tokio::test]
async fn users_are_managed_by_callers_with_permission_and_survive_a_restart() {
    let (server, admin) = TestServer::start_with_auth().await;
    let carol = user_with(&server, &admin, "carol", json!([])).await;
    // Without cloud->users->create, carol cannot create users.
    let answer = send(
        server
            .client
            .post(server.url("/api/2/users"))
            .header("x-snarl-token", &carol)
            .json(&json!({ "user": "mallory", "password": "x" })),
    )
    .await;
    assert_eq!(answer.status, 403);
    let duplicate = send(
        server
            .client
            .post(server.url("/api/2/users"))
            .header("x-snarl-token", &admin)
            .json(&json!({ "user": "carol", "password": "x" })),
    )
    .await;
    assert_eq!(duplicate.status, 409);
    let users = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users").await;
    assert_eq!(users.body, json!(["admin", "carol"]));
    let user = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users/carol").await;
    assert_eq!(user.body, json!({ "name": "carol", "permissions": [] }));

    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |c| c.auth = floe::config::AuthMode::Token).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let answer = as_user(&server, &carol, reqwest::Method::GET, "/api/2/sessions").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["name"], "carol");
    // Deleting a user ends their tokens.
    let answer = as_user(
        &server,
        &admin,
        reqwest::Method::DELETE,
        "/api/2/users/carol",
    )
    .await;
    assert_eq!(answer.status, 204);
    let answer = as_user(&server, &carol, reqwest::Method::GET, "/api/2/sessions").await;
    assert_eq!(answer.status, 403);
}

/// A permission in a grant or revoke URL is split before its segments are decoded, as FiFo
/// (cowboy) reads it: `%2F` stays inside a segment. A grant whose segment holds a `/` (given
/// at creation, as JSON) can therefore be named to revoke it.
#[tokio::test]
async fn an_escaped_slash_in_a_permission_url_stays_inside_its_segment() {
    let (server, admin) = TestServer::start_with_auth().await;
    server
        .create_user(
            &admin,
            "dave",
            "secret",
            json!([["packages", "a/b", "get"]]),
        )
        .await;
    let path = "/api/2/users/dave/permissions/packages/a%2Fb/get";
    let answer = as_user(&server, &admin, reqwest::Method::DELETE, path).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let user = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users/dave").await;
    assert_eq!(user.body["permissions"], json!([]));

    let path = "/api/2/users/dave/permissions/packages/x%2Fy/get";
    let answer = as_user(&server, &admin, reqwest::Method::PUT, path).await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let user = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users/dave").await;
    assert_eq!(
        user.body["permissions"],
        json!([["packages", "x/y", "get"]])
    );
}

#[tokio::test]
async fn auth_none_is_refused_off_loopback() {
    let mut config = floe::ServeConfig::ephemeral();
    config.auth = floe::config::AuthMode::None;
    config.insecure = true;
    config.listen = "0.0.0.0:0".parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = floe::run(&config, listener, async {}).await;
    let error = result.expect_err("refused").to_string();
    assert!(error.contains("--auth none"), "{error}");
}

#[tokio::test]
async fn nobody_grants_more_than_they_hold() {
    let (server, admin) = TestServer::start_with_auth().await;
    let dave = user_with(
        &server,
        &admin,
        "dave",
        json!([["users", "dave", "grant"], ["packages", "_", "get"]]),
    )
    .await;
    let grant = |path: &'static str| {
        server
            .client
            .put(server.url(path))
            .header("x-snarl-token", &dave)
    };
    assert_eq!(
        send(grant("/api/2/users/dave/permissions/..."))
            .await
            .status,
        403
    );
    assert_eq!(
        send(grant("/api/2/users/dave/permissions/cloud/users/create"))
            .await
            .status,
        403
    );
    assert_eq!(
        send(grant("/api/2/users/dave/permissions/packages/p1/get"))
            .await
            .status,
        204
    );
    let user = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users/dave").await;
    assert_eq!(
        user.body["permissions"][2],
        json!(["packages", "p1", "get"])
    );
}

/// Starts a real `floe serve --auth token` over `dir`, returns the log lines it wrote until
/// it listened, and stops it.
fn first_log_lines(dir: &std::path::Path) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(common::floe_binary())
        .args(["serve", "--auth", "token", "--listen", "127.0.0.1:0"])
        .args(["--log-format", "json", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let listening = line.contains("floe listening");
        lines.push(line);
        if listening {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn the_binary_says_once_that_it_created_admin_and_refuses_auth_none_off_loopback() {
    let dir = tempfile::TempDir::new().unwrap();
    let said = |lines: &[String]| {
        lines
            .iter()
            .filter(|line| line.contains("created user admin"))
            .count()
    };
    let first = first_log_lines(dir.path());
    assert_eq!(said(&first), 1, "{first:?}");
    let path = dir.path().join(floe::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&path).unwrap();
    let second = first_log_lines(dir.path());
    assert_eq!(said(&second), 0, "{second:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token);

    let output = std::process::Command::new(common::floe_binary())
        .args([
            "serve",
            "--auth",
            "none",
            "--insecure",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--auth none"), "{stderr}");
}

#[tokio::test]
async fn oversized_bodies_to_the_account_endpoints_are_json_413() {
    let (server, admin) = TestServer::start_with_auth().await;
    let big = format!(
        r#"{{"user": "mallory", "password": "{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    for (path, bearer) in [
        ("/api/2/sessions", false),
        ("/api/2/oauth/token", false),
        ("/api/2/users", true),
    ] {
        let mut request = server.client.post(server.url(path)).body(big.clone());
        if bearer {
            request = request.bearer_auth(&admin);
        }
        let answer = send(request).await;
        assert_eq!(answer.status, 413, "{path}: {}", answer.text);
        assert!(answer.body["description"].is_string(), "{path}");
    }
    let answer = send(
        server
            .client
            .put(server.url("/api/2/users/admin"))
            .bearer_auth(&admin)
            .body(big),
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.text);
    // Nothing was created, and the admin's password was not changed.
    let users = send(
        server
            .client
            .get(server.url("/api/2/users"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(users.body, json!(["admin"]));
    server.stop().await;
}

/// `POST /api/2/users` as the holder of `token`, creating `name` (password "secret") with
/// `permissions`.
async fn create_as(server: &TestServer, token: &str, name: &str, permissions: Value) -> Answer {
    send(
        server
            .client
            .post(server.url("/api/2/users"))
            .bearer_auth(token)
            .json(&json!({ "user": name, "password": "secret", "permissions": permissions })),
    )
    .await
}

/// Asserts that `name` does not exist: the admin cannot read it, and it cannot log in.
async fn assert_no_user(server: &TestServer, admin: &str, name: &str) {
    let path = format!("/api/2/users/{name}");
    let answer = as_user(server, admin, reqwest::Method::GET, &path).await;
    assert_eq!(answer.status, 404, "{name}: {}", answer.text);
    let login = send(
        server
            .client
            .post(server.url("/api/0.1.0/sessions"))
            .json(&json!({ "user": name, "password": "secret" })),
    )
    .await;
    login.assert_error(401, "Forbidden!");
}

#[tokio::test]
async fn a_user_creator_cannot_create_a_superuser_and_a_refusal_leaves_nothing_behind() {
    let (server, admin) = TestServer::start_with_auth().await;
    let erin = user_with(
        &server,
        &admin,
        "erin",
        json!([["cloud", "users", "create"]]),
    )
    .await;
    // `...` is every permission; the others erin lacks, or (her own `cloud users create`)
    // holds but may not grant, having no `users root2 grant`; one lacking spoils a list.
    for permissions in [
        json!([["..."]]),
        json!([["cloud", "packages", "list"]]),
        json!([["cloud", "users", "create"]]),
        json!([["cloud", "users", "create"], ["users", "_", "grant"]]),
    ] {
        let answer = create_as(&server, &erin, "root2", permissions.clone()).await;
        answer.assert_error(403, "Forbidden.");
        assert_no_user(&server, &admin, "root2").await;
    }
    let users = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users").await;
    assert_eq!(users.body, json!(["admin", "erin"]));

    // Without permissions (absent or empty), creating a user needs only `cloud users create`,
    // as before, and the user can log in.
    for (name, body) in [
        ("plain", json!({ "user": "plain", "password": "secret" })),
        (
            "empty",
            json!({ "user": "empty", "password": "secret", "permissions": [] }),
        ),
    ] {
        let answer = send(
            server
                .client
                .post(server.url("/api/2/users"))
                .bearer_auth(&erin)
                .json(&body),
        )
        .await;
        assert_eq!(answer.status, 303, "{name}: {}", answer.text);
        assert_eq!(answer.headers["location"], format!("/api/2/users/{name}"));
        login(&server, name, "secret").await;
        let path = format!("/api/2/users/{name}");
        let user = as_user(&server, &admin, reqwest::Method::GET, &path).await;
        assert_eq!(user.body, json!({ "name": name, "permissions": [] }));
    }

    // The admin (who holds `...`) still creates anyone, a superuser too; the name is free,
    // so the refused attempts above left no half-created user behind.
    let answer = create_as(&server, &admin, "root2", json!([["..."]])).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    let root2 = login(&server, "root2", "secret").await;
    let users = as_user(&server, &root2, reqwest::Method::GET, "/api/2/users").await;
    assert_eq!(users.status, 200);
}

#[tokio::test]
async fn a_creator_hands_out_at_creation_only_what_it_could_grant_afterwards() {
    let (server, admin) = TestServer::start_with_auth().await;
    let frank = user_with(
        &server,
        &admin,
        "frank",
        json!([["cloud", "users", "create"], ["packages", "_", "get"]]),
    )
    .await;
    // frank holds `packages _ get` but may not grant it to gina (no `users gina grant`), so
    // he may not create her with it either.
    let answer = create_as(&server, &frank, "gina", json!([["packages", "_", "get"]])).await;
    answer.assert_error(403, "Forbidden.");
    assert_no_user(&server, &admin, "gina").await;

    let grant = send(
        server
            .client
            .put(server.url("/api/2/users/frank/permissions/users/_/grant"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(grant.status, 204);
    // Now what he holds, and what his grants match (`packages p1 get`), he may hand out.
    for (name, permissions) in [
        ("gina", json!([["packages", "_", "get"]])),
        ("hank", json!([["packages", "p1", "get"]])),
        (
            "ivy",
            json!([["packages", "p1", "get"], ["packages", "_", "get"]]),
        ),
    ] {
        let answer = create_as(&server, &frank, name, permissions.clone()).await;
        assert_eq!(answer.status, 303, "{name}: {}", answer.text);
        let path = format!("/api/2/users/{name}");
        let user = as_user(&server, &admin, reqwest::Method::GET, &path).await;
        assert_eq!(
            user.body,
            json!({ "name": name, "permissions": permissions })
        );
        login(&server, name, "secret").await;
    }
    // But not what he lacks, alone or beside what he holds, nor anything broader.
    for permissions in [
        json!([["packages", "_", "delete"]]),
        json!([["packages", "_", "get"], ["packages", "_", "delete"]]),
        json!([["packages", "..."]]),
        json!([["..."]]),
    ] {
        let answer = create_as(&server, &frank, "jack", permissions.clone()).await;
        answer.assert_error(403, "Forbidden.");
        assert_no_user(&server, &admin, "jack").await;
    }
}

/// A permission handed out is a grant for whoever receives it, wildcards and all: a caller
/// whose `_` matches the one-segment path `...` still may not hand out `...` (every
/// permission), nor turn `packages _ get` into the wider `packages ... get`.
#[tokio::test]
async fn wildcards_are_handed_out_only_by_wildcards_at_least_as_wide() {
    let (server, admin) = TestServer::start_with_auth().await;
    let kim = user_with(
        &server,
        &admin,
        "kim",
        json!([
            ["cloud", "users", "create"],
            ["users", "_", "grant"],
            ["_"],
            ["packages", "_", "get"],
        ]),
    )
    .await;
    server.create_user(&admin, "lee", "secret", json!([])).await;
    let grant_to_lee = |path: &str| {
        send(
            server
                .client
                .put(server.url(&format!("/api/2/users/lee/permissions/{path}")))
                .bearer_auth(&kim),
        )
    };
    for (path, permissions) in [
        ("...", json!([["..."]])),
        ("packages/.../get", json!([["packages", "...", "get"]])),
    ] {
        grant_to_lee(path).await.assert_error(403, "Forbidden.");
        let answer = create_as(&server, &kim, "mia", permissions).await;
        answer.assert_error(403, "Forbidden.");
        assert_no_user(&server, &admin, "mia").await;
    }
    let lee = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users/lee").await;
    assert_eq!(lee.body, json!({ "name": "lee", "permissions": [] }));
    // What kim's wildcards do cover, she may hand out.
    for path in ["anything", "packages/p1/get", "packages/_/get"] {
        let granted = grant_to_lee(path).await;
        assert_eq!(granted.status, 204, "{path}: {}", granted.text);
    }
}

/// Permissions name users by name, where `_` and `...` are wildcards, and `.` and `..` are
/// dot segments no client sends as they are: none of these can be a user's name. Names with
/// those characters and a letter or digit are fine.
#[tokio::test]
async fn user_names_that_read_as_wildcards_or_dot_segments_are_refused() {
    let (server, admin) = TestServer::start_with_auth().await;
    for name in ["_", "...", ".", "..", "-", "@", "_.-"] {
        let answer = create_as(&server, &admin, name, json!([])).await;
        answer.assert_schema_errors(&[&format!(
            "\"{name}\" does not match \"^[A-Za-z0-9_.@-]*[A-Za-z0-9][A-Za-z0-9_.@-]*$\""
        )]);
    }
    for name in ["a_", "...b", "x.y@z", "1"] {
        let answer = create_as(&server, &admin, name, json!([])).await;
        assert_eq!(answer.status, 303, "{name}: {}", answer.text);
    }
    let users = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users").await;
    assert_eq!(users.body, json!(["...b", "1", "a_", "admin", "x.y@z"]));
    server.stop().await;
}

/// A user cannot be created with an empty password, which would let anyone who knows the
/// name log in; nothing is created.
#[tokio::test]
async fn a_user_needs_a_password_that_is_not_empty() {
    let (server, admin) = TestServer::start_with_auth().await;
    let answer = send(
        server
            .client
            .post(server.url("/api/2/users"))
            .bearer_auth(&admin)
            .json(&json!({ "user": "nopass", "password": "" })),
    )
    .await;
    answer.assert_schema_errors(&["\"\" is shorter than 1 character"]);
    let users = as_user(&server, &admin, reqwest::Method::GET, "/api/2/users").await;
    assert_eq!(users.body, json!(["admin"]));
    server.stop().await;
}

/// An account change waits for the database's write lock (up to its busy timeout) and
/// fsyncs: done on a request worker, it stalls every request that worker serves. Here the lock
/// is held from outside while a grant waits for it; with one worker thread, which serves both
/// connections, another request is answered meanwhile only if the grant waits off the workers.
#[tokio::test]
async fn an_account_change_waiting_for_the_database_stalls_no_other_request() {
    let server = TestServer::start_in(tempfile::TempDir::new().unwrap(), |config| {
        config.auth = floe::config::AuthMode::Token;
        config.workers = Some(std::num::NonZeroUsize::MIN);
    })
    .await;
    let admin = server.admin_token().await;
    let holder = rusqlite::Connection::open(server.data_dir().join("floe.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let grant = tokio::spawn({
        let client = server.client.clone();
        let url = server.url("/api/2/users/admin/permissions/cloud/versions/get");
        let admin = admin.clone();
        async move { client.put(url).bearer_auth(admin).send().await.unwrap() }
    });
    // Let the grant reach the lock first.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let version = server
        .client
        .get(server.url("/v1/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 200);
    assert!(
        !grant.is_finished(),
        "the grant was answered before the lock was released: it gave up waiting, while the \
         other request could not be served"
    );
    holder.execute_batch("COMMIT").unwrap();
    let granted = grant.await.unwrap();
    assert_eq!(granted.status(), 204, "{:?}", granted.text().await);
    server.stop().await;
}

/// A password change says what is wrong with its body: a missing key, one that is not a
/// string, or an empty password; the password is left as it was.
#[tokio::test]
async fn a_password_change_names_what_is_wrong_with_its_body() {
    let (server, admin) = TestServer::start_with_auth().await;
    user_with(&server, &admin, "erin", json!([])).await;
    let put = |body: Value| {
        server
            .client
            .put(server.url("/api/2/users/erin"))
            .header("authorization", format!("Bearer {admin}"))
            .json(&body)
    };
    send(put(json!({})))
        .await
        .assert_schema_errors(&["\"password\" is a required property"]);
    send(put(json!({ "password": 5 })))
        .await
        .assert_schema_errors(&["5 is not of type \"string\""]);
    send(put(json!({ "password": "" })))
        .await
        .assert_schema_errors(&["\"\" is shorter than 1 character"]);
    login(&server, "erin", "secret").await;
    assert_eq!(send(put(json!({ "password": "new" }))).await.status, 204);
    login(&server, "erin", "new").await;
}

/// Every route the routers declare has its own line in the permission table, except the few
/// whose handlers decide for themselves (listed here, with why). The table's last line lets
/// any token through, so a route added without a line of its own would be open to every user.
#[test]
fn every_route_needs_a_permission_unless_its_handler_checks() {
    use floe::api::auth::{Rule, required};
    // (method, route): why a token alone is enough to reach the handler.
    let handler_checks: &[(&str, &str, &str)] = &[
        (
            "GET",
            "/api/{version}/sessions",
            "the caller's own session, whoever they are",
        ),
        (
            "GET",
            "/api/{version}/sessions/{token}",
            "one's own session, or another's with users/NAME/get",
        ),
        (
            "DELETE",
            "/api/{version}/sessions/{token}",
            "one's own session, or another's with users/NAME/edit",
        ),
    ];
    let mut unlisted = Vec::new();
    for route in common::routes::declared_routes() {
        let path: Vec<String> = route
            .path
            .split('/')
            .map(|segment| match segment {
                s if s.starts_with("{*") => "some/rest".to_string(),
                s if s.starts_with('{') => "some-id".to_string(),
                s => s.to_string(),
            })
            .collect();
        let method = route.method.parse().expect("an HTTP method");
        if required(&method, &path.join("/")) == Rule::Token
            && !handler_checks
                .iter()
                .any(|(m, p, _)| *m == route.method && *p == route.path)
        {
            unlisted.push(format!("{} {}", route.method, route.path));
        }
    }
    assert!(
        unlisted.is_empty(),
        "routes with no permission: {unlisted:#?}"
    );
}
