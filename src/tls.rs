//! HTTPS for `floe serve`: the rustls server configuration built from PEM files, the
//! listener that performs TLS handshakes off the accept loop, and the [`Peer`] each
//! connection carries into its requests (its address and the [`Identity`] its client
//! certificate names).
//!
//! Only the aws-lc-rs crypto provider is used (see `rust_style_and_crates.md`).

pub mod verifier;
pub mod x509;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::api::identity::Identity;
use crate::log_budget::SharedLogBudget;
use verifier::ClientVerifier;

/// How long a client may take to complete the TLS handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most one failed handshake, and one refused client certificate, is logged per this long;
/// see [`log_failure`].
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A server certificate that ends within this long is warned about at start-up.
const CERTIFICATE_WARNING_AHEAD: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// rustls refused the certificates or key.
    #[error("the TLS settings are not usable: {0}")]
    Rustls(String),
}

/// The files that make up the server's TLS settings.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA certificate(s) client certificates must chain to (PEM); without it clients are
    /// not authenticated.
    pub client_ca: Option<PathBuf>,
}

/// Reads every certificate in a PEM file; an empty file is an error.
pub fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Builds the server configuration: the server's certificate and key and, with a client CA,
/// mandatory client certificates checked by [`ClientVerifier`].
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certificates(&files.cert, "the server certificate")?;
    if let Ok(leaf) = x509::Certificate::parse(&chain[0]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        if let Some(problem) = validity_problem(leaf.not_before, leaf.not_after, now) {
            tracing::warn!(
                path = %files.cert.display(),
                not_before = %unix_time(leaf.not_before),
                not_after = %unix_time(leaf.not_after),
                "the server certificate {problem}; issue a new one (`floe ca control HOST`)"
            );
        }
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Pem {
        what: "the server's private key",
        path: files.key.clone(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "it holds no unencrypted private key \
                (PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY; an encrypted key must be \
                decrypted first, and a certificate is not a key)"
                .into(),
            other => other.to_string(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let anchors = read_certificates(path, "the client CA certificate")?;
            let roots = root_store(&anchors).map_err(|reason| TlsError::Pem {
                what: "the client CA certificate",
                path: path.clone(),
                reason,
            })?;
            let webpki =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
            let verifier =
                ClientVerifier::new(webpki, anchors, provider.signature_verification_algorithms);
            builder.with_client_cert_verifier(Arc::new(verifier))
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    // axum serves HTTP/1.1 only (its http2 feature is off).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What is wrong, at `now`, with a certificate valid from `not_before` to `not_after` (all in
/// seconds since the Unix epoch): clients refuse one outside its dates, so the operator hears
/// of it when floe starts rather than from every client, and a little before it happens.
fn validity_problem(not_before: i64, not_after: i64, now: i64) -> Option<String> {
    if now > not_after {
        Some("has expired: clients will refuse every handshake".into())
    } else if now < not_before {
        Some("is not valid yet: clients will refuse every handshake until it is".into())
    } else if not_after - now < CERTIFICATE_WARNING_AHEAD.as_secs() as i64 {
        let days = (not_after - now) / (24 * 3600);
        Some(format!("expires in {days} days"))
    } else {
        None
    }
}

/// `seconds` since the Unix epoch, in RFC 3339.
fn unix_time(seconds: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Trust anchors from CA certificates. webpki refuses v1 certificates that carry extensions,
/// the form of Flocker's `cluster.crt`; floe reads those itself (see [`x509`]).
///
/// A certificate that cannot be a CA is refused: webpki would take it as an anchor, and then
/// refuse every peer, whose certificates chain to the cluster's CA instead. Giving a control,
/// node or user certificate where the CA's belongs is an easy mistake, better named at start-up
/// than in a refused handshake per connection.
pub fn root_store(anchors: &[CertificateDer<'static>]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for anchor in anchors {
        let parsed = x509::Certificate::parse(anchor);
        if let Ok(parsed) = &parsed
            && parsed.is_not_a_ca()
        {
            let name = parsed
                .common_name()
                .unwrap_or_else(|| "(no common name)".into());
            return Err(format!(
                "the certificate of {name:?} is not a CA certificate, so no peer's certificate \
                 can chain to it: give the cluster's CA certificate (`cluster.crt`), not a \
                 control, node or user certificate"
            ));
        }
        if let Err(error) = roots.add(anchor.clone()) {
            let parsed = parsed.map_err(|_| format!("a CA certificate is not usable: {error}"))?;
            roots.roots.push(parsed.trust_anchor());
        }
    }
    Ok(roots)
}

/// A client configuration trusting only `anchors` and, when given, presenting `identity`
/// (chain, leaf first, and key). The certificate is used as it is: unlike rustls' own
/// `with_client_auth_cert`, this does not parse it with webpki, so Flocker's X.509 v1 node
/// certificates work.
pub fn client_config(
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    anchors: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = root_store(anchors).map_err(TlsError::Rustls)?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let signing_key = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::Rustls(format!("the private key is not usable: {e}")))?;
            let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                certified,
            )))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A connection's far end: where it comes from and whom its client certificate names.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// The identity of the client certificate, if one was presented and names one.
    pub identity: Option<Identity>,
}

/// What every TLS listener of a server shares: the rustls settings, and the budget for
/// logging failed handshakes (one for the server, however many workers do handshakes).
#[derive(Clone)]
pub struct TlsHandshakes {
    acceptor: TlsAcceptor,
    failures: Arc<SharedLogBudget>,
}

impl TlsHandshakes {
    /// Handshakes with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsHandshakes {
            acceptor: TlsAcceptor::from(config),
            failures: Arc::new(SharedLogBudget::new(FAILURE_LOG_INTERVAL)),
        }
    }

    /// A listener whose connections are `tcp`'s, TLS-established.
    pub fn listener<L>(&self, tcp: L) -> TlsListener<L> {
        TlsListener {
            tcp,
            handshakes: self.clone(),
            pending: JoinSet::new(),
        }
    }
}

