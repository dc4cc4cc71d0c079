//! Request schemas: JSON Schema documents (in `schemas/`) equivalent to Flocker's types, compiled
//! once and used to validate the body of every configuration write with a fixed shape before
//! it is turned into an operation, and of every account body (a package's metadata is any
//! JSON).
//!
//! Each endpoint document refers to shared types under `#/definitions/`; `types.json` is
//! spliced in as those definitions when a schema is compiled, so every endpoint uses one copy
//! of each rule.

use std::sync::LazyLock;

use jsonschema::Validator;
use serde_json::Value;

const TYPES: &str = include_str!("schemas/types.json");

/// A compiled request schema.
pub struct RequestSchema {
    name: &'static str,
    document: Value,
    validator: Validator,
}

impl RequestSchema {
    fn compile(name: &'static str, source: &str) -> Self {
        let mut document: Value = serde_json::from_str(source).expect("schema documents are JSON");
        let types: Value = serde_json::from_str(TYPES).expect("types.json is JSON");
        document["definitions"] = types;
        let validator = jsonschema::draft4::options()
            .build(&document)
            .unwrap_or_else(|error| panic!("schema {name} does not compile: {error}"));
        RequestSchema {
            name,
            document,
            validator,
        }
    }

    /// The schema's name, as used in documentation.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The full JSON Schema document, shared definitions included.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Checks `instance`, returning every violation's message (plain JSON quoting).
    pub fn check(&self, instance: &Value) -> Result<(), Vec<String>> {
        // Valid bodies are the common case, and answering yes/no is much cheaper than
        // collecting every error.
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        let errors: Vec<String> = self
            .validator
            .iter_errors(instance)
            .map(|error| error.to_string())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// `POST /v1/configuration/datasets`.
pub static DATASET_CREATE: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile(
        "dataset_create",
        include_str!("schemas/dataset_create.json"),
    )
});

/// `POST /v1/configuration/datasets/{dataset_id}`.
pub static DATASET_UPDATE: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile(
        "dataset_update",
        include_str!("schemas/dataset_update.json"),
    )
});

/// `POST /v1/configuration/leases`.
pub static LEASE: LazyLock<RequestSchema> =
    LazyLock::new(|| RequestSchema::compile("lease", include_str!("schemas/lease.json")));

/// `POST /api/mathematicians` and `PUT /api/mathematicians/{unique}`.
pub static MATHEMATICIAN: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile("mathematician", include_str!("schemas/mathematician.json"))
});

/// `POST /api/{version}/packages`.
pub static PACKAGE_CREATE: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile(
        "package_create",
        include_str!("schemas/package_create.json"),
    )
});

/// `POST /v1/configuration/containers`.
pub static CONTAINER_CREATE: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile(
        "container_create",
        include_str!("schemas/container_create.json"),
    )
});

/// `POST /v1/configuration/containers/{name}`.
pub static CONTAINER_MOVE: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile(
        "container_move",
        include_str!("schemas/container_move.json"),
    )
});

/// `PUT /v1/agent/nodes/{node_uuid}`.
pub static AGENT_REPORT: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile("agent_report", include_str!("schemas/agent_report.json"))
});

/// `POST /api/{v}/sessions`: FiFo's login.
pub static LOGIN: LazyLock<RequestSchema> =
    LazyLock::new(|| RequestSchema::compile("login", include_str!("schemas/login.json")));

/// `POST /api/{v}/users`.
pub static USER_CREATE: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile("user_create", include_str!("schemas/user_create.json"))
});

/// `PUT /api/{v}/users/{name}`: a new password.
pub static PASSWORD_CHANGE: LazyLock<RequestSchema> = LazyLock::new(|| {
    RequestSchema::compile(
        "password_change",
        include_str!("schemas/password_change.json"),
    )
});

/// Every request schema, for documentation and tests.
pub fn all() -> [&'static RequestSchema; 11] {
    [
        &DATASET_CREATE,
        &DATASET_UPDATE,
        &LEASE,
        &MATHEMATICIAN,
        &CONTAINER_CREATE,
        &CONTAINER_MOVE,
        &AGENT_REPORT,
        &PACKAGE_CREATE,
        &LOGIN,
        &USER_CREATE,
        &PASSWORD_CHANGE,
    ]
}

#[cfg(test)]
mod tests {
    //! The schema cases of Flocker's `test_schemas.py`, ported.
    use super::*;
    use serde_json::json;

    use serde_json::Map;

