//! The phase machine: pure functions from (spec, status, observations, now) to the next step.
//!
//! The controller runs `decide` → act → `absorb` until `decide` says to wait, then writes the
//! status that `summarize` derives, once. The status holds facts (what was bought, sent,
//! checked, installed); phase, conditions and message are derived from them, so a crash at any
//! point and a re-run converge to the same place. No I/O, no clock reads: time comes in as `now`.

mod absorb;
mod conditions;
mod decide;
mod domains;
pub mod position;
pub mod summary;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::api::{
    CertificateInfo, CertificateOrderSpec, CertificateOrderStatus, Challenge, DnsRecordType, PublishedValidation,
    SelfCheck, ValidationMethod, VendorOrder, VendorStage,
};
pub use absorb::absorb;
pub use decide::decide;
pub use domains::normalize_domains;
pub use position::{Position, locate};
pub use summary::summarize;

/// How often the operator looks again, by step; configurable with `certorder run` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// First re-check of a failing domain self-check; doubles up to `self_check_max`.
    pub self_check_initial: Duration,
    pub self_check_max: Duration,
    /// Polling of the vendor while the CA reviews the organization (days).
    pub review_poll: Duration,
    /// Polling of the vendor while it validates domains.
    pub validation_poll: Duration,
    /// Looking for the confirmation letter Secret while it is missing.
    pub letter_poll: Duration,
    /// First retry after a transient failure; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            self_check_initial: Duration::from_secs(2),
            self_check_max: Duration::from_secs(120),
            review_poll: Duration::from_secs(600),
            validation_poll: Duration::from_secs(60),
            letter_poll: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// The order as the lifecycle sees it.
#[derive(Clone, Copy, Debug)]
pub struct OrderView<'a> {
    pub spec: &'a CertificateOrderSpec,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.uid`: names the vendor order, so a crash cannot buy twice.
    pub uid: &'a str,
    /// `certorder renew` asked for a renewal at this time.
    pub renew_requested: Option<DateTime<Utc>>,
}

