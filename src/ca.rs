//! `floe ca`: the cluster's certificate authority, doing what Flocker's `flocker-ca` does and
//! writing its file layout — `cluster.crt`/`cluster.key` for the CA,
//! `control-HOST.crt/.key` for the control service, `UUID.crt/.key` for a node's agent and
//! `NAME.crt/.key` for an API user — so that existing scripts and paths keep working.
//!
//! Differences from `flocker-ca`, all deliberate: keys are ECDSA P-256 rather than RSA 4096
//! (as strong, far faster, accepted by every TLS client Flocker's users have), certificates are
//! X.509 v3 (Flocker's are v1, which strict TLS stacks refuse), and a file that exists is never
//! overwritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use uuid::Uuid;

use crate::model::dataset::{InvalidNodeId, node_id};
use crate::model::permission::valid_user_name;
use crate::tls::x509;

/// The CA certificate's file name.
pub const CA_CERT: &str = "cluster.crt";
/// The CA key's file name.
pub const CA_KEY: &str = "cluster.key";
/// The control service certificate's common name (clients verify the server as this name).
pub const CONTROL_SERVICE: &str = "control-service";

/// How long certificates are valid: 20 years, as Flocker's.
const VALIDITY_DAYS: i64 = 20 * 365;

/// Why a `floe ca` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file to be written exists already.
    #[error(
        "{0} already exists; floe ca never overwrites a certificate or key (move it away first)"
    )]
    Exists(PathBuf),
    /// A file could not be written. The message says so: a bare "cluster.key: No such file
    /// or directory" reads as if floe ca were looking for a key, when --dir is missing.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The CA's files could not be used.
    #[error("cannot use the CA in {dir} ({reason}); create one with `floe ca init NAME`")]
    BadCa {
        /// The directory.
        dir: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A name that cannot go into a certificate or a file name.
    #[error("{0}")]
    BadName(String),
    /// A node UUID whose agent the control service would refuse.
    #[error(
        "{0} The control service refuses reports from other node UUIDs; omit the UUID to issue a certificate for a new node."
    )]
    NodeId(#[from] InvalidNodeId),
    /// Generating a key or certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate and key written by `floe ca`.
#[derive(Debug, Clone)]
pub struct Written {
    /// The certificate file.
    pub cert: PathBuf,
    /// The key file (mode 0600).
    pub key: PathBuf,
}

/// `floe ca init NAME`: a new self-signed CA for a new cluster, with a fresh cluster UUID.
pub fn init(dir: &Path, name: &str) -> Result<Written, CaError> {
    if name.is_empty() {
        return Err(CaError::BadName(
            "the cluster name must not be empty".into(),
        ));
    }
    let written = targets(dir, "cluster")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name, Uuid::new_v4());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write(&written, &cert.pem(), &key.serialize_pem())?;
    Ok(written)
}

/// `floe ca control HOSTNAME`: the control service's certificate, valid for the name
/// `control-service` and for HOSTNAME (a DNS name, or an IP address).
pub fn control(dir: &Path, hostname: &str) -> Result<Written, CaError> {
    let not_a_host = || {
        CaError::BadName(format!(
            "{hostname:?} is neither a DNS name nor an IP address"
        ))
    };
    let host = match hostname.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) if is_dns_name(hostname) => {
            SanType::DnsName(hostname.try_into().map_err(|_| not_a_host())?)
        }
        Err(_) => return Err(not_a_host()),
    };
    file_safe(hostname)?;
    let dns = CONTROL_SERVICE
        .try_into()
        .map_err(|_| CaError::BadName(CONTROL_SERVICE.into()))?;
    issue(
        dir,
        &format!("control-{hostname}"),
        CONTROL_SERVICE,
        |params| {
            params.subject_alt_names = vec![SanType::DnsName(dns), host];
        },
    )
}

