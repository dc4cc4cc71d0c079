//! The agent's decision, as a pure function: from the configuration, the leases, the cluster
//! state and what is mounted on this node, which datasets to mount, release or remove, and what
//! to report. No I/O, so that every rule can be tested on its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::cluster::{MountedDataset, SeenDataset};
use crate::model::{DatasetId, NodeId};

/// A dataset as `GET /v1/configuration/datasets` lists it (the fields the agent uses).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConfiguredDataset {
    /// The dataset.
    pub dataset_id: DatasetId,
    /// The node that should hold it.
    pub primary: NodeId,
    /// Whether it has been deleted (deleted datasets stay listed forever).
    #[serde(default)]
    pub deleted: bool,
    /// Its configured size, if any.
    #[serde(default)]
    pub maximum_size: Option<u64>,
}

/// A lease as `GET /v1/configuration/leases` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LeaseView {
    /// The leased dataset.
    pub dataset_id: DatasetId,
    /// The node that holds the lease.
    pub node_uuid: NodeId,
    /// Seconds left, or `None` for a lease that never expires.
    pub expires: Option<f64>,
}

impl LeaseView {
    /// Whether the lease still binds: one with no time left is about to be swept away by the
    /// control service and no longer protects anything.
    pub fn is_live(&self) -> bool {
        self.expires.is_none_or(|seconds| seconds > 0.0)
    }
}

/// One entry of `GET /v1/state/datasets`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StateView {
    /// The dataset.
    pub dataset_id: DatasetId,
    /// The node it is mounted on; absent when mounted nowhere.
    #[serde(default)]
    pub primary: Option<NodeId>,
    /// Where it is mounted.
    #[serde(default)]
    pub path: Option<String>,
}

/// What this node holds of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Here {
    /// Mounted here (its directory exists).
    Mounted,
    /// Just released: reported once as non-manifest, so that the state shows the move, and
    /// then forgotten.
    Released,
}

/// A change to make on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create the dataset's directory: it becomes [`Here::Mounted`].
    Mount(DatasetId),
    /// Let the dataset go to another node: its directory goes, it becomes [`Here::Released`].
    Release(DatasetId),
    /// Destroy a deleted dataset: its directory goes and it is no longer reported.
    Remove(DatasetId),
    /// Stop tracking a released dataset that has since been deleted (nothing on disk).
    Forget(DatasetId),
}

impl Action {
    /// The dataset it concerns.
    pub fn dataset(&self) -> DatasetId {
        match *self {
            Action::Mount(id) | Action::Release(id) | Action::Remove(id) | Action::Forget(id) => id,
        }
    }

    /// What this node holds after the action succeeded.
    pub fn apply(&self, here: &mut BTreeMap<DatasetId, Here>) {
        match *self {
            Action::Mount(id) => {
                here.insert(id, Here::Mounted);
            }
            Action::Release(id) => {
                here.insert(id, Here::Released);
            }
            Action::Remove(id) | Action::Forget(id) => {
                here.remove(&id);
            }
        }
    }
}

/// Why a dataset is left as it is although the configuration asks for a change; worth one
/// log line when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Blocked {
    /// Kept mounted here: a lease held by `holder` forbids moving or destroying it.
    Leased {
        /// The dataset.
        dataset: DatasetId,
        /// The lease's holder.
        holder: NodeId,
    },
    /// Not mounted here yet: `holder` still has it mounted and must release it first.
    HeldElsewhere {
        /// The dataset.
        dataset: DatasetId,
        /// The node that still has it.
        holder: NodeId,
    },
}

/// The datasets part of an agent's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Mounted datasets, with their paths.
    pub datasets: Vec<MountedDataset>,
    /// Datasets seen but not mounted here.
    pub nonmanifest_datasets: Vec<SeenDataset>,
}

