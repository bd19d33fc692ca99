//! Certificate vendors behind one interface, the [`Vendor`] trait; every error says whether a
//! retry can help.
//!
//! # The shape, and why
//!
//! A [`Provider`] is a vendor behind a `Box<dyn Vendor>` (async methods through the `async-trait`
//! crate, already in the build through hickory), with the kind it was built as. A call costs one
//! boxed future next to an HTTP or DNS round trip, and a new vendor adds no match arm anywhere:
//! `Provider`'s methods are where what is the same for every vendor is done once (the letter
//! checks, "only while the info is still to be sent"). An enum with generated arms would save the
//! box and cost a macro that every reader must expand in their head.
//!
//! What keeps a purchase crash-safe stays in plain sight: [`Vendor::purchase`] and
//! [`Vendor::purchase_is_idempotent`] have no default, so every vendor states whether buying twice
//! under one name is impossible (then the purchase need not be recorded before it is made) or, if
//! not, how `purchase` finds a purchase an earlier attempt made (`OrderContext::may_have_bought`,
//! the claims of other orders, the account's purchase lock in [`registry::Account`]). Money and
//! certificates depend on the other methods without a default too (`renew_term`, `cancel`,
//! `trust_anchors`, …); the defaults are what a vendor without the feature does.
//!
//! # A new vendor
//!
//! It implements, in `src/provider/<vendor>/` (its own folder; nothing of it elsewhere in
//! `provider/`):
//! - a struct with `impl Vendor`: [`Vendor::purchase_is_idempotent`], [`Vendor::purchase`],
//!   [`Vendor::submit_info`], [`Vendor::poll`], [`Vendor::download`], [`Vendor::renew_term`],
//!   [`Vendor::cancel`] and [`Vendor::trust_anchors`]; and, when the defaults do not fit,
//!   [`Vendor::timing`], [`Vendor::missing_info`], [`Vendor::upload_letter`],
//!   [`Vendor::letter_template`], [`Vendor::account`] and [`Vendor::reread_credentials`];
//! - `pub async fn build(spec: &<Vendor>ProviderSpec, env: &Env<'_>) -> Result<_, String>`: reads
//!   its credentials Secret (never logged), takes its shared [`registry::Account`] when it has a
//!   vendor account, and refuses a spec it cannot use, saying what to fix;
//! - its conventions: the record names it asks for (with [`txt_record_name`]), its state codes
//!   mapped to [`crate::api::VendorStage`], the wire types of its API.
//!
//! And it touches, outside its folder:
//! - `src/provider/mod.rs`: `pub mod <vendor>;` and one line in [`Provider::build`];
//! - `src/api/provider.rs`: its `<Vendor>ProviderSpec`, one `Option` field of
//!   `ClusterCertificateProviderSpec` and one line in `ClusterCertificateProviderSpec::kinds`
//!   (the admission rule, its message and `status.kind` follow from that list);
//! - `README.md` (its fields and admission messages; tests check both), `crds/` and
//!   `charts/certorder/crds/` (regenerated);
//! - its tests: a simulator under `tests/testbed/src/` and e2e tests in `tests/e2e.rs`.

pub mod letter;
pub mod local;
pub mod registry;
pub mod ucloud;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use letter::VendorFile;

use crate::api::{
    CertificateOrderSpec, CertificateOrderStatus, ClusterCertificateProviderSpec, SubmittedInfo, VendorOrder,
};
use crate::lifecycle::{StepError, Timing, VendorView};
use crate::validation::dns::DnsChecker;
use crate::validation::http::HttpChecker;

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

/// A certificate vendor (or the built-in CA), as the controller's steps use it. `ctx` is the
/// order a call acts on. Methods without a default are the ones money or certificates depend on.
#[async_trait::async_trait]
pub trait Vendor: Send + Sync {
    /// Whether buying twice under one name is impossible by construction, so the purchase need
    /// not be recorded before it is made (saves a status write per order).
    fn purchase_is_idempotent(&self) -> bool;

    /// Finds the vendor order by `ctx.vendor.name`, and buys it only when none exists.
    /// `claims` maps the vendor order ids other CertificateOrders already hold to their uids,
    /// so a purchase found after a crash is never one that belongs to another order (empty when
    /// `purchase_is_idempotent`: such a vendor finds no order it did not make for this one, and
    /// listing every order's claim at each purchase costs thousands of copies at scale).
    async fn purchase(
        &self,
        ctx: &OrderContext<'_>,
        claims: &BTreeMap<String, String>,
    ) -> Result<String, ProviderError>;

