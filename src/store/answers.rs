//! Recorded idempotent answers, found by key for a retry and by age for expiry and eviction.
//!
//! The age index orders records by (creation time, key): the oldest is found, and each expired
//! or evicted record removed, in O(log n), so forgetting costs what is forgotten, not what is
//! kept. Creation times come from the wall clock, which may step back, so the order of
//! insertion is not taken for the order of age.

use std::sync::Arc;

use super::IdempotencyRecord;
use crate::model::Timestamp;

/// Every recorded answer, by key and by age. Clones share structure, as snapshots do.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    by_key: imbl::HashMap<Arc<str>, Arc<IdempotencyRecord>>,
    by_age: imbl::OrdSet<(Timestamp, Arc<str>)>,
}

impl Answers {
    /// The answer recorded under `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<IdempotencyRecord>> {
        self.by_key.get(key)
    }

    /// How many answers are recorded.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// When the oldest recorded answer was created.
    pub fn oldest(&self) -> Option<Timestamp> {
        self.by_age.get_min().map(|(created, _)| *created)
    }

    /// Records `record` under `key`, in place of any earlier answer for it.
    pub(super) fn insert(&mut self, key: Arc<str>, record: Arc<IdempotencyRecord>) {
        let created = record.created;
        if let Some(replaced) = self.by_key.insert(Arc::clone(&key), record) {
            self.by_age.remove(&(replaced.created, Arc::clone(&key)));
        }
        self.by_age.insert((created, key));
    }

    /// Forgets the oldest answer and hands back its key.
    pub(super) fn remove_oldest(&mut self) -> Option<Arc<str>> {
        let (_, key) = self.by_age.remove_min()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// Forgets the oldest answer if it was created before `cutoff`, and hands back its key.
    pub(super) fn remove_oldest_before(&mut self, cutoff: Timestamp) -> Option<Arc<str>> {
        if self.oldest()? < cutoff {
            self.remove_oldest()
        } else {
            None
        }
    }
}

impl FromIterator<(String, IdempotencyRecord)> for Answers {
    fn from_iter<I: IntoIterator<Item = (String, IdempotencyRecord)>>(records: I) -> Self {
        let mut answers = Answers::default();
        for (key, record) in records {
            answers.insert(key.into(), Arc::new(record));
        }
        answers
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

    fn answers(records: &[(&str, Timestamp)]) -> Answers {
        records
            .iter()
            .map(|(key, created)| (key.to_string(), record(*created)))
            .collect()
    }

    fn expire(answers: &mut Answers, cutoff: Timestamp) -> Vec<String> {
        std::iter::from_fn(|| answers.remove_oldest_before(cutoff))
            .map(|key| key.to_string())
            .collect()
    }

    fn kept(answers: &Answers, keys: &[&str]) -> Vec<String> {
        keys.iter()
            .filter(|key| answers.get(key).is_some())
            .map(|key| key.to_string())
            .collect()
    }

    #[test]
    fn expiry_takes_the_expired_oldest_first_and_stops_at_the_first_kept() {
        let mut answers = answers(&[("d", 40), ("b", 20), ("c", 30), ("a", 10), ("e", 50)]);
        assert_eq!(answers.oldest(), Some(10));

        assert_eq!(expire(&mut answers, 35), ["a", "b", "c"]);
        assert_eq!(answers.len(), 2);
        assert_eq!(answers.oldest(), Some(40));
        assert_eq!(kept(&answers, &["a", "b", "c", "d", "e"]), ["d", "e"]);
        // The cutoff is exclusive, as the sweeper's `created < cutoff` is.
        assert_eq!(expire(&mut answers, 40), Vec::<String>::new());
        assert_eq!(expire(&mut answers, 1_000), ["d", "e"]);
        assert!(answers.is_empty() && answers.oldest().is_none());
    }

    #[test]
    fn a_clock_that_steps_back_neither_loses_nor_keeps_the_wrong_records() {
        // Recorded in this order, the clock stepping back an hour between the second and the
        // third: insertion order is not age order.
        let hour = 3_600_000;
        let start = 10 * hour;
        let mut answers = answers(&[
            ("first", start),
            ("second", start + 1),
            ("after-the-step", start + 2 - hour),
            ("later", start + 3 - hour),
        ]);
        assert_eq!(answers.oldest(), Some(start + 2 - hour));

        // Only the two recorded after the step are older than the cutoff.
        assert_eq!(expire(&mut answers, start), ["after-the-step", "later"]);
        assert_eq!(
            kept(&answers, &["first", "second", "after-the-step", "later"]),
            ["first", "second"]
        );
        assert_eq!(answers.oldest(), Some(start));
    }

    #[test]
    fn records_of_one_millisecond_go_in_key_order_and_none_is_lost() {
        let mut answers = answers(&[("k2", 5), ("k1", 5), ("k3", 5)]);
        assert_eq!(answers.remove_oldest().as_deref(), Some("k1"));
        assert_eq!(expire(&mut answers, 6), ["k2", "k3"]);
        assert!(answers.remove_oldest().is_none());
    }

    #[test]
    fn a_key_recorded_again_is_aged_by_its_new_answer_only() {
        let mut answers = answers(&[("again", 10), ("other", 20)]);
        answers.insert("again".into(), Arc::new(record(30)));
        assert_eq!(answers.len(), 2);
        assert_eq!(answers.oldest(), Some(20));
        assert_eq!(expire(&mut answers, 25), ["other"]);
        assert_eq!(answers.get("again").map(|record| record.created), Some(30));
        assert_eq!(expire(&mut answers, 31), ["again"]);
        assert!(answers.is_empty() && answers.oldest().is_none());
    }
}
