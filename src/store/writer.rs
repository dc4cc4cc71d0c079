//! The single writer: group commit of queued commands.
//!
//! One OS thread owns mutation (and the database connection, which is synchronous). It takes
//! every request that is waiting, checks and applies each command in order against the newest
//! state, persists the batch in one transaction, publishes, and then answers every command of
//! the batch. Rejected commands change nothing, but they are answered with the batch too: a
//! rejection may be caused by an earlier command of the same batch (a 412 because it moved the
//! tag, a 409 because it created the id), and a client told so must be able to see that cause
//! as soon as it has the answer.
//!
//! The writer also forgets recorded idempotent answers: those older than the sweeper's latest
//! cutoff, a bounded number in every batch, and the oldest ones when recording another would
//! exceed the cap on how many are kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Answers, Batch, Command, Committed, IdempotencyRecord, MAX_BATCH, Persistence, Precondition,
    Reply, Snapshot, StoreError, now_millis, recorded_for_retry, snapshot::ConfigTag,
};
use crate::log_budget::LogBudget;
use crate::model::{Configuration, Operation, Timestamp};

/// How many expired answers one batch forgets at most: after a long pause (a restart, a clock
/// that jumped ahead) a great many can expire at once, and deleting them all in one batch
/// would hold up the writes behind it. Every batch takes its share until none is left, so
/// expiry keeps up with any rate of keyed writes.
const FORGET_PER_BATCH: usize = 1024;

/// At most one warning about evicted answers is logged per this long.
const EVICTION_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// At most one error about failed commits is logged per this long: on a full disk every
/// batch fails, and a line per batch would fill what is left of it.
const COMMIT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the writer is asked to do.
pub(super) enum Request {
    /// Apply a command and answer.
    Command {
        command: Box<Command>,
        reply: oneshot::Sender<Reply>,
    },
    /// Forget recorded idempotent answers created before this time (in this batch and the
    /// next ones until the sweeper sends another), and tombstones of packages deleted before it.
    Forget { before: Timestamp },
}

/// Starts the writer thread. It ends when every sender is gone and the queue is empty.
pub(super) fn spawn(
    current: Arc<ArcSwap<Snapshot>>,
    published: watch::Sender<u64>,
    mut queue: mpsc::Receiver<Request>,
    mut persistence: Box<dyn Persistence>,
    max_answers: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("floe-writer".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut carried = Carried::new(max_answers);
            while let Some(first) = queue.blocking_recv() {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                apply_batch(
                    &current,
                    &published,
                    persistence.as_mut(),
                    &mut carried,
                    batch.drain(..),
                );
            }
            tracing::debug!("store writer stopped");
        })
        .expect("the writer thread can be started")
}

/// What the writer carries from one batch to the next besides the snapshot.
struct Carried {
    /// How many recorded answers are kept at most.
    max_answers: usize,
    /// Answers created before this are forgotten. The sweeper's latest cutoff, not the
    /// highest: after the clock stepped back, a higher one would forget new answers early.
    expire_before: Timestamp,
    /// When evictions were last warned about, and how many since.
    evictions: LogBudget,
    /// When failed commits were last logged, and how many writes they refused since.
    commit_failures: LogBudget,
    /// How many writes failed commits refused since the last commit that succeeded.
    refused_since_commit: u64,
}

impl Carried {
    /// What the first batch starts from, keeping at most `max_answers` recorded answers.
    fn new(max_answers: usize) -> Self {
        Carried {
            max_answers,
            expire_before: Timestamp::MIN,
            evictions: LogBudget::new(EVICTION_WARNING_INTERVAL),
            commit_failures: LogBudget::new(COMMIT_FAILURE_LOG_INTERVAL),
            refused_since_commit: 0,
        }
    }
}

/// The state a batch works on: the newest snapshot's contents, changed in place.
struct Working {
    store_id: u64,
    configuration: Configuration,
    answers: Answers,
    max_answers: usize,
    /// How many answers this batch forgot before their time to stay within `max_answers`.
    evicted: u64,
    batch: Batch,
    now: Timestamp,
}

