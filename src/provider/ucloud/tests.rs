//! The signature test vector, every documented answer example (odd ones included), errors by
//! kind and the state mapping.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use super::client::{classify, redacted, signature};
use super::wire::{self, Download};
use super::*;
use crate::api::DnsRecordType;

fn map(v: Value) -> BTreeMap<String, Value> {
    params(v)
}

#[test]
fn reproduces_the_documented_signature() {
    let p = map(json!({
        "Action": "DescribeUHostInstance",
        "Region": "cn-bj2",
        "Limit": 10,
        "PublicKey": "ucloudsomeone@example.com1296235120854146120",
    }));
    assert_eq!(signature(&p, "46f09bb9fab4f12dfc160dae12273d5332b5debe"), "cba5cf5ec4d4233d206b1b54951e3787350a642f");
    // The Signature parameter itself is not signed; a different key gives a different one.
    let mut with_sig = p.clone();
    with_sig.insert("Signature".into(), json!("x"));
    assert_eq!(
        signature(&with_sig, "46f09bb9fab4f12dfc160dae12273d5332b5debe"),
        "cba5cf5ec4d4233d206b1b54951e3787350a642f"
    );
    assert_ne!(signature(&p, "another key"), "cba5cf5ec4d4233d206b1b54951e3787350a642f");
}

#[test]
fn signs_values_as_documented() {
    assert_eq!(client::sign_value(&json!(true)), "true");
    assert_eq!(client::sign_value(&json!(42.0)), "42");
    assert_eq!(client::sign_value(&json!(0.5)), "0.5");
    assert_eq!(client::sign_value(&json!(10)), "10");
    assert_eq!(client::sign_value(&json!("a b")), "a b");
}

#[test]
fn logging_redacts_keys_and_signature() {
    let p = map(
        json!({"PublicKey": "pub-123", "Signature": "sig-456", "CSR": "-----BEGIN CERTIFICATE REQUEST-----", "CertificateID": 7}),
    );
    let text = redacted(&p);
    assert!(!text.contains("pub-123") && !text.contains("sig-456"), "{text}");
    assert!(text.contains("CertificateID=7"), "{text}");
    assert!(!text.contains("BEGIN"), "{text}");
}

#[test]
fn gateway_errors_by_kind() {
    for code in [110, 130, 150, 153] {
        let e = classify("GetCertificateDetailInfo", code, "busy", "certorder-system/ucloud");
        assert!(e.retryable, "{code}: {e:?}");
        assert!(e.message.contains(&format!("RetCode {code}")));
    }
    let e = classify("PurchaseCertificate", 171, "Signature VerifyAC Error", "certorder-system/ucloud");
    assert!(!e.retryable);
    assert_eq!(
        e.message,
        "UCloud refused the credentials (RetCode 171): check PublicKey/PrivateKey in Secret certorder-system/ucloud"
    );
    let e = classify("PurchaseCertificate", 172, "", "ns/s");
    assert!(!e.retryable && e.message.contains("check PublicKey in Secret ns/s"));
    let e = classify("PurchaseCertificate", 299, "no permission", "ns/s");
    assert!(!e.retryable && e.message.contains("USSL") && e.message.contains("RetCode 299"));
    let e = classify("ComplementCSRInfo", 8034, "Domains invalid", "ns/s");
    assert!(!e.retryable);
    assert_eq!(e.message, "UCloud refused ComplementCSRInfo (RetCode 8034): Domains invalid");
    // The same refusal of a read is asked again: a poll must not end a days-long order.
    let e = classify("GetCertificateDetailInfo", 8011, "certificate busy", "ns/s");
    assert!(e.retryable);
    assert_eq!(
        e.message,
        "UCloud refused GetCertificateDetailInfo (RetCode 8011): certificate busy; asking again later"
    );
}

