//! Phase, conditions and message, derived from where the order is ([`Position`]).

use chrono::{DateTime, Utc};

use super::conditions;
use super::position::{CertificateState, Halt, LetterNeed, Position, VendorProgress, locate};
use super::{InstalledObs, LetterObs, Observed, OrderView, ProviderObs, normalize_domains, spec_problem};
use crate::api::{CertificateOrderStatus, Phase, ValidationMethod, VendorOrder, VendorStage};

/// Reason of `Stalled` while the order asks for something a tenant may not (see `ProviderObs::NotPermitted`).
pub const NOT_PERMITTED: &str = "NotPermitted";
/// How long a DV order may take before `IssuanceDelayed` suggests an OV product.
pub const DV_ISSUANCE_WARNING: chrono::Duration = chrono::Duration::hours(24);

/// The phase, and the reason and message of the conditions that are not as wished.
pub(super) struct Headline {
    pub phase: Phase,
    pub reason: &'static str,
    pub message: String,
}

fn headline(phase: Phase, reason: &'static str, message: impl Into<String>) -> Headline {
    Headline { phase, reason, message: message.into() }
}

/// Derives phase, conditions (keeping each one's transition time while its status holds),
/// message and observed generation.
pub fn summarize(order: &OrderView, mut status: CertificateOrderStatus, obs: &Observed) -> CertificateOrderStatus {
    let position = locate(order, &status, obs);
    let mut line = describe(order, &status, obs, &position);
    let failed = status.failed_generation == Some(order.generation);
    if status.failures > 0
        && !failed
        && let Some(f) = &status.last_failure
    {
        line.message = format!("{} (retrying after failure {}: {f})", line.message, status.failures);
    }
    let conds = conditions::derive(order, &status, obs, &position, &line);
    status.conditions = conditions::to_api(conds, &status.conditions, obs.now, order.generation);
    status.domains = normalize_domains(&order.spec.domains).unwrap_or_default();
    status.phase = line.phase;
    status.message = Some(line.message);
    status.observed_generation = Some(order.generation);
    status
}

/// Where the order is, for people.
fn describe(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed, position: &Position) -> Headline {
    let none = VendorOrder::default();
    let vendor = status.order.as_ref().unwrap_or(&none);
    if let Some(halt) = &position.halt {
        return halted(status, vendor, halt);
    }
    match &position.certificate {
        CertificateState::Current(info) => {
            return headline(
                Phase::Issued,
                "Issued",
                format!(
                    "certificate issued and stored in Secret {}, expires {}",
                    order.spec.secret_name,
                    info.not_after.to_rfc3339()
                ),
            );
        }
        CertificateState::Damaged { reason } => {
            return headline(
                status.phase,
                "Repairing",
                format!(
                    "Secret {} holds a damaged certificate ({reason}) next to the key of the certificate last issued: downloading that certificate again",
                    order.spec.secret_name
                ),
            );
        }
        CertificateState::Needed => {}
    }
    match &position.vendor {
        VendorProgress::Rejected => headline(
            Phase::Rejected,
            "Rejected",
            format!(
                "the CA rejected the order: {}; fix the spec (company, applicant or letter) to resubmit",
                vendor.rejection_reason.clone().unwrap_or_default()
            ),
        ),
        VendorProgress::NotBought { unconfirmed_since: Some(since), .. } => {
            headline(Phase::Pending, "PurchaseUnconfirmed", unconfirmed_message(order, vendor, *since))
        }
        VendorProgress::NotBought { intent_recorded: false, .. } => {
            headline(Phase::Pending, "Purchasing", "preparing the purchase")
        }
        VendorProgress::NotBought { .. } => {
            headline(Phase::Pending, "Purchasing", format!("buying vendor order {}", vendor.name))
        }
        VendorProgress::TermRenewal { .. } => headline(
            Phase::Purchased,
            "RenewingTerm",
            format!(
                "the next certificate would outlive the purchased term, which ends {}: renewing the term with vendor order {}",
                vendor.term_end_time.map(|t| t.to_rfc3339()).unwrap_or_default(),
                vendor.id.clone().unwrap_or_default()
            ),
        ),
        VendorProgress::InfoToSend { .. } => {
            headline(Phase::Purchased, "SubmittingInfo", "bought; sending domains, company, applicant and CSR")
        }
        VendorProgress::Letter(LetterNeed::Upload { first: false, .. }) => at_vendor(order, status, vendor),
        VendorProgress::Letter(_) => waiting_for_letter(order, obs, vendor),
        VendorProgress::AtVendor(_) => at_vendor(order, status, vendor),
    }
}

fn halted(status: &CertificateOrderStatus, vendor: &VendorOrder, halt: &Halt) -> Headline {
    match halt {
        Halt::InvalidSpec(problem) => headline(Phase::Failed, "InvalidSpec", problem.clone()),
        Halt::Failed => {
            let why = status.last_failure.clone().unwrap_or_else(|| "the last step failed".into());
            headline(Phase::Failed, "Failed", format!("{why}; change the spec to try again"))
        }
        Halt::Provider(ProviderObs::Unusable(m)) => headline(status.phase, "ProviderNotReady", m.clone()),
        Halt::Provider(ProviderObs::MissingInfo(m)) => headline(status.phase, "InfoRequired", m.clone()),
        Halt::Provider(ProviderObs::NotPermitted(m)) => headline(status.phase, NOT_PERMITTED, m.clone()),
        Halt::Provider(ProviderObs::Ready) => unreachable!("a ready provider halts nothing"),
        Halt::Shared(others) => headline(
            status.phase,
            "VendorOrderShared",
            format!(
                "vendor order {} is also held by {}: one vendor order cannot serve two CertificateOrders; certorder \
                 acts on neither until a person removes status.order from the one it does not belong to",
                vendor.id.clone().unwrap_or_default(),
                others.join(", ")
            ),
        ),
    }
}

