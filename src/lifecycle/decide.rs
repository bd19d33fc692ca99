//! The next step, from where the order is ([`Position`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::position::{CertificateState, Halt, LetterNeed, Position, VendorProgress, locate};
use super::{
    Decision, InstalledObs, KeyObs, Observed, OrderView, Step, Timing, doubling, organization_notice_time,
    publish_digest, renewal_time,
};
use crate::api::{CertificateInfo, CertificateOrderSpec, CertificateOrderStatus, VendorStage};

/// The next step for the order.
pub fn decide(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed, timing: &Timing) -> Decision {
    let position = locate(order, status, obs);
    match &position.halt {
        Some(Halt::InvalidSpec(_) | Halt::Failed) => return Decision::Wait(None),
        Some(Halt::Provider(_) | Halt::Shared(_)) => return Decision::Wait(Some(timing.letter_poll)),
        None => {}
    }
    if status.failures > 0
        && let Some(next) = status.next_attempt_time.filter(|t| *t > obs.now)
    {
        return Decision::Wait(Some(until(obs.now, next)));
    }
    match position.certificate {
        CertificateState::Current(info) => settle(order, status, obs, info),
        CertificateState::Damaged { .. } => Decision::Act(Step::Reinstall),
        CertificateState::Needed => next_certificate(order, status, obs, timing, &position),
    }
}

/// The certificate is current: tidy up what getting it left behind, then sleep until the renewal.
fn settle(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed, info: &CertificateInfo) -> Decision {
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
    if let Some(notice) = organization_notice_time(status).filter(|t| *t > obs.now) {
        wake = wake.min(notice);
    }
    Decision::Wait(Some(until(obs.now, wake)))
}

/// A (new) certificate is needed: a key first, then the vendor's lifecycle.
fn next_certificate(
    order: &OrderView,
    status: &CertificateOrderStatus,
    obs: &Observed,
    timing: &Timing,
    position: &Position,
) -> Decision {
    let Some(key) = position.key else {
        return Decision::Act(Step::GenerateKey);
    };
    if installed_unknown_for(order.spec, status, obs, key) {
        return Decision::Act(Step::AdoptInstalled);
    }
    match &position.vendor {
        VendorProgress::NotBought { intent_recorded: false, .. } => Decision::Act(Step::RecordPurchaseIntent),
        VendorProgress::NotBought { intent_recorded: true, .. } => Decision::Act(Step::Purchase),
        VendorProgress::Rejected => Decision::Wait(None),
        VendorProgress::TermRenewal { intent_recorded: false } => Decision::Act(Step::RecordTermRenewalIntent),
        VendorProgress::TermRenewal { intent_recorded: true } => Decision::Act(Step::RenewTerm),
        VendorProgress::InfoToSend { digest: Some(digest) } => {
            Decision::Act(Step::SubmitInfo { digest: digest.clone() })
        }
        VendorProgress::InfoToSend { digest: None } => Decision::Act(Step::GenerateKey),
        VendorProgress::Letter(LetterNeed::Upload { digest, .. }) => {
            Decision::Act(Step::UploadLetter { digest: digest.clone() })
        }
        VendorProgress::Letter(LetterNeed::Missing { template_offered: false }) => {
            Decision::Act(Step::OfferLetterTemplate)
        }
        VendorProgress::Letter(LetterNeed::Missing { template_offered: true }) => {
            Decision::Wait(Some(timing.letter_poll))
        }
        VendorProgress::AtVendor(stage) => at_vendor(order, status, obs, timing, *stage),
    }
}

/// The TLS Secret holds a certificate for the pending key that status does not know (a crash
/// after the Secret was written), still good for the spec.
fn installed_unknown_for(
    spec: &CertificateOrderSpec,
    status: &CertificateOrderStatus,
    obs: &Observed,
    key: &KeyObs,
) -> bool {
    let InstalledObs::Certificate { info, covers: true } = &obs.installed else { return false };
    let unknown = status.certificate.as_ref().map(|c| &c.sha256_fingerprint) != Some(&info.sha256_fingerprint);
    info.key_fingerprint == key.fingerprint && unknown && obs.now < renewal_time(spec, info)
}

