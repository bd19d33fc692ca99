//! Phase, conditions and message, derived from the status facts and what was observed.

use super::{
    InstalledObs, LetterObs, Observed, OrderView, ProviderObs, info_digest, installed_is_current, normalize_domains,
    spec_problem,
};
use crate::api::{CertificateOrderStatus, Condition, Phase, ValidationMethod, VendorStage};

/// Condition types, in the order they are listed.
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// Reason of `Stalled` while the order asks for something a tenant may not (see `ProviderObs::NotPermitted`).
pub const NOT_PERMITTED: &str = "NotPermitted";
pub const PURCHASED: &str = "Purchased";
pub const INFO_SUBMITTED: &str = "InfoSubmitted";
pub const DOCUMENTS_UPLOADED: &str = "DocumentsUploaded";
pub const ORGANIZATION_VERIFIED: &str = "OrganizationVerified";
pub const DOMAINS_VERIFIED: &str = "DomainsVerified";
/// Present (True) only while a purchase may have been made but is not found.
pub const PURCHASE_UNCONFIRMED: &str = "PurchaseUnconfirmed";
/// Present (True) only when a DV order is not issued a day after it was bought.
pub const ISSUANCE_DELAYED: &str = "IssuanceDelayed";
/// OV/EV: the CA's review of the organization can be reused for less than 30 more days.
pub const ORGANIZATION_REVALIDATION_DUE: &str = "OrganizationRevalidationDue";
/// How long a DV order may take before `IssuanceDelayed` suggests an OV product.
pub const DV_ISSUANCE_WARNING: chrono::Duration = chrono::Duration::hours(24);

