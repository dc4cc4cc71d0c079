//! Mathematicians (the "historical modeling" API): a mathematician's name is never
//! overwritten. Every change adds a version that names the versions it replaces; versions that
//! nothing replaces yet are the current ones. Concurrent edits therefore become several current
//! versions (candidates) instead of being lost, and a later edit that names all of them merges
//! them.
//!
//! A version's id is a hash of its content *and* its history, computed exactly as the original
//! .NET implementation does (SHA-256 over minimal signed little-endian `BigInteger` bytes), so
//! ids are portable between the two and replaying an edit is recognisably a no-op.

use std::cmp::Ordering;
use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A version hash: a 256-bit signed integer, kept as 32 little-endian two's-complement bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionHash([u8; 32]);

impl VersionHash {
    const ZERO: VersionHash = VersionHash([0; 32]);

    /// The integer a SHA-256 digest denotes when read as .NET's `new BigInteger(bytes)` does.
    fn of_bytes(data: &[u8]) -> Self {
        VersionHash(Sha256::digest(data).into())
    }

    /// `H(s)`: the hash of a name part; `None` hashes to zero (and so differs from `""`).
    fn of_text(text: Option<&str>) -> Self {
        text.map_or(Self::ZERO, |text| Self::of_bytes(text.as_bytes()))
    }

    /// `Concat(start, rest…)`: the hash of the rest's bytes followed by the start's.
    fn concat(start: VersionHash, rest: &[VersionHash]) -> Self {
        let mut data = Vec::with_capacity(33 * (rest.len() + 1));
        for value in rest {
            data.extend_from_slice(value.minimal_bytes());
        }
        data.extend_from_slice(start.minimal_bytes());
        Self::of_bytes(&data)
    }

    /// .NET `BigInteger.ToByteArray()`: the shortest little-endian two's-complement form.
    /// Dropping a high byte is allowed while the sign bit of the next one still says the same.
    pub fn minimal_bytes(&self) -> &[u8] {
        let mut length = self.0.len();
        while length > 1 {
            let (high, next) = (self.0[length - 1], self.0[length - 2]);
            if (high == 0x00 && next < 0x80) || (high == 0xff && next >= 0x80) {
                length -= 1;
            } else {
                break;
            }
        }
        &self.0[..length]
    }

    /// Reads little-endian two's-complement bytes of any length, as `new BigInteger(bytes)`.
    /// `None` when the value does not fit 256 bits, so it cannot be any version's hash.
    pub fn from_le_bytes(bytes: &[u8]) -> Option<Self> {
        let negative = bytes.last().is_some_and(|high| high & 0x80 != 0);
        let fill = if negative { 0xff } else { 0x00 };
        let mut value = [fill; 32];
        for (index, byte) in bytes.iter().enumerate() {
            match value.get_mut(index) {
                Some(slot) => *slot = *byte,
                // Longer inputs are fine only if the extra bytes are sign extension.
                None if *byte == fill => {}
                None => return None,
            }
        }
        // A 32-byte prefix whose sign differs from the extension is out of range.
        (value[31] & 0x80 == fill & 0x80).then_some(VersionHash(value))
    }

    /// The wire form: base64 of the minimal bytes.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.minimal_bytes())
    }

    /// Parses the wire form. `Err` for text that is not base64; `Ok(None)` for a value that
    /// cannot be a version hash (it will simply match nothing).
    pub fn from_base64(text: &str) -> Result<Option<Self>, base64::DecodeError> {
        BASE64.decode(text).map(|bytes| Self::from_le_bytes(&bytes))
    }

    fn is_negative(&self) -> bool {
        self.0[31] & 0x80 != 0
    }
}

impl Ord for VersionHash {
    /// Signed integer order, as `BigInteger` compares.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .is_negative()
            .cmp(&self.is_negative())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }
}

impl PartialOrd for VersionHash {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for VersionHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VersionHash({})", self.to_base64())
    }
}

impl Serialize for VersionHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for VersionHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        VersionHash::from_base64(&text)
            .ok()
            .flatten()
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a version hash")))
    }
}

/// One version of a mathematician's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameVersion {
    /// The version's id.
    pub hash: VersionHash,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// The versions this one replaces, in their creation order.
    pub priors: Vec<VersionHash>,
}

