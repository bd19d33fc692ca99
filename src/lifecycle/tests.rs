//! Table tests of the phase machine: every phase, every transition, backoff and rejection.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::api::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

fn spec(type_: CertificateType) -> CertificateOrderSpec {
    let ov = type_ != CertificateType::DV;
    CertificateOrderSpec {
        provider_ref: ProviderRef { name: "local".into() },
        product: Product { brand: None, name: None, type_, validity_years: 1 },
        domains: vec!["example.com".into(), "www.example.com".into()],
        private_key: PrivateKeySpec::default(),
        secret_name: "example-tls".into(),
        secret_template: None,
        organization: ov.then(|| Organization {
            name: "ACME Ltd".into(),
            division: None,
            address: "1 Road".into(),
            city: "Shanghai".into(),
            region: "Shanghai".into(),
            country: "CN".into(),
            postal_code: None,
            phone: "+86 21 0000".into(),
            type_: None,
            code_type: None,
            code: None,
        }),
        applicant: ov.then(|| Applicant {
            name: "Li Lei".into(),
            phone: "+86 138".into(),
            email: "li@example.com".into(),
            title: None,
        }),
        documents: ov.then(|| Documents {
            confirmation_letter: Some(SecretKeyRef { name: "letter".into(), key: "letter.pdf".into() }),
        }),
        domain_validation: DomainValidation::default(),
        renew_before: None,
        cancel_on_delete: false,
    }
}

fn view(spec: &CertificateOrderSpec, generation: i64) -> OrderView<'_> {
    OrderView { spec, generation, uid: "uid-1", renew_requested: None }
}

fn obs(now: DateTime<Utc>, letter: LetterObs) -> Observed {
    Observed {
        now,
        provider: ProviderObs::Ready,
        pending_key: None,
        letter,
        installed: InstalledObs::Missing,
        last_poll: None,
        last_self_check: None,
        self_check_failures: 0,
        solver_missing: false,
        shared_with: Vec::new(),
        dns_zones: String::new(),
    }
}

fn key() -> KeyObs {
    KeyObs { secret: "example-tls-key".into(), fingerprint: "k1".into() }
}

fn cert(now: DateTime<Utc>, key_fingerprint: &str) -> CertificateInfo {
    CertificateInfo {
        serial: "01".into(),
        issuer: "CN=certorder local CA".into(),
        not_before: now,
        not_after: now + chrono::Duration::days(90),
        sha256_fingerprint: format!("fp-{key_fingerprint}"),
        secret_name: "example-tls".into(),
        key_fingerprint: key_fingerprint.into(),
    }
}

fn challenge(domain: &str) -> ChallengeSpec {
    ChallengeSpec {
        domain: domain.into(),
        method: ValidationMethod::DNS,
        target: format!("_dnsauth.{}", domain.trim_start_matches("*.")),
        expected_value: format!("token-{domain}"),
        record_type: None,
    }
}

fn http_spec(type_: CertificateType) -> CertificateOrderSpec {
    let mut s = spec(type_);
    s.domain_validation.method = ValidationMethod::HTTP;
    s.domain_validation.http = Some(HttpValidation { ingress_class_name: Some("nginx".into()), ..Default::default() });
    s
}

fn http_challenge(domain: &str) -> Challenge {
    Challenge {
        domain: domain.into(),
        method: ValidationMethod::HTTP,
        target: format!("http://{domain}/.well-known/pki-validation/fileauth.txt"),
        expected_value: format!("token-{domain}"),
        record_type: None,
        self_check: None,
    }
}

fn polled(stage: VendorStage) -> Outcome {
    Outcome::Polled(VendorView {
        stage,
        state: format!("{stage:?}"),
        challenges: vec![challenge("example.com"), challenge("www.example.com")],
        rejection_reason: (stage == VendorStage::Rejected)
            .then(|| "the company name does not match the licence".into()),
    })
}

fn check(passed: bool, now: DateTime<Utc>) -> SelfCheck {
    SelfCheck {
        passed,
        seen: if passed { "token".into() } else { String::new() },
        diagnosis: if passed { String::new() } else { "TXT record not found".into() },
        server: Some("127.0.0.1:53".into()),
        status_code: None,
        redirect_target: None,
        content_length: None,
        last_check_time: now,
    }
}

/// A status that has bought, submitted info for key `k1`, and (for OV) uploaded the letter.
fn submitted(spec: &CertificateOrderSpec, stage: Option<VendorStage>) -> CertificateOrderStatus {
    let domains = normalize_domains(&spec.domains).unwrap();
    CertificateOrderStatus {
        private_key_secret: Some("example-tls-key".into()),
        order: Some(VendorOrder {
            name: vendor_order_name("uid-1"),
            id: Some("local-uid-1".into()),
            info_digest: Some(info_digest(spec, &domains, "k1", 0)),
            documents_digest: spec.product.type_.needs_organization_review().then(|| "letter-1".into()),
            stage,
            ..VendorOrder::default()
        }),
        ..CertificateOrderStatus::default()
    }
}