fn apply_batch(
    current: &ArcSwap<Snapshot>,
    published: &watch::Sender<u64>,
    persistence: &mut dyn Persistence,
    carried: &mut Carried,
    requests: impl Iterator<Item = Request>,
) {
    let base = current.load_full();
    let mut working = Working {
        store_id: base.store_id,
        configuration: base.configuration.clone(),
        answers: base.answers.clone(),
        max_answers: carried.max_answers,
        evicted: 0,
        batch: Batch {
            revision: base.revision,
            ..Batch::default()
        },
        now: now_millis(),
    };
    let mut waiting = Vec::new();

    for request in requests {
        match request {
            Request::Forget { before } => {
                carried.expire_before = before;
                working.forget_tombstones(before);
            }
            Request::Command { command, reply } => {
                // A retry can reach the writer while its first attempt is still queued (the
                // first client gave up waiting): the key is checked here, against the newest
                // state, so a command is never applied twice.
                if let Some(idempotency) = &command.idempotency
                    && let Some(recorded) = recorded_for_retry(
                        &working.answers,
                        &idempotency.key,
                        &idempotency.fingerprint,
                    )
                {
                    let answer = match recorded {
                        Ok(first) => Reply::Replayed(first),
                        Err(reused) => Reply::Done(Err(reused)),
                    };
                    waiting.push((reply, answer));
                    continue;
                }
                let Command {
                    precondition,
                    operation,
                    idempotency,
                } = *command;
                let result = working.decide(precondition, operation);
                let unrecorded = result
                    .as_ref()
                    .is_err_and(StoreError::is_precondition_failure);
                match idempotency {
                    Some(idempotency) if !unrecorded => {
                        let record = Arc::new(IdempotencyRecord {
                            fingerprint: idempotency.fingerprint,
                            created: working.now,
                            answer: (idempotency.record)(&result, &working.tag()),
                        });
                        working.remember(idempotency.key.into(), Arc::clone(&record));
                        waiting.push((reply, Reply::Recorded(record)));
                    }
                    _ => waiting.push((reply, Reply::Done(result))),
                }
            }
        }
    }

    working.forget_answers(carried.expire_before);
    working.drop_unkept_answers();
    if !working.batch.is_empty() {
        if let Err(reason) = persistence.commit(&working.batch) {
            // Nothing was published, so the in-memory state still equals the durable one.
            // Every answer of the batch, rejections included, was decided against a state that
            // will never exist: all of them are refused.
            let refused = waiting.len() as u64;
            carried.refused_since_commit += refused;
            if let Some(refused) = carried.commit_failures.admit(refused, Instant::now()) {
                tracing::error!(
                    %reason,
                    refused_writes = refused,
                    "commit failed; its writes were refused (at most one line every 10 s, counting the writes refused since the last)"
                );
            }
            for (reply, _) in waiting {
                let _ = reply.send(Reply::Done(Err(StoreError::Unavailable(reason.clone()))));
            }
            return;
        }
        let refused_writes = std::mem::take(&mut carried.refused_since_commit);
        if refused_writes > 0 {
            tracing::info!(refused_writes, "commits succeed again");
            carried.commit_failures = LogBudget::new(COMMIT_FAILURE_LOG_INTERVAL);
        }
        if working.evicted > 0 {
            working.warn_of_evictions(&mut carried.evictions, Instant::now());
        }
        let revision = working.batch.revision;
        // Each list the batch changed takes the batch's revision: no snapshot in between is
        // ever published, and every batch ends at a revision of its own.
        let lists = base
            .lists
            .after(working.store_id, revision, &working.batch.changes);
        let superseded = current.swap(Arc::new(Snapshot::new(
            working.store_id,
            revision,
            working.configuration,
            working.answers,
            lists,
        )));
        if revision != base.revision {
            published.send_replace(revision);
        }
        answer(waiting);
        // Freeing what only the superseded snapshot held (every path this batch copied) need
        // not delay the answers.
        drop((base, superseded));
    } else {
        answer(waiting);
    }
}

/// Sends every command of a batch its answer; a caller that gave up is not waited for.
fn answer(waiting: Vec<(oneshot::Sender<Reply>, Reply)>) {
    for (reply, answer) in waiting {
        let _ = reply.send(answer);
    }
}

impl Working {
    /// Checks a command's precondition against the working state and applies it.
    fn decide(
        &mut self,
        precondition: Precondition,
        operation: Operation,
    ) -> Result<Committed, StoreError> {
        if !precondition.configuration_matches.is_empty() {
            precondition.check_tag(&ConfigTag::new(self.store_id, self.batch.revision))?;
        }
        // Most writes carry no validator: they need not look their target up twice (the
        // operation itself looks it up again).
        let needs_current = precondition.require_validator || !precondition.validators.is_empty();
        let current = operation
            .target()
            .filter(|_| needs_current)
            .and_then(|target| self.configuration.version_of(target));
        if let Err(refusal) = precondition.judge(current.as_ref(), operation.is_create()) {
            if current.is_none() {
                // RFC 9110 §13.2.1: a failure the request meets anyway (a 404 for a missing
                // resource) takes precedence over its preconditions. Only a request that would
                // succeed, such as a create under `If-Match`, is answered 412. Tried on a copy:
                // the copy shares structure, and nothing of it is kept.
                self.configuration.clone().apply(operation, self.now)?;
            }
            return Err(refusal);
        }
        let (outcome, effects) = self.configuration.apply(operation, self.now)?;
        if !effects.is_empty() {
            self.batch.revision += 1;
            self.batch.changes.extend(effects);
        }
        Ok(Committed {
            outcome,
            tag: self.tag(),
            revision: self.batch.revision,
        })
    }

