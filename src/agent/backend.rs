//! The reference agent's dataset backend: a dataset is mounted on this node exactly when a
//! directory named after it exists under the root. Stands in for a real volume backend.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use uuid::Uuid;

use super::converge::{Here, mount_path};
use crate::model::DatasetId;

/// One directory per mounted dataset under an absolute root.
#[derive(Debug, Clone)]
pub struct Backend {
    root: PathBuf,
}

impl Backend {
    /// Opens (creating it if needed) the root directory.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the dataset root {}", root.display()))?;
        // Reported paths must be absolute, and stable whatever the working directory.
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve the dataset root {}", root.display()))?;
        Ok(Backend { root })
    }

    /// The absolute root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The datasets mounted here: directories whose names are datasets' ids, as the agent
    /// writes them. Anything else under the root is not ours and is left alone.
    pub fn scan(&self) -> anyhow::Result<BTreeMap<DatasetId, Here>> {
        let entries = std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot list the dataset root {}", self.root.display()))?;
        let mut mounted = BTreeMap::new();
        for entry in entries {
            let entry = entry
                .with_context(|| format!("cannot list the dataset root {}", self.root.display()))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|name| {
                Uuid::try_parse(name)
                    .ok()
                    .filter(|id| id.to_string() == name)
            }) else {
                continue;
            };
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                mounted.insert(id, Here::Mounted);
            }
        }
        Ok(mounted)
    }

    /// Mounts a dataset: creates its directory. Returns its path.
    pub async fn mount(&self, dataset: DatasetId) -> io::Result<PathBuf> {
        let path = mount_path(&self.root, dataset);
        let created = path.clone();
        blocking(move || std::fs::create_dir_all(&created)).await?;
        Ok(path)
    }

    /// Unmounts a dataset: removes its directory and everything in it. A directory already
    /// gone is fine.
    pub async fn unmount(&self, dataset: DatasetId) -> io::Result<()> {
        let path = mount_path(&self.root, dataset);
        blocking(move || match std::fs::remove_dir_all(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
    }
}

/// Runs file-system work off the async workers: removing a big directory takes a while.
async fn blocking(work: impl FnOnce() -> io::Result<()> + Send + 'static) -> io::Result<()> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)))
}