    /// Wraps an object's properties, for tests that build instances.
    fn object(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<Map<_, _>>(),
        )
    }

    const NODE: &str = "cf0f0346-17b2-4812-beca-1434997d6c3f";

    fn create_with(key: &str, value: Value) -> Result<(), Vec<String>> {
        DATASET_CREATE.check(&object(&[("primary", json!(NODE)), (key, value)]))
    }

    #[test]
    fn every_schema_compiles() {
        for schema in all() {
            assert!(
                schema.document()["definitions"]["uuid"].is_object(),
                "{}",
                schema.name()
            );
        }
    }

    #[test]
    fn metadata_limits() {
        let long = "x".repeat(257);
        assert!(create_with("metadata", json!({ long.clone(): "v" })).is_err());
        assert!(create_with("metadata", json!({ "k": long })).is_err());
        assert!(create_with("metadata", json!({ "": "v" })).is_err());
        assert!(create_with("metadata", json!({ "k": 1 })).is_err());
        let seventeen: Map<String, Value> =
            (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(create_with("metadata", Value::Object(seventeen)).is_err());
        let sixteen_full: Map<String, Value> = (0..16)
            .map(|i| (format!("{i:0>256}"), json!("v".repeat(256))))
            .collect();
        assert_eq!(create_with("metadata", Value::Object(sixteen_full)), Ok(()));
    }

    #[test]
    fn maximum_size_rules() {
        assert!(create_with("maximum_size", json!(1024)).is_err());
        assert!(create_with("maximum_size", json!(67_108_864 + 1023)).is_err());
        assert!(create_with("maximum_size", json!("123")).is_err());
        assert_eq!(
            create_with("maximum_size", json!(67_108_864.0)),
            Err(vec![
                "67108864.0 is not of types \"null\", \"integer\"".to_string()
            ])
        );
        assert_eq!(create_with("maximum_size", json!(67_108_864)), Ok(()));
        assert_eq!(create_with("maximum_size", Value::Null), Ok(()));
    }

    #[test]
    fn dataset_id_and_primary_rules() {
        let v4 = "0a4d3c1e-3c1a-4f4b-9a7e-1c2b3d4e5f60";
        assert!(create_with("dataset_id", json!(&v4[..35])).is_err());
        assert!(create_with("dataset_id", json!(format!("{v4}0"))).is_err());
        assert!(create_with("dataset_id", json!("0a4d3c1e-3c1a-1f4b-9a7e-1c2b3d4e5f60")).is_err());
        assert!(create_with("dataset_id", json!(10)).is_err());
        assert_eq!(create_with("dataset_id", json!(v4)), Ok(()));
        for bad in ["10.0.0.257", "example.com"] {
            assert!(DATASET_CREATE.check(&json!({ "primary": bad })).is_err());
        }
    }

    #[test]
    fn deleted_and_extra_keys() {
        assert!(create_with("deleted", json!("hello")).is_err());
        assert_eq!(create_with("deleted", json!(true)), Ok(()));
        assert_eq!(
            create_with("junk", json!("x")),
            Err(vec![
                "Additional properties are not allowed ('junk' was unexpected)".to_string()
            ])
        );
        assert_eq!(
            DATASET_CREATE.check(&json!({})),
            Err(vec!["\"primary\" is a required property".to_string()])
        );
    }

    #[test]
    fn update_schema() {
        assert_eq!(DATASET_UPDATE.check(&json!({})), Ok(()));
        assert!(
            DATASET_UPDATE
                .check(&json!({ "primary": NODE, "x": 1 }))
                .is_err()
        );
        assert!(
            DATASET_UPDATE
                .check(&json!({ "primary": "192.0.2.257" }))
                .is_err()
        );
    }

    #[test]
    fn lease_schema() {
        let good = json!({ "dataset_id": NODE, "node_uuid": NODE, "expires": 30 });
        assert_eq!(LEASE.check(&good), Ok(()));
        let any_version = json!({ "dataset_id": "0a4d3c1e-3c1a-1f4b-0a7e-1c2b3d4e5f60", "node_uuid": NODE, "expires": null });
        assert_eq!(LEASE.check(&any_version), Ok(()));
        let not_uuid = json!({ "dataset_id": "x".repeat(36), "node_uuid": NODE, "expires": null });
        assert!(LEASE.check(&not_uuid).is_err());
        let forever_and_more = json!({ "dataset_id": NODE, "node_uuid": NODE, "expires": 1e300 });
        assert!(LEASE.check(&forever_and_more).is_err());
        assert!(
            LEASE
                .check(&json!({ "dataset_id": NODE, "node_uuid": NODE }))
                .is_err()
        );
    }

    /// A user name in a body is refused exactly when the rule for names in paths and
    /// certificates (`valid_user_name`) refuses it.
    #[test]
    fn user_names_in_bodies_follow_the_one_rule() {
        let long = "a".repeat(128);
        let too_long = "a".repeat(129);
        for name in [
            "ann",
            "x.y@z",
            "a_",
            "...b",
            "1",
            "A-Z",
            &long,
            "",
            "_",
            "...",
            ".",
            "..",
            "-",
            "@",
            "_.-",
            "ann smith",
            "ann/b",
            "é",
            &too_long,
        ] {
            let body = json!({ "user": name, "password": "pw" });
            assert_eq!(
                USER_CREATE.check(&body).is_ok(),
                crate::model::permission::valid_user_name(name),
                "{name:?}"
            );
        }
    }

    #[test]
    fn account_bodies_need_their_keys_and_a_password_that_is_not_empty() {
        assert_eq!(LOGIN.check(&json!({ "user": "a", "password": "" })), Ok(()));
        assert!(LOGIN.check(&json!({ "user": "a" })).is_err());
        assert!(LOGIN.check(&json!({ "user": 1, "password": "p" })).is_err());
        assert_eq!(PASSWORD_CHANGE.check(&json!({ "password": "p" })), Ok(()));
        assert_eq!(
            PASSWORD_CHANGE.check(&json!({ "password": "" })),
            Err(vec!["\"\" is shorter than 1 character".to_string()])
        );
        assert!(PASSWORD_CHANGE.check(&json!({ "password": 5 })).is_err());
        let permissions =
            |granted: Value| json!({ "user": "a", "password": "p", "permissions": granted });
        assert_eq!(
            USER_CREATE.check(&permissions(json!([["cloud", "..."]]))),
            Ok(())
        );
        assert!(USER_CREATE.check(&permissions(json!([[]]))).is_err());
        assert!(
            USER_CREATE
                .check(&permissions(json!([["cloud", ""]])))
                .is_err()
        );
        assert!(USER_CREATE.check(&permissions(json!("all"))).is_err());
    }
}
