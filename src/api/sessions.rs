//! Sessions, FiFo's way: `POST /api/{v}/sessions` logs in (303 to the session, the token in
//! `x-snarl-token` and the cookie), `GET`/`DELETE /api/{v}/sessions/{token}` read and end one,
//! and `POST /api/{v}/oauth/token` is the OAuth2 password grant. [`super::auth`] checks the
//! tokens these hand out.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::answer::Answer;
use super::auth::{
    Caller, SNARL_TOKEN, accounts_of, argon2_off_worker, caller_of, change_accounts,
};
use super::body::{LimitedBody, decode};
use super::cors::options;
use super::segment::{PathParams, encoded_segment};
use super::users::user_json;
use super::{ApiError, AppState};
use crate::model::permission::permission;
use crate::model::schema;
use crate::store::accounts::{AccountsSnapshot, User, verify_password};
use crate::store::now_millis;

/// How long a token lives: FiFo's cookie lasted 364 days.
pub const TOKEN_LIFETIME_SECONDS: i64 = 364 * 24 * 60 * 60;

/// The routes of sessions and OAuth2 tokens.
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
        // Sessions answer with FiFo's CORS headers, as its packages do.
        .layer(axum::middleware::from_fn(super::cors::cors))
}

/// Checks a user name and password (Argon2, in its turn), then mints a token for the user,
/// both off the request workers.
async fn issue_token(
    state: &AppState,
    user: &str,
    password: &str,
) -> Result<Option<String>, ApiError> {
    let checked = {
        let (state, user, password) = (state.clone(), user.to_string(), password.to_string());
        argon2_off_worker("login", move || password_matches(&state, &user, &password)).await??
    };
    if !checked {
        return Ok(None);
    }
    let token = uuid::Uuid::new_v4().to_string();
    let (minted, user) = (token.clone(), user.to_string());
    let now = now_millis();
    change_accounts(state, move |accounts| {
        accounts.add_token(&minted, &user, now, now + TOKEN_LIFETIME_SECONDS * 1000)
    })
    .await?;
    Ok(Some(token))
}

/// Whether `user` exists and `password` is theirs.
fn password_matches(state: &AppState, user: &str, password: &str) -> Result<bool, ApiError> {
    let accounts = accounts_of(state)?;
    let snapshot = accounts.read();
    let Some(record) = snapshot.users.get(user) else {
        return Ok(false);
    };
    // Empty passwords are refused when set; one stored before that was refused opens nothing.
    Ok(!password.is_empty() && verify_password(password, &record.password))
}

/// The body of a login, as [`schema::LOGIN`] allows it.
#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// `POST /api/{v}/sessions` `{"user", "password"}`: 303 to the session, with the token in
/// `x-snarl-token` and the cookie, as FiFo 0.1.0 answers.
async fn login(
    State(state): State<AppState>,
    PathParams(params): PathParams,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    // FiFo's one answer to any body without the two, malformed JSON included.
    let Login { user, password } = decode(&body, &schema::LOGIN)
        .map_err(|_| ApiError::BadRequest("Missing JSON keys: user, password required.".into()))?;
    let Some(token) = issue_token(&state, &user, &password).await? else {
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
    let snapshot = accounts_of(&state)?.read();
    let user = session_user(&snapshot, &caller_of(caller), &token, "get")?;
    let mut body = user_json(user);
    body["session"] = json!(token);
    Ok(Answer::json(StatusCode::OK, body.to_string()).into_response())
}

/// The user whose live session `token` is, for a caller who may `act` on that session: its
/// own holder, or a caller with `users->NAME->act`. A token that names no live session is a
/// 404 only for a caller who could `act` on every user's sessions, and a 403 for anyone else,
/// as for a live session of a user they may not see: otherwise a 403 against a 404 would tell
/// any caller which tokens are live. `_` grants every user and no user can be named `_`, so a
/// grant that covers it covers them all.
fn session_user<'a>(
    accounts: &'a AccountsSnapshot,
    caller: &Caller,
    token: &str,
    act: &str,
) -> Result<&'a User, ApiError> {
    let Some(user) = accounts.user_of_token(token, now_millis()) else {
        return Err(if caller.may(&permission(&["users", "_", act])) {
            ApiError::NotFound("Session not found.")
        } else {
            ApiError::Forbidden
        });
    };
    let own = matches!(caller, Caller::User { token: own, .. } if own == token);
    if own || caller.may(&permission(&["users", &user.name, act])) {
        Ok(user)
    } else {
        Err(ApiError::Forbidden)
    }
}

/// `DELETE /api/{v}/sessions/{token}`: revokes the token at once (log out).
async fn delete_session(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    PathParams(params): PathParams,
) -> Result<Response, ApiError> {
    let token = params.get("token").cloned().unwrap_or_default();
    session_user(
        &accounts_of(&state)?.read(),
        &caller_of(caller),
        &token,
        "edit",
    )?;
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
        // An OAuth2 client reads `error` (RFC 6749 §5.2): authentication being off is a
        // refusal in its terms. An unavailable store stays floe's own 503.
        Err(ApiError::BadRequest(description)) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &description)
        }
        Err(error) => error.into_response(),
    }
}
