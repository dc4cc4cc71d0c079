//! `floe backup` and `floe restore`: a copy of a store taken while floe serves it, and that
//! copy put back in place of a data directory's database.
//!
//! Copying `floe.db` by hand is not enough either way. A copy of the file alone misses the
//! commits still in its WAL; and a copy put back beside the old `floe.db-wal` has the old WAL's
//! pages applied on top of it when SQLite next opens it, which mixes two stores into one. Both
//! commands go through SQLite (`VACUUM INTO`), so a backup is one consistent, self-contained
//! file, and a restore leaves no WAL of the store it replaces.

use std::fs::{self, File};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::OpenError;
use super::sqlite::{DATABASE_FILE, SCHEMA_VERSION, create_data_dir, lock_data_dir};

/// What a backup holds, read back from the file written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSummary {
    /// The store's revision: how many changes it has published.
    pub revision: u64,
    /// Datasets not deleted.
    pub datasets: u64,
}

/// What `restore` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// What the data directory holds now.
    pub summary: StoreSummary,
    /// Where the database it replaced was kept, if there was one.
    pub replaced: Option<PathBuf>,
}

/// Why a backup or a restore did nothing.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The data directory has no database to back up.
    #[error("{path} does not exist: there is no store to back up")]
    NoDatabase {
        /// The database file looked for.
        path: PathBuf,
    },
    /// The backup would overwrite a file.
    #[error("{path} exists already; name a new file")]
    Exists {
        /// The file named.
        path: PathBuf,
    },
    /// The file is not a store this floe can read.
    #[error("{path} is not a floe store this floe can read: {reason}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The data directory is in use or cannot be made.
    #[error(transparent)]
    DataDir(#[from] OpenError),
    /// A file could not be read, written or moved.
    #[error("cannot {action} {path}: {reason}")]
    File {
        /// What was being done.
        action: &'static str,
        /// To which file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Writes a consistent copy of the store in `data_dir` to `target`, a new file, while a server
/// may be serving and writing it: the copy is one read transaction, so it holds exactly the
/// changes committed before it began. The file is mode 0600 (it holds password hashes and
/// token digests) and is checked once written.
pub fn backup(data_dir: &Path, target: &Path) -> Result<StoreSummary, BackupError> {
    let database = data_dir.join(DATABASE_FILE);
    if !database.is_file() {
        return Err(BackupError::NoDatabase { path: database });
    }
    if target.exists() {
        return Err(BackupError::Exists {
            path: target.to_path_buf(),
        });
    }
    let partial = with_suffix(target, ".partial");
    let source = open_read_only(&database)?;
    let summary = copy_store(&source, &database, &partial)?;
    // A hard link, not a rename: it fails rather than replace a file made meanwhile.
    let linked =
        fs::hard_link(&partial, target).map_err(|error| file_error("write", target, error));
    let _ = fs::remove_file(&partial);
    linked?;
    sync_parent(target)?;
    Ok(summary)
}

/// Replaces the store in `data_dir` with the backup `file`. Refused while a server (or any
/// floe command) holds the data directory. The backup is checked and copied beside the
/// database first; the database it replaces has its WAL folded in and is kept as
/// `floe.db.before-restore-<time>`; then the copy takes its place in one rename, so a crash
/// leaves either the old store or the new one.
pub fn restore(data_dir: &Path, file: &Path) -> Result<Restored, BackupError> {
    create_data_dir(data_dir)?;
    let _lock = lock_data_dir(data_dir)?;
    let database = data_dir.join(DATABASE_FILE);
    let restoring = with_suffix(&database, ".restoring");
    let source = open_read_only(file)?;
    let summary = copy_store(&source, file, &restoring)?;
    drop(source);
    match put_in_place(&database, &restoring) {
        Ok(replaced) => Ok(Restored { summary, replaced }),
        Err(error) => {
            let _ = fs::remove_file(&restoring);
            Err(error)
        }
    }
}

/// Moves `restoring` to `database`, keeping the database it replaces (its WAL folded in, or
/// beside it) under a new name, which it returns.
fn put_in_place(database: &Path, restoring: &Path) -> Result<Option<PathBuf>, BackupError> {
    let wal = with_suffix(database, "-wal");
    let replaced = match fs::metadata(database) {
        Ok(old) if old.len() > 0 => {
            fold_wal(database);
            let kept = keep(database)?;
            // A WAL that could not be folded in goes with its database, not under the new one.
            if fs::metadata(&wal).is_ok_and(|wal| wal.len() > 0) {
                let kept_wal = with_suffix(&kept, "-wal");
                fs::rename(&wal, &kept_wal).map_err(|error| file_error("move", &wal, error))?;
            }
            Some(kept)
        }
        _ => None,
    };
    remove_if_present(&wal)?;
    remove_if_present(&with_suffix(database, "-shm"))?;
    fs::rename(restoring, database).map_err(|error| file_error("move", restoring, error))?;
    sync_parent(database)?;
    Ok(replaced)
}

/// Links `database` to `floe.db.before-restore-<time>` (with `.1`, `.2`... after a name
/// already taken), so that the file stays where floe looks for it until the new one replaces
/// it in one rename.
fn keep(database: &Path) -> Result<PathBuf, BackupError> {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let base = with_suffix(database, &format!(".before-restore-{now}"));
    let mut attempt = 0;
    loop {
        let kept = match attempt {
            0 => base.clone(),
            n => with_suffix(&base, &format!(".{n}")),
        };
        match fs::hard_link(database, &kept) {
            Ok(()) => return Ok(kept),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(error) => return Err(file_error("keep", database, error)),
        }
    }
}

fn remove_if_present(path: &Path) -> Result<(), BackupError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(file_error("remove", path, error))
        }
        _ => Ok(()),
    }
}

