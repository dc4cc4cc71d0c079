//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`.
//!
//! One row per dataset, lease, container, mathematician and package, and per tombstone of a
//! deleted package, plus a `meta` table holding the store's random id and the revision. Each
//! batch is one transaction, and a commit in WAL mode with `synchronous=FULL` is flushed to
//! disk before it returns (`fdatasync` of the WAL: the bundled SQLite is built with
//! `HAVE_FDATASYNC`, see `.cargo/config.toml`). The file is plain SQLite: inspect it with the
//! `sqlite3` tool; `floe backup` and `floe restore` (`backup.rs`) copy it safely.

use std::collections::HashSet;
use std::fs::{self, File};
use std::num::NonZeroU64;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use std::sync::Arc;

use super::{Batch, IdempotencyRecord, Loaded, OpenError, Persistence, RecordedAnswer};
use crate::model::container::Container;
use crate::model::mathematician::{Mathematician, NameVersion};
use crate::model::package::Package;
use crate::model::{Change, Dataset, Lease, Metadata, Records, Timestamp, Versioned};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "floe.db";

/// The schema this build writes: the first, [`SCHEMA`], then each of [`MIGRATIONS`]. A new
/// store is made at the first version and migrated as an old one is, so that the two cannot
/// end up with different tables.
pub(super) const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;

