//! A minimal reader of X.509 certificates (DER): just the fields floe's TLS needs to judge a
//! client certificate itself, for any version — the subject's common name, the issuer and
//! subject names, the validity dates, the public key and the signature — and whether a
//! certificate given as a CA can be one.
//!
//! It exists because Flocker's `flocker-ca` mints X.509 **v1** certificates carrying v3
//! extensions, which webpki refuses to parse as end-entity certificates (see
//! [`super::verifier`]). It checks the DER structure strictly and never panics on bad input.

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::TrustAnchor;

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    /// The DER structure is broken or not a certificate's.
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
}

/// The X.509 version field's value for a v1 certificate (absent field).
pub const V1: u8 = 0;
/// The X.509 version field's value for a v3 certificate.
pub const V3: u8 = 2;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION_TAG: u8 = 0xa0;
const EXTENSIONS_TAG: u8 = 0xa3;
/// The content octets of the OID 2.5.4.3 (commonName).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// The content octets of the OID 2.5.4.11 (organizationalUnitName).
const ORGANIZATIONAL_UNIT: &[u8] = &[0x55, 0x04, 0x0b];
/// The content octets of the OID 2.5.29.19 (basicConstraints).
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];

/// The parts of a certificate floe looks at, borrowed from its DER.
#[derive(Debug, Clone)]
pub struct Certificate<'a> {
    /// The version field: [`V1`] when absent, [`V3`] for v3.
    pub version: u8,
    /// The whole `tbsCertificate` element, as signed.
    pub tbs: &'a [u8],
    /// The contents of the outer `signatureAlgorithm` (without its SEQUENCE header).
    pub signature_algorithm: &'a [u8],
    /// The signature bits.
    pub signature: &'a [u8],
    /// The whole issuer `Name` element.
    pub issuer: &'a [u8],
    /// The whole subject `Name` element.
    pub subject: &'a [u8],
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// The whole `SubjectPublicKeyInfo` element.
    pub spki: &'a [u8],
    /// The contents of the key's `AlgorithmIdentifier` (without its SEQUENCE header).
    pub public_key_algorithm: &'a [u8],
    /// The `subjectPublicKey` bits.
    pub public_key: &'a [u8],
    /// What follows the `SubjectPublicKeyInfo` in `tbsCertificate` (unique ids, extensions),
    /// unparsed: only [`Certificate::basic_constraints_ca`] reads it.
    after_key: &'a [u8],
}

/// One DER element.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
}

/// Reads the next element off `input`.
fn next<'a>(input: &mut &'a [u8]) -> Result<Element<'a>, X509Error> {
    let data: &'a [u8] = input;
    let (&tag, rest) = data
        .split_first()
        .ok_or(X509Error::Malformed("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(X509Error::Malformed(
            "high tag numbers are not used in certificates",
        ));
    }
    let (&first, mut rest) = rest
        .split_first()
        .ok_or(X509Error::Malformed("truncated"))?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(X509Error::Malformed("bad length"));
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < length {
        return Err(X509Error::Malformed("truncated"));
    }
    let header = data.len() - rest.len();
    let whole = &data[..header + length];
    *input = &data[header + length..];
    Ok(Element {
        tag,
        contents: &whole[header..],
        whole,
    })
}

/// Reads the next element and insists on its tag.
fn expect<'a>(input: &mut &'a [u8], tag: u8, what: &'static str) -> Result<Element<'a>, X509Error> {
    let element = next(input)?;
    if element.tag == tag {
        Ok(element)
    } else {
        Err(X509Error::Malformed(what))
    }
}

/// A BIT STRING's bits, which must be whole octets.
fn bits<'a>(element: &Element<'a>) -> Result<&'a [u8], X509Error> {
    match element.contents.split_first() {
        Some((0, bits)) => Ok(bits),
        _ => Err(X509Error::Malformed("bit string with unused bits")),
    }
}

