//! Leases: a node's claim on a dataset, with an optional expiry, that agents honour by not
//! moving or deleting the dataset while another node holds it.

use serde::{Deserialize, Serialize};

use super::{DatasetId, NodeId};

/// Wall-clock time as milliseconds since the Unix epoch. The model never reads the clock:
/// callers pass `now` in, so every rule here is deterministic and testable.
pub type Timestamp = i64;

/// The longest lease duration accepted, in seconds (100 years). Longer ones could not be
/// represented as an expiry time; the request schema rejects them before they get here.
pub const MAX_LEASE_SECONDS: f64 = 3_155_760_000.0;

/// A lease on a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The leased dataset. It need not exist: Flocker does not check.
    pub dataset_id: DatasetId,
    /// The node holding the lease.
    pub node_uuid: NodeId,
    /// When the lease ends, or `None` for a lease that never expires.
    pub expires_at: Option<Timestamp>,
}

impl Lease {
    /// Seconds left at `now`, as Flocker reports them (`null` for a lease that never ends; may be
    /// slightly negative just before the sweeper removes it).
    pub fn seconds_remaining(&self, now: Timestamp) -> Option<f64> {
        self.expires_at
            .map(|expires_at| (expires_at - now) as f64 / 1000.0)
    }

    /// The strong entity tag of the lease's content.
    pub fn content_tag(&self) -> super::ContentTag {
        super::content_tag(self)
    }

    /// Whether the lease has ended at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|expires_at| expires_at < now)
    }
}

/// The expiry time of a lease that lasts `seconds` from `now`.
pub fn expiry_after(now: Timestamp, seconds: Option<f64>) -> Option<Timestamp> {
    seconds.map(|seconds| {
        let seconds = seconds.clamp(-MAX_LEASE_SECONDS, MAX_LEASE_SECONDS);
        now + (seconds * 1000.0).round() as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn remaining_time_and_expiry() {
        let lease = Lease {
            dataset_id: Uuid::new_v4(),
            node_uuid: Uuid::new_v4(),
            expires_at: expiry_after(10_000, Some(15.0)),
        };
        assert_eq!(lease.seconds_remaining(13_000), Some(12.0));
        assert!(!lease.is_expired(25_000));
        assert!(lease.is_expired(25_001));
        let forever = Lease {
            expires_at: expiry_after(0, None),
            ..lease
        };
        assert_eq!(forever.seconds_remaining(1), None);
        assert!(!forever.is_expired(i64::MAX));
    }
}
