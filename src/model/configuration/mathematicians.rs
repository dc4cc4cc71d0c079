//! Mathematicians: created once per `unique`, and named with version ids that keep concurrent
//! edits as candidates.

use std::sync::Arc;

use super::{Applied, Configuration, NameChange, Outcome, Rejection, Versioned};
use crate::model::Timestamp;
use crate::model::mathematician::Mathematician;

impl Configuration {
    /// Creates a mathematician; one that exists is answered as it is.
    pub(super) fn create_mathematician(&mut self, change: NameChange, now: Timestamp) -> Applied {
        if let Some(existing) = self.mathematicians.get(&change.unique) {
            return Ok((Outcome::Mathematician(Arc::clone(existing)), Vec::new()));
        }
        let mut mathematician = Mathematician::new(change.unique);
        mathematician.set_name(
            &change.seen,
            change.first_name.as_deref(),
            change.last_name.as_deref(),
        );
        Ok(self.put_mathematician(Versioned::new(mathematician, now, now)))
    }

    /// Names a mathematician against the versions the client saw.
    pub(super) fn name_mathematician(&mut self, change: NameChange, now: Timestamp) -> Applied {
        let current = self
            .mathematicians
            .get(&change.unique)
            .ok_or(Rejection::MathematicianNotFound)?;
        let mut mathematician = current.value.clone();
        if !mathematician.set_name(
            &change.seen,
            change.first_name.as_deref(),
            change.last_name.as_deref(),
        ) {
            return Ok((Outcome::Mathematician(Arc::clone(current)), Vec::new()));
        }
        let record = current.changed(mathematician, now);
        Ok(self.put_mathematician(record))
    }
}
