//! Authentication and permissions, Project FiFo's way, for the whole service.
//!
//! A caller presents a token as `x-snarl-token` (echoed back), `Authorization: Bearer` or the
//! `x-snarl-token` cookie. Every route names the permission it needs ([`required`]); one
//! middleware decides before any handler runs, so no credentials is 401, a credential without
//! the permission is 403, and both come before 404. Tokens come from `POST /api/{v}/sessions`
//! (login, 303) or `POST /api/{v}/oauth/token` (OAuth2 password grant), served by
//! [`super::sessions`]; users and their grants are managed under `/api/{v}/users`
//! ([`super::users`]) by callers with the matching permissions. This module also holds what
//! those two share: the caller of a request and the way account work is kept off the request
//! workers.

use std::sync::{Arc, LazyLock};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::identity::Identity;
use super::{ApiError, AppState};
use crate::model::permission::{Permission, allowed, permission};
use crate::store::accounts::{Accounts, AccountsError, hash_password};
use crate::store::now_millis;

/// FiFo's token header.
pub const SNARL_TOKEN: HeaderName = HeaderName::from_static("x-snarl-token");

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

    /// Who the caller is and what they may do, for keys that depend on it (list ETags): JSON,
    /// an encoding in which no two callers look alike and that no Rust release changes.
    pub fn key(&self) -> String {
        match self {
            Caller::Anyone => String::new(),
            Caller::User { name, grants, .. } => {
                serde_json::json!([name, grants.as_slice()]).to_string()
            }
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
        (_, ["v1", "version"]) | (_, ["openapi.json"]) => Rule::Public,
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
pub(super) fn accounts_of(state: &AppState) -> Result<&Accounts, ApiError> {
    state.accounts.as_deref().ok_or(ApiError::BadRequest(
        "Authentication is off (--auth none).".into(),
    ))
}

pub(super) fn caller_of(request_caller: Option<axum::Extension<Caller>>) -> Caller {
    request_caller.map_or(Caller::Anyone, |axum::Extension(caller)| caller)
}

/// Runs `work` on the blocking pool: on a request worker it would hold that worker's thread,
/// and every other request on it would wait.
pub(super) async fn off_worker<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::Accounts(AccountsError::Unavailable(format!("{what} task failed"))))
}

/// How many Argon2 computations run at once: one per CPU. Each takes one core and 19 MiB for
/// its whole run, so more at once would finish none sooner, and a flood of logins (each
/// worker thread has a blocking pool of its own, of up to 512 threads) would take gigabytes.
/// The rest wait their turn without holding a thread. Only the hashing is counted: account
/// changes, which wait for the database instead, never queue behind logins.
static ARGON2_JOBS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(1, |cpus| cpus.get());
    Arc::new(Semaphore::new(cpus))
});

/// Runs `work`, which hashes or checks a password with Argon2, off the request workers and
/// in its turn (see [`ARGON2_JOBS`]).
pub(super) async fn argon2_off_worker<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    // The semaphore is never closed. The permit goes with the job, so that a client that
    // leaves frees no place while its hash still runs.
    let Ok(permit) = Arc::clone(&ARGON2_JOBS).acquire_owned().await else {
        return Err(ApiError::Accounts(AccountsError::Unavailable(format!(
            "{what}: no Argon2 slot"
        ))));
    };
    off_worker(what, move || {
        let _permit = permit;
        work()
    })
    .await
}

/// Applies an accounts change off the request workers: it waits for the database's write lock
/// (up to its busy timeout, while the store's writer or a checkpoint holds it) and fsyncs,
/// and on a request worker every other request on it would wait too.
pub(super) async fn change_accounts<T: Send + 'static>(
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
pub(super) async fn hash_off_worker(password: String) -> Result<String, ApiError> {
    argon2_off_worker("hashing", move || hash_password(&password)).await
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

    /// Callers who may see different things have different keys, however their names and
    /// grants split, and the same caller always has the same key.
    #[test]
    fn caller_keys_tell_callers_apart() {
        let user = |name: &str, grants: &[&[&str]]| Caller::User {
            name: name.into(),
            grants: Arc::new(
                grants
                    .iter()
                    .map(|grant| grant.iter().map(|s| s.to_string()).collect())
                    .collect(),
            ),
            token: "t".into(),
        };
        let callers = [
            user("ann", &[&["cloud", "packages", "list"]]),
            user("ann", &[&["cloud", "packages"], &["list"]]),
            user("ann", &[&["cloud", "packages", "list"], &[]]),
            user("ann", &[]),
            user("bob", &[&["cloud", "packages", "list"]]),
            Caller::Anyone,
        ];
        let keys: std::collections::HashSet<String> = callers.iter().map(Caller::key).collect();
        assert_eq!(keys.len(), callers.len(), "{keys:?}");
        assert_eq!(
            callers[0].key(),
            user("ann", &[&["cloud", "packages", "list"]]).key()
        );
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

    /// Argon2 jobs started from several worker runtimes at once, some by callers that leave
    /// while their job runs, never run more at once than there are CPUs.
    #[test]
    fn no_more_argon2_jobs_run_at_once_than_there_are_cpus() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        let cpus = std::thread::available_parallelism().unwrap().get();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let job = |running: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>| {
            let (running, most) = (Arc::clone(running), Arc::clone(most));
            argon2_off_worker("test", move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                running.fetch_sub(1, Ordering::SeqCst);
            })
        };
        // Two single-threaded runtimes on threads of their own, as floe's workers are.
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        // Callers that leave as soon as their job runs: the place stays taken
                        // until the job ends.
                        let leaving: Vec<_> = (0..cpus)
                            .map(|_| tokio::spawn(job(&running, &most)))
                            .collect();
                        while running.load(Ordering::SeqCst) == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        for caller in &leaving {
                            caller.abort();
                        }
                        let staying: Vec<_> = (0..cpus * 2)
                            .map(|_| tokio::spawn(job(&running, &most)))
                            .collect();
                        for caller in staying {
                            caller.await.unwrap().unwrap();
                        }
                    });
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= cpus, "{most} at once, {cpus} CPUs");
    }
}
