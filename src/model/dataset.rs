//! A dataset's desired configuration: its id, the node that should hold its primary copy,
//! its metadata and optional maximum size, and whether it has been deleted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A dataset's identity. Always a UUID; rendered in lower-case hyphenated form.
pub type DatasetId = Uuid;

/// A node's identity, as chosen by its agent (Flocker requires version-4 UUIDs).
pub type NodeId = Uuid;

/// Free-form string metadata (Flocker clients keep the volume name under `name`).
///
/// Kept sorted by key, so that its serialised form, and hence the resource's ETag, does not
/// depend on the order keys were given. A sorted vector rather than a `BTreeMap`: there are at
/// most 16 small entries, and a `BTreeMap` allocates a node for eleven of them per dataset,
/// which dominates memory with 100,000 datasets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(Vec<(Box<str>, Box<str>)>);

impl Metadata {
    /// No metadata.
    pub fn new() -> Self {
        Metadata::default()
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<Box<str>>, value: impl Into<Box<str>>) {
        let key = key.into();
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(index) => self.0[index].1 = value.into(),
            Err(index) => self.0.insert(index, (key, value.into())),
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|index| &*self.0[index].1)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut metadata = Metadata::new();
        for (key, value) in entries {
            metadata.insert(key, value);
        }
        metadata
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Metadata::from_iter)
    }
}

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
    // 36 characters parse only in the hyphenated form; lower-case hex and hyphens make it the
    // canonical spelling, with no need to format the id again to compare.
    let canonical_characters = segment.len() == 36
        && segment
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
    canonical_characters
        .then(|| Uuid::try_parse(segment).ok())
        .flatten()
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
            metadata: [("name", "db")].into_iter().collect(),
            maximum_size: Some(67_108_864),
        }
    }

    #[test]
    fn content_tag_changes_with_content_and_only_with_content() {
        let a = sample();
        assert_eq!(content_tag(&a), content_tag(&sample()));
        assert_eq!(content_tag(&a).as_str().len(), 32);
        let mut b = sample();
        b.deleted = true;
        assert_ne!(content_tag(&a), content_tag(&b));
        let mut c = sample();
        c.metadata.insert("other", "x");
        assert_ne!(content_tag(&a), content_tag(&c));
    }

    #[test]
    fn metadata_is_sorted_whatever_the_order_given() {
        let a: Metadata = [("b", "2"), ("a", "1")].into_iter().collect();
        let mut b = Metadata::new();
        b.insert("a", "0");
        b.insert("b", "2");
        b.insert("a", "1");
        assert_eq!(a, b);
        assert_eq!(b.get("a"), Some("1"));
        assert_eq!(b.len(), 2);
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"a":"1","b":"2"}"#);
        let parsed: Metadata = serde_json::from_str(r#"{"b":"2","a":"1"}"#).unwrap();
        assert_eq!(parsed, a);
    }

    #[test]
    fn path_ids_must_be_canonical_lower_case() {
        let id = "0a4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f60";
        assert!(dataset_id_from_path(id).is_some());
        assert!(dataset_id_from_path(&id.to_uppercase()).is_none());
        assert!(dataset_id_from_path(&id.replace('-', "")).is_none());
        assert!(dataset_id_from_path("not-a-uuid").is_none());
        for other in [
            "0a4d3c1e3-c1a-4f4b-9a7e-1c2b3d4e5f60",
            "------------------------------------",
            "{0a4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f60}",
            "urn:uuid:0a4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f60",
            "0a4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f6g",
            "0A4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f60",
        ] {
            assert!(dataset_id_from_path(other).is_none(), "{other}");
        }
        assert_eq!(dataset_id_from_path(id), Some(Uuid::parse_str(id).unwrap()));
    }
}
