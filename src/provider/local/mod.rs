//! The built-in CA: a vendor in miniature, run by the operator. It has the vendor's steps — an
//! organization review (manual through `certorder approve`/`reject`, or automatic) and a real
//! check of every domain before it issues (the DNS TXT record, or for `method: HTTP` the file
//! `fileauth.txt` fetched over plain HTTP as the vendor's CA does) — and keeps no state of its own: what it knows
//! about an order is the order (its status, with the reviewer's `status.approval`), so restarts lose nothing.
//! The one thing it remembers, in memory only, is what it checked a moment ago ([`Recent`]): the
//! challenges it saw validated, so that issuing right after a poll does not ask again, and the
//! CSRs whose signature it verified when the info was submitted, so that issuing does not verify
//! the same bytes again. A restart only makes it check once more.

mod setup;

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

pub use setup::build;

use super::{OrderContext, ProviderError, Vendor, txt_record_name};
use crate::api::{
    ApprovalDecision, LocalProviderSpec, MAX_LIFETIME_HOURS, ReviewMode, SubmittedInfo, ValidationMethod, VendorStage,
};
use crate::lifecycle::{ChallengeSpec, Timing, VendorView, parse_go_duration};
use crate::pki::ca::LocalCa;
use crate::validation::dns::DnsChecker;
use crate::validation::http::{HttpChecker, WELL_KNOWN};

/// The file name the local CA asks for, as the vendor does.
pub const FILE_NAME: &str = "fileauth.txt";
/// The label of the TXT records the local CA asks for (`_dnsauth.<domain>`), as USSL's, so trying
/// certorder with it shows the records a vendor would ask for.
pub const DNS_LABEL: &str = "_dnsauth";
/// The `User-Agent` of the local CA's own fetches of validation files.
pub const CA_AGENT: &str = "certorder-local-ca";

/// Default lifetime of issued certificates: 90 days.
pub const DEFAULT_LIFETIME_HOURS: i64 = 90 * 24;

pub struct LocalProvider {
    ca: LocalCa,
    /// Secret for deriving challenge tokens: the CA key, so tokens cannot be guessed.
    token_secret: Vec<u8>,
    review: ReviewMode,
    lifetime: Duration,
    dns: Arc<DnsChecker>,
    http: Arc<HttpChecker>,
    /// The challenges (record or URL, and value) seen validated.
    validations: Recent<(String, String)>,
    /// The SHA-256 of the CSRs (DER) whose signature was verified.
    verified_csrs: Recent<[u8; 32]>,
}

/// How long what the CA checked counts as checked without checking again: long enough for the
/// download that follows a poll, far shorter than the reuse of validation data the CA/Browser
/// Forum allows (10 days from 2029), so a record taken down is soon noticed.
pub const VALIDATION_REUSE: Duration = Duration::minutes(10);

/// Past this many remembered checks, those older than [`VALIDATION_REUSE`] are dropped: orders
/// that were validated and then deleted, never downloaded.
const RECENT_PRUNE_AT: usize = 4096;

/// What the CA checked, and when: a real CA reuses a domain's validation (an ACME authorization)
/// rather than asking DNS again within seconds, and keeps the CSR it verified at submission.
/// Forgotten once the certificate is issued; kept in memory only.
struct Recent<K> {
    seen: Mutex<HashMap<K, DateTime<Utc>>>,
}

impl<K> Default for Recent<K> {
    fn default() -> Self {
        Self { seen: Mutex::default() }
    }
}

impl<K: Hash + Eq> Recent<K> {
    /// Whether every one of `keys` was checked within [`VALIDATION_REUSE`] before `now`.
    fn all_fresh(&self, keys: impl IntoIterator<Item = K>, now: DateTime<Utc>) -> bool {
        let seen = self.seen.lock().expect("recent checks lock");
        keys.into_iter().all(|k| seen.get(&k).is_some_and(|at| *at <= now && now - *at < VALIDATION_REUSE))
    }

    fn checked(&self, keys: impl IntoIterator<Item = K>, now: DateTime<Utc>) {
        let mut seen = self.seen.lock().expect("recent checks lock");
        if seen.len() >= RECENT_PRUNE_AT {
            seen.retain(|_, at| now - *at < VALIDATION_REUSE);
        }
        seen.extend(keys.into_iter().map(|k| (k, now)));
    }

