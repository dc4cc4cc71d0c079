//! floe: a standalone HTTP control service that holds a cluster's desired configuration and
//! makes concurrent changes to it safe.
//!
//! Data flows one way: an HTTP request is parsed and checked in [`api`], becomes a
//! [`store::Command`] that the store's single writer checks, applies and makes durable, and the
//! answer is rendered back in [`api`]. [`model`] holds the pure domain rules both use.
//!
//! - [`config`]: every setting (flags and `FLOE_*` variables).
//! - [`model`]: datasets, leases, the configuration and its operations; no HTTP, no I/O.
//! - [`store`]: snapshots, the writer with group commit, SQLite persistence.
//! - [`api`]: one module per resource, preconditions, errors.
//! - [`agent`]: the reference node agent (`floe agent`), a client of the API.

pub mod agent;
pub mod api;
pub mod config;
pub mod model;
pub mod store;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

pub use config::ServeConfig;
use store::cluster::LiveCluster;
use store::{OpenError, Store};

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The application router over an open store and the live cluster state.
pub fn app(store: Store, cluster: LiveCluster, settings: api::ApiSettings) -> Router {
    api::router(api::AppState::new(store, cluster, settings))
}

/// Opens the store, serves the API on `listener` until `shutdown` completes, then lets
/// in-flight requests finish and waits until every accepted write is durable.
pub async fn run(
    config: &ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (store, guard) = Store::open(&config.store_options())?;
    let snapshot = store.snapshot();
    tracing::info!(
        address = %listener.local_addr()?,
        store = ?config.store,
        data_dir = %config.data_dir.display(),
        revision = snapshot.revision,
        datasets = snapshot.configuration.datasets().len(),
        tag = %snapshot.tag,
        "floe listening"
    );
    drop(snapshot);
    let cluster = LiveCluster::new(std::time::Duration::from_secs(config.node_expiry));
    let expiry = cluster.spawn_expiry();
    let served = axum::serve(listener, app(store, cluster, config.api_settings()))
        .with_graceful_shutdown(shutdown)
        .await;
    expiry.abort();
    // The router, and with it every store handle, is gone: the writer drains and stops.
    guard.close().await;
    tracing::info!("floe stopped");
    Ok(served?)
}
