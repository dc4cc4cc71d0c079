//! The whole desired configuration and the operations that change it.
//!
//! `Configuration` is a value built from persistent maps: cloning it is O(1) and a changed copy
//! shares all untouched entries with the original. The store keeps one as its published
//! snapshot and applies operations to a clone, so readers never see a half-applied change and
//! the cost of a write does not grow with the number of datasets.
//!
//! [`Configuration::apply`] dispatches each operation to its kind of resource: one submodule
//! each (datasets, leases, containers, packages, mathematicians) holds how operations change it.

mod containers;
mod datasets;
mod leases;
mod mathematicians;
mod packages;

use std::sync::Arc;

use imbl::OrdMap;

use super::age_index::AgeIndex;
use super::container::Container;
use super::dataset_table::DatasetTable;
use super::lease::Timestamp;
use super::mathematician::{Mathematician, VersionHash};
use super::package::{MetadataError, Package};
use super::precondition::ResourceVersion;
use super::{ContentTag, Dataset, DatasetId, Lease, Metadata, NodeId, Tagged, canonical_and_tag};
use bytes::Bytes;
use uuid::Uuid;

/// What applying an operation gives: what it produced and the changes to persist, or why it
/// was refused.
type Applied = Result<(Outcome, Vec<Change>), Rejection>;

/// A stored resource with its version: the strong entity tag of its content, computed once
/// when the resource is written, and when it was created and last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The resource.
    pub value: T,
    /// Digest of the resource's canonical content, and of its times for a kind whose
    /// representation shows them ([`Tagged`]).
    pub etag: ContentTag,
    /// The canonical JSON form the tag was computed from. Kept because for Flocker's datasets
    /// it is, byte for byte, the representation: reads serve it without serialising.
    pub canonical: Bytes,
    /// When it was created.
    pub created: Timestamp,
    /// When it last changed.
    pub updated: Timestamp,
}

impl<T: Tagged> Versioned<T> {
    /// Wraps `value`, computing its tag: of its content, and of the times too for a kind whose
    /// representation shows them.
    pub fn new(value: T, created: Timestamp, updated: Timestamp) -> Arc<Self> {
        let times = T::SHOWS_TIMES.then_some((created, updated));
        let (canonical, etag) = canonical_and_tag(&value, times);
        Arc::new(Versioned {
            etag,
            canonical,
            value,
            created,
            updated,
        })
    }

    /// `value` as this record's next version: created when this one was, and changed at `now`,
    /// or a millisecond after this version when `now` is not later (two changes within one
    /// millisecond, or a clock set back). So `updated` only grows, and for a kind whose
    /// representation shows it, a change and its undoing never give back an earlier tag
    /// (which would answer 304 for, and let `If-Match` pass on, a version a client read before
    /// the changes).
    pub fn changed(&self, value: T, now: Timestamp) -> Arc<Self> {
        Versioned::new(value, self.created, now.max(self.updated.saturating_add(1)))
    }

    /// The version that conditional requests are evaluated against.
    pub fn version(&self) -> ResourceVersion<'_> {
        ResourceVersion::strong(self.etag.as_str(), Some(self.updated))
    }
}

/// The single resource an operation acts on, for evaluating its preconditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A dataset (which may not exist yet).
    Dataset(DatasetId),
    /// The lease on a dataset.
    Lease(DatasetId),
    /// A mathematician.
    Mathematician(Uuid),
    /// A container, by name.
    Container(String),
    /// A package.
    Package(Uuid),
}

/// The desired configuration of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configuration {
    datasets: DatasetTable,
    leases: OrdMap<DatasetId, Lease>,
    mathematicians: OrdMap<Uuid, Arc<Versioned<Mathematician>>>,
    containers: OrdMap<String, Arc<Versioned<Container>>>,
    packages: OrdMap<Uuid, Arc<Versioned<Package>>>,
    /// Package names to ids: names are unique, and creation checks them in O(log n).
    package_names: OrdMap<String, Uuid>,
    /// The ids of deleted packages, with when each was deleted. A create by a client-held id
    /// is idempotent (a retry finds its package and changes nothing), so a retry that comes
    /// after the package was deleted would otherwise create it again and undo a delete that
    /// was acknowledged. Not part of any representation; kept until the store forgets them
    /// (see [`Configuration::forget_package_tombstones`]).
    package_tombstones: AgeIndex<Uuid, Timestamp>,
}

