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
    #[error("{path} does not exist or is empty: there is no store to back up")]
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
    /// The database being replaced could not be made whole (its WAL folded in), so it was not
    /// replaced.
    #[error(
        "cannot fold the WAL into {path} before replacing it ({reason}); nothing was changed. Another process may have it open (a `floe backup`, an `sqlite3` shell): try again when it is done"
    )]
    Unfolded {
        /// The database.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A WAL lies beside a missing or empty database: it may be all that is left of a store,
    /// and SQLite deletes such a WAL when it opens the database.
    #[error(
        "{wal} is not empty but {database} is missing or empty: that WAL may be all that is left of a store. Move it out of the data directory yourself (SQLite deletes it when it next opens the database), then run this again"
    )]
    OrphanWal {
        /// The WAL.
        wal: PathBuf,
        /// The database beside it.
        database: PathBuf,
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
    refuse_orphan_wal(&database)?;
    if fs::metadata(&database)
        .ok()
        .is_none_or(|file| !file.is_file() || file.len() == 0)
    {
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
    publish(&partial, target)?;
    sync_parent(target);
    Ok(summary)
}

/// A WAL beside a missing or empty database (in the data directory, or a backup given to
/// restore) may be all that is left of a store, and SQLite deletes it when it opens that
/// database: refused, for the operator to look at.
fn refuse_orphan_wal(database: &Path) -> Result<(), BackupError> {
    let wal = with_suffix(database, "-wal");
    if fs::metadata(database)
        .ok()
        .is_none_or(|file| file.len() == 0)
        && fs::metadata(&wal).is_ok_and(|wal| wal.len() > 0)
    {
        return Err(BackupError::OrphanWal {
            wal,
            database: database.to_path_buf(),
        });
    }
    Ok(())
}

/// Gives `partial` the name `target` without replacing a file made there meanwhile: a hard
/// link where the file system has them, else a rename after one more look (a file made
/// between the look and the rename would be replaced). `partial` is gone afterwards.
fn publish(partial: &Path, target: &Path) -> Result<(), BackupError> {
    let published = match fs::hard_link(partial, target) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(BackupError::Exists {
                path: target.to_path_buf(),
            })
        }
        // FAT file systems and many network mounts have no hard links.
        Err(_) if !target.exists() => match fs::rename(partial, target) {
            Ok(()) => return Ok(()),
            Err(error) => Err(file_error("write", target, error)),
        },
        Err(_) => Err(BackupError::Exists {
            path: target.to_path_buf(),
        }),
    };
    let _ = fs::remove_file(partial);
    published
}

/// Replaces the store in `data_dir` with the backup `file`. Refused while the data directory
/// is held (by a server, an import, an account change); a `floe backup` running meanwhile is
/// waited for a moment.
///
/// Until its last step the store it replaces stays as it was, whole, so a crash at any point
/// leaves either that store or the backup: the backup is checked and copied beside the
/// database (as `floe.db.restoring`), the old database has its WAL folded in (or nothing is
/// replaced), is kept as `floe.db.before-restore-<time>`, and the copy then takes its place in
/// one rename. No WAL of the old store is left under the new one, where SQLite would apply it.
pub fn restore(data_dir: &Path, file: &Path) -> Result<Restored, BackupError> {
    if !file.is_file() {
        return Err(BackupError::NoBackup {
            path: file.to_path_buf(),
        });
    }
    create_data_dir(data_dir)?;
    let _lock = lock_data_dir(data_dir)?;
    let database = data_dir.join(DATABASE_FILE);
    refuse_orphan_wal(&database)?;
    let old = fs::metadata(&database).ok();
    let restoring = restoring_path(data_dir);
    if same_file(file, &restoring) {
        return Err(BackupError::NotAStore {
            path: file.to_path_buf(),
            reason: "it is the copy an earlier restore left; name the backup itself".into(),
        });
    }
    // Left by an interrupted restore: nobody else writes it while the lock is held.
    remove_if_present(&restoring)?;
    // Opening it would have SQLite delete a WAL beside it if it were empty.
    refuse_orphan_wal(file)?;
    if fs::metadata(file).is_ok_and(|backup| backup.len() == 0) {
        return Err(BackupError::NotAStore {
            path: file.to_path_buf(),
            reason: "it is empty".into(),
        });
    }
    let source = open_read_only(file)?;
    let summary = copy_store(&source, file, &restoring)?;
    drop(source);
    match put_in_place(data_dir, old.as_ref(), &restoring) {
        Ok(replaced) => Ok(Restored { summary, replaced }),
        Err(error) => {
            let _ = fs::remove_file(&restoring);
            Err(error)
        }
    }
}

/// The steps of `restore` after the copy: fold the old database's WAL in, keep it, rename the
/// copy over it. The old store is whole until the rename.
fn put_in_place(
    data_dir: &Path,
    old: Option<&fs::Metadata>,
    restoring: &Path,
) -> Result<Option<PathBuf>, BackupError> {
    let database = data_dir.join(DATABASE_FILE);
    let wal = with_suffix(&database, "-wal");
    let shm = with_suffix(&database, "-shm");
    // The service's user must be able to open what a restore run as root leaves.
    let owner = match old {
        Some(old) => Some(old.clone()),
        None => fs::metadata(data_dir).ok(),
    };
    if let Some(owner) = &owner
        && let Err(error) = set_owner_like(restoring, owner)
    {
        tracing::warn!(%error, "cannot give the restored database the owner of the one it replaces");
    }
    let replaced = match old {
        Some(old) if old.len() > 0 => {
            fold_wal(&database).map_err(|reason| BackupError::Unfolded {
                path: database.clone(),
                reason,
            })?;
            // What decides, whatever the checkpoint said. The fold's connection, closing as the
            // last one, deletes the WAL and the shared memory; either left means another
            // process has the database open, even idle, and its own close would later delete
            // them by name: the new store's WAL and shared memory by then.
            if wal.exists() || shm.exists() {
                return Err(BackupError::Unfolded {
                    path: database,
                    reason: "its WAL or shared memory is still there after the checkpoint".into(),
                });
            }
            Some(keep(&database)?)
        }
        // Without a database there is no WAL either: `refuse_orphan_wal` saw to that.
        _ => None,
    };
    remove_if_present(&wal)?;
    remove_if_present(&shm)?;
    sync_parent(&database);
    if let Err(error) = fs::rename(restoring, &database) {
        // The kept name would otherwise be a second name of the database still in use.
        if let Some(kept) = &replaced {
            let _ = fs::remove_file(kept);
        }
        return Err(file_error("move", restoring, error));
    }
    sync_parent(&database);
    Ok(replaced)
}

/// The copy of a backup that `restore` makes beside the database before it takes its place.
fn restoring_path(data_dir: &Path) -> PathBuf {
    with_suffix(&data_dir.join(DATABASE_FILE), ".restoring")
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `floe.db.before-restore-<time>` for `database`, as of now.
fn kept_name(database: &Path) -> PathBuf {
    // Without colons, which FAT and SMB file systems refuse in names.
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
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
            // File systems without hard links: a copy, made durable before the original goes.
            Err(_) => match fs::copy(database, &kept).and_then(|_| File::open(&kept)?.sync_all()) {
                Ok(()) => Ok(kept),
                Err(error) => {
                    // Half a copy must not pass for the kept store.
                    let _ = fs::remove_file(&kept);
                    Err(file_error("keep", database, error))
                }
            },
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
    // Absolute, so that SQLite cannot read a relative name that starts with `file:` as a URI.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    Connection::open_with_flags(
        absolute,
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
