//! End-to-end tests of the pki module: the local CA issues, verification accepts the good chain and
//! refuses each bad one with the error a person needs.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("valid time")
}

struct Issued {
    ca: LocalCa,
    key: PrivateKey,
    domains: Vec<String>,
    chain: String,
}

fn issue(alg: KeyAlgorithm, domains: &[&str]) -> Issued {
    let ca = LocalCa::generate_at("certorder test CA", now() - Duration::days(1)).unwrap();
    let key = generate_key(alg).unwrap();
    let domains = names(domains);
    let csr = build_csr(&key, &domains).unwrap();
    let chain = ca.issue(&csr, &domains, Duration::days(90), now()).unwrap();
    Issued { ca, key, domains, chain }
}

#[test]
fn local_ca_chain_verifies_for_every_key_algorithm() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Rsa2048] {
        let t = issue(alg, &["example.com", "*.example.com", "www.example.org"]);
        let trust = [t.ca.cert_pem().to_owned()];
        let info =
            verify_issued(&t.chain, &t.key, &t.domains, now(), Some(&trust)).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(info.dns_names, t.domains);
        assert_eq!(info.subject, "CN=example.com");
        assert_eq!(info.issuer, "CN=certorder test CA, O=certorder");
        assert_eq!(info.not_before, now() - Duration::minutes(1));
        assert_eq!(info.not_after, now() + Duration::days(90));
        assert_eq!(info.sha256_fingerprint.len(), 64);
        assert!(info.sha256_fingerprint.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(!info.serial_hex.is_empty() && info.serial_hex.len() <= 32, "{}", info.serial_hex);
        // without trust anchors too, and a wildcard host is covered
        verify_issued(&t.chain, &t.key, &names(&["api.example.com"]), now(), None).unwrap();
        assert_eq!(describe_leaf(&t.chain).unwrap(), info);
    }
}

#[test]
fn leaf_has_the_extensions_a_server_certificate_needs() {
    use x509_parser::prelude::*;
    let t = issue(KeyAlgorithm::EcdsaP256, &["a.example", "b.example"]);
    let ders = pem_certificates(&t.chain).unwrap();
    assert_eq!(ders.len(), 2);
    let (_, leaf) = X509Certificate::from_der(&ders[0]).unwrap();
    let (_, ca) = X509Certificate::from_der(&ders[1]).unwrap();
    assert!(!leaf.is_ca());
    assert!(leaf.extended_key_usage().unwrap().unwrap().value.server_auth);
    assert!(leaf.key_usage().unwrap().unwrap().value.digital_signature());
    assert!(leaf.raw_serial().len() >= 16, "128-bit serial");
    // Whatever the random bytes, the serial keeps its 16 bytes (no sign byte, no dropped zero).
    for _ in 0..300 {
        let t = issue(KeyAlgorithm::EcdsaP256, &["a.example"]);
        let ders = pem_certificates(&t.chain).unwrap();
        let (_, leaf) = X509Certificate::from_der(&ders[0]).unwrap();
        assert_eq!(leaf.raw_serial().len(), 16, "{:02x?}", leaf.raw_serial());
    }
    let ski = match ca.get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER) {
        Ok(Some(ext)) => match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => k.0.to_vec(),
            other => panic!("{other:?}"),
        },
        other => panic!("CA has no SKI: {other:?}"),
    };
    let aki = match leaf.get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER) {
        Ok(Some(ext)) => match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(k) => k.key_identifier.as_ref().unwrap().0.to_vec(),
            other => panic!("{other:?}"),
        },
        other => panic!("leaf has no AKI: {other:?}"),
    };
    assert_eq!(aki, ski, "leaf AKI = CA SKI");
    assert!(
        leaf.get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER).unwrap().is_some()
    );
    // the CA
    assert!(ca.is_ca());
    let bc = ca.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = ca.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp()) / 86400;
    assert!((3649..=3651).contains(&years), "{years}");
}