/// Whether `name` is a DNS host name (RFC 1123): dot-separated labels of 1 to 63 letters,
/// digits and hyphens, none starting or ending with a hyphen, 253 characters at most. A
/// certificate for anything else names no host a client could connect to.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `floe ca node [UUID]`: a node agent's certificate (common name `node-UUID`), for a fresh
/// UUID when none is given. A given UUID must be of version 4, checked before anything is
/// written.
pub fn node(dir: &Path, node: Option<Uuid>) -> Result<(Uuid, Written), CaError> {
    let node = match node {
        Some(node) => node_id(node)?,
        None => Uuid::new_v4(),
    };
    let written = issue(dir, &node.to_string(), &format!("node-{node}"), |_| {})?;
    Ok((node, written))
}

/// `floe ca user NAME`: an API user's certificate (common name `user-NAME`, client auth), for
/// a name the API accepts for a user (a certificate for another would name nobody).
pub fn user(dir: &Path, name: &str) -> Result<Written, CaError> {
    if !valid_user_name(name) {
        return Err(CaError::BadName(format!(
            "{name:?} is not a user name: 1 to 128 letters, digits or - _ . @, with at least one letter or digit"
        )));
    }
    file_safe(name)?;
    issue(dir, name, &format!("user-{name}"), |params| {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    })
}

/// Issues a certificate signed by the CA in `dir`, into `dir/<file>.crt` and `.key`.
fn issue(
    dir: &Path,
    file: &str,
    common_name: &str,
    adjust: impl FnOnce(&mut CertificateParams),
) -> Result<Written, CaError> {
    let written = targets(dir, file)?;
    let (issuer, cluster) = load_ca(dir)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name, cluster);
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    adjust(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write(&written, &cert.pem(), &key.serialize_pem())?;
    Ok(written)
}

/// The CA in `dir` as an issuer, and its cluster UUID (the certificate's OU).
fn load_ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, Uuid), CaError> {
    let bad = |reason: String| CaError::BadCa {
        dir: dir.to_path_buf(),
        reason,
    };
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let cert = CertificateDer::from_pem_file(&cert_path)
        .map_err(|e| bad(format!("{}: {e}", cert_path.display())))?;
    let key_text = std::fs::read_to_string(&key_path)
        .map_err(|e| bad(format!("{}: {e}", key_path.display())))?;
    let key =
        KeyPair::from_pem(&key_text).map_err(|e| bad(format!("{}: {e}", key_path.display())))?;
    let cluster = x509::Certificate::parse(&cert)
        .ok()
        .and_then(|parsed| parsed.organizational_unit())
        .and_then(|unit| Uuid::try_parse(&unit).ok())
        .ok_or_else(|| {
            bad(format!(
                "{} has no cluster UUID as its OU",
                cert_path.display()
            ))
        })?;
    let issuer = Issuer::from_ca_cert_der(&cert, key)
        .map_err(|e| bad(format!("{}: {e}", cert_path.display())))?;
    Ok((issuer, cluster))
}

/// CN = `common_name`, OU = the cluster UUID, as Flocker's certificates.
fn subject(common_name: &str, cluster: Uuid) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationalUnitName, cluster.to_string());
    name
}

/// Valid from a day ago (for clocks a little behind) for 20 years.
fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

/// A name that is also a plain file name.
fn file_safe(name: &str) -> Result<(), CaError> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(CaError::BadName(format!(
            "{name:?} cannot be used: it names the certificate's file"
        )));
    }
    Ok(())
}

/// `dir/<stem>.crt` and `.key`, neither of which may exist.
fn targets(dir: &Path, stem: &str) -> Result<Written, CaError> {
    let written = Written {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    for path in [&written.cert, &written.key] {
        if path.exists() {
            return Err(CaError::Exists(path.clone()));
        }
    }
    Ok(written)
}

/// Writes the key (0600) and then the certificate (0644), each only if it does not exist.
fn write(written: &Written, cert: &str, key: &str) -> Result<(), CaError> {
    create_new(&written.key, key, 0o600)?;
    create_new(&written.cert, cert, 0o644)
}

fn create_new(path: &Path, contents: &str, mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CaError::Exists(path.to_path_buf()),
            _ => io(e),
        })?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}