#[test]
fn state_codes_map_to_stages_and_unknown_ones_stay_unknown() {
    let table = [
        ("COMPLETED", VendorStage::Issuable),
        ("RENEWED", VendorStage::Issuable),
        ("REJECTED", VendorStage::Rejected),
        ("SECURITY_REVIEW_FAILED", VendorStage::Rejected),
        ("DOMAIN_AUTH", VendorStage::DomainValidation),
        ("AUTHING", VendorStage::DomainValidation),
        ("VERIFYING", VendorStage::DomainValidation),
        ("ISSUING", VendorStage::DomainValidation),
        ("ORG_REVIEWING", VendorStage::OrganizationReview),
        ("PENDING_CONFIRM_LETTER", VendorStage::AwaitingDocuments),
        ("PENDING_INFO", VendorStage::AwaitingInfo),
        ("APPLYING", VendorStage::AwaitingInfo),
        ("CANCELLED", VendorStage::Cancelled),
        ("REFUNDED", VendorStage::Cancelled),
        ("HYNPXWjV", VendorStage::Unknown),
        ("", VendorStage::Unknown),
    ];
    for (code, stage) in table {
        assert_eq!(stage_of(code), stage, "{code}");
    }
}

// --- every documented answer example, verbatim ---

#[test]
fn parses_purchase_certificate_example() {
    let answer = json!({"Action": "PurchaseCertificateResponse", "CertificateID": 5234233, "RetCode": 0});
    assert_eq!(wire::purchased_id(&answer).as_deref(), Some("5234233"));
    // A string id and a lowerCamel name are read as well.
    assert_eq!(wire::purchased_id(&json!({"certificateId": "77"})).as_deref(), Some("77"));
    assert_eq!(wire::purchased_id(&json!({"RetCode": 0})), None);
}

#[test]
fn parses_complement_csr_info_example() {
    // Random strings where the table promises nothing in particular: nothing breaks.
    let answer = json!({
        "Action": "ComplementCSRInfoResponse", "ApplyTime": 5, "AuthMethod": "DNS",
        "Auths": [{"AppName": "aBnsVqxQ"}], "CN": "IiLtCrBm", "CertificateState": "HYNPXWjV", "RetCode": 0
    });
    assert_eq!(wire::int(&answer, "RetCode"), Some(0));
    // Its Auths entry has no value: no challenge comes of it.
    assert!(challenges(&answer, &["a.example.com".into()]).is_empty());
}

#[test]
fn parses_get_dv_auth_info_example_in_lower_camel_case() {
    let answer = json!({
        "Action": "GetDVAuthInfoResponse",
        "AuthMethod": "DNS",
        "Auths": [{
            "authKey": "s5iljpx7j6dvmup5i4nyxwb4z3rfvnwj.bestenover.com",
            "authValue": "s20170106185910.bestenover.com",
            "domain": "www.bestenover.com"
        }],
        "RetCode": 0
    });
    let (method, auths) = wire::dv_auth(&answer);
    assert_eq!(method, "DNS");
    assert_eq!(auths[0].key, "s5iljpx7j6dvmup5i4nyxwb4z3rfvnwj.bestenover.com");
    let c = challenges(&answer, &["www.bestenover.com".into()]);
    assert_eq!(
        c,
        vec![ChallengeSpec {
            domain: "www.bestenover.com".into(),
            method: ValidationMethod::DNS,
            target: "s5iljpx7j6dvmup5i4nyxwb4z3rfvnwj.bestenover.com".into(),
            expected_value: "s20170106185910.bestenover.com".into(),
            record_type: None,
        }]
    );
}

#[test]
fn dns_cname_auths_are_cname_challenges_in_both_casings() {
    let answer = json!({
        "AuthMethod": "DNS",
        "Auths": [
            {"authType": "DNS_CNAME", "authKey": "S5ILJPX7.bestenover.com.", "authValue": "s20170106185910.ca.example.",
             "domain": "www.bestenover.com"},
            {"Domain": "shop.example.org", "AuthType": "DNS_CNAME", "AuthKey": "_0a1b2c", "AuthValue": "t1.dcv.example"},
            {"Domain": "txt.example.org", "AuthType": "DNS_TXT", "AuthKey": "_dnsauth", "AuthValue": "token-3"},
        ],
        "RetCode": 0
    });
    let c = challenges(&answer, &[]);
    assert_eq!(
        c[0],
        ChallengeSpec {
            domain: "www.bestenover.com".into(),
            method: ValidationMethod::DNS,
            target: "s5iljpx7.bestenover.com".into(),
            expected_value: "s20170106185910.ca.example".into(),
            record_type: Some(DnsRecordType::CNAME),
        }
    );
    assert_eq!(c[1].target, "_0a1b2c.shop.example.org");
    assert_eq!(c[1].expected_value, "t1.dcv.example");
    assert_eq!(c[1].record_type, Some(DnsRecordType::CNAME));
    assert_eq!(c[2].target, "_dnsauth.txt.example.org");
    assert_eq!(c[2].record_type, None);
}

