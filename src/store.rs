//! The versioned store: the only code that persists anything.
//!
//! Readers take the current [`Snapshot`], an immutable value behind an `Arc`, and never wait.
//! Writers send a [`Command`] to the single writer thread (`writer`), which checks and applies
//! queued commands in order, persists each batch in one transaction with one fsync, publishes
//! the new snapshot and only then answers. So nothing is acknowledged or visible before it is
//! durable, and a check (a configuration tag, an existing id) is always made against exactly
//! the state the write lands on.

pub mod accounts;
pub mod admin;
mod answers;
pub mod backup;
pub mod cluster;
mod memory;
mod snapshot;
mod sqlite;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

use crate::model::precondition::{ResourceVersion, Validators, Verdict};
use crate::model::{Change, Operation, Outcome, OwnedVersion, Records, Rejection, Timestamp};

pub use answers::{Answers, recorded_for_retry};
pub use snapshot::{ConfigTag, ListVersions, Snapshot};
pub use sqlite::{DATABASE_FILE, lock_data_dir};

/// How many commands the writer takes into one batch at most. Bounded so that one batch's
/// transaction, and the wait of its first caller, stay short under a flood.
const MAX_BATCH: usize = 1024;

/// How many commands may wait for the writer before senders are held back.
const QUEUE_DEPTH: usize = 8192;

/// How often the lease sweeper looks for expired leases.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// How many recorded idempotent answers are kept at most unless configured otherwise.
pub const DEFAULT_IDEMPOTENCY_MAX_KEYS: usize = 250_000;

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
    /// `If-Match` and friends, evaluated against the resource the operation targets.
    pub validators: Validators,
    /// When true, a write to an existing resource must carry `If-Match`, `If-None-Match: *`
    /// or `X-If-Configuration-Matches` (428 otherwise).
    pub require_validator: bool,
}

impl Precondition {
    /// Whether the configuration tag condition holds for a configuration with tag `current`;
    /// on failure the error names the first required tag and the current one, as Flocker's
    /// 412 does.
    pub fn check_tag(&self, current: &ConfigTag) -> Result<(), StoreError> {
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

    /// Judges the resource-level conditions (the configuration tag is [`Self::check_tag`]'s)
    /// against `current`, the version of the resource the write targets (`None`: there is
    /// none). The one rule for the writer and for a request refused before it reaches the
    /// writer, so that the two cannot answer the same request differently:
    /// - 428 for a write to an existing resource without a validator, when one is required.
    ///   A create finding its target there edits nothing: a retry by a client-held id is
    ///   answered as its first attempt was, a duplicate gets its 409. Demanding `If-Match`
    ///   there would turn either into a 428 that no validator can get past.
    /// - 412 for validators that do not hold.
    pub fn judge(&self, current: Option<&OwnedVersion>, is_create: bool) -> Result<(), StoreError> {
        let has_validator =
            self.validators.guard_existing() || !self.configuration_matches.is_empty();
        if self.require_validator && current.is_some() && !has_validator && !is_create {
            return Err(StoreError::PreconditionRequired);
        }
        let current = current.map(OwnedVersion::as_version);
        if self.validators.evaluate(current, false) == Verdict::Proceed {
            return Ok(());
        }
        Err(StoreError::resource_changed(&self.validators, current))
    }
}

/// A change to make, with the precondition it is subject to.
pub struct Command {
    /// Checked atomically with the write.
    pub precondition: Precondition,
    /// The change.
    pub operation: Operation,
    /// When set, the answer is recorded under an idempotency key in the same transaction as
    /// the change, so that a retry can be answered identically.
    pub idempotency: Option<Idempotency>,
}

/// Turns the result of a command, and the configuration tag it was decided at, into the answer
/// to record for it. Supplied by the API (the store does not know what an answer looks like)
/// and run on the writer thread.
pub type Recorder =
    Box<dyn FnOnce(&Result<Committed, StoreError>, &ConfigTag) -> RecordedAnswer + Send>;

/// An idempotency key to record a command's answer under.
pub struct Idempotency {
    /// The client's key.
    pub key: String,
    /// A digest of the request (method, path, body): a retry must carry the same.
    pub fingerprint: String,
    /// Renders the answer to record.
    pub record: Recorder,
}

/// An answer as it was sent: enough to send it again byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedAnswer {
    /// The HTTP status code.
    pub status: u16,
    /// The header lines.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The first answer given for an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The request digest the answer belongs to.
    pub fingerprint: String,
    /// When the first request was answered; the record is forgotten a while after.
    pub created: Timestamp,
    /// The answer.
    pub answer: RecordedAnswer,
}

