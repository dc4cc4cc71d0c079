//! Leases: acquired or renewed by the node that holds them, released, and expired.

use super::{Applied, Change, Configuration, Outcome, Rejection};
use crate::model::lease::expiry_after;
use crate::model::{DatasetId, Lease, NodeId, Timestamp};

impl Configuration {
    /// Acquires a lease for `node_uuid`, or renews the one it holds; another node's is refused.
    pub(super) fn acquire_lease(
        &mut self,
        dataset_id: DatasetId,
        node_uuid: NodeId,
        expires: Option<f64>,
        now: Timestamp,
    ) -> Applied {
        let existing = self.leases.get(&dataset_id);
        if existing.is_some_and(|lease| lease.node_uuid != node_uuid) {
            return Err(Rejection::LeaseHeld);
        }
        let lease = Lease {
            dataset_id,
            node_uuid,
            expires_at: expiry_after(now, expires),
        };
        let created = existing.is_none();
        let changes = if existing == Some(&lease) {
            Vec::new()
        } else {
            self.leases.insert(dataset_id, lease.clone());
            vec![Change::PutLease(lease.clone())]
        };
        Ok((Outcome::Lease { lease, created }, changes))
    }

    /// Releases a lease.
    pub(super) fn release_lease(&mut self, dataset_id: DatasetId) -> Applied {
        let lease = self
            .leases
            .remove(&dataset_id)
            .ok_or(Rejection::LeaseNotFound)?;
        Ok((
            Outcome::Lease {
                lease,
                created: false,
            },
            vec![Change::RemoveLease(dataset_id)],
        ))
    }

    /// Removes every lease expired at `now`.
    pub(super) fn expire_leases(&mut self, now: Timestamp) -> Applied {
        let expired: Vec<DatasetId> = self
            .leases
            .values()
            .filter(|lease| lease.is_expired(now))
            .map(|lease| lease.dataset_id)
            .collect();
        for id in &expired {
            self.leases.remove(id);
        }
        Ok((
            Outcome::Expired(expired.len()),
            expired.into_iter().map(Change::RemoveLease).collect(),
        ))
    }
}
