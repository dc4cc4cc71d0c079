//! Packages: created once per uuid and name, deleted (leaving a tombstone), and their metadata
//! set and removed path by path.

use std::sync::Arc;

use super::{Applied, Change, Configuration, Outcome, Rejection, Versioned};
use crate::model::Timestamp;
use crate::model::package::Package;
use uuid::Uuid;

impl Configuration {
    /// Creates a package; one that exists under its uuid is answered as it is.
    pub(super) fn create_package(&mut self, package: Package, now: Timestamp) -> Applied {
        package.check_nesting()?;
        if let Some(existing) = self.packages.get(&package.uuid) {
            return Ok((Outcome::Package(Arc::clone(existing)), Vec::new()));
        }
        if self.package_tombstones.contains_key(&package.uuid) {
            return Err(Rejection::PackageDeleted);
        }
        if self.package_names.contains_key(&package.name) {
            return Err(Rejection::PackageNameInUse);
        }
        Ok(self.put_package(Versioned::new(package, now, now)))
    }

    /// Deletes a package, leaving a tombstone so that a retry does not make it again.
    pub(super) fn delete_package(&mut self, uuid: Uuid, now: Timestamp) -> Applied {
        let removed = self
            .packages
            .remove(&uuid)
            .ok_or(Rejection::PackageNotFound)?;
        self.package_names.remove(&removed.value.name);
        self.package_tombstones.insert(uuid, now);
        let change = Change::RemovePackage {
            uuid,
            deleted_at: now,
        };
        Ok((Outcome::Package(removed), vec![change]))
    }

    /// Sets a value in a package's metadata.
    pub(super) fn set_package_metadata(
        &mut self,
        uuid: Uuid,
        path: Vec<String>,
        value: serde_json::Value,
        now: Timestamp,
    ) -> Applied {
        let current = self.existing_package(&uuid)?;
        let mut package = current.value.clone();
        if !package.set_metadata(&path, value)? {
            return Ok((Outcome::Package(current), Vec::new()));
        }
        Ok(self.put_package(current.changed(package, now)))
    }

    /// Removes a value from a package's metadata; an absent one changes nothing.
    pub(super) fn remove_package_metadata(
        &mut self,
        uuid: Uuid,
        path: Vec<String>,
        now: Timestamp,
    ) -> Applied {
        let current = self.existing_package(&uuid)?;
        let mut package = current.value.clone();
        if !package.remove_metadata(&path) {
            return Ok((Outcome::Package(current), Vec::new()));
        }
        Ok(self.put_package(current.changed(package, now)))
    }
}
