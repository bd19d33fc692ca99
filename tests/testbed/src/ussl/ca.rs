//! The simulator's own CA: a self-signed root that issues a leaf for each submitted CSR.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn generate() -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "USSL simulator root CA");
        dn.push(DnType::OrganizationName, "testbed");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(3600)).into();
        params.not_after = (now + std::time::Duration::from_secs(3650 * 86400)).into();
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A leaf for the CSR's key and names, valid for 90 days; `Err` says why the CSR is refused.
    pub fn issue(&self, csr_pem: &str, serial: u64) -> Result<String, String> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| format!("the CSR cannot be parsed: {e}"))?;
        let first = csr
            .params
            .subject_alt_names
            .iter()
            .find_map(|s| match s {
                rcgen::SanType::DnsName(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or("the CSR names no domain")?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, first);
        csr.params.distinguished_name = dn;
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        csr.params.use_authority_key_identifier_extension = true;
        let mut serial_bytes = [0u8; 16];
        serial_bytes[8..].copy_from_slice(&serial.to_be_bytes());
        serial_bytes[0] = 0x42;
        csr.params.serial_number = Some(SerialNumber::from_slice(&serial_bytes));
        let now = std::time::SystemTime::now();
        csr.params.not_before = (now - std::time::Duration::from_secs(60)).into();
        csr.params.not_after = (now + std::time::Duration::from_secs(90 * 86400)).into();
        let leaf = csr.signed_by(&self.issuer).map_err(|e| format!("signing failed: {e}"))?;
        Ok(leaf.pem())
    }
}

/// The DNS names a CSR asks for, lowercase and sorted.
pub fn csr_names(csr_pem: &str) -> Result<Vec<String>, String> {
    let csr =
        CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| format!("the CSR cannot be parsed: {e}"))?;
    let mut names: Vec<String> = csr
        .params
        .subject_alt_names
        .iter()
        .filter_map(|s| match s {
            rcgen::SanType::DnsName(n) => Some(n.to_string().to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    names.sort();
    Ok(names)
}
