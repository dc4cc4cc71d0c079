//! The pure domain: datasets, leases, the configuration that holds them, and the rules for
//! changing it. Nothing here knows about HTTP, files or async; the store drives it and the API
//! renders it.

pub mod age_index;
pub mod cluster;
pub mod configuration;
pub mod container;
pub mod dataset;
pub mod dataset_table;
pub mod flocker_file;
pub mod lease;
pub mod mathematician;
pub mod package;
pub mod permission;
pub mod precondition;
pub mod schema;

pub use configuration::{
    Change, Collection, Configuration, Import, ImportCounts, NameChange, Operation, Outcome,
    OwnedVersion, Records, Rejection, Target, Versioned,
};
pub use dataset::{Dataset, DatasetId, Metadata, NodeId};
pub use lease::{Lease, Timestamp};

/// A strong entity tag for `value`'s exact content: the SHA-256 of its canonical JSON form,
/// truncated to 128 bits and hex-encoded. Canonical because struct fields serialise in a fixed
/// order and maps are sorted (`BTreeMap`).
pub fn content_tag<T: serde::Serialize>(value: &T) -> ContentTag {
    tag_of_canonical(&canonical_json(value))
}

/// `value`'s canonical JSON form.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("model values always serialise")
}

/// The content tag of a canonical JSON form.
pub fn tag_of_canonical(canonical: &[u8]) -> ContentTag {
    ContentTag(bytes::Bytes::copy_from_slice(&quoted_tag(canonical, None)))
}

/// A kind of resource kept as a [`configuration::Versioned`] record: what its entity tag covers.
pub trait Tagged: serde::Serialize {
    /// Whether the representation shows when the record was created and last changed (the
    /// `_created` and `_updated` meta fields of the packages and mathematicians APIs). A strong
    /// tag must change whenever the representation does (RFC 9110 §8.8.1), so for these kinds
    /// the tag covers both times as well as the content: a package deleted and made again
    /// under its id, or whose metadata is changed and changed back, is then not taken for the
    /// one a client read (no 304 for it, no `If-Match` that succeeds on it).
    const SHOWS_TIMES: bool;
}

/// `value`'s canonical JSON form and its tag, both slices of one allocation. The tag covers
/// the content and, when given, the record's creation and last change times (see [`Tagged`]).
///
/// A record keeps both for as long as it lives, so their size is most of what a dataset
/// costs: one exact-size buffer instead of the serialiser's doubled `Vec` and a second block
/// for the tag saves about a hundred bytes per record.
pub fn canonical_and_tag<T: serde::Serialize>(
    value: &T,
    times: Option<(Timestamp, Timestamp)>,
) -> (bytes::Bytes, ContentTag) {
    let mut rendered = Vec::with_capacity(256);
    serde_json::to_writer(&mut rendered, value).expect("model values always serialise");
    let quoted = quoted_tag(&rendered, times);
    let mut stored = Vec::with_capacity(rendered.len() + quoted.len());
    stored.extend_from_slice(&rendered);
    stored.extend_from_slice(&quoted);
    let stored = bytes::Bytes::from(stored);
    (
        stored.slice(..rendered.len()),
        ContentTag(stored.slice(rendered.len()..)),
    )
}

/// The tag, in quotes, of a canonical form (followed by the creation and last change times,
/// when given): the first 128 bits of its SHA-256, in hex.
fn quoted_tag(canonical: &[u8], times: Option<(Timestamp, Timestamp)>) -> [u8; 34] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(canonical);
    if let Some((created, updated)) = times {
        hasher.update(created.to_be_bytes());
        hasher.update(updated.to_be_bytes());
    }
    let digest = hasher.finalize();
    let mut quoted = [b'"'; 34];
    hex::encode_to_slice(&digest[..16], &mut quoted[1..33]).expect("16 bytes are 32 hex digits");
    quoted
}

/// An opaque entity tag (letters and digits). It is kept with the quotes it travels in, so
/// that every answer can share its bytes instead of formatting a copy.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ContentTag(bytes::Bytes);

impl ContentTag {
    /// The opaque part, without quotes.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[1..self.0.len() - 1]).expect("entity tags are ASCII")
    }

    /// The tag with its quotes, as an `ETag` header carries a strong tag.
    pub fn quoted(&self) -> &bytes::Bytes {
        &self.0
    }
}

impl std::fmt::Display for ContentTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for ContentTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<&str> for ContentTag {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_s_shared_buffer_holds_exactly_its_canonical_form_and_tag() {
        let mut metadata = Metadata::new();
        metadata.insert("name", "postgres \"main\"");
        let dataset = Dataset {
            dataset_id: uuid::Uuid::from_u128(7),
            primary: uuid::Uuid::from_u128(9),
            deleted: false,
            metadata,
            maximum_size: std::num::NonZeroU64::new(67_108_864),
        };
        let (canonical, tag) = canonical_and_tag(&dataset, None);
        assert_eq!(canonical, canonical_json(&dataset));
        assert_eq!(tag, content_tag(&dataset));
        assert_eq!(tag.quoted().len(), 34);
        assert_eq!(tag.quoted()[0], b'"');
    }

    #[test]
    fn a_tag_that_covers_the_times_changes_with_either() {
        let value = "same content";
        let tag = |times| canonical_and_tag(&value, times).1;
        assert_ne!(tag(Some((1, 2))), tag(None));
        assert_ne!(tag(Some((1, 2))), tag(Some((3, 2))), "another creation");
        assert_ne!(tag(Some((1, 2))), tag(Some((1, 3))), "another last change");
        assert_eq!(tag(Some((1, 2))), tag(Some((1, 2))));
    }
}
