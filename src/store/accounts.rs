//! Users, their permissions and their tokens. Kept apart from the configuration on purpose:
//! a login is not a change of the cluster's desired configuration, so it must not move the
//! configuration tag (that would fail other clients' conditional writes for nothing). Held in
//! memory as an immutable snapshot that readers load without waiting; every change is written
//! to the same SQLite database (its own tables, its own connection) before it is published.
//! Tokens are stored only as SHA-256 digests.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Timestamp;
use crate::model::permission::Permission;

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The password as an argon2 PHC string.
    pub password: String,
    /// What the user may do.
    pub permissions: Vec<Permission>,
}

/// A live token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Whose it is.
    pub user: String,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// Everything about accounts at one moment.
#[derive(Debug, Clone, Default)]
pub struct AccountsSnapshot {
    /// Users by name.
    pub users: imbl::OrdMap<String, Arc<User>>,
    /// Tokens by digest.
    pub tokens: imbl::HashMap<String, TokenInfo>,
}

impl AccountsSnapshot {
    /// The user a token belongs to, if the token is live at `now`.
    pub fn user_of_token(&self, token: &str, now: Timestamp) -> Option<&Arc<User>> {
        let info = self.tokens.get(&token_digest(token))?;
        if info.expires_at <= now {
            return None;
        }
        self.users.get(&info.user)
    }
}

/// Why an accounts change was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsError {
    /// No such user.
    #[error("User not found.")]
    UserNotFound,
    /// A user with that name exists.
    #[error("A user with this name already exists.")]
    UserExists,
    /// The change could not be made durable; nothing changed.
    #[error("the account store is unavailable: {0}")]
    Unavailable(String),
}

/// The accounts store.
pub struct Accounts {
    current: ArcSwap<AccountsSnapshot>,
    /// The database connection (none with `--store memory`); its lock also serialises writers.
    db: Mutex<Option<Connection>>,
}