#[test]
fn refuses_each_bad_case_with_the_right_error() {
    let t = issue(KeyAlgorithm::EcdsaP256, &["example.com", "*.example.com"]);
    let other_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let other_ca = LocalCa::generate_at("some other CA", now() - Duration::days(1)).unwrap();
    let ders = pem_certificates(&t.chain).unwrap();
    let leaf_pem = certificates_to_pem(&ders[..1]);
    let ca_pem = certificates_to_pem(&ders[1..]);
    let reversed = format!("{ca_pem}{leaf_pem}");
    let foreign_parent = format!("{leaf_pem}{}", other_ca.cert_pem());
    let trust_other = [other_ca.cert_pem().to_owned()];
    let trust_ours = [t.ca.cert_pem().to_owned()];

    type Case<'a> = (&'a str, String, &'a PrivateKey, Vec<String>, DateTime<Utc>, Option<&'a [String]>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "wrong key",
            t.chain.clone(),
            &other_key,
            t.domains.clone(),
            now(),
            None,
            "leaf does not match the private key",
        ),
        (
            "leaf not first",
            reversed,
            &t.key,
            t.domains.clone(),
            now(),
            None,
            "certificate #2 (CN=example.com) does: the chain must start with the leaf",
        ),
        (
            "missing name",
            t.chain.clone(),
            &t.key,
            names(&["example.com", "www.example.org"]),
            now(),
            None,
            "certificate does not cover www.example.org (covers: example.com, *.example.com)",
        ),
        (
            "wildcard does not cover two labels",
            t.chain.clone(),
            &t.key,
            names(&["a.b.example.com"]),
            now(),
            None,
            "does not cover a.b.example.com",
        ),
        (
            "expired",
            t.chain.clone(),
            &t.key,
            t.domains.clone(),
            now() + Duration::days(91),
            None,
            "certificate expired at 2026-05-30 12:00:00 UTC",
        ),
        (
            "not yet valid",
            t.chain.clone(),
            &t.key,
            t.domains.clone(),
            now() - Duration::hours(1),
            None,
            "not valid before 2026-03-01 11:59:00 UTC",
        ),
        (
            "broken chain",
            foreign_parent,
            &t.key,
            t.domains.clone(),
            now(),
            None,
            "chain is broken between CN=example.com and CN=some other CA, O=certorder",
        ),
        (
            "untrusted",
            t.chain.clone(),
            &t.key,
            t.domains.clone(),
            now(),
            Some(&trust_other),
            "chain does not lead to a trusted CA: CN=certorder test CA, O=certorder is not signed by any of [CN=some other CA, O=certorder]",
        ),
        ("garbage", "this is not a certificate".into(), &t.key, t.domains.clone(), now(), None, "no PEM certificate"),
        (
            "bad base64",
            "-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n".into(),
            &t.key,
            t.domains.clone(),
            now(),
            None,
            "certificate #1 in the chain cannot be read: bad base64",
        ),
        (
            "not DER",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            &t.key,
            t.domains.clone(),
            now(),
            None,
            "certificate #1 in the chain cannot be read",
        ),
    ];
    for (what, chain, key, domains, at, trust, want) in cases {
        let err = verify_issued(&chain, key, &domains, at, trust).expect_err(what).to_string();
        assert!(err.contains(want), "{what}: got {err:?}, want {want:?}");
        if trust.is_none() {
            // Inspected once (as the Secret cache does), verified later: the same answer.
            let later = inspect_issued(&chain, key).verify(&domains, at).expect_err(what).to_string();
            assert_eq!(later, err, "{what}: inspected, then verified");
        }
    }
    let inspected = inspect_issued(&t.chain, &t.key);
    assert_eq!(inspected.verify(&t.domains, now()), verify_issued(&t.chain, &t.key, &t.domains, now(), None));
    assert!(inspected.verify(&t.domains, now()).is_ok());

    // the leaf alone, trusted through its issuer
    verify_issued(&leaf_pem, &t.key, &t.domains, now(), Some(&trust_ours)).unwrap();
    // the leaf alone is untrusted with a foreign anchor
    assert!(matches!(
        verify_issued(&leaf_pem, &t.key, &t.domains, now(), Some(&trust_other)),
        Err(VerifyError::Untrusted { .. })
    ));
    // CRLF and text around the blocks are fine
    let messy = format!("subject=CN=example.com\r\n{}\r\n\r\nissuer\r\n", t.chain.replace('\n', "\r\n"));
    verify_issued(&messy, &t.key, &t.domains, now(), Some(&trust_ours)).unwrap();
    // case-insensitive names
    verify_issued(&t.chain, &t.key, &names(&["EXAMPLE.com", "Www.Example.COM"]), now(), None).unwrap();
    // What the Secret cache is told of a chain it wrote (`Inspected::verified`) is what it would
    // find reading tls.crt as written, messy input or not.
    for chain in [&t.chain, &messy] {
        let info = verify_issued(chain, &t.key, &t.domains, now(), None).unwrap();
        let written = crate::pki::tls_secret_data(chain, t.key.to_pem(), None).unwrap();
        let tls_crt = String::from_utf8(written[crate::pki::TLS_CRT].clone()).unwrap();
        assert_eq!(inspect_issued(&tls_crt, &t.key), Inspected::verified(info));
    }
}