    fn forget(&self, keys: impl IntoIterator<Item = K>) {
        let mut seen = self.seen.lock().expect("recent checks lock");
        keys.into_iter().for_each(|k| {
            seen.remove(&k);
        });
    }
}

/// The keys [`Recent`] knows challenges by.
fn challenge_keys(challenges: &[ChallengeSpec]) -> impl Iterator<Item = (String, String)> + '_ {
    challenges.iter().map(|c| (c.target.clone(), c.expected_value.clone()))
}

/// The state codes the local CA reports, in the style of a vendor's.
pub mod state {
    pub const AWAITING_REVIEW: &str = "AWAITING_REVIEW";
    pub const VALIDATING: &str = "DOMAIN_VALIDATING";
    pub const ISSUABLE: &str = "APPROVED";
    pub const REJECTED: &str = "REJECTED";
}

impl LocalProvider {
    /// Builds the provider from its spec and its CA. Refuses lifetimes the CA/Browser Forum
    /// does not allow.
    pub fn new(
        spec: &LocalProviderSpec,
        ca: LocalCa,
        dns: Arc<DnsChecker>,
        http: Arc<HttpChecker>,
    ) -> Result<LocalProvider, ProviderError> {
        let lifetime = match &spec.certificate_lifetime {
            None => Duration::hours(DEFAULT_LIFETIME_HOURS),
            Some(text) => {
                let d = parse_go_duration(text).ok_or_else(|| {
                    ProviderError::permanent(format!(
                        "spec.local.certificateLifetime {text:?} is not a duration such as 2160h"
                    ))
                })?;
                Duration::from_std(d)
                    .map_err(|_| ProviderError::permanent("spec.local.certificateLifetime is too long"))?
            }
        };
        if lifetime > Duration::hours(MAX_LIFETIME_HOURS) {
            return Err(ProviderError::permanent(format!(
                "spec.local.certificateLifetime is {}h, above the CA/Browser Forum maximum of {MAX_LIFETIME_HOURS}h (200 days): lower it",
                lifetime.num_hours()
            )));
        }
        if lifetime < Duration::hours(1) {
            return Err(ProviderError::permanent("spec.local.certificateLifetime must be at least 1h"));
        }
        let token_secret = ca.to_pem().1.into_bytes();
        let http = Arc::new(http.with_user_agent(CA_AGENT));
        Ok(LocalProvider {
            ca,
            token_secret,
            review: spec.review,
            lifetime,
            dns,
            http,
            validations: Recent::default(),
            verified_csrs: Recent::default(),
        })
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    fn review_decision(&self, ctx: &OrderContext<'_>) -> Review {
        if self.review == ReviewMode::Automatic {
            return Review::Approved;
        }
        // Only a decision for this spec counts, and only from the status subresource: the
        // order's author can write its annotations, not (by default RBAC) its status.
        match ctx.approval.filter(|a| a.generation == ctx.generation) {
            Some(a) if a.decision == ApprovalDecision::Approved => Review::Approved,
            Some(a) => Review::Rejected(
                a.reason.clone().unwrap_or_else(|| "rejected by the reviewer, who gave no reason".into()),
            ),
            _ => Review::Pending,
        }
    }

    /// One TXT record (or, for `method: HTTP`, one `fileauth.txt`) per domain, with a token bound
    /// to the CA, the order and what was submitted.
    fn challenges(&self, ctx: &OrderContext<'_>) -> Vec<ChallengeSpec> {
        let submitted = ctx.vendor.info_digest.as_deref().unwrap_or_default();
        ctx.domains
            .iter()
            .map(|domain| {
                let mut h = Sha256::new();
                for part in [self.token_secret.as_slice(), ctx.uid.as_bytes(), submitted.as_bytes(), domain.as_bytes()]
                {
                    h.update((part.len() as u64).to_be_bytes());
                    h.update(part);
                }
                let expected_value = format!("certorder-{}", hex::encode(&h.finalize()[..16]));
                match ctx.spec.domain_validation.method {
                    ValidationMethod::DNS => ChallengeSpec {
                        domain: domain.clone(),
                        method: ValidationMethod::DNS,
                        target: txt_record_name(DNS_LABEL, domain),
                        expected_value,
                        record_type: None,
                    },
                    ValidationMethod::HTTP => ChallengeSpec {
                        domain: domain.clone(),
                        method: ValidationMethod::HTTP,
                        target: format!("http://{domain}{WELL_KNOWN}{FILE_NAME}"),
                        expected_value,
                        record_type: None,
                    },
                }
            })
            .collect()
    }

    /// The review decision and the CA's own check of every challenge. With `reuse`, challenges it
    /// saw validated within [`VALIDATION_REUSE`] are not asked again (issuing right after a poll).
    async fn look(&self, ctx: &OrderContext<'_>, reuse: bool) -> VendorView {
        let challenges = self.challenges(ctx);
        if ctx.spec.product.type_.needs_organization_review() {
            match self.review_decision(ctx) {
                Review::Rejected(reason) => {
                    return VendorView {
                        stage: VendorStage::Rejected,
                        state: state::REJECTED.into(),
                        challenges,
                        rejection_reason: Some(reason),
                    };
                }
                Review::Pending => {
                    return VendorView {
                        stage: VendorStage::OrganizationReview,
                        state: state::AWAITING_REVIEW.into(),
                        challenges,
                        rejection_reason: None,
                    };
                }
                Review::Approved => {}
            }
        }
        let validated = if reuse && self.validations.all_fresh(challenge_keys(&challenges), ctx.now) {
            true
        } else {
            let validated = self.domains_validated(&challenges).await;
            if validated {
                self.validations.checked(challenge_keys(&challenges), ctx.now);
            }
            validated
        };
        let (stage, code) = if validated {
            (VendorStage::Issuable, state::ISSUABLE)
        } else {
            (VendorStage::DomainValidation, state::VALIDATING)
        };
        VendorView { stage, state: code.into(), challenges, rejection_reason: None }
    }

    /// The CA's own look at every challenge: the TXT record at the zone's name servers, or the
    /// file over plain HTTP (no redirects, exact bytes).
    async fn domains_validated(&self, challenges: &[ChallengeSpec]) -> bool {
        let checks = challenges.iter().map(|c| async move {
            match c.method {
                ValidationMethod::DNS => self.dns.check_txt(&c.target, &c.expected_value).await.matched,
                ValidationMethod::HTTP => self.http.check(&c.target, &c.expected_value).await.passed,
            }
        });
        futures::future::join_all(checks).await.into_iter().all(|ok| ok)
    }
}

#[async_trait::async_trait]
impl Vendor for LocalProvider {
    /// The vendor order is named after the order's uid: buying twice is impossible.
    fn purchase_is_idempotent(&self) -> bool {
        true
    }

