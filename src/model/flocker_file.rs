//! Reading Flocker's `current_configuration.json` (format versions 1 to 6) into an
//! [`Import`]: the file format, its class markers and its version differences, and nothing
//! else. Pure: the caller reads the file and hands the result to the store.
//!
//! The format (Flocker's `_persistence.py`): every typed object carries a `"$__class__$"` key;
//! a map is `{"$__class__$":"PMap","values":[[key, value], ...]}`, a UUID
//! `{"$__class__$":"UUID","hex":...}`, a time `{"$__class__$":"datetime","seconds":N}`; sets
//! and vectors are plain arrays. A dataset lives in its primary node's `manifestations`; a
//! lease in `deployment.leases`; a container is an `Application` in its node's `applications`.
//!
//! Every item is checked with the same request schemas the API uses (a dataset as a create
//! body, a container as a create body, a lease as an acquire body), so an import holds nothing
//! a client could not have made; the store then applies it with the API's operations.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::num::NonZeroU64;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::container::{Container, Link, Port, RestartPolicy, Volume};
use super::schema::{self, RequestSchema};
use super::{Dataset, Import, Lease, Metadata, NodeId, Timestamp};

/// The format versions floe reads: every one Flocker's `_persistence.py` has written. Version
/// 6 is what Flocker 1.x writes. Older ones differ only by what later versions added, so floe
/// reads them as Flocker's own upgrade steps would rewrite them:
/// - 5 lacks `swappiness` (taken as 0, as Flocker's 5 → 6 step does);
/// - 4 keeps nodes and applications as lists instead of maps;
/// - 3 lacks `persistent_state`;
/// - 2 lacks `leases` (none);
/// - 1 is a bare `Deployment`, without the `Configuration` object that carries a version (the
///   file Flocker named `current_configuration.v1.json`).
pub const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u64> = 1..=6;

/// The last version that kept nodes and applications as lists.
const LAST_LIST_VERSION: u64 = 4;

/// The first version with leases.
const FIRST_LEASE_VERSION: u64 = 3;

/// The key that names an object's class.
const CLASS: &str = "$__class__$";

/// Why a file cannot be imported: where (a path into the document, e.g.
/// `deployment.nodes[<uuid>].manifestations[<id>]`) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct FileError {
    /// Where in the document.
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

fn error(at: &str, reason: impl Into<String>) -> FileError {
    FileError {
        at: at.to_string(),
        reason: reason.into(),
    }
}

/// What a file held, ready to import, with what could not be carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct FlockerFile {
    /// The file's format version.
    pub version: u64,
    /// Datasets, leases and containers.
    pub import: Import,
    /// What the file held that floe does not model, one line each (empty if nothing).
    pub not_carried: Vec<String>,
}

/// Reads a `current_configuration.json` document.
pub fn parse(text: &str) -> Result<FlockerFile, FileError> {
    let document: Value = serde_json::from_str(text)
        .map_err(|e| error("(document)", format!("not valid JSON: {e}")))?;
    let top = document
        .as_object()
        .ok_or_else(|| error("(document)", "expected a JSON object"))?;
    let (version, deployment) = versioned_deployment(top)?;
    let mut reader = Reader {
        version,
        import: Import::default(),
        not_carried: Vec::new(),
        seen: HashSet::new(),
        replicas: 0,
        stopped: Vec::new(),
    };
    reader.nodes(field(deployment, "nodes", "deployment")?)?;
    if version >= FIRST_LEASE_VERSION {
        reader.leases(field(deployment, "leases", "deployment")?)?;
    }
    if reader.replicas > 0 {
        reader.not_carried.push(format!(
            "{} replica (non-primary) manifestations: floe keeps only a dataset's primary",
            reader.replicas
        ));
    }
    if !reader.stopped.is_empty() {
        reader.not_carried.push(format!(
            "\"running\": false of {}: floe's containers have no such flag, they are imported as configured to run",
            reader.stopped.join(", ")
        ));
    }
    if let Some(state) = deployment.get("persistent_state") {
        let at = "deployment.persistent_state";
        let state = object(state, at, "PersistentState")?;
        if let Some(ownership) = state.get("blockdevice_ownership") {
            let entries = pmap(ownership, &format!("{at}.blockdevice_ownership"))?;
            if !entries.is_empty() {
                reader.not_carried.push(format!(
                    "{} entries of persistent_state.blockdevice_ownership: floe does not model block devices",
                    entries.len()
                ));
            }
        }
    }
    Ok(FlockerFile {
        version,
        import: reader.import,
        not_carried: reader.not_carried,
    })
}