#[test]
fn decide_table() {
    let now = t0();
    let dv = spec(CertificateType::DV);
    let ov = spec(CertificateType::OV);
    let letter = LetterObs::Present { digest: "letter-1".into() };
    let digest_k1 = info_digest(&dv, &normalize_domains(&dv.domains).unwrap(), "k1", 0);
    let timing = Timing::default();
    // Issued under the submitted info and settled: `certificate` recorded, no pending key.
    let settled = |certificate: CertificateInfo| CertificateOrderStatus {
        certificate: Some(certificate),
        private_key_secret: None,
        ..submitted(&dv, Some(VendorStage::Issuable))
    };
    // The TLS Secret holds key `key` next to a certificate that is not usable.
    let damaged = |key: &str| Observed {
        installed: InstalledObs::Damaged { reason: "no certificate".into(), key_fingerprint: key.into() },
        ..obs(now, LetterObs::NotNeeded)
    };
    // Renewing (a pending key) after one issuance, with the term bought until `term_end`.
    let renewing = |term_end, requested, sent: Option<&str>| {
        let mut s = submitted(&dv, Some(VendorStage::Issuable));
        s.certificate = Some(cert(now - chrono::Duration::days(61), "k0"));
        let vendor = s.order.as_mut().unwrap();
        vendor.issuances = 1;
        vendor.term_end_time = Some(term_end);
        vendor.term_renewal_requested_time = requested;
        if let Some(sent) = sent {
            vendor.info_digest = Some(sent.into());
        }
        s
    };

    struct Case {
        name: &'static str,
        spec: CertificateOrderSpec,
        status: CertificateOrderStatus,
        obs: Observed,
        want: Decision,
    }
    let base = |letter: LetterObs| Observed { pending_key: Some(key()), ..obs(now, letter) };
    let with_challenges = |mut s: CertificateOrderStatus, passed: Option<bool>| {
        s.challenges = ["example.com", "www.example.com"]
            .iter()
            .map(|d| {
                let c = challenge(d);
                Challenge {
                    domain: c.domain,
                    method: c.method,
                    target: c.target,
                    expected_value: c.expected_value,
                    record_type: c.record_type,
                    self_check: passed.map(|p| check(p, now)),
                }
            })
            .collect();
        // Published already (by a ClusterDNSZone, or nothing to publish): see the case below.
        let digest = publish_digest(&dv, &s.challenges, "");
        s.published = Some(PublishedValidation { digest, ingress_name: None, dns_records: vec![] });
        s
    };
    let http_dv = http_spec(CertificateType::DV);
    let http_files = vec![http_challenge("example.com"), http_challenge("www.example.com")];
    let http_digest = publish_digest(&http_dv, &http_files, "");
    let http_status_at = |published: Option<&str>, passed: Option<bool>, stage: VendorStage| {
        let mut s = submitted(&http_dv, Some(stage));
        s.challenges = http_files
            .iter()
            .cloned()
            .map(|mut c| {
                c.self_check = passed.map(|p| check(p, now));
                c
            })
            .collect();
        s.published =
            published.map(|d| PublishedValidation { digest: d.into(), ingress_name: None, dns_records: vec![] });
        s
    };
    let http_status = |published: Option<&str>, passed: Option<bool>| {
        http_status_at(published, passed, VendorStage::DomainValidation)
    };
    let cases = vec![
        Case {
            name: "new order generates its key",
            spec: dv.clone(),
            status: Default::default(),
            obs: obs(now, LetterObs::NotNeeded),
            want: Decision::Act(Step::GenerateKey),
        },
        Case {
            name: "with a key, the purchase is recorded before it is made",
            spec: dv.clone(),
            status: Default::default(),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::RecordPurchaseIntent),
        },
        Case {
            name: "recorded intent buys (looking the name up first)",
            spec: dv.clone(),
            status: CertificateOrderStatus {
                order: Some(VendorOrder { name: vendor_order_name("uid-1"), ..Default::default() }),
                ..Default::default()
            },
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::Purchase),
        },
        Case {
            name: "bought order gets its info",
            spec: dv.clone(),
            status: CertificateOrderStatus {
                order: Some(VendorOrder { name: "n".into(), id: Some("1".into()), ..Default::default() }),
                ..Default::default()
            },
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::SubmitInfo { digest: digest_k1.clone() }),
        },
        Case {
            name: "DV after info polls for challenges",
            spec: dv.clone(),
            status: submitted(&dv, None),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::Poll),
        },
        Case {
            name: "OV uploads the letter after the info",
            spec: ov.clone(),
            status: {
                let mut s = submitted(&ov, None);
                s.order.as_mut().unwrap().documents_digest = None;
                s
            },
            obs: base(letter.clone()),
            want: Decision::Act(Step::UploadLetter { digest: "letter-1".into() }),
        },
        Case {
            name: "OV without its letter offers the vendor's template first",
            spec: ov.clone(),
            status: {
                let mut s = submitted(&ov, None);
                s.order.as_mut().unwrap().documents_digest = None;
                s
            },
            obs: base(LetterObs::Missing("Secret letter not found".into())),
            want: Decision::Act(Step::OfferLetterTemplate),
        },
        Case {
            name: "OV without its letter, template offered, waits for it",
            spec: ov.clone(),
            status: {
                let mut s = submitted(&ov, None);
                let v = s.order.as_mut().unwrap();
                v.documents_digest = None;
                v.letter_template = Some("example-letter-template".into());
                s
            },
            obs: base(LetterObs::Missing("Secret letter not found".into())),
            want: Decision::Wait(Some(timing.letter_poll)),
        },
        Case {
            name: "OV without its letter from a vendor with no template waits for it",
            spec: ov.clone(),
            status: {
                let mut s = submitted(&ov, None);
                let v = s.order.as_mut().unwrap();
                v.documents_digest = None;
                v.letter_template = Some(String::new());
                s
            },
            obs: base(LetterObs::Invalid("not a PDF".into())),
            want: Decision::Wait(Some(timing.letter_poll)),
        },
        Case {
            name: "a letter already with the vendor needs no template",
            spec: ov.clone(),
            status: submitted(&ov, Some(VendorStage::OrganizationReview)),
            obs: Observed { last_poll: Some(now), ..base(LetterObs::Missing("Secret letter not found".into())) },
            want: Decision::Wait(Some(timing.review_poll)),
        },
        Case {
            name: "a restamped letter is uploaded again",
            spec: ov.clone(),
            status: submitted(&ov, Some(VendorStage::OrganizationReview)),
            obs: base(LetterObs::Present { digest: "letter-2".into() }),
            want: Decision::Act(Step::UploadLetter { digest: "letter-2".into() }),
        },
        Case {
            name: "challenges not yet checked are self-checked (in parallel with the review)",
            spec: ov.clone(),
            status: with_challenges(submitted(&ov, Some(VendorStage::OrganizationReview)), None),
            obs: Observed { last_poll: Some(now - chrono::Duration::seconds(3)), ..base(letter.clone()) },
            want: Decision::Act(Step::SelfCheck),
        },
        Case {
            name: "challenges that just arrived wait before their first check",
            spec: dv.clone(),
            status: with_challenges(submitted(&dv, Some(VendorStage::DomainValidation)), None),
            obs: Observed { last_poll: Some(now), ..base(LetterObs::NotNeeded) },
            want: Decision::Wait(Some(timing.self_check_initial)),
        },
        Case {
            name: "during review with checks passing, the vendor is polled at the review pace",
            spec: ov.clone(),
            status: with_challenges(submitted(&ov, Some(VendorStage::OrganizationReview)), Some(true)),
            obs: Observed { last_poll: Some(now - chrono::Duration::seconds(100)), ..base(letter.clone()) },
            want: Decision::Wait(Some(timing.review_poll - Duration::from_secs(100))),
        },
        Case {
            name: "a failing check is retried with backoff",
            spec: dv.clone(),
            status: with_challenges(submitted(&dv, Some(VendorStage::DomainValidation)), Some(false)),
            obs: Observed {
                last_poll: Some(now),
                last_self_check: Some(now - chrono::Duration::seconds(3)),
                self_check_failures: 2,
                ..base(LetterObs::NotNeeded)
            },
            want: Decision::Wait(Some(Duration::from_secs(5))),
        },
        Case {
            name: "passing checks poll the vendor",
            spec: dv.clone(),
            status: with_challenges(submitted(&dv, Some(VendorStage::DomainValidation)), Some(true)),
            obs: Observed { last_poll: Some(now - chrono::Duration::seconds(61)), ..base(LetterObs::NotNeeded) },
            want: Decision::Act(Step::Poll),
        },
        Case {
            name: "a check that passed since the last poll asks the vendor at once",
            spec: dv.clone(),
            status: with_challenges(submitted(&dv, Some(VendorStage::DomainValidation)), Some(true)),
            obs: Observed {
                last_poll: Some(now - chrono::Duration::seconds(2)),
                last_self_check: Some(now),
                ..base(LetterObs::NotNeeded)
            },
            want: Decision::Act(Step::Poll),
        },
        Case {
            name: "after that poll, passing checks wait for the next one",
            spec: dv.clone(),
            status: with_challenges(submitted(&dv, Some(VendorStage::DomainValidation)), Some(true)),
            obs: Observed {
                last_poll: Some(now),
                last_self_check: Some(now - chrono::Duration::seconds(1)),
                ..base(LetterObs::NotNeeded)
            },
            want: Decision::Wait(Some(timing.validation_poll)),
        },
        Case {
            name: "during review, a passing check does not hurry the poll",
            spec: ov.clone(),
            status: with_challenges(submitted(&ov, Some(VendorStage::OrganizationReview)), Some(true)),
            obs: Observed {
                last_poll: Some(now - chrono::Duration::seconds(100)),
                last_self_check: Some(now),
                ..base(letter.clone())
            },
            want: Decision::Wait(Some(timing.review_poll - Duration::from_secs(100))),
        },
        Case {
            name: "issuable installs",
            spec: dv.clone(),
            status: submitted(&dv, Some(VendorStage::Issuable)),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::Install),
        },
        Case {
            name: "rejected waits for a new spec",
            spec: ov.clone(),
            status: {
                let mut s = submitted(&ov, Some(VendorStage::Rejected));
                s.order.as_mut().unwrap().rejected_generation = Some(1);
                s
            },
            obs: base(letter.clone()),
            want: Decision::Wait(None),
        },
        Case {
            name: "installed and current waits for renewal, after discarding the pending key",
            spec: dv.clone(),
            status: {
                let mut s = submitted(&dv, Some(VendorStage::Issuable));
                s.certificate = Some(cert(now, "k1"));
                s
            },
            obs: Observed {
                installed: InstalledObs::Certificate { info: cert(now, "k1"), covers: true },
                ..base(LetterObs::NotNeeded)
            },
            want: Decision::Act(Step::DiscardPendingKey),
        },
        Case {
            name: "settled: wait until the renewal time",
            spec: dv.clone(),
            status: {
                let mut s = submitted(&dv, Some(VendorStage::Issuable));
                s.certificate = Some(cert(now, "k1"));
                s.private_key_secret = None;
                s
            },
            obs: Observed {
                installed: InstalledObs::Certificate { info: cert(now, "k1"), covers: true },
                ..obs(now, LetterObs::NotNeeded)
            },
            want: Decision::Wait(Some(Duration::from_secs(60 * 86400))),
        },
        Case {
            name: "a renewal that would outlive the bought term: the term renewal is recorded first",
            spec: dv.clone(),
            status: renewing(now + chrono::Duration::days(30), None, None),
            obs: Observed { pending_key: Some(key()), ..obs(now, LetterObs::NotNeeded) },
            want: Decision::Act(Step::RecordTermRenewalIntent),
        },
        Case {
            name: "a term renewal recorded: renew the term",
            spec: dv.clone(),
            status: renewing(now - chrono::Duration::days(1), Some(now - chrono::Duration::minutes(5)), None),
            obs: Observed { pending_key: Some(key()), ..obs(now, LetterObs::NotNeeded) },
            want: Decision::Act(Step::RenewTerm),
        },
        Case {
            name: "a renewal well within the bought term: the info is sent at once",
            spec: dv.clone(),
            status: renewing(now + chrono::Duration::days(700), None, Some("sent for k0")),
            obs: Observed { pending_key: Some(key()), ..obs(now, LetterObs::NotNeeded) },
            want: Decision::Act(Step::SubmitInfo {
                digest: info_digest(&dv, &normalize_domains(&dv.domains).unwrap(), "k1", 1),
            }),
        },
        Case {
            name: "renewed by a version that did not count rounds: settled, no reissue after the upgrade",
            spec: dv.clone(),
            status: {
                let mut s = settled(cert(now, "k1"));
                s.order.as_mut().unwrap().issuances = 3;
                s
            },
            obs: Observed {
                installed: InstalledObs::Certificate { info: cert(now, "k1"), covers: true },
                ..obs(now, LetterObs::NotNeeded)
            },
            want: Decision::Wait(Some(Duration::from_secs(60 * 86400))),
        },
        Case {
            name: "a garbled tls.crt next to the key it was issued for is downloaded again",
            spec: dv.clone(),
            status: settled(cert(now, "k1")),
            obs: damaged("k1"),
            want: Decision::Act(Step::Reinstall),
        },
        Case {
            name: "a garbled tls.crt next to a key certorder did not issue for: a new key",
            spec: dv.clone(),
            status: settled(cert(now, "k1")),
            obs: damaged("k9"),
            want: Decision::Act(Step::GenerateKey),
        },
        Case {
            name: "a garbled tls.crt whose certificate is due for renewal anyway: a new key",
            spec: dv.clone(),
            status: settled(cert(now - chrono::Duration::days(61), "k1")),
            obs: damaged("k1"),
            want: Decision::Act(Step::GenerateKey),
        },
        Case {
            name: "a garbled tls.crt the vendor would not give again three times: a new key",
            spec: dv.clone(),
            status: CertificateOrderStatus {
                failures: 3,
                last_failure: Some("Reinstall: the downloaded certificate was refused: key mismatch".into()),
                ..settled(cert(now, "k1"))
            },
            obs: damaged("k1"),
            want: Decision::Act(Step::GenerateKey),
        },
        Case {
            name: "due for renewal: a new key",
            spec: dv.clone(),
            status: {
                let mut s = submitted(&dv, Some(VendorStage::Issuable));
                s.certificate = Some(cert(now - chrono::Duration::days(61), "k1"));
                s.private_key_secret = None;
                s
            },
            obs: Observed {
                installed: InstalledObs::Certificate {
                    info: cert(now - chrono::Duration::days(61), "k1"),
                    covers: true,
                },
                ..obs(now, LetterObs::NotNeeded)
            },
            want: Decision::Act(Step::GenerateKey),
        },
        Case {
            name: "a certificate missing a new domain is reissued",
            spec: {
                let mut s = dv.clone();
                s.domains.push("api.example.com".into());
                s
            },
            status: {
                let mut s = submitted(&dv, Some(VendorStage::Issuable));
                s.certificate = Some(cert(now, "k1"));
                s.private_key_secret = None;
                s
            },
            obs: Observed {
                installed: InstalledObs::Certificate { info: cert(now, "k1"), covers: false },
                ..obs(now, LetterObs::NotNeeded)
            },
            want: Decision::Act(Step::GenerateKey),
        },
        Case {
            name: "backoff after a transient failure",
            spec: dv.clone(),
            status: CertificateOrderStatus {
                failures: 2,
                next_attempt_time: Some(now + chrono::Duration::seconds(7)),
                ..Default::default()
            },
            obs: base(LetterObs::NotNeeded),
            want: Decision::Wait(Some(Duration::from_secs(7))),
        },
        Case {
            name: "a permanent failure waits for a new generation",
            spec: dv.clone(),
            status: CertificateOrderStatus { failed_generation: Some(1), ..Default::default() },
            obs: base(LetterObs::NotNeeded),
            want: Decision::Wait(None),
        },
        Case {
            name: "an unusable provider is looked at again later",
            spec: dv.clone(),
            status: Default::default(),
            obs: Observed {
                provider: ProviderObs::Unusable("ClusterCertificateProvider local not found".into()),
                ..base(LetterObs::NotNeeded)
            },
            want: Decision::Wait(Some(timing.letter_poll)),
        },
        Case {
            name: "HTTP: files not yet published are published before any self-check",
            spec: http_spec(CertificateType::DV),
            status: http_status(None, None),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::PublishChallenges { digest: http_digest.clone() }),
        },
        Case {
            name: "HTTP: published files are self-checked",
            spec: http_spec(CertificateType::DV),
            status: http_status(Some(&http_digest), None),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::SelfCheck),
        },
        Case {
            name: "HTTP: a failing self-check of published files waits for the re-check, publishing nothing",
            spec: http_spec(CertificateType::DV),
            status: http_status(Some(&http_digest), Some(false)),
            obs: Observed { last_self_check: Some(now), last_poll: Some(now), ..base(LetterObs::NotNeeded) },
            want: Decision::Wait(Some(timing.self_check_initial)),
        },
        Case {
            name: "HTTP: a solver Pod that disappeared is published again",
            spec: http_spec(CertificateType::DV),
            status: http_status(Some(&http_digest), Some(false)),
            obs: Observed {
                last_self_check: Some(now),
                last_poll: Some(now),
                solver_missing: true,
                ..base(LetterObs::NotNeeded)
            },
            want: Decision::Act(Step::PublishChallenges { digest: http_digest.clone() }),
        },
        Case {
            name: "HTTP: new file contents (or another route) are published again",
            spec: http_spec(CertificateType::DV),
            status: http_status(Some("old-digest"), Some(true)),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::PublishChallenges { digest: http_digest.clone() }),
        },
        Case {
            name: "HTTP: OV files are published while the CA reviews the organization",
            spec: http_spec(CertificateType::OV),
            status: {
                let ov_http = http_spec(CertificateType::OV);
                let mut s = submitted(&ov_http, Some(VendorStage::OrganizationReview));
                s.challenges = vec![http_challenge("example.com"), http_challenge("www.example.com")];
                s
            },
            obs: base(letter.clone()),
            want: Decision::Act(Step::PublishChallenges { digest: http_digest.clone() }),
        },
        Case {
            name: "HTTP: the vendor can issue: install first, the files stay until then",
            spec: http_spec(CertificateType::DV),
            status: http_status_at(Some(&http_digest), Some(true), VendorStage::Issuable),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::Install),
        },
        Case {
            name: "HTTP: issued with files still published removes them before the pending key",
            spec: http_spec(CertificateType::DV),
            status: CertificateOrderStatus {
                certificate: Some(cert(now, "k1")),
                published: Some(PublishedValidation {
                    digest: http_digest.clone(),
                    ingress_name: None,
                    dns_records: vec![],
                }),
                ..submitted(&http_spec(CertificateType::DV), Some(VendorStage::Issuable))
            },
            obs: Observed {
                installed: InstalledObs::Certificate { info: cert(now, "k1"), covers: true },
                ..base(LetterObs::NotNeeded)
            },
            want: Decision::Act(Step::Unpublish),
        },
        Case {
            name: "DNS orders publish nothing",
            spec: dv.clone(),
            status: with_challenges(submitted(&dv, Some(VendorStage::DomainValidation)), None),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::SelfCheck),
        },
        Case {
            name: "DNS records are published (by a ClusterDNSZone when one covers them) before the self-check",
            spec: dv.clone(),
            status: {
                let mut s = with_challenges(submitted(&dv, Some(VendorStage::DomainValidation)), None);
                s.published = None;
                s
            },
            obs: base(LetterObs::NotNeeded),
            want: Decision::Act(Step::PublishChallenges {
                digest: publish_digest(&dv, &with_challenges(Default::default(), None).challenges, ""),
            }),
        },
        Case {
            name: "a wildcard with HTTP validation never starts",
            spec: {
                let mut s = dv.clone();
                s.domains = vec!["*.example.com".into()];
                s.domain_validation.method = ValidationMethod::HTTP;
                s
            },
            status: Default::default(),
            obs: base(LetterObs::NotNeeded),
            want: Decision::Wait(None),
        },
    ];
    for case in cases {
        let got = decide(&view(&case.spec, 1), &case.status, &case.obs, &timing);
        assert_eq!(got, case.want, "{}", case.name);
    }
}

