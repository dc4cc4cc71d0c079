//! A map whose entries are also ordered by age, for what is kept only for a while: the oldest
//! entry is found, and each expired or evicted one removed, in O(log n), so forgetting costs
//! what is forgotten, not what is kept.
//!
//! Ages come from the wall clock, which may step back, so the order of insertion is not taken
//! for the order of age. Entries of the same millisecond go in key order.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use super::Timestamp;

/// A value that knows when it was made.
pub trait Dated {
    /// When this value was made; the index ages it from then.
    fn dated(&self) -> Timestamp;
}

/// A bare timestamp is its own date (an index that only remembers when each key came).
impl Dated for Timestamp {
    fn dated(&self) -> Timestamp {
        *self
    }
}

impl<T: Dated> Dated for Arc<T> {
    fn dated(&self) -> Timestamp {
        (**self).dated()
    }
}

/// Values by key and keys by age. Clones share structure, as snapshots do.
#[derive(Debug, Clone)]
pub struct AgeIndex<K: Hash + Eq + Ord + Clone, V: Dated + Clone> {
    by_key: imbl::HashMap<K, V>,
    by_age: imbl::OrdSet<(Timestamp, K)>,
}

impl<K: Hash + Eq + Ord + Clone, V: Dated + Clone> Default for AgeIndex<K, V> {
    fn default() -> Self {
        AgeIndex {
            by_key: imbl::HashMap::new(),
            by_age: imbl::OrdSet::new(),
        }
    }
}

impl<K: Hash + Eq + Ord + Clone, V: Dated + Clone> AgeIndex<K, V> {
    /// The value under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_key.get(key)
    }

    /// Whether there is a value under `key`.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_key.contains_key(key)
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The date of the oldest entry.
    pub fn oldest(&self) -> Option<Timestamp> {
        self.by_age.get_min().map(|(dated, _)| *dated)
    }

    /// Keeps `value` under `key`, in place of any earlier value, aged by its own date.
    pub fn insert(&mut self, key: K, value: V) {
        let dated = value.dated();
        if let Some(replaced) = self.by_key.insert(key.clone(), value) {
            self.by_age.remove(&(replaced.dated(), key.clone()));
        }
        self.by_age.insert((dated, key));
    }

    /// Forgets the oldest entry and hands back its key.
    pub fn remove_oldest(&mut self) -> Option<K> {
        let (_, key) = self.by_age.remove_min()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// Forgets the oldest entry if it is dated before `cutoff`, and hands back its key.
    pub fn remove_oldest_before(&mut self, cutoff: Timestamp) -> Option<K> {
        if self.oldest()? < cutoff {
            self.remove_oldest()
        } else {
            None
        }
    }
}

/// Equal when they hold the same values under the same keys (the ages follow from the values).
impl<K: Hash + Eq + Ord + Clone, V: Dated + Clone + PartialEq> PartialEq for AgeIndex<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.by_key == other.by_key
    }
}

impl<K: Hash + Eq + Ord + Clone, V: Dated + Clone + Eq> Eq for AgeIndex<K, V> {}

impl<K: Hash + Eq + Ord + Clone, V: Dated + Clone> FromIterator<(K, V)> for AgeIndex<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut index = AgeIndex::default();
        for (key, value) in entries {
            index.insert(key, value);
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index of when each key came, as the tombstones of deleted packages are kept.
    fn index(entries: &[(&'static str, Timestamp)]) -> AgeIndex<&'static str, Timestamp> {
        entries.iter().copied().collect()
    }

    fn expire(
        index: &mut AgeIndex<&'static str, Timestamp>,
        cutoff: Timestamp,
    ) -> Vec<&'static str> {
        std::iter::from_fn(|| index.remove_oldest_before(cutoff)).collect()
    }

    fn kept<'a>(index: &AgeIndex<&'static str, Timestamp>, keys: &[&'a str]) -> Vec<&'a str> {
        keys.iter()
            .copied()
            .filter(|key| index.contains_key(key))
            .collect()
    }

    #[test]
    fn expiry_takes_the_expired_oldest_first_and_stops_at_the_first_kept() {
        let mut index = index(&[("d", 40), ("b", 20), ("c", 30), ("a", 10), ("e", 50)]);
        assert_eq!(index.oldest(), Some(10));

        assert_eq!(expire(&mut index, 35), ["a", "b", "c"]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.oldest(), Some(40));
        assert_eq!(kept(&index, &["a", "b", "c", "d", "e"]), ["d", "e"]);
        // The cutoff is exclusive, as the sweeper's `created < cutoff` is.
        assert_eq!(expire(&mut index, 40), Vec::<&str>::new());
        assert_eq!(expire(&mut index, 1_000), ["d", "e"]);
        assert!(index.is_empty() && index.oldest().is_none());
    }

    #[test]
    fn a_clock_that_steps_back_neither_loses_nor_keeps_the_wrong_entries() {
        // Inserted in this order, the clock stepping back an hour between the second and the
        // third: insertion order is not age order.
        let hour = 3_600_000;
        let start = 10 * hour;
        let mut index = index(&[
            ("first", start),
            ("second", start + 1),
            ("after-the-step", start + 2 - hour),
            ("later", start + 3 - hour),
        ]);
        assert_eq!(index.oldest(), Some(start + 2 - hour));

        // Only the two inserted after the step are older than the cutoff.
        assert_eq!(expire(&mut index, start), ["after-the-step", "later"]);
        assert_eq!(
            kept(&index, &["first", "second", "after-the-step", "later"]),
            ["first", "second"]
        );
        assert_eq!(index.oldest(), Some(start));
    }

    #[test]
    fn entries_of_one_millisecond_go_in_key_order_and_none_is_lost() {
        let mut index = index(&[("k2", 5), ("k1", 5), ("k3", 5)]);
        assert_eq!(index.remove_oldest(), Some("k1"));
        assert_eq!(expire(&mut index, 6), ["k2", "k3"]);
        assert!(index.remove_oldest().is_none());
    }

    #[test]
    fn a_key_inserted_again_is_aged_by_its_new_value_only() {
        let mut index = index(&[("again", 10), ("other", 20)]);
        index.insert("again", 30);
        assert_eq!(index.len(), 2);
        assert_eq!(index.oldest(), Some(20));
        assert_eq!(expire(&mut index, 25), ["other"]);
        assert_eq!(index.get("again"), Some(&30));
        assert_eq!(expire(&mut index, 31), ["again"]);
        assert!(index.is_empty() && index.oldest().is_none());
    }
}
