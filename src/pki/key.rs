//! Private keys: generation for every algorithm the API offers, parsing, public key identity.
//!
//! ECDSA keys come from ring (through rcgen). ring cannot generate RSA keys, so RSA keys are generated
//! with the `rsa` crate and handed to rcgen/ring as PKCS#8 DER for signing. Keys are always kept as
//! PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), which is what `tls.key` holds.

use std::fmt;
use std::sync::{Arc, Mutex};

use rcgen::{KeyPair, PublicKeyData};
use sha2::{Digest, Sha256};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::PkiError;

/// The key algorithms a certificate order can ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signed with SHA-256.
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384, signed with SHA-384.
    EcdsaP384,
    /// RSA with a 2048-bit modulus, PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// RSA with a 3072-bit modulus, PKCS#1 v1.5 with SHA-256.
    Rsa3072,
    /// RSA with a 4096-bit modulus, PKCS#1 v1.5 with SHA-256.
    Rsa4096,
}

impl KeyAlgorithm {
    /// Every algorithm, in a stable order (handy for tables).
    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The RSA modulus size in bits, or `None` for ECDSA.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            KeyAlgorithm::Rsa2048 => Some(2048),
            KeyAlgorithm::Rsa3072 => Some(3072),
            KeyAlgorithm::Rsa4096 => Some(4096),
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => None,
        }
    }

    fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::EcdsaP384 => "ECDSA P-384",
            KeyAlgorithm::Rsa2048 => "RSA 2048",
            KeyAlgorithm::Rsa3072 => "RSA 3072",
            KeyAlgorithm::Rsa4096 => "RSA 4096",
        })
    }
}

/// A private key, held as PKCS#8 and as the key pair that signs with it (parsing one computes
/// its public half: an EC point multiplication, or RSA's checks). `Debug` never prints the key
/// material.
#[derive(Clone)]
pub struct PrivateKey {
    algorithm: KeyAlgorithm,
    signer: Arc<KeyPair>,
    pkcs8_pem: String,
    pkcs8_der: Vec<u8>,
    /// SubjectPublicKeyInfo DER of the public half.
    spki_der: Vec<u8>,
    /// The public key bits inside the SPKI (EC point, or PKCS#1 RSAPublicKey).
    public_key_raw: Vec<u8>,
    /// The last CSR built with this key and the names it asks for, shared by the key's clones:
    /// the request submitted to the vendor is sent again at download without signing it again.
    csr: Arc<Mutex<Option<BuiltCsr>>>,
}

/// A CSR's PEM and the names it asks for.
type BuiltCsr = (Vec<String>, String);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("public_key_sha256", &self.public_key_fingerprint())
            .finish_non_exhaustive()
    }
}

/// Generates a new private key. RSA-4096 takes seconds in a debug build; call it from
/// `tokio::task::spawn_blocking` in async code.
pub fn generate_key(algorithm: KeyAlgorithm) -> Result<PrivateKey, PkiError> {
    match algorithm.rsa_bits() {
        None => {
            let key_pair = KeyPair::generate_for(algorithm.signature_algorithm())
                .map_err(|e| PkiError::KeyGeneration(e.to_string()))?;
            let der = key_pair.serialize_der();
            PrivateKey::of_key_pair(key_pair, der)
        }
        Some(bits) => PrivateKey::from_pkcs8_der(&generate_rsa_pkcs8(bits)?),
    }
}

fn generate_rsa_pkcs8(bits: usize) -> Result<Vec<u8>, PkiError> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::PrivateKey::new(&mut RandAdapter(rand::rng()), bits)
        .map_err(|e| PkiError::KeyGeneration(format!("RSA {bits}: {e}")))?;
    let doc = key.to_pkcs8_der().map_err(|e| PkiError::KeyGeneration(format!("RSA {bits} PKCS#8 encoding: {e}")))?;
    Ok(doc.as_bytes().to_vec())
}

/// rand 0.9's thread RNG (a CSPRNG seeded from the OS) behind the rand_core 0.10 traits the `rsa`
/// crate asks for.
struct RandAdapter<R>(R);