/// What a configuration is rebuilt from at start-up.
#[derive(Debug, Default)]
pub struct Records {
    /// Every dataset.
    pub datasets: Vec<Arc<Versioned<Dataset>>>,
    /// Every lease.
    pub leases: Vec<Lease>,
    /// Every mathematician.
    pub mathematicians: Vec<Arc<Versioned<Mathematician>>>,
    /// Every container.
    pub containers: Vec<Arc<Versioned<Container>>>,
    /// Every package.
    pub packages: Vec<Arc<Versioned<Package>>>,
    /// The ids of deleted packages that are still remembered, with when each was deleted.
    pub package_tombstones: Vec<(Uuid, Timestamp)>,
}

/// A request to change the configuration. Anything random (a generated id) or time-dependent
/// is decided by the caller, so applying an operation is deterministic given `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Create a dataset with a fresh id.
    CreateDataset {
        /// The new dataset's id (the caller generates one when the client gave none).
        dataset_id: DatasetId,
        /// Its primary node.
        primary: NodeId,
        /// Its metadata.
        metadata: Metadata,
        /// Its maximum size.
        maximum_size: Option<std::num::NonZeroU64>,
    },
    /// Move a dataset to another primary node; `primary: None` changes nothing.
    MoveDataset {
        /// The dataset; `None` when the path named no valid id, which finds no dataset.
        dataset_id: Option<DatasetId>,
        /// The new primary.
        primary: Option<NodeId>,
    },
    /// Mark a dataset deleted.
    DeleteDataset {
        /// The dataset; `None` when the path named no valid id.
        dataset_id: Option<DatasetId>,
    },
    /// Take or renew a lease.
    AcquireLease {
        /// The dataset to lease.
        dataset_id: DatasetId,
        /// The node taking the lease.
        node_uuid: NodeId,
        /// How long the lease lasts from now, in seconds; `None` for ever.
        expires: Option<f64>,
    },
    /// Release a lease, whichever node holds it.
    ReleaseLease {
        /// The leased dataset.
        dataset_id: DatasetId,
    },
    /// Remove every lease that has expired.
    ExpireLeases,
    /// Create a mathematician with a first name, unless it exists (then nothing changes: a
    /// retried create is a replay).
    CreateMathematician(NameChange),
    /// Add a container.
    CreateContainer(Container),
    /// Move a container, and the dataset attached to it, to another node.
    MoveContainer {
        /// The container.
        name: String,
        /// The node it moves to.
        node_uuid: NodeId,
    },
    /// Remove a container (its dataset stays).
    DeleteContainer {
        /// The container.
        name: String,
    },
    /// Set a mathematician's name on top of the versions the client saw.
    NameMathematician(NameChange),
    /// Create a package, unless one with its id exists (then nothing changes: a retried
    /// create by a client-held id is a replay). Refused for the id of a package deleted
    /// lately: that is a retry too late to replay.
    CreatePackage(Package),
    /// Remove a package, remembering its id (a tombstone).
    DeletePackage {
        /// The package.
        uuid: Uuid,
    },
    /// Set a value in a package's metadata (deep merge for objects).
    SetPackageMetadata {
        /// The package.
        uuid: Uuid,
        /// Where, never empty.
        path: Vec<String>,
        /// What.
        value: serde_json::Value,
    },
    /// Remove a value from a package's metadata; a path that leads nowhere changes nothing.
    RemovePackageMetadata {
        /// The package.
        uuid: Uuid,
        /// Where, never empty.
        path: Vec<String>,
    },
    /// Take over a whole configuration made elsewhere (`floe import-flocker`): refused unless
    /// the configuration holds no dataset, lease or container.
    Import(Box<Import>),
}

/// A configuration to take over: what `floe import-flocker` read from Flocker's file. Applied
/// as the operations a client would have sent for it, one after the other, so each item meets
/// the same checks as through the API; the whole is one operation, so it lands in one
/// transaction or not at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Import {
    /// Every dataset, deleted ones included.
    pub datasets: Vec<Dataset>,
    /// Every container.
    pub containers: Vec<Container>,
    /// Every lease; an expiry in the past is kept (the sweeper removes it, as Flocker's
    /// would have).
    pub leases: Vec<Lease>,
}

/// How much an import brought in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Datasets, deleted ones included.
    pub datasets: usize,
    /// Of which deleted.
    pub deleted: usize,
    /// Leases.
    pub leases: usize,
    /// Containers.
    pub containers: usize,
}

/// A name a client asks for, on top of the versions it saw.
#[derive(Debug, Clone, PartialEq)]
pub struct NameChange {
    /// The mathematician.
    pub unique: Uuid,
    /// The version ids the client saw (none for a first name).
    pub seen: Vec<VersionHash>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
}