/// The digest a token is stored and looked up under.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Accounts {
    /// Accounts kept in memory only.
    pub fn in_memory() -> Self {
        Accounts {
            current: ArcSwap::from_pointee(AccountsSnapshot::default()),
            db: Mutex::new(None),
        }
    }

    /// Opens the accounts tables of the store's database in `dir` (the store has created
    /// them) and loads them.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let connection =
            Connection::open(dir.join(super::sqlite::DATABASE_FILE)).map_err(|e| e.to_string())?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| e.to_string())?;
        // Checkpoints are the store's checkpointer's job: one run inline after a commit here
        // would make an account change wait for it.
        connection
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| e.to_string())?;
        let mut snapshot = AccountsSnapshot::default();
        {
            let mut statement = connection
                .prepare("SELECT name, password, permissions FROM users")
                .map_err(|e| e.to_string())?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })
                .map_err(|e| e.to_string())?;
            for row in rows {
                let (name, password, permissions) = row.map_err(|e| e.to_string())?;
                let permissions: Vec<Permission> =
                    serde_json::from_str(&permissions).map_err(|e| e.to_string())?;
                let user = User {
                    name: name.clone(),
                    password,
                    permissions,
                };
                snapshot.users.insert(name, Arc::new(user));
            }
            let mut statement = connection
                .prepare("SELECT digest, user, expires_at FROM tokens")
                .map_err(|e| e.to_string())?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        TokenInfo {
                            user: row.get(1)?,
                            expires_at: row.get(2)?,
                        },
                    ))
                })
                .map_err(|e| e.to_string())?;
            for row in rows {
                let (digest, info) = row.map_err(|e| e.to_string())?;
                snapshot.tokens.insert(digest, info);
            }
        }
        Ok(Accounts {
            current: ArcSwap::from_pointee(snapshot),
            db: Mutex::new(Some(connection)),
        })
    }

    /// The current accounts.
    pub fn read(&self) -> Arc<AccountsSnapshot> {
        self.current.load_full()
    }

    /// Applies `change` to a copy of the current accounts, persists what it returns in one
    /// transaction, then publishes the copy. Writers are serialised by the database lock.
    fn change(
        &self,
        change: impl FnOnce(&mut AccountsSnapshot) -> Result<Vec<Write>, AccountsError>,
    ) -> Result<(), AccountsError> {
        let mut db = self
            .db
            .lock()
            .map_err(|_| AccountsError::Unavailable("a writer panicked".into()))?;
        let mut next = (*self.current.load_full()).clone();
        let writes = change(&mut next)?;
        if let Some(connection) = db.as_mut() {
            persist(connection, &writes).map_err(|e| AccountsError::Unavailable(e.to_string()))?;
        }
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Adds a user.
    pub fn create_user(&self, user: User) -> Result<(), AccountsError> {
        self.change(|accounts| {
            if accounts.users.contains_key(&user.name) {
                return Err(AccountsError::UserExists);
            }
            accounts
                .users
                .insert(user.name.clone(), Arc::new(user.clone()));
            Ok(vec![Write::PutUser(user)])
        })
    }

    /// Changes a user (permissions or password); `edit` returns whether anything changed.
    pub fn edit_user(
        &self,
        name: &str,
        edit: impl FnOnce(&mut User) -> bool,
    ) -> Result<(), AccountsError> {
        self.change(|accounts| {
            let mut user = (**accounts
                .users
                .get(name)
                .ok_or(AccountsError::UserNotFound)?)
            .clone();
            if !edit(&mut user) {
                return Ok(Vec::new());
            }
            accounts
                .users
                .insert(user.name.clone(), Arc::new(user.clone()));
            Ok(vec![Write::PutUser(user)])
        })
    }

    /// Removes a user and every token of theirs.
    pub fn delete_user(&self, name: &str) -> Result<(), AccountsError> {
        self.change(|accounts| {
            accounts
                .users
                .remove(name)
                .ok_or(AccountsError::UserNotFound)?;
            accounts.tokens.retain(|_, info| info.user != name);
            Ok(vec![Write::RemoveUser(name.to_string())])
        })
    }

    /// Records a new token for `user`, valid until `expires_at`.
    pub fn add_token(
        &self,
        token: &str,
        user: &str,
        expires_at: Timestamp,
    ) -> Result<(), AccountsError> {
        self.change(|accounts| {
            if !accounts.users.contains_key(user) {
                return Err(AccountsError::UserNotFound);
            }
            let digest = token_digest(token);
            let info = TokenInfo {
                user: user.to_string(),
                expires_at,
            };
            accounts.tokens.insert(digest.clone(), info.clone());
            Ok(vec![Write::PutToken(digest, info)])
        })
    }

    /// Revokes a token at once; returns whether it existed.
    pub fn revoke_token(&self, token: &str) -> Result<bool, AccountsError> {
        let mut existed = false;
        self.change(|accounts| {
            let digest = token_digest(token);
            existed = accounts.tokens.remove(&digest).is_some();
            Ok(if existed {
                vec![Write::RemoveToken(digest)]
            } else {
                Vec::new()
            })
        })?;
        Ok(existed)
    }
}

/// One row change.
enum Write {
    PutUser(User),
    RemoveUser(String),
    PutToken(String, TokenInfo),
    RemoveToken(String),
}

fn persist(connection: &mut Connection, writes: &[Write]) -> rusqlite::Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let tx = connection.transaction()?;
    for write in writes {
        match write {
            Write::PutUser(user) => {
                tx.execute(
                    "INSERT OR REPLACE INTO users (name, password, permissions) VALUES (?1, ?2, ?3)",
                    params![
                        user.name,
                        user.password,
                        serde_json::to_string(&user.permissions).expect("permissions serialise"),
                    ],
                )?;
            }
            Write::RemoveUser(name) => {
                tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
                tx.execute("DELETE FROM tokens WHERE user = ?1", [name])?;
            }
            Write::PutToken(digest, info) => {
                tx.execute(
                    "INSERT OR REPLACE INTO tokens (digest, user, expires_at) VALUES (?1, ?2, ?3)",
                    params![digest, info.user, info.expires_at],
                )?;
            }
            Write::RemoveToken(digest) => {
                tx.execute("DELETE FROM tokens WHERE digest = ?1", [digest])?;
            }
        }
    }
    tx.commit()
}

/// Hashes a password with argon2 (default parameters, random salt).
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes fit a salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password")
        .to_string()
}

/// Whether `password` is the one `hash` was made from.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}