/// A scripted vendor and controller, to walk an order through its whole life with the real
/// `decide`/`absorb`/`summarize` and record the steps and phases it goes through.
struct Walk {
    spec: CertificateOrderSpec,
    generation: i64,
    status: CertificateOrderStatus,
    obs: Observed,
    vendor_stage: VendorStage,
    dns_ready: bool,
    purchases: u32,
    published: u32,
    steps: Vec<&'static str>,
    phases: Vec<Phase>,
}

impl Walk {
    fn new(spec: CertificateOrderSpec, letter: LetterObs) -> Walk {
        Walk {
            spec,
            generation: 1,
            status: CertificateOrderStatus::default(),
            obs: obs(t0(), letter),
            vendor_stage: VendorStage::AwaitingInfo,
            dns_ready: false,
            purchases: 0,
            published: 0,
            steps: Vec::new(),
            phases: Vec::new(),
        }
    }

    /// One reconcile: steps until the lifecycle waits; the status is summarised once at the end.
    fn reconcile(&mut self) -> Decision {
        let timing = Timing::default();
        let spec = self.spec.clone();
        let order = OrderView { spec: &spec, generation: self.generation, uid: "uid-1", renew_requested: None };
        for _ in 0..20 {
            let step = match decide(&order, &self.status, &self.obs, &timing) {
                Decision::Act(step) => step,
                wait => {
                    self.status = summarize(&order, std::mem::take(&mut self.status), &self.obs);
                    if self.phases.last() != Some(&self.status.phase) {
                        self.phases.push(self.status.phase);
                    }
                    return wait;
                }
            };
            self.steps.push(step.name());
            let outcome = self.act(&step);
            self.status = absorb(&order, std::mem::take(&mut self.status), outcome, &timing, self.obs.now);
        }
        panic!("no wait after 20 steps: {:?}", self.steps);
    }

