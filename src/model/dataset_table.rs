//! The datasets of a configuration: their records in creation order, and an index from id to
//! place.
//!
//! One persistent map from id to record would be simpler, and it is what floe had. But dataset
//! ids are random, so each create landed in a leaf somewhere in the middle of that tree, and a
//! copy-on-write of a leaf of records touches the reference count of each of its records, cold
//! in cache. Here the records are keyed by their place: a create appends, so a batch of them
//! copies only the right edge of that tree, once. The index still takes random ids, but its
//! leaves hold plain numbers, which are copied without touching anything else.

use std::sync::Arc;

use imbl::OrdMap;

use super::configuration::Versioned;
use super::dataset::{Dataset, DatasetId};

/// A dataset as the configuration keeps it.
type Record = Arc<Versioned<Dataset>>;

/// Every dataset of a configuration, deleted ones included (datasets are never removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetTable {
    /// Every record, by its place: the order in which the datasets were created.
    records: OrdMap<u32, Record>,
    /// Each dataset's place in `records`.
    places: OrdMap<DatasetId, u32>,
}

impl DatasetTable {
    /// The record of the dataset with this id.
    pub fn get(&self, id: &DatasetId) -> Option<&Record> {
        self.records.get(self.places.get(id)?)
    }

    /// Adds a dataset whose id is new, after every other, and returns its place; gives the
    /// record back if the id is already taken.
    pub fn insert_new(&mut self, record: Record) -> Result<u32, Record> {
        let place = self.next_place();
        // One walk down the index instead of a lookup and then an insert: an id in use is
        // rare, and then its place is put back.
        if let Some(taken) = self.places.insert(record.value.dataset_id, place) {
            self.places.insert(record.value.dataset_id, taken);
            return Err(record);
        }
        self.records.insert(place, record);
        Ok(place)
    }

    /// Stores a record: in its dataset's place if the table holds the id, otherwise last.
    /// Returns the place, and whether the dataset was added. Replacing a record leaves the
    /// index as it is.
    pub fn put(&mut self, record: Record) -> (u32, bool) {
        let (place, added) = match self.places.get(&record.value.dataset_id) {
            Some(&place) => (place, false),
            None => {
                let place = self.next_place();
                self.places.insert(record.value.dataset_id, place);
                (place, true)
            }
        };
        self.records.insert(place, record);
        (place, added)
    }

    fn next_place(&self) -> u32 {
        u32::try_from(self.records.len()).expect("fewer than 2^32 datasets")
    }

    /// Every record, in creation order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Record> {
        self.records.values()
    }

    /// How many datasets there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Records in creation order, each [`put`](DatasetTable::put) in turn.
impl FromIterator<Record> for DatasetTable {
    fn from_iter<I: IntoIterator<Item = Record>>(records: I) -> Self {
        let mut table = DatasetTable::default();
        for record in records {
            table.put(record);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Metadata;

    fn record(id: u128, primary: u128) -> Record {
        let dataset = Dataset {
            dataset_id: uuid::Uuid::from_u128(id),
            primary: uuid::Uuid::from_u128(primary),
            deleted: false,
            metadata: Metadata::default(),
            maximum_size: None,
        };
        Versioned::new(dataset, 0, 0)
    }

    fn ids(table: &DatasetTable) -> Vec<u128> {
        table
            .iter()
            .map(|record| record.value.dataset_id.as_u128())
            .collect()
    }

    #[test]
    fn keeps_creation_order_and_finds_each_by_id() {
        let mut table = DatasetTable::default();
        for id in [30, 10, 20] {
            table.insert_new(record(id, 1)).unwrap();
        }
        assert_eq!(ids(&table), [30, 10, 20]);
        assert_eq!(table.insert_new(record(40, 1)), Ok(3));
        assert_eq!(table.len(), 4);
        for id in [10, 20, 30] {
            let found = table.get(&uuid::Uuid::from_u128(id)).unwrap();
            assert_eq!(found.value.dataset_id.as_u128(), id);
        }
        assert!(table.get(&uuid::Uuid::from_u128(50)).is_none());
    }

    #[test]
    fn a_taken_id_is_refused_and_changes_nothing() {
        let mut table = DatasetTable::default();
        table.insert_new(record(10, 1)).unwrap();
        table.insert_new(record(20, 1)).unwrap();
        let refused = table.insert_new(record(10, 2)).unwrap_err();
        assert_eq!(refused.value.primary.as_u128(), 2);
        assert_eq!(ids(&table), [10, 20]);
        let kept = table.get(&uuid::Uuid::from_u128(10)).unwrap();
        assert_eq!(kept.value.primary.as_u128(), 1);
        // The next new dataset still goes last.
        table.insert_new(record(5, 1)).unwrap();
        assert_eq!(ids(&table), [10, 20, 5]);
    }

    #[test]
    fn a_record_put_again_keeps_its_place_and_earlier_copies_are_untouched() {
        let mut table: DatasetTable = [record(10, 1), record(20, 1)].into_iter().collect();
        let before = table.clone();
        assert_eq!(table.put(record(10, 2)), (0, false));
        assert_eq!(ids(&table), [10, 20]);
        assert_eq!(
            table.get(&uuid::Uuid::from_u128(10)).unwrap().value.primary,
            uuid::Uuid::from_u128(2)
        );
        assert_eq!(
            before
                .get(&uuid::Uuid::from_u128(10))
                .unwrap()
                .value
                .primary,
            uuid::Uuid::from_u128(1)
        );
        assert_eq!(table.put(record(30, 1)), (2, true));
        assert_eq!(ids(&table), [10, 20, 30]);
    }

    #[test]
    fn collecting_a_repeated_id_keeps_the_first_place_and_the_last_record() {
        let table: DatasetTable = [record(10, 1), record(20, 1), record(10, 3)]
            .into_iter()
            .collect();
        assert_eq!(ids(&table), [10, 20]);
        assert_eq!(
            table.get(&uuid::Uuid::from_u128(10)).unwrap().value.primary,
            uuid::Uuid::from_u128(3)
        );
    }
}