impl<R: rand::RngCore + rand::CryptoRng> rsa::rand_core::TryRng for RandAdapter<R> {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: rand::RngCore + rand::CryptoRng> rsa::rand_core::TryCryptoRng for RandAdapter<R> {}

impl PrivateKey {
    /// The CSR built with this key for `domains` (`build_csr`), if one was.
    pub(super) fn built_csr(&self, domains: &[String]) -> Option<String> {
        let memo = self.csr.lock().expect("CSR memo lock");
        memo.as_ref().filter(|(names, _)| names.as_slice() == domains).map(|(_, csr)| csr.clone())
    }

    /// Keeps `csr`, built with this key for `domains`, for its next `built_csr`.
    pub(super) fn keep_csr(&self, domains: &[String], csr: &str) {
        *self.csr.lock().expect("CSR memo lock") = Some((domains.to_vec(), csr.to_string()));
    }

    /// Reads a private key from PEM. Accepts PKCS#8 (`PRIVATE KEY`) for every algorithm and PKCS#1
    /// (`RSA PRIVATE KEY`) for RSA, which is converted to PKCS#8. Text around the block is ignored.
    pub fn from_pem(pem_text: &str) -> Result<PrivateKey, PkiError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| PkiError::InvalidKey(format!("not valid PEM: {e}")))?;
        let block = blocks
            .iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or_else(|| PkiError::InvalidKey("no PRIVATE KEY block found".into()))?;
        match block.tag() {
            "PRIVATE KEY" => PrivateKey::from_pkcs8_der(block.contents()),
            "RSA PRIVATE KEY" => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::PrivateKey::from_pkcs1_der(block.contents())
                    .map_err(|e| PkiError::InvalidKey(format!("RSA PRIVATE KEY: {e}")))?;
                let doc = key.to_pkcs8_der().map_err(|e| PkiError::InvalidKey(format!("RSA PRIVATE KEY: {e}")))?;
                PrivateKey::from_pkcs8_der(doc.as_bytes())
            }
            other => Err(PkiError::InvalidKey(format!(
                "{other} is not supported; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)"
            ))),
        }
    }

    /// Reads a private key from PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, PkiError> {
        let key_pair = KeyPair::try_from(der)
            .map_err(|e| PkiError::InvalidKey(format!("unsupported or malformed PKCS#8 key: {e}")))?;
        PrivateKey::of_key_pair(key_pair, der.to_vec())
    }

    /// A key pair parsed from (or serialized as) `pkcs8_der`.
    fn of_key_pair(key_pair: KeyPair, pkcs8_der: Vec<u8>) -> Result<PrivateKey, PkiError> {
        let spki_der = key_pair.subject_public_key_info();
        let public_key_raw = key_pair.der_bytes().to_vec();
        let algorithm = algorithm_of_spki(&spki_der)?;
        let pkcs8_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8_der.as_slice()));
        Ok(PrivateKey {
            algorithm,
            signer: Arc::new(key_pair),
            pkcs8_pem,
            pkcs8_der,
            spki_der,
            public_key_raw,
            csr: Arc::default(),
        })
    }

    /// The key's algorithm (for RSA, by its modulus size).
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// PKCS#8 PEM, as stored in `tls.key`.
    pub fn to_pem(&self) -> &str {
        &self.pkcs8_pem
    }

    /// PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the public key's SubjectPublicKeyInfo DER, lowercase hex without colons (what
    /// `openssl pkey -pubout -outform DER | sha256sum` prints). Safe to log.
    pub fn public_key_fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// Whether a SubjectPublicKeyInfo (from a certificate or CSR) holds this key's public half.
    /// Compares the algorithm's key bits, not the DER bytes, so an RSA SPKI with or without the NULL
    /// parameters still matches.
    pub(crate) fn matches_spki(&self, spki: &SubjectPublicKeyInfo<'_>) -> bool {
        spki.subject_public_key.data.as_ref() == self.public_key_raw.as_slice()
    }

    /// The rcgen key pair that signs (CSR, or a CA signing certificates).
    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.signer
    }
}

