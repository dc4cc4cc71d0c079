//! Containers: created after Flocker's checks, moved with the dataset they use, and deleted.

use std::sync::Arc;

use super::{Applied, Change, Configuration, Outcome, Rejection, Versioned};
use crate::model::container::Container;
use crate::model::{NodeId, Timestamp};

impl Configuration {
    /// Adds a container after Flocker's checks, in Flocker's order.
    pub(super) fn create_container(&mut self, container: Container, now: Timestamp) -> Applied {
        if self.containers.contains_key(&container.name) {
            return Err(Rejection::ContainerNameInUse);
        }
        if let Some(volume) = &container.volume {
            let dataset = self
                .datasets
                .get(&volume.dataset_id)
                .filter(|record| !record.value.deleted)
                .ok_or(Rejection::DatasetNotFound)?;
            if dataset.value.primary != container.node_uuid {
                return Err(Rejection::DatasetOnAnotherNode);
            }
            if self.container_using(&volume.dataset_id).is_some() {
                return Err(Rejection::DatasetInUse);
            }
        }
        let published: std::collections::HashSet<u16> = self
            .containers
            .values()
            .flat_map(|record| record.value.ports.iter().map(|port| port.external))
            .collect();
        if container
            .ports
            .iter()
            .any(|port| published.contains(&port.external))
        {
            return Err(Rejection::ExternalPortInUse);
        }
        // Link by link in the order given, alias before local port, so that the first clash
        // is the one reported.
        let mut aliases = std::collections::HashSet::new();
        let mut local_ports = std::collections::HashSet::new();
        for link in &container.links {
            if !aliases.insert(&link.alias) {
                return Err(Rejection::DuplicateLinkAlias);
            }
            if !local_ports.insert(link.local_port) {
                return Err(Rejection::DuplicateLinkPort);
            }
        }
        let mut container = container;
        container.links.sort();
        let record = Versioned::new(container, now, now);
        self.containers
            .insert(record.value.name.clone(), Arc::clone(&record));
        Ok((
            Outcome::Container(Arc::clone(&record)),
            vec![Change::PutContainer(record)],
        ))
    }

    /// Moves a container, and the dataset it uses, to another node.
    pub(super) fn move_container(
        &mut self,
        name: String,
        node_uuid: NodeId,
        now: Timestamp,
    ) -> Applied {
        let current = self
            .containers
            .get(&name)
            .cloned()
            .ok_or(Rejection::ContainerNotFound)?;
        if current.value.node_uuid == node_uuid {
            return Ok((Outcome::Container(current), Vec::new()));
        }
        let mut changes = Vec::new();
        // The attached dataset goes where its container goes.
        if let Some(volume) = &current.value.volume
            && let Some(dataset) = self.datasets.get(&volume.dataset_id).cloned()
        {
            let mut moved = dataset.value.clone();
            moved.primary = node_uuid;
            changes.extend(self.put_dataset(dataset.changed(moved, now)).1);
        }
        let mut moved = current.value.clone();
        moved.node_uuid = node_uuid;
        let record = current.changed(moved, now);
        self.containers.insert(name, Arc::clone(&record));
        changes.push(Change::PutContainer(Arc::clone(&record)));
        Ok((Outcome::Container(record), changes))
    }

    /// Deletes a container (its dataset stays).
    pub(super) fn delete_container(&mut self, name: String) -> Applied {
        let removed = self
            .containers
            .remove(&name)
            .ok_or(Rejection::ContainerNotFound)?;
        Ok((
            Outcome::Container(removed),
            vec![Change::RemoveContainer(name)],
        ))
    }
}
