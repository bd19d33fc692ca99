//! An order's conditions: the kstatus trio (Ready, Reconciling, Stalled), one per step, and
//! those present only while a person's attention is needed.

use chrono::{DateTime, Utc};

use super::position::{CertificateState, Position};
use super::summary::{DV_ISSUANCE_WARNING, Headline, renewing, unconfirmed_message};
use super::{InstalledObs, ORGANIZATION_REUSE, Observed, OrderView, organization_notice_time};
use crate::api::{CertificateOrderStatus, Condition, ConditionStatus, ConditionType, Phase, VendorOrder, VendorStage};

/// A condition before it gets its transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

fn cond(type_: ConditionType, status: bool, reason: &'static str, message: impl Into<String>) -> Cond {
    Cond { type_, status, reason, message: message.into() }
}

/// Every condition of the order, in the order they are listed.
pub(super) fn derive(
    order: &OrderView,
    status: &CertificateOrderStatus,
    obs: &Observed,
    position: &Position,
    line: &Headline,
) -> Vec<Cond> {
    let none = VendorOrder::default();
    let vendor = status.order.as_ref().unwrap_or(&none);
    let mut conds = kstatus(order, status, obs, position, line);
    conds.extend(steps(order, status, position, vendor));
    conds.extend(unconfirmed(order, vendor));
    conds.extend(issuance_delayed(order, status, obs, position, vendor));
    conds.extend(revalidation_due(order, status, obs, vendor));
    conds
}

/// Ready, Reconciling and Stalled.
fn kstatus(
    order: &OrderView,
    status: &CertificateOrderStatus,
    obs: &Observed,
    position: &Position,
    line: &Headline,
) -> Vec<Cond> {
    let current = matches!(position.certificate, CertificateState::Current(_));
    let stalled = position.halt.is_some() || matches!(line.phase, Phase::Failed | Phase::Rejected);
    let usable_cert =
        matches!(&obs.installed, InstalledObs::Certificate { covers: true, .. }) && status.certificate.is_some();
    let ready = if usable_cert && (current || renewing(order, status, obs)) {
        let why = if current { "Issued" } else { "Renewing" };
        cond(ConditionType::Ready, true, why, format!("Secret {} holds a verified certificate", order.spec.secret_name))
    } else {
        cond(ConditionType::Ready, false, line.reason, line.message.clone())
    };
    let idle = current || stalled;
    vec![
        ready,
        cond(
            ConditionType::Reconciling,
            !idle,
            if idle { "Idle" } else { line.reason },
            if idle { String::new() } else { line.message.clone() },
        ),
        cond(
            ConditionType::Stalled,
            stalled,
            if stalled { line.reason } else { "Progressing" },
            if stalled { line.message.clone() } else { String::new() },
        ),
    ]
}

/// One condition per step of the vendor's lifecycle.
fn steps(order: &OrderView, status: &CertificateOrderStatus, position: &Position, vendor: &VendorOrder) -> Vec<Cond> {
    let current = matches!(position.certificate, CertificateState::Current(_));
    let rejected = vendor.rejected_generation == Some(order.generation);
    let bought = vendor.id.is_some();
    let info_sent = current || position.info_sent;
    let mut conds = vec![
        cond(
            ConditionType::Purchased,
            bought,
            if bought { "Purchased" } else { "NotPurchased" },
            vendor.id.clone().map(|id| format!("vendor order {id}")).unwrap_or_default(),
        ),
        cond(ConditionType::InfoSubmitted, info_sent, if info_sent { "Submitted" } else { "NotSubmitted" }, ""),
    ];
    if order.spec.product.type_.needs_organization_review() {
        let uploaded = vendor.documents_digest.is_some() || current;
        conds.push(cond(
            ConditionType::DocumentsUploaded,
            uploaded,
            if uploaded { "Uploaded" } else { "NotUploaded" },
            "",
        ));
        let verified =
            current || matches!(vendor.stage, Some(VendorStage::DomainValidation) | Some(VendorStage::Issuable));
        let reason = match (verified, rejected) {
            (true, _) => "Verified",
            (false, true) => "Rejected",
            (false, false) => "InReview",
        };
        let message = if rejected { vendor.rejection_reason.clone().unwrap_or_default() } else { String::new() };
        conds.push(cond(ConditionType::OrganizationVerified, verified, reason, message));
    }
    let verified = current || vendor.stage == Some(VendorStage::Issuable);
    let failing: Vec<String> = status
        .challenges
        .iter()
        .filter_map(|c| c.self_check.as_ref().filter(|s| !s.passed).map(|s| format!("{}: {}", c.domain, s.diagnosis)))
        .collect();
    let reason = match (verified, failing.is_empty()) {
        (true, _) => "Verified",
        (false, true) => "Pending",
        (false, false) => "SelfCheckFailing",
    };
    conds.push(cond(ConditionType::DomainsVerified, verified, reason, failing.join("; ")));
    conds
}

