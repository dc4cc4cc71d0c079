//! The throw-away backend: keeps nothing. Useful for experiments and tests.

use super::{Batch, Loaded, Persistence};
use crate::model::Records;

/// Persists nothing.
pub(crate) struct MemoryStore;

impl MemoryStore {
    /// An empty configuration under a fresh random store id, so tags of two runs never clash.
    pub(crate) fn fresh() -> Loaded {
        Loaded {
            store_id: rand::random(),
            revision: 0,
            records: Records::default(),
            answers: Vec::new(),
        }
    }
}

impl Persistence for MemoryStore {
    fn commit(&mut self, _batch: &Batch) -> Result<(), String> {
        Ok(())
    }
}
