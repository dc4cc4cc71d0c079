//! The first administrator: user `admin`, created with a token written to [`ADMIN_TOKEN_FILE`]
//! when a store has no users yet, and given a new token offline by `floe admin-token` when that
//! one is lost or revoked (nobody knows the first administrator's password).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::accounts::{Accounts, User, hash_password};
use super::{Backend, DATABASE_FILE, OpenError, lock_data_dir, now_millis};

/// The file in the data directory that receives the first administrator's token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// How long an administrator's token written to [`ADMIN_TOKEN_FILE`] lives: a century. It
/// ends when it is revoked (`DELETE /api/{v}/sessions/{token}`).
const ADMIN_TOKEN_LIFETIME_MILLIS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Why the accounts could not be opened, or an administrator's token not issued.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The data directory could not be used (held by a server, unreadable).
    #[error(transparent)]
    Store(#[from] OpenError),
    /// The accounts refused, or the token file could not be written.
    #[error("accounts: {0}")]
    Accounts(String),
}

/// Opens the accounts of the store `backend` keeps; in an empty one, creates user `admin`
/// with every permission and writes its token into `data_dir`, in a file only the owner can
/// read, saying so once.
///
/// The token file is written first and the user and token are then stored in one transaction,
/// so a failure at any point leaves no administrator without a way in: the next start tries
/// again. A memory store's token never replaces the token file of a SQLite store.
pub fn open_accounts(backend: &Backend, data_dir: &Path) -> Result<Accounts, AdminError> {
    let accounts = match backend {
        Backend::Sqlite(dir) => Accounts::open(dir).map_err(AdminError::Accounts)?,
        Backend::Memory => Accounts::in_memory(),
    };
    if !accounts.read().users.is_empty() {
        return Ok(accounts);
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if matches!(backend, Backend::Memory) && data_dir.join(DATABASE_FILE).exists() {
        return Err(AdminError::Accounts(format!(
            "--store memory would write its admin token over {}, the token of the SQLite store in that directory: give another --data-dir",
            path.display()
        )));
    }
    let token = uuid::Uuid::new_v4().to_string();
    write_private(&path, &token)?;
    // Nobody knows this password: the administrator signs in with the token, and may set one.
    let password = uuid::Uuid::new_v4().to_string();
    let admin = User {
        name: "admin".into(),
        password: hash_password(&password),
        permissions: vec![vec!["...".into()]],
    };
    let expires_at = now_millis() + ADMIN_TOKEN_LIFETIME_MILLIS;
    accounts
        .create_user_with_token(admin, &token, expires_at)
        .map_err(|e| AdminError::Accounts(e.to_string()))?;
    tracing::warn!(
        token_file = %path.display(),
        "created user admin with every permission; its token is in the token file (mode 0600)"
    );
    Ok(accounts)
}

/// `floe admin-token`: issues a new token for `user` of the stopped store in `data_dir` and
/// writes it to the token file, for when the administrator's token was lost or revoked
/// (nobody knows the first administrator's password). Returns the file written.
///
/// The store must not be in use: a running server reads its accounts when it starts, so it
/// would not know the token, and the data directory's lock says so.
pub fn issue_admin_token(data_dir: &Path, user: &str) -> Result<PathBuf, AdminError> {
    if !data_dir.join(DATABASE_FILE).is_file() {
        return Err(AdminError::Accounts(format!(
            "{} holds no store (no {DATABASE_FILE})",
            data_dir.display(),
        )));
    }
    let _lock = lock_data_dir(data_dir)?;
    let accounts = Accounts::open(data_dir).map_err(AdminError::Accounts)?;
    if !accounts.read().users.contains_key(user) {
        return Err(AdminError::Accounts(format!("there is no user {user:?}")));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let token = uuid::Uuid::new_v4().to_string();
    let now = now_millis();
    accounts
        .add_token(&token, user, now, now + ADMIN_TOKEN_LIFETIME_MILLIS)
        .map_err(|e| AdminError::Accounts(e.to_string()))?;
    write_private(&path, &token)?;
    Ok(path)
}

/// Writes `token` to the file `path`, replacing it, readable by its owner only, and syncs it.
fn write_private(path: &Path, token: &str) -> Result<(), AdminError> {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(token.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    write().map_err(|e| AdminError::Accounts(format!("cannot write {}: {e}", path.display())))
}