#[test]
fn local_ca_refuses_bad_requests() {
    let ca = LocalCa::generate_at("CA", now()).unwrap();
    let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let csr = build_csr(&key, &names(&["a.example", "b.example"])).unwrap();
    let err = ca.issue(&csr, &names(&["a.example"]), Duration::days(1), now()).unwrap_err();
    assert!(matches!(err, CaError::NamesDiffer { .. }), "{err}");
    assert_eq!(err.to_string(), "the CSR names [a.example, b.example] but the order asks for [a.example]");
    // order and case do not matter
    ca.issue(&csr, &names(&["B.example", "a.example"]), Duration::days(1), now()).unwrap();
    assert!(matches!(ca.issue(&csr, &[], Duration::days(1), now()), Err(CaError::NoNames)));
    assert!(matches!(
        ca.issue(&csr, &names(&["a.example", "b.example"]), Duration::zero(), now()),
        Err(CaError::InvalidLifetime(_))
    ));
    let err = ca.issue("nonsense", &names(&["a.example"]), Duration::days(1), now()).unwrap_err();
    assert!(err.to_string().contains("no CERTIFICATE REQUEST"), "{err}");
}

#[test]
fn local_ca_round_trips_through_pem() {
    let ca = LocalCa::generate("round trip CA").unwrap();
    let (cert, key) = ca.to_pem();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let back = LocalCa::from_pem(&cert, &key).unwrap();
    assert_eq!(back.cert_pem(), ca.cert_pem());
    // a CA loaded from PEM issues chains that verify against the original certificate
    let leaf_key = generate_key(KeyAlgorithm::EcdsaP384).unwrap();
    let domains = names(&["x.example"]);
    let chain = back.issue(&build_csr(&leaf_key, &domains).unwrap(), &domains, Duration::days(30), Utc::now()).unwrap();
    verify_issued(&chain, &leaf_key, &domains, Utc::now(), Some(std::slice::from_ref(&cert))).unwrap();

    let other = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    assert!(matches!(LocalCa::from_pem(&cert, other.to_pem()), Err(CaError::CaKeyMismatch)));
    // a leaf is not a CA
    let leaf_only = certificates_to_pem(&pem_certificates(&chain).unwrap()[..1]);
    assert!(matches!(LocalCa::from_pem(&leaf_only, leaf_key.to_pem()), Err(CaError::InvalidCa(_))));
    assert!(matches!(LocalCa::from_pem("", &key), Err(CaError::InvalidCa(_))));
    // Debug does not print the key
    assert!(!format!("{back:?}").contains(&key[40..80]));
}

