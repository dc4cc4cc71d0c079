//! The client-certificate verifier: webpki's for ordinary (v3) certificates, floe's own check
//! for the X.509 v1 certificates Flocker's `flocker-ca` mints, and for both the rule that the
//! common name must name a user (`user-…`) or a node (`node-<uuid>`), so that anything else is
//! refused during the handshake, as Flocker does.
//!
//! Why v1 needs its own path: webpki parses only v3 end-entity certificates. For a v1 leaf floe
//! checks what webpki would for Flocker's flat hierarchy: the leaf is signed directly by one
//! of the configured CA certificates (same issuer name, valid signature) and is within its
//! validity dates. Chains through intermediates are accepted for v3 leaves only.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::FAILURE_LOG_INTERVAL;
use super::x509::{self, Certificate};
use crate::api::identity::Identity;
use crate::log_budget::SharedLogBudget;

/// Verifies client certificates against the configured CA certificates.
#[derive(Debug)]
pub struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    anchors: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Refusals are logged as failed handshakes are, at most one line per interval: anyone
    /// who can reach the port can present a certificate.
    refusals: SharedLogBudget,
}

impl ClientVerifier {
    /// A verifier delegating v3 certificates to `webpki`, checking v1 ones against `anchors`.
    pub fn new(
        webpki: Arc<dyn ClientCertVerifier>,
        anchors: Vec<CertificateDer<'static>>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        ClientVerifier {
            webpki,
            anchors,
            algorithms,
            refusals: SharedLogBudget::new(FAILURE_LOG_INTERVAL),
        }
    }

    /// Logs a refused certificate, unless a line was logged within the interval; the next
    /// line counts the ones left out.
    fn log_refusal(&self, common_name: Option<&str>, reason: &dyn std::fmt::Display) {
        if let Some(left_out) = self.refusals.admit_one() {
            tracing::warn!(
                common_name = common_name.unwrap_or(""),
                %reason,
                not_logged_since_last = left_out,
                "client certificate refused"
            );
        }
    }

    /// The checks for an X.509 v1 leaf.
    fn verify_v1(&self, leaf: &Certificate<'_>, now: UnixTime) -> Result<(), Error> {
        let signed = self.anchors.iter().any(|anchor| {
            Certificate::parse(anchor).is_ok_and(|anchor| {
                anchor.subject == leaf.issuer && leaf.is_signed_by(&anchor, &self.algorithms)
            })
        });
        if !signed {
            return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < leaf.not_before {
            return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
        }
        if now > leaf.not_after {
            return Err(Error::InvalidCertificate(CertificateError::Expired));
        }
        Ok(())
    }
}

/// The certificate, if it is a v1 one.
fn v1<'a>(cert: &'a CertificateDer<'_>) -> Result<Option<Certificate<'a>>, Error> {
    let parsed = Certificate::parse(cert)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok((parsed.version == x509::V1).then_some(parsed))
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let leaf = Certificate::parse(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let verified = if leaf.version == x509::V1 {
            self.verify_v1(&leaf, now)
        } else {
            self.webpki
                .verify_client_cert(end_entity, intermediates, now)
                .map(|_| ())
        };
        let common_name = leaf.common_name();
        if let Err(error) = verified {
            let reason = format!("{error} (an X.509 v{} certificate)", leaf.version + 1);
            self.log_refusal(common_name.as_deref(), &reason);
            return Err(error);
        }
        match common_name.as_deref().and_then(Identity::from_common_name) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => {
                self.log_refusal(
                    common_name.as_deref(),
                    &"its common name is neither user-<name> nor node-<uuid>",
                );
                Err(Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let Some(leaf) = v1(cert)? else {
            return self.webpki.verify_tls12_signature(message, cert, dss);
        };
        // TLS 1.2 does not tie a scheme to one algorithm: try each one the scheme maps to
        // that fits the key, as rustls does for v3 certificates.
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .filter(|(scheme, _)| *scheme == dss.scheme)
            .flat_map(|(_, algorithms)| algorithms.iter());
        for algorithm in candidates {
            if algorithm.public_key_alg_id().as_ref() == leaf.public_key_algorithm
                && algorithm
                    .verify_signature(leaf.public_key, message, dss.signature())
                    .is_ok()
            {
                return Ok(HandshakeSignatureValid::assertion());
            }
        }
        Err(Error::InvalidCertificate(CertificateError::BadSignature))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match v1(cert)? {
            Some(leaf) => rustls::crypto::verify_tls13_signature_with_raw_key(
                message,
                &SubjectPublicKeyInfoDer::from(leaf.spki),
                dss,
                &self.algorithms,
            ),
            None => self.webpki.verify_tls13_signature(message, cert, dss),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