/// The document's format version and its deployment: version 1 is the deployment itself,
/// later ones wrap it in a `Configuration` that names the version.
fn versioned_deployment(top: &Map<String, Value>) -> Result<(u64, &Map<String, Value>), FileError> {
    if top.get(CLASS).and_then(Value::as_str) == Some("Deployment") {
        return Ok((1, top));
    }
    if top.get(CLASS).and_then(Value::as_str) != Some("Configuration") {
        return Err(error(
            "(document)",
            format!(
                "not a Flocker configuration (neither a \"Configuration\" nor a \"Deployment\" object); floe reads versions {}",
                versions()
            ),
        ));
    }
    let version = field(top, "version", "(document)")?;
    let version = version.as_u64().ok_or_else(|| {
        error(
            "version",
            format!("expected a whole number, found {version}"),
        )
    })?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(error(
            "version",
            format!(
                "version {version} is not supported; floe reads versions {} (Flocker 1.x writes 6)",
                versions()
            ),
        ));
    }
    let deployment = object(
        field(top, "deployment", "(document)")?,
        "deployment",
        "Deployment",
    )?;
    Ok((version, deployment))
}

fn versions() -> String {
    format!(
        "{} to {}",
        SUPPORTED_VERSIONS.start(),
        SUPPORTED_VERSIONS.end()
    )
}

/// The walk over a deployment, gathering items and what is left behind.
struct Reader {
    version: u64,
    import: Import,
    not_carried: Vec<String>,
    /// Dataset ids already taken as a primary: Flocker's API never makes two.
    seen: HashSet<Uuid>,
    replicas: usize,
    /// Names of applications configured as not running.
    stopped: Vec<String>,
}

impl Reader {
    fn nodes(&mut self, nodes: &Value) -> Result<(), FileError> {
        let at = "deployment.nodes";
        // Up to version 4 nodes were a list; later versions map each node's UUID to it.
        let nodes: Vec<(String, Option<Uuid>, &Value)> = if self.version <= LAST_LIST_VERSION {
            array(nodes, at)?
                .iter()
                .enumerate()
                .map(|(index, node)| (format!("{at}[{index}]"), None, node))
                .collect()
        } else {
            let mut keyed = Vec::new();
            for (index, (key, node)) in pmap(nodes, at)?.into_iter().enumerate() {
                let key = uuid(key, &format!("{at}[{index}] (key)"))?;
                keyed.push((format!("{at}[{key}]"), Some(key), node));
            }
            keyed
        };
        for (at, key, node) in nodes {
            self.node(&at, key, node)?;
        }
        Ok(())
    }

    fn node(&mut self, at: &str, key: Option<Uuid>, node: &Value) -> Result<(), FileError> {
        let node = object(node, at, "Node")?;
        let uuid = member(node, "uuid", at, uuid)?;
        if key.is_some_and(|key| key != uuid) {
            return Err(error(
                &format!("{at}.uuid"),
                format!("{uuid} differs from its key"),
            ));
        }
        let uuid = super::dataset::node_id(uuid)
            .map_err(|e| error(&format!("{at}.uuid"), e.to_string()))?;
        let manifestations_at = format!("{at}.manifestations");
        for (key, manifestation) in pmap(field(node, "manifestations", at)?, &manifestations_at)? {
            let key = string(key, &format!("{manifestations_at} (key)"))?;
            self.manifestation(
                &format!("{manifestations_at}[{key}]"),
                key,
                uuid,
                manifestation,
            )?;
        }
        let applications_at = format!("{at}.applications");
        let applications = field(node, "applications", at)?;
        let applications: Vec<(String, Option<&str>, &Value)> = if self.version <= LAST_LIST_VERSION
        {
            array(applications, &applications_at)?
                .iter()
                .enumerate()
                .map(|(index, app)| (format!("{applications_at}[{index}]"), None, app))
                .collect()
        } else {
            let mut keyed = Vec::new();
            for (key, app) in pmap(applications, &applications_at)? {
                let key = string(key, &format!("{applications_at} (key)"))?;
                keyed.push((format!("{applications_at}[{key}]"), Some(key), app));
            }
            keyed
        };
        for (at, key, application) in applications {
            let container = self.application(&at, key, uuid, application)?;
            self.import.containers.push(container);
        }
        Ok(())
    }