/// Copies the store `source` (read from `path`) into `target`, a new file of mode 0600, and
/// checks and summarises the copy (VACUUM INTO copies any SQLite file, so what it wrote is
/// what is checked); removes `target` again if anything fails.
fn copy_store(
    source: &Connection,
    path: &Path,
    target: &Path,
) -> Result<StoreSummary, BackupError> {
    // VACUUM INTO writes into an empty file as it finds it, so the mode is set here.
    remove_if_present(target)?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(|error| file_error("create", target, error))?;
    let target_name = target
        .to_str()
        .ok_or_else(|| file_error("name", target, "the path is not UTF-8"))?;
    let copied = source
        .execute("VACUUM INTO ?1", [target_name])
        .map_err(|error| BackupError::NotAStore {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })
        .and_then(|_| {
            File::open(target)
                .and_then(|file| file.sync_all())
                .map_err(|error| file_error("write", target, error))
        })
        .and_then(|()| {
            summarise(&open_read_only(target)?).map_err(|reason| BackupError::NotAStore {
                path: target.to_path_buf(),
                reason,
            })
        });
    if copied.is_err() {
        let _ = fs::remove_file(target);
    }
    copied
}

/// Checks that `connection` holds a floe store this build reads, intact, and summarises it.
fn summarise(connection: &Connection) -> Result<StoreSummary, String> {
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|error| error.to_string())?;
    match version {
        0 => return Err("it holds no floe store".into()),
        1..=SCHEMA_VERSION => {}
        newer => {
            return Err(format!(
                "schema version {newer} was written by a newer floe (this one reads {SCHEMA_VERSION})"
            ));
        }
    }
    let check: String = connection
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|error| error.to_string())?;
    if check != "ok" {
        return Err(format!("SQLite finds it damaged: {check}"));
    }
    let revision: i64 = connection
        .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |row| {
            row.get(0)
        })
        .map_err(|error| format!("it has no revision: {error}"))?;
    let datasets: i64 = connection
        .query_row(
            "SELECT count(*) FROM datasets WHERE deleted = 0",
            [],
            |row| row.get(0),
        )
        .map_err(|error| error.to_string())?;
    Ok(StoreSummary {
        revision: revision as u64,
        datasets: datasets as u64,
    })
}

/// Opens an existing database for reading only; a running server may be writing it.
fn open_read_only(path: &Path) -> Result<Connection, BackupError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| BackupError::NotAStore {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// Folds the WAL of `database` into it, so that the file kept holds every commit. A damaged
/// database may refuse; its WAL is then kept beside it instead.
fn fold_wal(database: &Path) {
    let folded = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|connection| {
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        connection.close().map_err(|(_, error)| error)
    });
    if let Err(error) = folded {
        tracing::warn!(%error, database = %database.display(), "cannot fold the WAL into the database being replaced; keeping the WAL beside it");
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes a rename or link in the directory of `path` durable.
fn sync_parent(path: &Path) -> Result<(), BackupError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| file_error("sync", parent, error))
}

fn file_error(action: &'static str, path: &Path, error: impl ToString) -> BackupError {
    BackupError::File {
        action,
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}
