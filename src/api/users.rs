//! Users and their grants, FiFo's way: `/api/{v}/users` lists and creates them,
//! `/api/{v}/users/{name}` reads one, changes its password or deletes it, and
//! `/api/{v}/users/{name}/permissions/...` grants and revokes. A caller hands out only
//! permissions it holds itself.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::Answer;
use super::auth::{Caller, accounts_of, caller_of, change_accounts, hash_off_worker};
use super::body::{LimitedBody, decode};
use super::cors::options;
use super::segment::{PathParams, decoded_segments, encoded_segment};
use super::{ApiError, AppState};
use crate::model::permission::{Permission, covers, permission};
use crate::model::schema;
use crate::store::accounts::{AccountsError, User};

/// The routes of users and their grants.
pub fn router() -> Router<AppState> {
    Router::new()
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
        // Users answer with FiFo's CORS headers, as its packages do.
        .layer(axum::middleware::from_fn(super::cors::cors))
}

/// A user as the API shows it: never the password.
pub(super) fn user_json(user: &User) -> Value {
    json!({ "name": user.name, "permissions": user.permissions })
}

async fn list_users(State(state): State<AppState>) -> Result<Response, ApiError> {
    let names: Vec<String> = accounts_of(&state)?.read().users.keys().cloned().collect();
    Ok(Answer::json(StatusCode::OK, json!(names).to_string()).into_response())
}

/// The body of a user's creation, as [`schema::USER_CREATE`] allows it.
#[derive(Deserialize)]
struct NewUser {
    user: String,
    password: String,
    permissions: Option<Vec<Permission>>,
}

/// The body of a password change, as [`schema::PASSWORD_CHANGE`] allows it.
#[derive(Deserialize)]
struct NewPassword {
    password: String,
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
    let NewUser {
        user: name,
        password,
        permissions,
    } = decode(&body, &schema::USER_CREATE)?;
    let permissions = permissions.unwrap_or_default();
    let name = name.as_str();
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
    let NewPassword { password } = decode(&body, &schema::PASSWORD_CHANGE)?;
    let hash = hash_off_worker(password).await?;
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
