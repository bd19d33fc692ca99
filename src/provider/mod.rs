//! Certificate vendors behind one interface. The CRD's `spec` picks the backend in one place
//! ([`Provider::from_spec`]); every error says whether a retry can help.

pub mod local;
pub mod registry;
pub mod ucloud;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::{CertificateOrderSpec, ClusterCertificateProviderSpec, VendorOrder};
use crate::lifecycle::{StepError, Timing, VendorView};

/// What a provider needs to know about the order it acts on.
#[derive(Clone, Copy, Debug)]
pub struct OrderContext<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: i64,
    pub spec: &'a CertificateOrderSpec,
    /// The spec's domains as ASCII.
    pub domains: &'a [String],
    pub vendor: &'a VendorOrder,
    pub annotations: &'a BTreeMap<String, String>,
    /// A reviewer's decision from `status.approval` (the built-in CA's manual review).
    pub approval: Option<&'a crate::api::Approval>,
    pub now: DateTime<Utc>,
    /// Whether a purchase may already have been made under `vendor.name`: false only when this
    /// process recorded the purchase intent and has not called the vendor to buy since, so a
    /// provider can skip looking for (and never adopt) an order it cannot have bought.
    pub may_have_bought: bool,
    /// A person's `certorder buy-again` request made while the purchase was unconfirmed and not
    /// answered yet: buy even though an earlier purchase may exist.
    pub buy_again: Option<DateTime<Utc>>,
}

/// A provider's refusal or failure: whether a retry can help, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub retryable: bool,
    /// The request may have been carried out although no answer says so (a timeout, a gateway
    /// error, an answer that is not the API's): for a purchase, the money may be spent.
    pub outcome_unknown: bool,
    pub message: String,
}

impl ProviderError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ProviderError { retryable: true, outcome_unknown: false, message: message.into() }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        ProviderError { retryable: false, outcome_unknown: false, message: message.into() }
    }
    /// Retryable, but the request may have been carried out.
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        ProviderError { retryable: true, outcome_unknown: true, message: message.into() }
    }
}

impl From<ProviderError> for StepError {
    fn from(e: ProviderError) -> Self {
        if e.retryable { StepError::transient(e.message) } else { StepError::permanent(e.message) }
    }
}

/// A configured provider, built from a `ClusterCertificateProvider`.
#[allow(clippy::large_enum_variant)] // one per provider for the whole process, behind an Arc
pub enum Provider {
    Local(local::LocalProvider),
    Ucloud(ucloud::UcloudProvider),
}