struct Cond {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

fn cond(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Cond {
    Cond { type_, status, reason, message: message.into() }
}

/// While an OV/EV order of a vendor that was told the applicant (UCloud) waits for its letter:
/// the vendor's API takes only the confirmation letter.
fn attachments_hint(vendor: &crate::api::VendorOrder) -> String {
    if vendor.submitted.is_none() {
        return String::new();
    }
    "; UCloud's API takes only the stamped confirmation letter (UploadConfirmLetter): the other kind of \
     attachment (application form, service agreement, business licence, ID card) has no API action and can \
     only be uploaded in the UCloud console"
        .into()
}

/// During an OV/EV review the CA emails a domain confirmation to the order's contacts, which a
/// person must approve: says to whom it went.
fn approval_hint(review: bool, vendor: &crate::api::VendorOrder) -> String {
    match (&vendor.submitted, review) {
        (Some(sent), true) => format!(
            "; the CA emails a domain confirmation to the order's contact {} (check the spam folder too): a \
             person must approve it, and answer the CA's call to the applicant {}",
            sent.applicant_email, sent.applicant_name
        ),
        _ => String::new(),
    }
}

/// Derives phase, conditions (keeping each one's transition time while its status holds),
/// message and observed generation.
pub fn summarize(order: &OrderView, mut status: CertificateOrderStatus, obs: &Observed) -> CertificateOrderStatus {
    let generation = order.generation;
    let review = order.spec.product.type_.needs_organization_review();
    let vendor = status.order.clone().unwrap_or_default();
    let problem = spec_problem(order.spec);
    let provider_problem = match &obs.provider {
        ProviderObs::Unusable(m) => Some(("ProviderNotReady", m.clone())),
        ProviderObs::MissingInfo(m) => Some(("InfoRequired", m.clone())),
        ProviderObs::NotPermitted(m) => Some((NOT_PERMITTED, m.clone())),
        ProviderObs::Ready => None,
    };
    let failed = status.failed_generation == Some(generation);
    let rejected = vendor.rejected_generation == Some(generation);
    let current = installed_is_current(order, &status, obs);
    let usable_cert =
        matches!(&obs.installed, InstalledObs::Certificate { covers: true, .. }) && status.certificate.is_some();
    let ready = usable_cert && (current || renewing(order, &status, obs));
    status.domains = normalize_domains(&order.spec.domains).unwrap_or_default();

    let letter_ref = order.spec.documents.as_ref().and_then(|d| d.confirmation_letter.as_ref());
    let info_sent = current
        || match (&obs.pending_key, &vendor.info_digest) {
            (Some(key), Some(sent)) => {
                *sent == info_digest(order.spec, &status.domains, &key.fingerprint, vendor.issuances)
            }
            _ => false,
        };
    let docs_sent = vendor.documents_digest.is_some();
    let org_verified =
        current || matches!(vendor.stage, Some(VendorStage::DomainValidation) | Some(VendorStage::Issuable));
    let domains_verified = current || vendor.stage == Some(VendorStage::Issuable);

    let (phase, reason, message): (Phase, &'static str, String) = if let Some(p) = problem {
        (Phase::Failed, "InvalidSpec", p)
    } else if failed {
        let why = status.last_failure.clone().unwrap_or_else(|| "the last step failed".into());
        (Phase::Failed, "Failed", format!("{why}; change the spec to try again"))
    } else if let Some((reason, p)) = provider_problem {
        (status.phase, reason, p)
    } else if !obs.shared_with.is_empty() {
        (
            status.phase,
            "VendorOrderShared",
            format!(
                "vendor order {} is also held by {}: one vendor order cannot serve two CertificateOrders; certorder \
                 acts on neither until a person removes status.order from the one it does not belong to",
                vendor.id.clone().unwrap_or_default(),
                obs.shared_with.join(", ")
            ),
        )
    } else if current {
        let cert = status.certificate.as_ref();
        let expires = cert.map(|c| c.not_after.to_rfc3339()).unwrap_or_default();
        (
            Phase::Issued,
            "Issued",
            format!("certificate issued and stored in Secret {}, expires {expires}", order.spec.secret_name),
        )
    } else if rejected {
        let why = vendor.rejection_reason.clone().unwrap_or_default();
        (
            Phase::Rejected,
            "Rejected",
            format!("the CA rejected the order: {why}; fix the spec (company, applicant or letter) to resubmit"),
        )
    } else if vendor.id.is_none()
        && let Some(since) = vendor.purchase_unconfirmed_time
    {
        (Phase::Pending, "PurchaseUnconfirmed", unconfirmed_message(order, &vendor, since))
    } else if vendor.id.is_none() {
        let message = if vendor.name.is_empty() {
            "preparing the purchase".to_string()
        } else {
            format!("buying vendor order {}", vendor.name)
        };
        (Phase::Pending, "Purchasing", message)
    } else if !info_sent {
        (Phase::Purchased, "SubmittingInfo", "bought; sending domains, company, applicant and CSR".into())
    } else if review && !docs_sent {
        let message = match (&obs.letter, letter_ref) {
            (LetterObs::Missing(m) | LetterObs::Invalid(m), _) => match vendor.letter_template.as_deref() {
                Some(cm) if !cm.is_empty() => format!("{m}; the vendor's letter template is in ConfigMap {cm}"),
                // UCloud offers one, but it could not be fetched: no ConfigMap holds it.
                Some(_) if vendor.submitted.is_some() => {
                    format!("{m}; UCloud's letter template could not be fetched: download it in the USSL console")
                }
                _ => m.clone(),
            },
            (_, Some(r)) => format!("uploading the confirmation letter from Secret {} key {}", r.name, r.key),
            _ => "waiting for the confirmation letter".into(),
        };
        (Phase::InfoSubmitted, "WaitingForDocuments", format!("{message}{}", attachments_hint(&vendor)))
    } else {
        match vendor.stage {
            None if review => (
                Phase::DocumentsUploaded,
                "DocumentsUploaded",
                "documents uploaded; asking the vendor for the next step".into(),
            ),
            None => {
                (Phase::InfoSubmitted, "InfoSubmitted", "info submitted; asking the vendor for the challenges".into())
            }
            Some(VendorStage::AwaitingInfo) => {
                (Phase::InfoSubmitted, "VendorProcessing", "the vendor is processing the submitted info".into())
            }
            Some(VendorStage::AwaitingDocuments) => (
                Phase::InfoSubmitted,
                "WaitingForDocuments",
                format!("the vendor is waiting for the documents{}", attachments_hint(&vendor)),
            ),
            Some(VendorStage::OrganizationReview) => (
                Phase::OrganizationReview,
                "WaitingForReview",
                format!(
                    "the CA is reviewing the organization (this takes days; answer its calls and emails){}{}",
                    approval_hint(review, &vendor),
                    challenge_hint(&status)
                ),
            ),
            Some(VendorStage::DomainValidation) => (
                Phase::DomainValidation,
                "WaitingForDomainValidation",
                format!(
                    "waiting for the CA to validate the domains{}{}",
                    approval_hint(review, &vendor),
                    challenge_hint(&status)
                ),
            ),
            Some(VendorStage::Issuable) => (
                Phase::DomainValidation,
                "Downloading",
                "the certificate is issued; downloading and verifying it".into(),
            ),
            Some(VendorStage::Rejected) | Some(VendorStage::Cancelled) => {
                (status.phase, "Stopped", "the vendor stopped the order".into())
            }
            Some(VendorStage::Unknown) => (
                status.phase,
                "UnknownVendorState",
                format!(
                    "the vendor reports state {:?}, which certorder does not know",
                    vendor.state.clone().unwrap_or_default()
                ),
            ),
        }
    };

    let stalled = matches!(phase, Phase::Failed | Phase::Rejected)
        || matches!(reason, "ProviderNotReady" | "InfoRequired" | "VendorOrderShared" | NOT_PERMITTED);
    let mut message = message;
    if status.failures > 0
        && !failed
        && let Some(f) = &status.last_failure
    {
        message = format!("{message} (retrying after failure {}: {f})", status.failures);
    }
    let ready_cond = if ready {
        let why = if current { "Issued" } else { "Renewing" };
        cond(READY, true, why, format!("Secret {} holds a verified certificate", order.spec.secret_name))
    } else {
        cond(READY, false, reason, message.clone())
    };
    let mut conds = vec![
        ready_cond,
        cond(
            RECONCILING,
            !stalled && !current,
            if current || stalled { "Idle" } else { reason },
            if current || stalled { String::new() } else { message.clone() },
        ),
        cond(
            STALLED,
            stalled,
            if stalled { reason } else { "Progressing" },
            if stalled { message.clone() } else { String::new() },
        ),
        cond(
            PURCHASED,
            vendor.id.is_some(),
            if vendor.id.is_some() { "Purchased" } else { "NotPurchased" },
            vendor.id.clone().map(|id| format!("vendor order {id}")).unwrap_or_default(),
        ),
        cond(INFO_SUBMITTED, info_sent, if info_sent { "Submitted" } else { "NotSubmitted" }, ""),
    ];
    if review {
        conds.push(cond(
            DOCUMENTS_UPLOADED,
            docs_sent || current,
            if docs_sent || current { "Uploaded" } else { "NotUploaded" },
            "",
        ));
        conds.push(cond(
            ORGANIZATION_VERIFIED,
            org_verified,
            if org_verified {
                "Verified"
            } else if rejected {
                "Rejected"
            } else {
                "InReview"
            },
            if rejected { vendor.rejection_reason.clone().unwrap_or_default() } else { String::new() },
        ));
    }
    let failing: Vec<String> = status
        .challenges
        .iter()
        .filter_map(|c| c.self_check.as_ref().filter(|s| !s.passed).map(|s| format!("{}: {}", c.domain, s.diagnosis)))
        .collect();
    conds.push(cond(
        DOMAINS_VERIFIED,
        domains_verified,
        if domains_verified {
            "Verified"
        } else if failing.is_empty() {
            "Pending"
        } else {
            "SelfCheckFailing"
        },
        failing.join("; "),
    ));
    if vendor.id.is_none()
        && let Some(since) = vendor.purchase_unconfirmed_time
    {
        conds.push(cond(PURCHASE_UNCONFIRMED, true, "OutcomeUnknown", unconfirmed_message(order, &vendor, since)));
    }
    if let Some(purchased) = vendor.purchase_requested_time {
        let waited = obs.now - purchased;
        let dv = !order.spec.product.type_.needs_organization_review();
        if dv
            && !current
            && !failed
            && !rejected
            && vendor.id.is_some()
            && vendor.issuances == 0
            && waited >= DV_ISSUANCE_WARNING
        {
            conds.push(cond(
                ISSUANCE_DELAYED,
                true,
                "DVNotIssuedIn24h",
                format!(
                    "this DV order was bought {}h ago and is still not issued; check the challenges, or consider an OV product (spec.product.type: OV), which the CA verifies by documents and phone instead",
                    waited.num_hours()
                ),
            ));
        }
    }

    if let (Some(notice), Some(validated)) =
        (super::organization_notice_time(&status), vendor.organization_validated_time)
        && obs.now >= notice
    {
        let until = validated + super::ORGANIZATION_REUSE;
        let letter = order
            .spec
            .documents
            .as_ref()
            .and_then(|d| d.confirmation_letter.as_ref())
            .map_or("the Secret spec.documents.confirmationLetter names".to_string(), |l| {
                format!("Secret {:?}", l.name)
            });
        conds.push(cond(
            ORGANIZATION_REVALIDATION_DUE,
            true,
            if obs.now >= until { "ReviewExpired" } else { "ReviewExpiring" },
            format!(
                "the CA reviewed the organization on {} and reuses that review until {} (398 days): a certificate issued after that needs a newly stamped confirmation letter and the CA's review (its calls) again; prepare the letter and store it in {letter}",
                validated.format("%Y-%m-%d"),
                until.format("%Y-%m-%d")
            ),
        ));
    }

    status.conditions = conds
        .into_iter()
        .map(|c| {
            let text = if c.status { "True" } else { "False" };
            let since = status
                .conditions
                .iter()
                .find(|old| old.type_ == c.type_ && old.status == text)
                .map(|old| old.last_transition_time)
                .unwrap_or(obs.now);
            Condition {
                type_: c.type_.into(),
                status: text.into(),
                reason: c.reason.into(),
                message: c.message,
                last_transition_time: since,
                observed_generation: Some(generation),
            }
        })
        .collect();
    status.phase = phase;
    status.message = Some(message);
    status.observed_generation = Some(generation);
    status
}

/// A renewal is under way and the installed certificate is still good for the spec.
fn renewing(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed) -> bool {
    match (&obs.installed, &status.certificate) {
        (InstalledObs::Certificate { info, covers: true }, Some(known)) => {
            info.sha256_fingerprint == known.sha256_fingerprint
                && info.not_after > obs.now
                && spec_problem(order.spec).is_none()
        }
        _ => false,
    }
}

/// ": create TXT _dnsauth.example.com = "v" (self-check: …)" for challenges not yet seen.
fn challenge_hint(status: &CertificateOrderStatus) -> String {
    let pending: Vec<String> = status
        .challenges
        .iter()
        .filter(|c| !c.self_check.as_ref().is_some_and(|s| s.passed))
        .map(|c| {
            let what = match c.method {
                ValidationMethod::DNS => {
                    let published = status.published.as_ref().and_then(|p| {
                        p.dns_records.iter().find(|r| r.value == c.expected_value && r.type_ == "TXT")
                    });
                    match published {
                        Some(r) if r.name == c.target.trim_end_matches('.').to_ascii_lowercase() => format!(
                            "TXT {} = {:?} (published by certorder with ClusterDNSZone {})",
                            c.target, c.expected_value, r.zone
                        ),
                        Some(r) => format!(
                            "TXT {} = {:?} (published by certorder at {}, where the CNAME at {} points, with ClusterDNSZone {})",
                            c.target, c.expected_value, r.name, c.target, r.zone
                        ),
                        None => format!("create TXT {} = {:?}", c.target, c.expected_value),
                    }
                }
                ValidationMethod::HTTP => {
                    format!("{} must answer {:?} (certorder publishes it)", c.target, c.expected_value)
                }
            };
            match &c.self_check {
                Some(s) => format!("{what} (self-check: {})", s.diagnosis),
                None => what,
            }
        })
        .collect();
    if pending.is_empty() { String::new() } else { format!("; {}", pending.join("; ")) }
}

/// What a person needs to end the doubt about a purchase: what was asked for and when, what
/// happened, and the two ways out.
fn unconfirmed_message(
    order: &OrderView,
    vendor: &crate::api::VendorOrder,
    since: chrono::DateTime<chrono::Utc>,
) -> String {
    let product = &order.spec.product;
    let asked = format!(
        "{} {} for {} domain(s), {} year(s)",
        product.brand.as_deref().unwrap_or("-"),
        product.name.as_deref().unwrap_or("-"),
        order.spec.domains.len(),
        product.validity_years
    );
    let decided = vendor.purchase_requested_time.map(|t| t.to_rfc3339()).unwrap_or_else(|| "?".into());
    let why = vendor.purchase_unconfirmed_reason.as_deref().unwrap_or("the outcome is unknown");
    format!(
        "the purchase of {asked}, decided at {decided}, may have been made (unconfirmed since {}): {why}. \
         certorder keeps looking for it in the vendor's order list and does not buy again on its own: if the \
         vendor's console shows the order, set status.order.id to its id; if it shows none, run \
         `certorder buy-again NAME -n NAMESPACE`",
        since.to_rfc3339()
    )
}