impl Operation {
    /// The resource this operation acts on, if it names one.
    pub fn target(&self) -> Option<Target> {
        match self {
            Operation::CreateDataset { dataset_id, .. } => Some(Target::Dataset(*dataset_id)),
            Operation::MoveDataset { dataset_id, .. } | Operation::DeleteDataset { dataset_id } => {
                dataset_id.map(Target::Dataset)
            }
            Operation::AcquireLease { dataset_id, .. } | Operation::ReleaseLease { dataset_id } => {
                Some(Target::Lease(*dataset_id))
            }
            Operation::ExpireLeases => None,
            Operation::CreateMathematician(change) | Operation::NameMathematician(change) => {
                Some(Target::Mathematician(change.unique))
            }
            Operation::CreateContainer(container) => {
                Some(Target::Container(container.name.clone()))
            }
            Operation::MoveContainer { name, .. } | Operation::DeleteContainer { name } => {
                Some(Target::Container(name.clone()))
            }
            Operation::CreatePackage(package) => Some(Target::Package(package.uuid)),
            Operation::DeletePackage { uuid }
            | Operation::SetPackageMetadata { uuid, .. }
            | Operation::RemovePackageMetadata { uuid, .. } => Some(Target::Package(*uuid)),
            Operation::Import(_) => None,
        }
    }

    /// Whether this creates a resource. A create never edits what exists: finding its target
    /// there, it is a replay (a mathematician by `unique`, a package by `uuid`: it changes
    /// nothing and answers as the first attempt did) or a duplicate (409).
    pub fn is_create(&self) -> bool {
        matches!(
            self,
            Operation::CreateDataset { .. }
                | Operation::CreateContainer(_)
                | Operation::CreateMathematician(_)
                | Operation::CreatePackage(_)
        )
    }
}

/// A resource's version, owned, as the store hands it to precondition checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedVersion {
    /// Its strong entity tag.
    pub etag: ContentTag,
    /// When it last changed, if tracked.
    pub last_modified: Option<Timestamp>,
}

impl OwnedVersion {
    /// Borrowed form, for [`super::precondition::Validators::evaluate`].
    pub fn as_version(&self) -> ResourceVersion<'_> {
        ResourceVersion::strong(self.etag.as_str(), self.last_modified)
    }
}

/// What an applied operation produced, for the caller to render.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The dataset as it is after the operation.
    Dataset(Arc<Versioned<Dataset>>),
    /// A lease: after acquiring (with whether it is new), or as it was before release.
    Lease {
        /// The lease.
        lease: Lease,
        /// True when no lease existed for the dataset before.
        created: bool,
    },
    /// How many expired leases were removed.
    Expired(usize),
    /// The mathematician as it is after the operation.
    Mathematician(Arc<Versioned<Mathematician>>),
    /// The container as it is after the operation (or was, before a delete).
    Container(Arc<Versioned<Container>>),
    /// The package as it is after the operation (or was, before a delete).
    Package(Arc<Versioned<Package>>),
    /// What an import brought in.
    Imported(ImportCounts),
}

/// One persisted effect of an operation. An operation that changes nothing yields none,
/// which is how the store knows not to raise the revision.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Add a dataset, at `place` in creation order: after every other (places count from 0
    /// and have no gaps, so a store may use them as its row keys).
    AddDataset {
        /// The dataset's record.
        record: Arc<Versioned<Dataset>>,
        /// Its place in creation order.
        place: u32,
    },
    /// Replace the record of a dataset, which keeps its `place`.
    UpdateDataset {
        /// The dataset's new record.
        record: Arc<Versioned<Dataset>>,
        /// Its place in creation order.
        place: u32,
    },
    /// Insert or replace a lease.
    PutLease(Lease),
    /// Remove the lease on a dataset.
    RemoveLease(DatasetId),
    /// Insert or replace a mathematician (with every version of its name).
    PutMathematician(Arc<Versioned<Mathematician>>),
    /// Insert or replace a container.
    PutContainer(Arc<Versioned<Container>>),
    /// Remove a container.
    RemoveContainer(String),
    /// Insert or replace a package.
    PutPackage(Arc<Versioned<Package>>),
    /// Remove a package and keep a tombstone of its id.
    RemovePackage {
        /// The package.
        uuid: Uuid,
        /// When it was deleted.
        deleted_at: Timestamp,
    },
}

/// The kinds of resource the configuration holds, each listed on its own: a list's version
/// follows the changes to its own kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// Datasets.
    Datasets,
    /// Leases.
    Leases,
    /// Mathematicians.
    Mathematicians,
    /// Containers.
    Containers,
    /// Packages.
    Packages,
}

impl Collection {
    /// How many kinds there are.
    pub const COUNT: usize = 5;

