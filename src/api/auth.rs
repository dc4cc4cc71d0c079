//! Authentication and permissions, Project FiFo's way, for the whole service.
//!
//! A caller presents a token as `x-snarl-token` (echoed back), `Authorization: Bearer` or the
//! `x-snarl-token` cookie. Every route names the permission it needs ([`required`]); one
//! middleware decides before any handler runs, so no credentials is 401, a credential without
//! the permission is 403, and both come before 404. Tokens come from `POST /api/{v}/sessions`
//! (login, 303) or `POST /api/{v}/oauth/token` (OAuth2 password grant). Users and their grants
//! are managed under `/api/{v}/users` by callers with the matching permissions.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::answer::Answer;
use super::body::LimitedBody;
use super::cors::options;
use super::identity::Identity;
use super::segment::{PathParams, decoded_segments, encoded_segment};
use super::{ApiError, AppState};
use crate::model::permission::{Permission, allowed, covers, permission, valid_user_name};
use crate::store::accounts::{Accounts, AccountsError, User, hash_password, verify_password};
use crate::store::now_millis;

/// FiFo's token header.
pub const SNARL_TOKEN: HeaderName = HeaderName::from_static("x-snarl-token");

/// How long a token lives: FiFo's cookie lasted 364 days.
pub const TOKEN_LIFETIME_SECONDS: i64 = 364 * 24 * 60 * 60;

/// Who is asking, as the handlers see it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off: everyone may do everything.
    Anyone,
    /// An authenticated user.
    User {
        /// The user's name.
        name: String,
        /// The user's grants.
        grants: Arc<Vec<Permission>>,
        /// The token presented.
        token: String,
    },
}

