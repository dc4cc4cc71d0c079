//! The versioned store: the only code that persists anything.
//!
//! Readers take the current [`Snapshot`], an immutable value behind an `Arc`, and never wait.
//! Writers send a [`Command`] to the single writer thread ([`writer`]), which checks and applies
//! queued commands in order, persists each batch in one transaction with one fsync, publishes
//! the new snapshot and only then answers. So nothing is acknowledged or visible before it is
//! durable, and a check (a configuration tag, an existing id) is always made against exactly
//! the state the write lands on.

mod memory;
mod snapshot;
mod sqlite;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use crate::model::{Change, Dataset, Lease, Operation, Outcome, Rejection, Timestamp};

pub use snapshot::{ConfigTag, Snapshot};

/// How many commands the writer takes into one batch at most. Bounded so that one batch's
/// transaction, and the wait of its first caller, stay short under a flood.
const MAX_BATCH: usize = 1024;

/// How many commands may wait for the writer before senders are held back.
const QUEUE_DEPTH: usize = 8192;

/// How often the lease sweeper looks for expired leases.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Which backend keeps the configuration.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite in WAL mode with `synchronous=FULL`, in this directory.
    Sqlite(PathBuf),
    /// Nothing persisted: the configuration is lost when the process ends.
    Memory,
}

/// What the writer must check before applying a command, against the state it would apply to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// `X-If-Configuration-Matches`: the command applies only if the configuration tag equals
    /// one of these (byte for byte). Empty means unconditional.
    pub configuration_matches: Vec<String>,
}

impl Precondition {
    /// Whether the condition holds for a configuration with tag `current`; on failure the
    /// error names the first required tag and the current one, as Flocker's 412 does.
    pub fn check(&self, current: &ConfigTag) -> Result<(), StoreError> {
        match self.configuration_matches.first() {
            Some(required)
                if !self
                    .configuration_matches
                    .iter()
                    .any(|tag| tag == current.as_str()) =>
            {
                Err(StoreError::TagMismatch {
                    required: required.clone(),
                    current: current.clone(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// A change to make, with the precondition it is subject to.
#[derive(Debug, Clone)]
pub struct Command {
    /// Checked atomically with the write.
    pub precondition: Precondition,
    /// The change.
    pub operation: Operation,
}

/// The answer to a command that was applied (or was a no-op) and is durable.
#[derive(Debug, Clone)]
pub struct Committed {
    /// What the operation produced.
    pub outcome: Outcome,
    /// The configuration tag right after this command: a client can chain conditional writes
    /// on it without listing again.
    pub tag: ConfigTag,
    /// The configuration revision right after this command.
    pub revision: u64,
}

/// Why a command was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The configuration tag precondition failed.
    #[error("Tag doesn't match. Required: {required}, current: {current}")]
    TagMismatch {
        /// The first tag the client required.
        required: String,
        /// The tag the configuration has.
        current: ConfigTag,
    },
    /// The domain refused the operation.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The change could not be made durable, or the writer has stopped; nothing was applied.
    #[error("the configuration store is unavailable: {0}")]
    Unavailable(String),
}

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    current: Arc<ArcSwap<Snapshot>>,
    commands: mpsc::Sender<writer::Request>,
}

/// Owns the writer thread; [`StoreGuard::close`] waits for it to finish the queued commands.
pub struct StoreGuard {
    writer: std::thread::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
}

/// Why the store could not be opened. Always fatal: floe never starts on a store it could not
/// read, so a damaged database is never mistaken for an empty one.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created or locked.
    #[error("cannot use data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The database could not be opened, read or initialised.
    #[error("cannot open the database {path}: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// What a backend hands back at start-up.
pub(crate) struct Loaded {
    store_id: u64,
    revision: u64,
    datasets: Vec<Dataset>,
    leases: Vec<Lease>,
}

/// Persistence behind the writer. Implementations run on the writer thread only.
pub(crate) trait Persistence: Send {
    /// Makes `changes`, which take the configuration to `revision`, durable as one unit.
    fn commit(&mut self, revision: u64, changes: &[Change]) -> Result<(), String>;
}

impl Store {
    /// Opens (or creates) the store, loads it into memory and starts its writer and lease
    /// sweeper. Must be called inside a tokio runtime.
    pub fn open(backend: &Backend) -> Result<(Store, StoreGuard), OpenError> {
        let (persistence, loaded): (Box<dyn Persistence>, Loaded) = match backend {
            Backend::Sqlite(dir) => {
                let (db, loaded) = sqlite::SqliteStore::open(dir)?;
                (Box::new(db), loaded)
            }
            Backend::Memory => (Box::new(memory::MemoryStore), memory::MemoryStore::fresh()),
        };
        let snapshot = Snapshot::new(
            loaded.store_id,
            loaded.revision,
            crate::model::Configuration::from_records(loaded.datasets, loaded.leases),
        );
        let current = Arc::new(ArcSwap::from_pointee(snapshot));
        let (commands, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = writer::spawn(Arc::clone(&current), queue, persistence);
        let store = Store { current, commands };
        let sweeper = tokio::spawn(sweep_expired_leases(store.clone()));
        Ok((store, StoreGuard { writer, sweeper }))
    }

    /// The current configuration. Cheap; never waits for writers.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Applies a command and waits until it is durable (or rejected).
    pub async fn submit(&self, command: Command) -> Result<Committed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(writer::Request { command, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }
}

impl StoreGuard {
    /// Stops the sweeper and waits for the writer to apply, persist and answer every command
    /// already queued. The writer ends once every [`Store`] handle is dropped, so call this
    /// after the server has stopped.
    pub async fn close(self) {
        self.sweeper.abort();
        let _ = self.sweeper.await;
        let writer = self.writer;
        if tokio::task::spawn_blocking(move || writer.join())
            .await
            .is_err()
        {
            tracing::error!("the store writer panicked");
        }
    }
}

/// Removes expired leases shortly after they expire. Expiry is an ordinary command, so it is
/// persisted and moves the configuration tag like any other change (as in Flocker).
async fn sweep_expired_leases(store: Store) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !store
            .snapshot()
            .configuration
            .has_expired_leases(now_millis())
        {
            continue;
        }
        let command = Command {
            precondition: Precondition::default(),
            operation: Operation::ExpireLeases,
        };
        match store.submit(command).await {
            Ok(Committed {
                outcome: Outcome::Expired(count),
                ..
            }) if count > 0 => tracing::info!(count, "expired leases removed"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not remove expired leases"),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_millis() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}