    fn manifestation(
        &mut self,
        at: &str,
        key: &str,
        node: NodeId,
        manifestation: &Value,
    ) -> Result<(), FileError> {
        let manifestation = object(manifestation, at, "Manifestation")?;
        let primary = member(manifestation, "primary", at, boolean)?;
        if !primary {
            self.replicas += 1;
            return Ok(());
        }
        let dataset_at = format!("{at}.dataset");
        let dataset = object(field(manifestation, "dataset", at)?, &dataset_at, "Dataset")?;
        let id_text = member(dataset, "dataset_id", &dataset_at, string)?;
        if id_text != key {
            return Err(error(
                &dataset_at,
                format!("dataset_id {id_text:?} differs from its key {key:?}"),
            ));
        }
        let deleted = member(dataset, "deleted", &dataset_at, boolean)?;
        let metadata_at = format!("{dataset_at}.metadata");
        let mut metadata = Map::new();
        for (name, value) in pmap(field(dataset, "metadata", &dataset_at)?, &metadata_at)? {
            metadata.insert(
                string(name, &format!("{metadata_at} (key)"))?.to_string(),
                value.clone(),
            );
        }
        let maximum_size = field(dataset, "maximum_size", &dataset_at)?;
        // Checked as the body of a create would be: a v4 UUID, metadata and size within
        // Flocker's limits.
        let mut body = json!({"primary": node, "dataset_id": id_text, "metadata": metadata});
        if !maximum_size.is_null() {
            body["maximum_size"] = maximum_size.clone();
        }
        check(&schema::DATASET_CREATE, &body, &dataset_at)?;
        let dataset_id = Uuid::try_parse(id_text).map_err(|e| error(&dataset_at, e.to_string()))?;
        if !self.seen.insert(dataset_id) {
            return Err(error(
                &dataset_at,
                format!("dataset {dataset_id} is the primary on more than one node"),
            ));
        }
        let metadata: Metadata = serde_json::from_value(Value::Object(metadata))
            .map_err(|e| error(&metadata_at, e.to_string()))?;
        let maximum_size = maximum_size.as_u64().and_then(NonZeroU64::new);
        self.import.datasets.push(Dataset {
            dataset_id,
            primary: node,
            deleted,
            metadata,
            maximum_size,
        });
        Ok(())
    }

    fn application(
        &mut self,
        at: &str,
        key: Option<&str>,
        node: NodeId,
        application: &Value,
    ) -> Result<Container, FileError> {
        let app = object(application, at, "Application")?;
        let name = member(app, "name", at, string)?;
        if key.is_some_and(|key| key != name) {
            return Err(error(
                at,
                format!(
                    "name {name:?} differs from its key {:?}",
                    key.unwrap_or_default()
                ),
            ));
        }
        let image_at = format!("{at}.image");
        let image = object(field(app, "image", at)?, &image_at, "DockerImage")?;
        let repository = member(image, "repository", &image_at, string)?;
        let tag = match image.get("tag") {
            None | Some(Value::Null) => "latest",
            Some(tag) => string(tag, &format!("{image_at}.tag"))?,
        };
        if repository.is_empty() || tag.is_empty() {
            return Err(error(
                &image_at,
                "the repository and the tag must not be empty",
            ));
        }
        let mut ports = BTreeSet::new();
        for (index, port) in array_or_empty(app.get("ports"), &format!("{at}.ports"))?
            .iter()
            .enumerate()
        {
            let port_at = format!("{at}.ports[{index}]");
            let port = object(port, &port_at, "Port")?;
            ports.insert(Port {
                internal: member(port, "internal_port", &port_at, number)?,
                external: member(port, "external_port", &port_at, number)?,
            });
        }
        let mut links = Vec::new();
        for (index, link) in array_or_empty(app.get("links"), &format!("{at}.links"))?
            .iter()
            .enumerate()
        {
            let link_at = format!("{at}.links[{index}]");
            let link = object(link, &link_at, "Link")?;
            links.push(Link {
                alias: member(link, "alias", &link_at, string)?.to_string(),
                local_port: member(link, "local_port", &link_at, number)?,
                remote_port: member(link, "remote_port", &link_at, number)?,
            });
        }
        let mut environment = BTreeMap::new();
        if let Some(env) = app.get("environment").filter(|env| !env.is_null()) {
            let env_at = format!("{at}.environment");
            for (name, value) in pmap(env, &env_at)? {
                let name = string(name, &format!("{env_at} (key)"))?;
                let value = string(value, &format!("{env_at}[{name}]"))?;
                environment.insert(name.to_string(), value.to_string());
            }
        }
        let volume = match app.get("volume") {
            None | Some(Value::Null) => None,
            Some(volume) => Some(attached_volume(volume, &format!("{at}.volume"))?),
        };
        let restart_policy = match app.get("restart_policy") {
            None | Some(Value::Null) => RestartPolicy::Never,
            Some(policy) => restart_policy(policy, &format!("{at}.restart_policy"))?,
        };
        let command_line = match app.get("command_line") {
            None | Some(Value::Null) => None,
            Some(command) => {
                let command_at = format!("{at}.command_line");
                let mut words = Vec::new();
                for (index, word) in array(command, &command_at)?.iter().enumerate() {
                    words.push(string(word, &format!("{command_at}[{index}]"))?.to_string());
                }
                Some(words)
            }
        };
        // Flocker's v5 → v6 migration gives every application `swappiness: 0`.
        let swappiness = match app.get("swappiness") {
            None if self.version < 6 => Some(0),
            None | Some(Value::Null) => None,
            Some(value) => Some(number(value, &format!("{at}.swappiness"))?),
        };
        let cpu_shares = optional_number(app.get("cpu_shares"), &format!("{at}.cpu_shares"))?;
        let memory_limit = optional_number(app.get("memory_limit"), &format!("{at}.memory_limit"))?;
        if app.get("running") == Some(&Value::Bool(false)) {
            self.stopped.push(name.to_string());
        }
        let container = Container {
            node_uuid: node,
            name: name.to_string(),
            image: format!("{repository}:{tag}"),
            restart_policy,
            ports,
            links,
            environment,
            volume,
            cpu_shares,
            memory_limit,
            command_line,
            swappiness,
        };
        // Checked as the body of a create: name, ports, links, limits within Flocker's rules.
        let mut body = serde_json::to_value(&container).expect("containers serialise");
        if let Some(volume) = body.as_object_mut().and_then(|b| b.remove("volume")) {
            body["volumes"] = json!([volume]);
        }
        check(&schema::CONTAINER_CREATE, &body, at)?;
        Ok(container)
    }

