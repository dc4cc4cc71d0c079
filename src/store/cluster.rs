//! The live cluster state: agents' reports, held in memory only and forgotten when an agent
//! goes silent. Reads take a snapshot and never wait; reports are applied under a short lock
//! (no I/O happens under it). Every visible change raises the state version and wakes the
//! requests waiting for one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::{millis_before, now_millis};
use crate::model::cluster::{ClusterState, NodeReport};
use crate::model::{NodeId, Timestamp};

/// One published version of the cluster state.
#[derive(Debug)]
pub struct ClusterView {
    /// Rises by one with every visible change.
    pub version: u64,
    /// Names this version; never repeats, also across restarts (the state is not persisted,
    /// so each process draws a fresh random prefix).
    pub tag: String,
    /// The state.
    pub state: ClusterState,
}

/// A cheap, cloneable handle to the live cluster state.
#[derive(Clone)]
pub struct LiveCluster {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<ClusterView>,
    /// Serialises updates; a `std` mutex because nothing awaits while holding it.
    update: Mutex<()>,
    changes: watch::Sender<u64>,
    instance: u64,
    expiry: Duration,
}

impl LiveCluster {
    /// An empty cluster state whose nodes are forgotten after `expiry` of silence.
    pub fn new(expiry: Duration) -> Self {
        let instance = rand::random::<u64>();
        let (changes, _) = watch::channel(0);
        LiveCluster {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(ClusterView {
                    version: 0,
                    tag: tag(instance, 0),
                    state: ClusterState::default(),
                }),
                update: Mutex::new(()),
                changes,
                instance,
                expiry,
            }),
        }
    }

    /// The current state.
    pub fn view(&self) -> Arc<ClusterView> {
        self.inner.current.load_full()
    }

    /// How long a node may stay silent.
    pub fn expiry(&self) -> Duration {
        self.inner.expiry
    }

    /// Notified with the new version after every visible change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Records a node's full report.
    pub fn report(&self, node: NodeId, report: NodeReport) {
        self.update(|state| state.report(node, report, now_millis()));
    }

    /// Forgets a node at once (its agent is stopping).
    pub fn forget(&self, node: &NodeId) -> bool {
        self.update(|state| state.forget(node))
    }

    /// Forgets nodes silent for longer than the expiry. Returns the forgotten ones.
    pub fn expire(&self, now: Timestamp) -> Vec<NodeId> {
        let before = millis_before(now, self.inner.expiry);
        let stale = self
            .view()
            .state
            .oldest_report()
            .is_some_and(|oldest| oldest < before);
        if !stale {
            return Vec::new();
        }
        let mut expired = Vec::new();
        self.update(|state| {
            expired = state.expire(before);
            !expired.is_empty()
        });
        expired
    }

    /// Applies `change` to a copy of the state and publishes it; the version rises only when
    /// `change` says something visible changed, but the copy is kept either way (a refresh
    /// moves `last_seen`).
    fn update(&self, change: impl FnOnce(&mut ClusterState) -> bool) -> bool {
        let _guard = self
            .inner
            .update
            .lock()
            .expect("the update lock is never poisoned");
        let current = self.inner.current.load_full();
        let mut state = current.state.clone();
        let changed = change(&mut state);
        let version = current.version + u64::from(changed);
        self.inner.current.store(Arc::new(ClusterView {
            version,
            tag: tag(self.inner.instance, version),
            state,
        }));
        if changed {
            self.inner.changes.send_replace(version);
        }
        changed
    }

    /// Forgets silent nodes about once a second, until the returned task is aborted.
    pub fn spawn_expiry(&self) -> tokio::task::JoinHandle<()> {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(500));
            loop {
                ticker.tick().await;
                for node in cluster.expire(now_millis()) {
                    tracing::info!(%node, "node expired: its agent has been silent too long");
                }
            }
        })
    }
}

fn tag(instance: u64, version: u64) -> String {
    format!("s{instance:016x}{version:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> NodeReport {
        NodeReport {
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            era: uuid::Uuid::new_v4(),
            datasets: Vec::new(),
            nonmanifest_datasets: Vec::new(),
            containers: Vec::new(),
        }
    }

    #[test]
    fn a_node_is_forgotten_after_the_expiry_and_not_before() {
        let cluster = LiveCluster::new(Duration::from_secs(10));
        let node = uuid::Uuid::new_v4();
        cluster.report(node, report());
        let now = now_millis();
        assert!(cluster.expire(now + 9_000).is_empty());
        assert_eq!(cluster.expire(now + 60_000), [node]);
        assert!(cluster.view().state.oldest_report().is_none());
    }

    #[test]
    fn an_expiry_past_the_range_of_a_timestamp_never_expires() {
        // `--node-expiry` set huge, to mean "never": it must not wrap to a negative span,
        // which would forget every node at once.
        let cluster = LiveCluster::new(Duration::from_secs(u64::MAX));
        let node = uuid::Uuid::new_v4();
        cluster.report(node, report());
        assert!(cluster.expire(now_millis() + 1_000).is_empty());
        assert!(cluster.view().state.oldest_report().is_some());
    }
}
