//! The phase machine: pure functions from (spec, status, observations, now) to the next step.
//!
//! The controller runs `decide` → act → `absorb` until `decide` says to wait, then writes the
//! status that `summarize` derives, once. The status holds facts (what was bought, sent,
//! checked, installed); phase, conditions and message are derived from them, so a crash at any
//! point and a re-run converge to the same place. No I/O, no clock reads: time comes in as `now`.

mod domains;
pub mod summary;
#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::api::{
    CertificateInfo, CertificateOrderSpec, CertificateOrderStatus, Challenge, PublishedValidation, SelfCheck,
    ValidationMethod, VendorOrder, VendorStage,
};
pub use domains::normalize_domains;
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
    let mut sent = serde_json::json!({
        "domains": domains,
        "product": spec.product,
        "organization": spec.organization,
        "applicant": spec.applicant,
        "method": spec.domain_validation.method,
        "key": key_fingerprint,
    });
    if round > 0 {
        sent["round"] = round.into();
    }
    let hash = Sha256::digest(sent.to_string().as_bytes());
    hex::encode(&hash[..12])
}

/// Identifies what HTTP validation publishes: the files (domain, URL, content) and how they are
/// routed. A change of either publishes again.
pub fn publish_digest(spec: &CertificateOrderSpec, challenges: &[Challenge]) -> String {
    let files: Vec<_> = challenges
        .iter()
        .filter(|c| c.method == ValidationMethod::HTTP)
        .map(|c| (&c.domain, &c.target, &c.expected_value))
        .collect();
    let records: Vec<_> = challenges
        .iter()
        .filter(|c| c.method == ValidationMethod::DNS)
        .map(|c| (&c.domain, &c.target, &c.expected_value))
        .collect();
    let published = if records.is_empty() {
        serde_json::json!({"files": files, "route": spec.domain_validation.http})
    } else {
        // DNS records: published by a ClusterDNSZone when one covers them (issue 15).
        serde_json::json!({"records": records, "dns": spec.domain_validation.dns})
    };
    let hash = Sha256::digest(published.to_string().as_bytes());
    hex::encode(&hash[..12])
}