    async fn purchase(
        &self,
        ctx: &OrderContext<'_>,
        _claims: &BTreeMap<String, String>,
    ) -> Result<String, ProviderError> {
        Ok(format!("local-{}", ctx.uid))
    }

    async fn submit_info(&self, ctx: &OrderContext<'_>, csr_pem: &str) -> Result<Option<SubmittedInfo>, ProviderError> {
        let csr = crate::pki::parse_csr(csr_pem)
            .map_err(|e| ProviderError::permanent(format!("the CSR is unusable: {e}")))?;
        let digest: [u8; 32] = Sha256::digest(&csr.der).into();
        let mut asked: Vec<String> = csr.dns_names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let mut wanted = ctx.domains.to_vec();
        asked.sort();
        wanted.sort();
        if asked != wanted {
            return Err(ProviderError::permanent(format!(
                "the CSR names {asked:?} differ from the order's domains {wanted:?}"
            )));
        }
        self.verified_csrs.checked([digest], ctx.now);
        Ok(None)
    }

    /// The built-in CA takes the letter as it is (after the checks every vendor makes) and keeps no copy.
    async fn upload_letter(
        &self,
        _ctx: &OrderContext<'_>,
        _letter: &[u8],
        _file_name: &str,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The review decision and the CA's own check of every challenge.
    async fn poll(&self, ctx: &OrderContext<'_>) -> Result<VendorView, ProviderError> {
        Ok(self.look(ctx, false).await)
    }

    /// Issues the certificate, after checking once more what a CA checks (the validation of a
    /// moment ago counts, and so does the signature of the CSR submitted: see [`Recent`]).
    async fn download(&self, ctx: &OrderContext<'_>, csr_pem: &str) -> Result<String, ProviderError> {
        let view = self.look(ctx, true).await;
        if view.stage != VendorStage::Issuable {
            return Err(ProviderError::retryable(format!("the local CA will not issue yet: state {}", view.state)));
        }
        // Never longer than a publicly trusted CA may issue on that day.
        let lifetime = self.lifetime.min(crate::pki::ca::max_lifetime_at(ctx.now));
        let unusable = |e: crate::pki::PkiError| ProviderError::permanent(format!("the CSR is unusable: {e}"));
        let der = crate::pki::csr_der(csr_pem).map_err(unusable)?;
        let digest: [u8; 32] = Sha256::digest(&der).into();
        let verified = self.verified_csrs.all_fresh([digest], ctx.now);
        let csr = crate::pki::read_csr_der(&der, !verified).map_err(unusable)?;
        let chain = self
            .ca
            .issue_for(&csr, ctx.domains, lifetime, ctx.now)
            .map_err(|e| ProviderError::permanent(format!("the local CA refused to issue: {e}")))?;
        self.validations.forget(challenge_keys(&view.challenges));
        self.verified_csrs.forget([digest]);
        Ok(chain)
    }

    /// The built-in CA sells no terms: nothing to renew.
    async fn renew_term(&self, _ctx: &OrderContext<'_>) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Nothing was bought: nothing to cancel.
    async fn cancel(&self, _ctx: &OrderContext<'_>) -> Result<(), ProviderError> {
        Ok(())
    }

    fn trust_anchors(&self) -> Vec<String> {
        vec![self.ca_pem().to_string()]
    }

    /// The local CA answers at once: poll it often.
    fn timing(&self, base: &Timing) -> Timing {
        Timing {
            review_poll: base.review_poll.min(std::time::Duration::from_secs(5)),
            validation_poll: base.validation_poll.min(std::time::Duration::from_secs(3)),
            ..base.clone()
        }
    }
}

enum Review {
    Pending,
    Approved,
    Rejected(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CertificateOrderSpec, VendorOrder};
    use crate::validation::dns::DnsCheckerConfig;
    use crate::validation::http::Ports;

    /// A manual review is decided only by `status.approval` for the current generation: the
    /// annotations an order's author can write (the old `certorder.io/review`) decide nothing.
    #[tokio::test]
    async fn a_manual_review_is_decided_by_the_status_approval_of_this_generation_only() {
        use crate::api::{Approval, ApprovalDecision};
        let dns = Arc::new(
            DnsChecker::new(DnsCheckerConfig::with_nameservers(vec!["127.0.0.1:9".parse().unwrap()])).unwrap(),
        );
        let http = Arc::new(HttpChecker::new(dns.clone(), Ports { http: 9, https: 9 }));
        let spec: LocalProviderSpec = serde_json::from_value(serde_json::json!({
            "caSecretRef": {"name": "ca", "namespace": "certorder-system"}, "review": "Manual"
        }))
        .unwrap();
        let provider = LocalProvider::new(&spec, LocalCa::generate("test CA").unwrap(), dns, http).unwrap();
        let order: CertificateOrderSpec = serde_json::from_value(serde_json::json!({
            "providerRef": {"name": "local"}, "product": {"type": "OV"}, "domains": ["shop.example.com"],
            "secretName": "tls",
        }))
        .unwrap();
        let domains = vec!["shop.example.com".to_string()];
        let vendor = VendorOrder { info_digest: Some("d1".into()), ..Default::default() };
        let self_approved: std::collections::BTreeMap<String, String> = [
            ("certorder.io/review".to_string(), "approved".to_string()),
            ("certorder.io/review-generation".to_string(), "2".to_string()),
        ]
        .into();
        let approval = |decision, generation| Approval { decision, generation, reason: None, decision_time: None };
        let approved_before = approval(ApprovalDecision::Approved, 1);
        let rejected_now = approval(ApprovalDecision::Rejected, 2);
        let cases = [
            (None, VendorStage::OrganizationReview),
            (Some(&approved_before), VendorStage::OrganizationReview),
            (Some(&rejected_now), VendorStage::Rejected),
        ];
        for (approval, want) in cases {
            let ctx = OrderContext {
                namespace: "shop",
                name: "o",
                uid: "uid-1",
                generation: 2,
                spec: &order,
                domains: &domains,
                vendor: &vendor,
                annotations: &self_approved,
                approval,
                now: chrono::Utc::now(),
                may_have_bought: true,
                buy_again: None,
            };
            assert_eq!(provider.poll(&ctx).await.unwrap().stage, want, "{approval:?}");
        }
    }

    /// A local CA with automatic review, checking `fileauth.txt` over HTTP from a solver serving
    /// the files in a temporary directory, and an HTTP order for `127.0.0.1` (an address: nothing
    /// needs resolving, the name servers are never asked).
    struct HttpCa {
        provider: LocalProvider,
        files: tempfile::TempDir,
        solver: tokio::task::JoinHandle<std::io::Result<()>>,
        order: CertificateOrderSpec,
        domains: Vec<String>,
        vendor: VendorOrder,
        annotations: BTreeMap<String, String>,
    }

    impl HttpCa {
        async fn start() -> HttpCa {
            let files = tempfile::tempdir().unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let solver = tokio::spawn(crate::validation::solver::serve(listener, files.path().to_path_buf()));
            let dns = Arc::new(
                DnsChecker::new(DnsCheckerConfig::with_nameservers(vec!["127.0.0.1:9".parse().unwrap()])).unwrap(),
            );
            let http = Arc::new(HttpChecker::new(dns.clone(), Ports { http: port, https: 9 }));
            let spec: LocalProviderSpec = serde_json::from_value(serde_json::json!({
                "caSecretRef": {"name": "ca", "namespace": "certorder-system"}, "review": "Automatic"
            }))
            .unwrap();
            let provider = LocalProvider::new(&spec, LocalCa::generate("test CA").unwrap(), dns, http).unwrap();
            let order: CertificateOrderSpec = serde_json::from_value(serde_json::json!({
                "providerRef": {"name": "local"}, "product": {"type": "DV"}, "domains": ["127.0.0.1"],
                "secretName": "tls", "domainValidation": {"method": "HTTP"},
            }))
            .unwrap();
            let vendor = VendorOrder { info_digest: Some("d1".into()), ..Default::default() };
            HttpCa {
                provider,
                files,
                solver,
                order,
                domains: vec!["127.0.0.1".to_string()],
                vendor,
                annotations: BTreeMap::new(),
            }
        }

        fn ctx(&self, now: DateTime<Utc>) -> OrderContext<'_> {
            OrderContext {
                namespace: "shop",
                name: "o",
                uid: "uid-1",
                generation: 1,
                spec: &self.order,
                domains: &self.domains,
                vendor: &self.vendor,
                annotations: &self.annotations,
                approval: None,
                now,
                may_have_bought: true,
                buy_again: None,
            }
        }

        fn serve(&self, content: &str) {
            std::fs::write(self.files.path().join("127.0.0.1_fileauth.txt"), content).unwrap();
        }

        fn take_down(&self) {
            std::fs::remove_file(self.files.path().join("127.0.0.1_fileauth.txt")).unwrap();
        }
    }

    impl Drop for HttpCa {
        fn drop(&mut self) {
            self.solver.abort();
        }
    }

    /// For `method: HTTP` the CA asks for fileauth.txt on every domain and fetches it itself:
    /// absent or with a trailing newline it keeps validating; served exactly, it can issue.
    #[tokio::test]
    async fn http_orders_are_issuable_only_when_the_file_is_served_byte_exact() {
        let ca = HttpCa::start().await;
        let ctx = ca.ctx(Utc::now());
        let view = ca.provider.poll(&ctx).await.unwrap();
        assert_eq!(view.stage, VendorStage::DomainValidation, "no file yet");
        let challenge = &view.challenges[0];
        assert_eq!(challenge.method, ValidationMethod::HTTP);
        assert_eq!(challenge.target, "http://127.0.0.1/.well-known/pki-validation/fileauth.txt");
        assert!(!challenge.expected_value.ends_with('\n'));
        ca.serve(&format!("{}\n", challenge.expected_value));
        assert_eq!(
            ca.provider.poll(&ctx).await.unwrap().stage,
            VendorStage::DomainValidation,
            "a trailing newline does not match"
        );
        ca.serve(&challenge.expected_value);
        assert_eq!(ca.provider.poll(&ctx).await.unwrap().stage, VendorStage::Issuable);
    }

    /// Issuing right after a poll reuses the poll's validation, within `VALIDATION_REUSE` only;
    /// a download with no validation seen, or after an issue, looks afresh; a poll always looks.
    #[tokio::test]
    async fn issuing_reuses_a_validation_of_a_moment_ago_and_no_other() {
        let ca = HttpCa::start().await;
        let key = crate::pki::generate_key(crate::pki::KeyAlgorithm::EcdsaP256).unwrap();
        let csr = crate::pki::build_csr(&key, &ca.domains).unwrap();
        let now = Utc::now();
        let ctx = ca.ctx(now);
        let expected = ca.provider.poll(&ctx).await.unwrap().challenges[0].expected_value.clone();
        assert!(ca.provider.download(&ctx, &csr).await.is_err(), "never seen validated: the CA looks, finds nothing");

        ca.serve(&expected);
        assert_eq!(ca.provider.poll(&ctx).await.unwrap().stage, VendorStage::Issuable);
        ca.take_down();
        assert_eq!(ca.provider.poll(&ctx).await.unwrap().stage, VendorStage::DomainValidation, "a poll looks again");

        ca.serve(&expected);
        assert_eq!(ca.provider.poll(&ctx).await.unwrap().stage, VendorStage::Issuable);
        ca.take_down();
        let late = ca.ctx(now + VALIDATION_REUSE);
        assert!(ca.provider.download(&late, &csr).await.is_err(), "too old to reuse: looked again");
        let soon = ca.ctx(now + VALIDATION_REUSE - Duration::seconds(1));
        let chain = ca.provider.download(&soon, &csr).await.expect("the validation of a moment ago counts");
        assert!(chain.contains("BEGIN CERTIFICATE"));
        assert!(ca.provider.download(&soon, &csr).await.is_err(), "forgotten once issued: looked again");
    }

    /// The CSR verified at submission is not verified again at issue; any other bytes are.
    #[tokio::test]
    async fn issuing_verifies_any_csr_but_the_one_verified_at_submission() {
        let ca = HttpCa::start().await;
        let key = crate::pki::generate_key(crate::pki::KeyAlgorithm::EcdsaP256).unwrap();
        let csr = crate::pki::build_csr(&key, &ca.domains).unwrap();
        let mut der = crate::pki::csr_der(&csr).unwrap();
        *der.last_mut().unwrap() ^= 1;
        let forged = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der.clone()));
        assert!(crate::pki::read_csr_der(&der, false).is_ok(), "it reads");
        assert!(crate::pki::read_csr_der(&der, true).is_err(), "its signature does not verify");

        let ctx = ca.ctx(Utc::now());
        assert!(ca.provider.submit_info(&ctx, &forged).await.is_err(), "refused at submission");
        ca.provider.submit_info(&ctx, &csr).await.unwrap();
        let expected = ca.provider.poll(&ctx).await.unwrap().challenges[0].expected_value.clone();
        ca.serve(&expected);
        assert_eq!(ca.provider.poll(&ctx).await.unwrap().stage, VendorStage::Issuable);
        let refused = ca.provider.download(&ctx, &forged).await.unwrap_err().to_string();
        assert!(refused.contains("signature does not verify"), "{refused}");
        let chain = ca.provider.download(&ctx, &csr).await.expect("the CSR submitted");
        assert!(chain.contains("BEGIN CERTIFICATE"));
    }
}