    fn act(&mut self, step: &Step) -> Outcome {
        let now = self.obs.now;
        let review = self.spec.product.type_.needs_organization_review();
        match step {
            Step::GenerateKey => {
                self.obs.pending_key =
                    Some(KeyObs { secret: "k".into(), fingerprint: format!("key-{}", self.steps.len()) });
                Outcome::KeyGenerated { secret: "k".into() }
            }
            Step::RecordPurchaseIntent => Outcome::PurchaseIntentRecorded,
            Step::Purchase => {
                self.purchases += 1;
                Outcome::Purchased { id: "1".into(), buy_again: None, domains_count: 1 }
            }
            Step::SubmitInfo { digest } => {
                self.vendor_stage = if review { VendorStage::AwaitingDocuments } else { VendorStage::DomainValidation };
                Outcome::InfoSubmitted { digest: digest.clone(), submitted: None }
            }
            Step::OfferLetterTemplate => {
                Outcome::LetterTemplateOffered { config_map: Some("example-letter-template".into()) }
            }
            Step::UploadLetter { digest } => {
                self.vendor_stage = VendorStage::OrganizationReview;
                Outcome::LetterUploaded { digest: digest.clone() }
            }
            Step::Poll => {
                self.obs.last_poll = Some(now);
                if self.vendor_stage == VendorStage::DomainValidation && self.dns_ready {
                    self.vendor_stage = VendorStage::Issuable;
                }
                match polled(self.vendor_stage) {
                    Outcome::Polled(mut view) if self.spec.domain_validation.method == ValidationMethod::HTTP => {
                        for c in &mut view.challenges {
                            let h = http_challenge(&c.domain);
                            c.method = h.method;
                            c.target = h.target;
                        }
                        Outcome::Polled(view)
                    }
                    other => other,
                }
            }
            Step::PublishChallenges { digest } => {
                self.published += 1;
                Outcome::Published(PublishedValidation {
                    digest: digest.clone(),
                    ingress_name: None,
                    dns_records: vec![],
                })
            }
            Step::Unpublish => Outcome::Unpublished,
            Step::SelfCheck => {
                self.obs.last_self_check = Some(now);
                let results =
                    self.status.challenges.iter().map(|c| (c.domain.clone(), check(self.dns_ready, now))).collect();
                Outcome::SelfChecked(results)
            }
            Step::Install => {
                let key = self.obs.pending_key.clone().unwrap();
                let info = cert(now, &key.fingerprint);
                self.obs.installed = InstalledObs::Certificate { info: info.clone(), covers: true };
                Outcome::Installed(info)
            }
            Step::RecordTermRenewalIntent => Outcome::TermRenewalIntentRecorded,
            Step::RenewTerm => Outcome::TermRenewed,
            Step::Reinstall => {
                let InstalledObs::Damaged { key_fingerprint, .. } = &self.obs.installed else {
                    panic!("reinstall without a damaged Secret: {:?}", self.obs.installed)
                };
                let info = cert(now, key_fingerprint);
                self.obs.installed = InstalledObs::Certificate { info: info.clone(), covers: true };
                Outcome::Reinstalled(info)
            }
            Step::AdoptInstalled => match &self.obs.installed {
                InstalledObs::Certificate { info, .. } => Outcome::Installed(info.clone()),
                other => panic!("adopt without a certificate: {other:?}"),
            },
            Step::DiscardPendingKey => {
                self.obs.pending_key = None;
                Outcome::PendingKeyDiscarded
            }
        }
    }

    fn later(&mut self, seconds: i64) {
        self.obs.now += chrono::Duration::seconds(seconds);
    }
}

#[test]
fn a_damaged_tls_crt_is_downloaded_again_with_the_same_key_and_no_reissue() {
    let mut walk = Walk::new(spec(CertificateType::DV), LetterObs::NotNeeded);
    walk.dns_ready = true;
    for _ in 0..4 {
        walk.later(61);
        walk.reconcile();
    }
    assert_eq!(walk.status.phase, Phase::Issued);
    let issued = walk.status.certificate.clone().unwrap();
    let sent = walk.status.order.as_ref().unwrap().info_digest.clone();
    walk.steps.clear();

    walk.obs.installed =
        InstalledObs::Damaged { reason: "tls.crt is not PEM".into(), key_fingerprint: issued.key_fingerprint.clone() };
    walk.later(60);
    walk.reconcile();
    assert_eq!(walk.steps, ["Reinstall"], "downloaded again: no new key, no reissue");
    let vendor = walk.status.order.as_ref().unwrap();
    assert_eq!(vendor.issuances, 1, "a repair is not an issuance");
    assert_eq!(vendor.info_digest, sent);
    assert_eq!(walk.status.phase, Phase::Issued);
    assert_eq!(walk.status.certificate.as_ref().unwrap().key_fingerprint, issued.key_fingerprint);
    assert_eq!(walk.purchases, 1);
}

#[test]
fn dv_skips_documents_and_review() {
    let mut walk = Walk::new(spec(CertificateType::DV), LetterObs::NotNeeded);
    let wait = walk.reconcile();
    assert_eq!(walk.status.phase, Phase::DomainValidation);
    assert!(matches!(wait, Decision::Wait(Some(_))), "{wait:?}");
    assert!(
        walk.status.message.as_deref().unwrap().contains("create TXT _dnsauth.example.com"),
        "{:?}",
        walk.status.message
    );
    walk.dns_ready = true;
    walk.later(3);
    walk.reconcile();
    walk.later(61);
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::Issued);
    assert_eq!(walk.purchases, 1);
    assert_eq!(
        walk.steps,
        [
            "GenerateKey",
            "RecordPurchaseIntent",
            "Purchase",
            "SubmitInfo",
            "Poll",
            "PublishChallenges",
            "SelfCheck",
            "Poll",
            "Install",
            "Unpublish",
            "DiscardPendingKey"
        ]
    );
    assert_eq!(walk.phases, [Phase::DomainValidation, Phase::Issued]);
    assert!(!walk.steps.contains(&"UploadLetter"));
    let ready = walk.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Issued"));
    assert!(walk.status.renewal_time.is_some());
    // Settled: another reconcile changes nothing.
    let before = walk.status.clone();
    walk.later(10);
    assert!(matches!(walk.reconcile(), Decision::Wait(Some(_))));
    assert_eq!(walk.status, before);
}

#[test]
fn http_validation_publishes_once_checks_and_unpublishes_after_issuance() {
    let mut walk = Walk::new(http_spec(CertificateType::DV), LetterObs::NotNeeded);
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::DomainValidation);
    assert!(walk.status.published.is_some());
    assert!(
        walk.status.message.as_deref().unwrap().contains("/.well-known/pki-validation/fileauth.txt"),
        "{:?}",
        walk.status.message
    );
    // The self-check fails a while: nothing is published again.
    walk.later(3);
    walk.reconcile();
    assert_eq!(walk.published, 1);
    walk.dns_ready = true;
    walk.later(5);
    walk.reconcile();
    walk.later(61);
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::Issued);
    assert_eq!(
        walk.steps,
        [
            "GenerateKey",
            "RecordPurchaseIntent",
            "Purchase",
            "SubmitInfo",
            "Poll",
            "PublishChallenges",
            "SelfCheck",
            "SelfCheck",
            "Poll",
            "Install",
            "Unpublish",
            "DiscardPendingKey"
        ]
    );
    assert_eq!(walk.published, 1);
    assert!(walk.status.published.is_none(), "nothing left published once issued");
    let before = walk.status.clone();
    walk.later(10);
    assert!(matches!(walk.reconcile(), Decision::Wait(Some(_))));
    assert_eq!(walk.status, before);
}

#[test]
fn http_validation_is_refused_only_for_wildcards() {
    let http = http_spec(CertificateType::DV);
    assert_eq!(spec_problem(&http), None);
    let mut wild = http.clone();
    wild.domains.push("*.example.com".into());
    assert!(
        spec_problem(&wild).unwrap().contains("*.example.com is a wildcard name, which can only be validated by DNS")
    );
    let mut both = http.clone();
    both.domain_validation.http = Some(HttpValidation {
        ingress_name: Some("web".into()),
        gateway_ref: Some(GatewayRef { name: "gw".into(), ..Default::default() }),
        ..Default::default()
    });
    assert!(spec_problem(&both).unwrap().contains("at most one"));
    // The digest follows the files and the route, not the self-check results.
    let files = vec![http_challenge("example.com")];
    let mut checked = files.clone();
    checked[0].self_check = Some(check(true, t0()));
    assert_eq!(publish_digest(&http, &files, ""), publish_digest(&http, &checked, ""));
    let mut other_route = http.clone();
    other_route.domain_validation.http =
        Some(HttpValidation { ingress_name: Some("web".into()), ..Default::default() });
    assert_ne!(publish_digest(&http, &files, ""), publish_digest(&other_route, &files, ""));
    let mut other_value = files.clone();
    other_value[0].expected_value = "new".into();
    assert_ne!(publish_digest(&http, &files, ""), publish_digest(&http, &other_value, ""));
}

