//! floe over real TLS on 127.0.0.1: certificates made by `floe ca` (in-process, and once as
//! the real binary), API users and node agents identified by their client certificates,
//! refusals in the handshake or with 403, server name verification, and Flocker's X.509 v1
//! client certificates built byte by byte.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::prelude::{BASE64_STANDARD, Engine as _};
use common::{NODE_0, NODE_1, floe_binary};
use floe::config::ServeConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

const DATASETS: &str = "/v1/configuration/datasets";

/// A CA directory with a control certificate for 127.0.0.1, user `alice` and node NODE_0.
fn pki() -> TempDir {
    let dir = TempDir::new().unwrap();
    floe::ca::init(dir.path(), "test-cluster").unwrap();
    floe::ca::control(dir.path(), "127.0.0.1").unwrap();
    floe::ca::user(dir.path(), "alice").unwrap();
    floe::ca::node(dir.path(), Some(NODE_0.parse().unwrap())).unwrap();
    dir
}

/// floe serving HTTPS in this process; stopped on drop.
struct TlsServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    _data: TempDir,
}

impl TlsServer {
    /// Serves with the control certificate in `pki`, requiring client certificates from its CA.
    async fn start(pki: &Path) -> Self {
        Self::start_with(pki, true).await
    }

    /// Serves with the control certificate in `pki`; requires client certificates from its CA
    /// only if `client_ca`.
    async fn start_with(pki: &Path, client_ca: bool) -> Self {
        Self::start_configured(pki, client_ca, |_| {}).await
    }

    /// As [`TlsServer::start_with`], after letting `adjust` change the settings.
    async fn start_configured(
        pki: &Path,
        client_ca: bool,
        adjust: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let data = TempDir::new().unwrap();
        let mut config = ServeConfig::ephemeral();
        config.data_dir = data.path().to_path_buf();
        config.tls_cert = Some(pki.join("control-127.0.0.1.crt"));
        config.tls_key = Some(pki.join("control-127.0.0.1.key"));
        config.tls_client_ca = client_ca.then(|| pki.join("cluster.crt"));
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            floe::run(&config, listener, async {
                let _ = stop.await;
            })
            .await
            .expect("the server runs");
        });
        TlsServer {
            addr,
            shutdown: Some(shutdown),
            _data: data,
        }
    }

    /// `https://127.0.0.1:PORT/path`.
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A client trusting only `pki`'s CA, presenting `identity` (`dir/NAME.crt` + `.key`) if
/// given, and resolving `control-service` to `addr`.
fn client(pki: &Path, identity: Option<(&Path, &str)>, addr: SocketAddr) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(pki.join("cluster.crt")).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_certs_only([ca])
        .resolve("control-service", addr)
        .resolve("not-the-server.example", addr);
    if let Some((dir, name)) = identity {
        let mut pem = std::fs::read(dir.join(format!("{name}.crt"))).unwrap();
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// Status and JSON body (`null` when empty).
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the request is answered");
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    (status, body)
}

/// Asserts the request fails without any HTTP answer: the TLS handshake refused the client.
async fn assert_refused_in_handshake(request: reqwest::RequestBuilder, what: &str) {
    match request.send().await {
        Err(error) => assert!(!error.is_status(), "{what}: {error:?}"),
        Ok(response) => panic!(
            "{what}: expected a handshake failure, got {}",
            response.status()
        ),
    }
}

fn report(host: &str) -> Value {
    json!({
        "host": host,
        "era": "5f0c2a3e-7d4b-4c1a-9e2f-0a1b2c3d4e5f",
        "datasets": [],
        "nonmanifest_datasets": [],
        "containers": [],
    })
}

#[tokio::test]
async fn a_user_certificate_walks_through_datasets() {
    let pki = pki();
    let server = TlsServer::start(pki.path()).await;
    let alice = client(pki.path(), Some((pki.path(), "alice")), server.addr);

    let (status, created) = answer(
        alice
            .post(server.url(DATASETS))
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["dataset_id"].as_str().unwrap().to_string();

    let (status, list) = answer(alice.get(server.url(DATASETS))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|d| d["dataset_id"] == id.as_str())
    );

    let path = format!("{DATASETS}/{id}");
    let (status, moved) = answer(
        alice
            .post(server.url(&path))
            .json(&json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["primary"], NODE_1);

    let (status, deleted) = answer(alice.delete(server.url(&path))).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["deleted"], true);
}