/// While a purchase may have been made but is not found.
fn unconfirmed(order: &OrderView, vendor: &VendorOrder) -> Option<Cond> {
    let since = vendor.purchase_unconfirmed_time.filter(|_| vendor.id.is_none())?;
    Some(cond(ConditionType::PurchaseUnconfirmed, true, "OutcomeUnknown", unconfirmed_message(order, vendor, since)))
}

/// A DV order not issued a day after it was bought.
fn issuance_delayed(
    order: &OrderView,
    status: &CertificateOrderStatus,
    obs: &Observed,
    position: &Position,
    vendor: &VendorOrder,
) -> Option<Cond> {
    let waited = obs.now - vendor.purchase_requested_time?;
    let current = matches!(position.certificate, CertificateState::Current(_));
    let failed = status.failed_generation == Some(order.generation);
    let rejected = vendor.rejected_generation == Some(order.generation);
    let dv = !order.spec.product.type_.needs_organization_review();
    let delayed = dv
        && !current
        && !failed
        && !rejected
        && vendor.id.is_some()
        && vendor.issuances == 0
        && waited >= DV_ISSUANCE_WARNING;
    delayed.then(|| {
        cond(
            ConditionType::IssuanceDelayed,
            true,
            "DVNotIssuedIn24h",
            format!(
                "this DV order was bought {}h ago and is still not issued; check the challenges, or consider an OV product (spec.product.type: OV), which the CA verifies by documents and phone instead",
                waited.num_hours()
            ),
        )
    })
}

/// OV/EV: the CA's review of the organization can be reused for less than 30 more days.
fn revalidation_due(
    order: &OrderView,
    status: &CertificateOrderStatus,
    obs: &Observed,
    vendor: &VendorOrder,
) -> Option<Cond> {
    let notice = organization_notice_time(status)?;
    let validated = vendor.organization_validated_time?;
    if obs.now < notice {
        return None;
    }
    let until = validated + ORGANIZATION_REUSE;
    let letter = order
        .spec
        .documents
        .as_ref()
        .and_then(|d| d.confirmation_letter.as_ref())
        .map_or("the Secret spec.documents.confirmationLetter names".to_string(), |l| format!("Secret {:?}", l.name));
    Some(cond(
        ConditionType::OrganizationRevalidationDue,
        true,
        if obs.now >= until { "ReviewExpired" } else { "ReviewExpiring" },
        format!(
            "the CA reviewed the organization on {} and reuses that review until {} (398 days): a certificate issued after that needs a newly stamped confirmation letter and the CA's review (its calls) again; prepare the letter and store it in {letter}",
            validated.format("%Y-%m-%d"),
            until.format("%Y-%m-%d")
        ),
    ))
}

/// The API's conditions, each keeping its transition time while its status holds.
pub(super) fn to_api(conds: Vec<Cond>, previous: &[Condition], now: DateTime<Utc>, generation: i64) -> Vec<Condition> {
    conds
        .into_iter()
        .map(|c| {
            let status = ConditionStatus::from(c.status);
            let since = previous
                .iter()
                .find(|old| old.type_ == c.type_.as_str() && old.status == status)
                .map_or(now, |old| old.last_transition_time);
            Condition {
                type_: c.type_.as_str().into(),
                status,
                reason: c.reason.into(),
                message: c.message,
                last_transition_time: since,
                observed_generation: Some(generation),
            }
        })
        .collect()
}
