//! The single writer: group commit of queued commands.
//!
//! One OS thread owns mutation (and the database connection, which is synchronous). It takes
//! every command that is waiting, checks and applies each in order against the newest state,
//! persists the accepted ones in one transaction, publishes, and then answers every command of
//! the batch. Rejected commands change nothing, but they are answered with the batch too: a
//! rejection may be caused by an earlier command of the same batch (a 412 because it moved the
//! tag, a 409 because it created the id), and a client told so must be able to see that cause
//! as soon as it has the answer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use super::{
    Command, Committed, MAX_BATCH, Persistence, Snapshot, StoreError, now_millis,
    snapshot::ConfigTag,
};

/// A command and where to send its answer.
pub(super) struct Request {
    pub(super) command: Command,
    pub(super) reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// Starts the writer thread. It ends when every sender is gone and the queue is empty.
pub(super) fn spawn(
    current: Arc<ArcSwap<Snapshot>>,
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
                apply_batch(&current, persistence.as_mut(), batch.drain(..));
            }
            tracing::debug!("store writer stopped");
        })
        .expect("the writer thread can be started")
}

fn apply_batch(
    current: &ArcSwap<Snapshot>,
    persistence: &mut dyn Persistence,
    batch: impl Iterator<Item = Request>,
) {
    let base = current.load_full();
    let mut configuration = base.configuration.clone();
    let mut revision = base.revision;
    let mut changes = Vec::new();
    let mut answers = Vec::new();
    let now = now_millis();

    for Request { command, reply } in batch {
        let tag = ConfigTag::new(base.store_id, revision);
        let result = command.precondition.check(&tag).and_then(|()| {
            let (outcome, effects) = configuration.apply(command.operation, now)?;
            if !effects.is_empty() {
                revision += 1;
                changes.extend(effects);
            }
            Ok(Committed {
                outcome,
                tag: ConfigTag::new(base.store_id, revision),
                revision,
            })
        });
        answers.push((reply, result));
    }

    if !changes.is_empty() {
        if let Err(reason) = persistence.commit(revision, &changes) {
            // Nothing was published, so the in-memory state still equals the durable one.
            // Every answer of the batch, rejections included, was decided against a state that
            // will never exist: all of them are refused.
            tracing::error!(%reason, commands = answers.len(), "commit failed; batch refused");
            for (reply, _) in answers {
                let _ = reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
            return;
        }
        current.store(Arc::new(Snapshot::new(
            base.store_id,
            revision,
            configuration,
        )));
    }
    for (reply, result) in answers {
        let _ = reply.send(result);
    }
}
