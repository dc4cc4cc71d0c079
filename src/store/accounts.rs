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

/// How many live tokens one user may hold; a login past it revokes the ones that expire soonest.
pub const MAX_TOKENS_PER_USER: usize = 1_000;

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
            // Expired tokens are of no use to anyone; the next login would forget them too.
            connection
                .execute(
                    "DELETE FROM tokens WHERE expires_at <= ?1",
                    [super::now_millis()],
                )
                .map_err(|e| e.to_string())?;
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

    /// Adds the first user together with a token of theirs, in one transaction: a user whose
    /// only way in was never recorded would lock everyone out.
    pub fn create_user_with_token(
        &self,
        user: User,
        token: &str,
        expires_at: Timestamp,
    ) -> Result<(), AccountsError> {
        self.change(|accounts| {
            if accounts.users.contains_key(&user.name) {
                return Err(AccountsError::UserExists);
            }
            let digest = token_digest(token);
            let info = TokenInfo {
                user: user.name.clone(),
                expires_at,
            };
            accounts
                .users
                .insert(user.name.clone(), Arc::new(user.clone()));
            accounts.tokens.insert(digest.clone(), info.clone());
            Ok(vec![Write::PutUser(user), Write::PutToken(digest, info)])
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

    /// Records a new token for `user`, valid until `expires_at`. Tokens that expired by `now`
    /// (anyone's) are forgotten with it, and so are the user's live tokens that expire soonest
    /// past [`MAX_TOKENS_PER_USER`]: a script that logs in on every run and never logs out
    /// would otherwise keep adding a row a run for the year each token lives.
    pub fn add_token(
        &self,
        token: &str,
        user: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), AccountsError> {
        self.change(|accounts| {
            if !accounts.users.contains_key(user) {
                return Err(AccountsError::UserNotFound);
            }
            let mut users_tokens = Vec::new();
            let mut forgotten = Vec::new();
            for (digest, info) in &accounts.tokens {
                if info.expires_at <= now {
                    forgotten.push(digest.clone());
                } else if info.user == user {
                    users_tokens.push((info.expires_at, digest.clone()));
                }
            }
            let excess = (users_tokens.len() + 1).saturating_sub(MAX_TOKENS_PER_USER);
            if excess > 0 {
                users_tokens.sort_unstable();
                tracing::info!(
                    user,
                    revoked = excess,
                    limit = MAX_TOKENS_PER_USER,
                    "a login revoked the user's tokens that expire soonest"
                );
                forgotten.extend(users_tokens.drain(..excess).map(|(_, digest)| digest));
            }
            let mut writes = Vec::with_capacity(forgotten.len() + 1);
            for digest in forgotten {
                accounts.tokens.remove(&digest);
                writes.push(Write::RemoveToken(digest));
            }
            let digest = token_digest(token);
            let info = TokenInfo {
                user: user.to_string(),
                expires_at,
            };
            accounts.tokens.insert(digest.clone(), info.clone());
            writes.push(Write::PutToken(digest, info));
            Ok(writes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::now_millis;
    use crate::store::sqlite::{DATABASE_FILE, SqliteStore};

    fn accounts_with(users: &[&str]) -> Accounts {
        let accounts = Accounts::in_memory();
        for name in users {
            accounts
                .create_user(User {
                    name: name.to_string(),
                    password: String::new(),
                    permissions: Vec::new(),
                })
                .unwrap();
        }
        accounts
    }

    #[test]
    fn a_login_forgets_every_expired_token() {
        let accounts = accounts_with(&["ann", "bob"]);
        accounts.add_token("ann-old", "ann", 0, 100).unwrap();
        accounts.add_token("bob-old", "bob", 0, 100).unwrap();
        accounts.add_token("bob-live", "bob", 0, 1_000).unwrap();
        accounts.add_token("ann-new", "ann", 100, 1_000).unwrap();
        let snapshot = accounts.read();
        let mut live: Vec<_> = snapshot.tokens.keys().cloned().collect();
        live.sort();
        let mut expected = vec![token_digest("bob-live"), token_digest("ann-new")];
        expected.sort();
        assert_eq!(live, expected);
    }

    #[test]
    fn past_the_limit_a_login_revokes_the_user_s_tokens_that_expire_soonest() {
        let accounts = accounts_with(&["ann", "bob"]);
        accounts.add_token("bob", "bob", 0, 10).unwrap();
        for i in 0..MAX_TOKENS_PER_USER as i64 {
            accounts
                .add_token(&format!("ann-{i}"), "ann", 0, 1_000 + i)
                .unwrap();
        }
        assert_eq!(accounts.read().tokens.len(), MAX_TOKENS_PER_USER + 1);
        // One more than the limit: the one that expires soonest goes, bob's stays.
        accounts.add_token("ann-last", "ann", 0, 500).unwrap();
        let snapshot = accounts.read();
        assert_eq!(snapshot.tokens.len(), MAX_TOKENS_PER_USER + 1);
        assert!(snapshot.user_of_token("ann-last", 0).is_some());
        assert!(
            snapshot.user_of_token("ann-0", 0).is_none(),
            "the soonest to expire"
        );
        assert!(snapshot.user_of_token("ann-1", 0).is_some());
        assert!(snapshot.user_of_token("bob", 0).is_some());
    }

    #[test]
    fn expired_tokens_are_dropped_from_the_database_when_it_is_opened() {
        let dir = tempfile::TempDir::new().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        let accounts = Accounts::open(dir.path()).unwrap();
        accounts
            .create_user(User {
                name: "ann".into(),
                password: String::new(),
                permissions: Vec::new(),
            })
            .unwrap();
        let now = now_millis();
        accounts.add_token("expired", "ann", 0, now - 1).unwrap();
        accounts.add_token("live", "ann", 0, now + 60_000).unwrap();
        drop(accounts);

        let reopened = Accounts::open(dir.path()).unwrap();
        let digests: Vec<_> = reopened.read().tokens.keys().cloned().collect();
        assert_eq!(digests, [token_digest("live")]);
        let connection = Connection::open(dir.path().join(DATABASE_FILE));
        let rows: i64 = connection
            .unwrap()
            .query_row("SELECT count(*) FROM tokens", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the expired row is gone from the file too");
    }
}