impl NameVersion {
    /// The hash of a version with these names and priors (priors in creation order).
    pub fn hash_of(
        first_name: Option<&str>,
        last_name: Option<&str>,
        priors: &[VersionHash],
    ) -> VersionHash {
        let names = VersionHash::concat(
            VersionHash::of_text(first_name),
            &[VersionHash::of_text(last_name)],
        );
        VersionHash::concat(names, priors)
    }
}

/// A mathematician: a unique id and every version of its name, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mathematician {
    /// The client-chosen unique id.
    pub unique: Uuid,
    /// Every version ever made, oldest first. Old ids keep resolving.
    pub versions: Vec<NameVersion>,
}

/// The representation carries `_created` and `_updated`.
impl super::Tagged for Mathematician {
    const SHOWS_TIMES: bool = true;
}

impl Mathematician {
    /// A mathematician with no name yet.
    pub fn new(unique: Uuid) -> Self {
        Mathematician {
            unique,
            versions: Vec::new(),
        }
    }

    /// The versions nothing has replaced yet, in creation order: one normally, several while
    /// concurrent edits are unresolved, none before the first name.
    pub fn current(&self) -> Vec<&NameVersion> {
        let replaced: HashSet<&VersionHash> = self
            .versions
            .iter()
            .flat_map(|version| &version.priors)
            .collect();
        self.versions
            .iter()
            .filter(|version| !replaced.contains(&version.hash))
            .collect()
    }

    /// The version whose name is shown: among the current ones, the one with the smallest hash
    /// (signed), as the original does.
    pub fn shown(&self) -> Option<&NameVersion> {
        self.current()
            .into_iter()
            .min_by(|a, b| a.hash.cmp(&b.hash))
    }