    /// A distinct number below [`Collection::COUNT`], to index per-kind tables.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl Change {
    /// The kind of resource this change is to.
    pub fn collection(&self) -> Collection {
        match self {
            Change::AddDataset { .. } | Change::UpdateDataset { .. } => Collection::Datasets,
            Change::PutLease(_) | Change::RemoveLease(_) => Collection::Leases,
            Change::PutMathematician(_) => Collection::Mathematicians,
            Change::PutContainer(_) | Change::RemoveContainer(_) => Collection::Containers,
            Change::PutPackage(_) | Change::RemovePackage { .. } => Collection::Packages,
        }
    }
}

/// Why an operation was refused. The configuration is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A dataset with that id exists, deleted or not.
    #[error("The provided dataset_id is already in use.")]
    DatasetIdInUse,
    /// No dataset has that id.
    #[error("Dataset not found.")]
    DatasetNotFound,
    /// The dataset has been deleted and can no longer be changed.
    #[error("The dataset has been deleted.")]
    DatasetDeleted,
    /// Another node holds the lease.
    #[error("Lease already held.")]
    LeaseHeld,
    /// There is no lease on that dataset.
    #[error("Lease not found.")]
    LeaseNotFound,
    /// No mathematician has that id.
    #[error("Mathematician not found.")]
    MathematicianNotFound,
    /// A container with that name exists.
    #[error("The container name already exists.")]
    ContainerNameInUse,
    /// No container has that name.
    #[error("Container not found.")]
    ContainerNotFound,
    /// The dataset to attach is configured on another node than the container.
    #[error("The dataset is on another node.")]
    DatasetOnAnotherNode,
    /// The dataset is attached to another container.
    #[error("The dataset is being used by another container.")]
    DatasetInUse,
    /// An external port is published by another container.
    #[error("A specified external port is already in use.")]
    ExternalPortInUse,
    /// Two links share an alias.
    #[error("Link aliases must be unique.")]
    DuplicateLinkAlias,
    /// Two links share a local port.
    #[error("The local ports in a container's links must be unique.")]
    DuplicateLinkPort,
    /// Moving a dataset on its own would leave its container without it.
    #[error("The dataset is attached to a container; move the container instead.")]
    DatasetAttached,
    /// No package has that id.
    #[error("Package not found.")]
    PackageNotFound,
    /// Another package has that name.
    #[error("A package with this name already exists.")]
    PackageNameInUse,
    /// A package had that id and was deleted: a create by it is a retry that came too late.
    #[error(
        "This package was deleted: a create by its uuid does not bring it back. A new package needs a new uuid, from GET .../packages/new."
    )]
    PackageDeleted,
    /// A metadata change cannot be made, or nests too deeply.
    #[error("{0}")]
    Metadata(#[from] MetadataError),
    /// An import was asked for, but the configuration already holds something.
    #[error(
        "the configuration is not empty ({datasets} datasets, {leases} leases, {containers} containers): an import takes over a cluster, it does not merge into one"
    )]
    NotEmpty {
        /// Datasets held.
        datasets: usize,
        /// Leases held.
        leases: usize,
        /// Containers held.
        containers: usize,
    },
    /// One item of an import was refused; so was the whole import.
    #[error("{item}: {reason}")]
    ImportItem {
        /// Which item.
        item: String,
        /// Why.
        reason: Box<Rejection>,
    },
}

impl Configuration {
    /// Rebuilds a configuration from stored records.
    pub fn from_records(records: Records) -> Self {
        Configuration {
            datasets: records.datasets.into_iter().collect(),
            leases: records
                .leases
                .into_iter()
                .map(|l| (l.dataset_id, l))
                .collect(),
            mathematicians: records
                .mathematicians
                .into_iter()
                .map(|m| (m.value.unique, m))
                .collect(),
            containers: records
                .containers
                .into_iter()
                .map(|c| (c.value.name.clone(), c))
                .collect(),
            package_names: records
                .packages
                .iter()
                .map(|p| (p.value.name.clone(), p.value.uuid))
                .collect(),
            packages: records
                .packages
                .into_iter()
                .map(|p| (p.value.uuid, p))
                .collect(),
            package_tombstones: records.package_tombstones.into_iter().collect(),
        }
    }

    /// Every dataset, deleted ones included, in the order they were created.
    pub fn datasets(&self) -> impl ExactSizeIterator<Item = &Arc<Versioned<Dataset>>> {
        self.datasets.iter()
    }

    /// One dataset by id.
    pub fn dataset(&self, id: &DatasetId) -> Option<&Arc<Versioned<Dataset>>> {
        self.datasets.get(id)
    }

    /// Every mathematician, ordered by id.
    pub fn mathematicians(&self) -> impl ExactSizeIterator<Item = &Arc<Versioned<Mathematician>>> {
        self.mathematicians.values()
    }

    /// One mathematician by id.
    pub fn mathematician(&self, unique: &Uuid) -> Option<&Arc<Versioned<Mathematician>>> {
        self.mathematicians.get(unique)
    }