    fn leases(&mut self, leases: &Value) -> Result<(), FileError> {
        let at = "deployment.leases";
        for (index, (key, lease)) in pmap(leases, at)?.into_iter().enumerate() {
            let key = uuid(key, &format!("{at}[{index}] (key)"))?;
            let lease_at = format!("{at}[{key}]");
            let lease = object(lease, &lease_at, "Lease")?;
            let dataset_id = member(lease, "dataset_id", &lease_at, uuid)?;
            if dataset_id != key {
                return Err(error(
                    &lease_at,
                    format!("dataset_id {dataset_id} differs from its key"),
                ));
            }
            let node = member(lease, "node_id", &lease_at, uuid)?;
            let expires_at = match lease.get("expiration") {
                None | Some(Value::Null) => None,
                Some(time) => Some(datetime(time, &format!("{lease_at}.expiration"))?),
            };
            check(
                &schema::LEASE,
                &json!({"dataset_id": dataset_id, "node_uuid": node, "expires": null}),
                &lease_at,
            )?;
            self.import.leases.push(Lease {
                dataset_id,
                node_uuid: node,
                expires_at,
            });
        }
        Ok(())
    }
}

/// An `AttachedVolume`: the dataset of its manifestation, and its mount point.
fn attached_volume(volume: &Value, at: &str) -> Result<Volume, FileError> {
    let volume = object(volume, at, "AttachedVolume")?;
    let manifestation_at = format!("{at}.manifestation");
    let manifestation = object(
        field(volume, "manifestation", at)?,
        &manifestation_at,
        "Manifestation",
    )?;
    let dataset_at = format!("{manifestation_at}.dataset");
    let dataset = object(
        field(manifestation, "dataset", &manifestation_at)?,
        &dataset_at,
        "Dataset",
    )?;
    let id_at = format!("{dataset_at}.dataset_id");
    let id = string(field(dataset, "dataset_id", &dataset_at)?, &id_at)?;
    let dataset_id = Uuid::try_parse(id).map_err(|e| error(&id_at, format!("not a UUID: {e}")))?;
    let mountpoint_at = format!("{at}.mountpoint");
    let mountpoint = object(field(volume, "mountpoint", at)?, &mountpoint_at, "FilePath")?;
    let path = member(mountpoint, "path", &mountpoint_at, string)?;
    Ok(Volume {
        dataset_id,
        mountpoint: path.to_string(),
    })
}

fn restart_policy(policy: &Value, at: &str) -> Result<RestartPolicy, FileError> {
    let class = policy
        .get(CLASS)
        .and_then(Value::as_str)
        .ok_or_else(|| error(at, "expected a restart policy object"))?;
    match class {
        "RestartNever" => Ok(RestartPolicy::Never),
        "RestartAlways" => Ok(RestartPolicy::Always),
        "RestartOnFailure" => Ok(RestartPolicy::OnFailure {
            maximum_retry_count: optional_number(
                policy.get("maximum_retry_count"),
                &format!("{at}.maximum_retry_count"),
            )?,
        }),
        other => Err(error(at, format!("unknown restart policy {other:?}"))),
    }
}

