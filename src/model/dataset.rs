//! A dataset's desired configuration: its id, the node that should hold its primary copy,
//! its metadata and optional maximum size, and whether it has been deleted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A dataset's identity. Always a UUID; rendered in lower-case hyphenated form.
pub type DatasetId = Uuid;

/// A node's identity, as chosen by its agent (Flocker requires version-4 UUIDs).
pub type NodeId = Uuid;

/// Why a UUID cannot name a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The node UUID must be a version-4 UUID, not {0:?}.")]
pub struct InvalidNodeId(pub String);

/// `uuid` as a node's identity, if it is a version-4 UUID. Flocker's Python client reads every
/// node UUID as version 4 (`UUID(hex=…, version=4)` forces the version bits), so a node of any
/// other version would be listed under a UUID that is not its own. The control service and
/// `floe ca node` both check with this, so that no certificate names a node whose reports
/// would be refused.
pub fn node_id(uuid: Uuid) -> Result<NodeId, InvalidNodeId> {
    if uuid.get_version_num() == 4 {
        Ok(uuid)
    } else {
        Err(InvalidNodeId(uuid.to_string()))
    }
}

/// `text` as a node's identity: a UUID, of version 4 (see [`node_id`]). The error quotes
/// `text` as given.
pub fn parse_node_id(text: &str) -> Result<NodeId, InvalidNodeId> {
    Uuid::try_parse(text)
        .ok()
        .and_then(|uuid| node_id(uuid).ok())
        .ok_or_else(|| InvalidNodeId(text.to_string()))
}

/// Free-form string metadata (Flocker clients keep the volume name under `name`).
///
/// Kept sorted by key, so that its serialised form, and hence the resource's ETag, does not
/// depend on the order keys were given. Every dataset keeps one for as long as it lives, so it
/// is one block of text: each key and then its value, written as its length in bytes, a `:`
/// and the text. The usual two entries take one allocation of about 40 bytes, where a vector
/// of boxed strings took five (about 170 bytes) and a `BTreeMap` a node with room for eleven.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata(Box<str>);

impl Metadata {
    /// No metadata.
    pub fn new() -> Self {
        Metadata::default()
    }

    /// Entries already sorted by key and without repeats, in one block of exactly their size.
    fn encode<'a>(entries: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Self {
        let digits = |length: usize| length.checked_ilog10().map_or(1, |log| log as usize + 1);
        let size = entries
            .clone()
            .flat_map(|(key, value)| [key, value])
            .map(|text| digits(text.len()) + 1 + text.len())
            .sum();
        let mut block = String::with_capacity(size);
        for text in entries.flat_map(|(key, value)| [key, value]) {
            write!(block, "{}:{text}", text.len()).expect("writing to a String cannot fail");
        }
        debug_assert_eq!(block.len(), size);
        Metadata(block.into_boxed_str())
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<Box<str>>, value: impl Into<Box<str>>) {
        let (key, value) = (key.into(), value.into());
        let mut entries: Vec<(&str, &str)> = self.iter().collect();
        match entries.binary_search_by(|(k, _)| (*k).cmp(&key)) {
            Ok(index) => entries[index].1 = &value,
            Err(index) => entries.insert(index, (&key, &value)),
        }
        *self = Metadata::encode(entries.into_iter());
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, value)| value)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest: &str = &self.0;
        let mut next_text = move || {
            let (length, after) = rest.split_once(':')?;
            let length = length.parse().expect("the block was written with lengths");
            let (text, after) = after.split_at(length);
            rest = after;
            Some(text)
        };
        std::iter::from_fn(move || Some((next_text()?, next_text()?)))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        // A later value for a key replaces an earlier one, as with `insert`.
        let sorted: BTreeMap<Box<str>, Box<str>> = entries
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect();
        Metadata::encode(sorted.iter().map(|(key, value)| (&**key, &**value)))
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sorted = BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(Metadata::encode(
            sorted.iter().map(|(key, value)| (&**key, &**value)),
        ))
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
    /// Maximum size in bytes, if one was asked for (never 0: Flocker's minimum is 64 MiB).
    /// Non-zero, so that the option costs no tag byte: see
    /// `a_dataset_record_fits_a_160_byte_block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<NonZeroU64>,
}

/// Flocker's representation is the content alone: the same content is the same dataset.
impl super::Tagged for Dataset {
    const SHOWS_TIMES: bool = false;
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

    #[test]
    fn node_ids_are_version_4_uuids() {
        let v4 = "cf0f0346-17b2-4812-beca-1434997d6c3f";
        assert_eq!(parse_node_id(v4), Ok(v4.parse().unwrap()));
        for text in [
            "00000000-0000-1000-8000-000000000000",
            "a8098c1a-f86e-11da-bd1a-00112444be1e",
            "00000000-0000-0000-0000-000000000000",
            "not-a-uuid",
            &v4[..35],
        ] {
            assert_eq!(
                parse_node_id(text),
                Err(InvalidNodeId(text.to_string())),
                "{text}"
            );
        }
        let v1: Uuid = "a8098c1a-f86e-11da-bd1a-00112444be1e".parse().unwrap();
        assert_eq!(
            node_id(v1).unwrap_err().to_string(),
            r#"The node UUID must be a version-4 UUID, not "a8098c1a-f86e-11da-bd1a-00112444be1e"."#
        );
    }

    fn sample() -> Dataset {
        Dataset {
            dataset_id: Uuid::parse_str("0a4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f60").unwrap(),
            primary: Uuid::parse_str("cf0f0346-17b2-4812-beca-1434997d6c3f").unwrap(),
            deleted: false,
            metadata: [("name", "db")].into_iter().collect(),
            maximum_size: NonZeroU64::new(67_108_864),
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
    fn metadata_keeps_any_text_exactly() {
        // Digits, colons, empty values, multi-byte characters, JSON escapes: the block's
        // lengths and separators must not be confused by any of them.
        let entries = [
            ("10", "3:abc"),
            (":", ""),
            ("name", "postgres \"main\"\n"),
            ("z", "1:"),
            ("ünïcode ✓", "日本語"),
        ];
        let metadata: Metadata = entries.into_iter().rev().collect();
        assert_eq!(metadata.iter().collect::<Vec<_>>(), entries);
        assert_eq!(metadata.len(), entries.len());
        for (key, value) in entries {
            assert_eq!(metadata.get(key), Some(value), "{key}");
        }
        assert_eq!(metadata.get("1"), None);
        let json = serde_json::to_string(&metadata).unwrap();
        assert_eq!(serde_json::from_str::<Metadata>(&json).unwrap(), metadata);
        assert_eq!(
            format!("{metadata:?}"),
            format!("{:?}", entries.into_iter().collect::<BTreeMap<_, _>>())
        );
        assert!(Metadata::new().is_empty());
        assert_eq!(Metadata::new().iter().count(), 0);
    }

    #[test]
    fn a_dataset_record_fits_a_160_byte_block() {
        // A stored dataset is an `Arc` (two counts, then the record): 168 bytes would take
        // the allocator's 192-byte class, 32 bytes more for every dataset kept.
        let block = 2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<crate::model::Versioned<Dataset>>();
        assert!(block <= 160, "a dataset record takes {block} bytes");
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
