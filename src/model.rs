//! The pure domain: datasets, leases, the configuration that holds them, and the rules for
//! changing it. Nothing here knows about HTTP, files or async; the store drives it and the API
//! renders it.

pub mod cluster;
pub mod configuration;
pub mod container;
pub mod dataset;
pub mod lease;
pub mod mathematician;
pub mod package;
pub mod permission;
pub mod precondition;
pub mod schema;

pub use configuration::{
    Change, Configuration, NameChange, Operation, Outcome, OwnedVersion, Records, Rejection,
    Target, Versioned,
};
pub use dataset::{Dataset, DatasetId, Metadata, NodeId};
pub use lease::{Lease, Timestamp};

/// A strong entity tag for `value`'s exact content: the SHA-256 of its canonical JSON form,
/// truncated to 128 bits and hex-encoded. Canonical because struct fields serialise in a fixed
/// order and maps are sorted (`BTreeMap`).
pub fn content_tag<T: serde::Serialize>(value: &T) -> String {
    tag_of_canonical(&canonical_json(value))
}

/// `value`'s canonical JSON form.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("model values always serialise")
}

/// The content tag of a canonical JSON form.
pub fn tag_of_canonical(canonical: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(canonical)[..16])
}