    /// The configuration tag of the state as the batch has changed it so far.
    fn tag(&self) -> ConfigTag {
        ConfigTag::new(self.store_id, self.batch.revision)
    }

    /// Forgets the tombstones of packages deleted before `before`.
    fn forget_tombstones(&mut self, before: Timestamp) {
        self.batch
            .forgotten_tombstones
            .extend(self.configuration.forget_package_tombstones(before));
    }

    /// Forgets answers created before `before`, oldest first, up to [`FORGET_PER_BATCH`].
    fn forget_answers(&mut self, before: Timestamp) {
        for _ in 0..FORGET_PER_BATCH {
            let Some(key) = self.answers.remove_oldest_before(before) else {
                break;
            };
            self.batch.forgotten.push(key);
        }
    }

    /// Records an answer under a key that has none, first forgetting the oldest answers if
    /// keeping them all would exceed the cap. The new answer is never the one forgotten, even
    /// when the clock stepped back and it is not the newest.
    ///
    /// One answer forgotten makes room for this one. Past the cap by more (it was lowered
    /// below what a running store keeps), the excess goes at most [`FORGET_PER_BATCH`] a batch,
    /// so that no single commit deletes a whole backlog while the writes behind it wait.
    fn remember(&mut self, key: Arc<str>, record: Arc<IdempotencyRecord>) {
        let mut made_room = false;
        while self.answers.len() >= self.max_answers {
            if made_room && self.batch.forgotten.len() >= FORGET_PER_BATCH {
                break;
            }
            let Some(oldest) = self.answers.remove_oldest() else {
                break;
            };
            self.batch.forgotten.push(oldest);
            self.evicted += 1;
            made_room = true;
        }
        self.answers.insert(Arc::clone(&key), Arc::clone(&record));
        self.batch.remembered.push((key, record));
    }

    /// Leaves out of the batch the answers it recorded and then forgot (evicted by later ones
    /// of the same batch, or expired under a clock that stepped back): on disk the batch's
    /// deletions come before its insertions, so writing them would keep on disk, and bring
    /// back at the next start, answers the running server no longer has.
    fn drop_unkept_answers(&mut self) {
        if self.batch.forgotten.is_empty() {
            return;
        }
        let answers = &self.answers;
        self.batch.remembered.retain(|(key, record)| {
            answers
                .get(key)
                .is_some_and(|kept| Arc::ptr_eq(kept, record))
        });
    }

