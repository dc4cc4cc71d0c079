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
//! - [`serve`]: the connection loop: request-head deadlines and graceful stops.
//! - [`agent`]: the reference node agent (`floe agent`), a client of the API.
//! - [`tls`]: HTTPS, client certificates and the identities they name.
//! - [`ca`]: `floe ca`, the certificate authority tool (Flocker's `flocker-ca`).
//! - [`import`]: `floe import-flocker`, taking over a Flocker cluster's configuration file.
//! - `log_budget`: rate limits for log lines a flood could repeat.

pub mod agent;
pub mod api;
pub mod ca;
pub mod config;
pub mod import;
mod log_budget;
pub mod model;
pub mod serve;
pub mod store;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tower::ServiceExt;

use config::AuthMode;
pub use config::ServeConfig;
use std::sync::Arc;
pub use store::admin::{ADMIN_TOKEN_FILE, AdminError, issue_admin_token};
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
    /// The settings are refused.
    #[error("{0}")]
    Config(String),
    /// The accounts could not be opened or the first user not created.
    #[error(transparent)]
    Accounts(#[from] AdminError),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Refuses settings that would let anyone who can reach `address` change the configuration:
/// plain HTTP off loopback without `--insecure`, and `--auth none` off loopback without client
/// certificates. Called by [`Server::open`] (with the address asked for), before `floe serve`
/// listens, and again by [`Server::serve`] (with the address bound), so that a refused
/// setting never accepts a connection.
fn check_exposure(config: &ServeConfig, address: SocketAddr) -> Result<(), ServeError> {
    let loopback_only = address.ip().is_loopback() && config.listen.ip().is_loopback();
    if config.tls_files().is_none() && !loopback_only && !config.insecure {
        return Err(ServeError::PlainHttpRefused(address));
    }
    // Without tokens, only loopback or client certificates keep strangers out.
    let certificates_required = config.tls_files().is_some() && config.tls_client_ca.is_some();
    if config.auth == AuthMode::None && !loopback_only && !certificates_required {
        return Err(ServeError::Config(format!(
            "--auth none is refused unless floe listens on loopback only (not {address}) or requires client certificates (--tls-client-ca)"
        )));
    }
    Ok(())
}

/// Opens the store, serves the API on `listener` until `shutdown` completes, then lets
/// in-flight requests finish and waits until every accepted write is durable.
pub async fn run(
    config: &ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::open(config)?.serve(listener, shutdown).await
}

/// floe with its settings checked and its store, accounts and TLS settings open, not serving
/// yet. `floe serve` opens it before it listens, so that a port that accepts connections is
/// one that answers them, and the first administrator's token file is there by then.
pub struct Server {
    config: ServeConfig,
    settings: api::ApiSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    store: Store,
    guard: store::StoreGuard,
    accounts: Option<Arc<store::accounts::Accounts>>,
}

impl Server {
    /// Checks the settings and opens what serving needs: the TLS settings, the store and its
    /// accounts (creating the first administrator in a new one).
    pub fn open(config: &ServeConfig) -> Result<Self, ServeError> {
        check_exposure(config, config.listen)?;
        let settings = config.api_settings();
        settings.meta.check().map_err(ServeError::Config)?;
        let tls = match config.tls_files() {
            Some(files) => Some(tls::server_config(&files)?),
            None => None,
        };
        let options = config.store_options();
        let (store, guard) = Store::open(&options)?;
        let accounts = match config.auth {
            AuthMode::None => None,
            AuthMode::Token => Some(Arc::new(store::admin::open_accounts(
                &options.backend,
                &config.data_dir,
            )?)),
        };
        Ok(Server {
            config: config.clone(),
            settings,
            tls,
            store,
            guard,
            accounts,
        })
    }

    /// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests
    /// finish and waits until every accepted write is durable.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            config,
            settings,
            tls,
            store,
            guard,
            accounts,
        } = self;
        let config = &config;
        let address = listener.local_addr()?;
        // Again with the address bound: a port 0 asked for is now a real one.
        check_exposure(config, address)?;
        let clients_authenticated = config.tls_client_ca.is_some() && tls.is_some();
        let workers = config.worker_count();
        let snapshot = store.snapshot();
        tracing::info!(
            %address,
            tls = tls.is_some(),
            client_certificates = clients_authenticated,
            workers,
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
            match config.auth {
                AuthMode::Token => tracing::info!(
                    "HTTPS without --tls-client-ca: clients present no certificate; tokens authenticate them"
                ),
                AuthMode::None => {
                    tracing::warn!("HTTPS without --tls-client-ca: clients are not authenticated")
                }
            }
        }
        let cluster = LiveCluster::new(std::time::Duration::from_secs(config.node_expiry));
        let expiry = cluster.spawn_expiry();
        let client_certificates = tls.is_some().then_some(clients_authenticated);
        let state = api::AppState::new(store, cluster, settings, accounts);
        let waits = state.waits.clone();
        let app = api::app(state, client_certificates);
        // Held waits are requests in flight, which a graceful stop lets finish: release them as
        // soon as the stop begins, so that it does not last as long as the longest wait.
        let release_waits = move || waits.release_all();
        let header_read_timeout = std::time::Duration::from_secs(config.header_read_timeout);
        let served = match tls {
            Some(tls) => {
                // Each connection's requests carry its peer: the TLS client's identity.
                let service_for = move |peer: tls::Peer| {
                    app.clone()
                        .map_request(move |mut request: axum::extract::Request| {
                            request
                                .extensions_mut()
                                .insert(axum::extract::ConnectInfo(peer.clone()));
                            request
                        })
                };
                let handshakes = tls::TlsHandshakes::new(tls);
                let listener_for = move |handoff| handshakes.listener(handoff);
                serve::serve_on_workers(
                    listener,
                    workers,
                    header_read_timeout,
                    listener_for,
                    service_for,
                    shutdown,
                    release_waits,
                )
                .await
            }
            None => {
                let service_for = move |_| app.clone();
                serve::serve_on_workers(
                    listener,
                    workers,
                    header_read_timeout,
                    |handoff| handoff,
                    service_for,
                    shutdown,
                    release_waits,
                )
                .await
            }
        };
        expiry.abort();
        // The application, and with it every store handle, is gone: the writer drains and stops.
        guard.close().await;
        served?;
        tracing::info!("floe stopped");
        Ok(())
    }
}