/// What the agent knows when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// This node.
    pub me: NodeId,
    /// The directory that holds one directory per dataset mounted here (absolute).
    pub root: &'a Path,
    /// The configuration's datasets.
    pub configuration: &'a [ConfiguredDataset],
    /// The configuration's leases.
    pub leases: &'a [LeaseView],
    /// The cluster state's datasets.
    pub state: &'a [StateView],
    /// What this node holds.
    pub here: &'a BTreeMap<DatasetId, Here>,
}

/// The decision: the actions to take, and the report to send once they succeeded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Changes to make on this node.
    pub actions: Vec<Action>,
    /// Datasets left alone against the configuration's wish, and why.
    pub blocked: Vec<Blocked>,
    /// The report once every action has succeeded.
    pub report: Report,
}

/// The path at which `dataset` is mounted under `root`.
pub fn mount_path(root: &Path, dataset: DatasetId) -> PathBuf {
    root.join(dataset.to_string())
}

/// Decides what to do; see the module documentation of [`crate::agent`] for the rules.
pub fn decide(inputs: &Inputs<'_>) -> Plan {
    let me = inputs.me;
    let configured: BTreeMap<DatasetId, &ConfiguredDataset> = inputs
        .configuration
        .iter()
        .map(|dataset| (dataset.dataset_id, dataset))
        .collect();
    let leases: BTreeMap<DatasetId, NodeId> = inputs
        .leases
        .iter()
        .filter(|lease| lease.is_live())
        .map(|lease| (lease.dataset_id, lease.node_uuid))
        .collect();
    // Our own earlier report (from this era or a previous one) never blocks us.
    let elsewhere: BTreeMap<DatasetId, NodeId> = inputs
        .state
        .iter()
        .filter_map(|seen| Some((seen.dataset_id, seen.primary?)))
        .filter(|(_, node)| *node != me)
        .collect();

    let mut plan = Plan::default();
    let mount_or_wait = |plan: &mut Plan, dataset: DatasetId| match elsewhere.get(&dataset) {
        Some(&holder) => plan
            .blocked
            .push(Blocked::HeldElsewhere { dataset, holder }),
        None => plan.actions.push(Action::Mount(dataset)),
    };

    for (&dataset, &held) in inputs.here {
        let wanted = configured.get(&dataset).filter(|d| !d.deleted);
        let lease = leases.get(&dataset).copied();
        match (wanted, held) {
            (Some(d), Here::Mounted) if d.primary == me => {}
            (Some(d), Here::Released) if d.primary == me => mount_or_wait(&mut plan, dataset),
            // Moved away: a lease held by any node but the new primary pins it here.
            (Some(d), Here::Mounted) => match lease.filter(|holder| *holder != d.primary) {
                Some(holder) => plan.blocked.push(Blocked::Leased { dataset, holder }),
                None => plan.actions.push(Action::Release(dataset)),
            },
            // Deleted or gone from the configuration: any lease pins it here.
            (None, Here::Mounted) => match lease {
                Some(holder) => plan.blocked.push(Blocked::Leased { dataset, holder }),
                None if configured.contains_key(&dataset) => {
                    plan.actions.push(Action::Remove(dataset))
                }
                None => plan.actions.push(Action::Release(dataset)),
            },
            (Some(_), Here::Released) => {}
            (None, Here::Released) if configured.contains_key(&dataset) => {
                plan.actions.push(Action::Forget(dataset))
            }
            (None, Here::Released) => {}
        }
    }
    for dataset in inputs.configuration {
        if !dataset.deleted
            && dataset.primary == me
            && !inputs.here.contains_key(&dataset.dataset_id)
        {
            mount_or_wait(&mut plan, dataset.dataset_id);
        }
    }

    let mut after = inputs.here.clone();
    for action in &plan.actions {
        action.apply(&mut after);
    }
    plan.report = report(inputs.root, &after, inputs.configuration);
    plan
}