    /// Every package, ordered by id.
    pub fn packages(&self) -> impl ExactSizeIterator<Item = &Arc<Versioned<Package>>> {
        self.packages.values()
    }

    /// One package by id.
    pub fn package(&self, uuid: &Uuid) -> Option<&Arc<Versioned<Package>>> {
        self.packages.get(uuid)
    }

    /// Whether a tombstone of a deleted package is older than `before`.
    pub fn has_package_tombstones_before(&self, before: Timestamp) -> bool {
        self.package_tombstones
            .oldest()
            .is_some_and(|deleted_at| deleted_at < before)
    }

    /// Forgets the tombstones of packages deleted before `before`, and returns their ids: a
    /// create by one of them creates a package again. Not a change of the configuration (no
    /// representation shows tombstones), so it does not raise the revision.
    pub fn forget_package_tombstones(&mut self, before: Timestamp) -> Vec<Uuid> {
        std::iter::from_fn(|| self.package_tombstones.remove_oldest_before(before)).collect()
    }

    /// Every container, ordered by name.
    pub fn containers(&self) -> impl ExactSizeIterator<Item = &Arc<Versioned<Container>>> {
        self.containers.values()
    }

    /// The container a dataset is attached to, if any.
    pub fn container_using(&self, dataset_id: &DatasetId) -> Option<&Arc<Versioned<Container>>> {
        self.containers.values().find(|record| {
            record
                .value
                .volume
                .as_ref()
                .is_some_and(|volume| &volume.dataset_id == dataset_id)
        })
    }

    /// Every lease, ordered by dataset id.
    pub fn leases(&self) -> impl ExactSizeIterator<Item = &Lease> {
        self.leases.values()
    }

    /// The current version of `target`, or `None` if it does not exist.
    pub fn version_of(&self, target: Target) -> Option<OwnedVersion> {
        match target {
            Target::Dataset(id) => self.datasets.get(&id).map(|record| OwnedVersion {
                etag: record.etag.clone(),
                last_modified: Some(record.updated),
            }),
            Target::Lease(id) => self.leases.get(&id).map(|lease| OwnedVersion {
                etag: lease.content_tag(),
                last_modified: None,
            }),
            Target::Container(name) => self.containers.get(&name).map(|record| OwnedVersion {
                etag: record.etag.clone(),
                last_modified: Some(record.updated),
            }),
            Target::Package(uuid) => self.packages.get(&uuid).map(|record| OwnedVersion {
                etag: record.etag.clone(),
                last_modified: Some(record.updated),
            }),
            Target::Mathematician(unique) => {
                self.mathematicians.get(&unique).map(|record| OwnedVersion {
                    etag: record.etag.clone(),
                    last_modified: Some(record.updated),
                })
            }
        }
    }

    /// Whether any lease has expired at `now`.
    pub fn has_expired_leases(&self, now: Timestamp) -> bool {
        self.leases.values().any(|lease| lease.is_expired(now))
    }

    /// Applies `operation` at time `now`, changing `self` in place, and returns what it produced
    /// and the changes to persist (empty for a no-op). On rejection `self` is untouched.
    pub fn apply(&mut self, operation: Operation, now: Timestamp) -> Applied {
        match operation {
            Operation::CreateDataset {
                dataset_id,
                primary,
                metadata,
                maximum_size,
            } => self.create_dataset(dataset_id, primary, metadata, maximum_size, now),
            Operation::MoveDataset {
                dataset_id,
                primary,
            } => self.move_dataset(dataset_id, primary, now),
            Operation::DeleteDataset { dataset_id } => self.delete_dataset(dataset_id, now),
            Operation::AcquireLease {
                dataset_id,
                node_uuid,
                expires,
            } => self.acquire_lease(dataset_id, node_uuid, expires, now),
            Operation::ReleaseLease { dataset_id } => self.release_lease(dataset_id),
            Operation::ExpireLeases => self.expire_leases(now),
            Operation::CreateMathematician(change) => self.create_mathematician(change, now),
            Operation::NameMathematician(change) => self.name_mathematician(change, now),
            Operation::CreateContainer(container) => self.create_container(container, now),
            Operation::MoveContainer { name, node_uuid } => {
                self.move_container(name, node_uuid, now)
            }
            Operation::DeleteContainer { name } => self.delete_container(name),
            Operation::CreatePackage(package) => self.create_package(package, now),
            Operation::DeletePackage { uuid } => self.delete_package(uuid, now),
            Operation::SetPackageMetadata { uuid, path, value } => {
                self.set_package_metadata(uuid, path, value, now)
            }
            Operation::RemovePackageMetadata { uuid, path } => {
                self.remove_package_metadata(uuid, path, now)
            }
            Operation::Import(import) => self.import(*import, now),
        }
    }

