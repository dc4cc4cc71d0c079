//! Project FiFo's packages: named resource templates (RAM, quota, CPU cap, …) with placement
//! requirements and free-form metadata that is changed path by path with FiFo's deep-merge
//! rules.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

mod requirement;

pub use requirement::{Condition, Requirement, RequirementError, Requirements, Weight};

/// A package. Optional numeric fields are absent when unset; `cpu_shares` exists in FiFo's
/// type but cannot be set through the API, so it is kept only for completeness of the shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The package's id.
    pub uuid: Uuid,
    /// Its name, unique across packages.
    pub name: String,
    /// Memory in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram: Option<u64>,
    /// Disk quota in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// CPU cap in percent (100 = one core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cap: Option<u64>,
    /// CPU shares (not settable through the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// Swap in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_swap: Option<u64>,
    /// ZFS I/O priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zfs_io_priority: Option<u64>,
    /// ZFS block size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocksize: Option<u64>,
    /// ZFS compression (`off` unless set).
    pub compression: String,
    /// Placement requirements: a set, in FiFo's order.
    pub requirements: Requirements,
    /// Free-form metadata, keys sorted at every level.
    pub metadata: Map<String, Value>,
}

/// The representation carries `_created` and `_updated`.
impl super::Tagged for Package {
    const SHOWS_TIMES: bool = true;
}

/// How deeply free-form JSON may nest in a package: a metadata path's segments and the nesting
/// of the value set there, together, or one requirement's nesting. The store reads a package
/// back with a JSON parser that stops at 128 levels, and the package and its `metadata` or
/// `requirements` add two: what is accepted must stay within that, or the server could not
/// start again. The few levels below the parser's limit are left for the envelope to grow.
pub const MAX_NESTING: usize = 120;

/// Why a metadata change cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The path goes below a value that is not an object.
    #[error("The metadata path {0:?} goes below a value that is not an object.")]
    NotAnObject(String),
    /// Metadata (its path's segments and the value's nesting together) or a requirement
    /// nests deeper than [`MAX_NESTING`].
    #[error(
        "Metadata and requirements nest at most {MAX_NESTING} levels of arrays and objects (a metadata path's segments count as levels)."
    )]
    TooDeep,
}

/// How many arrays and objects `value` nests (0 for a string or number, 1 for `{"a": 1}`).
/// Iterative, so that no input can exhaust the stack.
pub fn nesting(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((value, depth)) = pending.pop() {
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|item| (item, depth + 1))),
            Value::Object(fields) => {
                pending.extend(fields.values().map(|field| (field, depth + 1)))
            }
            _ => continue,
        }
        deepest = deepest.max(depth + 1);
    }
    deepest
}

impl Package {
    /// A package with FiFo's defaults: compression `off`, no requirements, empty metadata.
    pub fn new(uuid: Uuid, name: String) -> Self {
        Package {
            uuid,
            name,
            ram: None,
            quota: None,
            cpu_cap: None,
            cpu_shares: None,
            max_swap: None,
            zfs_io_priority: None,
            blocksize: None,
            compression: "off".into(),
            requirements: Requirements::default(),
            metadata: Map::new(),
        }
    }

    /// Checks that the package's metadata and each requirement nest within [`MAX_NESTING`].
    pub fn check_nesting(&self) -> Result<(), MetadataError> {
        let metadata_nesting = self
            .metadata
            .values()
            .map(|value| 1 + nesting(value))
            .max()
            .unwrap_or(0);
        let requirement_nesting = self
            .requirements
            .iter()
            .map(Requirement::nesting)
            .max()
            .unwrap_or(0);
        if metadata_nesting.max(requirement_nesting) > MAX_NESTING {
            return Err(MetadataError::TooDeep);
        }
        Ok(())
    }

    /// Sets the requirements with set semantics: duplicates collapse, order is FiFo's.
    pub fn set_requirements(&mut self, requirements: impl IntoIterator<Item = Requirement>) {
        self.requirements = requirements.into_iter().collect();
    }