/// What the controller saw before deciding.
#[derive(Clone, Debug)]
pub struct Observed {
    pub now: DateTime<Utc>,
    pub provider: ProviderObs,
    /// The Secret holding the key of the certificate being bought, if any.
    pub pending_key: Option<KeyObs>,
    pub letter: LetterObs,
    /// What the TLS Secret holds.
    pub installed: InstalledObs,
    /// When the vendor was last asked about this order (kept in memory).
    pub last_poll: Option<DateTime<Utc>>,
    /// When the domains were last self-checked, and how many checks in a row failed (in memory).
    pub last_self_check: Option<DateTime<Utc>>,
    pub self_check_failures: u32,
    /// HTTP validation: the published solver Pod is gone (evicted, deleted); nothing recreates a
    /// bare Pod but the operator.
    pub solver_missing: bool,
    /// Other orders (`namespace/name`) whose status holds the same vendor order id: nothing is
    /// done with a vendor order two orders hold until a person sorts it out.
    pub shared_with: Vec<String>,
    /// Which `ClusterDNSZone`s exist (names and generations; "" for none): DNS records are
    /// published again when it changes.
    pub dns_zones: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderObs {
    Ready,
    /// The provider cannot be used; the message says what to fix.
    Unusable(String),
    /// The provider would need values that neither the order nor the provider gives (UCloud's
    /// company and applicant); the message names the fields to set. Nothing is bought or sent
    /// until a change of the order or the provider supplies them.
    MissingInfo(String),
    /// The order may not do what it asks in a shared cluster (a Secret that is not its own, a
    /// provider not granted to its namespace, a host another namespace serves); the message names
    /// the object and the rule. Nothing is bought, written or published until that changes.
    NotPermitted(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyObs {
    pub secret: String,
    /// SHA-256 of the public key, lowercase hex.
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LetterObs {
    /// DV: no documents.
    NotNeeded,
    /// The referenced Secret or key does not exist; the message says which.
    Missing(String),
    /// It exists but cannot be sent (size, type); the message says why.
    Invalid(String),
    Present {
        digest: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstalledObs {
    /// No TLS Secret, or one without a usable certificate.
    Missing,
    /// The TLS Secret holds a certificate that matches its key, chains and is not expired.
    /// `covers` tells whether it also has every name of the spec.
    Certificate { info: CertificateInfo, covers: bool },
    /// The TLS Secret exists but is not usable (no key, garbage): it is replaced.
    Unusable(String),
    /// The TLS Secret's `tls.key` is a good key of the spec's algorithm, but `tls.crt` is not a
    /// usable certificate for it (garbled, truncated, expired, another key's). When that key is
    /// the one the last certificate was issued for, the certificate is downloaded again: no new
    /// key, no reissue.
    Damaged { reason: String, key_fingerprint: String },
}

/// The vendor's answer to a poll, normalised by the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorView {
    pub stage: VendorStage,
    /// The vendor's state code, verbatim.
    pub state: String,
    pub challenges: Vec<ChallengeSpec>,
    pub rejection_reason: Option<String>,
}

/// One validation the vendor asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeSpec {
    pub domain: String,
    pub method: ValidationMethod,
    /// DNS: the record name. HTTP: the URL.
    pub target: String,
    pub expected_value: String,
    /// DNS: `Some(CNAME)` for a CNAME challenge; `None` is TXT (as stored statuses have it).
    pub record_type: Option<DnsRecordType>,
}

/// What the controller should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Generate a private key for the certificate being bought, in a Secret (reusing the
    /// installed key when `rotationPolicy: Never`).
    GenerateKey,
    /// Record in status, durably, the vendor order name about to be bought.
    RecordPurchaseIntent,
    /// Find the vendor order by its recorded name, and buy it only when it does not exist.
    Purchase,
    /// Record in status, durably, that the purchased term is about to be renewed.
    RecordTermRenewalIntent,
    /// Renew the purchased term (after looking whether an earlier attempt already did).
    RenewTerm,
    /// Send domains, company, applicant and the CSR; `digest` identifies what is sent.
    SubmitInfo { digest: String },
    /// Upload the confirmation letter.
    UploadLetter { digest: String },
    /// The letter is missing: put the vendor's template in a ConfigMap next to the order, once.
    OfferLetterTemplate,
    /// Ask the vendor where the order is.
    Poll,
    /// HTTP validation: publish the files the challenges ask for (ConfigMap, solver Pod and
    /// Service, route); `digest` identifies what is published.
    PublishChallenges { digest: String },
    /// Check every challenge the way the CA will.
    SelfCheck,
    /// Download the certificate, verify it against the key and names, write the TLS Secret.
    Install,
    /// The TLS Secret already holds a verified certificate the status does not know about yet
    /// (a crash after the Secret was written): record it.
    AdoptInstalled,
    /// The TLS Secret's certificate is damaged but its key is the one the current certificate
    /// was issued for: download that certificate again and write it next to the same key.
    Reinstall,
    /// The certificate is installed: delete the pending key Secret.
    DiscardPendingKey,
    /// The domains are validated (the certificate is installed): remove what HTTP validation
    /// published, including paths added to the user's Ingress.
    Unpublish,
}

impl Step {
    /// The status must be written before the next step: the purchase intent before buying, and
    /// what the purchase bought before anything else.
    pub fn persist_before_next(&self) -> bool {
        matches!(self, Step::RecordPurchaseIntent | Step::Purchase | Step::RecordTermRenewalIntent | Step::RenewTerm)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Step::GenerateKey => "GenerateKey",
            Step::RecordPurchaseIntent => "RecordPurchaseIntent",
            Step::Purchase => "Purchase",
            Step::RecordTermRenewalIntent => "RecordTermRenewalIntent",
            Step::RenewTerm => "RenewTerm",
            Step::SubmitInfo { .. } => "SubmitInfo",
            Step::UploadLetter { .. } => "UploadLetter",
            Step::OfferLetterTemplate => "OfferLetterTemplate",
            Step::Poll => "Poll",
            Step::PublishChallenges { .. } => "PublishChallenges",
            Step::SelfCheck => "SelfCheck",
            Step::Install => "Install",
            Step::AdoptInstalled => "AdoptInstalled",
            Step::Reinstall => "Reinstall",
            Step::DiscardPendingKey => "DiscardPendingKey",
            Step::Unpublish => "Unpublish",
        }
    }

    /// What the step asks of the provider, for the provider-call metric; `None` when the step
    /// does not talk to the provider.
    pub fn provider_action(&self) -> Option<&'static str> {
        match self {
            Step::Purchase => Some("purchase"),
            Step::RenewTerm => Some("renew_term"),
            Step::SubmitInfo { .. } => Some("submit_info"),
            Step::UploadLetter { .. } => Some("upload_letter"),
            Step::OfferLetterTemplate => Some("letter_template"),
            Step::Poll => Some("poll"),
            Step::Install | Step::Reinstall => Some("download"),
            _ => None,
        }
    }
}

/// Whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network, rate limit, API server hiccup: retried with backoff.
    Transient,
    /// Only a change by a person can help (credentials, refused input): waits for a new spec.
    Permanent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepError {
    pub kind: ErrorKind,
    pub message: String,
}

impl StepError {
    pub fn transient(message: impl Into<String>) -> Self {
        StepError { kind: ErrorKind::Transient, message: message.into() }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError { kind: ErrorKind::Permanent, message: message.into() }
    }
}

/// What came of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    KeyGenerated {
        secret: String,
    },
    PurchaseIntentRecorded,
    Purchased {
        id: String,
        /// The `certorder.io/buy-again` request this purchase answered.
        buy_again: Option<DateTime<Utc>>,
        /// How many domains were bought (the spec's domains when buying).
        domains_count: u32,
    },
    /// The purchase may have been made (a lost answer, or a restart after deciding to buy) and
    /// is not found: look again later, never buy on a guess.
    PurchaseUnconfirmed {
        reason: String,
    },
    InfoSubmitted {
        digest: String,
        /// Who the vendor was told the order is for; `None`: unchanged (a re-issue) or not kept.
        submitted: Option<crate::api::SubmittedInfo>,
    },
    LetterUploaded {
        digest: String,
    },
    /// The template is in this ConfigMap; `None`: the vendor offers no template.
    LetterTemplateOffered {
        config_map: Option<String>,
    },
    Polled(VendorView),
    Published(PublishedValidation),
    SelfChecked(Vec<(String, SelfCheck)>),
    Installed(CertificateInfo),
    TermRenewalIntentRecorded,
    TermRenewed,
    /// A damaged TLS Secret was written again with the certificate its key was issued for.
    Reinstalled(CertificateInfo),
    PendingKeyDiscarded,
    Unpublished,
    Failed {
        step: &'static str,
        error: StepError,
    },
}

