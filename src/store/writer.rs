//! The single writer: group commit of queued commands.
//!
//! One OS thread owns mutation (and the database connection, which is synchronous). It takes
//! every command that is waiting, checks and applies each in order against the newest state,
//! persists the accepted ones in one transaction, publishes, and then answers. Rejected
//! commands are answered at once; they change nothing.

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
    let mut accepted = Vec::new();
    let now = now_millis();

    for Request { command, reply } in batch {
        let tag = ConfigTag::new(base.store_id, revision);
        if let Err(error) = command.precondition.check(&tag) {
            let _ = reply.send(Err(error));
            continue;
        }
        match configuration.apply(command.operation, now) {
            Err(rejection) => {
                let _ = reply.send(Err(rejection.into()));
            }
            Ok((outcome, effects)) => {
                if !effects.is_empty() {
                    revision += 1;
                    changes.extend(effects);
                }
                let answer = Committed {
                    outcome,
                    tag: ConfigTag::new(base.store_id, revision),
                    revision,
                };
                accepted.push((reply, answer));
            }
        }
    }

    if !changes.is_empty() {
        if let Err(reason) = persistence.commit(revision, &changes) {
            // Nothing was published, so the in-memory state still equals the durable one.
            tracing::error!(%reason, commands = accepted.len(), "commit failed; batch refused");
            for (reply, _) in accepted {
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
    for (reply, answer) in accepted {
        let _ = reply.send(Ok(answer));
    }
}
