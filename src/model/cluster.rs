//! The cluster's actual state, as node agents report it: which nodes are alive, where each
//! dataset is mounted, which datasets exist but are mounted nowhere, which containers run.
//! Held in memory only (as in Flocker): it is rebuilt from agents' reports within one report
//! interval of a restart.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::container::Container;
use super::{DatasetId, NodeId, Timestamp};

/// Everything one agent says about its node. Each report replaces the node's previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The address the node is reached at (an IP literal: Kubernetes matches on it).
    pub host: IpAddr,
    /// Changes at every boot of the node, so that state from before a reboot is never mixed
    /// with state from after it.
    pub era: Uuid,
    /// Datasets mounted on the node, with their mount paths and real sizes.
    pub datasets: Vec<MountedDataset>,
    /// Datasets the node can see but has not mounted.
    pub nonmanifest_datasets: Vec<SeenDataset>,
    /// Containers on the node.
    pub containers: Vec<RunningContainer>,
}

impl NodeReport {
    /// A dataset the report names twice in one list (mounted twice, or seen twice). A node
    /// mounts a dataset at one path, as Flocker's node state maps each dataset to one path;
    /// a report that says otherwise is a broken agent's, not a state to show.
    pub fn dataset_named_twice(&self) -> Option<DatasetId> {
        let mut seen = std::collections::HashSet::new();
        let mut mounted = self.datasets.iter().map(|mounted| mounted.dataset_id);
        if let Some(twice) = mounted.find(|id| !seen.insert(*id)) {
            return Some(twice);
        }
        seen.clear();
        self.nonmanifest_datasets
            .iter()
            .map(|unmounted| unmounted.dataset_id)
            .find(|id| !seen.insert(*id))
    }
}

/// A dataset mounted on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedDataset {
    /// The dataset.
    pub dataset_id: DatasetId,
    /// Where it is mounted.
    pub path: String,
    /// Its real size in bytes, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

/// A dataset that exists but is not mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenDataset {
    /// The dataset.
    pub dataset_id: DatasetId,
    /// Its real size in bytes, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

/// A container on a node and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningContainer {
    /// The container (its `node_uuid` is the reporting node).
    pub container: Container,
    /// Whether it is running.
    pub running: bool,
}

/// A node's last report and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// The node.
    pub uuid: NodeId,
    /// What it last reported.
    pub report: NodeReport,
    /// When that report arrived.
    pub last_seen: Timestamp,
}

/// One entry of `GET /v1/state/datasets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateDataset {
    /// The dataset.
    pub dataset_id: DatasetId,
    /// The node it is mounted on; absent for a dataset mounted nowhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<NodeId>,
    /// Where it is mounted; absent for a dataset mounted nowhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its real size, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_size: Option<u64>,
}

/// Every live node's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    nodes: OrdMap<NodeId, Arc<NodeState>>,
}

impl ClusterState {
    /// Records a node's report. Returns whether anything a reader can see changed (a refresh
    /// that repeats the last report only moves `last_seen`).
    pub fn report(&mut self, uuid: NodeId, report: NodeReport, now: Timestamp) -> bool {
        let changed = self
            .nodes
            .get(&uuid)
            .is_none_or(|previous| previous.report != report);
        self.nodes.insert(
            uuid,
            Arc::new(NodeState {
                uuid,
                report,
                last_seen: now,
            }),
        );
        changed
    }

    /// Forgets a node (its agent said goodbye). Returns whether it was known.
    pub fn forget(&mut self, uuid: &NodeId) -> bool {
        self.nodes.remove(uuid).is_some()
    }

    /// Forgets every node not heard from since `before`; returns them.
    pub fn expire(&mut self, before: Timestamp) -> Vec<NodeId> {
        let silent: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| node.last_seen < before)
            .map(|node| node.uuid)
            .collect();
        for uuid in &silent {
            self.nodes.remove(uuid);
        }
        silent
    }

    /// The oldest `last_seen` among nodes, if any.
    pub fn oldest_report(&self) -> Option<Timestamp> {
        self.nodes.values().map(|node| node.last_seen).min()
    }

    /// Every live node, ordered by id.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<NodeState>> {
        self.nodes.values()
    }

    /// The node whose current boot has this era.
    pub fn node_by_era(&self, era: &Uuid) -> Option<NodeId> {
        self.nodes
            .values()
            .find(|node| &node.report.era == era)
            .map(|node| node.uuid)
    }

    /// Flocker's `/v1/state/datasets`: every mounted dataset with its node and path (nodes in
    /// id order), then every dataset some node sees but no node has mounted.
    pub fn datasets(&self) -> Vec<StateDataset> {
        let mut listed = Vec::new();
        let mut mounted = BTreeSet::new();
        for node in self.nodes.values() {
            for dataset in &node.report.datasets {
                mounted.insert(dataset.dataset_id);
                listed.push(StateDataset {
                    dataset_id: dataset.dataset_id,
                    primary: Some(node.uuid),
                    path: Some(dataset.path.clone()),
                    maximum_size: dataset.maximum_size,
                });
            }
        }
        let mut unmounted = std::collections::BTreeMap::new();
        for node in self.nodes.values() {
            for dataset in &node.report.nonmanifest_datasets {
                if !mounted.contains(&dataset.dataset_id) {
                    let size = unmounted.entry(dataset.dataset_id).or_insert(None);
                    *size = size.or(dataset.maximum_size);
                }
            }
        }
        listed.extend(
            unmounted
                .into_iter()
                .map(|(dataset_id, maximum_size)| StateDataset {
                    dataset_id,
                    primary: None,
                    path: None,
                    maximum_size,
                }),
        );
        listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(era: Uuid, mounted: &[DatasetId], seen: &[DatasetId]) -> NodeReport {
        NodeReport {
            host: "10.0.0.1".parse().unwrap(),
            era,
            datasets: mounted
                .iter()
                .map(|id| MountedDataset {
                    dataset_id: *id,
                    path: format!("/flocker/{id}"),
                    maximum_size: None,
                })
                .collect(),
            nonmanifest_datasets: seen
                .iter()
                .map(|id| SeenDataset {
                    dataset_id: *id,
                    maximum_size: Some(1 << 30),
                })
                .collect(),
            containers: Vec::new(),
        }
    }

    #[test]
    fn mounted_datasets_come_first_and_unmounted_ones_once() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (d1, d2) = (Uuid::new_v4(), Uuid::new_v4());
        let mut state = ClusterState::default();
        assert!(state.report(a, report(Uuid::new_v4(), &[], &[d1, d2]), 0));
        assert!(state.report(b, report(Uuid::new_v4(), &[d1], &[d2]), 0));
        let listed = state.datasets();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].primary, Some(b));
        assert_eq!(listed[0].dataset_id, d1);
        assert_eq!(listed[1].dataset_id, d2);
        assert_eq!(listed[1].primary, None);
        assert_eq!(listed[1].maximum_size, Some(1 << 30));
    }

    #[test]
    fn refreshes_change_nothing_visible_and_silent_nodes_expire() {
        let node = Uuid::new_v4();
        let era = Uuid::new_v4();
        let mut state = ClusterState::default();
        assert!(state.report(node, report(era, &[], &[]), 0));
        assert!(!state.report(node, report(era, &[], &[]), 1_000));
        assert_eq!(state.node_by_era(&era), Some(node));
        assert!(state.expire(1_000).is_empty());
        assert_eq!(state.expire(1_001), vec![node]);
        assert_eq!(state.node_by_era(&era), None);
    }
}