#[test]
fn dns_publish_digest_is_stable_for_txt_and_follows_the_record_type() {
    let dv = spec(CertificateType::DV);
    let c = challenge("example.com");
    let txt = vec![Challenge {
        domain: c.domain.clone(),
        method: c.method,
        target: c.target.clone(),
        expected_value: c.expected_value.clone(),
        record_type: None,
        self_check: None,
    }];
    // What a TXT challenge hashed to before record types existed: orders in flight keep it.
    let before = serde_json::json!({
        "records": [(&c.domain, &c.target, &c.expected_value)],
        "dns": dv.domain_validation.dns,
    });
    let hash = <sha2::Sha256 as sha2::Digest>::digest(before.to_string().as_bytes());
    assert_eq!(publish_digest(&dv, &txt, ""), hex::encode(&hash[..12]));
    let mut cname = txt.clone();
    cname[0].record_type = Some(DnsRecordType::CNAME);
    assert!(cname[0].is_cname() && !txt[0].is_cname());
    assert_ne!(publish_digest(&dv, &txt, ""), publish_digest(&dv, &cname, ""));
    // A zone added (or changed) publishes the records again.
    assert_ne!(publish_digest(&dv, &txt, ""), publish_digest(&dv, &txt, "example-net@1"));
    assert_ne!(publish_digest(&dv, &txt, "example-net@1"), publish_digest(&dv, &txt, "example-net@2"));
}

#[test]
fn the_info_digest_is_what_orders_in_flight_recorded() {
    // How the digest was made before it was serialized straight from the spec: a JSON value
    // built field by field. Orders in flight compare against digests made this way.
    let before = |spec: &CertificateOrderSpec, domains: &[String], key: &str, round: u32| {
        let mut sent = serde_json::json!({
            "domains": domains,
            "product": spec.product,
            "organization": spec.organization,
            "applicant": spec.applicant,
            "method": spec.domain_validation.method,
            "key": key,
        });
        if round > 0 {
            sent["round"] = round.into();
        }
        hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(sent.to_string().as_bytes())[..12])
    };
    for spec in [
        spec(CertificateType::DV),
        spec(CertificateType::OV),
        spec(CertificateType::EV),
        http_spec(CertificateType::DV),
    ] {
        let domains = normalize_domains(&spec.domains).unwrap();
        for (key, round) in [("k1", 0), ("k1", 1), ("k2", 7)] {
            assert_eq!(info_digest(&spec, &domains, key, round), before(&spec, &domains, key, round));
        }
    }
    let dv = spec(CertificateType::DV);
    let domains = normalize_domains(&dv.domains).unwrap();
    assert_ne!(info_digest(&dv, &domains, "k1", 0), info_digest(&dv, &domains, "k2", 0));
    assert_ne!(info_digest(&dv, &domains, "k1", 0), info_digest(&dv, &domains, "k1", 1));
}

#[test]
fn ov_goes_through_documents_review_rejection_and_resubmission() {
    let mut walk =
        Walk::new(spec(CertificateType::OV), LetterObs::Missing("Secret letter not found: create it".into()));
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::InfoSubmitted);
    assert!(walk.status.message.as_deref().unwrap().contains("Secret letter not found"));

    walk.obs.letter = LetterObs::Present { digest: "letter-1".into() };
    walk.later(30);
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::OrganizationReview);
    assert!(walk.steps.contains(&"UploadLetter"));

    // The CA rejects the organization.
    walk.vendor_stage = VendorStage::Rejected;
    walk.later(600);
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::Rejected);
    assert!(walk.status.message.as_deref().unwrap().contains("does not match the licence"));
    let stalled = walk.status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.status, "True");
    // Nothing happens until the spec changes.
    let steps = walk.steps.len();
    walk.later(3600);
    assert_eq!(walk.reconcile(), Decision::Wait(None));
    assert_eq!(walk.steps.len(), steps);

    // The user fixes the company name: a new generation resubmits info and the letter.
    walk.spec.organization.as_mut().unwrap().name = "ACME Limited".into();
    walk.generation = 2;
    walk.obs.letter = LetterObs::Present { digest: "letter-2".into() };
    walk.vendor_stage = VendorStage::AwaitingInfo;
    walk.reconcile();
    assert_eq!(&walk.steps[steps..steps + 3], ["SubmitInfo", "UploadLetter", "Poll"]);
    assert_eq!(walk.status.phase, Phase::OrganizationReview);

    // Approved; the CA now waits for the DNS records, then sees them.
    walk.vendor_stage = VendorStage::DomainValidation;
    walk.later(600);
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::DomainValidation);
    walk.dns_ready = true;
    walk.later(600);
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::Issued);
    assert_eq!(walk.purchases, 1);
    assert_eq!(
        walk.phases,
        [
            Phase::InfoSubmitted,
            Phase::OrganizationReview,
            Phase::Rejected,
            Phase::OrganizationReview,
            Phase::DomainValidation,
            Phase::Issued
        ]
    );
}

#[test]
fn transient_failures_back_off_exponentially_capped_and_reset_on_success() {
    let dv = spec(CertificateType::DV);
    let order = view(&dv, 1);
    let timing = Timing::default();
    let mut status = CertificateOrderStatus {
        order: Some(VendorOrder { name: "n".into(), ..Default::default() }),
        ..Default::default()
    };
    let mut waits = Vec::new();
    for _ in 0..10 {
        status = absorb(
            &order,
            status,
            Outcome::Failed { step: "Purchase", error: StepError::transient("vendor answered 153") },
            &timing,
            t0(),
        );
        waits.push((status.next_attempt_time.unwrap() - t0()).num_seconds());
    }
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
    assert_eq!(status.failures, 10);
    assert_eq!(status.last_failure.as_deref(), Some("Purchase: vendor answered 153"));
    status =
        absorb(&order, status, Outcome::Purchased { id: "1".into(), buy_again: None, domains_count: 1 }, &timing, t0());
    assert_eq!((status.failures, status.next_attempt_time), (0, None));

    status = absorb(
        &order,
        status,
        Outcome::Failed { step: "SubmitInfo", error: StepError::permanent("credentials refused") },
        &timing,
        t0(),
    );
    assert_eq!(status.failed_generation, Some(1));
    let summary = summarize(&order, status.clone(), &obs(t0(), LetterObs::NotNeeded));
    assert_eq!(summary.phase, Phase::Failed);
    assert!(summary.message.unwrap().contains("credentials refused"));
    // A new generation tries again.
    assert_eq!(
        decide(
            &view(&dv, 2),
            &status,
            &Observed { pending_key: Some(key()), ..obs(t0(), LetterObs::NotNeeded) },
            &timing
        ),
        Decision::Act(Step::SubmitInfo { digest: info_digest(&dv, &normalize_domains(&dv.domains).unwrap(), "k1", 0) })
    );
}

#[test]
fn a_crash_between_intent_and_purchase_looks_up_before_buying() {
    // The intent was written, then the operator died: the next decision is Purchase, whose
    // action looks the recorded name up first; the name is stable for the order.
    let dv = spec(CertificateType::DV);
    let order = view(&dv, 1);
    let status =
        absorb(&order, CertificateOrderStatus::default(), Outcome::PurchaseIntentRecorded, &Timing::default(), t0());
    assert!(Step::RecordPurchaseIntent.persist_before_next());
    assert_eq!(status.order.as_ref().unwrap().name, "certorder-uid-1");
    let again = absorb(
        &order,
        status.clone(),
        Outcome::Failed { step: "Purchase", error: StepError::transient("timeout") },
        &Timing::default(),
        t0(),
    );
    assert_eq!(again.order, status.order);
}

#[test]
fn self_check_times_are_kept_while_nothing_changes() {
    let dv = spec(CertificateType::DV);
    let order = view(&dv, 1);
    let timing = Timing::default();
    let status = absorb(&order, submitted(&dv, None), polled(VendorStage::DomainValidation), &timing, t0());
    let first =
        absorb(&order, status, Outcome::SelfChecked(vec![("example.com".into(), check(false, t0()))]), &timing, t0());
    let later = t0() + chrono::Duration::seconds(30);
    let second = absorb(
        &order,
        first.clone(),
        Outcome::SelfChecked(vec![("example.com".into(), check(false, later))]),
        &timing,
        later,
    );
    assert_eq!(first, second, "an unchanged result must not change the status");
    let passed =
        absorb(&order, second, Outcome::SelfChecked(vec![("example.com".into(), check(true, later))]), &timing, later);
    assert!(passed.challenges[0].self_check.as_ref().unwrap().passed);
    // A new poll keeps results of unchanged challenges.
    let repolled = absorb(&order, passed, polled(VendorStage::DomainValidation), &timing, later);
    assert!(repolled.challenges[0].self_check.as_ref().unwrap().passed);
}