#[test]
fn tls_secret_data_holds_leaf_chain_key_and_ca() {
    let t = issue(KeyAlgorithm::EcdsaP256, &["example.com"]);
    let messy = t.chain.replace('\n', "\r\n");
    let data = tls_secret_data(&messy, t.key.to_pem(), None).unwrap();
    assert_eq!(data.keys().cloned().collect::<Vec<_>>(), vec![CA_CRT, TLS_CRT, TLS_KEY]);
    assert_eq!(String::from_utf8(data[TLS_CRT].clone()).unwrap(), t.chain);
    assert_eq!(data[TLS_KEY], t.key.to_pem().as_bytes());
    assert_eq!(String::from_utf8(data[CA_CRT].clone()).unwrap(), t.ca.cert_pem());

    let leaf_only = certificates_to_pem(&pem_certificates(&t.chain).unwrap()[..1]);
    let data = tls_secret_data(&leaf_only, t.key.to_pem(), None).unwrap();
    assert!(!data.contains_key(CA_CRT), "a lone leaf has no CA to put in ca.crt");
    let data = tls_secret_data(&leaf_only, t.key.to_pem(), Some(t.ca.cert_pem())).unwrap();
    assert_eq!(data[CA_CRT], t.ca.cert_pem().as_bytes());
    assert!(matches!(tls_secret_data("", "k", None), Err(VerifyError::NoCertificate)));
}

#[test]
fn fingerprint_survives_pem_round_trip() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Rsa2048] {
        let key = generate_key(alg).unwrap();
        let back = PrivateKey::from_pem(key.to_pem()).unwrap();
        assert_eq!(key.public_key_fingerprint(), back.public_key_fingerprint(), "{alg}");
    }
}

/// A certificate over our own key, made by someone else (or by nobody: self-signed): never a
/// server certificate we install.
fn self_signed(key: &PrivateKey, domains: &[String], ca: bool, usages: Vec<rcgen::ExtendedKeyUsagePurpose>) -> String {
    let pair = rcgen::KeyPair::from_pem(key.to_pem()).unwrap();
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).unwrap();
    params.not_before = std::time::SystemTime::from(now() - Duration::days(1)).into();
    params.not_after = std::time::SystemTime::from(now() + Duration::days(30)).into();
    params.is_ca = if ca { rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained) } else { rcgen::IsCa::ExplicitNoCa };
    params.extended_key_usages = usages;
    params.self_signed(&pair).unwrap().pem()
}

#[test]
fn refuses_a_ca_leaf_a_leaf_not_for_servers_and_a_self_signed_leaf_over_our_key() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let domains = names(&["shop.example.com"]);
    let anchors = [LocalCa::generate_at("a trusted CA", now() - Duration::days(1)).unwrap().cert_pem().to_owned()];
    let cases = [
        (self_signed(&key, &domains, true, vec![ServerAuth]), None, "is a CA certificate (basicConstraints CA:TRUE)"),
        (
            self_signed(&key, &domains, false, vec![ClientAuth]),
            None,
            "its extendedKeyUsage lacks serverAuth (has: clientAuth)",
        ),
        (self_signed(&key, &domains, false, vec![]), None, "lacks serverAuth (has: no extendedKeyUsage extension)"),
        (
            self_signed(&key, &domains, false, vec![ServerAuth]),
            Some(&anchors[..]),
            "chain does not lead to a trusted CA",
        ),
    ];
    for (chain, trust, want) in cases {
        let err = verify_issued(&chain, &key, &domains, now(), trust).expect_err(want).to_string();
        assert!(err.contains(want), "got {err:?}, want {want:?}");
    }
}

#[test]
fn lifetimes_are_capped_by_the_date_of_issuance_as_ballot_sc081_says() {
    let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap();
    for (when, days) in [
        (at(2026, 3, 14), 398),
        (at(2026, 3, 15), 200),
        (at(2026, 11, 26), 200),
        (at(2027, 3, 14), 200),
        (at(2027, 3, 15), 100),
        (at(2029, 3, 14), 100),
        (at(2029, 3, 15), 47),
        (at(2035, 1, 1), 47),
    ] {
        assert_eq!(super::ca::max_lifetime_at(when), Duration::days(days), "{when}");
    }
}