    /// Sends domains, company, applicant and the CSR; answers who the vendor was told the order
    /// is for, when it keeps that.
    async fn submit_info(&self, ctx: &OrderContext<'_>, csr_pem: &str) -> Result<Option<SubmittedInfo>, ProviderError>;

    /// Where the order is, and which validations the vendor asks for.
    async fn poll(&self, ctx: &OrderContext<'_>) -> Result<VendorView, ProviderError>;

    /// The issued chain (leaf first) as PEM.
    async fn download(&self, ctx: &OrderContext<'_>, csr_pem: &str) -> Result<String, ProviderError>;

    /// Renews the purchased term (`validityYears` more), once per decision recorded in
    /// `status.order.termRenewalRequestedTime`.
    async fn renew_term(&self, ctx: &OrderContext<'_>) -> Result<(), ProviderError>;

    /// Cancels the vendor order (before issuance).
    async fn cancel(&self, ctx: &OrderContext<'_>) -> Result<(), ProviderError>;

    /// CA certificates an issued chain must lead to.
    fn trust_anchors(&self) -> Vec<String>;

    /// How often to poll. Default: the operator's flags.
    fn timing(&self, base: &Timing) -> Timing {
        base.clone()
    }

    /// What the vendor will require that neither the order nor the provider gives. Default:
    /// nothing (the vendor's answer to the info says what is wrong).
    fn missing_info(&self, spec: &CertificateOrderSpec) -> Option<String> {
        let _ = spec;
        None
    }

    /// Uploads the confirmation letter, which [`letter::check_letter`] has passed. Default: the vendor
    /// takes no letters, and the order is told so.
    async fn upload_letter(&self, ctx: &OrderContext<'_>, letter: &[u8], file_name: &str) -> Result<(), ProviderError> {
        let _ = (ctx, letter);
        Err(ProviderError::permanent(format!(
            "this provider takes no confirmation letter: remove {file_name:?} from spec.documents"
        )))
    }

    /// The confirmation-letter template the vendor offers, for the user to fill in and stamp.
    /// Default: none.
    async fn letter_template(&self, ctx: &OrderContext<'_>) -> Result<Option<VendorFile>, ProviderError> {
        let _ = ctx;
        Ok(None)
    }

    /// What the vendor says of the account the provider buys with. Default: there is none.
    fn account(&self) -> AccountState {
        AccountState::NoAccount
    }

    /// While the vendor refuses the account: reads the credentials again from their Secret (at
    /// most every few seconds, however many orders retry), so fixing the Secret resumes the
    /// orders. Default: nothing to read.
    async fn reread_credentials(&self, client: &kube::Client) {
        let _ = client;
    }
}

/// What the vendor says of a provider's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountState {
    /// The provider has no vendor account (the built-in CA).
    NoAccount,
    Accepted,
    /// The vendor refuses the account (credentials or permissions), and why.
    Refused(String),
}

/// What a vendor's `build` may use: the provider's name, the API client (for its Secrets), the
/// process's DNS and HTTP checkers, and the registry (for the account it shares).
pub struct Env<'a> {
    pub name: &'a str,
    pub client: &'a kube::Client,
    pub dns: &'a Arc<DnsChecker>,
    pub http: &'a Arc<HttpChecker>,
    pub registry: &'a registry::Registry,
}

/// A configured provider, built from a `ClusterCertificateProvider`: its vendor, and its kind.
pub struct Provider {
    kind: &'static str,
    vendor: Box<dyn Vendor>,
    /// The Ready condition this process last wrote for the provider (status, message), which
    /// the provider cache may not show yet.
    reported: std::sync::Mutex<Option<(bool, String)>>,
}

impl Provider {
    /// Builds the vendor the spec's kind names (one line per vendor); `Err` says what to fix.
    pub async fn build(spec: &ClusterCertificateProviderSpec, env: &Env<'_>) -> Result<Provider, String> {
        let name = env.name;
        let kind = spec.kind().map_err(|e| format!("ClusterCertificateProvider {name:?} {e}"))?;
        let vendor: Result<Box<dyn Vendor>, String> = if let Some(ucloud) = &spec.ucloud {
            ucloud::build(ucloud, env).await.map(|v| Box::new(v) as _)
        } else if let Some(local) = &spec.local {
            local::build(local, env).await.map(|v| Box::new(v) as _)
        } else {
            Err(format!("kind {kind} has no vendor in this build of certorder"))
        };
        let vendor = vendor.map_err(|e| format!("ClusterCertificateProvider {name:?}: {e}"))?;
        Ok(Provider { kind, vendor, reported: Default::default() })
    }

    /// The kind, as shown in the provider's status.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// See [`Vendor::purchase_is_idempotent`].
    pub fn purchase_is_idempotent(&self) -> bool {
        self.vendor.purchase_is_idempotent()
    }

    /// See [`Vendor::timing`].
    pub fn timing(&self, base: &Timing) -> Timing {
        self.vendor.timing(base)
    }

    /// See [`Vendor::purchase`].
    pub async fn purchase(
        &self,
        ctx: &OrderContext<'_>,
        claims: &BTreeMap<String, String>,
    ) -> Result<String, ProviderError> {
        self.vendor.purchase(ctx, claims).await
    }

    /// What the vendor will require that neither the order nor the provider gives, while the
    /// info is still to be sent (before buying, or bought but not filled in): nothing is bought
    /// or sent until a change of either supplies it.
    pub fn missing_info(&self, spec: &CertificateOrderSpec, status: &CertificateOrderStatus) -> Option<String> {
        let sent = status.order.as_ref().is_some_and(|o| o.info_digest.is_some() || o.issuances > 0);
        if sent {
            return None;
        }
        self.vendor.missing_info(spec)
    }

    /// See [`Vendor::submit_info`].
    pub async fn submit_info(
        &self,
        ctx: &OrderContext<'_>,
        csr_pem: &str,
    ) -> Result<Option<SubmittedInfo>, ProviderError> {
        self.vendor.submit_info(ctx, csr_pem).await
    }

    /// Uploads the confirmation letter, after the checks every vendor makes (size, file type).
    pub async fn upload_letter(
        &self,
        ctx: &OrderContext<'_>,
        letter: &[u8],
        file_name: &str,
    ) -> Result<(), ProviderError> {
        letter::check_letter(letter, file_name)?;
        self.vendor.upload_letter(ctx, letter, file_name).await
    }

    /// See [`Vendor::poll`].
    pub async fn poll(&self, ctx: &OrderContext<'_>) -> Result<VendorView, ProviderError> {
        self.vendor.poll(ctx).await
    }

    /// See [`Vendor::download`].
    pub async fn download(&self, ctx: &OrderContext<'_>, csr_pem: &str) -> Result<String, ProviderError> {
        self.vendor.download(ctx, csr_pem).await
    }

    /// See [`Vendor::renew_term`].
    pub async fn renew_term(&self, ctx: &OrderContext<'_>) -> Result<(), ProviderError> {
        self.vendor.renew_term(ctx).await
    }

    /// See [`Vendor::cancel`].
    pub async fn cancel(&self, ctx: &OrderContext<'_>) -> Result<(), ProviderError> {
        self.vendor.cancel(ctx).await
    }

    /// See [`Vendor::letter_template`].
    pub async fn letter_template(&self, ctx: &OrderContext<'_>) -> Result<Option<VendorFile>, ProviderError> {
        self.vendor.letter_template(ctx).await
    }

    /// CA certificates an issued chain must lead to, when the provider knows them.
    pub fn trust_anchors(&self) -> Option<Vec<String>> {
        Some(self.vendor.trust_anchors())
    }

    /// See [`Vendor::account`].
    pub fn account(&self) -> AccountState {
        self.vendor.account()
    }

    /// The message of the provider's Ready condition while it is ready.
    pub fn ready_message(&self) -> String {
        format!("{} provider ready", self.kind)
    }

    /// The Ready condition (status, message) this process last wrote for the provider.
    pub fn reported(&self) -> Option<(bool, String)> {
        self.reported.lock().expect("reported lock").clone()
    }

    /// Records the Ready condition just written for the provider.
    pub fn set_reported(&self, ready: bool, message: &str) {
        *self.reported.lock().expect("reported lock") = Some((ready, message.to_string()));
    }

    /// See [`Vendor::reread_credentials`].
    pub async fn reread_credentials(&self, client: &kube::Client) {
        self.vendor.reread_credentials(client).await
    }
}

/// The name `<label>.<domain>` of a TXT record a vendor asks for, a wildcard's under its base name
/// (CAs validate `*.example.com` at `example.com`). The label is the vendor's convention.
pub fn txt_record_name(label: &str, domain: &str) -> String {
    format!("{label}.{}", domain.strip_prefix("*.").unwrap_or(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names() {
        assert_eq!(txt_record_name("_dnsauth", "www.example.com"), "_dnsauth.www.example.com");
        assert_eq!(txt_record_name("_dnsauth", "*.example.com"), "_dnsauth.example.com");
    }
}
