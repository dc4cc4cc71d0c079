//! The published, immutable view of the configuration and its version.

use std::fmt;

use bytes::Bytes;

use super::Answers;
use crate::model::{Change, Collection, Configuration};

/// The configuration tag: names one configuration of one store, and never another.
///
/// Derived from the store's random id and the revision, so it costs nothing to compute and
/// cannot repeat: the revision only rises, it is persisted in the same transaction as the
/// change that raised it, and a new store gets a new id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigTag(Bytes);

impl ConfigTag {
    /// The tag for `revision` of the store with id `store_id`.
    pub fn new(store_id: u64, revision: u64) -> Self {
        // Every write's answer carries one: hex into a fixed buffer, not through the formatter.
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&store_id.to_be_bytes());
        raw[8..].copy_from_slice(&revision.to_be_bytes());
        let mut text = [0u8; 32];
        hex::encode_to_slice(raw, &mut text).expect("16 bytes are 32 hex digits");
        ConfigTag(Bytes::copy_from_slice(&text))
    }

    /// The tag as it goes on the wire.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("tags are hex")
    }

    /// The tag's bytes, shared (cheap to clone into a header).
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl fmt::Display for ConfigTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published version of the configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Rises by one for every effective change; unchanged by no-op writes.
    pub revision: u64,
    /// The configuration tag of this version.
    pub tag: ConfigTag,
    /// The configuration itself.
    pub configuration: Configuration,
    /// Recorded answers by idempotency key. Not part of the configuration: recording or
    /// forgetting one does not change the revision.
    pub answers: Answers,
    /// The version of each kind's list.
    pub lists: ListVersions,
    pub(super) store_id: u64,
}

impl Snapshot {
    pub(super) fn new(
        store_id: u64,
        revision: u64,
        configuration: Configuration,
        answers: Answers,
        lists: ListVersions,
    ) -> Self {
        Snapshot {
            revision,
            tag: ConfigTag::new(store_id, revision),
            configuration,
            answers,
            lists,
            store_id,
        }
    }
}

/// For each kind of resource, the revision that last changed it and that revision's tag:
/// the version of its list. A write to one kind leaves the other lists' ETags alone, and
/// with them the requests waiting for those lists to change.
#[derive(Debug, Clone)]
pub struct ListVersions {
    revisions: [u64; Collection::COUNT],
    tags: [ConfigTag; Collection::COUNT],
}

impl ListVersions {
    /// Every list at `revision` (what is known at start: not when each last changed).
    pub(super) fn all_at(store_id: u64, revision: u64) -> Self {
        ListVersions {
            revisions: [revision; Collection::COUNT],
            tags: std::array::from_fn(|_| ConfigTag::new(store_id, revision)),
        }
    }

    /// The versions once `changes` are made at `revision`.
    pub(super) fn after<'a>(
        &self,
        store_id: u64,
        revision: u64,
        changes: impl IntoIterator<Item = &'a Change>,
    ) -> Self {
        let mut next = self.clone();
        for change in changes {
            let index = change.collection().index();
            if next.revisions[index] != revision {
                next.revisions[index] = revision;
                next.tags[index] = ConfigTag::new(store_id, revision);
            }
        }
        next
    }

    /// The revision that last changed `collection`.
    pub fn revision(&self, collection: Collection) -> u64 {
        self.revisions[collection.index()]
    }

    /// The tag of that revision: the list's ETag.
    pub fn tag(&self, collection: Collection) -> &ConfigTag {
        &self.tags[collection.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_moves_only_the_lists_it_changed() {
        let start = ListVersions::all_at(7, 10);
        let changes = [
            Change::RemoveLease(uuid::Uuid::nil()),
            Change::RemoveContainer("web".into()),
            Change::RemoveLease(uuid::Uuid::max()),
        ];
        let next = start.after(7, 12, &changes);
        for (collection, revision) in [
            (Collection::Datasets, 10),
            (Collection::Leases, 12),
            (Collection::Mathematicians, 10),
            (Collection::Containers, 12),
            (Collection::Packages, 10),
        ] {
            assert_eq!(next.revision(collection), revision, "{collection:?}");
            assert_eq!(next.tag(collection), &ConfigTag::new(7, revision));
        }
        // Nothing changed, nothing moves.
        let same = next.after(7, 13, []);
        assert_eq!(same.revision(Collection::Leases), 12);
    }

    #[test]
    fn tags_differ_across_stores_and_revisions() {
        assert_ne!(ConfigTag::new(1, 2), ConfigTag::new(1, 3));
        assert_ne!(ConfigTag::new(1, 2), ConfigTag::new(2, 2));
        assert_eq!(ConfigTag::new(1, 2).as_str().len(), 32);
    }

    #[test]
    fn tags_are_the_store_id_then_the_revision_in_fixed_width_hex() {
        let cases = [
            (0, 0),
            (1, 2),
            (0x1ec1_b5c9_5919_6f70, 0xff),
            (u64::MAX, u64::MAX),
        ];
        for (store_id, revision) in cases {
            assert_eq!(
                ConfigTag::new(store_id, revision).as_str(),
                format!("{store_id:016x}{revision:016x}")
            );
        }
    }
}
