//! Checks a downloaded certificate before it is written to a Secret: the chain parses, the leaf
//! matches the order's key, covers every requested name and is currently valid, each certificate is
//! signed by the next, and (when trust anchors are given) the chain ends at one of them.

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::PrivateKey;

/// What a verified certificate is, for status and Secret annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lowercase hex, no colons, no leading zero bytes.
    pub serial_hex: String,
    /// Issuer distinguished name (RFC 4514 style, e.g. `CN=certorder local CA`).
    pub issuer: String,
    /// Subject distinguished name.
    pub subject: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the leaf's DER, lowercase hex without colons.
    pub sha256_fingerprint: String,
    /// The leaf's dNSName SANs.
    pub dns_names: Vec<String>,
}

/// Why a downloaded certificate was refused. Every message says what is wrong in terms a person can
/// check against the vendor's console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) found in the downloaded chain")]
    NoCertificate,
    #[error("certificate #{index} in the chain cannot be read: {reason}")]
    Parse { index: usize, reason: String },
    #[error("the trusted CA certificates cannot be read: {0}")]
    InvalidTrust(String),
    #[error("the leaf ({subject}) is a CA certificate (basicConstraints CA:TRUE), not a server certificate")]
    LeafIsCa { subject: String },
    #[error(
        "the leaf ({subject}) is not for TLS servers: its extendedKeyUsage lacks serverAuth (has: {})",
        if .usages.is_empty() { "no extendedKeyUsage extension".to_string() } else { .usages.join(", ") }
    )]
    NotServerAuth { subject: String, usages: Vec<String> },
    #[error("leaf does not match the private key (leaf subject {subject})")]
    KeyMismatch { subject: String },
    #[error(
        "leaf does not match the private key; certificate #{position} ({subject}) does: the chain must start with the leaf"
    )]
    LeafNotFirst { position: usize, subject: String },
    #[error("certificate does not cover {} (covers: {})", .missing.join(", "), covers_text(.covers))]
    NameNotCovered { missing: Vec<String>, covers: Vec<String> },
    #[error("certificate is not valid before {not_before} (now {now})")]
    NotYetValid { not_before: DateTime<Utc>, now: DateTime<Utc> },
    #[error("certificate expired at {not_after} (now {now})")]
    Expired { not_after: DateTime<Utc>, now: DateTime<Utc> },
    #[error("chain is broken between {child} and {parent}: the second did not sign the first")]
    BrokenChain { child: String, parent: String },
    #[error("chain does not lead to a trusted CA: {top} is not signed by any of [{}]", .trusted.join("; "))]
    Untrusted { top: String, trusted: Vec<String> },
}

fn covers_text(covers: &[String]) -> String {
    if covers.is_empty() { "no DNS names".to_owned() } else { covers.join(", ") }
}

/// Extracts the DER of every `CERTIFICATE` PEM block, in order. Liberal: CRLF, blank lines, text
/// between blocks, indentation and literal `\n` escapes (from JSON pasted by hand) are ignored.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, VerifyError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body_start = start + BEGIN.len();
        let index = out.len() + 1;
        let Some(end) = rest[body_start..].find(END) else {
            return Err(VerifyError::Parse { index, reason: "PEM block has no END line".into() });
        };
        let body: String = rest[body_start..body_start + end]
            .replace("\\r", "")
            .replace("\\n", "")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| VerifyError::Parse { index, reason: format!("bad base64: {e}") })?;
        out.push(der);
        rest = &rest[body_start + end + END.len()..];
    }
    Ok(out)
}

/// Re-encodes DER certificates as clean PEM (LF line endings), in order.
pub fn certificates_to_pem(ders: &[Vec<u8>]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    ders.iter().map(|der| pem::encode_config(&pem::Pem::new("CERTIFICATE", der.clone()), config)).collect()
}

fn parse_all(ders: &[Vec<u8>]) -> Result<Vec<X509Certificate<'_>>, VerifyError> {
    ders.iter()
        .enumerate()
        .map(|(i, der)| {
            X509Certificate::from_der(der)
                .map(|(_, cert)| cert)
                .map_err(|e| VerifyError::Parse { index: i + 1, reason: e.to_string() })
        })
        .collect()
}