    /// Applies an import: every dataset created, every container created, then the deleted
    /// datasets deleted (a container may use a dataset deleted after it was attached, as
    /// through the API), then every lease acquired for the time it has left. Worked on a copy
    /// (which shares structure), so a refused item leaves `self` untouched.
    fn import(&mut self, import: Import, now: Timestamp) -> Applied {
        if !self.datasets.is_empty() || !self.leases.is_empty() || !self.containers.is_empty() {
            return Err(Rejection::NotEmpty {
                datasets: self.datasets.len(),
                leases: self.leases.len(),
                containers: self.containers.len(),
            });
        }
        let counts = ImportCounts {
            datasets: import.datasets.len(),
            deleted: import.datasets.iter().filter(|d| d.deleted).count(),
            leases: import.leases.len(),
            containers: import.containers.len(),
        };
        let mut next = self.clone();
        let mut changes = Vec::new();
        let mut step = |next: &mut Configuration, item: String, operation: Operation| {
            next.apply(operation, now)
                .map(|(_, effects)| changes.extend(effects))
                .map_err(|reason| Rejection::ImportItem {
                    item,
                    reason: Box::new(reason),
                })
        };
        for dataset in &import.datasets {
            let operation = Operation::CreateDataset {
                dataset_id: dataset.dataset_id,
                primary: dataset.primary,
                metadata: dataset.metadata.clone(),
                maximum_size: dataset.maximum_size,
            };
            step(
                &mut next,
                format!("dataset {}", dataset.dataset_id),
                operation,
            )?;
        }
        for container in import.containers {
            let item = format!("container {}", container.name);
            step(&mut next, item, Operation::CreateContainer(container))?;
        }
        for dataset in import.datasets.iter().filter(|d| d.deleted) {
            let operation = Operation::DeleteDataset {
                dataset_id: Some(dataset.dataset_id),
            };
            step(
                &mut next,
                format!("dataset {}", dataset.dataset_id),
                operation,
            )?;
        }
        for lease in import.leases {
            // The time left, to the millisecond: acquiring for it lands on the same expiry.
            let operation = Operation::AcquireLease {
                dataset_id: lease.dataset_id,
                node_uuid: lease.node_uuid,
                expires: lease
                    .expires_at
                    .map(|expires_at| expires_at.saturating_sub(now) as f64 / 1000.0),
            };
            step(
                &mut next,
                format!("lease on {}", lease.dataset_id),
                operation,
            )?;
        }
        *self = next;
        Ok((Outcome::Imported(counts), changes))
    }

    fn existing_dataset(
        &self,
        dataset_id: Option<DatasetId>,
    ) -> Result<Arc<Versioned<Dataset>>, Rejection> {
        dataset_id
            .and_then(|id| self.datasets.get(&id))
            .cloned()
            .ok_or(Rejection::DatasetNotFound)
    }

    fn existing_package(&self, uuid: &Uuid) -> Result<Arc<Versioned<Package>>, Rejection> {
        self.packages
            .get(uuid)
            .cloned()
            .ok_or(Rejection::PackageNotFound)
    }

    /// Inserts or replaces a package (its name never changes once created).
    fn put_package(&mut self, record: Arc<Versioned<Package>>) -> (Outcome, Vec<Change>) {
        self.package_names
            .insert(record.value.name.clone(), record.value.uuid);
        self.packages.insert(record.value.uuid, Arc::clone(&record));
        (
            Outcome::Package(Arc::clone(&record)),
            vec![Change::PutPackage(record)],
        )
    }

    fn put_mathematician(
        &mut self,
        record: Arc<Versioned<Mathematician>>,
    ) -> (Outcome, Vec<Change>) {
        self.mathematicians
            .insert(record.value.unique, Arc::clone(&record));
        (
            Outcome::Mathematician(Arc::clone(&record)),
            vec![Change::PutMathematician(record)],
        )
    }

    fn put_dataset(&mut self, record: Arc<Versioned<Dataset>>) -> (Outcome, Vec<Change>) {
        let (place, added) = self.datasets.put(Arc::clone(&record));
        dataset_written(record, place, added)
    }
}

