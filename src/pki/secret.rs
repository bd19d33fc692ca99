//! The data of a `kubernetes.io/tls` Secret.

use std::collections::BTreeMap;

use super::verify::{VerifyError, certificates_to_pem, pem_certificates};

/// The Secret type certorder writes.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// Leaf then chain, PEM.
pub const TLS_CRT: &str = "tls.crt";
/// The private key, PKCS#8 PEM.
pub const TLS_KEY: &str = "tls.key";
/// The CA (top of the chain, or the CA certificate given), PEM.
pub const CA_CRT: &str = "ca.crt";

/// Builds the data of a TLS Secret: `tls.crt` is the chain re-encoded as clean PEM (leaf first, in
/// the order given, text between blocks dropped), `tls.key` is `key_pem` as given (PKCS#8 PEM from
/// [`super::PrivateKey::to_pem`]), and `ca.crt` is `ca_pem` when given, otherwise the last
/// certificate of the chain when the chain has more than the leaf (absent for a lone leaf).
///
/// Call it with a chain that passed [`super::verify_issued`]; it fails only if the chain holds no
/// readable PEM certificate.
pub fn tls_secret_data(
    chain_pem: &str,
    key_pem: &str,
    ca_pem: Option<&str>,
) -> Result<BTreeMap<String, Vec<u8>>, VerifyError> {
    let ders = pem_certificates(chain_pem)?;
    if ders.is_empty() {
        return Err(VerifyError::NoCertificate);
    }
    let mut data = BTreeMap::new();
    data.insert(TLS_CRT.to_owned(), certificates_to_pem(&ders).into_bytes());
    data.insert(TLS_KEY.to_owned(), key_pem.as_bytes().to_vec());
    let ca = match ca_pem {
        Some(ca) => Some(ca.as_bytes().to_vec()),
        None if ders.len() > 1 => Some(certificates_to_pem(&ders[ders.len() - 1..]).into_bytes()),
        None => None,
    };
    if let Some(ca) = ca {
        data.insert(CA_CRT.to_owned(), ca);
    }
    Ok(data)
}
