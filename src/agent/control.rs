//! The agent's side of the control service's HTTP API: reading the configuration and the
//! cluster state, waiting for them to change, reporting the node and leaving the cluster.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use reqwest::header::{ETAG, IF_NONE_MATCH};
use reqwest::{Client, StatusCode};
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::converge::{ConfiguredDataset, LeaseView, Report, StateView};
use crate::model::NodeId;
use crate::model::cluster::{MountedDataset, SeenDataset};

/// The configuration's datasets list (its ETag also follows lease changes).
pub const CONFIGURATION_DATASETS: &str = "/v1/configuration/datasets";
/// The configuration's leases.
pub const LEASES: &str = "/v1/configuration/leases";
/// The cluster state's datasets list.
pub const STATE_DATASETS: &str = "/v1/state/datasets";

/// How long an ordinary request may take; a control service slower than this is treated as
/// unreachable, so that the agent retries instead of hanging.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A list and the ETag to wait on for its next change (none when the service sends none).
#[derive(Debug, Clone)]
pub struct Listed<T> {
    /// The items.
    pub items: Vec<T>,
    /// The list's `ETag` header, verbatim.
    pub etag: Option<String>,
}

/// Everything one round of convergence reads.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The configuration's datasets.
    pub configuration: Listed<ConfiguredDataset>,
    /// The configuration's leases.
    pub leases: Vec<LeaseView>,
    /// The cluster state's datasets.
    pub state: Listed<StateView>,
}

/// How a wait for change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The list changed.
    Changed,
    /// The service held the request as long as it would and nothing changed.
    Unchanged,
}

/// The body of `PUT /v1/agent/nodes/{node_uuid}`.
#[derive(Debug, Serialize)]
struct ReportBody<'a> {
    host: String,
    era: Uuid,
    datasets: &'a [MountedDataset],
    nonmanifest_datasets: &'a [SeenDataset],
    /// The reference agent runs no containers.
    containers: [serde_json::Value; 0],
}

/// The agent's TLS settings: with `--tls-ca`, a client configuration trusting only that CA
/// and presenting the node certificate if there is one; without, reqwest's defaults (plain
/// HTTP, or HTTPS against the system's roots).
#[derive(Default)]
pub struct ClientTls {
    config: Option<rustls::ClientConfig>,
    node: Option<NodeId>,
}

impl ClientTls {
    /// Reads the files named by `--tls-cert`, `--tls-key` and `--tls-ca`.
    pub fn load(config: &crate::config::AgentConfig) -> anyhow::Result<Self> {
        use crate::tls::read_certificates;
        let Some(ca_path) = &config.tls_ca else {
            if config.tls_cert.is_some() {
                bail!("--tls-cert needs --tls-ca, the cluster's CA certificate");
            }
            return Ok(ClientTls::default());
        };
        let anchors = read_certificates(ca_path, "the CA certificate")?;
        let mut node = None;
        let mut identity = None;
        if let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) {
            let chain = read_certificates(cert_path, "the node certificate")?;
            node = Some(
                chain
                    .first()
                    .and_then(|leaf| crate::tls::x509::Certificate::parse(leaf).ok()?.common_name())
                    .and_then(|name| match crate::api::identity::Identity::from_common_name(&name) {
                        Some(crate::api::identity::Identity::Node(node)) => Some(node),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        anyhow!(
                            "{} is not a node certificate: its common name must be node-<uuid> (see `floe ca node`)",
                            cert_path.display()
                        )
                    })?,
            );
            let key =
                rustls::pki_types::PrivateKeyDer::from_pem_file(key_path).with_context(|| {
                    format!("cannot read the node's key from {}", key_path.display())
                })?;
            identity = Some((chain, key));
        }
        let config = crate::tls::client_config(identity, &anchors)?;
        Ok(ClientTls {
            config: Some(config),
            node,
        })
    }

    /// The node the certificate names, if there is one.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }
}

/// A client for one control service, speaking for one node.
#[derive(Debug, Clone)]
pub struct Control {
    client: Client,
    base: String,
    node: NodeId,
}

