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

impl Default for MetaFields {
    fn default() -> Self {
        MetaFields {
            etag: Some("_etag".into()),
            created: "_created".into(),
            updated: "_updated".into(),
        }
    }
}

impl MetaFields {
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
}