#[test]
fn dv_auth_in_the_field_table_shape_file_and_dns() {
    let answer = json!({
        "AuthMethod": "FILE",
        "Auths": [
            {"Domain": "shop.example.com", "AuthType": "FILE", "AuthKey": "fileauth.txt", "AuthValue": "token-1", "AuthPath": "/.well-known/pki-validation/"},
            {"Domain": "*.example.org", "AuthType": "DNS_TXT", "AuthKey": "_dnsauth", "AuthValue": "token-2"},
        ],
        "RetCode": 0
    });
    let c = challenges(&answer, &[]);
    assert_eq!(c[0].method, ValidationMethod::HTTP);
    assert_eq!(c[0].target, "http://shop.example.com/.well-known/pki-validation/fileauth.txt");
    assert_eq!(c[0].expected_value, "token-1");
    assert_eq!(c[1].method, ValidationMethod::DNS);
    assert_eq!(c[1].target, "_dnsauth.example.org");
    assert_eq!(c[1].domain, "*.example.org");
    assert_eq!(c[1].record_type, None);
}

#[test]
fn parses_get_certificate_detail_info_example_with_lists_of_random_strings() {
    let answer = json!({
        "Action": "GetCertificateDetailInfoResponse",
        "ApplicantInfo": ["LrzNadXe", "BQJRVJxy", "ClffevkI", "ZwjaZITz", "oYagollE", "JIElzmgO"],
        "CertificateInfo": ["TdmUzaEH", "zUQjWBQr", "NxjVlyUz", "iDFxLWwR", "agdrDiDq", "ULgIbciT", "OBrRuztS", "ztPyBlnr"],
        "CompanyInfo": "WsUvPcYh",
        "OrderInfo": ["kbrFPjha", "fzakPjID", "AznNhMdG", "LQtKEHdw", "FjPEnuyL", "AcfKpFit", "eevTUVBD"],
        "RetCode": 0
    });
    // The wrong types read as "no state": the order's stage is Unknown, not a guess.
    let d = wire::detail(&answer);
    assert_eq!(d, wire::Detail::default());
    assert_eq!(stage_of(d.state_code.as_deref().unwrap_or_default()), VendorStage::Unknown);
}

#[test]
fn parses_get_certificate_detail_info_in_the_field_table_shape() {
    let answer = json!({
        "RetCode": 0,
        "CertificateInfo": {"CertificateID": "12", "StateCode": "REJECTED", "State": "审核失败", "Name": "SecureSiteOV",
                            "Domains": "shop.example.com", "RejectReason": "the licence does not match", "IssuedDate": "0"}
    });
    let d = wire::detail(&answer);
    assert_eq!(d.state_code.as_deref(), Some("REJECTED"));
    assert_eq!(d.reason.as_deref(), Some("the licence does not match"));
    assert_eq!(d.name.as_deref(), Some("SecureSiteOV"));
}

#[test]
fn parses_get_certificate_list_example() {
    let answer = json!({
        "Action": "GetCertificateListResponse",
        "CertificateList": [
            {"Domains": "www.bestenover.com", "Expire": 1515455999, "ID": 1, "Mode": "purchase",
             "Name": "TestCSROnlineFreeSSL", "State": "订单完成", "Type": "Synamtic-亚洲诚信(1年)"},
            {"Domains": "bestenover.com", "Expire": 1544918399, "ID": 6, "Mode": "trust",
             "Name": "TestTrustedCertificate", "State": "托管中", "Type": "COMODO CA Limited-PositiveSSL(3年)"}
        ],
        "RetCode": 0,
        "TotalCount": 2
    });
    let list = wire::certificate_list(&answer);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id.as_deref(), Some("1"));
    assert_eq!(list[0].name, "TestCSROnlineFreeSSL");
    assert_eq!(list[1].mode, "trust");
    assert_eq!(list[0].create_time, None);
}