impl Caller {
    /// Whether the caller holds `required`.
    pub fn may(&self, required: &[String]) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::User { grants, .. } => allowed(required, grants),
        }
    }

    /// Who the caller is and what they may do, for keys that depend on it (list ETags).
    pub fn key(&self) -> String {
        match self {
            Caller::Anyone => String::new(),
            Caller::User { name, grants, .. } => format!("{name}{grants:?}"),
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Nothing: anyone may call it.
    Public,
    /// A valid token, nothing more (the handler checks the rest, or the route does not exist).
    Token,
    /// A valid token whose user holds this permission.
    Permission(Permission),
}

/// The permission each request needs (the table in the README). HEAD is GET; OPTIONS is
/// public (a browser's CORS preflight carries no credentials). A route without a line of its
/// own needs a token only, so its handler must check the rest: `tests/auth.rs` keeps the list
/// of those.
pub fn required(method: &Method, path: &str) -> Rule {
    if method == Method::OPTIONS {
        return Rule::Public;
    }
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let p = |segments: &[&str]| Rule::Permission(permission(segments));
    match (method, segments.as_slice()) {
        (_, ["v1", "version"]) => Rule::Public,
        ("GET", ["v1", "configuration", "datasets"]) => p(&["cloud", "datasets", "list"]),
        ("POST", ["v1", "configuration", "datasets"]) => p(&["cloud", "datasets", "create"]),
        ("GET", ["v1", "configuration", "datasets", id]) => p(&["datasets", id, "get"]),
        ("POST", ["v1", "configuration", "datasets", id]) => p(&["datasets", id, "edit"]),
        ("DELETE", ["v1", "configuration", "datasets", id]) => p(&["datasets", id, "delete"]),
        ("GET", ["v1", "configuration", "leases"]) => p(&["cloud", "leases", "list"]),
        ("POST", ["v1", "configuration", "leases"]) => p(&["cloud", "leases", "create"]),
        ("DELETE", ["v1", "configuration", "leases", id]) => p(&["leases", id, "delete"]),
        ("GET", ["v1", "configuration", "containers"]) => p(&["cloud", "containers", "list"]),
        ("POST", ["v1", "configuration", "containers"]) => p(&["cloud", "containers", "create"]),
        ("POST", ["v1", "configuration", "containers", name]) => p(&["containers", name, "edit"]),
        ("DELETE", ["v1", "configuration", "containers", name]) => {
            p(&["containers", name, "delete"])
        }
        ("GET", ["v1", "state", ..]) => p(&["cloud", "state", "get"]),
        (_, ["v1", "agent", "nodes", id]) => p(&["nodes", id, "report"]),
        ("GET", ["api", "mathematicians"]) => p(&["cloud", "mathematicians", "list"]),
        ("GET", ["api", "mathematicians", "new"]) | ("POST", ["api", "mathematicians"]) => {
            p(&["cloud", "mathematicians", "create"])
        }
        ("GET", ["api", "mathematicians", id]) => p(&["mathematicians", id, "get"]),
        ("PUT", ["api", "mathematicians", id]) => p(&["mathematicians", id, "edit"]),
        ("GET", ["api", _, "packages"]) => p(&["cloud", "packages", "list"]),
        ("POST", ["api", _, "packages"]) | ("GET", ["api", _, "packages", "new"]) => {
            p(&["cloud", "packages", "create"])
        }
        ("GET", ["api", _, "packages", id]) => p(&["packages", id, "get"]),
        ("PUT", ["api", _, "packages", _]) => p(&["cloud", "packages", "create"]),
        ("DELETE", ["api", _, "packages", id]) => p(&["packages", id, "delete"]),
        ("PUT" | "DELETE", ["api", _, "packages", id, "metadata", ..]) => {
            p(&["packages", id, "edit"])
        }
        ("POST", ["api", _, "sessions"]) | ("POST", ["api", _, "oauth", "token"]) => Rule::Public,
        (_, ["api", _, "oauth", "token"]) => Rule::Public,
        ("GET", ["api", _, "users"]) => p(&["cloud", "users", "list"]),
        ("POST", ["api", _, "users"]) => p(&["cloud", "users", "create"]),
        ("GET", ["api", _, "users", name]) => p(&["users", name, "get"]),
        ("PUT", ["api", _, "users", name]) => p(&["users", name, "passwd"]),
        ("DELETE", ["api", _, "users", name]) => p(&["users", name, "delete"]),
        ("PUT", ["api", _, "users", name, "permissions", ..]) => p(&["users", name, "grant"]),
        ("DELETE", ["api", _, "users", name, "permissions", ..]) => p(&["users", name, "revoke"]),
        _ => Rule::Token,
    }
}

/// The token a request presents: `x-snarl-token`, then `Authorization: Bearer`, then the
/// cookie. The flag says whether it came in the header (FiFo echoes it back then).
fn presented_token(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(token) = headers.get(SNARL_TOKEN).and_then(|v| v.to_str().ok()) {
        return Some((token.trim().to_string(), true));
    }
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
    {
        return Some((token.to_string(), false));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "x-snarl-token")
        .map(|(_, token)| (token.to_string(), false))
}

/// Decides, before any handler, whether the request may go on; passes the [`Caller`] on.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The packages API answers with FiFo's CORS headers, its 401s and 403s included.
    let path = request.uri().path().to_string();
    let response = authenticate_inner(State(state), request, next).await;
    super::cors::with_cors(&path, response)
}

async fn authenticate_inner(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(accounts) = &state.accounts else {
        request.extensions_mut().insert(Caller::Anyone);
        return next.run(request).await;
    };
    let rule = required(request.method(), request.uri().path());
    if rule == Rule::Public {
        return next.run(request).await;
    }
    let accounts = accounts.read();
    let presented = presented_token(request.headers());
    // A TLS client certificate is a credential too: `user-<name>` stands for the user <name>
    // (with that user's permissions); `node-<uuid>` was already confined to its own node's
    // reports by the TLS layer, which is all it needs.
    let certified = request.extensions().get::<Identity>().cloned();
    let (user, token, echo) = match (presented, certified) {
        (Some((token, echo)), _) => match accounts.user_of_token(&token, now_millis()) {
            Some(user) => (user, Some(token), echo),
            None => return ApiError::Forbidden.into_response(),
        },
        (None, Some(Identity::User(name))) => match accounts.users.get(&name) {
            Some(user) => (user, None, false),
            None => return ApiError::Forbidden.into_response(),
        },
        (None, Some(Identity::Node(_))) => {
            drop(accounts);
            request.extensions_mut().insert(Caller::Anyone);
            return next.run(request).await;
        }
        (None, _) => return ApiError::Unauthenticated.into_response(),
    };
    if let Rule::Permission(needed) = &rule
        && !allowed(needed, &user.permissions)
    {
        return ApiError::Forbidden.into_response();
    }
    let caller = Caller::User {
        name: user.name.clone(),
        grants: Arc::new(user.permissions.clone()),
        token: token.clone().unwrap_or_default(),
    };
    drop(accounts);
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    if echo
        && let Some(token) = token
        && let Ok(value) = HeaderValue::from_str(&token)
    {
        response.headers_mut().insert(SNARL_TOKEN, value);
    }
    response
}