    /// Sets `value` at `path` (never empty) in the metadata, FiFo's way: a non-empty object
    /// is merged leaf by leaf into what is there (siblings at every level are kept), an empty
    /// object makes sure an object exists, anything else (arrays included) replaces the value.
    /// Missing intermediate objects are created. Returns whether anything changed.
    pub fn set_metadata(&mut self, path: &[String], value: Value) -> Result<bool, MetadataError> {
        if path.len() + nesting(&value) > MAX_NESTING {
            return Err(MetadataError::TooDeep);
        }
        let before = self.metadata.clone();
        set_at(&mut self.metadata, path, value, path)?;
        Ok(self.metadata != before)
    }

    /// Removes the value (a whole subtree for an object) at `path`. A path that leads nowhere
    /// is not an error: nothing changes. Returns whether anything changed.
    pub fn remove_metadata(&mut self, path: &[String]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut object = &mut self.metadata;
        for segment in parents {
            match object.get_mut(segment) {
                Some(Value::Object(inner)) => object = inner,
                _ => return false,
            }
        }
        object.remove(last).is_some()
    }
}

/// Sets `value` at `path` under `object`; `full` is the whole path, for the error.
fn set_at(
    object: &mut Map<String, Value>,
    path: &[String],
    value: Value,
    full: &[String],
) -> Result<(), MetadataError> {
    let (first, rest) = path.split_first().expect("metadata paths are never empty");
    if rest.is_empty() {
        match value {
            Value::Object(fields) => {
                let slot = object
                    .entry(first.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    // A different type at the same key: plain replace (FiFo kept both).
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(inner) = slot else {
                    unreachable!("made an object above")
                };
                for (key, leaf) in fields {
                    set_at(inner, &[key], leaf, full)?;
                }
                sort_keys(inner);
            }
            other => {
                object.insert(first.clone(), sorted(other));
            }
        }
    } else {
        let slot = object
            .entry(first.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(inner) = slot else {
            return Err(MetadataError::NotAnObject(full.join(".")));
        };
        set_at(inner, rest, value, full)?;
    }
    sort_keys(object);
    Ok(())
}

/// Orders an object's keys (the map keeps insertion order), so that equal metadata has one
/// canonical form and one entity tag, and renders sorted as FiFo's did.
fn sort_keys(object: &mut Map<String, Value>) {
    object.sort_keys();
}

/// `value` with the keys of every object in it sorted.
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut object: Map<String, Value> =
                object.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            object.sort_keys();
            Value::Object(object)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> Vec<String> {
        text.split('.').map(str::to_string).collect()
    }

    fn package() -> Package {
        Package::new(Uuid::nil(), "small".into())
    }

    /// `levels` arrays, one inside the other.
    fn nested_arrays(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| json!([inner]))
    }

    #[test]
    fn nesting_counts_arrays_and_objects() {
        assert_eq!(nesting(&json!("text")), 0);
        assert_eq!(nesting(&json!({ "a": 1 })), 1);
        assert_eq!(nesting(&json!({ "a": [1, { "b": {} }], "c": 2 })), 4);
        assert_eq!(nesting(&nested_arrays(500)), 500);
    }

    #[test]
    fn metadata_nests_at_most_max_nesting_levels_path_included() {
        let mut p = package();
        let deep_path: Vec<String> = (0..MAX_NESTING).map(|i| format!("k{i}")).collect();
        assert!(p.set_metadata(&deep_path, json!(1)).unwrap());

        let before = p.clone();
        let too_long: Vec<String> = (0..MAX_NESTING + 1).map(|i| format!("k{i}")).collect();
        assert_eq!(
            p.set_metadata(&too_long, json!(1)),
            Err(MetadataError::TooDeep)
        );
        // Path and value count together.
        assert_eq!(
            p.set_metadata(&path("a.b"), nested_arrays(MAX_NESTING - 1)),
            Err(MetadataError::TooDeep)
        );
        assert_eq!(p, before, "a refused change changes nothing");
        assert!(
            p.set_metadata(&path("a.b"), nested_arrays(MAX_NESTING - 2))
                .unwrap()
        );
    }

    #[test]
    fn a_new_package_nests_within_max_nesting() {
        let mut p = package();
        // The rule around the value is one level.
        let rule =
            |value| requirement(json!({ "condition": "=:=", "attribute": "a", "value": value }));
        p.set_requirements([rule(nested_arrays(MAX_NESTING - 1))]);
        assert_eq!(p.check_nesting(), Ok(()));
        p.set_requirements([rule(json!(1)), rule(nested_arrays(MAX_NESTING))]);
        assert_eq!(p.check_nesting(), Err(MetadataError::TooDeep));

        let mut p = package();
        p.metadata
            .insert("k".into(), nested_arrays(MAX_NESTING - 1));
        assert_eq!(p.check_nesting(), Ok(()));
        p.metadata.insert("k".into(), nested_arrays(MAX_NESTING));
        assert_eq!(p.check_nesting(), Err(MetadataError::TooDeep));
    }

    #[test]
    fn objects_merge_leaf_by_leaf_and_arrays_replace() {
        let mut p = package();
        assert!(
            p.set_metadata(&path("jingles.notes"), json!(["a", "b"]))
                .unwrap()
        );
        p.set_metadata(&path("jingles"), json!({ "color": "red" }))
            .unwrap();
        assert_eq!(
            Value::Object(p.metadata.clone()),
            json!({ "jingles": { "color": "red", "notes": ["a", "b"] } })
        );
        p.set_metadata(&path("jingles.notes"), json!(["c"]))
            .unwrap();
        assert_eq!(p.metadata["jingles"]["notes"], json!(["c"]));
        assert!(
            !p.set_metadata(&path("jingles"), json!({})).unwrap(),
            "an empty object only makes sure an object is there"
        );
    }

    #[test]
    fn below_a_scalar_is_refused_and_type_changes_replace() {
        let mut p = package();
        p.set_metadata(&path("a"), json!("text")).unwrap();
        assert_eq!(
            p.set_metadata(&path("a.b"), json!(1)),
            Err(MetadataError::NotAnObject("a.b".into()))
        );
        p.set_metadata(&path("a"), json!({ "b": 1 })).unwrap();
        assert_eq!(p.metadata["a"], json!({ "b": 1 }));
        p.set_metadata(&path("a"), json!(2)).unwrap();
        assert_eq!(p.metadata["a"], json!(2));
    }

    #[test]
    fn removal_takes_subtrees_and_ignores_missing_paths() {
        let mut p = package();
        p.set_metadata(&path("a"), json!({ "b": { "c": 1 }, "d": 2 }))
            .unwrap();
        assert!(!p.remove_metadata(&path("a.x.y")));
        assert!(!p.remove_metadata(&path("a.d.e")));
        assert!(p.remove_metadata(&path("a.b")));
        assert_eq!(
            Value::Object(p.metadata.clone()),
            json!({ "a": { "d": 2 } })
        );
    }

    fn requirement(value: Value) -> Requirement {
        Requirement::try_from(value).expect("a requirement")
    }

    fn rendered(requirements: &Requirements) -> Value {
        serde_json::to_value(requirements).unwrap()
    }

    #[test]
    fn requirements_are_a_set() {
        let mut p = package();
        let r = json!({ "weight": "must", "attribute": "a", "condition": ">=", "value": 1 });
        p.set_requirements([requirement(r.clone()), requirement(r)]);
        assert_eq!(p.requirements.len(), 1);
    }

    /// Sorted term order of FiFo's tuples (fifo_and_mathematicians.md A.5), however they came.
    /// A rule's value orders as jsx's Erlang term: numbers < atoms < lists (arrays and objects)
    /// < binaries (strings).
    /// A package stored before requirements were normalised loads as FiFo would list it.
    #[test]
    fn a_stored_package_loads_with_normalised_requirements() {
        let stored = json!({
            "uuid": Uuid::nil(),
            "name": "old",
            "compression": "off",
            "metadata": {},
            "requirements": [
                { "weight": "scale", "attribute": "cpu", "low": 0, "high": 10 },
                { "attribute": "a", "condition": ">=", "value": { "y": 1, "x": 2 } },
                { "weight": "must", "attribute": "a", "condition": ">=", "value": { "x": 2, "y": 1 } },
            ],
        });
        let package: Package = serde_json::from_value(stored).unwrap();
        assert_eq!(
            rendered(&package.requirements),
            json!([
                { "attribute": "a", "condition": ">=", "value": { "x": 2, "y": 1 }, "weight": "must" },
                { "attribute": "cpu", "high": 10, "low": 0, "weight": "scale" },
            ])
        );
        // And it stores back in that form, which loads as itself.
        let again: Package =
            serde_json::from_str(&serde_json::to_string(&package).unwrap()).unwrap();
        assert_eq!(again, package);
    }
}
