//! Datasets: created, moved to another primary (never while a container uses them), and
//! deleted (kept, marked deleted).

use std::sync::Arc;

use super::{Applied, Configuration, Outcome, Rejection, Versioned, dataset_written};
use crate::model::{Dataset, DatasetId, Metadata, NodeId, Timestamp};

impl Configuration {
    /// Adds a dataset under an id not used before (deleted datasets keep theirs).
    pub(super) fn create_dataset(
        &mut self,
        dataset_id: DatasetId,
        primary: NodeId,
        metadata: Metadata,
        maximum_size: Option<std::num::NonZeroU64>,
        now: Timestamp,
    ) -> Applied {
        let dataset = Dataset {
            dataset_id,
            primary,
            deleted: false,
            metadata,
            maximum_size,
        };
        let record = Versioned::new(dataset, now, now);
        let Ok(place) = self.datasets.insert_new(Arc::clone(&record)) else {
            return Err(Rejection::DatasetIdInUse);
        };
        Ok(dataset_written(record, place, true))
    }

    /// Moves a dataset to another primary; the same primary, or none, changes nothing.
    pub(super) fn move_dataset(
        &mut self,
        dataset_id: Option<DatasetId>,
        primary: Option<NodeId>,
        now: Timestamp,
    ) -> Applied {
        let current = self.existing_dataset(dataset_id)?;
        if current.value.deleted {
            return Err(Rejection::DatasetDeleted);
        }
        match primary {
            Some(primary) if primary != current.value.primary => {
                if self.container_using(&current.value.dataset_id).is_some() {
                    return Err(Rejection::DatasetAttached);
                }
                let mut moved = current.value.clone();
                moved.primary = primary;
                Ok(self.put_dataset(current.changed(moved, now)))
            }
            _ => Ok((Outcome::Dataset(current), Vec::new())),
        }
    }

    /// Marks a dataset deleted; deleting it again changes nothing.
    pub(super) fn delete_dataset(
        &mut self,
        dataset_id: Option<DatasetId>,
        now: Timestamp,
    ) -> Applied {
        let current = self.existing_dataset(dataset_id)?;
        if current.value.deleted {
            return Ok((Outcome::Dataset(current), Vec::new()));
        }
        let mut deleted = current.value.clone();
        deleted.deleted = true;
        Ok(self.put_dataset(current.changed(deleted, now)))
    }
}