impl<'a> Certificate<'a> {
    /// Reads a certificate.
    pub fn parse(der: &'a [u8]) -> Result<Self, X509Error> {
        let mut input = der;
        let certificate = expect(&mut input, SEQUENCE, "not a certificate")?;
        if !input.is_empty() {
            return Err(X509Error::Malformed("trailing data"));
        }
        let mut outer = certificate.contents;
        let tbs = expect(&mut outer, SEQUENCE, "no tbsCertificate")?;
        let algorithm = expect(&mut outer, SEQUENCE, "no signatureAlgorithm")?;
        let signature = expect(&mut outer, BIT_STRING, "no signature")?;
        if !outer.is_empty() {
            return Err(X509Error::Malformed("extra fields after the signature"));
        }

        let mut fields = tbs.contents;
        let mut element = next(&mut fields)?;
        let version = if element.tag == VERSION_TAG {
            let mut inner = element.contents;
            let number = expect(&mut inner, INTEGER, "bad version")?;
            let version = match number.contents {
                [v @ 0..=2] => *v,
                _ => return Err(X509Error::Malformed("unknown version")),
            };
            element = next(&mut fields)?;
            version
        } else {
            V1
        };
        if element.tag != INTEGER {
            return Err(X509Error::Malformed("no serial number"));
        }
        expect(&mut fields, SEQUENCE, "no signature algorithm")?;
        let issuer = expect(&mut fields, SEQUENCE, "no issuer")?;
        let validity = expect(&mut fields, SEQUENCE, "no validity")?;
        let subject = expect(&mut fields, SEQUENCE, "no subject")?;
        let spki = expect(&mut fields, SEQUENCE, "no subject public key info")?;
        // Unique ids and extensions may follow. They are read only on demand (see
        // `basic_constraints_ca`), so that odd extensions never stop a certificate being read.

        let mut times = validity.contents;
        let not_before = time(&next(&mut times)?)?;
        let not_after = time(&next(&mut times)?)?;
        let mut key = spki.contents;
        let public_key_algorithm = expect(&mut key, SEQUENCE, "no key algorithm")?;
        let public_key = expect(&mut key, BIT_STRING, "no public key")?;

        Ok(Certificate {
            version,
            tbs: tbs.whole,
            signature_algorithm: algorithm.contents,
            signature: bits(&signature)?,
            issuer: issuer.whole,
            subject: subject.whole,
            not_before,
            not_after,
            spki: spki.whole,
            public_key_algorithm: public_key_algorithm.contents,
            public_key: bits(&public_key)?,
            after_key: fields,
        })
    }

    /// The subject's first common name, if it has one that decodes as text.
    pub fn common_name(&self) -> Option<String> {
        self.subject_attribute(COMMON_NAME)
    }

    /// The subject's first organizational unit (Flocker puts the cluster UUID there).
    pub fn organizational_unit(&self) -> Option<String> {
        self.subject_attribute(ORGANIZATIONAL_UNIT)
    }

    /// The first subject attribute of type `oid` (content octets), as text.
    fn subject_attribute(&self, wanted: &[u8]) -> Option<String> {
        let mut name = expect(&mut { self.subject }, SEQUENCE, "").ok()?.contents;
        while !name.is_empty() {
            let mut set = expect(&mut name, SET, "").ok()?.contents;
            while !set.is_empty() {
                let mut pair = expect(&mut set, SEQUENCE, "").ok()?.contents;
                let oid = expect(&mut pair, OID, "").ok()?;
                let value = next(&mut pair).ok()?;
                if oid.contents == wanted {
                    return text(&value);
                }
            }
        }
        None
    }

    /// The `cA` flag of the basicConstraints extension; `None` without the extension (or when
    /// the extensions cannot be read).
    pub fn basic_constraints_ca(&self) -> Option<bool> {
        let mut rest = self.after_key;
        let extensions = loop {
            let element = next(&mut rest).ok()?;
            if element.tag == EXTENSIONS_TAG {
                break element;
            }
        };
        let mut list = expect(&mut { extensions.contents }, SEQUENCE, "")
            .ok()?
            .contents;
        while !list.is_empty() {
            let mut extension = expect(&mut list, SEQUENCE, "").ok()?.contents;
            let oid = expect(&mut extension, OID, "").ok()?;
            if oid.contents != BASIC_CONSTRAINTS {
                continue;
            }
            let mut value = next(&mut extension).ok()?;
            if value.tag == BOOLEAN {
                value = next(&mut extension).ok()?; // `critical`
            }
            if value.tag != OCTET_STRING {
                return None;
            }
            let mut constraints = expect(&mut { value.contents }, SEQUENCE, "").ok()?.contents;
            // `cA` defaults to FALSE, and is then left out of the DER.
            return Some(match next(&mut constraints) {
                Ok(flag) if flag.tag == BOOLEAN => flag.contents.iter().any(|&b| b != 0),
                _ => false,
            });
        }
        None
    }