/// The routes of sessions, OAuth2 tokens and users.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/{version}/sessions",
            post(login)
                .get(current_session)
                .options(|| options("HEAD, OPTIONS, GET, POST")),
        )
        .route(
            "/api/{version}/sessions/{token}",
            get(get_session)
                .delete(delete_session)
                .options(|| options("HEAD, OPTIONS, GET, DELETE")),
        )
        .route("/api/{version}/oauth/token", post(oauth_token))
        .route(
            "/api/{version}/users",
            get(list_users)
                .post(create_user)
                .options(|| options("HEAD, OPTIONS, GET, POST")),
        )
        .route(
            "/api/{version}/users/{name}",
            get(get_user)
                .put(set_password)
                .delete(delete_user)
                .options(|| options("HEAD, OPTIONS, GET, PUT, DELETE")),
        )
        .route(
            "/api/{version}/users/{name}/permissions/{*permission}",
            put(grant)
                .delete(revoke)
                .options(|| options("HEAD, OPTIONS, PUT, DELETE")),
        )
        // Sessions and users answer with FiFo's CORS headers, as its packages do.
        .layer(axum::middleware::from_fn(super::cors::cors))
}

fn accounts_of(state: &AppState) -> Result<&Accounts, ApiError> {
    state.accounts.as_deref().ok_or(ApiError::BadRequest(
        "Authentication is off (--auth none).".into(),
    ))
}

fn caller_of(request_caller: Option<axum::Extension<Caller>>) -> Caller {
    request_caller.map_or(Caller::Anyone, |axum::Extension(caller)| caller)
}

/// Runs `work` (Argon2: slow on purpose) on the blocking pool: on a request worker it would
/// hold that worker's core, and every other request on it would wait.
async fn off_worker<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::Accounts(AccountsError::Unavailable(format!("{what} task failed"))))
}

/// Checks a user name and password, and mints a token for the user, off the request workers.
async fn issue_token(
    state: &AppState,
    user: &str,
    password: &str,
) -> Result<Option<String>, ApiError> {
    let (state, user, password) = (state.clone(), user.to_string(), password.to_string());
    off_worker("login", move || issue_token_now(&state, &user, &password)).await?
}

/// Applies an accounts change off the request workers: it waits for the database's write lock
/// (up to its busy timeout, while the store's writer or a checkpoint holds it) and fsyncs,
/// and on a request worker every other request on it would wait too.
async fn change_accounts<T: Send + 'static>(
    state: &AppState,
    change: impl FnOnce(&Accounts) -> Result<T, AccountsError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    off_worker("accounts change", move || {
        change(accounts_of(&state)?).map_err(ApiError::Accounts)
    })
    .await?
}

/// Hashes a password, off the request workers.
async fn hash_off_worker(password: &str) -> Result<String, ApiError> {
    let password = password.to_string();
    off_worker("hashing", move || hash_password(&password)).await
}

fn issue_token_now(
    state: &AppState,
    user: &str,
    password: &str,
) -> Result<Option<String>, ApiError> {
    let accounts = accounts_of(state)?;
    let snapshot = accounts.read();
    let Some(record) = snapshot.users.get(user) else {
        return Ok(None);
    };
    if !verify_password(password, &record.password) {
        return Ok(None);
    }
    let token = uuid::Uuid::new_v4().to_string();
    let now = now_millis();
    accounts
        .add_token(&token, user, now, now + TOKEN_LIFETIME_SECONDS * 1000)
        .map_err(ApiError::Accounts)?;
    Ok(Some(token))
}

/// `POST /api/{v}/sessions` `{"user", "password"}`: 303 to the session, with the token in
/// `x-snarl-token` and the cookie, as FiFo 0.1.0 answers.
async fn login(
    State(state): State<AppState>,
    PathParams(params): PathParams,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (Some(user), Some(password)) = (value["user"].as_str(), value["password"].as_str()) else {
        return Err(ApiError::BadRequest(
            "Missing JSON keys: user, password required.".into(),
        ));
    };
    let Some(token) = issue_token(&state, user, password).await? else {
        return Err(ApiError::BadCredentials);
    };
    let version = params.get("version").cloned().unwrap_or_default();
    let mut answer = Answer {
        status: StatusCode::SEE_OTHER,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    };
    let headers = &mut answer.headers;
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/api/{}/sessions/{token}",
        encoded_segment(&version)
    )) {
        headers.insert(header::LOCATION, location);
    }
    if let Ok(value) = HeaderValue::from_str(&token) {
        headers.insert(SNARL_TOKEN, value);
    }
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "x-snarl-token={token}; Max-Age={TOKEN_LIFETIME_SECONDS}; Path=/; HttpOnly"
    )) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    Ok(answer.into_response())
}