/// The vendor has everything: ask it, help its validation, download what it issued.
fn at_vendor(
    order: &OrderView,
    status: &CertificateOrderStatus,
    obs: &Observed,
    timing: &Timing,
    stage: Option<VendorStage>,
) -> Decision {
    match stage {
        None => Decision::Act(Step::Poll),
        Some(VendorStage::Issuable) => Decision::Act(Step::Install),
        Some(VendorStage::Rejected | VendorStage::Cancelled) => Decision::Wait(None),
        Some(VendorStage::AwaitingInfo | VendorStage::AwaitingDocuments | VendorStage::Unknown) => {
            poll_every(obs, timing.validation_poll)
        }
        Some(stage @ (VendorStage::OrganizationReview | VendorStage::DomainValidation)) => {
            validation(order.spec, status, obs, timing, stage)
        }
    }
}

fn poll_every(obs: &Observed, interval: Duration) -> Decision {
    match since(obs.now, obs.last_poll) {
        Some(elapsed) if elapsed < interval => Decision::Wait(Some(interval - elapsed)),
        _ => Decision::Act(Step::Poll),
    }
}

/// The CA reviews the organization or validates the domains: publish what the challenges ask
/// for, check it as the CA will, and ask the vendor at a pace set by how the check goes.
fn validation(
    spec: &CertificateOrderSpec,
    status: &CertificateOrderStatus,
    obs: &Observed,
    timing: &Timing,
    stage: VendorStage,
) -> Decision {
    if let Some(step) = publish_step(spec, status, obs) {
        return Decision::Act(step);
    }
    let pending = !status.challenges.is_empty();
    let all_passed = pending && status.challenges.iter().all(|c| c.self_check.as_ref().is_some_and(|s| s.passed));
    let check_interval = doubling(timing.self_check_initial, timing.self_check_max, obs.self_check_failures);
    // The first check waits as long as a re-check would: nobody can have created a record for
    // challenges that arrived a moment ago.
    let since_check = since(obs.now, obs.last_self_check.or(obs.last_poll));
    let check_due = since_check.is_none_or(|s| s >= check_interval);
    if pending && !all_passed && check_due {
        return Decision::Act(Step::SelfCheck);
    }
    // Ask the vendor often once our own check passes; while it fails, only now and then (our
    // view of DNS may differ from the CA's).
    let poll_interval = if stage == VendorStage::OrganizationReview || !all_passed {
        timing.review_poll
    } else {
        timing.validation_poll
    };
    // Our check has passed since the vendor was last asked: ask now, the CA may have validated
    // already; from then on every `poll_interval`.
    let passed_since_poll = all_passed
        && stage == VendorStage::DomainValidation
        && obs.last_self_check.is_some_and(|checked| obs.last_poll.is_none_or(|polled| checked > polled));
    if passed_since_poll {
        return Decision::Act(Step::Poll);
    }
    match poll_every(obs, poll_interval) {
        Decision::Wait(Some(wait)) if pending && !all_passed => {
            let until_check = check_interval.saturating_sub(since_check.unwrap_or(Duration::ZERO));
            Decision::Wait(Some(wait.min(until_check)))
        }
        decision => decision,
    }
}

/// Files (HTTP) or records (DNS) to publish that are not published as they are now, or a solver
/// Pod to bring back.
fn publish_step(spec: &CertificateOrderSpec, status: &CertificateOrderStatus, obs: &Observed) -> Option<Step> {
    let digest = publish_digest(spec, &status.challenges, &obs.dns_zones);
    let to_publish = status.challenges.iter().any(|c| c.method == spec.domain_validation.method);
    let outdated = to_publish && status.published.as_ref().map(|p| p.digest.as_str()) != Some(digest.as_str());
    let solver_gone = obs.solver_missing && status.published.is_some();
    (outdated || solver_gone).then_some(Step::PublishChallenges { digest })
}

fn until(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (then - now).to_std().unwrap_or(Duration::ZERO)
}

fn since(now: DateTime<Utc>, then: Option<DateTime<Utc>>) -> Option<Duration> {
    then.map(|t| (now - t).to_std().unwrap_or(Duration::ZERO))
}
