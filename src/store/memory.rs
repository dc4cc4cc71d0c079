//! The throw-away backend: keeps nothing. Useful for experiments and tests.

use super::{Loaded, Persistence};
use crate::model::Change;

/// Persists nothing.
pub(crate) struct MemoryStore;

impl MemoryStore {
    /// An empty configuration under a fresh random store id, so tags of two runs never clash.
    pub(crate) fn fresh() -> Loaded {
        Loaded {
            store_id: rand::random(),
            revision: 0,
            datasets: Vec::new(),
            leases: Vec::new(),
        }
    }
}

impl Persistence for MemoryStore {
    fn commit(&mut self, _revision: u64, _changes: &[Change]) -> Result<(), String> {
        Ok(())
    }
}
