//! `floe import-flocker`: takes over a running Flocker cluster's configuration by loading its
//! `current_configuration.json` into a floe store. The file format is read in
//! [`crate::model::flocker_file`]; this module reads the file, opens the store and submits the
//! result as one ordinary write, so it is checked, made durable and versioned (a new
//! configuration tag) like any API request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::flocker_file::{self, FileError};
use crate::model::{Import, ImportCounts, Operation, Outcome};
use crate::store::{
    Backend, Command, Committed, DEFAULT_IDEMPOTENCY_MAX_KEYS, OpenError, Precondition, Reply,
    Store, StoreError, StoreOptions,
};

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The file's format version.
    pub version: u64,
    /// What was brought in.
    pub counts: ImportCounts,
    /// What the file held that floe does not model, one line each.
    pub not_carried: Vec<String>,
    /// The configuration tag after the import.
    pub tag: String,
}

/// Why an import did not happen. In every case the store is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a configuration floe can import.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        error: FileError,
    },
    /// A running floe holds the data directory.
    #[error("{0}; stop the floe server that uses it, then import")]
    InUse(OpenError),
    /// The store could not be opened.
    #[error(transparent)]
    Open(OpenError),
    /// The store refused the import (not empty, or an item the API would refuse too).
    #[error("import refused, nothing was changed: {0}")]
    Refused(StoreError),
}

/// Imports Flocker's configuration `file` into the store in `data_dir` (created if missing).
/// Must be called inside a tokio runtime.
pub async fn import_flocker(file: &Path, data_dir: &Path) -> Result<ImportSummary, ImportError> {
    let text = std::fs::read_to_string(file).map_err(|e| ImportError::Read {
        path: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let parsed = flocker_file::parse(&text).map_err(|error| ImportError::File {
        path: file.to_path_buf(),
        error,
    })?;
    tracing::info!(
        file = %file.display(),
        version = parsed.version,
        datasets = parsed.import.datasets.len(),
        leases = parsed.import.leases.len(),
        containers = parsed.import.containers.len(),
        "read Flocker configuration"
    );
    // A rehearsal on an empty store in memory first, so that a file holding an item the API
    // would refuse (two containers of one name, say) leaves no trace: not even a new, empty
    // data directory.
    submit_import(Backend::Memory, parsed.import.clone()).await?;
    let Committed {
        outcome: Outcome::Imported(counts),
        tag,
        revision,
    } = submit_import(Backend::Sqlite(data_dir.to_path_buf()), parsed.import).await?
    else {
        return Err(unexpected());
    };
    tracing::info!(
        data_dir = %data_dir.display(),
        datasets = counts.datasets,
        deleted = counts.deleted,
        leases = counts.leases,
        containers = counts.containers,
        revision,
        %tag,
        "Flocker configuration imported"
    );
    for line in &parsed.not_carried {
        tracing::warn!(what = %line, "not carried over");
    }
    Ok(ImportSummary {
        version: parsed.version,
        counts,
        not_carried: parsed.not_carried,
        tag: tag.to_string(),
    })
}

/// Opens the store on `backend` and submits `import` to it as one command: its emptiness
/// check and every item land in one transaction, or nothing does.
async fn submit_import(backend: Backend, import: Import) -> Result<Committed, ImportError> {
    let options = StoreOptions {
        backend,
        // No idempotent answers are recorded by an import; the store's default for the rest.
        idempotency_ttl: Duration::from_secs(86_400),
        idempotency_max_keys: DEFAULT_IDEMPOTENCY_MAX_KEYS,
    };
    let (store, guard) = Store::open(&options).map_err(|error| match error {
        OpenError::InUse { .. } => ImportError::InUse(error),
        other => ImportError::Open(other),
    })?;
    let reply = store
        .submit(Command {
            precondition: Precondition::default(),
            operation: Operation::Import(Box::new(import)),
            idempotency: None,
        })
        .await;
    drop(store);
    guard.close().await;
    match reply {
        Reply::Done(Ok(committed)) => Ok(committed),
        Reply::Done(Err(error)) => Err(ImportError::Refused(error)),
        Reply::Recorded(_) | Reply::Replayed(_) => Err(unexpected()),
    }
}

fn unexpected() -> ImportError {
    ImportError::Refused(StoreError::Unavailable(
        "unexpected answer from the store".into(),
    ))
}