#[test]
fn a_lost_purchase_is_recognised_only_when_it_can_be_nothing_else() {
    let ours = vec!["shop.example.com".to_string(), "www.shop.example.com".to_string()];
    let fresh = wire::ListedCertificate {
        id: Some("9".into()),
        name: "TrustAsiaDVG5".into(),
        mode: "purchase".into(),
        state_code: "PENDING_INFO".into(),
        create_time: Some(wire::seconds(1_700_000_100_000)),
        ..Default::default()
    };
    assert!(lost_purchase_candidate(&fresh, "TrustAsiaDVG5", 1_700_000_000, &ours));
    assert!(!lost_purchase_candidate(&fresh, "SecureSiteOV", 1_700_000_000, &ours), "another product");
    assert!(!lost_purchase_candidate(&fresh, "TrustAsiaDVG5", 1_700_000_200, &ours), "bought before the intent");
    let filled = wire::ListedCertificate { domains: "a.example.com".into(), ..fresh.clone() };
    assert!(
        !lost_purchase_candidate(&filled, "TrustAsiaDVG5", 1_700_000_000, &ours),
        "already filled in by another order"
    );
    let filled_by_us =
        wire::ListedCertificate { domains: "www.shop.example.com,shop.example.com".into(), ..fresh.clone() };
    assert!(
        lost_purchase_candidate(&filled_by_us, "TrustAsiaDVG5", 1_700_000_000, &ours),
        "filled in with this order's domains before the purchase could be recorded: ours"
    );
    let undated = wire::ListedCertificate { create_time: None, ..fresh.clone() };
    assert!(
        lost_purchase_candidate(&undated, "TrustAsiaDVG5", 1_700_000_000, &ours),
        "no time: an unused order of the product is adopted rather than a second one bought"
    );
    let done = wire::ListedCertificate { state_code: "COMPLETED".into(), ..fresh };
    assert!(!lost_purchase_candidate(&done, "TrustAsiaDVG5", 1_700_000_000, &ours));
}

#[test]
fn parses_both_download_shapes() {
    let v2 = json!({
        "Action": "DownloadCertificateResponse",
        "CertCA": {"FileData": "-----BEGIN CERTIFICATE----------END CERTIFICATE-----", "FileName": "CertificateCA.pem"},
        "Certificate": {"FileData": "-----BEGIN CERTIFICATE----------END CERTIFICATE-----", "FileName": "Certificate.pem"},
        "CsrOnline": 0,
        "RetCode": 0
    });
    assert_eq!(
        wire::download(&v2),
        Download::Inline {
            certificate: "-----BEGIN CERTIFICATE----------END CERTIFICATE-----".into(),
            ca: "-----BEGIN CERTIFICATE----------END CERTIFICATE-----".into()
        }
    );
    // The older example's URL is a random string: not a URL, so nothing to download.
    let v1 = json!({"Action": "DownloadCertificateResponse", "CertificateUrl": "mXDzUQXz", "RetCode": 0});
    assert_eq!(wire::download(&v1), Download::Nothing);
    let v1 = json!({"CertificateUrl": "https://ussl.example/c.zip", "RetCode": 0});
    assert_eq!(wire::download(&v1), Download::Url("https://ussl.example/c.zip".into()));
}

#[test]
fn parses_the_other_documented_examples() {
    for answer in [
        json!({"Action": "UploadConfirmLetterResponse", "RetCode": 0}),
        json!({"Action": "CancelCertificateOrderResponse", "RetCode": 0}),
        json!({"Action": "RenewCertificateOrderResponse", "RetCode": 0}),
        json!({"Action": "ReIssueCertificateCSRInfoResponse", "RetCode": 0}),
    ] {
        assert_eq!(wire::int(&answer, "RetCode"), Some(0));
    }
    // DownloadConfirmLetterTemp's example has no FileUrl at all, though the table requires it.
    assert_eq!(wire::letter_template_url(&json!({"Action": "DownloadConfirmLetterTempResponse", "RetCode": 0})), None);
    assert_eq!(
        wire::letter_template_url(&json!({"FileUrl": "https://ussl.example/letter.docx", "RetCode": "0"})).as_deref(),
        Some("https://ussl.example/letter.docx")
    );
    // RetCode as a string still counts.
    assert_eq!(wire::int(&json!({"RetCode": "153"}), "RetCode"), Some(153));
}

fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        out.start_file(
            *name,
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        out.write_all(text.as_bytes()).unwrap();
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn reads_the_chain_from_the_older_zip() {
    let leaf = "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----";
    let ca = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----";
    let bundle = format!("{leaf}\n{ca}\n");
    let z = zip_of(&[
        ("Apache/a.crt", leaf),
        ("Apache/root_bundle.crt", ca),
        ("Nginx/a.pem", &bundle),
        ("readme.txt", "hi"),
    ]);
    assert_eq!(chain_from_zip(&z).unwrap(), bundle);
    let z = zip_of(&[("a.crt", leaf), ("ca.crt", ca), ("again.crt", leaf)]);
    assert_eq!(chain_from_zip(&z).unwrap(), format!("{leaf}\n{ca}\n"));
    assert!(chain_from_zip(&zip_of(&[("readme.txt", "hi")])).is_err());
    assert!(chain_from_zip(b"not a zip").is_err());
}

/// Runs Info-ZIP's `zip` (Debian's `zip`, which `.ci/run` installs) in `dir` with `args`; the
/// archive it writes.
fn real_zip(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("zip")
        .current_dir(dir)
        .args(["-q", "-r", "out.zip"])
        .args(args)
        .output()
        .expect("the zip tool (apt-get install zip)");
    assert!(out.status.success(), "zip failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dir.join("out.zip")).unwrap()
}

#[test]
fn reads_deflate_zips_made_by_a_real_zip_tool_and_refuses_a_zip_bomb() {
    let leaf = "-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----";
    let ca = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----";
    let bundle = format!("{leaf}\n{ca}\n");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("Nginx")).unwrap();
    std::fs::create_dir_all(dir.path().join("Apache")).unwrap();
    // Long enough that zip deflates rather than stores.
    let padding = "# issued by the USSL test vendor\n".repeat(40);
    std::fs::write(dir.path().join("Nginx/cert.pem"), format!("{padding}{bundle}")).unwrap();
    std::fs::write(dir.path().join("Apache/cert.crt"), format!("{padding}{leaf}")).unwrap();
    let bytes = real_zip(dir.path(), &["-9", "Nginx", "Apache"]);
    let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).unwrap();
    let deflated = (0..archive.len()).any(|i| {
        let mut a = archive.clone();
        a.by_index(i).unwrap().compression() == zip::CompressionMethod::Deflated
    });
    assert!(deflated, "the test zip should be Deflate-compressed");
    assert_eq!(chain_from_zip(&bytes).unwrap(), format!("{padding}{bundle}"));

    // 64 MiB of zeros deflate to about 64 KiB: refused without inflating it all.
    let bomb_dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(bomb_dir.path().join("cert.pem")).unwrap();
    file.set_len(64 * 1024 * 1024).unwrap();
    let bomb = real_zip(bomb_dir.path(), &["-9", "cert.pem"]);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let err = chain_from_zip(&bomb).unwrap_err();
    assert!(err.contains("cert.pem is larger than 1024 KiB once uncompressed"), "{err}");
}

#[test]
fn files_are_fetched_over_https_or_from_the_endpoint_itself() {
    use super::client::download_allowed;
    let cases = [
        ("https://ussl.example/cert.zip", "https://api.ucloud.cn", true),
        ("HTTPS://cdn.example/cert.zip", "http://api.service.ucloud.cn", true),
        ("http://api.service.ucloud.cn/files/cert.zip", "http://api.service.ucloud.cn", true),
        ("http://127.0.0.1:8080/files/x.zip", "http://127.0.0.1:8080", true),
        ("http://127.0.0.1:9999/files/x.zip", "http://127.0.0.1:8080", false),
        ("http://ussl.example/cert.zip", "https://api.ucloud.cn", false),
        ("ftp://ussl.example/cert.zip", "https://api.ucloud.cn", false),
        ("not a url", "https://api.ucloud.cn", false),
    ];
    for (url, endpoint, allowed) in cases {
        assert_eq!(download_allowed(url, endpoint), allowed, "{url} from {endpoint}");
    }
}