impl Control {
    /// A client for the service at `base` (`http[s]://host:port`, possibly with a path
    /// prefix), presenting `tls`'s certificate and trusting its CA when it has them, and
    /// `token` as a bearer token when authentication is on.
    pub fn new(
        base: &str,
        node: NodeId,
        tls: &ClientTls,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a valid header value")?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = Client::builder()
            .default_headers(headers)
            // The control service is on the cluster's own network: an HTTP proxy set for the
            // node's other traffic must not sit between the agent and it.
            .no_proxy()
            .connect_timeout(Duration::from_secs(5));
        if let Some(config) = &tls.config {
            builder = builder.tls_backend_preconfigured(config.clone());
        }
        let client = builder.build().context("cannot build an HTTP client")?;
        Ok(Control {
            client,
            base: base.trim_end_matches('/').to_string(),
            node,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn node_url(&self) -> String {
        self.url(&format!("/v1/agent/nodes/{}", self.node))
    }

    /// Reads the configuration, then the leases, and the state alongside.
    ///
    /// The leases are read after the datasets on purpose: a move seen in the datasets is then
    /// never paired with leases older than it, so a lease taken before a move always pins the
    /// dataset.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let configuration = async {
            let configuration = self
                .list::<ConfiguredDataset>(CONFIGURATION_DATASETS)
                .await?;
            let leases = self.list::<LeaseView>(LEASES).await?;
            anyhow::Ok((configuration, leases.items))
        };
        let ((configuration, leases), state) =
            tokio::try_join!(configuration, self.list::<StateView>(STATE_DATASETS))?;
        Ok(Snapshot {
            configuration,
            leases,
            state,
        })
    }

    async fn list<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Listed<T>> {
        let response = self
            .client
            .get(self.url(path))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        if status != StatusCode::OK {
            bail!("GET {path} answered {status}{}", hint(status));
        }
        let etag = etag_of(&response);
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("GET {path}"))?;
        let items = serde_json::from_slice(&bytes)
            .with_context(|| format!("GET {path} answered a body the agent cannot read"))?;
        Ok(Listed { items, etag })
    }

    /// Waits up to `wait` for the list at `path` to differ from the version tagged `etag`.
    pub async fn wait_for_change(
        &self,
        path: &str,
        etag: &str,
        wait: Duration,
    ) -> anyhow::Result<Waited> {
        // `Prefer: wait` takes whole seconds; round up so that the wait covers the interval.
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        let response = self
            .client
            .get(self.url(path))
            .header(IF_NONE_MATCH, etag)
            .header("prefer", format!("wait={seconds}"))
            .timeout(wait + REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("waiting on GET {path}"))?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(Waited::Unchanged),
            StatusCode::OK if etag_of(&response).as_deref() == Some(etag) => Ok(Waited::Unchanged),
            StatusCode::OK => Ok(Waited::Changed),
            status => Err(anyhow!(
                "waiting on GET {path} answered {status}{}",
                hint(status)
            )),
        }
    }

    /// Sends the node's whole state; returns how long the service keeps it without a new
    /// report.
    pub async fn report(
        &self,
        host: std::net::IpAddr,
        era: Uuid,
        report: &Report,
    ) -> anyhow::Result<Duration> {
        let body = ReportBody {
            host: host.to_string(),
            era,
            datasets: &report.datasets,
            nonmanifest_datasets: &report.nonmanifest_datasets,
            containers: [],
        };
        let response = self
            .client
            .put(self.node_url())
            .json(&body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .context("PUT of the node's report")?;
        let status = response.status();
        let bytes = response.bytes().await.context("PUT of the node's report")?;
        if status != StatusCode::OK {
            bail!(
                "the report was refused with {status}: {}{}",
                String::from_utf8_lossy(&bytes),
                hint(status)
            );
        }
        #[derive(serde::Deserialize)]
        struct Accepted {
            expires_in: u64,
        }
        let accepted: Accepted = serde_json::from_slice(&bytes)
            .context("the report's answer is not the expected JSON")?;
        Ok(Duration::from_secs(accepted.expires_in))
    }

    /// Tells the service that this node leaves, so that it drops out of the state at once.
    pub async fn goodbye(&self, timeout: Duration) -> anyhow::Result<()> {
        let response = self
            .client
            .delete(self.node_url())
            .timeout(timeout)
            .send()
            .await
            .context("DELETE of the node")?;
        match response.status() {
            // Not found: the service has already forgotten the node (it restarted, or the
            // node expired), which is what was asked.
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            status => Err(anyhow!(
                "DELETE of the node answered {status}{}",
                hint(status)
            )),
        }
    }
}

/// A response's `ETag` header, verbatim.
fn etag_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(ETAG)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

/// What an operator can do about a refusal the agent will meet at every attempt until they
/// act: it retries for ever, so the log line must say what to change.
fn hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => {
            " (the control service authenticates: give the agent a token with --token or FLOE_AGENT_TOKEN, or a node certificate)"
        }
        StatusCode::FORBIDDEN => {
            " (the agent's token or certificate may not do this: its user needs nodes->NODE->report and the permissions to list what the agent reads, see the README's table; or use the node's own certificate)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_the_operator_must_fix_say_how() {
        assert!(hint(StatusCode::UNAUTHORIZED).contains("--token"));
        assert!(hint(StatusCode::FORBIDDEN).contains("nodes->NODE->report"));
        for passing in [StatusCode::SERVICE_UNAVAILABLE, StatusCode::BAD_REQUEST] {
            assert_eq!(hint(passing), "", "{passing}: retrying may be enough");
        }
    }
}
