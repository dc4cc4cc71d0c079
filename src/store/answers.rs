//! Recorded idempotent answers, found by key for a retry and by age for expiry and eviction
//! (see [`AgeIndex`]).

use std::sync::Arc;

use super::{IdempotencyRecord, StoreError};
use crate::model::Timestamp;
use crate::model::age_index::{AgeIndex, Dated};

/// Every recorded answer, by key and by age.
pub type Answers = AgeIndex<Arc<str>, Arc<IdempotencyRecord>>;

/// What a request under an idempotency key that has an answer recorded gets instead of
/// being applied: the first answer again when it is the same request (same fingerprint), and
/// [`StoreError::IdempotencyKeyReused`] when it is another. `None`: the key is new. The one
/// rule for the API's early look and the writer's, made against the newest state.
pub fn recorded_for_retry(
    answers: &Answers,
    key: &str,
    fingerprint: &str,
) -> Option<Result<Arc<IdempotencyRecord>, StoreError>> {
    let first = answers.get(key)?;
    Some(if first.fingerprint == fingerprint {
        Ok(Arc::clone(first))
    } else {
        Err(StoreError::IdempotencyKeyReused)
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_gets_the_first_answer_and_another_request_under_the_key_is_refused() {
        let mut answers = Answers::default();
        assert!(recorded_for_retry(&answers, "k", "request at 5").is_none());
        answers.insert("k".into(), Arc::new(record(5)));
        let first = recorded_for_retry(&answers, "k", "request at 5").expect("recorded");
        assert_eq!(first.expect("the same request").created, 5);
        assert!(matches!(
            recorded_for_retry(&answers, "k", "another request"),
            Some(Err(StoreError::IdempotencyKeyReused))
        ));
        assert!(recorded_for_retry(&answers, "other key", "request at 5").is_none());
    }
}