/// Runs an API request schema over `body`, reporting every violation at `at`.
fn check(schema: &RequestSchema, body: &Value, at: &str) -> Result<(), FileError> {
    schema
        .check(body)
        .map_err(|errors| error(at, errors.join("; ")))
}

/// `value` as an object of class `class`.
fn object<'a>(
    value: &'a Value,
    at: &str,
    class: &str,
) -> Result<&'a Map<String, Value>, FileError> {
    let object = value.as_object().ok_or_else(|| {
        error(
            at,
            format!("expected a {class} object, found {}", kind(value)),
        )
    })?;
    match object.get(CLASS).and_then(Value::as_str) {
        Some(found) if found == class => Ok(object),
        Some(found) => Err(error(
            at,
            format!("expected a {class} object, found a {found}"),
        )),
        None => Err(error(
            at,
            format!("expected a {class} object (no \"{CLASS}\")"),
        )),
    }
}

/// `object`'s member `name`, read by `read` as the value at `at.name`, so that an error in it
/// names the member.
fn member<'a, T>(
    object: &'a Map<String, Value>,
    name: &str,
    at: &str,
    read: impl FnOnce(&'a Value, &str) -> Result<T, FileError>,
) -> Result<T, FileError> {
    read(field(object, name, at)?, &format!("{at}.{name}"))
}

fn field<'a>(object: &'a Map<String, Value>, name: &str, at: &str) -> Result<&'a Value, FileError> {
    object
        .get(name)
        .ok_or_else(|| error(at, format!("\"{name}\" is missing")))
}

/// A `PMap`'s entries, in file order.
fn pmap<'a>(value: &'a Value, at: &str) -> Result<Vec<(&'a Value, &'a Value)>, FileError> {
    let map = object(value, at, "PMap")?;
    let values = member(map, "values", at, array)?;
    values
        .iter()
        .enumerate()
        .map(|(index, pair)| match pair.as_array().map(Vec::as_slice) {
            Some([key, value]) => Ok((key, value)),
            _ => Err(error(
                &format!("{at}.values[{index}]"),
                "expected a [key, value] pair",
            )),
        })
        .collect()
}

fn array<'a>(value: &'a Value, at: &str) -> Result<&'a Vec<Value>, FileError> {
    value
        .as_array()
        .ok_or_else(|| error(at, format!("expected an array, found {}", kind(value))))
}

/// An optional set or vector: absent or `null` is empty.
fn array_or_empty<'a>(value: Option<&'a Value>, at: &str) -> Result<&'a [Value], FileError> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(value) => array(value, at).map(Vec::as_slice),
    }
}

fn string<'a>(value: &'a Value, at: &str) -> Result<&'a str, FileError> {
    value
        .as_str()
        .ok_or_else(|| error(at, format!("expected a string, found {}", kind(value))))
}

fn boolean(value: &Value, at: &str) -> Result<bool, FileError> {
    value
        .as_bool()
        .ok_or_else(|| error(at, format!("expected true or false, found {}", kind(value))))
}

/// A whole number that fits `T`.
fn number<T: TryFrom<u64>>(value: &Value, at: &str) -> Result<T, FileError> {
    value
        .as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            error(
                at,
                format!("expected a whole number in range, found {value}"),
            )
        })
}

fn optional_number<T: TryFrom<u64>>(
    value: Option<&Value>,
    at: &str,
) -> Result<Option<T>, FileError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => number(value, at).map(Some),
    }
}

fn uuid(value: &Value, at: &str) -> Result<Uuid, FileError> {
    let object = object(value, at, "UUID")?;
    let hex = member(object, "hex", at, string)?;
    Uuid::try_parse(hex).map_err(|e| error(at, format!("{hex:?} is not a UUID: {e}")))
}