/// What the writer answers a command with.
#[derive(Debug)]
pub enum Reply {
    /// The command was decided and, if it changed anything, is durable.
    Done(Result<Committed, StoreError>),
    /// The command was decided and its answer recorded under its idempotency key; both are
    /// durable.
    Recorded(Arc<IdempotencyRecord>),
    /// The idempotency key already had an answer for this same request; the command was not
    /// applied again.
    Replayed(Arc<IdempotencyRecord>),
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
    /// `If-Match`, `If-None-Match` or `If-Unmodified-Since` failed for the target resource.
    #[error(
        "{}",
        if *by_date {
            "The resource was modified after the If-Unmodified-Since date"
        } else {
            "Client and server etags don't match"
        }
    )]
    ResourceChanged {
        /// The resource's current entity tag, if it exists.
        current_etag: Option<String>,
        /// Whether the condition that failed was `If-Unmodified-Since`'s date rather than an
        /// entity tag (Eve's message names entity tags only).
        by_date: bool,
    },
    /// The policy requires a validator and the request had none.
    #[error("To edit a document its etag must be provided using the If-Match header")]
    PreconditionRequired,
    /// The idempotency key already has an answer, for a different request.
    #[error("This Idempotency-Key was already used for a different request.")]
    IdempotencyKeyReused,
    /// The domain refused the operation.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The change could not be made durable, or the writer has stopped; nothing was applied.
    #[error("the configuration store is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// The refusal of `validators` that do not hold against `current`: it names the current
    /// ETag when it is strong (no `If-Match` can match a weak one) and says whether the
    /// condition that failed was `If-Unmodified-Since`'s date. Writes and reads refuse alike.
    pub fn resource_changed(validators: &Validators, current: Option<ResourceVersion<'_>>) -> Self {
        StoreError::ResourceChanged {
            current_etag: current
                .filter(|version| !version.weak)
                .map(|version| version.etag.to_string()),
            by_date: validators.failed_by_date(current),
        }
    }

    /// Whether this refuses a request for its preconditions (a stale configuration tag, a
    /// failed validator, a missing one), decided before the operation runs. Such an answer
    /// depends on headers the idempotency fingerprint leaves out and changed nothing, so it
    /// is not recorded under an `Idempotency-Key`: the client's corrected request, with fresh
    /// validators and the same key, is then applied instead of being told again that its old
    /// ones were stale.
    pub fn is_precondition_failure(&self) -> bool {
        matches!(
            self,
            StoreError::TagMismatch { .. }
                | StoreError::ResourceChanged { .. }
                | StoreError::PreconditionRequired
        )
    }
}

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    current: Arc<ArcSwap<Snapshot>>,
    commands: mpsc::Sender<writer::Request>,
    changes: watch::Receiver<u64>,
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
    /// Another process (a running `floe serve`, an import) holds the data directory's lock.
    #[error(
        "cannot use data directory {path}: another floe process is using it (floe.lock is held)"
    )]
    InUse {
        /// The directory.
        path: PathBuf,
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
    records: Records,
    answers: Vec<(String, IdempotencyRecord)>,
}

/// Everything one batch makes durable, as one unit.
#[derive(Default)]
pub(crate) struct Batch {
    /// The revision the configuration changes lead to.
    revision: u64,
    /// Configuration changes, in order.
    changes: Vec<Change>,
    /// Answers to record under idempotency keys.
    remembered: Vec<(Arc<str>, Arc<IdempotencyRecord>)>,
    /// Idempotency keys to forget, expired or evicted: forgotten before `remembered` is
    /// recorded.
    forgotten: Vec<Arc<str>>,
    /// Ids of deleted packages whose tombstones to forget.
    forgotten_tombstones: Vec<uuid::Uuid>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.remembered.is_empty()
            && self.forgotten.is_empty()
            && self.forgotten_tombstones.is_empty()
    }
}

/// Persistence behind the writer. Implementations run on the writer thread only.
pub(crate) trait Persistence: Send {
    /// Makes `batch` durable as one unit.
    fn commit(&mut self, batch: &Batch) -> Result<(), String>;
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where to keep the configuration.
    pub backend: Backend,
    /// How long recorded idempotent answers are kept, and so the tombstones of deleted
    /// packages: as long as a retry is answered as its first attempt was.
    pub idempotency_ttl: Duration,
    /// How many recorded idempotent answers are kept at most: past it, the oldest are
    /// forgotten before their time.
    pub idempotency_max_keys: usize,
}

