//! Meta fields for representations that carry their version in the body (Eve's `_etag`,
//! `_created`, `_updated`; the names are settings, as in Eve). Flocker's representations have
//! fixed shapes and do not carry them; the packages and mathematicians APIs do.

use serde_json::{Map, Value};

use crate::model::{Timestamp, Versioned};

/// The names of the meta fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaFields {
    /// Holds the entity tag (default `_etag`); `None` when entity tags are off
    /// (`--if-match off`), which sends none, in a header or in a body.
    pub etag: Option<String>,
    /// Holds the creation time (default `_created`).
    pub created: String,
    /// Holds the last change time (default `_updated`).
    pub updated: String,
}

/// `--meta-etag-field`'s default, Eve's name.
pub const DEFAULT_ETAG_FIELD: &str = "_etag";
/// `--meta-created-field`'s default, Eve's name.
pub const DEFAULT_CREATED_FIELD: &str = "_created";
/// `--meta-updated-field`'s default, Eve's name.
pub const DEFAULT_UPDATED_FIELD: &str = "_updated";

impl Default for MetaFields {
    fn default() -> Self {
        MetaFields {
            etag: Some(DEFAULT_ETAG_FIELD.into()),
            created: DEFAULT_CREATED_FIELD.into(),
            updated: DEFAULT_UPDATED_FIELD.into(),
        }
    }
}

/// The fields of the representations that carry meta fields (packages, mathematicians): a
/// meta field of one of these names would replace the resource's own data in every answer.
pub const REPRESENTATION_FIELDS: [&str; 14] = [
    "uuid",
    "name",
    "ram",
    "quota",
    "cpu_cap",
    "cpu_shares",
    "max_swap",
    "zfs_io_priority",
    "blocksize",
    "compression",
    "requirements",
    "metadata",
    "unique",
    "_links",
];

impl MetaFields {
    /// Refuses names that would hide data: empty ones, two meta fields of one name (one would
    /// replace the other), and names of the representations' own fields.
    pub fn check(&self) -> Result<(), String> {
        let named = [
            ("--meta-etag-field", self.etag.as_deref()),
            ("--meta-created-field", Some(self.created.as_str())),
            ("--meta-updated-field", Some(self.updated.as_str())),
        ];
        let named: Vec<(&str, &str)> = named
            .into_iter()
            .filter_map(|(flag, name)| Some((flag, name?)))
            .collect();
        for (at, (flag, name)) in named.iter().enumerate() {
            if name.is_empty() {
                return Err(format!("{flag} must not be empty"));
            }
            if REPRESENTATION_FIELDS.contains(name) {
                return Err(format!(
                    "{flag} {name:?} is a field of the packages' or mathematicians' representations, which it would replace"
                ));
            }
            if let Some((other, _)) = named[..at].iter().find(|(_, earlier)| earlier == name) {
                return Err(format!(
                    "{flag} and {other} are both {name:?}: one would replace the other"
                ));
            }
        }
        Ok(())
    }

    /// Adds the meta fields of `record` to its JSON object representation.
    pub fn annotate<T>(&self, object: &mut Map<String, Value>, record: &Versioned<T>) {
        self.annotate_as(object, record, record.etag.as_str());
    }

    /// Adds the meta fields of `record` to a representation whose entity tag is `etag`: the
    /// body must name the tag its `ETag` header carries, which for a resource served in
    /// several media types differs from one to the other.
    pub fn annotate_as<T>(
        &self,
        object: &mut Map<String, Value>,
        record: &Versioned<T>,
        etag: &str,
    ) {
        if let Some(name) = &self.etag {
            object.insert(name.clone(), Value::String(etag.to_string()));
        }
        object.insert(self.created.clone(), Value::String(rfc3339(record.created)));
        object.insert(self.updated.clone(), Value::String(rfc3339(record.updated)));
    }
}

/// An RFC 3339 timestamp in UTC with millisecond precision.
pub fn rfc3339(millis: Timestamp) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl crate::model::Tagged for String {
        const SHOWS_TIMES: bool = true;
    }

    #[test]
    fn annotates_with_configured_names() {
        let record = Versioned::new("x".to_string(), 0, 1_500);
        let mut object = Map::new();
        let names = MetaFields {
            etag: Some("etag".into()),
            ..MetaFields::default()
        };
        names.annotate(&mut object, &record);
        assert_eq!(object["etag"], Value::String(record.etag.to_string()));
        assert_eq!(object["_created"], "1970-01-01T00:00:00.000Z");
        assert_eq!(object["_updated"], "1970-01-01T00:00:01.500Z");

        let mut without_etags = Map::new();
        let names = MetaFields {
            etag: None,
            ..MetaFields::default()
        };
        names.annotate(&mut without_etags, &record);
        let keys: Vec<_> = without_etags.keys().map(String::as_str).collect();
        assert_eq!(keys, ["_created", "_updated"]);
    }

    #[test]
    fn names_that_would_hide_data_are_refused() {
        let with = |etag: &str, created: &str| MetaFields {
            etag: Some(etag.into()),
            created: created.into(),
            ..MetaFields::default()
        };
        assert_eq!(MetaFields::default().check(), Ok(()));
        assert_eq!(with("etag", "created").check(), Ok(()));
        assert!(
            with("", "_created")
                .check()
                .unwrap_err()
                .contains("--meta-etag-field")
        );
        let twice = with("_x", "_x").check().unwrap_err();
        assert!(twice.contains("--meta-created-field") && twice.contains("--meta-etag-field"));
        for field in ["name", "unique", "_links", "metadata"] {
            assert!(with(field, "_created").check().is_err(), "{field}");
        }
        // With ETags off the etag field's name is not used, so it cannot collide.
        let off = MetaFields {
            etag: None,
            created: "_updated".into(),
            ..MetaFields::default()
        };
        assert!(
            off.check().is_err(),
            "created and updated still may not share a name"
        );
    }

    #[test]
    fn the_reserved_names_cover_every_field_of_a_package() {
        let mut package = crate::model::package::Package::new(uuid::Uuid::nil(), "p".into());
        package.ram = Some(1);
        package.quota = Some(1);
        package.cpu_cap = Some(1);
        package.cpu_shares = Some(1);
        package.max_swap = Some(1);
        package.zfs_io_priority = Some(1);
        package.blocksize = Some(1);
        let Value::Object(fields) = serde_json::to_value(&package).unwrap() else {
            panic!("a package is an object");
        };
        for field in fields.keys() {
            assert!(REPRESENTATION_FIELDS.contains(&field.as_str()), "{field}");
        }
    }
}