/// Verifies an issued chain (leaf first, then intermediates, optionally the root) against the
/// order's key and names at `now`. `trust`, when given, holds PEM CA certificates the chain must end
/// at (the top of the chain is one of them, or is signed by one of them).
///
/// Expiry is checked on the leaf only: vendors still ship expired cross-signed roots at the top of
/// chains, which clients ignore.
pub fn verify_issued(
    chain_pem: &str,
    key: &PrivateKey,
    domains: &[String],
    now: DateTime<Utc>,
    trust: Option<&[String]>,
) -> Result<CertInfo, VerifyError> {
    let ders = pem_certificates(chain_pem)?;
    if ders.is_empty() {
        return Err(VerifyError::NoCertificate);
    }
    let chain = parse_all(&ders)?;
    let info = inspect_parsed(&ders, &chain, key).verify(domains, now)?;

    if let Some(trust) = trust {
        let mut anchor_ders = Vec::new();
        for pem_text in trust {
            anchor_ders.extend(pem_certificates(pem_text).map_err(|e| VerifyError::InvalidTrust(e.to_string()))?);
        }
        let anchors = parse_all(&anchor_ders).map_err(|e| VerifyError::InvalidTrust(e.to_string()))?;
        let top_index = chain.len() - 1;
        let top = &chain[top_index];
        let trusted = anchor_ders.iter().any(|a| a == &ders[top_index])
            || anchors.iter().any(|a| top.verify_signature(Some(a.public_key())).is_ok());
        if !trusted {
            return Err(VerifyError::Untrusted {
                top: top.subject().to_string(),
                trusted: anchors.iter().map(|a| a.subject().to_string()).collect(),
            });
        }
    }
    Ok(info)
}

/// What [`verify_issued`] (without trust anchors) finds of a chain and key that depends neither on
/// the time nor on the names asked for, found once: [`Inspected::verify`] completes the check for
/// given names at a given time, with the same answer `verify_issued` gives. For a Secret that is
/// checked again at every look but changes rarely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    /// The chain parses, its leaf matches the key, is no CA and is for TLS servers.
    leaf: Result<CertInfo, VerifyError>,
    /// Each certificate is signed by the next.
    /// (Boxed: almost always `Ok`, and the cache keeps one per TLS Secret.)
    chain: Result<(), Box<VerifyError>>,
}

/// Inspects a chain (PEM, leaf first) against its key; see [`Inspected`].
pub fn inspect_issued(chain_pem: &str, key: &PrivateKey) -> Inspected {
    let parsed = pem_certificates(chain_pem).and_then(|ders| {
        if ders.is_empty() {
            return Err(VerifyError::NoCertificate);
        }
        let chain = parse_all(&ders)?;
        Ok(inspect_parsed(&ders, &chain, key))
    });
    parsed.unwrap_or_else(|e| Inspected { leaf: Err(e), chain: Ok(()) })
}

impl Inspected {
    /// What [`inspect_issued`] finds of a chain and key that passed [`verify_issued`], whose
    /// leaf is `leaf` (the chain re-encoded as `tls_secret_data` writes it holds the same
    /// certificates in the same order).
    pub fn verified(leaf: CertInfo) -> Inspected {
        Inspected { leaf: Ok(leaf), chain: Ok(()) }
    }

    /// The leaf covers `domains` and is valid at `now`, and the chain holds together: the
    /// verified facts of the leaf, or what is wrong, in `verify_issued`'s order.
    pub fn verify(&self, domains: &[String], now: DateTime<Utc>) -> Result<CertInfo, VerifyError> {
        let info = self.leaf.clone()?;
        let missing: Vec<String> =
            domains.iter().filter(|d| !info.dns_names.iter().any(|san| name_covered(san, d))).cloned().collect();
        if !missing.is_empty() {
            return Err(VerifyError::NameNotCovered { missing, covers: info.dns_names });
        }
        if now < info.not_before {
            return Err(VerifyError::NotYetValid { not_before: info.not_before, now });
        }
        if now > info.not_after {
            return Err(VerifyError::Expired { not_after: info.not_after, now });
        }
        self.chain.clone().map_err(|e| *e)?;
        Ok(info)
    }
}

