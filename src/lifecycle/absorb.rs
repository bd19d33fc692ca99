//! Folding a step's outcome into the status facts. Derived fields are left to
//! [`summarize`](super::summarize).

use chrono::{DateTime, Utc};

use super::{
    ErrorKind, OrderView, Outcome, StepError, Timing, VendorView, add_years, backoff, renewal_time, vendor_order_name,
};
use crate::api::{CertificateInfo, CertificateOrderStatus, Challenge, SelfCheck, VendorOrder, VendorStage};

/// Folds a step's outcome into the status facts.
pub fn absorb(
    order: &OrderView,
    mut status: CertificateOrderStatus,
    outcome: Outcome,
    timing: &Timing,
    now: DateTime<Utc>,
) -> CertificateOrderStatus {
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
            let vendor = vendor_order(&mut status);
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
            let vendor = vendor_order(&mut status);
            vendor.purchase_unconfirmed_time.get_or_insert(now);
            vendor.purchase_unconfirmed_reason = Some(reason.clone());
            // Look again with backoff, as after any transient failure.
            return failed(order, status, "Purchase", StepError::transient(reason), timing, now);
        }
        Outcome::InfoSubmitted { digest, submitted } => {
            let vendor = vendor_order(&mut status);
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
            vendor_order(&mut status).letter_template = Some(config_map.unwrap_or_default());
        }
        Outcome::LetterUploaded { digest } => {
            let vendor = vendor_order(&mut status);
            vendor.documents_digest = Some(digest);
            vendor.stage = None;
            vendor.rejected_generation = None;
        }
        Outcome::Polled(view) => polled(order, &mut status, view, now),
        Outcome::Published(published) => status.published = Some(published),
        Outcome::Unpublished => status.published = None,
        Outcome::SelfChecked(results) => {
            for (domain, check) in results {
                if let Some(challenge) = status.challenges.iter_mut().find(|c| c.domain == domain) {
                    challenge.self_check = Some(merge_check(challenge.self_check.take(), check));
                }
            }
        }
        Outcome::TermRenewalIntentRecorded => vendor_order(&mut status).term_renewal_requested_time = Some(now),
        Outcome::TermRenewed => {
            let vendor = vendor_order(&mut status);
            // A term renewed before it ends runs on from its end; one that ended, from now.
            let from = vendor.term_end_time.filter(|end| *end > now).unwrap_or(now);
            vendor.term_end_time = Some(add_years(from, order.spec.product.validity_years));
            vendor.term_renewal_requested_time = None;
            vendor.term_renewals += 1;
        }
        Outcome::Reinstalled(info) => {
            // The same certificate (or the vendor's current one) again: not a new issuance.
            record_certificate(order, &mut status, info);
        }
        Outcome::Installed(info) => {
            status.renew_request_answered = order.renew_requested.filter(|t| *t <= now);
            vendor_order(&mut status).issuances += 1;
            record_certificate(order, &mut status, info);
            status.challenges.clear();
        }
        Outcome::PendingKeyDiscarded => status.private_key_secret = None,
        Outcome::Failed { step, error } => return failed(order, status, step, error, timing, now),
    }
    status.failures = 0;
    status.next_attempt_time = None;
    status
}

fn vendor_order(status: &mut CertificateOrderStatus) -> &mut VendorOrder {
    status.order.get_or_insert_with(VendorOrder::default)
}

fn record_certificate(order: &OrderView, status: &mut CertificateOrderStatus, info: CertificateInfo) {
    status.renewal_time = Some(renewal_time(order.spec, &info));
    status.certificate = Some(info);
}

/// What the vendor said: its stage, a rejection or cancellation, and the challenges (keeping the
/// self-check of each one that did not change).
fn polled(order: &OrderView, status: &mut CertificateOrderStatus, view: VendorView, now: DateTime<Utc>) {
    let vendor = vendor_order(status);
    // The CA finished its review of the organization (now, or before this order saw it).
    let past_review = matches!(view.stage, VendorStage::DomainValidation | VendorStage::Issuable);
    if order.spec.product.type_.needs_organization_review()
        && past_review
        && (vendor.stage == Some(VendorStage::OrganizationReview) || vendor.organization_validated_time.is_none())
    {
        vendor.organization_validated_time = Some(now);
    }
    vendor.stage = Some(view.stage);
    vendor.state = Some(view.state);
    match view.stage {
        VendorStage::Rejected => {
            vendor.rejected_generation = Some(order.generation);
            vendor.rejection_reason = Some(view.rejection_reason.unwrap_or_else(|| "the CA gave no reason".into()));
        }
        VendorStage::Cancelled => {
            status.failed_generation = Some(order.generation);
            status.last_failure =
                Some("the vendor order was cancelled; buy a new one by recreating the CertificateOrder".into());
            status.last_failure_time = Some(now);
        }
        _ => {}
    }
    let previous = std::mem::take(&mut status.challenges);
    status.challenges = view
        .challenges
        .into_iter()
        .map(|c| {
            let same = previous.iter().find(|p| {
                p.domain == c.domain
                    && p.target == c.target
                    && p.expected_value == c.expected_value
                    && p.record_type == c.record_type
            });
            Challenge {
                self_check: same.and_then(|p| p.self_check.clone()),
                domain: c.domain,
                method: c.method,
                target: c.target,
                expected_value: c.expected_value,
                record_type: c.record_type,
            }
        })
        .collect();
}

/// A failed step: a transient failure is retried with backoff, a permanent one waits for a new
/// spec.
fn failed(
    order: &OrderView,
    mut status: CertificateOrderStatus,
    step: &str,
    error: StepError,
    timing: &Timing,
    now: DateTime<Utc>,
) -> CertificateOrderStatus {
    status.last_failure = Some(format!("{step}: {}", error.message));
    status.last_failure_time = Some(now);
    status.failures = status.failures.saturating_add(1);
    match error.kind {
        ErrorKind::Transient => {
            let wait = chrono::Duration::from_std(backoff(timing, status.failures)).unwrap_or_default();
            status.next_attempt_time = Some(now + wait);
        }
        ErrorKind::Permanent => {
            status.failed_generation = Some(order.generation);
            status.next_attempt_time = None;
        }
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
