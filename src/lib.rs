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
//! - [`tls`]: HTTPS, client certificates and the identities they name.
//! - [`ca`]: `floe ca`, the certificate authority tool (Flocker's `flocker-ca`).

pub mod agent;
pub mod api;
pub mod ca;
pub mod config;
pub mod model;
pub mod store;
pub mod tls;

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
    /// The TLS settings are not usable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Plain HTTP was asked for on an address others can reach.
    #[error(
        "refusing to serve plain HTTP on {0}, which is not a loopback address: give --tls-cert and --tls-key (see `floe ca`), or --insecure to accept that anyone who can reach it may change the configuration"
    )]
    PlainHttpRefused(std::net::SocketAddr),
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
    let address = listener.local_addr()?;
    let tls = match config.tls_files() {
        Some(files) => Some(tls::server_config(&files)?),
        None if !address.ip().is_loopback() && !config.insecure => {
            return Err(ServeError::PlainHttpRefused(address));
        }
        None => None,
    };
    let clients_authenticated = config.tls_client_ca.is_some() && tls.is_some();
    let (store, guard) = Store::open(&config.store_options())?;
    let snapshot = store.snapshot();
    tracing::info!(
        %address,
        tls = tls.is_some(),
        client_certificates = clients_authenticated,
        store = ?config.store,
        data_dir = %config.data_dir.display(),
        revision = snapshot.revision,
        datasets = snapshot.configuration.datasets().len(),
        tag = %snapshot.tag,
        "floe listening"
    );
    drop(snapshot);
    if tls.is_none() && !address.ip().is_loopback() {
        tracing::warn!(%address, "plain HTTP on a non-loopback address (--insecure): anyone who can reach it may change the configuration");
    }
    if tls.is_some() && !clients_authenticated {
        tracing::warn!("HTTPS without --tls-client-ca: clients are not authenticated");
    }
    let cluster = LiveCluster::new(std::time::Duration::from_secs(config.node_expiry));
    let expiry = cluster.spawn_expiry();
    let router = app(store, cluster, config.api_settings());
    let served = match tls {
        Some(tls) => {
            let router = router.layer(axum::middleware::from_fn_with_state(
                clients_authenticated,
                api::auth::authorize,
            ));
            axum::serve(
                tls::TlsListener::new(listener, tls),
                router.into_make_service_with_connect_info::<tls::Peer>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    expiry.abort();
    // The router, and with it every store handle, is gone: the writer drains and stops.
    guard.close().await;
    tracing::info!("floe stopped");
    Ok(served?)
}