impl Store {
    /// Opens (or creates) the store, loads it into memory and starts its writer and lease
    /// sweeper. Must be called inside a tokio runtime.
    pub fn open(options: &StoreOptions) -> Result<(Store, StoreGuard), OpenError> {
        let (persistence, loaded): (Box<dyn Persistence>, Loaded) = match &options.backend {
            Backend::Sqlite(dir) => {
                let (db, loaded) = sqlite::SqliteStore::open(dir)?;
                (Box::new(db), loaded)
            }
            Backend::Memory => (Box::new(memory::MemoryStore), memory::MemoryStore::fresh()),
        };
        let snapshot = Snapshot::new(
            loaded.store_id,
            loaded.revision,
            crate::model::Configuration::from_records(loaded.records),
            loaded
                .answers
                .into_iter()
                .map(|(key, record)| (key.into(), Arc::new(record)))
                .collect(),
            // When each kind last changed is not stored: after a restart every list takes
            // the current revision, so its ETag changes once and clients fetch it again.
            ListVersions::all_at(loaded.store_id, loaded.revision),
        );
        let current = Arc::new(ArcSwap::from_pointee(snapshot));
        let (commands, queue) = mpsc::channel(QUEUE_DEPTH);
        let (published, changes) = watch::channel(loaded.revision);
        let writer = writer::spawn(
            Arc::clone(&current),
            published,
            queue,
            persistence,
            options.idempotency_max_keys,
        );
        let store = Store {
            current,
            commands,
            changes,
        };
        let sweeper = tokio::spawn(sweep(store.clone(), options.idempotency_ttl));
        Ok((store, StoreGuard { writer, sweeper }))
    }

    /// The current configuration, to keep. Cheap; never waits for writers.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current configuration, to read right away: cheaper than [`Store::snapshot`] (no
    /// reference count shared by every reader is touched), but not to be held across an
    /// `.await`.
    pub fn read(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Notified with the new revision after every published change of the configuration.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Applies a command and waits until it is durable (or rejected).
    pub async fn submit(&self, command: Command) -> Reply {
        let (reply, answer) = oneshot::channel();
        let unavailable = |reason: &str| Reply::Done(Err(StoreError::Unavailable(reason.into())));
        if self
            .commands
            .send(writer::Request::Command {
                command: Box::new(command),
                reply,
            })
            .await
            .is_err()
        {
            return unavailable("the writer has stopped");
        }
        answer
            .await
            .unwrap_or_else(|_| unavailable("the writer stopped before answering"))
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

/// Removes expired leases shortly after they expire, and forgets recorded idempotent answers
/// and the tombstones of deleted packages older than `answer_ttl`: a retry that late is
/// neither replayed nor refused, it is a new request. Lease expiry is an ordinary command, so
/// it is persisted and moves the configuration tag like any other change (as in Flocker).
async fn sweep(store: Store, answer_ttl: Duration) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let snapshot = store.snapshot();
        let now = now_millis();
        let cutoff = millis_before(now, answer_ttl);
        // The oldest answer tells whether any expired: the rest need not be looked at.
        if snapshot
            .answers
            .oldest()
            .is_some_and(|created| created < cutoff)
            || snapshot.configuration.has_package_tombstones_before(cutoff)
        {
            let _ = store
                .commands
                .send(writer::Request::Forget { before: cutoff })
                .await;
        }
        if !snapshot.configuration.has_expired_leases(now) {
            continue;
        }
        let command = Command {
            precondition: Precondition::default(),
            operation: Operation::ExpireLeases,
            idempotency: None,
        };
        match store.submit(command).await {
            Reply::Done(Ok(Committed {
                outcome: Outcome::Expired(count),
                ..
            })) if count > 0 => tracing::info!(count, "expired leases removed"),
            Reply::Done(Err(error)) => tracing::warn!(%error, "could not remove expired leases"),
            _ => {}
        }
    }
}

/// The time `span` before `now`, saturating: a span past the range of a timestamp (a setting
/// such as `--idempotency-ttl` or `--node-expiry` made huge, to mean "never") must not wrap to
/// a negative one, which would put the cutoff in the future and forget everything at once.
pub(crate) fn millis_before(now: Timestamp, span: Duration) -> Timestamp {
    now.saturating_sub(Timestamp::try_from(span.as_millis()).unwrap_or(Timestamp::MAX))
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_millis() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}
