//! Where an order is: derived once from spec, status and what was observed, and read by both
//! [`decide`](super::decide) (what to do next) and [`summarize`](super::summarize) (what to tell
//! people). Neither re-derives it: the order of the questions asked here is the lifecycle.

use chrono::{DateTime, Utc};

use super::{
    InstalledObs, KeyObs, LetterObs, Observed, OrderView, ProviderObs, info_digest, normalize_domains, renewal_time,
    spec_problem,
};
use crate::api::{CertificateInfo, CertificateOrderStatus, VendorOrder, VendorStage};

/// Where an order is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position<'a> {
    /// Why nothing can move until something changes; `None`: the order can move.
    pub halt: Option<Halt>,
    /// The installed certificate, and whether a new one is needed.
    pub certificate: CertificateState<'a>,
    /// The key of the certificate being bought, if one was generated.
    pub key: Option<&'a KeyObs>,
    /// Where the certificate being bought is with the vendor (meaningful when one is needed).
    pub vendor: VendorProgress,
    /// The vendor has the info (and CSR) of the pending key's certificate.
    pub info_sent: bool,
}

/// Why an order cannot move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Halt {
    /// The spec cannot be processed; the message says what to fix.
    InvalidSpec(String),
    /// A step failed for this generation in a way only a change of the spec can help.
    Failed,
    /// The provider cannot serve the order (unusable, missing info, not permitted).
    Provider(ProviderObs),
    /// Other orders (`namespace/name`) hold the same vendor order.
    Shared(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateState<'a> {
    /// The TLS Secret holds the certificate the spec wants, not yet due for renewal.
    Current(&'a CertificateInfo),
    /// The TLS Secret's certificate is damaged next to the key of the recorded one, which is
    /// still current: it is downloaded again.
    Damaged { reason: &'a str },
    /// A new certificate is needed.
    Needed,
}

/// The vendor-side progress of the certificate being bought, in the order the lifecycle goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VendorProgress {
    /// Nothing bought yet. `intent_recorded`: the vendor order's name is in status (the next step
    /// buys); `unconfirmed_since`: a purchase may have been made and is not found.
    NotBought { intent_recorded: bool, unconfirmed_since: Option<DateTime<Utc>> },
    /// The CA rejected what this generation of the spec sent: a person must change the spec.
    Rejected,
    /// The next certificate would outlive the bought term: renew it first.
    /// `intent_recorded`: the renewal is recorded in status (the next step renews).
    TermRenewal { intent_recorded: bool },
    /// Domains, company, applicant and CSR are to be sent, identified by `digest`; `None`: no key
    /// has been generated to send a CSR for.
    InfoToSend { digest: Option<String> },
    /// OV/EV: the confirmation letter is to be uploaded, or is missing.
    Letter(LetterNeed),
    /// The vendor has everything; `None`: it has not been asked since.
    AtVendor(Option<VendorStage>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LetterNeed {
    /// The letter Secret holds a letter the vendor does not have; `first`: none was uploaded yet.
    Upload { digest: String, first: bool },
    /// No letter was uploaded and none can be: `template_offered` once the vendor's template
    /// has been offered (or the vendor has none).
    Missing { template_offered: bool },
}

/// Derives where the order is.
pub fn locate<'a>(order: &OrderView, status: &'a CertificateOrderStatus, obs: &'a Observed) -> Position<'a> {
    let info_digest = info_digest_to_send(order, status, obs);
    let info_sent = match (&info_digest, status.order.as_ref().and_then(|v| v.info_digest.as_ref())) {
        (Some(wanted), Some(sent)) => wanted == sent,
        _ => false,
    };
    Position {
        halt: halt(order, status, obs),
        certificate: certificate_state(order, status, obs),
        key: obs.pending_key.as_ref(),
        vendor: vendor_progress(order, status, obs, info_digest, info_sent),
        info_sent,
    }
}

/// What the info sent for the pending key's certificate is identified by.
fn info_digest_to_send(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed) -> Option<String> {
    let key = obs.pending_key.as_ref()?;
    let domains = normalize_domains(&order.spec.domains).unwrap_or_default();
    let round = status.order.as_ref().map_or(0, |v| v.issuances);
    Some(info_digest(order.spec, &domains, &key.fingerprint, round))
}

fn halt(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed) -> Option<Halt> {
    if let Some(problem) = spec_problem(order.spec) {
        return Some(Halt::InvalidSpec(problem));
    }
    if status.failed_generation == Some(order.generation) {
        return Some(Halt::Failed);
    }
    if obs.provider != ProviderObs::Ready {
        return Some(Halt::Provider(obs.provider.clone()));
    }
    if !obs.shared_with.is_empty() {
        return Some(Halt::Shared(obs.shared_with.clone()));
    }
    None
}

fn certificate_state<'a>(
    order: &OrderView,
    status: &'a CertificateOrderStatus,
    obs: &'a Observed,
) -> CertificateState<'a> {
    if installed_is_current(order, status, obs)
        && let InstalledObs::Certificate { info, .. } = &obs.installed
    {
        return CertificateState::Current(info);
    }
    if reinstall_due(order, status, obs)
        && let InstalledObs::Damaged { reason, .. } = &obs.installed
    {
        return CertificateState::Damaged { reason };
    }
    CertificateState::Needed
}

fn vendor_progress(
    order: &OrderView,
    status: &CertificateOrderStatus,
    obs: &Observed,
    info_digest: Option<String>,
    info_sent: bool,
) -> VendorProgress {
    let vendor = match &status.order {
        Some(v) if v.id.is_some() => v,
        Some(v) => {
            return VendorProgress::NotBought {
                intent_recorded: !v.name.is_empty(),
                unconfirmed_since: v.purchase_unconfirmed_time,
            };
        }
        None => return VendorProgress::NotBought { intent_recorded: false, unconfirmed_since: None },
    };
    if vendor.rejected_generation == Some(order.generation) {
        return VendorProgress::Rejected;
    }
    if term_renewal_due(status, obs.now) {
        return VendorProgress::TermRenewal { intent_recorded: vendor.term_renewal_requested_time.is_some() };
    }
    if !info_sent {
        return VendorProgress::InfoToSend { digest: info_digest };
    }
    if order.spec.product.type_.needs_organization_review()
        && let Some(need) = letter_need(vendor, &obs.letter)
    {
        return VendorProgress::Letter(need);
    }
    VendorProgress::AtVendor(vendor.stage)
}

fn letter_need(vendor: &VendorOrder, letter: &LetterObs) -> Option<LetterNeed> {
    match letter {
        LetterObs::Present { digest } if vendor.documents_digest.as_deref() != Some(digest.as_str()) => {
            Some(LetterNeed::Upload { digest: digest.clone(), first: vendor.documents_digest.is_none() })
        }
        LetterObs::Missing(_) | LetterObs::Invalid(_) if vendor.documents_digest.is_none() => {
            Some(LetterNeed::Missing { template_offered: vendor.letter_template.is_some() })
        }
        _ => None,
    }
}

/// Whether the installed certificate is the one the spec wants and not yet due for renewal.
pub(super) fn installed_is_current(order: &OrderView, status: &CertificateOrderStatus, obs: &Observed) -> bool {
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
