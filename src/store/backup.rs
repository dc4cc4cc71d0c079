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
    /// Where that database's WAL was kept, when it could not be folded into it: the two belong
    /// together.
    pub replaced_wal: Option<PathBuf>,
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
    /// The backup to restore is not there.
    #[error("{path} does not exist")]
    NoBackup {
        /// The file named.
        path: PathBuf,
    },
    /// The backup would overwrite a file.
    #[error("{path} exists already; name a new file")]
    Exists {
        /// The file named.
        path: PathBuf,
    },
    /// Another backup to the same file is under way, or one was interrupted.
    #[error(
        "{path} exists: another backup to the same file is running, or one was interrupted (then remove it)"
    )]
    PartialExists {
        /// The partial file.
        path: PathBuf,
    },
    /// SQLite cannot be given this path.
    #[error("{path}: floe can only write a backup under a path that is valid UTF-8")]
    PathNotUtf8 {
        /// The path.
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
    let published = publish(&partial, target);
    let _ = fs::remove_file(&partial);
    published?;
    sync_parent(target);
    Ok(summary)
}

/// Gives `partial` the name `target` without replacing a file made there meanwhile: a hard
/// link where the file system has them, else a rename after one more look.
fn publish(partial: &Path, target: &Path) -> Result<(), BackupError> {
    match fs::hard_link(partial, target) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(BackupError::Exists {
                path: target.to_path_buf(),
            })
        }
        // FAT file systems and many network mounts have no hard links.
        Err(_) if !target.exists() => {
            fs::rename(partial, target).map_err(|error| file_error("write", target, error))
        }
        Err(_) => Err(BackupError::Exists {
            path: target.to_path_buf(),
        }),
    }
}

/// Replaces the store in `data_dir` with the backup `file`. Refused while the data directory
/// is held (by a server, an import, an account change); a `floe backup` running meanwhile is
/// waited for a moment.
///
/// The backup is checked and copied beside the database first, as `floe.db.restoring`, which
/// `floe serve` refuses to start beside: from then until that copy is renamed over `floe.db`,
/// a crash leaves a data directory that says a restore is unfinished, and running the restore
/// again finishes it. The database it replaces is kept as `floe.db.before-restore-<time>`,
/// with its WAL folded in, or kept beside it when it cannot be; no WAL of it stays under the
/// new database, where SQLite would apply it.
pub fn restore(data_dir: &Path, file: &Path) -> Result<Restored, BackupError> {
    if !file.is_file() {
        return Err(BackupError::NoBackup {
            path: file.to_path_buf(),
        });
    }
    create_data_dir(data_dir)?;
    let _lock = lock_data_dir(data_dir)?;
    let database = data_dir.join(DATABASE_FILE);
    let restoring = restoring_path(data_dir);
    // Left by an interrupted restore: nobody else writes it while the lock is held.
    remove_if_present(&restoring)?;
    let source = open_read_only(file)?;
    let summary = copy_store(&source, file, &restoring)?;
    drop(source);
    let old = fs::metadata(&database).ok();
    if let Some(old) = &old
        && let Err(error) = set_owner_like(&restoring, old)
    {
        tracing::warn!(%error, "cannot give the restored database the owner of the one it replaces");
    }

    let wal = with_suffix(&database, "-wal");
    if old.as_ref().is_some_and(|old| old.len() > 0)
        && let Err(reason) = fold_wal(&database)
    {
        tracing::warn!(%reason, database = %database.display(), "cannot fold the WAL into the database being replaced; keeping the WAL beside it");
    }
    let has_wal = fs::metadata(&wal).is_ok_and(|wal| wal.len() > 0);
    let replaced = match (&old, has_wal) {
        (Some(_), _) => Some(keep(&database)?),
        // A WAL without its database: kept with an empty one, which SQLite opens with it.
        (None, true) => {
            let kept = kept_name(&database);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&kept)
                .map_err(|error| file_error("create", &kept, error))?;
            Some(kept)
        }
        (None, false) => None,
    };
    let mut replaced_wal = None;
    if let (Some(kept), true) = (&replaced, has_wal) {
        let kept_wal = with_suffix(kept, "-wal");
        fs::rename(&wal, &kept_wal).map_err(|error| file_error("move", &wal, error))?;
        replaced_wal = Some(kept_wal);
    }
    remove_if_present(&wal)?;
    remove_if_present(&with_suffix(&database, "-shm"))?;
    fs::rename(&restoring, &database).map_err(|error| file_error("move", &restoring, error))?;
    sync_parent(&database);
    Ok(Restored {
        summary,
        replaced,
        replaced_wal,
    })
}