/// Files (HTTP) or records (DNS) to publish that are not published as they are now.
fn publish_needed(spec: &CertificateOrderSpec, status: &CertificateOrderStatus) -> Option<String> {
    if !status.challenges.iter().any(|c| c.method == spec.domain_validation.method) {
        return None;
    }
    let digest = publish_digest(spec, &status.challenges);
    (status.published.as_ref().map(|p| p.digest.as_str()) != Some(digest.as_str())).then_some(digest)
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

/// Parses a Go duration (`720h`, `1h30m`, `90s`, `1.5h`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

fn doubling(initial: Duration, max: Duration, failures: u32) -> Duration {
    initial.saturating_mul(1u32 << failures.min(16)).min(max)
}

/// The backoff after `failures` transient failures in a row.
pub fn backoff(timing: &Timing, failures: u32) -> Duration {
    doubling(timing.backoff_initial, timing.backoff_max, failures.saturating_sub(1))
}

fn until(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (then - now).to_std().unwrap_or(Duration::ZERO)
}

fn since(now: DateTime<Utc>, then: Option<DateTime<Utc>>) -> Option<Duration> {
    then.map(|t| (now - t).to_std().unwrap_or(Duration::ZERO))
}

/// Whether the installed certificate is the one the spec wants and not yet due for renewal.
fn installed_is_current(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed) -> bool {
    let InstalledObs::Certificate { info, covers: true } = &obs.installed else {
        return false;
    };
    if obs.now >= renewal_time(order.spec, info) {
        return false;
    }
    if let Some(requested) = order.renew_requested
        && requested <= obs.now
        && status.renew_request_answered != Some(requested)
    {
        return false;
    }
    // Issued by an earlier spec whose vendor-side info differs (say, a new applicant): reissue.
    let Ok(domains) = normalize_domains(&order.spec.domains) else { return false };
    let vendor = status.order.as_ref();
    match vendor.and_then(|o| o.info_digest.as_ref()) {
        Some(sent) if status.certificate.as_ref().map(|c| &c.sha256_fingerprint) == Some(&info.sha256_fingerprint) => {
            // Sent for the installed certificate, the last one issued.
            let round = vendor.map_or(0, |v| v.issuances.saturating_sub(1));
            let digest = |round| info_digest(order.spec, &domains, &info.key_fingerprint, round);
            // Earlier builds sent round 0 at every renewal: orders they renewed stay settled after an upgrade.
            *sent == digest(round) || (round > 0 && *sent == digest(0))
        }
        _ => true,
    }
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

/// Lifetime assumed for a certificate not issued yet when the last one's is not known.
const ASSUMED_LIFETIME: chrono::Duration = chrono::Duration::days(90);

/// Whether a further certificate of this purchase needs its term renewed first: it would outlive
/// the bought term (its lifetime taken as the last certificate's), or the term has ended. The
/// first certificate of a purchase is within the term it was bought with.
fn term_renewal_due(status: &CertificateOrderStatus, now: DateTime<Utc>) -> bool {
    let Some(vendor) = &status.order else { return false };
    let Some(end) = vendor.term_end_time else { return false };
    if vendor.issuances == 0 {
        return false;
    }
    let lifetime = status.certificate.as_ref().map_or(ASSUMED_LIFETIME, |c| c.not_after - c.not_before);
    now + lifetime > end
}

/// How many failed downloads of a damaged Secret's certificate are tried before a new key and a
/// new certificate are asked for instead.
const REINSTALL_ATTEMPTS: u32 = 3;

/// Whether the TLS Secret's certificate is damaged while its key is the one the recorded (last
/// installed) certificate belongs to, and that certificate would still be current: then it is
/// downloaded again rather than paid for with a new key and a reissue.
fn reinstall_due(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed) -> bool {
    let InstalledObs::Damaged { key_fingerprint, .. } = &obs.installed else { return false };
    let Some(recorded) = &status.certificate else { return false };
    let gave_up = status.failures >= REINSTALL_ATTEMPTS
        && status.last_failure.as_deref().is_some_and(|f| f.starts_with("Reinstall:"));
    let vendor_holds_it = status.order.as_ref().is_some_and(|v| v.stage == Some(VendorStage::Issuable));
    if recorded.key_fingerprint != *key_fingerprint || obs.pending_key.is_some() || gave_up || !vendor_holds_it {
        return false;
    }
    let as_recorded =
        Observed { installed: InstalledObs::Certificate { info: recorded.clone(), covers: true }, ..obs.clone() };
    installed_is_current(order, status, &as_recorded)
}

/// The next step for the order.
pub fn decide(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed, timing: &Timing) -> Decision {
    let now = obs.now;
    if spec_problem(order.spec).is_some() || status.failed_generation == Some(order.generation) {
        return Decision::Wait(None);
    }
    if obs.provider != ProviderObs::Ready {
        return Decision::Wait(Some(timing.letter_poll));
    }
    if !obs.shared_with.is_empty() {
        return Decision::Wait(Some(timing.letter_poll));
    }
    if status.failures > 0
        && let Some(next) = status.next_attempt_time.filter(|t| *t > now)
    {
        return Decision::Wait(Some(until(now, next)));
    }

    if installed_is_current(order, status, obs) {
        let InstalledObs::Certificate { info, .. } = &obs.installed else { unreachable!("checked above") };
        if status.certificate.as_ref() != Some(info) {
            return Decision::Act(Step::AdoptInstalled);
        }
        if status.published.is_some() {
            return Decision::Act(Step::Unpublish);
        }
        if obs.pending_key.is_some() || status.private_key_secret.is_some() {
            return Decision::Act(Step::DiscardPendingKey);
        }
        // Wake up for the renewal, or earlier to say that the organization's review runs out.
        let mut wake = renewal_time(order.spec, info);
        if let Some(notice) = organization_notice_time(status).filter(|t| *t > now) {
            wake = wake.min(notice);
        }
        return Decision::Wait(Some(until(now, wake)));
    }

    if reinstall_due(order, status, obs) {
        return Decision::Act(Step::Reinstall);
    }

    // A (new) certificate is needed.
    let Some(key) = &obs.pending_key else {
        return Decision::Act(Step::GenerateKey);
    };
    if let InstalledObs::Certificate { info, covers: true } = &obs.installed {
        let unknown = status.certificate.as_ref().map(|c| &c.sha256_fingerprint) != Some(&info.sha256_fingerprint);
        if info.key_fingerprint == key.fingerprint && unknown && now < renewal_time(order.spec, info) {
            return Decision::Act(Step::AdoptInstalled);
        }
    }
    let vendor = match &status.order {
        Some(v) if !v.name.is_empty() => v,
        _ => return Decision::Act(Step::RecordPurchaseIntent),
    };
    if vendor.id.is_none() {
        return Decision::Act(Step::Purchase);
    }
    if term_renewal_due(status, obs.now) {
        return Decision::Act(match vendor.term_renewal_requested_time {
            None => Step::RecordTermRenewalIntent,
            Some(_) => Step::RenewTerm,
        });
    }
    let domains = normalize_domains(&order.spec.domains).unwrap_or_default();
    let digest = info_digest(order.spec, &domains, &key.fingerprint, vendor.issuances);
    let rejected = vendor.rejected_generation == Some(order.generation);
    if vendor.info_digest.as_deref() != Some(digest.as_str()) {
        if rejected {
            return Decision::Wait(None);
        }
        return Decision::Act(Step::SubmitInfo { digest });
    }
    if rejected {
        return Decision::Wait(None);
    }
    if order.spec.product.type_.needs_organization_review() {
        match &obs.letter {
            LetterObs::Present { digest } => {
                if vendor.documents_digest.as_deref() != Some(digest.as_str()) {
                    return Decision::Act(Step::UploadLetter { digest: digest.clone() });
                }
            }
            LetterObs::Missing(_) | LetterObs::Invalid(_) => {
                if vendor.documents_digest.is_none() {
                    if vendor.letter_template.is_none() {
                        return Decision::Act(Step::OfferLetterTemplate);
                    }
                    return Decision::Wait(Some(timing.letter_poll));
                }
            }
            LetterObs::NotNeeded => {}
        }
    }

    let poll_due = |interval: Duration| since(now, obs.last_poll).is_none_or(|s| s >= interval);
    let poll_wait = |interval: Duration| interval.saturating_sub(since(now, obs.last_poll).unwrap_or(interval));
    match vendor.stage {
        None => Decision::Act(Step::Poll),
        Some(VendorStage::Issuable) => Decision::Act(Step::Install),
        Some(VendorStage::Rejected) | Some(VendorStage::Cancelled) => Decision::Wait(None),
        Some(VendorStage::AwaitingInfo) | Some(VendorStage::AwaitingDocuments) | Some(VendorStage::Unknown) => {
            if poll_due(timing.validation_poll) {
                Decision::Act(Step::Poll)
            } else {
                Decision::Wait(Some(poll_wait(timing.validation_poll)))
            }
        }
        Some(stage @ (VendorStage::OrganizationReview | VendorStage::DomainValidation)) => {
            let all_passed = !status.challenges.is_empty()
                && status.challenges.iter().all(|c| c.self_check.as_ref().is_some_and(|s| s.passed));
            let check_interval = doubling(timing.self_check_initial, timing.self_check_max, obs.self_check_failures);
            // The first check waits as long as a re-check would: nobody can have created a
            // record for challenges that arrived a moment ago.
            let checked_or_received = obs.last_self_check.or(obs.last_poll);
            let check_due = since(now, checked_or_received).is_none_or(|s| s >= check_interval);
            if let Some(digest) = publish_needed(order.spec, status) {
                return Decision::Act(Step::PublishChallenges { digest });
            }
            if obs.solver_missing && status.published.is_some() {
                let digest = publish_digest(order.spec, &status.challenges);
                return Decision::Act(Step::PublishChallenges { digest });
            }
            if !status.challenges.is_empty() && !all_passed && check_due {
                return Decision::Act(Step::SelfCheck);
            }
            // Ask the vendor often once our own check passes; while it fails, only now and then
            // (our view of DNS may differ from the CA's).
            let poll_interval = if stage == VendorStage::OrganizationReview || !all_passed {
                timing.review_poll
            } else {
                timing.validation_poll
            };
            // Our check has passed since the vendor was last asked: ask now, the CA may have
            // validated already; from then on every `poll_interval`.
            let passed_since_poll = all_passed
                && stage == VendorStage::DomainValidation
                && obs.last_self_check.is_some_and(|checked| obs.last_poll.is_none_or(|polled| checked > polled));
            if poll_due(poll_interval) || passed_since_poll {
                return Decision::Act(Step::Poll);
            }
            let mut wait = poll_wait(poll_interval);
            if !status.challenges.is_empty() && !all_passed {
                let since_check = since(now, checked_or_received).unwrap_or(Duration::ZERO);
                wait = wait.min(check_interval.saturating_sub(since_check));
            }
            Decision::Wait(Some(wait))
        }
    }
}

/// Folds a step's outcome into the status facts. Derived fields are left to [`summarize`].
pub fn absorb(
    order: &OrderView,
    mut status: CertificateOrderStatus,
    outcome: Outcome,
    timing: &Timing,
    now: DateTime<Utc>,
) -> CertificateOrderStatus {
    let succeeded = !matches!(outcome, Outcome::Failed { .. });
    match outcome {
        Outcome::KeyGenerated { secret } => status.private_key_secret = Some(secret),
        Outcome::PurchaseIntentRecorded => {
            status.order = Some(VendorOrder {
                name: vendor_order_name(order.uid),
                purchase_requested_time: Some(now),
                ..VendorOrder::default()
            });
        }
        Outcome::Purchased { id, buy_again, domains_count } => {
            let vendor = status.order.get_or_insert_with(VendorOrder::default);
            vendor.id = Some(id);
            vendor.term_end_time.get_or_insert(add_years(now, order.spec.product.validity_years));
            vendor.domains_count = Some(domains_count);
            vendor.purchase_unconfirmed_time = None;
            vendor.purchase_unconfirmed_reason = None;
            if buy_again.is_some() {
                vendor.buy_again_answered = buy_again;
            }
        }
        Outcome::PurchaseUnconfirmed { reason } => {
            let vendor = status.order.get_or_insert_with(VendorOrder::default);
            vendor.purchase_unconfirmed_time.get_or_insert(now);
            vendor.purchase_unconfirmed_reason = Some(reason.clone());
            // Look again with backoff, as after any transient failure.
            status.last_failure = Some(format!("Purchase: {reason}"));
            status.last_failure_time = Some(now);
            status.failures = status.failures.saturating_add(1);
            let wait = chrono::Duration::from_std(backoff(timing, status.failures)).unwrap_or_default();
            status.next_attempt_time = Some(now + wait);
            return status;
        }
        Outcome::InfoSubmitted { digest, submitted } => {
            let vendor = status.order.get_or_insert_with(VendorOrder::default);
            vendor.info_digest = Some(digest);
            if submitted.is_some() {
                vendor.submitted = submitted;
            }
            vendor.stage = None;
            vendor.state = None;
            vendor.rejected_generation = None;
            status.challenges.clear();
        }
        Outcome::LetterTemplateOffered { config_map } => {
            let vendor = status.order.get_or_insert_with(VendorOrder::default);
            vendor.letter_template = Some(config_map.unwrap_or_default());
        }
        Outcome::LetterUploaded { digest } => {
            let vendor = status.order.get_or_insert_with(VendorOrder::default);
            vendor.documents_digest = Some(digest);
            vendor.stage = None;
            vendor.rejected_generation = None;
        }
        Outcome::Polled(view) => {
            let vendor = status.order.get_or_insert_with(VendorOrder::default);
            // The CA finished its review of the organization (now, or before this order saw it).
            let past_review = matches!(view.stage, VendorStage::DomainValidation | VendorStage::Issuable);
            if order.spec.product.type_.needs_organization_review()
                && past_review
                && (vendor.stage == Some(VendorStage::OrganizationReview)
                    || vendor.organization_validated_time.is_none())
            {
                vendor.organization_validated_time = Some(now);
            }
            vendor.stage = Some(view.stage);
            vendor.state = Some(view.state);
            match view.stage {
                VendorStage::Rejected => {
                    vendor.rejected_generation = Some(order.generation);
                    vendor.rejection_reason =
                        Some(view.rejection_reason.unwrap_or_else(|| "the CA gave no reason".into()));
                }
                VendorStage::Cancelled => {
                    status.failed_generation = Some(order.generation);
                    status.last_failure =
                        Some("the vendor order was cancelled; buy a new one by recreating the CertificateOrder".into());
                    status.last_failure_time = Some(now);
                }
                _ => {}
            }
            status.challenges =
                view.challenges
                    .into_iter()
                    .map(|c| {
                        let previous = status.challenges.iter().find(|p| {
                            p.domain == c.domain && p.target == c.target && p.expected_value == c.expected_value
                        });
                        Challenge {
                            self_check: previous.and_then(|p| p.self_check.clone()),
                            domain: c.domain,
                            method: c.method,
                            target: c.target,
                            expected_value: c.expected_value,
                        }
                    })
                    .collect();
        }
        Outcome::Published(published) => status.published = Some(published),
        Outcome::Unpublished => status.published = None,
        Outcome::SelfChecked(results) => {
            for (domain, check) in results {
                if let Some(challenge) = status.challenges.iter_mut().find(|c| c.domain == domain) {
                    challenge.self_check = Some(merge_check(challenge.self_check.take(), check));
                }
            }
        }
        Outcome::TermRenewalIntentRecorded => {
            status.order.get_or_insert_with(VendorOrder::default).term_renewal_requested_time = Some(now);
        }
        Outcome::TermRenewed => {
            let vendor = status.order.get_or_insert_with(VendorOrder::default);
            // A term renewed before it ends runs on from its end; one that ended, from now.
            let from = vendor.term_end_time.filter(|end| *end > now).unwrap_or(now);
            vendor.term_end_time = Some(add_years(from, order.spec.product.validity_years));
            vendor.term_renewal_requested_time = None;
            vendor.term_renewals += 1;
        }
        Outcome::Reinstalled(info) => {
            // The same certificate (or the vendor's current one) again: not a new issuance.
            status.renewal_time = Some(renewal_time(order.spec, &info));
            status.certificate = Some(info);
        }
        Outcome::Installed(info) => {
            status.renewal_time = Some(renewal_time(order.spec, &info));
            status.renew_request_answered = order.renew_requested.filter(|t| *t <= now);
            let vendor = status.order.get_or_insert_with(VendorOrder::default);
            vendor.issuances += 1;
            status.certificate = Some(info);
            status.challenges.clear();
        }
        Outcome::PendingKeyDiscarded => status.private_key_secret = None,
        Outcome::Failed { step, error } => {
            status.last_failure = Some(format!("{step}: {}", error.message));
            status.last_failure_time = Some(now);
            match error.kind {
                ErrorKind::Transient => {
                    status.failures = status.failures.saturating_add(1);
                    let wait = chrono::Duration::from_std(backoff(timing, status.failures)).unwrap_or_default();
                    status.next_attempt_time = Some(now + wait);
                }
                ErrorKind::Permanent => {
                    status.failures = status.failures.saturating_add(1);
                    status.failed_generation = Some(order.generation);
                    status.next_attempt_time = None;
                }
            }
        }
    }
    if succeeded {
        status.failures = 0;
        status.next_attempt_time = None;
    }
    status
}

/// Keeps the recorded check time when nothing about the result changed in the last five
/// minutes, so a re-check that sees the same thing does not cost a status write.
fn merge_check(previous: Option<SelfCheck>, new: SelfCheck) -> SelfCheck {
    match previous {
        Some(p)
            if p.passed == new.passed
                && p.seen == new.seen
                && p.diagnosis == new.diagnosis
                && p.server == new.server
                && p.status_code == new.status_code
                && p.redirect_target == new.redirect_target
                && p.content_length == new.content_length
                && new.last_check_time - p.last_check_time < chrono::Duration::minutes(5) =>
        {
            p
        }
        _ => new,
    }
}

/// The `certorder.io/buy-again` request (an RFC 3339 time) that may end the doubt about a purchase:
/// only one made while the purchase is unconfirmed, and not answered yet.
pub fn buy_again_request(annotation: Option<&String>, vendor: &VendorOrder) -> Option<DateTime<Utc>> {
    let requested = DateTime::parse_from_rfc3339(annotation?).ok()?.with_timezone(&Utc);
    let since = vendor.purchase_unconfirmed_time?;
    (vendor.id.is_none() && requested >= since && vendor.buy_again_answered != Some(requested)).then_some(requested)
}