/// Works out the [`KeyAlgorithm`] of a SubjectPublicKeyInfo.
pub(crate) fn algorithm_of_spki(spki_der: &[u8]) -> Result<KeyAlgorithm, PkiError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| PkiError::InvalidKey(format!("public key cannot be parsed: {e}")))?;
    let parsed = spki.parsed().map_err(|e| PkiError::InvalidKey(format!("public key cannot be parsed: {e}")))?;
    match parsed {
        ParsedPublicKey::EC(_) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => Ok(KeyAlgorithm::EcdsaP256),
                "1.3.132.0.34" => Ok(KeyAlgorithm::EcdsaP384),
                other => Err(PkiError::InvalidKey(format!("EC curve {other} is not supported (use P-256 or P-384)"))),
            }
        }
        ParsedPublicKey::RSA(rsa_key) => {
            let bits = modulus_bits(rsa_key.modulus);
            match bits {
                2048 => Ok(KeyAlgorithm::Rsa2048),
                3072 => Ok(KeyAlgorithm::Rsa3072),
                4096 => Ok(KeyAlgorithm::Rsa4096),
                other => Err(PkiError::InvalidKey(format!(
                    "RSA keys of {other} bits are not supported (use 2048, 3072 or 4096)"
                ))),
            }
        }
        _ => Err(PkiError::InvalidKey("only ECDSA (P-256, P-384) and RSA keys are supported".into())),
    }
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = {
        let start = modulus.iter().position(|b| *b != 0).unwrap_or(modulus.len());
        &modulus[start..]
    };
    match trimmed.first() {
        None => 0,
        Some(first) => trimmed.len() * 8 - first.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_algorithm_and_reads_it_back() {
        for alg in KeyAlgorithm::ALL {
            let started = std::time::Instant::now();
            let key = generate_key(alg).expect("generate");
            eprintln!("generate_key({alg}) took {:?}", started.elapsed());
            assert_eq!(key.algorithm(), alg, "{alg}");
            assert!(key.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"), "{alg}");
            let again = PrivateKey::from_pem(key.to_pem()).expect("parse back");
            assert_eq!(again.algorithm(), alg);
            assert_eq!(again.public_key_der(), key.public_key_der());
            assert_eq!(again.public_key_fingerprint(), key.public_key_fingerprint());
            assert_eq!(key.public_key_fingerprint().len(), 64);
            // The key pair it holds signs, and so does the one read back.
            for signer in [key.key_pair(), again.key_pair()] {
                let signature = rcgen::SigningKey::sign(signer, b"certorder").expect("sign");
                assert!(!signature.is_empty(), "{alg}");
            }
        }
    }

    #[test]
    fn two_keys_differ_and_debug_hides_material() {
        let a = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let b = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        assert_ne!(a.public_key_fingerprint(), b.public_key_fingerprint());
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("BEGIN"), "{dbg}");
        assert!(!dbg.contains(&a.to_pem()[30..60]));
    }

    #[test]
    fn accepts_pkcs1_rsa_and_text_around_the_block() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let key = generate_key(KeyAlgorithm::Rsa2048).unwrap();
        let rsa_key = rsa::PrivateKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
        let pkcs1 = rsa_key.to_pkcs1_pem(rsa::pkcs1::LineEnding::CRLF).unwrap();
        let text = format!("key for example.com\r\n{}\r\n", pkcs1.as_str());
        let back = PrivateKey::from_pem(&text).expect("pkcs1");
        assert_eq!(back.algorithm(), KeyAlgorithm::Rsa2048);
        assert_eq!(back.public_key_fingerprint(), key.public_key_fingerprint());
        assert!(back.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn refuses_garbage() {
        for (input, want) in [
            ("", "no PRIVATE KEY block"),
            ("hello", "no PRIVATE KEY block"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "malformed PKCS#8"),
            ("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", "PKCS#8"),
        ] {
            let err = PrivateKey::from_pem(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn modulus_bits_counts_significant_bits() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