/// OV/EV: no letter has reached the vendor yet.
fn waiting_for_letter(order: &OrderView, obs: &Observed, vendor: &VendorOrder) -> Headline {
    let letter_ref = order.spec.documents.as_ref().and_then(|d| d.confirmation_letter.as_ref());
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
    headline(Phase::InfoSubmitted, "WaitingForDocuments", format!("{message}{}", attachments_hint(vendor)))
}

/// The vendor has everything it asked for: say what it is doing.
fn at_vendor(order: &OrderView, status: &CertificateOrderStatus, vendor: &VendorOrder) -> Headline {
    let review = order.spec.product.type_.needs_organization_review();
    match vendor.stage {
        None if review => headline(
            Phase::DocumentsUploaded,
            "DocumentsUploaded",
            "documents uploaded; asking the vendor for the next step",
        ),
        None => headline(Phase::InfoSubmitted, "InfoSubmitted", "info submitted; asking the vendor for the challenges"),
        Some(VendorStage::AwaitingInfo) => {
            headline(Phase::InfoSubmitted, "VendorProcessing", "the vendor is processing the submitted info")
        }
        Some(VendorStage::AwaitingDocuments) => headline(
            Phase::InfoSubmitted,
            "WaitingForDocuments",
            format!("the vendor is waiting for the documents{}", attachments_hint(vendor)),
        ),
        Some(VendorStage::OrganizationReview) => headline(
            Phase::OrganizationReview,
            "WaitingForReview",
            format!(
                "the CA is reviewing the organization (this takes days; answer its calls and emails){}{}",
                approval_hint(review, vendor),
                challenge_hint(status)
            ),
        ),
        Some(VendorStage::DomainValidation) => headline(
            Phase::DomainValidation,
            "WaitingForDomainValidation",
            format!(
                "waiting for the CA to validate the domains{}{}",
                approval_hint(review, vendor),
                challenge_hint(status)
            ),
        ),
        Some(VendorStage::Issuable) => {
            headline(Phase::DomainValidation, "Downloading", "the certificate is issued; downloading and verifying it")
        }
        Some(VendorStage::Rejected | VendorStage::Cancelled) => {
            headline(status.phase, "Stopped", "the vendor stopped the order")
        }
        Some(VendorStage::Unknown) => headline(
            status.phase,
            "UnknownVendorState",
            format!(
                "the vendor reports state {:?}, which certorder does not know",
                vendor.state.clone().unwrap_or_default()
            ),
        ),
    }
}

/// While an OV/EV order of a vendor that was told the applicant (UCloud) waits for its letter:
/// the vendor's API takes only the confirmation letter.
fn attachments_hint(vendor: &VendorOrder) -> String {
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
fn approval_hint(review: bool, vendor: &VendorOrder) -> String {
    match (&vendor.submitted, review) {
        (Some(sent), true) => format!(
            "; the CA emails a domain confirmation to the order's contact {} (check the spam folder too): a \
             person must approve it, and answer the CA's call to the applicant {}",
            sent.applicant_email, sent.applicant_name
        ),
        _ => String::new(),
    }
}

/// ": create TXT _dnsauth.example.com = "v" (self-check: …)" (or "create CNAME n → v") for
/// challenges not yet seen.
fn challenge_hint(status: &CertificateOrderStatus) -> String {
    let pending: Vec<String> = status
        .challenges
        .iter()
        .filter(|c| !c.self_check.as_ref().is_some_and(|s| s.passed))
        .map(|c| {
            let what = match c.method {
                ValidationMethod::DNS if c.is_cname() => {
                    let name = c.target.trim_end_matches('.').to_ascii_lowercase();
                    let value = c.expected_value.trim_end_matches('.');
                    let published = status.published.as_ref().and_then(|p| {
                        p.dns_records
                            .iter()
                            .find(|r| r.type_ == "CNAME" && r.name == name && r.value.eq_ignore_ascii_case(value))
                    });
                    match published {
                        Some(r) => format!(
                            "CNAME {} → {value} (published by certorder with ClusterDNSZone {})",
                            c.target, r.zone
                        ),
                        None => format!("create CNAME {} → {value}", c.target),
                    }
                }
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
pub(super) fn unconfirmed_message(order: &OrderView, vendor: &VendorOrder, since: DateTime<Utc>) -> String {
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

/// A renewal is under way and the installed certificate is still good for the spec.
pub(super) fn renewing(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed) -> bool {
    match (&obs.installed, &status.certificate) {
        (InstalledObs::Certificate { info, covers: true }, Some(known)) => {
            info.sha256_fingerprint == known.sha256_fingerprint
                && info.not_after > obs.now
                && spec_problem(order.spec).is_none()
        }
        _ => false,
    }
}