    /// Sets the name, given the ids of the versions the client saw. Returns whether a version
    /// was added. Ids that name no version of this mathematician are ignored.
    ///
    /// No version is added when the client saw exactly one version and the name is unchanged,
    /// or when the identical version (same name, same priors) exists already: replaying an
    /// edit, even after later edits, changes nothing.
    pub fn set_name(
        &mut self,
        seen: &[VersionHash],
        first_name: Option<&str>,
        last_name: Option<&str>,
    ) -> bool {
        let priors: Vec<&NameVersion> = self
            .versions
            .iter()
            .filter(|version| seen.contains(&version.hash))
            .collect();
        if let [only] = priors.as_slice()
            && only.first_name.as_deref() == first_name
            && only.last_name.as_deref() == last_name
        {
            return false;
        }
        let priors: Vec<VersionHash> = priors.iter().map(|version| version.hash).collect();
        let hash = NameVersion::hash_of(first_name, last_name, &priors);
        if self.versions.iter().any(|version| version.hash == hash) {
            return false;
        }
        self.versions.push(NameVersion {
            hash,
            first_name: first_name.map(str::to_string),
            last_name: last_name.map(str::to_string),
            priors,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> VersionHash {
        VersionHash::from_base64(text).unwrap().unwrap()
    }

    const EULER: &str = "nnqhwfVkOmSjZ2u5ssH9wU4r1b516s0IsegWOKmug8o=";
    const LEONARD: &str = "u+eSWBxzqKy0SMrRoSHbL/wbqFbloHFpDq5Qm1jzwwM=";
    const LEONHARD: &str = "lVSGRERNFRpYA/IOOnaqZyHDDGxlEMUnZLjf3tsGD5U=";
    const MERGED: &str = "qpS965Ft8qQVFkqKjQToMjNQzDDMbLOJwe+KzGMRkDs=";

    #[test]
    fn test_vectors_of_b3() {
        let euler = NameVersion::hash_of(Some("Leonhardt"), Some("Euler"), &[]);
        assert_eq!(euler.to_base64(), EULER);
        let leonard = NameVersion::hash_of(Some("Leonard"), Some("Euler"), &[euler]);
        assert_eq!(leonard.to_base64(), LEONARD);
        let leonhard = NameVersion::hash_of(Some("Leonhard"), Some("Euler"), &[euler]);
        assert_eq!(leonhard.to_base64(), LEONHARD);
        assert!(leonhard < leonard, "Leonhard is the smaller signed value");
        let merged = NameVersion::hash_of(Some("Leonhard"), Some("Euler"), &[leonard, leonhard]);
        assert_eq!(merged.to_base64(), MERGED);
        let other_order =
            NameVersion::hash_of(Some("Leonhard"), Some("Euler"), &[leonhard, leonard]);
        assert_eq!(
            other_order.to_base64(),
            "sQrxxDUcwURQqtOLvN1XfsA+gi1ZS8Q/5PPahnlJkB8="
        );
        assert_eq!(
            NameVersion::hash_of(Some("Leonard"), Some("Euler"), &[]).to_base64(),
            "4cCcrDB+UMc50wenX7Y8tcX8Ir8FbOdS0m/IZlVXKLI="
        );
        assert_eq!(
            NameVersion::hash_of(None, None, &[]).to_base64(),
            "QH/rSkuDA7r0+E4pogng3P1i6B+IyO23Z1xaldkOXJA="
        );
        assert_ne!(
            NameVersion::hash_of(Some(""), Some(""), &[]),
            NameVersion::hash_of(None, None, &[]),
            "null and empty differ"
        );
    }

    #[test]
    fn minimal_bytes_and_round_trips() {
        assert_eq!(VersionHash::ZERO.minimal_bytes(), &[0x00]);
        let mut minus_one = [0xff; 32];
        assert_eq!(VersionHash(minus_one).minimal_bytes(), &[0xff]);
        minus_one[0] = 0x7f; // -129: needs two bytes
        assert_eq!(VersionHash(minus_one).minimal_bytes(), &[0x7f, 0xff]);
        let mut small = [0; 32];
        small[0] = 0x80; // 128: needs a 0x00 high byte
        assert_eq!(VersionHash(small).minimal_bytes(), &[0x80, 0x00]);
        for value in [
            VersionHash::ZERO,
            VersionHash(minus_one),
            VersionHash(small),
            id(EULER),
        ] {
            assert_eq!(
                VersionHash::from_le_bytes(value.minimal_bytes()),
                Some(value)
            );
            assert_eq!(id(&value.to_base64()), value);
        }
        // Redundant sign extension is the same value; a value past 256 bits is none.
        let mut padded = id(EULER).minimal_bytes().to_vec();
        let fill = if padded.last().unwrap() & 0x80 != 0 {
            0xff
        } else {
            0x00
        };
        padded.extend([fill; 3]);
        assert_eq!(VersionHash::from_le_bytes(&padded), Some(id(EULER)));
        assert_eq!(VersionHash::from_le_bytes(&[1u8; 33]), None);
        assert!(VersionHash::from_base64("not base64!").is_err());
    }

    #[test]
    fn signed_order() {
        let negative = VersionHash([0xff; 32]);
        let mut one = [0; 32];
        one[0] = 1;
        let one = VersionHash(one);
        assert!(negative < VersionHash::ZERO);
        assert!(VersionHash::ZERO < one);
        assert!(negative < one);
    }

    #[test]
    fn acceptance_scenario_of_b6() {
        let mut m = Mathematician::new(Uuid::new_v4());
        assert!(m.current().is_empty());
        assert!(m.set_name(&[], Some("Leonhardt"), Some("Euler")));
        assert_eq!(m.versions[0].hash, id(EULER));
        assert!(
            !m.set_name(&[], Some("Leonhardt"), Some("Euler")),
            "same root: no-op"
        );
        assert!(
            !m.set_name(&[id(EULER)], Some("Leonhardt"), Some("Euler")),
            "unchanged"
        );
        assert!(m.set_name(&[id(EULER)], Some("Leonard"), Some("Euler")));
        assert!(
            m.set_name(&[id(EULER)], Some("Leonhard"), Some("Euler")),
            "stale ids"
        );
        let current: Vec<_> = m.current().iter().map(|v| v.hash).collect();
        assert_eq!(current, vec![id(LEONARD), id(LEONHARD)]);
        assert_eq!(m.shown().unwrap().first_name.as_deref(), Some("Leonhard"));
        assert!(
            !m.set_name(&[id(EULER)], Some("Leonard"), Some("Euler")),
            "replayed edit"
        );
        assert!(m.set_name(
            &[id(LEONHARD), id(LEONARD)],
            Some("Leonhard"),
            Some("Euler")
        ));
        let current: Vec<_> = m.current().iter().map(|v| v.hash).collect();
        assert_eq!(
            current,
            vec![id(MERGED)],
            "priors in creation order, not request order"
        );
        assert!(!m.set_name(
            &[id(LEONARD), id(LEONHARD)],
            Some("Leonhard"),
            Some("Euler")
        ));
        assert!(
            m.set_name(&[id("AAAA"), id(MERGED)], Some("L"), Some("E")),
            "unknown ids ignored"
        );
        assert_eq!(m.current().len(), 1);
    }
}