#[tokio::test]
async fn clients_without_an_acceptable_certificate_are_refused_in_the_handshake() {
    let pki = pki();
    let server = TlsServer::start(pki.path()).await;

    let anonymous = client(pki.path(), None, server.addr);
    assert_refused_in_handshake(anonymous.get(server.url("/v1/version")), "no certificate").await;

    // A user certificate from another cluster's CA.
    let other = TempDir::new().unwrap();
    floe::ca::init(other.path(), "other-cluster").unwrap();
    floe::ca::user(other.path(), "mallory").unwrap();
    let foreign = client(pki.path(), Some((other.path(), "mallory")), server.addr);
    assert_refused_in_handshake(foreign.get(server.url("/v1/version")), "another CA").await;

    // Signed by the right CA, but the common name names neither a user nor a node: the
    // control service's own certificate, and one with a bare name.
    let control = client(
        pki.path(),
        Some((pki.path(), "control-127.0.0.1")),
        server.addr,
    );
    assert_refused_in_handshake(control.get(server.url("/v1/version")), "CN control-service").await;
    issue_with_common_name(pki.path(), "bob", "bob");
    let bare = client(pki.path(), Some((pki.path(), "bob")), server.addr);
    assert_refused_in_handshake(bare.get(server.url("/v1/version")), "CN bob").await;

    // The server still serves a proper client afterwards.
    let alice = client(pki.path(), Some((pki.path(), "alice")), server.addr);
    let (status, _) = answer(alice.get(server.url("/v1/version"))).await;
    assert_eq!(status, StatusCode::OK);
}

