//! Containers (Flocker's legacy container configuration, still served): which image runs
//! where, with its ports, links, environment and at most one attached dataset.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{DatasetId, NodeId};

/// A container as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// The node it runs on.
    pub node_uuid: NodeId,
    /// Its name, unique across the cluster.
    pub name: String,
    /// The image as `repository:tag` (a missing tag is `latest`).
    pub image: String,
    /// What happens when it stops.
    pub restart_policy: RestartPolicy,
    /// Published ports, sorted.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ports: BTreeSet<Port>,
    /// Links to other containers, in the order given until the container is created (the
    /// duplicate checks report the first clash in that order, as Flocker does), sorted after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// The attached dataset, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Volume>,
    /// Relative CPU weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u32>,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// The command to run instead of the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<Vec<String>>,
    /// Kept, but never shown (Flocker never echoed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<u8>,
}

/// Flocker's representation is the content alone.
impl super::Tagged for Container {
    const SHOWS_TIMES: bool = false;
}

/// A restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart (the default).
    #[default]
    Never,
    /// Always restart.
    Always,
    /// Restart after a failure, at most this many times if set.
    OnFailure {
        /// The retry limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        maximum_retry_count: Option<u32>,
    },
}

/// A published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    /// Inside the container.
    pub internal: u16,
    /// On the node.
    pub external: u16,
}

/// A link to another container's port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    /// The alias the container sees.
    pub alias: String,
    /// The port inside this container.
    pub local_port: u16,
    /// The port it reaches.
    pub remote_port: u16,
}

/// An attached dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The dataset.
    pub dataset_id: DatasetId,
    /// Where it is mounted inside the container.
    pub mountpoint: String,
}

/// Normalises an image name as Docker does: `nginx` → `nginx:latest`,
/// `registry:5000/app` → `registry:5000/app:latest`, `app:1.2` unchanged. `None` for a name
/// with an empty repository or tag (`:1.2`, `app:`), which no registry serves.
pub fn normalise_image(image: &str) -> Option<String> {
    let (repository, tag) = match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image, "latest"),
    };
    (!repository.is_empty() && !tag.is_empty()).then(|| format!("{repository}:{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_get_a_tag() {
        let normal = |image| normalise_image(image).unwrap();
        assert_eq!(normal("nginx"), "nginx:latest");
        assert_eq!(normal("busybox:1.2"), "busybox:1.2");
        assert_eq!(normal("registry:5000/app"), "registry:5000/app:latest");
        assert_eq!(normal("registry:5000/app:v1"), "registry:5000/app:v1");
        assert_eq!(normalise_image(":1.2"), None);
        assert_eq!(normalise_image("app:"), None);
    }

    #[test]
    fn restart_policies_render_as_flocker_does() {
        let render = |policy: RestartPolicy| serde_json::to_value(policy).unwrap();
        assert_eq!(
            render(RestartPolicy::Never),
            serde_json::json!({"name": "never"})
        );
        assert_eq!(
            render(RestartPolicy::OnFailure {
                maximum_retry_count: Some(5)
            }),
            serde_json::json!({"name": "on-failure", "maximum_retry_count": 5})
        );
        assert_eq!(
            render(RestartPolicy::OnFailure {
                maximum_retry_count: None
            }),
            serde_json::json!({"name": "on-failure"})
        );
    }
}