/// A user as the API shows it: never the password.
fn user_json(user: &User) -> Value {
    json!({ "name": user.name, "permissions": user.permissions })
}

/// `GET /api/{v}/sessions`: the caller's own user.
async fn current_session(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
) -> Result<Response, ApiError> {
    let accounts = accounts_of(&state)?;
    let Caller::User { name, token, .. } = caller_of(caller) else {
        return Err(ApiError::Unauthenticated);
    };
    let snapshot = accounts.read();
    let user = snapshot.users.get(&name).ok_or(ApiError::Forbidden)?;
    let mut body = user_json(user);
    body["session"] = json!(token);
    Ok(Answer::json(StatusCode::OK, body.to_string()).into_response())
}

/// `GET /api/{v}/sessions/{token}`: the session's user, for its own holder or a caller who
/// may read that user.
async fn get_session(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    PathParams(params): PathParams,
) -> Result<Response, ApiError> {
    let token = params.get("token").cloned().unwrap_or_default();
    let accounts = accounts_of(&state)?;
    let caller = caller_of(caller);
    let snapshot = accounts.read();
    let user = snapshot
        .user_of_token(&token, now_millis())
        .ok_or_else(|| session_not_found(&caller, "get"))?;
    if !own_or_may(&caller, &token, &permission(&["users", &user.name, "get"])) {
        return Err(ApiError::Forbidden);
    }
    let mut body = user_json(user);
    body["session"] = json!(token);
    Ok(Answer::json(StatusCode::OK, body.to_string()).into_response())
}

/// The answer for a token that names no live session: 404 only for a caller who could `act` on
/// every user's sessions, 403 for anyone else, as for a live session of a user they may not
/// see. Otherwise a 403 against a 404 would tell any caller which tokens are live. `_` grants
/// every user and no user can be named `_`, so a grant that covers it covers them all.
fn session_not_found(caller: &Caller, act: &str) -> ApiError {
    if caller.may(&permission(&["users", "_", act])) {
        ApiError::NotFound("Session not found.")
    } else {
        ApiError::Forbidden
    }
}

fn own_or_may(caller: &Caller, token: &str, permission: &[String]) -> bool {
    match caller {
        Caller::User { token: own, .. } if own == token => true,
        caller => caller.may(permission),
    }
}

/// `DELETE /api/{v}/sessions/{token}`: revokes the token at once (log out).
async fn delete_session(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    PathParams(params): PathParams,
) -> Result<Response, ApiError> {
    let token = params.get("token").cloned().unwrap_or_default();
    let accounts = accounts_of(&state)?;
    let caller = caller_of(caller);
    let owner = accounts
        .read()
        .user_of_token(&token, now_millis())
        .map(|user| user.name.clone())
        .ok_or_else(|| session_not_found(&caller, "edit"))?;
    if !own_or_may(&caller, &token, &permission(&["users", &owner, "edit"])) {
        return Err(ApiError::Forbidden);
    }
    change_accounts(&state, move |accounts| accounts.revoke_token(&token)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An OAuth2 error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut answer = Answer::json(
        status,
        json!({ "error": error, "error_description": description }).to_string(),
    );
    answer
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer.into_response()
}

/// `POST /api/{v}/oauth/token`: the password grant. The body is read as a form whatever the
/// `Content-Type` says (pyfi sends a form labelled JSON).
async fn oauth_token(State(state): State<AppState>, LimitedBody(body): LimitedBody) -> Response {
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let Some(grant) = form.get("grant_type") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required.",
        );
    };
    if grant != "password" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only the password grant is supported.",
        );
    }
    let (Some(user), Some(password)) = (form.get("username"), form.get("password")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "username and password are required.",
        );
    };
    match issue_token(&state, user, password).await {
        Ok(Some(token)) => {
            let body = json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "scope": form.get("scope").cloned().unwrap_or_else(|| "*".into()),
            });
            let mut answer = Answer::json(StatusCode::OK, body.to_string());
            answer
                .headers
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            answer.into_response()
        }
        Ok(None) => oauth_error(
            StatusCode::BAD_REQUEST,
            "access_denied",
            "Wrong user name or password.",
        ),
        Err(error) => error.into_response(),
    }
}