    /// Whether this certificate cannot be a CA, so that nothing can chain to it as a trust
    /// anchor: its basicConstraints say `cA` FALSE, or it is a v3 certificate issued by
    /// another without them (RFC 5280 §4.2.1.9: its key must not verify certificates). A
    /// self-issued certificate without them may be an old root, and a v1 certificate may
    /// predate extensions, so both are given the benefit of the doubt.
    pub fn is_not_a_ca(&self) -> bool {
        match self.basic_constraints_ca() {
            Some(ca) => !ca,
            None => self.version == V3 && self.issuer != self.subject,
        }
    }

    /// This certificate as a trust anchor (subject and key; no name constraints). webpki makes
    /// anchors of v3 certificates, and of v1 ones only without extensions; Flocker's v1 CA
    /// certificates carry extensions, so floe makes their anchors here.
    pub fn trust_anchor(&self) -> TrustAnchor<'static> {
        let contents = |whole: &[u8]| {
            next(&mut { whole })
                .map(|element| element.contents.to_vec())
                .unwrap_or_default()
        };
        TrustAnchor {
            subject: contents(self.subject).into(),
            subject_public_key_info: contents(self.spki).into(),
            name_constraints: None,
        }
    }

    /// Whether `issuer`'s key made this certificate's signature, with one of `algorithms`.
    pub fn is_signed_by(
        &self,
        issuer: &Certificate<'_>,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> bool {
        algorithms.all.iter().any(|algorithm| {
            algorithm.signature_alg_id().as_ref() == self.signature_algorithm
                && algorithm.public_key_alg_id().as_ref() == issuer.public_key_algorithm
                && algorithm
                    .verify_signature(issuer.public_key, self.tbs, self.signature)
                    .is_ok()
        })
    }
}

/// A directory string as text (UTF8String, PrintableString, IA5String, TeletexString read as
/// Latin-1, BMPString).
fn text(value: &Element<'_>) -> Option<String> {
    match value.tag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(value.contents).ok().map(str::to_string),
        0x14 => Some(value.contents.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            let units: Vec<u16> = value
                .contents
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// A UTCTime or GeneralizedTime (`Z` form, as RFC 5280 requires) as Unix seconds.
fn time(element: &Element<'_>) -> Result<i64, X509Error> {
    const BAD: X509Error = X509Error::Malformed("bad time");
    let text = std::str::from_utf8(element.contents).map_err(|_| BAD)?;
    let digits = text.strip_suffix('Z').ok_or(BAD)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    let (year, rest) = match (element.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i64 = digits[..2].parse().map_err(|_| BAD)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().map_err(|_| BAD)?, &digits[4..]),
        _ => return Err(BAD),
    };
    let field = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap_or(-1) };
    let (month, day, hour, minute, second) = (field(0), field(2), field(4), field(6), field(8));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return Err(BAD);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let utc = Element {
            tag: UTC_TIME,
            contents: b"491231235959Z",
            whole: b"",
        };
        assert_eq!(time(&utc), Ok(2_524_607_999));
    }

    /// A CA certificate with the given basicConstraints, self-signed, and a certificate it
    /// issued with `leaf`'s.
    fn issued(ca: rcgen::IsCa, leaf: rcgen::IsCa) -> (Vec<u8>, Vec<u8>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cluster");
        ca_params.is_ca = ca;
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "control-service");
        params.is_ca = leaf;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (ca_cert.der().to_vec(), cert.der().to_vec())
    }

    #[test]
    fn only_certificates_that_cannot_be_a_ca_are_called_so() {
        use rcgen::{BasicConstraints, IsCa};
        let ca = || IsCa::Ca(BasicConstraints::Unconstrained);
        let read = |der: &[u8]| {
            let certificate = Certificate::parse(der).unwrap();
            (
                certificate.basic_constraints_ca(),
                certificate.is_not_a_ca(),
            )
        };

        // A CA, and a leaf with no basicConstraints (what `floe ca` issues to a control
        // service, a node or a user): issued by another, so not a CA.
        let (authority, leaf) = issued(ca(), IsCa::NoCa);
        assert_eq!(read(&authority), (Some(true), false));
        assert_eq!(read(&leaf), (None, true));
        // CA:FALSE said outright, and an intermediate CA.
        let (_, explicit) = issued(ca(), IsCa::ExplicitNoCa);
        assert_eq!(read(&explicit), (Some(false), true));
        let (_, intermediate) = issued(ca(), ca());
        assert_eq!(read(&intermediate), (Some(true), false));
        // A self-signed certificate without basicConstraints may be an old root.
        let (old_root, _) = issued(IsCa::NoCa, IsCa::NoCa);
        assert_eq!(read(&old_root), (None, false));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x00",
            b"\x30\x03\x30\x01",
        ] {
            assert!(Certificate::parse(input).is_err());
        }
    }
}