/// The outcome and the change to persist of a dataset record just stored at `place`.
fn dataset_written(
    record: Arc<Versioned<Dataset>>,
    place: u32,
    added: bool,
) -> (Outcome, Vec<Change>) {
    let outcome = Outcome::Dataset(Arc::clone(&record));
    let change = if added {
        Change::AddDataset { record, place }
    } else {
        Change::UpdateDataset { record, place }
    };
    (outcome, vec![change])
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn create(config: &mut Configuration, id: DatasetId, primary: NodeId) -> Vec<Change> {
        let op = Operation::CreateDataset {
            dataset_id: id,
            primary,
            metadata: Metadata::new(),
            maximum_size: None,
        };
        config.apply(op, 0).unwrap().1
    }

    fn dataset(primary: NodeId, deleted: bool) -> Dataset {
        Dataset {
            dataset_id: Uuid::new_v4(),
            primary,
            deleted,
            metadata: Metadata::new(),
            maximum_size: None,
        }
    }

    fn container(name: &str, node_uuid: NodeId, volume: Option<DatasetId>) -> Container {
        Container {
            node_uuid,
            name: name.into(),
            image: "busybox:latest".into(),
            restart_policy: Default::default(),
            ports: Default::default(),
            links: Vec::new(),
            environment: Default::default(),
            volume: volume.map(|dataset_id| super::super::container::Volume {
                dataset_id,
                mountpoint: "/data".into(),
            }),
            cpu_shares: None,
            memory_limit: None,
            command_line: None,
            swappiness: None,
        }
    }

    #[test]
    fn an_import_lands_whole_with_deleted_datasets_and_lease_expiries_kept() {
        let node = Uuid::new_v4();
        let (kept, gone) = (dataset(node, false), dataset(node, true));
        let lease = Lease {
            dataset_id: kept.dataset_id,
            node_uuid: node,
            expires_at: Some(90_000),
        };
        let import = Import {
            datasets: vec![kept.clone(), gone.clone()],
            // Attached to a dataset that was deleted after: as the API allows.
            containers: vec![container("app", node, Some(gone.dataset_id))],
            leases: vec![lease.clone()],
        };
        let mut config = Configuration::default();
        let (outcome, changes) = config
            .apply(Operation::Import(Box::new(import)), 10_000)
            .unwrap();
        assert_eq!(
            outcome,
            Outcome::Imported(ImportCounts {
                datasets: 2,
                deleted: 1,
                leases: 1,
                containers: 1
            })
        );
        assert!(!changes.is_empty());
        assert_eq!(config.dataset(&kept.dataset_id).unwrap().value, kept);
        assert_eq!(config.dataset(&gone.dataset_id).unwrap().value, gone);
        assert_eq!(config.leases().collect::<Vec<_>>(), vec![&lease]);
        assert_eq!(config.containers().len(), 1);
    }

    #[test]
    fn an_import_is_refused_whole_into_a_non_empty_configuration_or_for_one_bad_item() {
        let node = Uuid::new_v4();
        let mut config = Configuration::default();
        let bad = Import {
            datasets: vec![dataset(node, false)],
            containers: vec![container("app", Uuid::new_v4(), Some(Uuid::new_v4()))],
            leases: Vec::new(),
        };
        let refused = config.apply(Operation::Import(Box::new(bad)), 0);
        assert!(
            matches!(&refused, Err(Rejection::ImportItem { item, reason })
                if item == "container app" && **reason == Rejection::DatasetNotFound),
            "{refused:?}"
        );
        assert_eq!(config, Configuration::default(), "nothing of it applied");

        create(&mut config, Uuid::new_v4(), node);
        let before = config.clone();
        let good = Import {
            datasets: vec![dataset(node, false)],
            ..Import::default()
        };
        let refused = config.apply(Operation::Import(Box::new(good)), 0);
        assert_eq!(
            refused,
            Err(Rejection::NotEmpty {
                datasets: 1,
                leases: 0,
                containers: 0
            })
        );
        assert_eq!(config, before);
    }

    #[test]
    fn create_then_duplicate_id_is_rejected_and_changes_nothing() {
        let mut config = Configuration::default();
        let (id, node) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(create(&mut config, id, node).len(), 1);
        let before = config.clone();
        let again = Operation::CreateDataset {
            dataset_id: id,
            primary: Uuid::new_v4(),
            metadata: Metadata::new(),
            maximum_size: None,
        };
        assert_eq!(config.apply(again, 0), Err(Rejection::DatasetIdInUse));
        assert_eq!(config, before);
    }

    #[test]
    fn moves_to_same_primary_and_repeat_deletes_are_no_ops() {
        let mut config = Configuration::default();
        let (id, node) = (Uuid::new_v4(), Uuid::new_v4());
        create(&mut config, id, node);
        let same = Operation::MoveDataset {
            dataset_id: Some(id),
            primary: Some(node),
        };
        assert!(config.apply(same, 0).unwrap().1.is_empty());
        let delete = Operation::DeleteDataset {
            dataset_id: Some(id),
        };
        assert_eq!(config.apply(delete.clone(), 0).unwrap().1.len(), 1);
        let (outcome, changes) = config.apply(delete, 0).unwrap();
        assert!(changes.is_empty());
        let Outcome::Dataset(record) = outcome else {
            panic!("delete answers the dataset")
        };
        assert!(record.value.deleted);
        let move_deleted = Operation::MoveDataset {
            dataset_id: Some(id),
            primary: Some(Uuid::new_v4()),
        };
        assert_eq!(
            config.apply(move_deleted, 0),
            Err(Rejection::DatasetDeleted)
        );
    }

    #[test]
    fn a_change_undone_within_a_millisecond_never_gives_back_an_earlier_tag() {
        let mut config = Configuration::default();
        let uuid = Uuid::new_v4();
        let package = Package::new(uuid, "small".into());
        config
            .apply(Operation::CreatePackage(package), 1_000)
            .unwrap();
        let set = |value: i64| Operation::SetPackageMetadata {
            uuid,
            path: vec!["b".into()],
            value: value.into(),
        };
        // A, B and A again, all in the millisecond the package was created in, then once
        // more under a clock set back.
        let mut seen = vec![config.package(&uuid).unwrap().clone()];
        for (value, now) in [(1, 1_000), (2, 1_000), (1, 1_000), (2, 400)] {
            config.apply(set(value), now).unwrap();
            seen.push(config.package(&uuid).unwrap().clone());
        }
        let updated: Vec<Timestamp> = seen.iter().map(|record| record.updated).collect();
        assert_eq!(updated, [1_000, 1_001, 1_002, 1_003, 1_004]);
        let tags: std::collections::HashSet<_> = seen.iter().map(|r| r.etag.clone()).collect();
        assert_eq!(tags.len(), seen.len(), "every version has its own tag");
        assert!(seen.iter().all(|record| record.created == 1_000));
        // A later change is stamped with its own time.
        config.apply(set(3), 5_000).unwrap();
        assert_eq!(config.package(&uuid).unwrap().updated, 5_000);
    }

    #[test]
    fn a_deleted_package_s_id_creates_nothing_until_its_tombstone_is_forgotten() {
        let mut config = Configuration::default();
        let uuid = Uuid::new_v4();
        let create = || Operation::CreatePackage(Package::new(uuid, "small".into()));
        assert_eq!(config.apply(create(), 1_000).unwrap().1.len(), 1);
        let (_, changes) = config
            .apply(Operation::DeletePackage { uuid }, 2_000)
            .unwrap();
        assert_eq!(
            changes,
            vec![Change::RemovePackage {
                uuid,
                deleted_at: 2_000
            }]
        );
        let before = config.clone();
        assert_eq!(
            config.apply(create(), 3_000),
            Err(Rejection::PackageDeleted)
        );
        assert_eq!(config, before);
        assert_eq!(config.packages().len(), 0, "a tombstone is no package");
        assert_eq!(
            config.apply(Operation::DeletePackage { uuid }, 3_000),
            Err(Rejection::PackageNotFound)
        );

        assert!(!config.has_package_tombstones_before(2_000));
        assert!(config.forget_package_tombstones(2_000).is_empty());
        assert!(config.has_package_tombstones_before(2_001));
        assert_eq!(config.forget_package_tombstones(2_001), vec![uuid]);
        assert!(!config.has_package_tombstones_before(i64::MAX));
        assert_eq!(config.apply(create(), 4_000).unwrap().1.len(), 1);
    }

    #[test]
    fn leases_are_held_renewed_released_and_expired() {
        let mut config = Configuration::default();
        let (dataset, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let acquire = |node, expires| Operation::AcquireLease {
            dataset_id: dataset,
            node_uuid: node,
            expires,
        };
        let (outcome, _) = config.apply(acquire(a, Some(10.0)), 0).unwrap();
        assert!(matches!(outcome, Outcome::Lease { created: true, .. }));
        assert_eq!(config.apply(acquire(b, None), 0), Err(Rejection::LeaseHeld));
        let (outcome, changes) = config.apply(acquire(a, Some(10.0)), 5_000).unwrap();
        assert!(matches!(outcome, Outcome::Lease { created: false, .. }));
        assert_eq!(changes.len(), 1, "a renewal moves the expiry");
        assert!(
            config
                .apply(Operation::ExpireLeases, 15_000)
                .unwrap()
                .1
                .is_empty()
        );
        let (outcome, changes) = config.apply(Operation::ExpireLeases, 15_001).unwrap();
        assert_eq!(outcome, Outcome::Expired(1));
        assert_eq!(changes, vec![Change::RemoveLease(dataset)]);
        assert_eq!(
            config.apply(
                Operation::ReleaseLease {
                    dataset_id: dataset
                },
                0
            ),
            Err(Rejection::LeaseNotFound)
        );
    }
}