    /// Counts the evictions of a committed batch in `warnings` and warns if a warning is due.
    /// An eviction shortens how long a retry is safe, so the operator should hear of it, but a
    /// server at its cap evicts on every keyed write.
    fn warn_of_evictions(&self, warnings: &mut LogBudget, now: Instant) {
        let Some(evicted) = warnings.admit(self.evicted, now) else {
            return;
        };
        // How long the oldest answer still kept has been kept: retries older than that are
        // no longer recognised.
        let retention_seconds = self
            .answers
            .oldest()
            .map_or(0, |created| self.now.saturating_sub(created).max(0) / 1000);
        tracing::warn!(
            evicted,
            retention_seconds,
            max_keys = self.max_answers,
            "Idempotency-Key answers were forgotten before --idempotency-ttl to stay within \
             --idempotency-max-keys: a retry older than retention_seconds is applied again; \
             raise --idempotency-max-keys or shorten --idempotency-ttl"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn record(created: Timestamp) -> Arc<IdempotencyRecord> {
        Arc::new(crate::store::answers::record(created))
    }

    fn working(max_answers: usize, now: Timestamp) -> Working {
        Working {
            store_id: 1,
            configuration: Configuration::default(),
            answers: Answers::default(),
            max_answers,
            evicted: 0,
            batch: Batch::default(),
            now,
        }
    }

    /// The keys of `keys` that `answers` holds, in the order given.
    fn held<'a>(answers: &Answers, keys: &[&'a str]) -> Vec<&'a str> {
        keys.iter()
            .copied()
            .filter(|key| answers.contains_key(*key))
            .collect()
    }

    fn names(keys: &[Arc<str>]) -> Vec<&str> {
        keys.iter().map(|key| &**key).collect()
    }

    #[test]
    fn past_the_cap_the_oldest_is_evicted_and_never_the_new_answer() {
        let mut working = working(3, 100);
        for (key, created) in [("b", 20), ("a", 10), ("c", 30)] {
            working.remember(key.into(), record(created));
        }
        assert_eq!(working.evicted, 0);
        working.remember("d".into(), record(40));
        assert_eq!(
            held(&working.answers, &["a", "b", "c", "d"]),
            ["b", "c", "d"]
        );
        // The clock stepped back: the new answer is the oldest, and is kept all the same.
        working.remember("e".into(), record(5));
        assert_eq!(
            held(&working.answers, &["b", "c", "d", "e"]),
            ["c", "d", "e"]
        );
        assert_eq!(working.evicted, 2);
        assert_eq!(names(&working.batch.forgotten), ["a", "b"]);
    }

    #[test]
    fn a_lowered_cap_is_reached_over_batches_with_a_bounded_number_of_evictions_each() {
        let kept = 3 * FORGET_PER_BATCH;
        let mut working = working(usize::MAX, 100);
        for created in 0..kept {
            let created = Timestamp::try_from(created).unwrap();
            working.remember(format!("k{created:05}").into(), record(created));
        }
        // Restarted with --idempotency-max-keys 10.
        working.max_answers = 10;
        let mut batches = 0;
        let mut created = Timestamp::try_from(kept).unwrap();
        while working.answers.len() > 10 {
            working.batch = Batch::default();
            for _ in 0..3 {
                working.remember(format!("n{created}").into(), record(created));
                created += 1;
            }
            assert!(
                working.batch.forgotten.len() <= FORGET_PER_BATCH + 2,
                "one batch forgot {}",
                working.batch.forgotten.len()
            );
            batches += 1;
            assert!(batches < 10, "the cap is never reached");
        }
        assert_eq!(working.answers.len(), 10);
        assert!(batches >= 3, "the backlog went in {batches} batches");
        // The newest answers are the ones kept.
        let newest = format!("n{}", created - 1);
        assert!(working.answers.contains_key(newest.as_str()));
    }

    #[test]
    fn a_batch_that_evicts_its_own_answers_leaves_on_disk_what_it_keeps() {
        let dir = tempfile::TempDir::new().unwrap();
        let (mut store, _) = SqliteStore::open(dir.path()).unwrap();
        let mut before = working(2, 100);
        before.remember("old".into(), record(1));
        before.remember("kept".into(), record(2));
        store.commit(&before.batch).unwrap();

        // One batch of four new answers under a cap of two: two of them go again at once.
        let mut working = working(2, 100);
        working.answers = before.answers;
        for (key, created) in [("n1", 10), ("n2", 11), ("n3", 12), ("n4", 13)] {
            working.remember(key.into(), record(created));
        }
        working.drop_unkept_answers();
        store.commit(&working.batch).unwrap();
        drop(store);

        let (_store, loaded) = SqliteStore::open(dir.path()).unwrap();
        let mut on_disk: Vec<String> = loaded.answers.into_iter().map(|(key, _)| key).collect();
        on_disk.sort();
        assert_eq!(on_disk, ["n3", "n4"]);
        assert_eq!(
            held(&working.answers, &["old", "kept", "n1", "n2", "n3", "n4"]),
            on_disk
        );
    }

    #[test]
    fn one_batch_forgets_a_bounded_number_of_expired_answers_oldest_first() {
        let mut working = working(usize::MAX, 100_000);
        let expired = FORGET_PER_BATCH + 10;
        for created in 0..expired {
            let created = Timestamp::try_from(created).unwrap();
            working.remember(format!("k{created:05}").into(), record(created));
        }
        working.remember("fresh".into(), record(90_000));
        working.batch = Batch::default();

        working.forget_answers(80_000);
        assert_eq!(working.batch.forgotten.len(), FORGET_PER_BATCH);
        assert_eq!(&*working.batch.forgotten[0], "k00000");
        let next = Timestamp::try_from(FORGET_PER_BATCH).unwrap();
        assert_eq!(working.answers.oldest(), Some(next));
        working.forget_answers(80_000);
        assert_eq!(working.batch.forgotten.len(), expired);
        assert_eq!(held(&working.answers, &["fresh"]), ["fresh"]);
        assert_eq!(working.answers.len(), 1);
    }

    #[test]
    fn an_expiry_backlog_is_worked_off_by_the_batches_that_follow() {
        let backlog = 2 * FORGET_PER_BATCH + 10;
        let answers: Answers = (0..backlog)
            .map(|n| Timestamp::try_from(n).unwrap())
            .chain([2_000_000])
            .map(|created| {
                (
                    format!("k{created:07}").into(),
                    Arc::new(crate::store::answers::record(created)),
                )
            })
            .collect();
        let snapshot = Snapshot::new(
            1,
            0,
            Configuration::default(),
            answers,
            super::super::ListVersions::all_at(1, 0),
        );
        let current = ArcSwap::from_pointee(snapshot);
        let (published, _) = watch::channel(0);
        let mut persistence = super::super::memory::MemoryStore;
        let mut carried = Carried::new(usize::MAX);
        // A write that is not about answers at all.
        let unrelated = || Request::Command {
            command: Box::new(Command {
                precondition: Precondition::default(),
                operation: Operation::ExpireLeases,
                idempotency: None,
            }),
            reply: oneshot::channel().0,
        };
        let mut batch = |request| {
            let requests = std::iter::once(request);
            apply_batch(
                &current,
                &published,
                &mut persistence,
                &mut carried,
                requests,
            );
            current.load().answers.len()
        };

        let forget = Request::Forget { before: 1_000_000 };
        assert_eq!(batch(forget), backlog + 1 - FORGET_PER_BATCH);
        assert_eq!(batch(unrelated()), backlog + 1 - 2 * FORGET_PER_BATCH);
        assert_eq!(
            batch(unrelated()),
            1,
            "only the answer within the TTL is left"
        );
        assert_eq!(batch(unrelated()), 1);
    }

    /// Persistence that fails every commit while `failing` is set, as a full disk does.
    struct Flaky {
        failing: bool,
    }

    impl Persistence for Flaky {
        fn commit(&mut self, _batch: &Batch) -> Result<(), String> {
            if self.failing {
                Err("No space left on device".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn failed_commits_are_counted_within_one_budget_until_a_commit_succeeds() {
        let current = ArcSwap::from_pointee(Snapshot::new(
            1,
            0,
            Configuration::default(),
            Answers::default(),
            super::super::ListVersions::all_at(1, 0),
        ));
        let (published, _) = watch::channel(0);
        let mut persistence = Flaky { failing: true };
        let mut carried = Carried::new(usize::MAX);
        let create = |persistence: &mut Flaky, carried: &mut Carried| {
            let (reply, mut answer) = oneshot::channel();
            let request = Request::Command {
                command: Box::new(Command {
                    precondition: Precondition::default(),
                    operation: Operation::CreateDataset {
                        dataset_id: uuid::Uuid::new_v4(),
                        primary: uuid::Uuid::new_v4(),
                        metadata: Default::default(),
                        maximum_size: None,
                    },
                    idempotency: None,
                }),
                reply,
            };
            apply_batch(
                &current,
                &published,
                persistence,
                carried,
                std::iter::once(request),
            );
            matches!(answer.try_recv(), Ok(Reply::Done(Ok(_))))
        };

        for _ in 0..5 {
            assert!(!create(&mut persistence, &mut carried), "refused");
        }
        assert_eq!(carried.refused_since_commit, 5);
        // The first failure took the budget's line; the four after it wait for the next.
        assert_eq!(carried.commit_failures.admit(0, Instant::now()), None);
        assert_eq!(current.load().revision, 0, "nothing was published");

        persistence.failing = false;
        assert!(create(&mut persistence, &mut carried));
        assert_eq!(carried.refused_since_commit, 0);
        assert_eq!(current.load().revision, 1);
        // After a recovery, the next failure is logged at once.
        persistence.failing = true;
        assert!(!create(&mut persistence, &mut carried));
        assert_eq!(carried.commit_failures.admit(0, Instant::now()), None);
        assert_eq!(carried.refused_since_commit, 1);
    }

    #[test]
    fn evictions_are_warned_about_once_a_minute_with_the_count_since_the_last_warning() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let mut warning = LogBudget::new(EVICTION_WARNING_INTERVAL);
        assert_eq!(
            warning.admit(0, at(0)),
            None,
            "nothing evicted, nothing said"
        );
        assert_eq!(
            warning.admit(3, at(0)),
            Some(3),
            "the first eviction is warned at once"
        );
        assert_eq!(warning.admit(1, at(1)), None);
        assert_eq!(warning.admit(2, at(59)), None);
        assert_eq!(
            warning.admit(1, at(60)),
            Some(4),
            "the next counts those left out"
        );
        assert_eq!(warning.admit(0, at(200)), None);
        assert_eq!(warning.admit(5, at(201)), Some(5));
    }
}