/// Issues `dir/file.crt/.key` with the given common name, signed by `dir`'s CA (rcgen).
fn issue_with_common_name(dir: &Path, file: &str, common_name: &str) {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("cluster.key")).unwrap())
            .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(dir.join("cluster.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{file}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn a_node_certificate_reports_its_own_node_and_nothing_else() {
    let pki = pki();
    let server = TlsServer::start(pki.path()).await;
    let node = client(pki.path(), Some((pki.path(), NODE_0)), server.addr);

    let (status, body) = answer(
        node.post(server.url(DATASETS))
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["description"].as_str().unwrap().contains(NODE_0),
        "{body}"
    );

    let other = format!("/v1/agent/nodes/{NODE_1}");
    let (status, body) = answer(node.put(server.url(&other)).json(&report("10.0.0.2"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = answer(node.delete(server.url(&other))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let own = format!("/v1/agent/nodes/{NODE_0}");
    let (status, body) = answer(node.put(server.url(&own)).json(&report("10.0.0.1"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // What the agent reads to converge is readable; the rest of the API is not.
    let (status, _) = answer(node.get(server.url(DATASETS))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = answer(node.get(server.url("/v1/state/nodes"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let alice = client(pki.path(), Some((pki.path(), "alice")), server.addr);
    let (status, nodes) = answer(alice.get(server.url("/v1/state/nodes"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nodes, json!([{"uuid": NODE_0, "host": "10.0.0.1"}]));
}

#[tokio::test]
async fn the_server_certificate_verifies_as_control_service_and_as_its_address() {
    let pki = pki();
    let server = TlsServer::start(pki.path()).await;
    let alice = client(pki.path(), Some((pki.path(), "alice")), server.addr);
    let port = server.addr.port();
    for base in [
        format!("https://control-service:{port}"),
        format!("https://127.0.0.1:{port}"),
    ] {
        let (status, body) = answer(alice.get(format!("{base}/v1/version"))).await;
        assert_eq!(status, StatusCode::OK, "{base}: {body}");
    }
    // A name the certificate does not carry fails verification.
    let wrong = alice.get(format!("https://not-the-server.example:{port}/v1/version"));
    assert!(wrong.send().await.is_err());
}

#[tokio::test]
async fn plain_http_is_refused_on_a_non_loopback_address_unless_insecure() {
    // Tests bind loopback only: the address asked for is what makes this refused.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = ServeConfig::ephemeral();
    config.listen = "0.0.0.0:0".parse().unwrap();
    let error = floe::run(&config, listener, async {}).await.unwrap_err();
    assert!(
        matches!(error, floe::ServeError::PlainHttpRefused(_)),
        "{error}"
    );
    assert!(error.to_string().contains("--insecure"), "{error}");

    // With --insecure (and tokens, since --auth none needs loopback) it serves. Tokens write
    // the administrator's token to the data directory: a temporary one, not the working tree.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = TempDir::new().unwrap();
    let mut config = ServeConfig::ephemeral();
    config.listen = "0.0.0.0:0".parse().unwrap();
    config.insecure = true;
    config.auth = floe::config::AuthMode::Token;
    config.data_dir = dir.path().to_path_buf();
    floe::run(&config, listener, async {}).await.unwrap();
    assert!(dir.path().join(floe::ADMIN_TOKEN_FILE).exists());
}

#[test]
fn floe_ca_writes_flockers_layout_with_private_keys_and_never_overwrites() {
    let dir = TempDir::new().unwrap();
    let ca = |args: &[&str]| {
        Command::new(floe_binary())
            .arg("ca")
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .output()
            .expect("floe ca runs")
    };
    for args in [
        &["init", "mycluster"][..],
        &["control", "control.example"],
        &["node", NODE_0],
        &["user", "alice"],
    ] {
        let output = ca(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let node = ca(&["node"]);
    assert!(node.status.success());
    let stdout = String::from_utf8(node.stdout).unwrap();
    let fresh = stdout
        .lines()
        .find_map(|l| l.strip_prefix("node UUID: "))
        .expect("the new node's UUID");
    for stem in ["cluster", "control-control.example", NODE_0, fresh, "alice"] {
        let mode = |ext: &str| {
            let path: PathBuf = dir.path().join(format!("{stem}.{ext}"));
            std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("key"), 0o600, "{stem}.key");
        assert_eq!(mode("crt"), 0o644, "{stem}.crt");
    }

    let before = std::fs::read(dir.path().join("alice.key")).unwrap();
    let again = ca(&["user", "alice"]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("alice.key")).unwrap(), before);
    let init = ca(&["init", "another"]);
    assert!(!init.status.success());
}

#[test]
fn floe_ca_says_it_cannot_write_into_a_missing_directory() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("missing");
    let output = Command::new(floe_binary())
        .arg("ca")
        .arg("--dir")
        .arg(&missing)
        .args(["init", "mycluster"])
        .output()
        .expect("floe ca runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "floe ca: cannot write {}",
        missing.join("cluster.").display()
    );
    assert!(
        stderr.starts_with(&expected) && stderr.lines().count() == 1,
        "expected one line starting {expected:?}, got {stderr:?}"
    );
}

/// `floe ca` issues certificates only for names floe can use: a user name the API accepts
/// (a certificate for another would name nobody, `_` would read as a wildcard) and a host
/// name a client can connect to; nothing is written for a refused name.
#[test]
fn floe_ca_refuses_names_no_certificate_should_carry() {
    let dir = TempDir::new().unwrap();
    floe::ca::init(dir.path(), "test-cluster").unwrap();
    let count = || std::fs::read_dir(dir.path()).unwrap().count();
    let before = count();
    for user in ["bob smith", "_", "...", "", &"x".repeat(129)] {
        let error = floe::ca::user(dir.path(), user).expect_err(user);
        assert!(
            error.to_string().contains("is not a user name"),
            "{user}: {error}"
        );
    }
    for host in [
        "bad host name!",
        "-lead.example",
        "a..b",
        "under_score.example",
        "",
    ] {
        let error = floe::ca::control(dir.path(), host).expect_err(host);
        assert!(
            error.to_string().contains("neither a DNS name"),
            "{host}: {error}"
        );
    }
    assert_eq!(count(), before, "a refused name wrote files");
    floe::ca::user(dir.path(), "bob.smith@ops").unwrap();
    floe::ca::control(dir.path(), "control-1.example.com").unwrap();
    floe::ca::control(dir.path(), "::1").unwrap();
}

/// The control service accepts reports only from version-4 node UUIDs (Flocker's client reads
/// every node UUID as version 4, flocker.md 8.4), so a certificate for any other node would
/// only make its agent retry for ever: `floe ca node` refuses it, and writes nothing.
#[test]
fn floe_ca_refuses_a_node_uuid_that_is_not_version_4() {
    let dir = TempDir::new().unwrap();
    floe::ca::init(dir.path(), "test-cluster").unwrap();
    let files = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = files();
    for uuid in [
        "00000000-0000-1000-8000-000000000000",
        // Version 1, and the nil UUID.
        "a8098c1a-f86e-11da-bd1a-00112444be1e",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let message = format!("The node UUID must be a version-4 UUID, not {uuid:?}.");
        let error = floe::ca::node(dir.path(), Some(uuid.parse().unwrap()))
            .expect_err("a node UUID that is not version 4 is refused");
        assert!(error.to_string().contains(&message), "{error}");

        let output = Command::new(floe_binary())
            .arg("ca")
            .arg("--dir")
            .arg(dir.path())
            .args(["node", uuid])
            .output()
            .expect("floe ca runs");
        assert!(!output.status.success(), "{uuid} was certified");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&message), "{stderr}");
    }
    assert_eq!(files(), before, "nothing was written");
}

/// DER: one element.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = contents.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// DER: a SEQUENCE of already-encoded elements.
fn sequence(elements: &[&[u8]]) -> Vec<u8> {
    der(0x30, &elements.concat())
}

/// An X.509 **v1** certificate (no version field) signed by `signer`, in the form Flocker's
/// flocker-ca (pyOpenSSL without `set_version(2)`) produced: v3 `extensions` may still follow.
fn v1_certificate(
    issuer: &[u8],
    subject: &[u8],
    subject_key: &rcgen::KeyPair,
    extensions: &[&[u8]],
    not_after: &str,
    signer: &rcgen::KeyPair,
) -> Vec<u8> {
    use rcgen::{PublicKeyData, SigningKey};
    // sha256WithRSAEncryption (with its NULL parameters) for an RSA signer like Flocker's,
    // ecdsa-with-SHA256 for floe's.
    let signature_algorithm = if signer.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        sequence(&[
            &der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
            ),
            &der(0x05, &[]),
        ])
    } else {
        sequence(&[&der(
            0x06,
            &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        )])
    };
    let validity = sequence(&[
        &der(0x17, b"200101000000Z"),
        &der(0x17, not_after.as_bytes()),
    ]);
    let extensions = if extensions.is_empty() {
        Vec::new()
    } else {
        der(0xa3, &sequence(extensions))
    };
    let tbs = sequence(&[
        &der(0x02, &[0x01, 0x23, 0x45]),
        &signature_algorithm,
        issuer,
        &validity,
        subject,
        &subject_key.subject_public_key_info(),
        &extensions,
    ]);
    let signature = signer.sign(&tbs).unwrap();
    let certificate = sequence(&[
        &tbs,
        &signature_algorithm,
        &der(0x03, &[&[0u8][..], &signature].concat()),
    ]);
    let parsed = floe::tls::x509::Certificate::parse(&certificate).unwrap();
    assert_eq!(
        parsed.version,
        floe::tls::x509::V1,
        "the test certificate is v1"
    );
    certificate
}

/// A `Name` with a UTF8String CN and, if given, an OU.
fn name(common_name: &str, unit: Option<&str>) -> Vec<u8> {
    let attribute = |oid: &[u8], value: &str| {
        der(
            0x31,
            &sequence(&[&der(0x06, oid), &der(0x0c, value.as_bytes())]),
        )
    };
    let mut rdns = attribute(&[0x55, 0x04, 0x03], common_name);
    if let Some(unit) = unit {
        rdns.extend(attribute(&[0x55, 0x04, 0x0b], unit));
    }
    der(0x30, &rdns)
}

/// PEM of a certificate's DER.
fn pem(certificate: &[u8]) -> String {
    let lines: Vec<String> = BASE64_STANDARD
        .encode(certificate)
        .as_bytes()
        .chunks(64)
        .map(|chunk| String::from_utf8(chunk.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Issues a v1 client certificate carrying a v3 extension (extendedKeyUsage clientAuth) with
/// the CA in `ca_dir`, into `dir/file.crt/.key`.
fn issue_v1(ca_dir: &Path, dir: &Path, file: &str, common_name: &str, not_after: &str) {
    let ca_der = {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_file(ca_dir.join("cluster.crt")).unwrap()
    };
    let ca = floe::tls::x509::Certificate::parse(&ca_der).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("cluster.key")).unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let client_auth = sequence(&[&der(
        0x06,
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02],
    )]);
    let extended_key_usage = sequence(&[&der(0x06, &[0x55, 0x1d, 0x25]), &der(0x04, &client_auth)]);
    let certificate = v1_certificate(
        ca.subject,
        &name(common_name, None),
        &key,
        &[&extended_key_usage],
        not_after,
        &ca_key,
    );
    std::fs::write(dir.join(format!("{file}.crt")), pem(&certificate)).unwrap();
    std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
}

/// A client presenting `dir/file.crt/.key` as it is (reqwest's own identity loading parses the
/// certificate with webpki, which refuses v1), through floe's client configuration.
fn client_as_is(pki: &Path, dir: &Path, file: &str) -> reqwest::Client {
    client_as_is_over(pki, dir, file, None)
}

/// [`client_as_is`], restricted to one TLS version when given.
fn client_as_is_over(
    pki: &Path,
    dir: &Path,
    file: &str,
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> reqwest::Client {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = vec![CertificateDer::from_pem_file(dir.join(format!("{file}.crt"))).unwrap()];
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{file}.key"))).unwrap();
    let anchors = floe::tls::read_certificates(&pki.join("cluster.crt"), "CA").unwrap();
    let mut config = floe::tls::client_config(Some((chain, key)), &anchors).unwrap();
    if let Some(version) = version {
        // Same settings, one protocol version.
        let resolver = std::sync::Arc::clone(&config.client_auth_cert_resolver);
        let roots = floe::tls::root_store(&anchors).unwrap();
        config = rustls::ClientConfig::builder_with_protocol_versions(&[version])
            .with_root_certificates(roots)
            .with_client_cert_resolver(resolver);
    }
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

#[tokio::test]
async fn flockers_x509_v1_client_certificates_are_accepted() {
    let pki = pki();
    let server = TlsServer::start(pki.path()).await;
    issue_v1(
        pki.path(),
        pki.path(),
        "legacy",
        "user-legacy",
        "491231235959Z",
    );
    let legacy = client_as_is(pki.path(), pki.path(), "legacy");
    let (status, body) = answer(legacy.get(server.url("/v1/version"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = answer(
        legacy
            .post(server.url(DATASETS))
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Over TLS 1.2 too (its handshake signature is checked by another path).
    let tls12 = client_as_is_over(
        pki.path(),
        pki.path(),
        "legacy",
        Some(&rustls::version::TLS12),
    );
    let (status, body) = answer(tls12.get(server.url("/v1/version"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A v1 node certificate is a node like any other.
    issue_v1(
        pki.path(),
        pki.path(),
        "legacy-node",
        &format!("node-{NODE_1}"),
        "491231235959Z",
    );
    let node = client_as_is(pki.path(), pki.path(), "legacy-node");
    let (status, _) = answer(
        node.put(server.url(&format!("/v1/agent/nodes/{NODE_1}")))
            .json(&report("10.0.0.2")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = answer(
        node.post(server.url(DATASETS))
            .json(&json!({"primary": NODE_1})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn x509_v1_certificates_are_still_checked() {
    let pki = pki();
    let server = TlsServer::start(pki.path()).await;

    issue_v1(
        pki.path(),
        pki.path(),
        "expired",
        "user-expired",
        "210101000000Z",
    );
    let expired = client_as_is(pki.path(), pki.path(), "expired");
    assert_refused_in_handshake(expired.get(server.url("/v1/version")), "expired v1").await;

    issue_v1(
        pki.path(),
        pki.path(),
        "nameless",
        "legacy",
        "491231235959Z",
    );
    let nameless = client_as_is(pki.path(), pki.path(), "nameless");
    assert_refused_in_handshake(
        nameless.get(server.url("/v1/version")),
        "v1 without a prefix",
    )
    .await;

    let other = TempDir::new().unwrap();
    floe::ca::init(other.path(), "other-cluster").unwrap();
    issue_v1(
        other.path(),
        pki.path(),
        "foreign",
        "user-foreign",
        "491231235959Z",
    );
    let foreign = client_as_is(pki.path(), pki.path(), "foreign");
    assert_refused_in_handshake(foreign.get(server.url("/v1/version")), "v1 from another CA").await;
}

/// A CA directory like a Flocker install's: an RSA CA (made here with rcgen, CN and OU as
/// flocker-ca sets them), and floe's control certificate issued by it.
fn rsa_pki() -> TempDir {
    let dir = TempDir::new().unwrap();
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "flocker-cluster");
    params.distinguished_name.push(
        rcgen::DnType::OrganizationalUnitName,
        "0a5e5e4c-8b4e-4c43-9c3e-3f3b2b1a0a0a",
    );
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("cluster.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("cluster.key"), key.serialize_pem()).unwrap();
    floe::ca::control(dir.path(), "127.0.0.1").unwrap();
    dir
}

#[tokio::test]
async fn x509_v1_certificates_signed_by_an_rsa_ca_are_accepted() {
    let pki = rsa_pki();
    let server = TlsServer::start(pki.path()).await;
    issue_v1(
        pki.path(),
        pki.path(),
        "legacy",
        "user-legacy",
        "491231235959Z",
    );
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let legacy = client_as_is_over(pki.path(), pki.path(), "legacy", Some(version));
        let (status, body) = answer(legacy.get(server.url("/v1/version"))).await;
        assert_eq!(status, StatusCode::OK, "{version:?}: {body}");
    }
}

/// Polls `GET /v1/state/nodes` as alice until `node` is reported, for up to 15 s.
async fn wait_for_node(alice: &reqwest::Client, url: &str, node: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, nodes) = answer(alice.get(url)).await;
        assert_eq!(status, StatusCode::OK);
        if let Some(found) = nodes.as_array().unwrap().iter().find(|n| n["uuid"] == node) {
            return found.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {node} never reported: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_agent_reports_over_tls_with_its_node_certificate() {
    agent_reports_over_tls(pki()).await;
}

#[tokio::test]
async fn the_agent_reports_over_tls_under_a_flocker_v1_ca() {
    let pki = flocker_v1_pki();
    floe::ca::control(pki.path(), "127.0.0.1").unwrap();
    floe::ca::user(pki.path(), "alice").unwrap();
    floe::ca::node(pki.path(), Some(NODE_0.parse().unwrap())).unwrap();
    agent_reports_over_tls(pki).await;
}

/// Two agents, one with a node certificate from `floe ca` (NODE_0, already in `pki`) and one
/// with a Flocker-style v1 one (NODE_1), each report their node to a `floe serve` process.
async fn agent_reports_over_tls(pki: TempDir) {
    issue_v1(
        pki.path(),
        pki.path(),
        NODE_1,
        &format!("node-{NODE_1}"),
        "491231235959Z",
    );
    let data = TempDir::new().unwrap();
    let p = |name: &str| pki.path().join(name).to_str().unwrap().to_string();
    let server = tls_child_server(pki.path(), data.path());
    let control = format!("https://{}", server.addr);
    let alice = client_as_is(pki.path(), pki.path(), "alice");
    for node in [NODE_0, NODE_1] {
        let state_dir = TempDir::new().unwrap();
        let root = TempDir::new().unwrap();
        let mut agent = Command::new(floe_binary())
            .args(["agent", "--control", &control, "--host", "127.0.0.1"])
            .args([
                "--tls-cert",
                &p(&format!("{node}.crt")),
                "--tls-key",
                &p(&format!("{node}.key")),
            ])
            .args(["--tls-ca", &p("cluster.crt"), "--report-interval", "1"])
            .arg("--state-dir")
            .arg(state_dir.path())
            .arg("--root")
            .arg(root.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("floe agent starts");
        let reported = wait_for_node(&alice, &format!("{control}/v1/state/nodes"), node).await;
        let _ = agent.kill();
        let _ = agent.wait();
        assert_eq!(reported["host"], "127.0.0.1");
        // The node's identity came from its certificate.
        let kept = std::fs::read_to_string(state_dir.path().join("node_uuid")).unwrap();
        assert_eq!(kept.trim(), node);
    }
}

/// A `floe serve` process over `data` serving HTTPS with the control certificate in `pki` and
/// requiring client certificates from its CA.
fn tls_child_server(pki: &Path, data: &Path) -> common::ChildServer {
    let p = |name: &str| pki.join(name).to_str().unwrap().to_string();
    common::ChildServer::start(
        data,
        &[
            "--tls-cert",
            &p("control-127.0.0.1.crt"),
            "--tls-key",
            &p("control-127.0.0.1.key"),
            "--tls-client-ca",
            &p("cluster.crt"),
        ],
    )
}

/// A CA directory as a Flocker install has it: a self-signed **v1** RSA CA carrying
/// basicConstraints (critical, CA, pathlen 0), CN the cluster name and OU the cluster UUID.
fn flocker_v1_pki() -> TempDir {
    let dir = TempDir::new().unwrap();
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let ca_name = name(
        "flocker-cluster",
        Some("0a5e5e4c-8b4e-4c43-9c3e-3f3b2b1a0a0a"),
    );
    let constraints = sequence(&[&der(0x01, &[0xff]), &der(0x02, &[0x00])]);
    let basic_constraints = sequence(&[
        &der(0x06, &[0x55, 0x1d, 0x13]),
        &der(0x01, &[0xff]),
        &der(0x04, &constraints),
    ]);
    let ca = v1_certificate(
        &ca_name,
        &ca_name,
        &key,
        &[&basic_constraints],
        "491231235959Z",
        &key,
    );
    std::fs::write(dir.path().join("cluster.crt"), pem(&ca)).unwrap();
    std::fs::write(dir.path().join("cluster.key"), key.serialize_pem()).unwrap();
    dir
}

#[tokio::test]
async fn a_flocker_v1_ca_works_as_client_ca_and_for_floe_ca() {
    let pki = flocker_v1_pki();
    // floe ca issues from it (and reads the cluster UUID from its OU).
    floe::ca::control(pki.path(), "127.0.0.1").unwrap();
    floe::ca::user(pki.path(), "alice").unwrap();
    let server = TlsServer::start(pki.path()).await;

    issue_v1(
        pki.path(),
        pki.path(),
        "legacy",
        "user-legacy",
        "491231235959Z",
    );
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let legacy = client_as_is_over(pki.path(), pki.path(), "legacy", Some(version));
        let (status, body) = answer(legacy.get(server.url("/v1/version"))).await;
        assert_eq!(status, StatusCode::OK, "{version:?}: {body}");
    }
    // A v3 certificate floe ca issued from it chains to it. (reqwest's own root loading
    // refuses this CA, as webpki does: floe's client configuration is used instead.)
    let alice = client_as_is(pki.path(), pki.path(), "alice");
    let (status, body) = answer(alice.get(server.url("/v1/version"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn without_a_client_ca_https_serves_anyone() {
    let pki = pki();
    let server = TlsServer::start_with(pki.path(), false).await;
    let anonymous = client(pki.path(), None, server.addr);
    let (status, body) = answer(
        anonymous
            .post(server.url(DATASETS))
            .json(&json!({"primary": NODE_0})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A mathematician's self link and `Location` are absolute: over HTTPS they must name https,
/// or a client that follows them speaks plain HTTP to a TLS port.
#[tokio::test]
async fn absolute_links_over_https_name_https() {
    let pki = pki();
    let server = TlsServer::start_with(pki.path(), false).await;
    let anonymous = client(pki.path(), None, server.addr);
    let (status, fresh) = answer(anonymous.get(server.url("/api/mathematicians/new"))).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let unique = fresh["unique"].as_str().unwrap();
    let href = server.url(&format!("/api/mathematicians/{unique}"));
    assert_eq!(fresh["_links"]["self"]["href"], href.as_str());

    let body = json!({ "unique": unique, "name": { "ids": [], "firstName": "Ada", "lastName": "Lovelace" } });
    let response = anonymous
        .post(server.url("/api/mathematicians"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, href);
    let (status, created) = answer(anonymous.get(&location)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["_links"]["self"]["href"], href.as_str());
}

#[test]
fn the_agent_takes_its_node_uuid_from_its_certificate_and_never_contradicts_the_state_dir() {
    let state = TempDir::new().unwrap();
    let node_0 = NODE_0.parse().unwrap();
    let node_1 = NODE_1.parse().unwrap();
    assert_eq!(
        floe::agent::node_identity(state.path(), Some(node_0)).unwrap(),
        node_0
    );
    assert_eq!(
        floe::agent::node_identity(state.path(), None).unwrap(),
        node_0
    );
    let error = floe::agent::node_identity(state.path(), Some(node_1)).unwrap_err();
    assert!(
        format!("{error:#}").contains("its certificate names node"),
        "{error:#}"
    );
}

/// A certificate issued before `floe ca node` refused them may name a node whose UUID is not
/// version 4; the control service would refuse its every report, so the agent stops at start-up
/// and says what to do, instead of retrying for ever. Nothing is written to the state dir.
#[test]
fn the_agent_refuses_a_certificate_whose_node_uuid_is_not_version_4() {
    let state = TempDir::new().unwrap();
    let version_1 = "a8098c1a-f86e-11da-bd1a-00112444be1e".parse().unwrap();
    let error = floe::agent::node_identity(state.path(), Some(version_1)).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("is not a version-4 UUID"), "{message}");
    assert!(message.contains("floe ca node"), "{message}");
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn with_authentication_on_a_user_certificate_is_that_users_credential() {
    let pki = pki();
    floe::ca::user(pki.path(), "admin").unwrap();
    let server = TlsServer::start_configured(pki.path(), true, |config| {
        config.auth = floe::config::AuthMode::Token;
    })
    .await;
    // `admin` exists (created on first start, with every permission): its certificate alone,
    // no token, is enough.
    let admin = client(pki.path(), Some((pki.path(), "admin")), server.addr);
    let (status, body) = answer(admin.get(server.url("/v1/configuration/datasets"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // `alice` has a valid certificate but no account, so no permissions: 403, not 401.
    let alice = client(pki.path(), Some((pki.path(), "alice")), server.addr);
    let (status, body) = answer(alice.get(server.url("/v1/configuration/datasets"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn a_flood_of_failed_handshakes_is_logged_as_one_line_that_counts_the_rest() {
    let pki = pki();
    let data = TempDir::new().unwrap();
    let mut server = tls_child_server(pki.path(), data.path());
    // Plain HTTP to the TLS port, as a health check or a port scanner would send it.
    let plain = reqwest::Client::new();
    for _ in 0..20 {
        let answer = plain
            .get(format!("http://{}/v1/version", server.addr))
            .send()
            .await;
        assert!(answer.is_err(), "plain HTTP is not answered");
    }
    // A client with a certificate from another cluster, after them, again and again: each
    // refusal of a certificate is logged within a budget of its own.
    let other = TempDir::new().unwrap();
    floe::ca::init(other.path(), "other-cluster").unwrap();
    floe::ca::user(other.path(), "mallory").unwrap();
    for _ in 0..10 {
        let mallory = client_as_is(pki.path(), other.path(), "mallory");
        let refused = mallory
            .get(format!("https://{}/v1/version", server.addr))
            .send()
            .await;
        assert!(
            refused.is_err(),
            "an unknown CA is refused in the handshake"
        );
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let events: Vec<Value> = server
        .log
        .try_iter()
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .collect();
    let lines_of = |message: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|event| event["fields"]["message"] == message)
            .cloned()
            .collect()
    };
    let failures = lines_of("TLS handshake failed");
    assert_eq!(
        failures.len(),
        1,
        "one line for 30 failures within the interval: {failures:#?}"
    );
    let refusals = lines_of("client certificate refused");
    assert_eq!(
        refusals.len(),
        1,
        "one line for 10 refused certificates: {refusals:#?}"
    );
    assert_eq!(refusals[0]["fields"]["common_name"], "user-mallory");
    assert_eq!(refusals[0]["fields"]["not_logged_since_last"], 0);
    assert_eq!(failures[0]["fields"]["not_logged_since_last"], 0);
    assert!(
        failures[0]["fields"]["remote"]
            .as_str()
            .is_some_and(|remote| remote.starts_with("127.0.0.1:")),
        "{failures:#?}"
    );
}

/// A key file that holds no usable key (a certificate given as the key, an encrypted key)
/// says what it should hold.
#[test]
fn a_key_file_without_a_key_says_what_it_should_hold() {
    let pki = pki();
    let cert = pki.path().join("control-127.0.0.1.crt");
    let error = floe::tls::server_config(&floe::tls::TlsFiles {
        cert: cert.clone(),
        key: cert,
        client_ca: None,
    })
    .expect_err("a certificate is not a key");
    let message = error.to_string();
    assert!(
        message.contains("holds no unencrypted private key")
            && message.contains("control-127.0.0.1.crt"),
        "{message}"
    );
}

/// A control, node or user certificate given where the cluster's CA certificate belongs is
/// refused when floe starts (server or agent), instead of refusing every peer afterwards.
#[test]
fn a_certificate_that_is_not_a_ca_is_refused_as_one() {
    let pki = pki();
    let control = pki.path().join("control-127.0.0.1.crt");
    let error = floe::tls::server_config(&floe::tls::TlsFiles {
        cert: control.clone(),
        key: pki.path().join("control-127.0.0.1.key"),
        client_ca: Some(pki.path().join("alice.crt")),
    })
    .expect_err("a user certificate is no client CA");
    let message = error.to_string();
    assert!(
        message.contains("\"user-alice\" is not a CA certificate")
            && message.contains("alice.crt")
            && message.contains("cluster.crt"),
        "{message}"
    );

    let anchors = floe::tls::read_certificates(&control, "the CA certificate").unwrap();
    let error = floe::tls::client_config(None, &anchors)
        .expect_err("a control certificate is no CA for the agent");
    assert!(
        error
            .to_string()
            .contains("\"control-service\" is not a CA certificate"),
        "{error}"
    );

    // The cluster's own CA certificate is one.
    let cluster = pki.path().join("cluster.crt");
    let anchors = floe::tls::read_certificates(&cluster, "the CA certificate").unwrap();
    floe::tls::client_config(None, &anchors).expect("cluster.crt is a CA");
}
