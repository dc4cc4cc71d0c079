//! The single writer: group commit of queued commands.
//!
//! One OS thread owns mutation (and the database connection, which is synchronous). It takes
//! every request that is waiting, checks and applies each command in order against the newest
//! state, persists the batch in one transaction, publishes, and then answers every command of
//! the batch. Rejected commands change nothing, but they are answered with the batch too: a
//! rejection may be caused by an earlier command of the same batch (a 412 because it moved the
//! tag, a 409 because it created the id), and a client told so must be able to see that cause
//! as soon as it has the answer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Batch, Command, Committed, IdempotencyRecord, MAX_BATCH, Persistence, Precondition, Reply,
    Snapshot, StoreError, now_millis, snapshot::ConfigTag,
};
use crate::model::precondition::Verdict;
use crate::model::{Configuration, Operation, Timestamp};

/// What the writer is asked to do.
pub(super) enum Request {
    /// Apply a command and answer.
    Command {
        command: Box<Command>,
        reply: oneshot::Sender<Reply>,
    },
    /// Forget recorded idempotent answers, and tombstones of deleted packages, made before
    /// this time.
    Forget { before: Timestamp },
}

/// Starts the writer thread. It ends when every sender is gone and the queue is empty.
pub(super) fn spawn(
    current: Arc<ArcSwap<Snapshot>>,
    published: watch::Sender<u64>,
    mut queue: mpsc::Receiver<Request>,
    mut persistence: Box<dyn Persistence>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("floe-writer".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = queue.blocking_recv() {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                apply_batch(&current, &published, persistence.as_mut(), batch.drain(..));
            }
            tracing::debug!("store writer stopped");
        })
        .expect("the writer thread can be started")
}

/// The state a batch works on: the newest snapshot's contents, changed in place.
struct Working {
    store_id: u64,
    configuration: Configuration,
    answers: imbl::HashMap<String, Arc<IdempotencyRecord>>,
    batch: Batch,
    now: Timestamp,
}

fn apply_batch(
    current: &ArcSwap<Snapshot>,
    published: &watch::Sender<u64>,
    persistence: &mut dyn Persistence,
    requests: impl Iterator<Item = Request>,
) {
    let base = current.load_full();
    let mut working = Working {
        store_id: base.store_id,
        configuration: base.configuration.clone(),
        answers: base.answers.clone(),
        batch: Batch {
            revision: base.revision,
            ..Batch::default()
        },
        now: now_millis(),
    };
    let mut waiting = Vec::new();

    for request in requests {
        match request {
            Request::Forget { before } => working.forget(before),
            Request::Command { command, reply } => {
                // A retry can reach the writer while its first attempt is still queued (the
                // first client gave up waiting): the key is checked here, against the newest
                // state, so a command is never applied twice.
                if let Some(idempotency) = &command.idempotency
                    && let Some(existing) = working.answers.get(&idempotency.key)
                {
                    let answer = if existing.fingerprint == idempotency.fingerprint {
                        Reply::Replayed(Arc::clone(existing))
                    } else {
                        Reply::Done(Err(StoreError::IdempotencyKeyReused))
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
                            answer: (idempotency.record)(&result),
                        });
                        working
                            .answers
                            .insert(idempotency.key.clone(), Arc::clone(&record));
                        working
                            .batch
                            .remembered
                            .push((idempotency.key, Arc::clone(&record)));
                        waiting.push((reply, Reply::Recorded(record)));
                    }
                    _ => waiting.push((reply, Reply::Done(result))),
                }
            }
        }
    }

    if !working.batch.is_empty() {
        if let Err(reason) = persistence.commit(&working.batch) {
            // Nothing was published, so the in-memory state still equals the durable one.
            // Every answer of the batch, rejections included, was decided against a state that
            // will never exist: all of them are refused.
            tracing::error!(%reason, commands = waiting.len(), "commit failed; batch refused");
            for (reply, _) in waiting {
                let _ = reply.send(Reply::Done(Err(StoreError::Unavailable(reason.clone()))));
            }
            return;
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
        let has_validator = precondition.validators.guard_existing()
            || !precondition.configuration_matches.is_empty();
        // A create finding its target there edits nothing: a retry by a client-held id is
        // answered as its first attempt was, a duplicate gets its 409. Demanding If-Match there
        // would turn either into a 428 that no validator can get past.
        if precondition.require_validator
            && current.is_some()
            && !has_validator
            && !operation.is_create()
        {
            return Err(StoreError::PreconditionRequired);
        }
        let verdict = precondition
            .validators
            .evaluate(current.as_ref().map(|v| v.as_version()), false);
        if verdict != Verdict::Proceed {
            if current.is_none() {
                // RFC 9110 §13.2.1: a failure the request meets anyway (a 404 for a missing
                // resource) takes precedence over its preconditions. Only a request that would
                // succeed, such as a create under `If-Match`, is answered 412. Tried on a copy:
                // the copy shares structure, and nothing of it is kept.
                self.configuration.clone().apply(operation, self.now)?;
            }
            return Err(StoreError::ResourceChanged {
                current_etag: current.map(|version| version.etag.to_string()),
            });
        }
        let (outcome, effects) = self.configuration.apply(operation, self.now)?;
        if !effects.is_empty() {
            self.batch.revision += 1;
            self.batch.changes.extend(effects);
        }
        Ok(Committed {
            outcome,
            tag: ConfigTag::new(self.store_id, self.batch.revision),
            revision: self.batch.revision,
        })
    }

    fn forget(&mut self, before: Timestamp) {
        self.batch
            .forgotten_tombstones
            .extend(self.configuration.forget_package_tombstones(before));
        let expired: Vec<String> = self
            .answers
            .iter()
            .filter(|(_, record)| record.created < before)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.answers.remove(&key);
            self.batch.forgotten.push(key);
        }
    }
}