async fn list_users(State(state): State<AppState>) -> Result<Response, ApiError> {
    let names: Vec<String> = accounts_of(&state)?.read().users.keys().cloned().collect();
    Ok(Answer::json(StatusCode::OK, json!(names).to_string()).into_response())
}

/// Reads a permission (an array of non-empty strings).
fn parse_permission(value: &Value) -> Option<Permission> {
    let items = value.as_array()?;
    let permission: Option<Permission> = items
        .iter()
        .map(|item| item.as_str().filter(|s| !s.is_empty()).map(str::to_string))
        .collect();
    permission.filter(|p| !p.is_empty())
}

/// Refuses (403) unless `caller` holds every one of `permissions`, wildcards included (see
/// [`covers`]), so that nobody hands out more than they have. The one check behind granting
/// and behind creating a user with permissions: two copies could drift apart, and the one
/// that fell behind would be a way round the other.
fn may_hand_out(caller: &Caller, permissions: &[Permission]) -> Result<(), ApiError> {
    let holds = |handed: &Permission| match caller {
        Caller::Anyone => true,
        Caller::User { grants, .. } => grants.iter().any(|grant| covers(grant, handed)),
    };
    if permissions.iter().all(holds) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// `POST /api/{v}/users` `{"user", "password", "permissions"?: [[…], …]}` → 303. With
/// permissions, the caller must be allowed to grant them (see below); without, only
/// `cloud->users->create` (checked before the handler) is needed.
async fn create_user(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    PathParams(params): PathParams,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    // With authentication off there are no users: said before the body is looked at.
    accounts_of(&state)?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| ApiError::UndecodableBody)?;
    let (Some(name), Some(password)) = (value["user"].as_str(), value["password"].as_str()) else {
        return Err(ApiError::BadRequest(
            "Missing JSON keys: user, password required.".into(),
        ));
    };
    if !valid_user_name(name) {
        return Err(ApiError::BadRequest(
            "A user name is 1 to 128 letters, digits or - _ . @, with at least one letter or digit."
                .into(),
        ));
    }
    let permissions = match &value["permissions"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(parse_permission)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "permissions is an array of arrays of non-empty strings.".into(),
                )
            })?,
        _ => {
            return Err(ApiError::BadRequest(
                "permissions is an array of arrays of non-empty strings.".into(),
            ));
        }
    };
    if !permissions.is_empty() {
        // Creating a user with permissions is creating it and then granting them, in one
        // request, so it needs what the two steps need: `users->U->grant` for the new user
        // and every permission held by the caller. Requiring less (only the permissions
        // held) would let a caller without `users->U->grant` hand out permissions at creation
        // that it could not grant a moment later, so the one-step path would allow what the
        // two-step path refuses. Checked before the password is hashed: Argon2 is slow on
        // purpose, and a refusal should cost nothing; nothing is stored before it either.
        let caller = caller_of(caller);
        if !caller.may(&permission(&["users", name, "grant"])) {
            return Err(ApiError::Forbidden);
        }
        may_hand_out(&caller, &permissions)?;
    }
    let password = hash_off_worker(password).await?;
    let user = User {
        name: name.to_string(),
        password,
        permissions,
    };
    change_accounts(&state, move |accounts| accounts.create_user(user)).await?;
    let version = params.get("version").cloned().unwrap_or_default();
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/api/{}/users/{}",
        encoded_segment(&version),
        encoded_segment(name)
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The user a user route names.
fn user_name(params: &std::collections::HashMap<String, String>) -> String {
    params.get("name").cloned().unwrap_or_default()
}

/// The permission `.../users/{name}/permissions/p1/…/pn` names, from the raw path (none of
/// whose first segments can hold a `/`): split before decoding, so that `%2F` stays inside a
/// segment, as FiFo (cowboy) reads it, and a grant such as `["packages", "a/b", "get"]` can be
/// named to revoke it. Empty segments are skipped.
fn permission_in(uri: &Uri) -> Result<Permission, ApiError> {
    let raw = uri.path().splitn(7, '/').nth(6).unwrap_or_default();
    let mut permission = decoded_segments(raw)?;
    permission.retain(|segment| !segment.is_empty());
    Ok(permission)
}