#[test]
fn conditions_keep_their_transition_time() {
    let dv = spec(CertificateType::DV);
    let order = view(&dv, 1);
    let o = Observed { pending_key: Some(key()), ..obs(t0(), LetterObs::NotNeeded) };
    let first = summarize(&order, submitted(&dv, Some(VendorStage::DomainValidation)), &o);
    let later = Observed { now: t0() + chrono::Duration::hours(1), ..o.clone() };
    let second = summarize(&order, first.clone(), &later);
    assert_eq!(first.conditions, second.conditions);
    for c in &second.conditions {
        assert_eq!(c.observed_generation, Some(1));
    }
    let ready = second.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "WaitingForDomainValidation"));
}

#[test]
fn phases_from_facts() {
    let dv = spec(CertificateType::DV);
    let ov = spec(CertificateType::OV);
    let with_key = |letter| Observed { pending_key: Some(key()), ..obs(t0(), letter) };
    let single_label = {
        let mut s = dv.clone();
        s.domains = vec!["localhost".into()];
        s
    };
    let cases: Vec<(&str, &CertificateOrderSpec, CertificateOrderStatus, Observed, Phase)> = vec![
        ("nothing yet", &dv, Default::default(), obs(t0(), LetterObs::NotNeeded), Phase::Pending),
        (
            "bought",
            &dv,
            CertificateOrderStatus {
                order: Some(VendorOrder { name: "n".into(), id: Some("1".into()), ..Default::default() }),
                ..Default::default()
            },
            with_key(LetterObs::NotNeeded),
            Phase::Purchased,
        ),
        (
            "OV info sent, no letter",
            &ov,
            {
                let mut s = submitted(&ov, None);
                s.order.as_mut().unwrap().documents_digest = None;
                s
            },
            with_key(LetterObs::Missing("x".into())),
            Phase::InfoSubmitted,
        ),
        (
            "OV letter sent",
            &ov,
            submitted(&ov, None),
            with_key(LetterObs::Present { digest: "letter-1".into() }),
            Phase::DocumentsUploaded,
        ),
        (
            "OV in review",
            &ov,
            submitted(&ov, Some(VendorStage::OrganizationReview)),
            with_key(LetterObs::Present { digest: "letter-1".into() }),
            Phase::OrganizationReview,
        ),
        (
            "validating",
            &dv,
            submitted(&dv, Some(VendorStage::DomainValidation)),
            with_key(LetterObs::NotNeeded),
            Phase::DomainValidation,
        ),
        (
            "provider gone keeps the phase",
            &dv,
            CertificateOrderStatus {
                phase: Phase::DomainValidation,
                ..submitted(&dv, Some(VendorStage::DomainValidation))
            },
            Observed { provider: ProviderObs::Unusable("gone".into()), ..with_key(LetterObs::NotNeeded) },
            Phase::DomainValidation,
        ),
        ("invalid spec", &single_label, Default::default(), obs(t0(), LetterObs::NotNeeded), Phase::Failed),
    ];
    for (name, spec, status, observed, want) in cases {
        let got = summarize(&view(spec, 1), status, &observed);
        assert_eq!(got.phase, want, "{name}: {:?}", got.message);
    }
}

#[test]
fn durations_and_renewal() {
    assert_eq!(parse_go_duration("720h"), Some(Duration::from_secs(720 * 3600)));
    assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration("10d"), None);
    assert_eq!(parse_go_duration(""), None);
    let mut dv = spec(CertificateType::DV);
    let c = cert(t0(), "k");
    assert_eq!(renewal_time(&dv, &c), t0() + chrono::Duration::days(60));
    dv.renew_before = Some("240h".into());
    assert_eq!(renewal_time(&dv, &c), t0() + chrono::Duration::days(80));
    dv.renew_before = Some("9000h".into());
    assert_eq!(
        renewal_time(&dv, &c),
        t0() + chrono::Duration::days(60),
        "longer than the lifetime falls back to a third"
    );
}

#[test]
fn a_renew_request_is_answered_by_exactly_one_issuance() {
    let dv = spec(CertificateType::DV);
    let timing = Timing::default();
    let now = t0();
    let requested = now - chrono::Duration::seconds(10);
    let order = OrderView { spec: &dv, generation: 1, uid: "uid-1", renew_requested: Some(requested) };
    let old = cert(now - chrono::Duration::days(1), "k1");
    let mut status = submitted(&dv, Some(VendorStage::Issuable));
    status.certificate = Some(old.clone());
    status.private_key_secret = None;
    let installed_old =
        Observed { installed: InstalledObs::Certificate { info: old, covers: true }, ..obs(now, LetterObs::NotNeeded) };
    assert_eq!(decide(&order, &status, &installed_old, &timing), Decision::Act(Step::GenerateKey));

    // The new certificate's notBefore is backdated before the request, as CAs do.
    let new = cert(requested - chrono::Duration::minutes(1), "k2");
    let domains = normalize_domains(&dv.domains).unwrap();
    status.order.as_mut().unwrap().info_digest = Some(info_digest(&dv, &domains, "k2", 0));
    let status = absorb(&order, status, Outcome::Installed(new.clone()), &timing, now);
    assert_eq!(status.renew_request_answered, Some(requested));
    let installed_new =
        Observed { installed: InstalledObs::Certificate { info: new, covers: true }, ..obs(now, LetterObs::NotNeeded) };
    assert!(
        matches!(decide(&order, &status, &installed_new, &timing), Decision::Wait(Some(_))),
        "answered: no second renewal"
    );

    // A later request renews again.
    let again = OrderView { renew_requested: Some(now), ..order };
    assert_eq!(decide(&again, &status, &installed_new, &timing), Decision::Act(Step::GenerateKey));
}

#[test]
fn the_letter_template_is_named_in_the_message_while_the_letter_is_missing() {
    let ov = spec(CertificateType::OV);
    let order = view(&ov, 1);
    let mut status = submitted(&ov, None);
    let v = status.order.as_mut().unwrap();
    v.documents_digest = None;
    v.letter_template = Some("example-letter-template".into());
    let missing = Observed {
        pending_key: Some(key()),
        ..obs(t0(), LetterObs::Missing("waiting for the confirmation letter".into()))
    };
    let s = summarize(&order, status.clone(), &missing);
    assert_eq!(s.phase, Phase::InfoSubmitted);
    assert_eq!(
        s.message.as_deref(),
        Some(
            "waiting for the confirmation letter; the vendor's letter template is in ConfigMap example-letter-template"
        )
    );
    // A vendor without a template: the message is only what is missing.
    status.order.as_mut().unwrap().letter_template = Some(String::new());
    let s = summarize(&order, status, &missing);
    assert_eq!(s.message.as_deref(), Some("waiting for the confirmation letter"));
}

#[test]
fn a_ucloud_ov_order_says_what_a_person_must_do_and_where_the_mail_went() {
    let ov = spec(CertificateType::OV);
    let order = view(&ov, 1);
    let sent = crate::api::SubmittedInfo {
        company_name: "ACME Ltd".into(),
        applicant_name: "Li Lei".into(),
        applicant_email: "li.lei@example.com".into(),
    };
    let observed = Observed { pending_key: Some(key()), ..obs(t0(), LetterObs::NotNeeded) };
    for stage in [VendorStage::OrganizationReview, VendorStage::DomainValidation] {
        let mut status = submitted(&ov, Some(stage));
        status.order.as_mut().unwrap().submitted = Some(sent.clone());
        let message = summarize(&order, status.clone(), &observed).message.unwrap();
        assert!(
            message.contains("the CA emails a domain confirmation to the order's contact li.lei@example.com"),
            "{message}"
        );
        assert!(message.contains("a person must approve it"), "{message}");
        // A provider that keeps no applicant (the local CA) sends no such mail.
        status.order.as_mut().unwrap().submitted = None;
        let message = summarize(&order, status, &observed).message.unwrap();
        assert!(!message.contains("domain confirmation"), "{message}");
    }
    // Waiting for the letter: the other kind of attachment has no API action.
    let mut status = submitted(&ov, None);
    let v = status.order.as_mut().unwrap();
    v.documents_digest = None;
    v.submitted = Some(sent);
    v.letter_template = Some(String::new());
    let missing = Observed {
        pending_key: Some(key()),
        ..obs(t0(), LetterObs::Missing("waiting for the confirmation letter".into()))
    };
    let message = summarize(&order, status, &missing).message.unwrap();
    assert!(message.contains("application form, service agreement, business licence, ID card"), "{message}");
    // UCloud would need a value neither the order nor the provider gives: nothing happens,
    // the order is stalled with the fields to set.
    let pending = CertificateOrderStatus::default();
    let short =
        Observed { provider: ProviderObs::MissingInfo("set spec.applicant".into()), ..obs(t0(), LetterObs::NotNeeded) };
    assert!(matches!(decide(&view(&ov, 1), &pending, &short, &Timing::default()), Decision::Wait(Some(_))));
    let s = summarize(&view(&ov, 1), pending, &short);
    assert_eq!(s.phase, Phase::Pending);
    assert_eq!(s.message.as_deref(), Some("set spec.applicant"));
    assert!(s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "InfoRequired"));
    // The template could not be fetched: no ConfigMap is named.
    assert!(message.contains("UCloud's letter template could not be fetched"), "{message}");
    assert!(!message.contains("ConfigMap"), "{message}");
}