/// A listener whose connections come out TLS-established. Handshakes run as their own
/// tasks, so a slow or silent client delays nobody else.
pub struct TlsListener<L> {
    tcp: L,
    handshakes: TlsHandshakes,
    pending: JoinSet<Option<(TlsStream<TcpStream>, Peer)>>,
}

/// Logs a failed handshake within `failures`' budget, with the number left out since the last
/// line: a client with the wrong certificate shows up in the log at once, while a port scanner
/// or a plain-HTTP health check cannot fill it with a line per connection.
fn log_failure(failures: &SharedLogBudget, remote: SocketAddr, reason: &dyn std::fmt::Display) {
    if let Some(left_out) = failures.admit_one() {
        tracing::info!(
            %remote,
            %reason,
            not_logged_since_last = left_out,
            "TLS handshake failed"
        );
    }
}

/// Completes one handshake; failures are logged (see [`log_failure`]) and the connection
/// dropped.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    failures: Arc<SharedLogBudget>,
) -> Option<(TlsStream<TcpStream>, Peer)> {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            log_failure(&failures, remote, &error);
            return None;
        }
        Err(_) => {
            log_failure(&failures, remote, &"timed out");
            return None;
        }
    };
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| x509::Certificate::parse(leaf).ok()?.common_name())
        .and_then(|name| Identity::from_common_name(&name));
    tracing::debug!(%remote, ?identity, "TLS connection established");
    Some((stream, Peer { remote, identity }))
}

impl<L> Listener for TlsListener<L>
where
    L: Listener<Io = TcpStream, Addr = SocketAddr>,
{
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                (stream, remote) = self.tcp.accept() => {
                    self.pending.spawn(handshake(
                        self.handshakes.acceptor.clone(),
                        stream,
                        remote,
                        Arc::clone(&self.handshakes.failures),
                    ));
                }
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    if let Ok(Some(established)) = done {
                        return established;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            remote: self.tcp.local_addr()?,
            identity: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_server_certificate_out_of_its_dates_or_near_its_end_is_warned_about() {
        let day = 24 * 3600;
        let (from, to) = (1_000 * day, 2_000 * day);
        assert_eq!(validity_problem(from, to, 1_500 * day), None);
        assert!(
            validity_problem(from, to, 2_001 * day)
                .unwrap()
                .contains("has expired")
        );
        assert!(
            validity_problem(from, to, 999 * day)
                .unwrap()
                .contains("not valid yet")
        );
        assert_eq!(
            validity_problem(from, to, 1_990 * day).as_deref(),
            Some("expires in 10 days")
        );
        assert_eq!(
            validity_problem(from, to, 1_969 * day),
            None,
            "31 days left"
        );
    }

    #[test]
    fn failed_handshakes_are_logged_once_per_interval_with_the_count_left_out() {
        let log = SharedLogBudget::new(FAILURE_LOG_INTERVAL);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(
            log.admit_one_at(at(0)),
            Some(0),
            "the first failure is logged"
        );
        assert_eq!(log.admit_one_at(at(1)), None);
        assert_eq!(log.admit_one_at(at(9)), None);
        assert_eq!(
            log.admit_one_at(at(10)),
            Some(2),
            "the next line says how many were left out"
        );
        assert_eq!(
            log.admit_one_at(at(25)),
            Some(0),
            "a quiet spell leaves none out"
        );
    }
}