async fn get_user(
    State(state): State<AppState>,
    PathParams(params): PathParams,
) -> Result<Response, ApiError> {
    let name = user_name(&params);
    let snapshot = accounts_of(&state)?.read();
    let user = snapshot
        .users
        .get(&name)
        .ok_or(ApiError::Accounts(AccountsError::UserNotFound))?;
    Ok(Answer::json(StatusCode::OK, user_json(user).to_string()).into_response())
}

/// `PUT /api/{v}/users/{name}` `{"password"}`: a new password.
async fn set_password(
    State(state): State<AppState>,
    PathParams(params): PathParams,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let name = user_name(&params);
    let value: Value = serde_json::from_slice(&body).map_err(|_| ApiError::UndecodableBody)?;
    let password = match &value["password"] {
        Value::String(password) => password.clone(),
        Value::Null => return Err(ApiError::BadRequest("Missing JSON key: password.".into())),
        _ => {
            return Err(ApiError::BadRequest(
                "\"password\" must be a string.".into(),
            ));
        }
    };
    let hash = hash_off_worker(&password).await?;
    change_accounts(&state, move |accounts| {
        accounts.edit_user(&name, |user| {
            user.password = hash;
            true
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_user(
    State(state): State<AppState>,
    PathParams(params): PathParams,
) -> Result<Response, ApiError> {
    let name = user_name(&params);
    change_accounts(&state, move |accounts| accounts.delete_user(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /api/{v}/users/{name}/permissions/p1/…/pn`: grants `p1->…->pn`. Besides
/// `users->name->grant`, the caller must hold what they grant (read as a literal path), so
/// that nobody hands out more than they have.
async fn grant(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    PathParams(params): PathParams,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = user_name(&params);
    let permission = Some(permission_in(&uri)?)
        .filter(|p| !p.is_empty())
        .ok_or(ApiError::BadRequest("Name a permission to grant.".into()))?;
    may_hand_out(&caller_of(caller), std::slice::from_ref(&permission))?;
    change_accounts(&state, move |accounts| {
        accounts.edit_user(&name, |user| {
            if user.permissions.contains(&permission) {
                return false;
            }
            user.permissions.push(permission);
            true
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/{v}/users/{name}/permissions/p1/…/pn`: revokes that exact grant.
async fn revoke(
    State(state): State<AppState>,
    PathParams(params): PathParams,
    uri: Uri,
) -> Result<Response, ApiError> {
    let name = user_name(&params);
    let permission = permission_in(&uri)?;
    change_accounts(&state, move |accounts| {
        accounts.edit_user(&name, |user| {
            let before = user.permissions.len();
            user.permissions.retain(|granted| granted != &permission);
            user.permissions.len() != before
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(method: Method, path: &str) -> Rule {
        required(&method, path)
    }

    fn perm(text: &str) -> Rule {
        Rule::Permission(text.split(' ').map(str::to_string).collect())
    }

    #[test]
    fn fifo_package_permissions() {
        assert_eq!(
            rule(Method::GET, "/api/2/packages"),
            perm("cloud packages list")
        );
        assert_eq!(
            rule(Method::POST, "/api/2/packages"),
            perm("cloud packages create")
        );
        assert_eq!(
            rule(Method::GET, "/api/2/packages/U"),
            perm("packages U get")
        );
        assert_eq!(
            rule(Method::HEAD, "/api/2/packages/U"),
            perm("packages U get")
        );
        assert_eq!(
            rule(Method::DELETE, "/api/2/packages/U"),
            perm("packages U delete")
        );
        assert_eq!(
            rule(Method::PUT, "/api/2/packages/U"),
            perm("cloud packages create")
        );
        assert_eq!(
            rule(Method::PUT, "/api/0.1.0/packages/U/metadata/a/b"),
            perm("packages U edit")
        );
        assert_eq!(rule(Method::POST, "/api/2/sessions"), Rule::Public);
        assert_eq!(rule(Method::GET, "/api/2/sessions/T"), Rule::Token);
        assert_eq!(rule(Method::POST, "/api/2/oauth/token"), Rule::Public);
        assert_eq!(rule(Method::GET, "/v1/version"), Rule::Public);
        assert_eq!(rule(Method::PATCH, "/nowhere"), Rule::Token);
    }
}