#[test]
fn a_dv_order_not_issued_a_day_after_purchase_suggests_ov() {
    let dv = spec(CertificateType::DV);
    let ov = spec(CertificateType::OV);
    let now = t0();
    let bought = |spec: &CertificateOrderSpec, hours: i64, issuances: u32| {
        let mut s = submitted(spec, Some(VendorStage::DomainValidation));
        let v = s.order.as_mut().unwrap();
        v.purchase_requested_time = Some(now - chrono::Duration::hours(hours));
        v.issuances = issuances;
        s
    };
    let delayed = |spec: &CertificateOrderSpec, status: CertificateOrderStatus| {
        let observed = Observed { pending_key: Some(key()), ..obs(now, LetterObs::NotNeeded) };
        summarize(&view(spec, 1), status, &observed)
            .conditions
            .into_iter()
            .find(|c| c.type_ == ConditionType::IssuanceDelayed.as_str())
    };
    let table: Vec<(&str, &CertificateOrderSpec, CertificateOrderStatus, bool)> = vec![
        ("DV bought 25h ago, not issued", &dv, bought(&dv, 25, 0), true),
        ("DV bought exactly 24h ago", &dv, bought(&dv, 24, 0), true),
        ("DV bought 23h ago", &dv, bought(&dv, 23, 0), false),
        ("OV bought 25h ago (reviews take days)", &ov, bought(&ov, 25, 0), false),
        ("DV renewing under a purchase that already issued", &dv, bought(&dv, 400, 1), false),
        ("DV not bought yet", &dv, CertificateOrderStatus::default(), false),
        (
            "DV failed for good",
            &dv,
            {
                let mut s = bought(&dv, 25, 0);
                s.failed_generation = Some(1);
                s
            },
            false,
        ),
    ];
    for (name, spec, status, want) in table {
        let c = delayed(spec, status);
        assert_eq!(c.is_some(), want, "{name}: {c:?}");
        if let Some(c) = c {
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "DVNotIssuedIn24h"), "{name}");
            assert!(c.message.contains("consider an OV product"), "{name}: {}", c.message);
        }
    }
}

#[test]
fn an_unconfirmed_purchase_is_shown_looked_for_with_backoff_and_ended_by_a_person_or_a_found_order() {
    let dv = spec(CertificateType::DV);
    let order = view(&dv, 1);
    let timing = Timing::default();
    let t1 = t0() + chrono::Duration::seconds(30);
    let mut status = CertificateOrderStatus {
        order: Some(VendorOrder { name: "n".into(), purchase_requested_time: Some(t0()), ..Default::default() }),
        ..Default::default()
    };
    for (i, now) in [t0(), t1].into_iter().enumerate() {
        let reason = format!("look {i}");
        status = absorb(&order, status, Outcome::PurchaseUnconfirmed { reason }, &timing, now);
    }
    let vendor = status.order.clone().unwrap();
    assert_eq!(vendor.purchase_unconfirmed_time, Some(t0()), "the doubt began at the first");
    assert_eq!(vendor.purchase_unconfirmed_reason.as_deref(), Some("look 1"));
    assert_eq!(status.next_attempt_time, Some(t1 + chrono::Duration::seconds(10)), "looks again with backoff");
    let summary = summarize(&order, status.clone(), &obs(t1, LetterObs::NotNeeded));
    assert_eq!(summary.phase, Phase::Pending);
    let condition = summary.conditions.iter().find(|c| c.type_ == ConditionType::PurchaseUnconfirmed.as_str()).unwrap();
    assert_eq!(condition.status, "True");
    assert!(condition.message.contains("certorder buy-again"), "{}", condition.message);
    assert!(summary.conditions.iter().all(|c| c.type_ != ConditionType::Stalled.as_str() || c.status == "False"));

    // Only a request made during the doubt, and not answered yet, counts.
    let at = |t: DateTime<Utc>| t.to_rfc3339();
    assert_eq!(buy_again_request(Some(&at(t1)), &vendor), Some(t1));
    assert_eq!(buy_again_request(Some(&at(t0() - chrono::Duration::seconds(1))), &vendor), None);
    assert_eq!(buy_again_request(Some(&"yesterday".to_string()), &vendor), None);
    let answered = VendorOrder { buy_again_answered: Some(t1), ..vendor.clone() };
    assert_eq!(buy_again_request(Some(&at(t1)), &answered), None);

    status = absorb(
        &order,
        status,
        Outcome::Purchased { id: "7".into(), buy_again: Some(t1), domains_count: 1 },
        &timing,
        t1,
    );
    let vendor = status.order.clone().unwrap();
    assert_eq!((vendor.purchase_unconfirmed_time, vendor.buy_again_answered), (None, Some(t1)));
    let summary = summarize(&order, status, &obs(t1, LetterObs::NotNeeded));
    assert!(summary.conditions.iter().all(|c| c.type_ != ConditionType::PurchaseUnconfirmed.as_str()));
}

#[test]
fn a_term_is_bought_with_the_purchase_and_renewed_from_its_end() {
    let dv = spec(CertificateType::DV);
    let order = view(&dv, 1);
    let timing = Timing::default();
    let now = t0();
    let status = CertificateOrderStatus::default();
    let status = absorb(&order, status, Outcome::PurchaseIntentRecorded, &timing, now);
    let status =
        absorb(&order, status, Outcome::Purchased { id: "7".into(), buy_again: None, domains_count: 1 }, &timing, now);
    let bought_until = add_years(now, dv.product.validity_years);
    assert_eq!(status.order.as_ref().unwrap().term_end_time, Some(bought_until));

    // Renewed ahead of its end: the new term runs on from the end of the old one.
    let early = now + chrono::Duration::days(300);
    let status = absorb(&order, status, Outcome::TermRenewalIntentRecorded, &timing, early);
    assert_eq!(status.order.as_ref().unwrap().term_renewal_requested_time, Some(early));
    let status = absorb(&order, status, Outcome::TermRenewed, &timing, early);
    let vendor = status.order.as_ref().unwrap();
    assert_eq!(vendor.term_end_time, Some(add_years(bought_until, dv.product.validity_years)));
    assert_eq!((vendor.term_renewal_requested_time, vendor.term_renewals), (None, 1));

    // Renewed after it ended: from now.
    let late = add_years(bought_until, 3);
    let status = absorb(&order, status, Outcome::TermRenewed, &timing, late);
    assert_eq!(status.order.as_ref().unwrap().term_end_time, Some(add_years(late, dv.product.validity_years)));
    assert_eq!(status.order.as_ref().unwrap().term_renewals, 2);
}

#[test]
fn an_ov_order_says_a_month_ahead_when_the_cas_review_of_the_organization_runs_out() {
    let mut walk = Walk::new(spec(CertificateType::OV), LetterObs::Present { digest: "letter-1".into() });
    walk.reconcile();
    walk.later(30);
    walk.reconcile();
    assert_eq!(walk.status.phase, Phase::OrganizationReview);
    assert_eq!(walk.status.order.as_ref().unwrap().organization_validated_time, None, "not reviewed yet");
    walk.vendor_stage = VendorStage::DomainValidation;
    walk.dns_ready = true;
    for _ in 0..4 {
        walk.later(600);
        walk.reconcile();
    }
    assert_eq!(walk.status.phase, Phase::Issued);
    let validated = walk.status.order.as_ref().unwrap().organization_validated_time.expect("the review's end is kept");
    let revalidation = |status: &CertificateOrderStatus| {
        status.conditions.iter().find(|c| c.type_ == "OrganizationRevalidationDue").cloned()
    };
    assert_eq!(revalidation(&walk.status), None);

    // Settled, it wakes up 368 days after the review (30 days before its reuse ends), not later.
    let order = view(&walk.spec, 1);
    let mut settled = walk.obs.clone();
    settled.now = validated + chrono::Duration::days(300);
    let mut status = walk.status.clone();
    status.certificate.as_mut().unwrap().not_after = validated + chrono::Duration::days(800);
    status.certificate.as_mut().unwrap().not_before = validated;
    if let InstalledObs::Certificate { info, .. } = &mut settled.installed {
        *info = status.certificate.clone().unwrap();
    }
    let timing = Timing::default();
    assert_eq!(decide(&order, &status, &settled, &timing), Decision::Wait(Some(Duration::from_secs(68 * 86400))));
    settled.now = validated + chrono::Duration::days(368);
    let status = summarize(&order, status, &settled);
    let due = revalidation(&status).expect("the condition appears a month ahead");
    assert_eq!((due.status.as_str(), due.reason.as_str()), ("True", "ReviewExpiring"));
    assert!(due.message.contains("398 days") && due.message.contains("confirmation letter"), "{}", due.message);
}