/// The lifecycle's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Act(Step),
    /// Nothing to do now. Look again after this long; `None`: only when something changes.
    Wait(Option<Duration>),
}

/// Why the spec cannot be processed, when the schema could not say it at admission.
pub fn spec_problem(spec: &CertificateOrderSpec) -> Option<String> {
    let domains = match normalize_domains(&spec.domains) {
        Ok(d) => d,
        Err(e) => return Some(e),
    };
    if spec.domain_validation.method == ValidationMethod::HTTP {
        if let Some(w) = domains.iter().find(|d| d.starts_with("*.")) {
            return Some(format!(
                "{w} is a wildcard name, which can only be validated by DNS: set spec.domainValidation.method to DNS"
            ));
        }
        let http = spec.domain_validation.http.clone().unwrap_or_default();
        if http.ingress_name.is_some() && http.gateway_ref.is_some() {
            return Some("spec.domainValidation.http sets both ingressName and gatewayRef: set at most one".into());
        }
    }
    if spec.product.type_.needs_organization_review() {
        let letter = spec.documents.as_ref().and_then(|d| d.confirmation_letter.as_ref());
        if spec.organization.is_none() || spec.applicant.is_none() || letter.is_none() {
            return Some(
                "OV and EV certificates need spec.organization, spec.applicant and spec.documents.confirmationLetter"
                    .into(),
            );
        }
    }
    if let Some(rb) = &spec.renew_before
        && parse_go_duration(rb).is_none()
    {
        return Some(format!("spec.renewBefore {rb:?} is not a duration such as 720h"));
    }
    None
}

/// The name the operator gives the vendor order: unique to this CertificateOrder.
pub fn vendor_order_name(uid: &str) -> String {
    format!("certorder-{uid}")
}

/// Identifies what is sent with the info: a change of any of it means sending it again.
///
/// `round` is the number of certificates issued under the purchase before this one: a renewal
/// sends the info again (a reissue) even when nothing in it changed, as with `rotationPolicy:
/// Never`, and exactly once. The first round leaves it out, so digests recorded before it existed
/// still match.
pub fn info_digest(spec: &CertificateOrderSpec, domains: &[String], key_fingerprint: &str, round: u32) -> String {
    /// What is hashed, field by field in this order (digests recorded in status depend on it).
    #[derive(serde::Serialize)]
    struct Sent<'a> {
        domains: &'a [String],
        product: &'a crate::api::Product,
        organization: &'a Option<crate::api::Organization>,
        applicant: &'a Option<crate::api::Applicant>,
        method: ValidationMethod,
        key: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        round: Option<u32>,
    }
    let sent = Sent {
        domains,
        product: &spec.product,
        organization: &spec.organization,
        applicant: &spec.applicant,
        method: spec.domain_validation.method,
        key: key_fingerprint,
        round: (round > 0).then_some(round),
    };
    let text = serde_json::to_vec(&sent).expect("the info serializes");
    let hash = Sha256::digest(&text);
    hex::encode(&hash[..12])
}