/// The copy of a backup that `restore` puts in place of `floe.db`; while it exists, a restore
/// is unfinished and `floe serve` refuses to start.
pub fn restoring_path(data_dir: &Path) -> PathBuf {
    with_suffix(&data_dir.join(DATABASE_FILE), ".restoring")
}

/// `floe.db.before-restore-<time>` for `database`, as of now.
fn kept_name(database: &Path) -> PathBuf {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    with_suffix(database, &format!(".before-restore-{now}"))
}

/// Links `database` to a new [`kept_name`] (with `.1`, `.2`... after a name already taken),
/// so that the file stays where floe looks for it until the new one replaces it in one rename.
/// Without hard links, a copy.
fn keep(database: &Path) -> Result<PathBuf, BackupError> {
    let base = kept_name(database);
    for attempt in 0..100 {
        let kept = match attempt {
            0 => base.clone(),
            n => with_suffix(&base, &format!(".{n}")),
        };
        if kept.exists() {
            continue;
        }
        return match fs::hard_link(database, &kept) {
            Ok(()) => Ok(kept),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => fs::copy(database, &kept)
                .map(|_| kept.clone())
                .map_err(|error| file_error("keep", database, error)),
        };
    }
    Err(file_error(
        "keep",
        database,
        "every name for the copy is taken",
    ))
}

/// Gives `file` the owner and group of `like`, so that a restore run as root leaves a
/// database the service's own user can open. Only root may change an owner; for anyone else
/// the owner is theirs already.
fn set_owner_like(file: &Path, like: &fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mine = fs::metadata(file)?;
    if mine.uid() == like.uid() && mine.gid() == like.gid() {
        return Ok(());
    }
    std::os::unix::fs::chown(file, Some(like.uid()), Some(like.gid()))
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
    // Absolute, so that SQLite cannot read a relative name that starts with `file:` as a URI.
    let absolute =
        std::path::absolute(target).map_err(|error| file_error("name", target, error))?;
    let Some(target_name) = absolute.to_str() else {
        return Err(BackupError::PathNotUtf8 {
            path: target.to_path_buf(),
        });
    };
    // VACUUM INTO writes into an empty file as it finds it, so the mode is set here.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::PartialExists {
                path: target.to_path_buf(),
            },
            _ => file_error("create", target, error),
        })?;
    let not_a_store = |reason: String| BackupError::NotAStore {
        path: path.to_path_buf(),
        reason,
    };
    let copied = source
        .execute("VACUUM INTO ?1", [target_name])
        .map_err(|error| not_a_store(error.to_string()))
        .and_then(|_| {
            File::open(target)
                .and_then(|file| file.sync_all())
                .map_err(|error| file_error("write", target, error))
        })
        .and_then(|()| summarise(&open_read_only(target)?).map_err(not_a_store));
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

/// Folds the WAL of `database` into it, so that the file kept holds every commit, and checks
/// that it did: a checkpoint that a reader holds up (a `floe backup` under way, an `sqlite3`
/// shell) reports it in its answer, not as an error.
fn fold_wal(database: &Path) -> Result<(), String> {
    let connection = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| error.to_string())?;
    connection
        .busy_timeout(std::time::Duration::from_secs(2))
        .map_err(|error| error.to_string())?;
    let (busy, frames, folded): (i64, i64, i64) = connection
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .map_err(|error| error.to_string())?;
    connection.close().map_err(|(_, error)| error.to_string())?;
    if busy != 0 || frames != folded {
        return Err(format!(
            "another process has the database open ({folded} of {frames} WAL frames folded in)"
        ));
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes a rename or link in the directory of `path` durable. It has happened either way, so
/// a failure here is only warned of.
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let Err(error) = File::open(parent).and_then(|directory| directory.sync_all()) {
        tracing::warn!(%error, directory = %parent.display(), "cannot sync the directory: the new name may not survive a power cut");
    }
}

fn file_error(action: &'static str, path: &Path, error: impl ToString) -> BackupError {
    BackupError::File {
        action,
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}