/// One position per row, and what both readers of it make of it: the step `decide` takes and the
/// phase and reason `summarize` reports. The two cannot disagree about where an order is.
#[test]
fn decide_and_summarize_read_one_position() {
    use position::{CertificateState as C, Halt as H, LetterNeed as L, VendorProgress as V};
    let now = t0();
    let dv = spec(CertificateType::DV);
    let ov = spec(CertificateType::OV);
    let with_key = |mut o: Observed| {
        o.pending_key = Some(key());
        o
    };
    let issued_status = |s: &CertificateOrderSpec| {
        let mut status = submitted(s, Some(VendorStage::Issuable));
        status.certificate = Some(cert(now - chrono::Duration::days(10), "k0"));
        status.private_key_secret = None;
        let vendor = status.order.as_mut().unwrap();
        vendor.issuances = 1;
        vendor.info_digest = Some(info_digest(s, &normalize_domains(&s.domains).unwrap(), "k0", 0));
        vendor.term_end_time = Some(now + chrono::Duration::days(400));
        status
    };
    type Case<'a> = (&'a str, &'a CertificateOrderSpec, CertificateOrderStatus, Observed);
    let cases: Vec<(Case, &str, Option<&str>, Phase, &str)> = vec![
        (
            ("new", &dv, CertificateOrderStatus::default(), obs(now, LetterObs::NotNeeded)),
            "needed/not bought",
            Some("GenerateKey"),
            Phase::Pending,
            "Purchasing",
        ),
        (
            ("keyed", &dv, CertificateOrderStatus::default(), with_key(obs(now, LetterObs::NotNeeded))),
            "needed/not bought",
            Some("RecordPurchaseIntent"),
            Phase::Pending,
            "Purchasing",
        ),
        (
            (
                "bought",
                &dv,
                {
                    let mut s = submitted(&dv, None);
                    s.order.as_mut().unwrap().info_digest = None;
                    s
                },
                with_key(obs(now, LetterObs::NotNeeded)),
            ),
            "needed/info",
            Some("SubmitInfo"),
            Phase::Purchased,
            "SubmittingInfo",
        ),
        (
            ("submitted", &dv, submitted(&dv, None), with_key(obs(now, LetterObs::NotNeeded))),
            "needed/at vendor",
            Some("Poll"),
            Phase::InfoSubmitted,
            "InfoSubmitted",
        ),
        (
            (
                "letter missing",
                &ov,
                {
                    let mut s = submitted(&ov, None);
                    s.order.as_mut().unwrap().documents_digest = None;
                    s
                },
                with_key(obs(now, LetterObs::Missing("Secret letter not found".into()))),
            ),
            "needed/letter missing",
            Some("OfferLetterTemplate"),
            Phase::InfoSubmitted,
            "WaitingForDocuments",
        ),
        (
            (
                "letter present",
                &ov,
                {
                    let mut s = submitted(&ov, None);
                    s.order.as_mut().unwrap().documents_digest = None;
                    s
                },
                with_key(obs(now, LetterObs::Present { digest: "letter-1".into() })),
            ),
            "needed/letter upload",
            Some("UploadLetter"),
            Phase::InfoSubmitted,
            "WaitingForDocuments",
        ),
        (
            (
                "rejected",
                &ov,
                {
                    let mut s = submitted(&ov, Some(VendorStage::Rejected));
                    s.order.as_mut().unwrap().rejected_generation = Some(1);
                    s
                },
                with_key(obs(now, LetterObs::Present { digest: "letter-1".into() })),
            ),
            "needed/rejected",
            None,
            Phase::Rejected,
            "Rejected",
        ),
        (
            ("issued", &dv, issued_status(&dv), {
                let mut o = obs(now, LetterObs::NotNeeded);
                o.installed =
                    InstalledObs::Certificate { info: cert(now - chrono::Duration::days(10), "k0"), covers: true };
                o
            }),
            "current",
            None,
            Phase::Issued,
            "Issued",
        ),
        (
            ("damaged", &dv, issued_status(&dv), {
                let mut o = obs(now, LetterObs::NotNeeded);
                o.installed =
                    InstalledObs::Damaged { reason: "tls.crt is not PEM".into(), key_fingerprint: "k0".into() };
                o
            }),
            "damaged",
            Some("Reinstall"),
            Phase::Pending,
            "Repairing",
        ),
        (
            (
                "term ends",
                &dv,
                {
                    let mut s = issued_status(&dv);
                    s.order.as_mut().unwrap().term_end_time = Some(now + chrono::Duration::days(30));
                    s
                },
                with_key(obs(now, LetterObs::NotNeeded)),
            ),
            "needed/term",
            Some("RecordTermRenewalIntent"),
            Phase::Purchased,
            "RenewingTerm",
        ),
        // A rejected order spends nothing, not even on its term, until a person changes the spec.
        (
            (
                "rejected, term ends",
                &ov,
                {
                    let mut s = issued_status(&ov);
                    let v = s.order.as_mut().unwrap();
                    v.rejected_generation = Some(1);
                    v.term_end_time = Some(now + chrono::Duration::days(30));
                    s
                },
                with_key(obs(now, LetterObs::NotNeeded)),
            ),
            "needed/rejected",
            None,
            Phase::Rejected,
            "Rejected",
        ),
        (
            ("provider", &dv, CertificateOrderStatus::default(), {
                let mut o = obs(now, LetterObs::NotNeeded);
                o.provider = ProviderObs::Unusable("Secret ucloud-keys not found".into());
                o
            }),
            "halted",
            None,
            Phase::Pending,
            "ProviderNotReady",
        ),
        (
            ("shared", &dv, submitted(&dv, None), {
                let mut o = with_key(obs(now, LetterObs::NotNeeded));
                o.shared_with = vec!["other/site".into()];
                o
            }),
            "halted",
            None,
            Phase::Pending,
            "VendorOrderShared",
        ),
        (
            (
                "failed",
                &dv,
                {
                    let mut s = submitted(&dv, None);
                    s.failed_generation = Some(1);
                    s
                },
                with_key(obs(now, LetterObs::NotNeeded)),
            ),
            "halted",
            None,
            Phase::Failed,
            "Failed",
        ),
        // A vendor order id with no name (a person's patch): kept, never bought over.
        (
            (
                "id without a name",
                &dv,
                {
                    let mut s = submitted(&dv, None);
                    let vendor = s.order.as_mut().unwrap();
                    vendor.name = String::new();
                    vendor.info_digest = None;
                    s
                },
                with_key(obs(now, LetterObs::NotNeeded)),
            ),
            "needed/info",
            Some("SubmitInfo"),
            Phase::Purchased,
            "SubmittingInfo",
        ),
    ];
    for ((name, spec, status, observed), where_, step, phase, reason) in cases {
        let order = view(spec, 1);
        let position = locate(&order, &status, &observed);
        let found = match (&position.halt, &position.certificate, &position.vendor) {
            (Some(H::InvalidSpec(_) | H::Failed | H::Provider(_) | H::Shared(_)), ..) => "halted",
            (None, C::Current(_), _) => "current",
            (None, C::Damaged { .. }, _) => "damaged",
            (None, C::Needed, V::NotBought { .. }) => "needed/not bought",
            (None, C::Needed, V::Rejected) => "needed/rejected",
            (None, C::Needed, V::TermRenewal { .. }) => "needed/term",
            (None, C::Needed, V::InfoToSend { .. }) => "needed/info",
            (None, C::Needed, V::Letter(L::Upload { .. })) => "needed/letter upload",
            (None, C::Needed, V::Letter(L::Missing { .. })) => "needed/letter missing",
            (None, C::Needed, V::AtVendor(_)) => "needed/at vendor",
        };
        assert_eq!(found, where_, "{name}: position");
        let decided = match decide(&order, &status, &observed, &Timing::default()) {
            Decision::Act(step) => Some(step.name()),
            Decision::Wait(_) => None,
        };
        assert_eq!(decided, step, "{name}: step");
        let summary = summarize(&order, status, &observed);
        assert_eq!(
            (summary.phase, summary.conditions[0].reason.as_str()),
            (phase, reason),
            "{name}: {:?}",
            summary.message
        );
        let ready = summary.condition(ConditionType::Ready).unwrap();
        assert_eq!(ready.status == ConditionStatus::True, where_ == "current", "{name}: Ready");
    }
}