/// Identifies what HTTP validation publishes: the files (domain, URL, content) and how they are
/// routed. A change of either publishes again.
pub fn publish_digest(spec: &CertificateOrderSpec, challenges: &[Challenge], dns_zones: &str) -> String {
    let files: Vec<_> = challenges
        .iter()
        .filter(|c| c.method == ValidationMethod::HTTP)
        .map(|c| (&c.domain, &c.target, &c.expected_value))
        .collect();
    // A TXT record hashes as (domain, name, value), as before record types existed; a CNAME one
    // carries its type too.
    let records: Vec<serde_json::Value> = challenges
        .iter()
        .filter(|c| c.method == ValidationMethod::DNS)
        .map(|c| match c.is_cname() {
            false => serde_json::json!([c.domain, c.target, c.expected_value]),
            true => serde_json::json!([c.domain, c.target, c.expected_value, "CNAME"]),
        })
        .collect();
    let published = if records.is_empty() {
        serde_json::json!({"files": files, "route": spec.domain_validation.http})
    } else {
        // DNS records: published by a ClusterDNSZone when one covers them (issue 15), so again
        // when the zones change (the digest stays as it was while there are none).
        let mut published = serde_json::json!({"records": records, "dns": spec.domain_validation.dns});
        if !dns_zones.is_empty() {
            published["zones"] = dns_zones.into();
        }
        published
    };
    let hash = Sha256::digest(published.to_string().as_bytes());
    hex::encode(&hash[..12])
}

/// When an installed certificate is renewed: `renewBefore` before expiry, by default a third of
/// its lifetime.
pub fn renewal_time(spec: &CertificateOrderSpec, cert: &CertificateInfo) -> DateTime<Utc> {
    let lifetime = cert.not_after - cert.not_before;
    let before = spec
        .renew_before
        .as_deref()
        .and_then(parse_go_duration)
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .filter(|d| *d < lifetime)
        .unwrap_or(lifetime / 3);
    cert.not_after - before
}

pub use crate::duration::parse_go_duration;

pub(crate) fn doubling(initial: Duration, max: Duration, failures: u32) -> Duration {
    initial.saturating_mul(1u32 << failures.min(16)).min(max)
}

/// The backoff after `failures` transient failures in a row.
pub fn backoff(timing: &Timing, failures: u32) -> Duration {
    doubling(timing.backoff_initial, timing.backoff_max, failures.saturating_sub(1))
}

/// How long a CA reuses its review of an organization (Baseline Requirements 4.2.1: 398 days).
pub const ORGANIZATION_REUSE: chrono::Duration = chrono::Duration::days(398);
/// How long before that reuse ends status and an event say so, so the letter can be prepared.
pub const ORGANIZATION_REUSE_NOTICE: chrono::Duration = chrono::Duration::days(30);

/// OV/EV: from when status says that the CA will review the organization again, if known.
pub fn organization_notice_time(status: &CertificateOrderStatus) -> Option<DateTime<Utc>> {
    let validated = status.order.as_ref()?.organization_validated_time?;
    Some(validated + ORGANIZATION_REUSE - ORGANIZATION_REUSE_NOTICE)
}

/// `t` plus `years` calendar years (the end of a term bought for that many years).
pub fn add_years(t: DateTime<Utc>, years: u32) -> DateTime<Utc> {
    t.checked_add_months(chrono::Months::new(12 * years)).unwrap_or(t)
}

/// The `certorder.io/buy-again` request (an RFC 3339 time) that may end the doubt about a purchase:
/// only one made while the purchase is unconfirmed, and not answered yet.
pub fn buy_again_request(annotation: Option<&String>, vendor: &VendorOrder) -> Option<DateTime<Utc>> {
    let requested = DateTime::parse_from_rfc3339(annotation?).ok()?.with_timezone(&Utc);
    let since = vendor.purchase_unconfirmed_time?;
    (vendor.id.is_none() && requested >= since && vendor.buy_again_answered != Some(requested)).then_some(requested)
}
