//! A dataset's desired configuration: its id, the node that should hold its primary copy,
//! its metadata and optional maximum size, and whether it has been deleted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A dataset's identity. Always a UUID; rendered in lower-case hyphenated form.
pub type DatasetId = Uuid;

/// A node's identity, as chosen by its agent (Flocker requires version-4 UUIDs).
pub type NodeId = Uuid;

/// Free-form string metadata. A `BTreeMap` so that its serialised form, and hence the
/// resource's ETag, does not depend on insertion order.
pub type Metadata = BTreeMap<String, String>;

/// One dataset as configured.
///
/// Deleted datasets are kept (Flocker never purges them: a fresh agent must not mistake an
/// absent record for "never existed"), so `deleted` is part of the record rather than a removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// The dataset's id.
    pub dataset_id: DatasetId,
    /// The node that should hold the primary copy.
    pub primary: NodeId,
    /// Whether the dataset has been deleted.
    pub deleted: bool,
    /// User metadata (Flocker clients keep the volume name in `metadata.name`).
    pub metadata: Metadata,
    /// Maximum size in bytes, if one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

/// Parses a dataset id as it appears in a URL path.
///
/// Flocker matches the path segment byte-for-byte against the stored lower-case id, so an
/// upper-case or otherwise non-canonical spelling names no dataset. `None` means "no such
/// dataset", not "bad request".
pub fn dataset_id_from_path(segment: &str) -> Option<DatasetId> {
    let id = Uuid::try_parse(segment).ok()?;
    (id.hyphenated().to_string() == segment).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::content_tag;

    fn sample() -> Dataset {
        Dataset {
            dataset_id: Uuid::parse_str("0a4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f60").unwrap(),
            primary: Uuid::parse_str("cf0f0346-17b2-4812-beca-1434997d6c3f").unwrap(),
            deleted: false,
            metadata: [("name".to_string(), "db".to_string())].into(),
            maximum_size: Some(67_108_864),
        }
    }

    #[test]
    fn content_tag_changes_with_content_and_only_with_content() {
        let a = sample();
        assert_eq!(content_tag(&a), content_tag(&sample()));
        assert_eq!(content_tag(&a).len(), 32);
        let mut b = sample();
        b.deleted = true;
        assert_ne!(content_tag(&a), content_tag(&b));
        let mut c = sample();
        c.metadata.insert("other".into(), "x".into());
        assert_ne!(content_tag(&a), content_tag(&c));
    }

    #[test]
    fn path_ids_must_be_canonical_lower_case() {
        let id = "0a4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f60";
        assert!(dataset_id_from_path(id).is_some());
        assert!(dataset_id_from_path(&id.to_uppercase()).is_none());
        assert!(dataset_id_from_path(&id.replace('-', "")).is_none());
        assert!(dataset_id_from_path("not-a-uuid").is_none());
    }
}