impl Provider {
    /// The kind, as shown in the provider's status.
    pub fn kind(&self) -> &'static str {
        match self {
            Provider::Local(_) => "local",
            Provider::Ucloud(_) => "ucloud",
        }
    }

    /// Whether buying twice under one name is impossible by construction, so the purchase need
    /// not be recorded before it is made (saves a status write per order).
    pub fn purchase_is_idempotent(&self) -> bool {
        match self {
            Provider::Local(_) => true,
            // The vendor takes a product name, not ours: a purchase must be recorded as intended first.
            Provider::Ucloud(_) => false,
        }
    }

    /// How often to poll: the local CA answers at once, vendors take days.
    pub fn timing(&self, base: &Timing) -> Timing {
        match self {
            Provider::Local(_) => Timing {
                review_poll: base.review_poll.min(std::time::Duration::from_secs(5)),
                validation_poll: base.validation_poll.min(std::time::Duration::from_secs(3)),
                ..base.clone()
            },
            Provider::Ucloud(p) => p.timing(base),
        }
    }

    /// Finds the vendor order by `ctx.vendor.name`, and buys it only when none exists.
    /// `claims` maps the vendor order ids other CertificateOrders already hold to their uids,
    /// so a purchase found after a crash is never one that belongs to another order.
    pub async fn purchase(
        &self,
        ctx: &OrderContext<'_>,
        claims: &BTreeMap<String, String>,
    ) -> Result<String, ProviderError> {
        match self {
            Provider::Local(p) => p.purchase(ctx),
            Provider::Ucloud(p) => p.purchase(ctx, claims).await,
        }
    }

    /// Sends domains, company, applicant and the CSR.
    /// What the vendor will require that neither the order nor the provider gives, while the
    /// info is still to be sent (before buying, or bought but not filled in): nothing is bought
    /// or sent until a change of either supplies it.
    pub fn missing_info(
        &self,
        spec: &crate::api::CertificateOrderSpec,
        status: &crate::api::CertificateOrderStatus,
    ) -> Option<String> {
        let Provider::Ucloud(p) = self else {
            return None;
        };
        let sent = status.order.as_ref().is_some_and(|o| o.info_digest.is_some() || o.issuances > 0);
        if sent {
            return None;
        }
        p.applicant_info(spec).err().map(|e| e.message)
    }

    /// Answers who the vendor was told the order is for, when it keeps that.
    pub async fn submit_info(
        &self,
        ctx: &OrderContext<'_>,
        csr_pem: &str,
    ) -> Result<Option<crate::api::SubmittedInfo>, ProviderError> {
        match self {
            Provider::Local(p) => p.submit_info(ctx, csr_pem).map(|()| None),
            Provider::Ucloud(p) => p.submit_info(ctx, csr_pem).await,
        }
    }

    /// Uploads the confirmation letter.
    pub async fn upload_letter(
        &self,
        ctx: &OrderContext<'_>,
        letter: &[u8],
        file_name: &str,
    ) -> Result<(), ProviderError> {
        match self {
            Provider::Local(p) => p.upload_letter(ctx, letter, file_name),
            Provider::Ucloud(p) => p.upload_letter(ctx, letter, file_name).await,
        }
    }

    /// Where the order is, and which validations the vendor asks for.
    pub async fn poll(&self, ctx: &OrderContext<'_>) -> Result<VendorView, ProviderError> {
        match self {
            Provider::Local(p) => p.poll(ctx).await,
            Provider::Ucloud(p) => p.poll(ctx).await,
        }
    }

    /// The issued chain (leaf first) as PEM.
    pub async fn download(&self, ctx: &OrderContext<'_>, csr_pem: &str) -> Result<String, ProviderError> {
        match self {
            Provider::Local(p) => p.download(ctx, csr_pem).await,
            Provider::Ucloud(p) => p.download(ctx).await,
        }
    }

    /// Renews the purchased term (`validityYears` more), once per decision recorded in
    /// `status.order.termRenewalRequestedTime`. The built-in CA sells no terms: nothing to do.
    pub async fn renew_term(&self, ctx: &OrderContext<'_>) -> Result<(), ProviderError> {
        match self {
            Provider::Local(_) => Ok(()),
            Provider::Ucloud(p) => p.renew_term(ctx).await,
        }
    }

    /// Cancels the vendor order (before issuance).
    pub async fn cancel(&self, ctx: &OrderContext<'_>) -> Result<(), ProviderError> {
        match self {
            Provider::Local(_) => {
                let _ = ctx;
                Ok(())
            }
            Provider::Ucloud(p) => p.cancel(ctx).await,
        }
    }

    /// The confirmation-letter template the vendor offers, for the user to fill in and stamp;
    /// `None` when the provider has none.
    pub async fn letter_template(&self, ctx: &OrderContext<'_>) -> Result<Option<ucloud::VendorFile>, ProviderError> {
        match self {
            Provider::Local(_) => Ok(None),
            Provider::Ucloud(p) => p.letter_template(ctx).await.map(Some),
        }
    }

    /// CA certificates an issued chain must lead to, when the provider knows them.
    pub fn trust_anchors(&self) -> Option<Vec<String>> {
        match self {
            Provider::Local(p) => Some(vec![p.ca_pem().to_string()]),
            Provider::Ucloud(p) => Some(p.trust().to_vec()),
        }
    }
}

/// Which kind a provider spec asks for, or what to fix.
pub fn kind_of(spec: &ClusterCertificateProviderSpec) -> Result<&'static str, String> {
    match (&spec.local, &spec.ucloud) {
        (Some(_), None) => Ok("local"),
        (None, Some(_)) => Ok("ucloud"),
        (Some(_), Some(_)) => Err("the provider sets two kinds: set only one of spec.local and spec.ucloud".into()),
        (None, None) => Err("the provider sets no kind: set spec.local or spec.ucloud".into()),
    }
}