/// A `datetime` as milliseconds since the epoch.
fn datetime(value: &Value, at: &str) -> Result<Timestamp, FileError> {
    let object = object(value, at, "datetime")?;
    let seconds = field(object, "seconds", at)?;
    seconds
        .as_f64()
        .filter(|s| s.is_finite() && s.abs() < 1e13)
        .map(|s| (s * 1000.0).round() as Timestamp)
        .ok_or_else(|| {
            error(
                &format!("{at}.seconds"),
                format!("expected seconds since the epoch, found {seconds}"),
            )
        })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written version 6 file: three datasets (one deleted, one with a maximum size and
    /// metadata, one with a replica elsewhere), two leases (one without expiry), two
    /// containers and a block device owner.
    const V6: &str = include_str!("../../tests/fixtures/flocker_v6.json");
    const NODE_A: &str = "5d5f4c2e-8b0e-4c1a-9f4e-1b2c3d4e5f60";
    const NODE_B: &str = "e2a1b3c4-d5e6-4f70-8a91-b2c3d4e5f607";
    const PG: &str = "11111111-2222-4333-8444-555555555555";

    fn v6() -> Value {
        serde_json::from_str(V6).unwrap()
    }

    /// The file with `change` made to its JSON.
    fn edited(change: impl FnOnce(&mut Value)) -> String {
        let mut document = v6();
        change(&mut document);
        document.to_string()
    }

    fn refusal(text: &str) -> String {
        parse(text).expect_err("refused").to_string()
    }

    fn node_a(document: &mut Value) -> &mut Value {
        &mut document["deployment"]["nodes"]["values"][0][1]
    }

    fn id(text: &str) -> Uuid {
        Uuid::parse_str(text).unwrap()
    }

    #[test]
    fn a_version_6_file_yields_every_dataset_lease_and_container() {
        let file = parse(V6).unwrap();
        assert_eq!(file.version, 6);
        let import = &file.import;
        assert_eq!(
            import.datasets.len(),
            3,
            "the replica is not a dataset of its own"
        );
        let pg = &import.datasets[0];
        assert_eq!(pg.dataset_id, id(PG));
        assert_eq!(pg.primary, id(NODE_A));
        assert!(!pg.deleted);
        assert_eq!(pg.maximum_size, NonZeroU64::new(134_217_728));
        assert_eq!(pg.metadata.get("name"), Some("pg-main"));
        assert_eq!(pg.metadata.get("owner"), Some("team-a"));
        let deleted = &import.datasets[1];
        assert!(deleted.deleted);
        assert!(deleted.metadata.is_empty());
        assert_eq!(deleted.maximum_size, None);
        assert_eq!(import.datasets[2].primary, id(NODE_B));

        assert_eq!(
            import.leases,
            vec![
                Lease {
                    dataset_id: id("01234567-89ab-4def-a123-456789abcdef"),
                    node_uuid: id(NODE_B),
                    expires_at: Some(4_102_444_800_000),
                },
                Lease {
                    dataset_id: id(PG),
                    node_uuid: id(NODE_A),
                    expires_at: None,
                },
            ]
        );

        let pgmain = &import.containers[0];
        assert_eq!(
            *pgmain,
            Container {
                node_uuid: id(NODE_A),
                name: "pgmain".into(),
                image: "postgres:9.6".into(),
                restart_policy: RestartPolicy::OnFailure {
                    maximum_retry_count: Some(3)
                },
                ports: [Port {
                    internal: 5432,
                    external: 15432
                }]
                .into(),
                links: vec![Link {
                    alias: "cache".into(),
                    local_port: 6379,
                    remote_port: 16379
                }],
                environment: [("PGDATA".into(), "/var/lib/postgresql/data".into())].into(),
                volume: Some(Volume {
                    dataset_id: id(PG),
                    mountpoint: "/var/lib/postgresql".into()
                }),
                cpu_shares: Some(512),
                memory_limit: Some(268_435_456),
                command_line: Some(vec!["postgres".into(), "-c".into(), "fsync=on".into()]),
                swappiness: Some(10),
            }
        );
        let cache = &import.containers[1];
        assert_eq!(cache.node_uuid, id(NODE_B));
        assert_eq!(cache.restart_policy, RestartPolicy::Always);
        assert_eq!(cache.swappiness, None);
        assert_eq!(cache.volume, None);

        assert_eq!(file.not_carried.len(), 3, "{:?}", file.not_carried);
        let all = file.not_carried.join("\n");
        assert!(all.contains("1 replica"), "{all}");
        assert!(all.contains("\"running\": false of cache"), "{all}");
        assert!(
            all.contains("1 entries of persistent_state.blockdevice_ownership"),
            "{all}"
        );
    }

    /// The version 6 document as Flocker wrote it at `version` (1 to 6): each step back undoes
    /// what Flocker's upgrade to the next version added.
    fn downgraded(version: u64) -> String {
        let mut document = v6();
        if version <= 5 {
            for pair in document["deployment"]["nodes"]["values"]
                .as_array_mut()
                .unwrap()
            {
                for app in pair[1]["applications"]["values"].as_array_mut().unwrap() {
                    app[1].as_object_mut().unwrap().remove("swappiness");
                }
            }
        }
        if version <= LAST_LIST_VERSION {
            let nodes: Vec<Value> = document["deployment"]["nodes"]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    let mut node = pair[1].clone();
                    let apps: Vec<Value> = node["applications"]["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|pair| pair[1].clone())
                        .collect();
                    node["applications"] = json!(apps);
                    node
                })
                .collect();
            document["deployment"]["nodes"] = json!(nodes);
        }
        let deployment = document["deployment"].as_object_mut().unwrap();
        if version < 4 {
            deployment.remove("persistent_state");
        }
        if version < FIRST_LEASE_VERSION {
            deployment.remove("leases");
        }
        if version == 1 {
            document = document["deployment"].take();
        } else {
            document["version"] = json!(version);
        }
        document.to_string()
    }

    #[test]
    fn every_older_version_yields_what_flocker_would_upgrade_it_to() {
        let expected = parse(V6).unwrap();
        for version in 1..=5 {
            let file =
                parse(&downgraded(version)).unwrap_or_else(|e| panic!("version {version}: {e}"));
            assert_eq!(file.version, version);
            let import = &file.import;
            assert_eq!(
                import.datasets, expected.import.datasets,
                "version {version}"
            );
            // Swappiness came with version 6; Flocker's upgrade sets it to 0.
            let mut containers = expected.import.containers.clone();
            for container in &mut containers {
                container.swappiness = Some(0);
            }
            assert_eq!(import.containers, containers, "version {version}");
            if version >= FIRST_LEASE_VERSION {
                assert_eq!(import.leases, expected.import.leases, "version {version}");
            } else {
                assert!(import.leases.is_empty(), "version {version}");
            }
            // Block device ownership came with version 4.
            let ownership = file
                .not_carried
                .iter()
                .any(|line| line.contains("blockdevice_ownership"));
            assert_eq!(ownership, version >= 4, "version {version}");
        }
    }

    #[test]
    fn a_version_3_file_without_leases_is_refused_where_they_are_missing() {
        let text = downgraded(3).replace("\"leases\"", "\"no_leases\"");
        assert_eq!(refusal(&text), "deployment: \"leases\" is missing");
    }

    #[test]
    fn flockers_own_version_1_sample_is_read() {
        // The shape of Flocker's `configuration_1_v1.json` test file: a bare Deployment whose
        // node lists one PostgreSQL application on the dataset it manifests.
        let text = json!({
            "$__class__$": "Deployment",
            "nodes": [{
                "$__class__$": "Node",
                "uuid": {"$__class__$": "UUID", "hex": NODE_A},
                "applications": [{
                    "$__class__$": "Application",
                    "name": "myapp",
                    "image": {"$__class__$": "DockerImage", "repository": "postgresql", "tag": "7.6"},
                    "ports": [],
                    "links": [],
                    "environment": {"$__class__$": "PMap", "values": []},
                    "volume": {
                        "$__class__$": "AttachedVolume",
                        "mountpoint": {"$__class__$": "FilePath", "path": "/xxx/yyy"},
                        "manifestation": {
                            "$__class__$": "Manifestation",
                            "primary": true,
                            "dataset": dataset_v1(PG),
                        },
                    },
                    "restart_policy": {"$__class__$": "RestartNever"},
                    "memory_limit": null,
                    "cpu_shares": null,
                    "command_line": null,
                    "running": true,
                }],
                "manifestations": {"$__class__$": "PMap", "values": [[PG, {
                    "$__class__$": "Manifestation",
                    "primary": true,
                    "dataset": dataset_v1(PG),
                }]]},
            }],
        })
        .to_string();
        let file = parse(&text).unwrap();
        assert_eq!(file.version, 1);
        assert_eq!(file.import.datasets.len(), 1);
        assert_eq!(file.import.datasets[0].dataset_id, id(PG));
        assert_eq!(file.import.datasets[0].primary.to_string(), NODE_A);
        assert_eq!(file.import.containers.len(), 1);
        assert_eq!(file.import.containers[0].name, "myapp");
        assert_eq!(file.import.containers[0].image, "postgresql:7.6");
        assert!(file.import.leases.is_empty());
        assert!(file.not_carried.is_empty(), "{:?}", file.not_carried);
    }

    fn dataset_v1(id: &str) -> Value {
        json!({
            "$__class__$": "Dataset",
            "dataset_id": id,
            "deleted": false,
            "maximum_size": null,
            "metadata": {"$__class__$": "PMap", "values": [["name", "myapp"]]},
        })
    }

    #[test]
    fn other_versions_are_refused_naming_the_version_and_those_supported() {
        for version in [0, 7] {
            let message = refusal(&edited(|document| document["version"] = json!(version)));
            assert!(
                message.contains(&format!("version {version} is not supported"))
                    && message.contains("1 to 6"),
                "{message}"
            );
        }
        let bare = refusal(r#"{"nodes": []}"#);
        assert!(
            bare.contains("not a Flocker configuration") && bare.contains("1 to 6"),
            "{bare}"
        );
    }

    #[test]
    fn input_that_is_not_a_configuration_is_refused() {
        assert!(refusal("{").contains("not valid JSON"));
        assert!(refusal("[]").contains("expected a JSON object"));
        let message = refusal(&edited(|document| {
            document["deployment"]
                .as_object_mut()
                .unwrap()
                .remove("nodes");
        }));
        assert_eq!(message, "deployment: \"nodes\" is missing");
    }

    #[test]
    fn a_node_uuid_of_another_version_is_refused_where_it_is() {
        let message = refusal(&edited(|document| {
            // A version-1 UUID, which Flocker's clients would misread and floe refuses.
            node_a(document)["uuid"]["hex"] = json!("5d5f4c2e-8b0e-1c1a-9f4e-1b2c3d4e5f60");
        }));
        assert!(
            message.starts_with(&format!("deployment.nodes[{NODE_A}].uuid: ")),
            "{message}"
        );
        let message = refusal(&edited(|document| {
            let bad = json!("5d5f4c2e-8b0e-1c1a-9f4e-1b2c3d4e5f60");
            node_a(document)["uuid"]["hex"] = bad.clone();
            document["deployment"]["nodes"]["values"][0][0]["hex"] = bad;
        }));
        assert!(
            message.contains("].uuid: ") && message.contains("version-4"),
            "{message}"
        );
    }

    #[test]
    fn a_malformed_manifestation_is_refused_with_its_path() {
        let message = refusal(&edited(|document| {
            let manifestation = &mut node_a(document)["manifestations"]["values"][0][1];
            manifestation.as_object_mut().unwrap().remove("dataset");
        }));
        assert_eq!(
            message,
            format!("deployment.nodes[{NODE_A}].manifestations[{PG}]: \"dataset\" is missing")
        );
        let message = refusal(&edited(|document| {
            node_a(document)["manifestations"]["values"][0][1]["dataset"]["deleted"] = json!("no");
        }));
        assert!(message.ends_with(".dataset.deleted: expected true or false, found a string"));
        let message = refusal(&edited(|document| {
            node_a(document)["manifestations"]["values"][0][1]["$__class__$"] = json!("Dataset");
        }));
        assert!(
            message.contains("expected a Manifestation object, found a Dataset"),
            "{message}"
        );
        let message = refusal(&edited(|document| {
            node_a(document)["manifestations"]["values"][0] = json!(["only a key"]);
        }));
        assert!(
            message.contains(".manifestations.values[0]: expected a [key, value] pair"),
            "{message}"
        );
    }

    #[test]
    fn a_dataset_the_api_would_refuse_is_refused_with_its_path() {
        let message = refusal(&edited(|document| {
            node_a(document)["manifestations"]["values"][0][1]["dataset"]["maximum_size"] =
                json!(1024);
        }));
        assert!(
            message.starts_with(&format!(
                "deployment.nodes[{NODE_A}].manifestations[{PG}].dataset: "
            )) && message.contains("1024"),
            "{message}"
        );
        let message = refusal(&edited(|document| {
            node_a(document)["manifestations"]["values"][0][1]["dataset"]["metadata"]["values"]
                [0][1] = json!("x".repeat(300));
        }));
        assert!(message.contains(".dataset: "), "{message}");
        let message = refusal(&edited(|document| {
            // The same dataset as the primary of node B too.
            let nodes = &mut document["deployment"]["nodes"]["values"];
            nodes[1][1]["manifestations"]["values"][1][1]["primary"] = json!(true);
        }));
        assert!(
            message.contains("primary on more than one node"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_application_or_lease_is_refused_with_its_path() {
        let message = refusal(&edited(|document| {
            node_a(document)["applications"]["values"][0][1]["cpu_shares"] = json!(0);
        }));
        assert!(
            message.starts_with(&format!(
                "deployment.nodes[{NODE_A}].applications[pgmain]: "
            )),
            "{message}"
        );
        let message = refusal(&edited(|document| {
            node_a(document)["applications"]["values"][0][1]["restart_policy"] =
                json!({"$__class__$": "RestartSometimes"});
        }));
        assert!(
            message.contains("unknown restart policy \"RestartSometimes\""),
            "{message}"
        );
        let message = refusal(&edited(|document| {
            document["deployment"]["leases"]["values"][1][1]["expiration"] =
                json!({"$__class__$": "datetime", "seconds": "soon"});
        }));
        assert_eq!(
            message,
            format!(
                "deployment.leases[{PG}].expiration.seconds: expected seconds since the epoch, found \"soon\""
            )
        );
        let message = refusal(&edited(|document| {
            document["deployment"]["leases"]["values"][1][1]["node_id"]["hex"] =
                json!("5d5f4c2e-8b0e-1c1a-9f4e-1b2c3d4e5f60");
        }));
        assert!(
            message.starts_with(&format!("deployment.leases[{PG}]: ")),
            "{message}"
        );
    }
}