/// The first version of the schema. Never edited: a change of the tables is a migration.
const SCHEMA: &str = "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE datasets (
        row          INTEGER PRIMARY KEY,
        dataset_id   TEXT NOT NULL,
        primary_node TEXT NOT NULL,
        deleted      INTEGER NOT NULL,
        maximum_size INTEGER,
        metadata     TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE leases (
        dataset_id TEXT PRIMARY KEY,
        node_uuid  TEXT NOT NULL,
        expires_at INTEGER
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE mathematicians (
        uniq       TEXT PRIMARY KEY,
        versions   TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE containers (
        name       TEXT PRIMARY KEY,
        document   TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE packages (
        uuid       TEXT PRIMARY KEY,
        document   TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        password    TEXT NOT NULL,
        permissions TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE tokens (
        digest     TEXT PRIMARY KEY,
        user       TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE idempotency (
        key         TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        status      INTEGER NOT NULL,
        headers     TEXT NOT NULL,
        body        BLOB NOT NULL
    ) STRICT, WITHOUT ROWID;
";

/// What takes the schema from one version to the next: `MIGRATIONS[i]` from version `i + 1`
/// to `i + 2`. Only ever appended to.
const MIGRATIONS: &[&str] = &[
    // 2: the ids of deleted packages, so that a late retry of a create by id is refused
    // after a restart too.
    "CREATE TABLE package_tombstones (
        uuid       TEXT PRIMARY KEY,
        deleted_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;",
];

/// The open database, with the lock that keeps a second floe off the same data directory.
pub(crate) struct SqliteStore {
    // Field order is drop order: the writer's connection closes first, then the checkpointer
    // folds the WAL into the database one last time, then the lock is released.
    connection: Connection,
    checkpointer: Option<Checkpointer>,
    _lock: File,
}

/// The row of the dataset at `place` in creation order. Datasets are keyed by an integer row
/// rather than by their random id, so that a new dataset is appended to the table's last page
/// instead of landing on a random one; the writer, which checks ids in memory, is what keeps
/// them unique. Rows count from 1 and have no gaps, as places do from 0.
fn row_of(place: u32) -> i64 {
    i64::from(place) + 1
}

/// How often the WAL is folded into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// How many frames (pages) the WAL may hold before a checkpoint makes the writer start it over.
const RESTART_AFTER_FRAMES: i64 = 4096;

/// Folds the WAL into the database file on a thread of its own, through its own connection,
/// so that the writer (and every write waiting on it) never pays for a checkpoint. A commit is
/// durable once it is in the WAL; checkpoints only keep the WAL from growing.
///
/// A passive checkpoint never waits for the writer, but under a steady stream of writes it
/// never catches up with it either, and SQLite starts the WAL over only once every frame is
/// folded. The WAL would then grow for as long as the writes go on, and every commit would
/// extend the file, so that flushing it also writes the file's size and allocation to disk:
/// one more synchronous I/O per commit. So once the WAL holds [`RESTART_AFTER_FRAMES`], the
/// next checkpoint is a RESTART: it waits for the writer to finish its batch, folds the rest,
/// and the writer's next commit goes to the start of a file that no longer grows. The writer
/// waits for that checkpoint's last frames (a few milliseconds), once per few thousand frames.
struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("floe-checkpoint".into())
            .spawn(move || {
                let mut previous = None;
                loop {
                    let last = !matches!(
                        stopped.recv_timeout(CHECKPOINT_INTERVAL),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    );
                    let mode = CheckpointMode::next(last, previous);
                    // The second column is the number of frames in the WAL.
                    let result = connection.query_row(
                        &format!("PRAGMA wal_checkpoint({})", mode.as_sql()),
                        [],
                        |row| row.get::<_, i64>(1),
                    );
                    previous = match result {
                        Ok(frames) => Some((mode, frames)),
                        Err(error) => {
                            tracing::warn!(%error, "WAL checkpoint failed; will retry");
                            None
                        }
                    };
                    if last {
                        break;
                    }
                }
            })
            .expect("the checkpoint thread can be started");
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

/// The kinds of checkpoint the checkpointer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointMode {
    /// Folds what it can without waiting for the writer.
    Passive,
    /// Waits for the writer, folds every frame, so that the next commit starts the WAL over.
    Restart,
    /// At the end: folds every frame and leaves an empty WAL.
    Truncate,
}

impl CheckpointMode {
    /// The checkpoint to run, given whether it is the last one and what the one before it did
    /// (its mode and the frames the WAL held), if it succeeded.
    fn next(last: bool, previous: Option<(CheckpointMode, i64)>) -> Self {
        match previous {
            _ if last => CheckpointMode::Truncate,
            Some((CheckpointMode::Passive, frames)) if frames > RESTART_AFTER_FRAMES => {
                CheckpointMode::Restart
            }
            _ => CheckpointMode::Passive,
        }
    }

    fn as_sql(self) -> &'static str {
        match self {
            CheckpointMode::Passive => "PASSIVE",
            CheckpointMode::Restart => "RESTART",
            CheckpointMode::Truncate => "TRUNCATE",
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates the data directory if it is missing, owner-only: the database holds the users'
/// password hashes and token digests. A directory that exists already keeps the modes its
/// owner gave it.
pub(super) fn create_data_dir(dir: &Path) -> Result<(), OpenError> {
    let dir_error = |reason: String| OpenError::DataDir {
        path: dir.to_path_buf(),
        reason,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| match fs::metadata(dir) {
            Ok(found) if !found.is_dir() => dir_error("it is a file, not a directory".into()),
            _ => dir_error(e.to_string()),
        })
}

/// Takes the data directory's lock, held as long as the returned file is open: one process
/// at a time (a server, an import, an offline account change) may use a store.
pub fn lock_data_dir(dir: &Path) -> Result<File, OpenError> {
    let lock = File::create(dir.join("floe.lock")).map_err(|e| OpenError::DataDir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    lock.try_lock().map_err(|_| OpenError::InUse {
        path: dir.to_path_buf(),
    })?;
    Ok(lock)
}

/// What is left in `dir` of an earlier store, by file name: a WAL that is not empty (a crash
/// before the first checkpoint keeps every commit there) or the administrator's token file.
/// Where any is, a database that holds no store is a lost or damaged one, not a new one: floe
/// would otherwise start empty over it, and write a new token over the old one.
fn earlier_store_files(dir: &Path) -> Vec<String> {
    [
        format!("{DATABASE_FILE}-wal"),
        super::admin::ADMIN_TOKEN_FILE.to_string(),
    ]
    .into_iter()
    .filter(|name| fs::metadata(dir.join(name)).is_ok_and(|file| file.len() > 0))
    .collect()
}

/// The refusal to start a new store beside `leftovers` of an earlier one.
fn refuse_empty_over(state: &str, leftovers: &[String]) -> String {
    format!(
        "the database {state}, but the data directory holds {} of an earlier store; refusing to \
         start an empty store over it. Put the database back (`floe restore` puts a backup \
         back), or, to start afresh, give an empty --data-dir",
        leftovers.join(" and ")
    )
}

/// Refuses a missing or empty database beside an earlier store's files, creates a missing one
/// with mode 0600 before SQLite opens it (SQLite gives its WAL and shared-memory files the
/// same mode: the database holds password hashes and token digests), and warns of an existing
/// one that others may read.
fn prepare_database_file(path: &Path, leftovers: &[String]) -> Result<(), String> {
    let existing = fs::metadata(path).ok();
    if existing.as_ref().is_none_or(|file| file.len() == 0) && !leftovers.is_empty() {
        let state = if existing.is_some() {
            "file is empty"
        } else {
            "file is missing"
        };
        return Err(refuse_empty_over(state, leftovers));
    }
    match existing {
        None => {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| e.to_string())?;
        }
        Some(file) if file.permissions().mode() & 0o077 != 0 => {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", file.permissions().mode() & 0o777),
                "the database is readable by others than its owner, and it holds password hashes and token digests: chmod 600 it (and its -wal and -shm files)"
            );
        }
        Some(_) => {}
    }
    Ok(())
}

/// A random store id that fits SQLite's signed integers.
fn new_store_id() -> u64 {
    rand::random::<u64>() >> 1
}

impl SqliteStore {
    /// Opens the database in `dir`, creating the directory and an empty store if there is none.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Loaded), OpenError> {
        create_data_dir(dir)?;
        let lock = lock_data_dir(dir)?;

        let path = dir.join(DATABASE_FILE);
        let db_error = |e: rusqlite::Error| OpenError::Database {
            path: path.clone(),
            reason: e.to_string(),
        };
        let leftovers = earlier_store_files(dir);
        prepare_database_file(&path, &leftovers).map_err(|reason| OpenError::Database {
            path: path.clone(),
            reason,
        })?;
        let connection = Connection::open(&path).map_err(db_error)?;
        let mut store = SqliteStore {
            connection,
            checkpointer: None,
            _lock: lock,
        };
        let loaded = store
            .check_and_load(&leftovers)
            .map_err(|reason| OpenError::Database {
                path: path.clone(),
                reason,
            })?;
        store.checkpointer = Some(Checkpointer::start(&path).map_err(db_error)?);
        Ok((store, loaded))
    }

    /// Recognises the file before changing anything in it (switching to WAL is stored in the
    /// file), creates the schema in an empty database (unless `leftovers` of an earlier store
    /// lie beside it) or upgrades an older one, and reads the store.
    fn check_and_load(&mut self, leftovers: &[String]) -> Result<Loaded, String> {
        let version: i64 = self
            .connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| e.to_string())?;
        match version {
            0 => {
                let tables: i64 = self
                    .connection
                    .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
                    .map_err(|e| e.to_string())?;
                if tables > 0 {
                    return Err("it holds tables but is not a floe store".into());
                }
                if !leftovers.is_empty() {
                    return Err(refuse_empty_over("holds no store", leftovers));
                }
            }
            1..=SCHEMA_VERSION => {}
            newer => {
                return Err(format!(
                    "schema version {newer} was written by a newer floe (this one reads {SCHEMA_VERSION})"
                ));
            }
        }
        self.connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| e.to_string())?;
        self.connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| e.to_string())?;
        // Checkpoints are the checkpointer's job, off the writer's path.
        self.connection
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| e.to_string())?;
        self.connection
            .pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(|e| e.to_string())?;
        if version == 0 {
            self.initialise()?;
        } else if version < SCHEMA_VERSION {
            self.upgrade(version)?;
        }
        self.load()
    }

    fn load(&mut self) -> Result<Loaded, String> {
        let meta = |key: &str| -> Result<u64, String> {
            self.connection
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                    row.get::<_, i64>(0)
                })
                .optional()
                .map_err(|e| e.to_string())?
                .map(|value| value as u64)
                .ok_or_else(|| format!("the meta table has no {key}"))
        };
        meta("store_id")?;
        let revision = meta("revision")?;
        // A new id at every open: the tag is the id and the revision, and a database restored
        // from a backup brings back revisions that were already published, with other content
        // since. The old tags then name nothing, instead of naming two configurations.
        let store_id = new_store_id();
        self.connection
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'store_id'",
                [store_id as i64],
            )
            .map_err(|e| e.to_string())?;
        Ok(Loaded {
            store_id,
            revision,
            records: self.load_records().map_err(|e| e.to_string())?,
            answers: self.load_answers().map_err(|e| e.to_string())?,
        })
    }

    /// Creates the tables in an empty database.
    fn initialise(&mut self) -> Result<(), String> {
        let tx = self.connection.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
        // The store id is drawn when the database is loaded, at this open and every later one.
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('store_id', 0), ('revision', 0)",
            [],
        )
        .map_err(|e| e.to_string())?;
        migrate(&tx, 1).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())
    }

    /// Brings a database written by an older floe, at schema `version`, up to this one's, in
    /// one transaction: a failed upgrade leaves it as it was.
    fn upgrade(&mut self, version: i64) -> Result<(), String> {
        let tx = self.connection.transaction().map_err(|e| e.to_string())?;
        migrate(&tx, version).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        tracing::info!(
            from = version,
            to = SCHEMA_VERSION,
            "database schema upgraded"
        );
        Ok(())
    }

    fn load_records(&self) -> rusqlite::Result<Records> {
        let mut datasets = Vec::new();
        let mut seen = HashSet::new();
        for (row, record) in self.load_datasets()? {
            let id = record.value.dataset_id;
            // Rows are the places of datasets in creation order (see `row_of`).
            if !seen.insert(id) || u32::try_from(datasets.len()).map(row_of) != Ok(row) {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "dataset {id} in row {row}: each dataset must be stored once, in rows \
                     numbered from 1 without gaps"
                )));
            }
            datasets.push(record);
        }
        Ok(Records {
            datasets,
            leases: self.load_leases()?,
            mathematicians: self.load_mathematicians()?,
            containers: self.load_containers()?,
            packages: self.load_packages()?,
            package_tombstones: self.load_package_tombstones()?,
        })
    }

    fn load_package_tombstones(&self) -> rusqlite::Result<Vec<(uuid::Uuid, Timestamp)>> {
        let mut statement = self
            .connection
            .prepare("SELECT uuid, deleted_at FROM package_tombstones")?;
        let rows = statement.query_map([], |row| {
            Ok((parse_column(row, 0, uuid::Uuid::parse_str)?, row.get(1)?))
        })?;
        rows.collect()
    }

    fn load_containers(&self) -> rusqlite::Result<Vec<Arc<Versioned<Container>>>> {
        let mut statement = self
            .connection
            .prepare("SELECT document, created_at, updated_at FROM containers")?;
        let rows = statement.query_map([], |row| {
            let container = parse_column(row, 0, |s| serde_json::from_str::<Container>(s))?;
            Ok(Versioned::new(container, row.get(1)?, row.get(2)?))
        })?;
        rows.collect()
    }

    fn load_packages(&self) -> rusqlite::Result<Vec<Arc<Versioned<Package>>>> {
        let mut statement = self
            .connection
            .prepare("SELECT document, created_at, updated_at FROM packages")?;
        let rows = statement.query_map([], |row| {
            let package = parse_column(row, 0, |s| serde_json::from_str::<Package>(s))?;
            Ok(Versioned::new(package, row.get(1)?, row.get(2)?))
        })?;
        rows.collect()
    }

    fn load_datasets(&self) -> rusqlite::Result<Vec<(i64, Arc<Versioned<Dataset>>)>> {
        let mut statement = self.connection.prepare(
            "SELECT row, dataset_id, primary_node, deleted, maximum_size, metadata,
                    created_at, updated_at
             FROM datasets ORDER BY row",
        )?;
        let rows = statement.query_map([], |row| {
            let dataset = Dataset {
                dataset_id: parse_column(row, 1, uuid::Uuid::parse_str)?,
                primary: parse_column(row, 2, uuid::Uuid::parse_str)?,
                deleted: row.get(3)?,
                maximum_size: row
                    .get::<_, Option<i64>>(4)?
                    // Stored as the bits of an i64 (SQLite has no unsigned integers): sizes
                    // above i64::MAX come back as they went in.
                    .map(|size| {
                        NonZeroU64::new(size as u64)
                            .ok_or(rusqlite::Error::IntegralValueOutOfRange(4, size))
                    })
                    .transpose()?,
                metadata: parse_column(row, 5, |s| serde_json::from_str::<Metadata>(s))?,
            };
            Ok((
                row.get(0)?,
                Versioned::new(dataset, row.get(6)?, row.get(7)?),
            ))
        })?;
        rows.collect()
    }

    fn load_mathematicians(&self) -> rusqlite::Result<Vec<Arc<Versioned<Mathematician>>>> {
        let mut statement = self
            .connection
            .prepare("SELECT uniq, versions, created_at, updated_at FROM mathematicians")?;
        let rows = statement.query_map([], |row| {
            let mathematician = Mathematician {
                unique: parse_column(row, 0, uuid::Uuid::parse_str)?,
                versions: parse_column(row, 1, |s| serde_json::from_str::<Vec<NameVersion>>(s))?,
            };
            Ok(Versioned::new(mathematician, row.get(2)?, row.get(3)?))
        })?;
        rows.collect()
    }

    fn load_answers(&self) -> rusqlite::Result<Vec<(String, IdempotencyRecord)>> {
        let mut statement = self.connection.prepare(
            "SELECT key, fingerprint, created_at, status, headers, body FROM idempotency",
        )?;
        let rows = statement.query_map([], |row| {
            let record = IdempotencyRecord {
                fingerprint: row.get(1)?,
                created: row.get(2)?,
                answer: RecordedAnswer {
                    status: row.get(3)?,
                    headers: parse_column(row, 4, |s| {
                        serde_json::from_str::<Vec<(String, String)>>(s)
                    })?,
                    body: row.get(5)?,
                },
            };
            Ok((row.get(0)?, record))
        })?;
        rows.collect()
    }

    fn load_leases(&self) -> rusqlite::Result<Vec<Lease>> {
        let mut statement = self
            .connection
            .prepare("SELECT dataset_id, node_uuid, expires_at FROM leases")?;
        let rows = statement.query_map([], |row| {
            Ok(Lease {
                dataset_id: parse_column(row, 0, uuid::Uuid::parse_str)?,
                node_uuid: parse_column(row, 1, uuid::Uuid::parse_str)?,
                expires_at: row.get(2)?,
            })
        })?;
        rows.collect()
    }

    fn write(&mut self, batch: &Batch) -> rusqlite::Result<()> {
        let tx = self.connection.transaction()?;
        {
            let mut add_dataset = tx.prepare_cached(
                "INSERT INTO datasets
                     (row, dataset_id, primary_node, deleted, maximum_size, metadata,
                      created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut update_dataset = tx.prepare_cached(
                "UPDATE datasets SET
                     primary_node = ?2, deleted = ?3, maximum_size = ?4, metadata = ?5,
                     updated_at = ?6
                 WHERE row = ?1 AND dataset_id = ?7",
            )?;
            let mut put_lease = tx.prepare_cached(
                "INSERT OR REPLACE INTO leases (dataset_id, node_uuid, expires_at)
                 VALUES (?1, ?2, ?3)",
            )?;
            let mut remove_lease = tx.prepare_cached("DELETE FROM leases WHERE dataset_id = ?1")?;
            let mut put_container = tx.prepare_cached(
                "INSERT OR REPLACE INTO containers (name, document, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut remove_container =
                tx.prepare_cached("DELETE FROM containers WHERE name = ?1")?;
            let mut put_package = tx.prepare_cached(
                "INSERT OR REPLACE INTO packages (uuid, document, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut remove_package = tx.prepare_cached("DELETE FROM packages WHERE uuid = ?1")?;
            let mut bury_package = tx.prepare_cached(
                "INSERT OR REPLACE INTO package_tombstones (uuid, deleted_at) VALUES (?1, ?2)",
            )?;
            // Forgotten before the changes are written: an id whose tombstone expired, and
            // that was then created and deleted again in the same batch, must keep its new
            // tombstone. (One made and forgotten in the same batch stays on disk, to be
            // forgotten again after a restart: kept longer, never lost.)
            let mut forget_tombstone =
                tx.prepare_cached("DELETE FROM package_tombstones WHERE uuid = ?1")?;
            for uuid in &batch.forgotten_tombstones {
                forget_tombstone.execute([uuid.to_string()])?;
            }
            let mut put_mathematician = tx.prepare_cached(
                "INSERT OR REPLACE INTO mathematicians (uniq, versions, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for change in &batch.changes {
                match change {
                    Change::AddDataset { record, place }
                    | Change::UpdateDataset { record, place } => {
                        let d = &record.value;
                        let row = row_of(*place);
                        let dataset_id = d.dataset_id.to_string();
                        let primary = d.primary.to_string();
                        let size = d.maximum_size.map(|size| size.get() as i64);
                        let metadata =
                            serde_json::to_string(&d.metadata).expect("metadata serialises");
                        if matches!(change, Change::AddDataset { .. }) {
                            add_dataset.execute(params![
                                row,
                                dataset_id,
                                primary,
                                d.deleted,
                                size,
                                metadata,
                                record.created,
                                record.updated,
                            ])?;
                        } else {
                            let updated = update_dataset.execute(params![
                                row,
                                primary,
                                d.deleted,
                                size,
                                metadata,
                                record.updated,
                                dataset_id,
                            ])?;
                            // The row must be this dataset's: a store whose rows disagree with
                            // the places in memory must not be written to.
                            if updated != 1 {
                                return Err(rusqlite::Error::StatementChangedRows(updated));
                            }
                        }
                    }
                    Change::PutLease(lease) => {
                        put_lease.execute(params![
                            lease.dataset_id.to_string(),
                            lease.node_uuid.to_string(),
                            lease.expires_at,
                        ])?;
                    }
                    Change::RemoveLease(dataset_id) => {
                        remove_lease.execute([dataset_id.to_string()])?;
                    }
                    Change::PutContainer(record) => {
                        put_container.execute(params![
                            record.value.name,
                            serde_json::to_string(&record.value).expect("containers serialise"),
                            record.created,
                            record.updated,
                        ])?;
                    }
                    Change::RemoveContainer(name) => {
                        remove_container.execute([name])?;
                    }
                    Change::PutPackage(record) => {
                        put_package.execute(params![
                            record.value.uuid.to_string(),
                            serde_json::to_string(&record.value).expect("packages serialise"),
                            record.created,
                            record.updated,
                        ])?;
                    }
                    Change::RemovePackage { uuid, deleted_at } => {
                        remove_package.execute([uuid.to_string()])?;
                        bury_package.execute(params![uuid.to_string(), deleted_at])?;
                    }
                    Change::PutMathematician(record) => {
                        put_mathematician.execute(params![
                            record.value.unique.to_string(),
                            serde_json::to_string(&record.value.versions)
                                .expect("versions serialise"),
                            record.created,
                            record.updated,
                        ])?;
                    }
                }
            }
            // Forgotten before the new answers are written, as the writer forgot them before
            // deciding the batch's commands: a key that expired and was used again in the same
            // batch must keep its new answer on disk, or a retry after a restart would apply
            // its request a second time.
            let mut forget = tx.prepare_cached("DELETE FROM idempotency WHERE key = ?1")?;
            for key in &batch.forgotten {
                forget.execute([key])?;
            }
            let mut remember = tx.prepare_cached(
                "INSERT OR REPLACE INTO idempotency
                     (key, fingerprint, created_at, status, headers, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (key, record) in &batch.remembered {
                remember.execute(params![
                    key,
                    record.fingerprint,
                    record.created,
                    record.answer.status,
                    serde_json::to_string(&record.answer.headers).expect("headers serialise"),
                    record.answer.body,
                ])?;
            }
            // Cached: a statement parsed for every batch showed up in the writer's profile.
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'revision'")?
                .execute([batch.revision as i64])?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Persistence for SqliteStore {
    fn commit(&mut self, batch: &Batch) -> Result<(), String> {
        self.write(batch).map_err(|e| e.to_string())
    }
}

/// Applies the migrations from schema `version` on in `tx`, and records the version reached.
fn migrate(tx: &rusqlite::Transaction<'_>, version: i64) -> rusqlite::Result<()> {
    let first = usize::try_from(version - 1).expect("schema versions count from 1");
    for migration in &MIGRATIONS[first..] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
}

/// Reads a text column and parses it, reporting a parse failure as a conversion error so that
/// a damaged row stops the start-up instead of being skipped.
fn parse_column<T, E: std::error::Error + Send + Sync + 'static>(
    row: &rusqlite::Row<'_>,
    index: usize,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Configuration, Operation};

    const NODE_A: &str = "cf0f0346-17b2-4812-beca-1434997d6c3f";
    const NODE_B: &str = "7ec3c4eb-6b1c-43da-8015-a163f7d15244";

    /// Applies `operation` and commits what it changed as one batch.
    fn commit(store: &mut SqliteStore, configuration: &mut Configuration, operation: Operation) {
        let (_, changes) = configuration.apply(operation, 1).expect("applies");
        let batch = Batch {
            revision: 1,
            changes,
            ..Batch::default()
        };
        store.commit(&batch).expect("commits");
    }

    /// A store with three datasets created in descending order of id, the first then moved.
    fn three_datasets(dir: &Path) -> Vec<uuid::Uuid> {
        let (mut store, _) = SqliteStore::open(dir).unwrap();
        let mut configuration = Configuration::default();
        let ids: Vec<uuid::Uuid> = (1..=3u128)
            .rev()
            .map(|n| uuid::Uuid::from_u128(0x4000_8000_0000_0000_0000 + n))
            .collect();
        for id in &ids {
            let create = Operation::CreateDataset {
                dataset_id: *id,
                primary: NODE_A.parse().unwrap(),
                metadata: Metadata::default(),
                maximum_size: None,
            };
            commit(&mut store, &mut configuration, create);
        }
        let moving = Operation::MoveDataset {
            dataset_id: Some(ids[0]),
            primary: Some(NODE_B.parse().unwrap()),
        };
        commit(&mut store, &mut configuration, moving);
        ids
    }

    #[test]
    fn datasets_are_stored_in_rows_by_place_and_load_in_creation_order() {
        let dir = tempfile::TempDir::new().unwrap();
        let ids = three_datasets(dir.path());

        let (_store, loaded) = SqliteStore::open(dir.path()).unwrap();
        let datasets = &loaded.records.datasets;
        let loaded_ids: Vec<_> = datasets.iter().map(|d| d.value.dataset_id).collect();
        assert_eq!(loaded_ids, ids);
        assert_eq!(datasets[0].value.primary.to_string(), NODE_B);
        assert_eq!(datasets[1].value.primary.to_string(), NODE_A);

        let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let mut rows = connection
            .prepare("SELECT row, dataset_id FROM datasets ORDER BY row")
            .unwrap();
        let rows: Vec<(i64, String)> = rows
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<(i64, String)> =
            (1..).zip(ids.iter().map(uuid::Uuid::to_string)).collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_wal_that_grew_past_the_limit_is_started_over_by_the_next_checkpoint() {
        use CheckpointMode::{Passive, Restart, Truncate};
        let over = RESTART_AFTER_FRAMES + 1;
        assert_eq!(CheckpointMode::next(false, None), Passive);
        assert_eq!(
            CheckpointMode::next(false, Some((Passive, RESTART_AFTER_FRAMES))),
            Passive
        );
        assert_eq!(CheckpointMode::next(false, Some((Passive, over))), Restart);
        // A RESTART reports the frames it folded; the WAL starts over with the next commit.
        assert_eq!(CheckpointMode::next(false, Some((Restart, over))), Passive);
        assert_eq!(CheckpointMode::next(true, Some((Passive, over))), Truncate);
        assert_eq!(CheckpointMode::next(true, None), Truncate);
    }

    #[test]
    fn a_new_data_directory_is_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::TempDir::new().unwrap();
        let dir = parent.path().join("floe-data");
        let _store = SqliteStore::open(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    #[test]
    fn a_key_forgotten_and_answered_again_in_one_batch_keeps_its_new_answer() {
        let dir = tempfile::TempDir::new().unwrap();
        let (mut store, _) = SqliteStore::open(dir.path()).unwrap();
        let record = |created, status| {
            Arc::new(IdempotencyRecord {
                fingerprint: format!("request at {created}"),
                created,
                answer: RecordedAnswer {
                    status,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
            })
        };
        let first = Batch {
            remembered: vec![("k".into(), record(1, 201))],
            ..Batch::default()
        };
        store.commit(&first).unwrap();
        // The writer's order: the expired answer is forgotten, then the key is used again.
        let again = Batch {
            forgotten: vec!["k".into()],
            remembered: vec![("k".into(), record(2, 303))],
            ..Batch::default()
        };
        store.commit(&again).unwrap();
        drop(store);

        let (_store, loaded) = SqliteStore::open(dir.path()).unwrap();
        let answers: Vec<_> = loaded
            .answers
            .iter()
            .map(|(key, record)| (key.as_str(), record.created, record.answer.status))
            .collect();
        assert_eq!(answers, [("k", 2, 303)]);
    }

    /// The tables and indexes of the database in `dir`, as SQLite keeps their definitions.
    fn schema_of(dir: &Path) -> Vec<(String, Option<String>)> {
        let connection = Connection::open(dir.join(DATABASE_FILE)).unwrap();
        let mut statement = connection
            .prepare("SELECT name, sql FROM sqlite_schema ORDER BY name")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn user_version(dir: &Path) -> i64 {
        Connection::open(dir.join(DATABASE_FILE))
            .unwrap()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_database_of_schema_version_1_is_upgraded_and_keeps_what_it_held() {
        let dir = tempfile::TempDir::new().unwrap();
        // What a floe of schema version 1 left: its tables, its meta, one package.
        let package = Package::new(uuid::Uuid::new_v4(), "small".into());
        let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        connection
            .execute(
                "INSERT INTO meta (key, value) VALUES ('store_id', 77), ('revision', 5)",
                [],
            )
            .unwrap();
        connection
            .execute(
                "INSERT INTO packages (uuid, document, created_at, updated_at)
                 VALUES (?1, ?2, 10, 20)",
                params![
                    package.uuid.to_string(),
                    serde_json::to_string(&package).unwrap()
                ],
            )
            .unwrap();
        connection.pragma_update(None, "user_version", 1).unwrap();
        drop(connection);

        let (mut store, loaded) = SqliteStore::open(dir.path()).unwrap();
        // The revision carries over; the store id is drawn anew at every open.
        assert_eq!(loaded.revision, 5);
        assert_ne!(loaded.store_id, 77);
        let packages = &loaded.records.packages;
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].value, package);
        assert_eq!((packages[0].created, packages[0].updated), (10, 20));
        assert!(loaded.records.package_tombstones.is_empty());
        // The upgraded store takes what the new schema holds.
        let deleted = Batch {
            revision: 6,
            changes: vec![Change::RemovePackage {
                uuid: package.uuid,
                deleted_at: 30,
            }],
            ..Batch::default()
        };
        store.commit(&deleted).unwrap();
        drop(store);
        assert_eq!(user_version(dir.path()), SCHEMA_VERSION);

        let (store, loaded) = SqliteStore::open(dir.path()).unwrap();
        assert!(loaded.records.packages.is_empty());
        assert_eq!(loaded.records.package_tombstones, [(package.uuid, 30)]);
        drop(store);

        let fresh = tempfile::TempDir::new().unwrap();
        drop(SqliteStore::open(fresh.path()).unwrap());
        assert_eq!(user_version(fresh.path()), SCHEMA_VERSION);
        assert_eq!(
            schema_of(dir.path()),
            schema_of(fresh.path()),
            "an upgraded store has the tables of a new one"
        );
    }

    #[test]
    fn a_tombstone_forgotten_and_made_again_in_one_batch_is_kept() {
        let dir = tempfile::TempDir::new().unwrap();
        let (mut store, _) = SqliteStore::open(dir.path()).unwrap();
        let (kept, forgotten) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let deleted = |uuid, deleted_at| Change::RemovePackage { uuid, deleted_at };
        let first = Batch {
            changes: vec![deleted(kept, 1), deleted(forgotten, 2)],
            ..Batch::default()
        };
        store.commit(&first).unwrap();
        // The writer's order: both expire, then one id is created and deleted again.
        let again = Batch {
            forgotten_tombstones: vec![kept, forgotten],
            changes: vec![deleted(kept, 3)],
            ..Batch::default()
        };
        store.commit(&again).unwrap();
        drop(store);

        let (_store, loaded) = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(loaded.records.package_tombstones, [(kept, 3)]);
    }

    #[test]
    fn a_dataset_out_of_its_row_is_refused_at_start() {
        let dir = tempfile::TempDir::new().unwrap();
        let ids = three_datasets(dir.path());
        let connection = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        connection
            .execute("UPDATE datasets SET row = 7 WHERE row = 2", [])
            .unwrap();
        drop(connection);

        let Err(OpenError::Database { reason, .. }) = SqliteStore::open(dir.path()) else {
            panic!("a store with a gap in its dataset rows was opened");
        };
        assert!(
            reason.contains(&ids[2].to_string()) && reason.contains("without gaps"),
            "the refusal does not say what is wrong: {reason}"
        );
    }
}