/// The report of what this node holds. Sizes are the configured ones: the directory backend
/// has none of its own, and a volume would have been created at that size.
pub fn report(
    root: &Path,
    here: &BTreeMap<DatasetId, Here>,
    configuration: &[ConfiguredDataset],
) -> Report {
    let sizes: BTreeMap<DatasetId, Option<u64>> = configuration
        .iter()
        .map(|dataset| (dataset.dataset_id, dataset.maximum_size))
        .collect();
    let size = |dataset: &DatasetId| sizes.get(dataset).copied().flatten();
    let mut report = Report::default();
    for (&dataset_id, &held) in here {
        match held {
            Here::Mounted => report.datasets.push(MountedDataset {
                dataset_id,
                path: mount_path(root, dataset_id).display().to_string(),
                maximum_size: size(&dataset_id),
            }),
            Here::Released => report.nonmanifest_datasets.push(SeenDataset {
                dataset_id,
                maximum_size: size(&dataset_id),
            }),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    struct World {
        me: NodeId,
        other: NodeId,
        third: NodeId,
        root: PathBuf,
        configuration: Vec<ConfiguredDataset>,
        leases: Vec<LeaseView>,
        state: Vec<StateView>,
        here: BTreeMap<DatasetId, Here>,
    }

    impl World {
        fn new() -> Self {
            World {
                me: Uuid::new_v4(),
                other: Uuid::new_v4(),
                third: Uuid::new_v4(),
                root: PathBuf::from("/srv/floe"),
                configuration: Vec::new(),
                leases: Vec::new(),
                state: Vec::new(),
                here: BTreeMap::new(),
            }
        }

        fn configure(&mut self, primary: NodeId, deleted: bool) -> DatasetId {
            let dataset_id = Uuid::new_v4();
            self.configuration.push(ConfiguredDataset {
                dataset_id,
                primary,
                deleted,
                maximum_size: Some(1 << 20),
            });
            dataset_id
        }

        fn lease(&mut self, dataset_id: DatasetId, node_uuid: NodeId, expires: Option<f64>) {
            self.leases.push(LeaseView {
                dataset_id,
                node_uuid,
                expires,
            });
        }

        fn mounted_on(&mut self, dataset_id: DatasetId, node: NodeId) {
            self.state.push(StateView {
                dataset_id,
                primary: Some(node),
                path: Some(format!("/elsewhere/{dataset_id}")),
            });
        }

        fn decide(&self) -> Plan {
            decide(&Inputs {
                me: self.me,
                root: &self.root,
                configuration: &self.configuration,
                leases: &self.leases,
                state: &self.state,
                here: &self.here,
            })
        }
    }

    #[test]
    fn mounts_its_datasets_once_no_other_node_has_them() {
        let mut world = World::new();
        let free = world.configure(world.me, false);
        let busy = world.configure(world.me, false);
        let theirs = world.configure(world.other, false);
        let gone = world.configure(world.me, true);
        world.mounted_on(busy, world.other);
        world.mounted_on(theirs, world.other);
        // Our own stale report from an earlier era does not block us.
        world.mounted_on(free, world.me);

        let plan = world.decide();
        assert_eq!(plan.actions, vec![Action::Mount(free)]);
        assert_eq!(
            plan.blocked,
            vec![Blocked::HeldElsewhere {
                dataset: busy,
                holder: world.other
            }]
        );
        assert_eq!(
            plan.report.datasets,
            vec![MountedDataset {
                dataset_id: free,
                path: format!("/srv/floe/{free}"),
                maximum_size: Some(1 << 20),
            }]
        );
        assert!(plan.report.nonmanifest_datasets.is_empty());
        assert!(!plan.actions.contains(&Action::Mount(gone)));
    }

    #[test]
    fn moved_datasets_are_released_unless_a_lease_pins_them() {
        let mut world = World::new();
        let moved = world.configure(world.other, false);
        let leased_by_me = world.configure(world.other, false);
        let leased_by_third = world.configure(world.other, false);
        let leased_by_target = world.configure(world.other, false);
        let lease_expired = world.configure(world.other, false);
        for id in [
            moved,
            leased_by_me,
            leased_by_third,
            leased_by_target,
            lease_expired,
        ] {
            world.here.insert(id, Here::Mounted);
        }
        world.lease(leased_by_me, world.me, None);
        world.lease(leased_by_third, world.third, Some(30.0));
        world.lease(leased_by_target, world.other, None);
        world.lease(lease_expired, world.me, Some(-0.2));

        let plan = world.decide();
        let mut released = vec![moved, leased_by_target, lease_expired];
        released.sort();
        let mut expected: Vec<Action> = released.iter().map(|id| Action::Release(*id)).collect();
        expected.sort_by_key(Action::dataset);
        let mut actions = plan.actions.clone();
        actions.sort_by_key(Action::dataset);
        assert_eq!(actions, expected);
        let mut blocked = plan.blocked.clone();
        blocked.sort();
        let mut expected_blocked = vec![
            Blocked::Leased {
                dataset: leased_by_me,
                holder: world.me,
            },
            Blocked::Leased {
                dataset: leased_by_third,
                holder: world.third,
            },
        ];
        expected_blocked.sort();
        assert_eq!(blocked, expected_blocked);
        // Released datasets are reported as non-manifest, pinned ones as still mounted.
        let nonmanifest: Vec<DatasetId> = plan
            .report
            .nonmanifest_datasets
            .iter()
            .map(|seen| seen.dataset_id)
            .collect();
        assert_eq!(nonmanifest, released);
        assert_eq!(plan.report.datasets.len(), 2);

        // Once reported, a released dataset that is still someone else's needs nothing more.
        world.here = BTreeMap::from([(moved, Here::Released)]);
        let plan = world.decide();
        assert!(plan.actions.is_empty());
        assert_eq!(plan.report.nonmanifest_datasets.len(), 1);
    }

    #[test]
    fn deleted_datasets_are_removed_unless_leased_and_unknown_ones_released() {
        let mut world = World::new();
        let deleted = world.configure(world.me, true);
        let deleted_leased = world.configure(world.me, true);
        let deleted_released = world.configure(world.other, true);
        let unknown = Uuid::new_v4();
        world.here.insert(deleted, Here::Mounted);
        world.here.insert(deleted_leased, Here::Mounted);
        world.here.insert(deleted_released, Here::Released);
        world.here.insert(unknown, Here::Mounted);
        world.lease(deleted_leased, world.other, Some(5.0));

        let plan = world.decide();
        let mut actions = plan.actions.clone();
        actions.sort_by_key(Action::dataset);
        let mut expected = vec![
            Action::Remove(deleted),
            Action::Forget(deleted_released),
            Action::Release(unknown),
        ];
        expected.sort_by_key(Action::dataset);
        assert_eq!(actions, expected);
        assert_eq!(
            plan.blocked,
            vec![Blocked::Leased {
                dataset: deleted_leased,
                holder: world.other
            }]
        );
        assert_eq!(plan.report.datasets.len(), 1);
        assert_eq!(plan.report.datasets[0].dataset_id, deleted_leased);
        assert_eq!(plan.report.nonmanifest_datasets.len(), 1);
        assert_eq!(plan.report.nonmanifest_datasets[0].dataset_id, unknown);
    }

    #[test]
    fn a_dataset_moved_back_before_its_release_was_reported_is_mounted_again() {
        let mut world = World::new();
        let back = world.configure(world.me, false);
        world.here.insert(back, Here::Released);
        assert_eq!(world.decide().actions, vec![Action::Mount(back)]);
        world.mounted_on(back, world.other);
        let plan = world.decide();
        assert!(plan.actions.is_empty());
        assert_eq!(plan.report.nonmanifest_datasets.len(), 1);
    }
}