fn inspect_parsed(ders: &[Vec<u8>], chain: &[X509Certificate<'_>], key: &PrivateKey) -> Inspected {
    let mut chain_check = Ok(());
    for pair in chain.windows(2) {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.verify_signature(Some(parent.public_key())).is_err() {
            chain_check = Err(Box::new(VerifyError::BrokenChain {
                child: child.subject().to_string(),
                parent: parent.subject().to_string(),
            }));
            break;
        }
    }
    Inspected { leaf: check_leaf(ders, chain, key), chain: chain_check }
}

/// The leaf matches the key, is no CA and has the serverAuth usage.
fn check_leaf(ders: &[Vec<u8>], chain: &[X509Certificate<'_>], key: &PrivateKey) -> Result<CertInfo, VerifyError> {
    let leaf = &chain[0];
    if !key.matches_spki(leaf.public_key()) {
        if let Some(pos) = chain.iter().position(|c| key.matches_spki(c.public_key())) {
            return Err(VerifyError::LeafNotFirst { position: pos + 1, subject: chain[pos].subject().to_string() });
        }
        return Err(VerifyError::KeyMismatch { subject: leaf.subject().to_string() });
    }

    let is_ca = leaf.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
    if is_ca {
        return Err(VerifyError::LeafIsCa { subject: leaf.subject().to_string() });
    }
    match leaf.extended_key_usage() {
        Ok(Some(eku)) if eku.value.server_auth => {}
        other => {
            let usages = match other {
                Ok(Some(eku)) => {
                    let e = eku.value;
                    let named = [
                        (e.any, "any"),
                        (e.client_auth, "clientAuth"),
                        (e.code_signing, "codeSigning"),
                        (e.email_protection, "emailProtection"),
                        (e.time_stamping, "timeStamping"),
                        (e.ocsp_signing, "OCSPSigning"),
                    ];
                    let mut usages: Vec<String> =
                        named.iter().filter(|(on, _)| *on).map(|(_, n)| n.to_string()).collect();
                    usages.extend(e.other.iter().map(|oid| oid.to_id_string()));
                    usages
                }
                _ => Vec::new(),
            };
            return Err(VerifyError::NotServerAuth { subject: leaf.subject().to_string(), usages });
        }
    }

    Ok(CertInfo {
        serial_hex: serial_hex(leaf.raw_serial()),
        issuer: leaf.issuer().to_string(),
        subject: leaf.subject().to_string(),
        not_before: to_chrono(leaf.validity().not_before.timestamp()),
        not_after: to_chrono(leaf.validity().not_after.timestamp()),
        sha256_fingerprint: hex::encode(Sha256::digest(&ders[0])),
        dns_names: dns_names(leaf),
    })
}

/// Reads the facts of the first certificate in a PEM text without verifying anything (for showing
/// what a Secret currently holds).
pub fn describe_leaf(chain_pem: &str) -> Result<CertInfo, VerifyError> {
    let ders = pem_certificates(chain_pem)?;
    let first = ders.first().ok_or(VerifyError::NoCertificate)?;
    let (_, leaf) =
        X509Certificate::from_der(first).map_err(|e| VerifyError::Parse { index: 1, reason: e.to_string() })?;
    Ok(CertInfo {
        serial_hex: serial_hex(leaf.raw_serial()),
        issuer: leaf.issuer().to_string(),
        subject: leaf.subject().to_string(),
        not_before: to_chrono(leaf.validity().not_before.timestamp()),
        not_after: to_chrono(leaf.validity().not_after.timestamp()),
        sha256_fingerprint: hex::encode(Sha256::digest(first)),
        dns_names: dns_names(&leaf),
    })
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

fn to_chrono(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

/// Whether the SAN `pattern` covers the requested `name` (both ASCII/punycode), case-insensitively
/// and ignoring one trailing dot. A wildcard SAN `*.a.com` covers exactly one extra label
/// (`x.a.com`), not `a.com` nor `y.x.a.com`. A requested wildcard is covered only by the same
/// wildcard.
pub fn name_covered(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if pattern.is_empty() || name.is_empty() {
        return false;
    }
    if pattern == name {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    if suffix.is_empty() || suffix.contains('*') {
        return false;
    }
    match name.split_once('.') {
        Some((label, rest)) => !label.is_empty() && label != "*" && rest == suffix,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_table() {
        let cases = [
            ("example.com", "example.com", true),
            ("EXAMPLE.com", "example.COM", true),
            ("example.com.", "example.com", true),
            ("example.com", "www.example.com", false),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "WWW.Example.Com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", "*.example.com", true),
            ("*.example.com", "*.b.example.com", false),
            ("*.b.example.com", "*.example.com", false),
            ("*.example.com", "wwwexample.com", false),
            ("*.example.com", ".example.com", false),
            ("w*.example.com", "www.example.com", false),
            ("*.*.example.com", "a.b.example.com", false),
            ("*.", "com", false),
            ("", "", false),
            ("*.xn--fiqs8s", "www.xn--fiqs8s", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(name_covered(pattern, name), want, "{pattern} covers {name}?");
        }
    }

    #[test]
    fn pem_extraction_is_liberal() {
        let body = base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3, 4, 5, 6]);
        let text = format!(
            "Bag Attributes\r\n  friendlyName: x\r\n-----BEGIN CERTIFICATE-----\r\n  {body}\r\n-----END CERTIFICATE-----\r\n\r\nsome text\n-----BEGIN CERTIFICATE-----\\n{body}\\n-----END CERTIFICATE-----"
        );
        let got = pem_certificates(&text).unwrap();
        assert_eq!(got, vec![vec![1, 2, 3, 4, 5, 6], vec![1, 2, 3, 4, 5, 6]]);
        assert!(pem_certificates("-----BEGIN CERTIFICATE-----\nAAAA").is_err());
        assert!(pem_certificates("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----").is_err());
        assert_eq!(pem_certificates("nothing here").unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn serial_hex_strips_leading_zero_bytes() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x7f]), "7f");
    }
}
