//! The built-in CA behind the `local` provider: a self-signed ECDSA P-256 CA that issues leaves for
//! CSRs, with exactly the requested names.

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::verify::pem_certificates;
use super::{KeyAlgorithm, ParsedCsr, PkiError, PrivateKey, generate_key, parse_csr};

/// How long the CA itself is valid.
pub const CA_LIFETIME_DAYS: i64 = 3650;

/// The longest lifetime a publicly trusted TLS certificate issued at `at` may have (CA/Browser
/// Forum Baseline Requirements 6.3.2, as amended by ballot SC-081v3): 398 days, then 200 days from
/// 2026-03-15, 100 days from 2027-03-15 and 47 days from 2029-03-15.
pub fn max_lifetime_at(at: DateTime<Utc>) -> Duration {
    let from = |y, m, d| {
        chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a date").and_hms_opt(0, 0, 0).expect("midnight").and_utc()
    };
    if at >= from(2029, 3, 15) {
        Duration::days(47)
    } else if at >= from(2027, 3, 15) {
        Duration::days(100)
    } else if at >= from(2026, 3, 15) {
        Duration::days(200)
    } else {
        Duration::days(398)
    }
}

/// Why the local CA refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    #[error("the CA's key: {0}")]
    Key(#[from] PkiError),
    #[error("the CA certificate cannot be used: {0}")]
    InvalidCa(String),
    #[error("the CA certificate does not match the CA key")]
    CaKeyMismatch,
    #[error("the CSR is not acceptable: {0}")]
    InvalidCsr(String),
    #[error("the CSR names [{}] but the order asks for [{}]", .csr.join(", "), .requested.join(", "))]
    NamesDiffer { csr: Vec<String>, requested: Vec<String> },
    #[error("no names requested")]
    NoNames,
    #[error("the certificate lifetime must be positive (got {0})")]
    InvalidLifetime(Duration),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A CA key and certificate. `Debug` does not print the key.
#[derive(Clone, Debug)]
pub struct LocalCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: PrivateKey,
}

impl LocalCa {
    /// Generates a new CA valid from now for ten years.
    pub fn generate(common_name: &str) -> Result<LocalCa, CaError> {
        LocalCa::generate_at(common_name, Utc::now())
    }

    /// Generates a new CA (ECDSA P-256, self-signed, pathlen 0, keyCertSign + cRLSign) valid from
    /// `now` - 1 minute for [`CA_LIFETIME_DAYS`] days.
    pub fn generate_at(common_name: &str, now: DateTime<Utc>) -> Result<LocalCa, CaError> {
        let key = generate_key(KeyAlgorithm::EcdsaP256)?;
        let key_pair = key.key_pair();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "certorder");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        set_validity(&mut params, now - Duration::minutes(1), now + Duration::days(CA_LIFETIME_DAYS))?;
        let cert = params.self_signed(&key_pair).map_err(|e| CaError::Sign(e.to_string()))?;
        Ok(LocalCa { cert_pem: cert.pem(), cert_der: cert.der().to_vec(), key })
    }

    /// Loads a CA from its certificate and key PEM (as kept in the provider's Secret).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<LocalCa, CaError> {
        let key = PrivateKey::from_pem(key_pem)?;
        let ders = pem_certificates(cert_pem).map_err(|e| CaError::InvalidCa(e.to_string()))?;
        let der = ders.into_iter().next().ok_or_else(|| CaError::InvalidCa("no CERTIFICATE block found".into()))?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| CaError::InvalidCa(e.to_string()))?;
        if !cert.is_ca() {
            return Err(CaError::InvalidCa(format!("{} is not a CA certificate", cert.subject())));
        }
        if !key.matches_spki(cert.public_key()) {
            return Err(CaError::CaKeyMismatch);
        }
        let cert_pem = super::verify::certificates_to_pem(std::slice::from_ref(&der));
        Ok(LocalCa { cert_pem, cert_der: der, key })
    }

    /// `(certificate PEM, PKCS#8 key PEM)`.
    pub fn to_pem(&self) -> (String, String) {
        (self.cert_pem.clone(), self.key.to_pem().to_owned())
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf for `csr_pem` valid from `now` - 1 minute to `now` + `lifetime`, returning the
    /// chain PEM (leaf, then the CA). The CSR's signature must verify and its dNSName SANs must be
    /// exactly `names` (order and case ignored); the leaf carries `names` as SANs, CN = first name,
    /// serverAuth EKU, digitalSignature KU, CA:false, a random 128-bit serial, AKI and SKI.
    pub fn issue(
        &self,
        csr_pem: &str,
        names: &[String],
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, CaError> {
        let csr = parse_csr(csr_pem).map_err(|e| CaError::InvalidCsr(e.to_string()))?;
        self.issue_for(&csr, names, lifetime, now)
    }

    /// Issues a certificate for the CSR `csr`, read (and its signature verified) by the caller.
    pub fn issue_for(
        &self,
        csr: &ParsedCsr,
        names: &[String],
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, CaError> {
        let first = names.first().ok_or(CaError::NoNames)?;
        if lifetime <= Duration::zero() {
            return Err(CaError::InvalidLifetime(lifetime));
        }
        let normalise = |list: &[String]| {
            let mut v: Vec<String> = list.iter().map(|n| n.to_ascii_lowercase()).collect();
            v.sort();
            v.dedup();
            v
        };
        if normalise(&csr.dns_names) != normalise(names) {
            return Err(CaError::NamesDiffer { csr: csr.dns_names.clone(), requested: names.to_vec() });
        }
        let public_key = SubjectPublicKeyInfo::from_der(&csr.public_key_der)
            .map_err(|e| CaError::InvalidCsr(format!("unsupported public key: {e}")))?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| {
                n.clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e: rcgen::Error| CaError::InvalidCsr(format!("name {n}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        set_validity(&mut params, now - Duration::minutes(1), now + lifetime)?;

        let key_pair = self.key.key_pair();
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), key_pair)
            .map_err(|e| CaError::InvalidCa(e.to_string()))?;
        let leaf = params.signed_by(&public_key, &issuer).map_err(|e| CaError::Sign(e.to_string()))?;
        Ok(format!("{}{}", leaf.pem(), self.cert_pem))
    }
}

/// A random positive 128-bit serial that always takes all 16 bytes in DER: the top bit clear
/// (no sign byte added) and the next one set (no leading zero byte dropped), leaving 126
/// random bits, above the 64 the CA/Browser Forum asks for.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Sets notBefore/notAfter. rcgen takes `time::OffsetDateTime`, which certorder does not depend on
/// directly: the values are built from rcgen's epoch date plus a std duration.
fn set_validity(
    params: &mut CertificateParams,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<(), CaError> {
    let since_epoch = |t: DateTime<Utc>| {
        u64::try_from(t.timestamp())
            .map(std::time::Duration::from_secs)
            .map_err(|_| CaError::Sign(format!("time {t} is before 1970")))
    };
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch(not_before)?;
    params.not_after = epoch + since_epoch(not_after)?;
    Ok(())
}
