//! Recorded idempotent answers, found by key for a retry and by age for expiry and eviction
//! (see [`AgeIndex`]).

use std::sync::Arc;

use super::IdempotencyRecord;
use crate::model::Timestamp;
use crate::model::age_index::{AgeIndex, Dated};

/// Every recorded answer, by key and by age.
pub type Answers = AgeIndex<Arc<str>, Arc<IdempotencyRecord>>;

impl Dated for IdempotencyRecord {
    fn dated(&self) -> Timestamp {
        self.created
    }
}

/// A record of an empty 201 created at `created`, for the store's tests.
#[cfg(test)]
pub(super) fn record(created: Timestamp) -> IdempotencyRecord {
    IdempotencyRecord {
        fingerprint: format!("request at {created}"),
        created,
        answer: super::RecordedAnswer {
            status: 201,
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}
