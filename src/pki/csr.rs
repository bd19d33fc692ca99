//! Certificate signing requests: built from the order's key and names, and read back (by the local
//! CA and by the vendor simulator in tests).

use rcgen::{CertificateParams, DistinguishedName, DnType, SanType};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::{PkiError, PrivateKey};

/// Builds a PEM CSR for `domains`: the common name is the first domain, the SANs are all of them
/// (dNSName, wildcards as given). Domains must already be ASCII (punycode). The same key (or a
/// clone of it) asked again for the same domains gives the same CSR, signed once.
pub fn build_csr(key: &PrivateKey, domains: &[String]) -> Result<String, PkiError> {
    if let Some(csr) = key.built_csr(domains) {
        return Ok(csr);
    }
    let csr = sign_csr(key, domains)?;
    key.keep_csr(domains, &csr);
    Ok(csr)
}

fn sign_csr(key: &PrivateKey, domains: &[String]) -> Result<String, PkiError> {
    let first = domains.first().ok_or(PkiError::NoDomains)?;
    let mut sans = Vec::with_capacity(domains.len());
    for domain in domains {
        if !domain.is_ascii() {
            return Err(PkiError::InvalidDomain {
                domain: domain.clone(),
                reason: "not ASCII; convert it to punycode first".into(),
            });
        }
        let ia5 = domain
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::InvalidDomain { domain: domain.clone(), reason: e.to_string() })?;
        sans.push(SanType::DnsName(ia5));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    let key_pair = key.key_pair();
    let csr = params.serialize_request(&key_pair).map_err(|e| PkiError::Csr(e.to_string()))?;
    csr.pem().map_err(|e| PkiError::Csr(e.to_string()))
}

/// What a CSR asks for, after its signature has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCsr {
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// The dNSName SANs, in the order the CSR lists them.
    pub dns_names: Vec<String>,
    /// The requester's public key (SubjectPublicKeyInfo DER).
    pub public_key_der: Vec<u8>,
    /// The CSR in DER.
    pub der: Vec<u8>,
}

/// Reads a PEM (or DER inside PEM) CSR and checks its self-signature.
pub fn parse_csr(csr_pem: &str) -> Result<ParsedCsr, PkiError> {
    parse_csr_der(&csr_der(csr_pem)?)
}

/// The DER of the PEM CSR `csr_pem`.
pub fn csr_der(csr_pem: &str) -> Result<Vec<u8>, PkiError> {
    let block = pem::parse_many(csr_pem)
        .map_err(|e| PkiError::InvalidCsr(format!("not valid PEM: {e}")))?
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE REQUEST" || b.tag() == "NEW CERTIFICATE REQUEST")
        .ok_or_else(|| PkiError::InvalidCsr("no CERTIFICATE REQUEST block found".into()))?;
    Ok(block.into_contents())
}

/// Reads a DER CSR and checks its self-signature.
pub fn parse_csr_der(der: &[u8]) -> Result<ParsedCsr, PkiError> {
    read_csr_der(der, true)
}

/// Reads a DER CSR, checking its self-signature when `verify` (not when these very bytes were
/// verified a moment ago: the local CA's issue after the submission).
pub fn read_csr_der(der: &[u8], verify: bool) -> Result<ParsedCsr, PkiError> {
    let (_, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| PkiError::InvalidCsr(format!("cannot be parsed: {e}")))?;
    if verify {
        csr.verify_signature().map_err(|e| {
            PkiError::InvalidCsr(format!("its signature does not verify with its own public key ({e})"))
        })?;
    }
    let info = &csr.certification_request_info;
    let common_name = info.subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    let mut dns_names = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    if let GeneralName::DNSName(dns) = name {
                        dns_names.push((*dns).to_owned());
                    }
                }
            }
        }
    }
    Ok(ParsedCsr { common_name, dns_names, public_key_der: info.subject_pki.raw.to_vec(), der: der.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{KeyAlgorithm, generate_key};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trip_for_each_algorithm() {
        let domains = names(&["example.com", "*.example.com", "www.xn--fiqs8s.example"]);
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Rsa2048] {
            let key = generate_key(alg).unwrap();
            let pem = build_csr(&key, &domains).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"), "{pem}");
            let parsed = parse_csr(&pem).unwrap();
            assert_eq!(parsed.common_name.as_deref(), Some("example.com"));
            assert_eq!(parsed.dns_names, domains);
            assert_eq!(parsed.public_key_der, key.public_key_der(), "{alg}");
        }
    }

    /// The CSR submitted to the vendor is the one sent again at download: signed once per key
    /// (and its clones) and names; other names get their own.
    #[test]
    fn a_key_asked_again_for_the_same_names_gives_the_same_csr() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let (one, two) = (names(&["a.example"]), names(&["a.example", "b.example"]));
        let first = build_csr(&key, &one).unwrap();
        assert_eq!(build_csr(&key.clone(), &one).unwrap(), first, "a clone shares it");
        let other = build_csr(&key, &two).unwrap();
        assert_eq!(parse_csr(&other).unwrap().dns_names, two);
        let again = build_csr(&key, &one).unwrap();
        assert_eq!(parse_csr(&again).unwrap().dns_names, one);
        assert_ne!(again, first, "only the last is kept; ECDSA signs with a fresh nonce");
        let read_back = PrivateKey::from_pem(key.to_pem()).unwrap();
        assert_ne!(build_csr(&read_back, &one).unwrap(), again, "a key read again signs its own");
    }

    #[test]
    fn refuses_bad_input() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(matches!(build_csr(&key, &[]), Err(PkiError::NoDomains)));
        let err = build_csr(&key, &names(&["bücher.example"])).unwrap_err().to_string();
        assert!(err.contains("punycode"), "{err}");

        let good = build_csr(&key, &names(&["a.example"])).unwrap();
        // flip a byte inside the signature (the end of the DER)
        let block = pem::parse(&good).unwrap();
        let mut der = block.contents().to_vec();
        let last = der.len() - 3;
        der[last] ^= 0x01;
        let err = parse_csr_der(&der).unwrap_err().to_string();
        assert!(err.contains("signature"), "{err}");
        let err = parse_csr("garbage").unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE REQUEST"), "{err}");
    }
}