/// What ComplementCSRInfo requires comes from the order, else the provider's defaults, and is
/// never made up: without it the order is refused (before buying), naming the fields to set.
#[test]
fn the_company_and_applicant_come_from_the_order_or_the_defaults_and_are_never_made_up() {
    use crate::api::{
        Applicant, CertificateOrderSpec, DefaultApplicant, DefaultOrganization, NamespacedSecretRef, Organization,
        UcloudDefaults,
    };
    let spec_json = json!({
        "providerRef": {"name": "ucloud"},
        "product": {"brand": "TrustAsia", "name": "TrustAsiaDVG5", "type": "DV"},
        "domains": ["example.com"],
        "secretName": "example-tls",
    });
    let provider = |defaults: Option<UcloudDefaults>| {
        let spec = crate::api::UcloudProviderSpec {
            endpoint: Some("http://127.0.0.1:9".into()),
            project_id: None,
            credentials_secret_ref: NamespacedSecretRef { name: "c".into(), namespace: "ns".into() },
            requests_per_second: None,
            review_poll_interval: None,
            validation_poll_interval: None,
            buy_again_after: None,
            ca_bundle: None,
            defaults,
        };
        let credentials = Credentials { public_key: "pub".into(), private_key: "priv".into() };
        UcloudProvider::new(&spec, credentials, "ns/c".into(), Default::default()).unwrap()
    };
    let info = |p: &UcloudProvider, spec: &CertificateOrderSpec| p.applicant_info(spec);
    let dv: CertificateOrderSpec = serde_json::from_value(spec_json).unwrap();

    // A DV order with nothing, on a provider with nothing: refused, naming both.
    let e = info(&provider(None), &dv).unwrap_err();
    assert!(!e.retryable);
    assert!(
        e.message.contains("spec.organization (or spec.ucloud.defaults.organization on provider ucloud)"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.applicant (or spec.ucloud.defaults.applicant on provider ucloud)"),
        "{}",
        e.message
    );

    // The provider's defaults fill a DV order in.
    let defaults = UcloudDefaults {
        organization: Some(DefaultOrganization {
            name: "Example Ltd".into(),
            division: Some("IT".into()),
            address: "1 Example Road".into(),
            city: "Shanghai".into(),
            region: "Shanghai".into(),
            country: "CN".into(),
            postal_code: None,
            phone: "+86-21-5555-0100".into(),
            type_: None,
            code_type: None,
            code: None,
        }),
        applicant: Some(DefaultApplicant {
            name: "Han Meimei".into(),
            phone: "+86 139 0000 0000".into(),
            email: "han@example.com".into(),
            title: Some("IT Manager".into()),
        }),
    };
    let (p, sent) = info(&provider(Some(defaults.clone())), &dv).unwrap();
    for (k, v) in [
        ("CompanyName", "Example Ltd"),
        ("CompanyAddress", "1 Example Road"),
        ("CompanyRegion", "Shanghai"),
        ("CompanyCity", "Shanghai"),
        ("CompanyCountry", "CN"),
        ("CompanyDivision", "IT"),
        ("AdminName", "Han Meimei"),
        ("AdminPhone", "+86 139 0000 0000"),
        ("AdminEmail", "han@example.com"),
        ("AdminTitle", "IT Manager"),
    ] {
        assert_eq!(p.get(k), Some(&json!(v)), "{k}");
    }
    assert_eq!((sent.company_name.as_str(), sent.applicant_email.as_str()), ("Example Ltd", "han@example.com"));

    // The order's own company and applicant win; the division and title they leave out come
    // from the defaults, or the order is refused: never `IT` / `Administrator` made up.
    let mut ov = dv.clone();
    ov.organization = Some(Organization {
        name: "ACME Ltd".into(),
        division: None,
        address: "1 Century Avenue".into(),
        city: "Shanghai".into(),
        region: "Shanghai".into(),
        country: "CN".into(),
        postal_code: None,
        phone: "+86 21 5555 0000".into(),
        type_: None,
        code_type: None,
        code: None,
    });
    ov.applicant = Some(Applicant {
        name: "Li Lei".into(),
        phone: "+86 138 0000 0000".into(),
        email: "li.lei@example.com".into(),
        title: None,
    });
    let (p, sent) = info(&provider(Some(defaults)), &ov).unwrap();
    assert_eq!(p["CompanyName"], json!("ACME Ltd"));
    assert_eq!(p["CompanyDivision"], json!("IT"));
    assert_eq!(p["AdminEmail"], json!("li.lei@example.com"));
    assert_eq!(p["AdminTitle"], json!("IT Manager"));
    assert_eq!(sent.applicant_name, "Li Lei");
    let e = info(&provider(None), &ov).unwrap_err();
    assert!(
        e.message
            .contains("spec.organization.division (or spec.ucloud.defaults.organization.division on provider ucloud)"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.applicant.title (or spec.ucloud.defaults.applicant.title on provider ucloud)"),
        "{}",
        e.message
    );
}
