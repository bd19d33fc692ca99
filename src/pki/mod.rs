//! Keys, CSRs, certificate verification and TLS Secret contents. Pure: no Kubernetes I/O, and the
//! clock only where a function says so (verification takes `now`).
//!
//! - [`generate_key`] / [`PrivateKey`]: ECDSA P-256/P-384 and RSA 2048/3072/4096, PKCS#8 PEM.
//! - [`build_csr`] / [`parse_csr`]: CN = first domain, SANs = all domains.
//! - [`verify_issued`]: what is checked before a certificate replaces anything in a Secret.
//! - [`tls_secret_data`]: `tls.crt`, `tls.key`, `ca.crt`.
//! - [`LocalCa`]: the CA behind the `local` provider.

pub mod ca;
mod csr;
mod key;
mod secret;
mod verify;

pub use ca::{CaError, LocalCa};
pub use csr::{ParsedCsr, build_csr, csr_der, parse_csr, parse_csr_der, read_csr_der};
pub use key::{KeyAlgorithm, PrivateKey, generate_key};
pub use secret::{CA_CRT, TLS_CRT, TLS_KEY, TLS_SECRET_TYPE, tls_secret_data};
pub use verify::{
    CertInfo, Inspected, VerifyError, certificates_to_pem, describe_leaf, inspect_issued, name_covered,
    pem_certificates, verify_issued,
};

/// Errors from key and CSR handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("key generation failed: {0}")]
    KeyGeneration(String),
    #[error("private key cannot be used: {0}")]
    InvalidKey(String),
    #[error("a CSR needs at least one domain")]
    NoDomains,
    #[error("domain {domain:?} cannot go into a certificate: {reason}")]
    InvalidDomain { domain: String, reason: String },
    #[error("building the CSR failed: {0}")]
    Csr(String),
    #[error("the CSR is not acceptable: {0}")]
    InvalidCsr(String),
}

#[cfg(test)]
mod tests;
