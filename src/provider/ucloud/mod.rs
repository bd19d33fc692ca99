//! UCloud USSL: the vendor behind the reference flow. The client signs every call with the
//! account's key pair (read from a Secret, never logged); this module turns an order's steps into
//! USSL actions and the vendor's answers into the lifecycle's terms.
//!
//! Buying twice is prevented by looking before buying: `PurchaseCertificate` takes the product's
//! name, not one of ours, so a purchase lost in a crash is found by `GetCertificateList` as an
//! order of the same product, created after the purchase intent was recorded, that no info has
//! been sent for yet. One such order is adopted; several make the order stop and ask a person.
//! The lookup happens only when a purchase may have been made: after a restart, or after a
//! purchase call whose answer was lost; a first attempt buys without looking. It reads every page
//! of the list, and while it reads, no purchase call of this provider is in flight (a lock that
//! purchases share and lookups hold alone), so an order never adopts one another order is being
//! answered about. When nothing is found the purchase stays unconfirmed: the order keeps looking
//! and buys again only when a person asks or `buyAgainAfter` has passed — a vendor may list a new
//! order only some time after it was bought.

pub mod client;
mod setup;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use serde_json::{Value, json};

use super::{AccountState, OrderContext, ProviderError, Vendor, VendorFile, txt_record_name};
use crate::api::{
    Applicant, CertificateOrderSpec, DnsRecordType, NamespacedSecretRef, Organization, SubmittedInfo, UcloudDefaults,
    UcloudProviderSpec, ValidationMethod, VendorStage,
};
use crate::lifecycle::{ChallengeSpec, Timing, VendorView, parse_go_duration};
pub use client::{Client, Credentials};
pub use setup::{build, read_credentials};

/// The label of the TXT records USSL asks for when `GetDVAuthInfo` names no record:
/// `_dnsauth.<domain>`.
pub const DNS_LABEL: &str = "_dnsauth";
/// Default API endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://api.ucloud.cn";
/// Default rate of calls, shared by every order of one provider.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 5;
/// How often the credentials Secret is read again while UCloud refuses the account.
pub const CREDENTIALS_REREAD: Duration = Duration::from_secs(5);
/// Orders asked for per page of GetCertificateList, and the most pages read in one lookup
/// (10,000 orders of one brand).
const LIST_PAGE_SIZE: usize = 100;
const LIST_MAX_PAGES: usize = 100;
/// How far the vendor's clock may be behind ours when matching a lost purchase by time.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(10);

pub struct UcloudProvider {
    client: Client,
    review_poll: Option<Duration>,
    validation_poll: Option<Duration>,
    /// How long an unconfirmed purchase is looked for before buying again; `None`: never.
    buy_again_after: Option<Duration>,
    /// CA certificates (PEM) an issued chain must lead to: the web's roots and `caBundle`.
    trust: Vec<String>,
    /// The Secret holding the key pair (`spec.ucloud.credentialsSecretRef`).
    credentials_secret: NamespacedSecretRef,
    /// When the credentials Secret was last read again after a refusal.
    credentials_read: std::sync::Mutex<Option<std::time::Instant>>,
    /// Claims and the purchase lock, shared with every provider of the same UCloud account (see
    /// [`account_key`]).
    account: std::sync::Arc<crate::provider::registry::Account>,
    /// The company and applicant orders fall back to (`spec.ucloud.defaults`).
    defaults: Box<UcloudDefaults>,
}

/// Which UCloud account a provider buys with: endpoint, project and public key (hashed). Providers
/// with the same key see the same orders at UCloud.
pub fn account_key(spec: &UcloudProviderSpec, credentials: &Credentials) -> String {
    use sha2::Digest;
    let endpoint = spec.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let project = spec.project_id.as_deref().unwrap_or_default();
    let text = format!("{endpoint}\n{project}\n{}", credentials.public_key);
    format!("ucloud:{}", hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16]))
}

impl UcloudProvider {
    /// `secret` names the credentials Secret (`namespace/name`) in messages.
    pub fn new(
        spec: &UcloudProviderSpec,
        credentials: Credentials,
        secret: String,
        account: std::sync::Arc<crate::provider::registry::Account>,
    ) -> Result<UcloudProvider, ProviderError> {
        let interval = |field: &str, text: &Option<String>| -> Result<Option<Duration>, ProviderError> {
            match text {
                None => Ok(None),
                Some(t) => parse_go_duration(t).map(Some).ok_or_else(|| {
                    ProviderError::permanent(format!("spec.ucloud.{field} {t:?} is not a duration such as 10m"))
                }),
            }
        };
        let review_poll = interval("reviewPollInterval", &spec.review_poll_interval)?;
        let validation_poll = interval("validationPollInterval", &spec.validation_poll_interval)?;
        let buy_again_after = interval("buyAgainAfter", &spec.buy_again_after)?;
        let endpoint = spec.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        let client = Client::new(
            endpoint,
            spec.project_id.clone(),
            credentials,
            secret,
            spec.requests_per_second.unwrap_or(DEFAULT_REQUESTS_PER_SECOND),
        )
        .map_err(ProviderError::permanent)?;
        Ok(UcloudProvider {
            client,
            review_poll,
            validation_poll,
            buy_again_after,
            trust: trust_anchors(spec.ca_bundle.as_deref()),
            credentials_secret: spec.credentials_secret_ref.clone(),
            credentials_read: Default::default(),
            account,
            defaults: Box::new(spec.defaults.clone().unwrap_or_default()),
        })
    }

    /// Why UCloud refuses this account now (credentials or permissions), if it does.
    pub fn refused(&self) -> Option<String> {
        self.client.refused()
    }

    /// Uses the key pair read again from the Secret.
    pub fn replace_credentials(&self, credentials: Credentials) {
        self.client.replace_credentials(credentials)
    }

    /// Whether to read the credentials Secret again now: while UCloud refuses the account, at
    /// most once per [`CREDENTIALS_REREAD`], however many orders retry.
    pub fn reread_credentials_due(&self) -> bool {
        let mut last = self.credentials_read.lock().expect("credentials lock");
        if last.is_some_and(|t| t.elapsed() < CREDENTIALS_REREAD) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    fn id(ctx: &OrderContext<'_>) -> Result<i64, ProviderError> {
        let id = ctx
            .vendor
            .id
            .as_deref()
            .ok_or_else(|| ProviderError::retryable("the vendor order id is not recorded yet"))?;
        id.parse().map_err(|_| {
            ProviderError::permanent(format!("the recorded vendor order id {id:?} is not a UCloud certificate id"))
        })
    }

    fn product(ctx: &OrderContext<'_>) -> Result<(String, String), ProviderError> {
        let product = &ctx.spec.product;
        match (product.brand.as_deref(), product.name.as_deref()) {
            (Some(brand), Some(name)) if !brand.is_empty() && !name.is_empty() => {
                Ok((brand.to_string(), name.to_string()))
            }
            _ => Err(ProviderError::permanent(
                "UCloud needs spec.product.brand and spec.product.name: a CertificateBrand and CertificateName from ListCertificateCommodity (for example TrustAsia / TrustAsiaDVG5)",
            )),
        }
    }

    /// Whether an unconfirmed purchase that was not found may be made again: a person asked
    /// (`certorder buy-again`), or `buyAgainAfter` has passed since the doubt began. A purchase
    /// that was never in doubt (this process restarted before it knew) counts from now.
    fn may_buy_again(&self, ctx: &OrderContext<'_>) -> bool {
        if ctx.buy_again.is_some() {
            return true;
        }
        match (self.buy_again_after, ctx.vendor.purchase_unconfirmed_time) {
            (Some(window), Some(since)) => ctx.now - since >= chrono::Duration::from_std(window).unwrap_or_default(),
            _ => false,
        }
    }

    async fn find_lost_purchase(
        &self,
        ctx: &OrderContext<'_>,
        brand: &str,
        name: &str,
        claims: &BTreeMap<String, String>,
    ) -> Result<Option<String>, ProviderError> {
        let Some(intent) = ctx.vendor.purchase_requested_time else {
            return Ok(None);
        };
        let _alone = self.account.buying.write().await;
        let mut listed = Vec::new();
        for page in 1.. {
            let answer = self
                .client
                .call(
                    "GetCertificateList",
                    params(json!({"Mode": "purchase", "Brand": brand, "Sort": "2", "Page": page, "PageSize": LIST_PAGE_SIZE})),
                )
                .await?;
            let items = wire::certificate_list(&answer);
            let total = wire::int(&answer, "TotalCount").unwrap_or_default().max(0) as usize;
            let done = items.len() < LIST_PAGE_SIZE || listed.len() + items.len() >= total || page >= LIST_MAX_PAGES;
            listed.extend(items);
            if done {
                break;
            }
        }
        let since = (intent - CLOCK_SKEW).timestamp();
        let mut claimed = self.account.claimed.lock().expect("claims lock");
        let taken = |id: &String| {
            let owner = claims.get(id).or_else(|| claimed.get(id));
            owner.is_some_and(|uid| uid != ctx.uid)
        };
        let mut candidates: Vec<wire::ListedCertificate> = listed
            .into_iter()
            .filter(|c| lost_purchase_candidate(c, name, since, ctx.domains))
            .filter(|c| c.id.as_ref().is_some_and(|id| !taken(id)))
            .collect();
        // One already filled in with this order's domains is this order's. Otherwise orders of
        // one product with nothing filled in are interchangeable: when several purchases were
        // lost at once (a crash amid concurrent buying), each order takes the oldest one no
        // other order holds.
        candidates.sort_by_key(|c| {
            (!holds_domains(c, ctx.domains), c.create_time, c.id.as_ref().and_then(|id| id.parse::<i64>().ok()))
        });
        let found = candidates.into_iter().next().and_then(|c| c.id);
        if let Some(id) = &found {
            claimed.insert(id.clone(), ctx.uid.to_string());
        }
        Ok(found)
    }

    /// The company and applicant `ComplementCSRInfo` sends, which its page requires for every
    /// order, DV included: the order's own, else this provider's defaults; `division` and `title`
    /// an order leaves out come from the defaults too. Nothing the CA reads is made up: when a
    /// required value is in neither, the order is refused, naming the fields to set.
    pub fn applicant_info(
        &self,
        spec: &CertificateOrderSpec,
    ) -> Result<(BTreeMap<String, Value>, SubmittedInfo), ProviderError> {
        let provider = &spec.provider_ref.name;
        let defaults = &self.defaults;
        let org: Option<Organization> = match (&spec.organization, &defaults.organization) {
            (Some(own), fallback) => {
                let mut own = own.clone();
                if own.division.is_none() {
                    own.division = fallback.as_ref().and_then(|d| d.division.clone());
                }
                Some(own)
            }
            (None, Some(d)) => Some(d.clone().into()),
            (None, None) => None,
        };
        let applicant: Option<Applicant> = match (&spec.applicant, &defaults.applicant) {
            (Some(own), fallback) => {
                let mut own = own.clone();
                if own.title.is_none() {
                    own.title = fallback.as_ref().and_then(|d| d.title.clone());
                }
                Some(own)
            }
            (None, Some(d)) => Some(d.clone().into()),
            (None, None) => None,
        };
        let mut missing = Vec::new();
        let mut need = |field: &str| {
            missing.push(format!("spec.{field} (or spec.ucloud.defaults.{field} on provider {provider})"));
        };
        match &org {
            None => need("organization"),
            Some(o) if o.division.is_none() => need("organization.division"),
            Some(_) => {}
        }
        match &applicant {
            None => need("applicant"),
            Some(a) if a.title.is_none() => need("applicant.title"),
            Some(_) => {}
        }
        let (Some(org), Some(applicant)) = (org, applicant) else {
            return Err(missing_info(&missing));
        };
        let (Some(division), Some(title)) = (org.division.clone(), applicant.title.clone()) else {
            return Err(missing_info(&missing));
        };
        let mut p = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            p.insert(k.to_string(), Value::String(v.to_string()));
        };
        put("CompanyName", &org.name);
        put("CompanyAddress", &org.address);
        put("CompanyRegion", &org.region);
        put("CompanyCity", &org.city);
        put("CompanyCountry", &org.country);
        put("CompanyDivision", &division);
        put("CompanyPhone", &org.phone);
        for (k, v) in [
            ("CompanyPostalCode", &org.postal_code),
            ("CompanyType", &org.type_),
            ("CompanyCodeType", &org.code_type),
            ("CompanyCode", &org.code),
        ] {
            if let Some(v) = v {
                put(k, v);
            }
        }
        put("AdminName", &applicant.name);
        put("AdminPhone", &applicant.phone);
        put("AdminEmail", &applicant.email);
        put("AdminTitle", &title);
        let submitted =
            SubmittedInfo { company_name: org.name, applicant_name: applicant.name, applicant_email: applicant.email };
        Ok((p, submitted))
    }
}

#[async_trait::async_trait]
impl Vendor for UcloudProvider {
    /// `PurchaseCertificate` takes the product's name, not one of ours: a purchase must be
    /// recorded as intended before it is made, and is found by listing after a crash.
    fn purchase_is_idempotent(&self) -> bool {
        false
    }

    /// Finds a purchase an earlier attempt made (see the module docs), or buys.
    async fn purchase(
        &self,
        ctx: &OrderContext<'_>,
        claims: &BTreeMap<String, String>,
    ) -> Result<String, ProviderError> {
        let (brand, name) = Self::product(ctx)?;
        // What ComplementCSRInfo will require must be there before money is spent on the order.
        self.applicant_info(ctx.spec)?;
        // Only a purchase that may have been made before (by an earlier process, or a call
        // whose answer was lost) is looked for: a first attempt never adopts someone else's order.
        if ctx.may_have_bought {
            if let Some(id) = self.find_lost_purchase(ctx, &brand, &name, claims).await? {
                tracing::info!(vendor_id = %id, "found the vendor order an earlier attempt bought; not buying again");
                return Ok(id);
            }
            if !self.may_buy_again(ctx) {
                return Err(ProviderError::outcome_unknown(format!(
                    "no {brand} {name} order bought since the purchase was decided is listed by GetCertificateList yet"
                )));
            }
            tracing::warn!("buying again: the unconfirmed purchase was not found and buying again is allowed");
        }
        let _buying = self.account.buying.read().await;
        let params = params(json!({
            "CertificateBrand": brand,
            "CertificateName": name,
            "DomainsCount": ctx.domains.len(),
            "ValidYear": ctx.spec.product.validity_years.to_string(),
        }));
        let answer = self.client.call("PurchaseCertificate", params).await?;
        let id = wire::purchased_id(&answer).ok_or_else(|| {
            // Bought, but the id is unreadable: the next attempt finds it by listing.
            ProviderError::outcome_unknown(
                "UCloud answered PurchaseCertificate without a CertificateID; looking the order up on the next attempt",
            )
        })?;
        self.account.claimed.lock().expect("claims lock").insert(id.clone(), ctx.uid.to_string());
        Ok(id)
    }

    /// Renews the purchased term (`RenewCertificateOrder`), once: when an earlier attempt may have
    /// renewed it (its answer was lost, or the operator restarted), the order's `OrderInfo` is
    /// looked at first, and a renewal paid since the decision counts as this one.
    async fn renew_term(&self, ctx: &OrderContext<'_>) -> Result<(), ProviderError> {
        let id = Self::id(ctx)?;
        let (brand, name) = Self::product(ctx)?;
        if let Some(decided) = ctx.vendor.term_renewal_requested_time {
            let answer = self.client.call("GetCertificateDetailInfo", params(json!({"CertificateID": id}))).await?;
            let since = (decided - CLOCK_SKEW).timestamp();
            // The first entry is the purchase itself.
            if wire::paid_times(&answer).iter().skip(1).any(|t| *t >= since) {
                tracing::info!(vendor_id = id, "the term was renewed by an earlier attempt; not renewing again");
                return Ok(());
            }
        }
        let domains_count = ctx.vendor.domains_count.map_or(ctx.domains.len(), |n| n as usize);
        self.client
            .call(
                "RenewCertificateOrder",
                params(json!({
                    "CertificateID": id,
                    "CertificateBrand": brand,
                    "CertificateName": name,
                    "DomainsCount": domains_count,
                    "ValidYear": ctx.spec.product.validity_years,
                })),
            )
            .await?;
        Ok(())
    }

    /// Sends domains, company, applicant and the operator's own CSR (`CSROnline=0`). After an
    /// issuance, the same purchase is re-issued with the new CSR instead. Answers who the vendor
    /// was told the order is for.
    async fn submit_info(&self, ctx: &OrderContext<'_>, csr_pem: &str) -> Result<Option<SubmittedInfo>, ProviderError> {
        let id = Self::id(ctx)?;
        let method = match ctx.spec.domain_validation.method {
            ValidationMethod::DNS => "DNS",
            ValidationMethod::HTTP => "FILE",
        };
        if ctx.vendor.issuances > 0 {
            let p = params(
                json!({"CertificateID": id, "CSROnline": "0", "CSR": csr_pem, "Domains": ctx.domains.join(",")}),
            );
            self.client.call("ReIssueCertificateCSRInfo", p).await?;
            return Ok(None);
        }
        let (info, submitted) = self.applicant_info(ctx.spec)?;
        let mut p = params(json!({
            "CertificateID": id,
            "Domains": ctx.domains.join(","),
            "CSROnline": 0,
            "CSR": csr_pem,
            "DVAuthMethod": method,
        }));
        p.extend(info);
        self.client.call("ComplementCSRInfo", p).await?;
        Ok(Some(submitted))
    }

    /// Uploads the letter, base64-encoded.
    async fn upload_letter(
        &self,
        ctx: &OrderContext<'_>,
        letter: &[u8],
        _file_name: &str,
    ) -> Result<(), ProviderError> {
        let id = Self::id(ctx)?;
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, letter);
        self.client.call("UploadConfirmLetter", params(json!({"CertificateID": id, "ConfirmLetter": encoded}))).await?;
        Ok(())
    }

    /// The confirmation-letter template the user fills in and stamps.
    async fn letter_template(&self, ctx: &OrderContext<'_>) -> Result<Option<VendorFile>, ProviderError> {
        let id = Self::id(ctx)?;
        let answer = self.client.call("DownloadConfirmLetterTemp", params(json!({"CertificateID": id}))).await?;
        let url = wire::letter_template_url(&answer).ok_or_else(|| {
            ProviderError::retryable("UCloud answered DownloadConfirmLetterTemp without a FileUrl; retrying")
        })?;
        let data = self.client.fetch(&url, "confirmation letter template").await?;
        let file_name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|n| !n.is_empty() && n.contains('.'))
            .unwrap_or("confirmation-letter-template.docx")
            .to_string();
        Ok(Some(VendorFile { file_name, data }))
    }

    /// The order's state and, while the CA validates (or reviews) it, the validations it asks for.
    async fn poll(&self, ctx: &OrderContext<'_>) -> Result<VendorView, ProviderError> {
        let id = Self::id(ctx)?;
        let answer = self.client.call("GetCertificateDetailInfo", params(json!({"CertificateID": id}))).await?;
        let detail = wire::detail(&answer);
        let code = detail.state_code.clone().unwrap_or_default();
        let stage = stage_of(&code);
        let state = if code.is_empty() {
            format!("(no StateCode; State {:?})", detail.state.clone().unwrap_or_default())
        } else {
            code.clone()
        };
        let challenges = match stage {
            VendorStage::OrganizationReview | VendorStage::DomainValidation => {
                match self.client.call("GetDVAuthInfo", params(json!({"CertificateID": id}))).await {
                    Ok(answer) => challenges(&answer, ctx.domains),
                    Err(e) if e.retryable => return Err(e),
                    // Not available in this state (the review comes first): none yet.
                    Err(e) => {
                        tracing::debug!(error = %e.message, "no validation info yet");
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        let rejection_reason = (stage == VendorStage::Rejected).then(|| {
            detail.reason.clone().or(detail.state.clone()).unwrap_or_else(|| format!("state {code}, no reason given"))
        });
        Ok(VendorView { stage, state, challenges, rejection_reason })
    }

    /// The issued chain, leaf first: inline PEM (newer answers) or the zip at `CertificateUrl`.
    async fn download(&self, ctx: &OrderContext<'_>, _csr_pem: &str) -> Result<String, ProviderError> {
        let id = Self::id(ctx)?;
        let answer = self.client.call("DownloadCertificate", params(json!({"CertificateID": id}))).await?;
        match wire::download(&answer) {
            wire::Download::Inline { certificate, ca } => Ok(join_pem(&[certificate, ca])),
            wire::Download::Url(url) => {
                let zip = self.client.fetch(&url, "certificate zip").await?;
                chain_from_zip(&zip).map_err(|e| {
                    ProviderError::retryable(format!("the certificate zip from UCloud is unusable: {e}; retrying"))
                })
            }
            wire::Download::Nothing => Err(ProviderError::retryable(
                "UCloud answered DownloadCertificate with neither Certificate nor CertificateUrl; retrying",
            )),
        }
    }

    async fn cancel(&self, ctx: &OrderContext<'_>) -> Result<(), ProviderError> {
        let id = Self::id(ctx)?;
        self.client.call("CancelCertificateOrder", params(json!({"CertificateID": id}))).await?;
        Ok(())
    }

    /// The Mozilla root program's CA certificates and `caBundle`.
    fn trust_anchors(&self) -> Vec<String> {
        self.trust.clone()
    }

    /// The vendor takes minutes to validate and days to review; the spec may say otherwise.
    fn timing(&self, base: &Timing) -> Timing {
        Timing {
            review_poll: self.review_poll.unwrap_or(base.review_poll),
            validation_poll: self.validation_poll.unwrap_or(base.validation_poll),
            ..base.clone()
        }
    }

    /// The company and applicant `ComplementCSRInfo` requires, when neither the order nor the
    /// provider's defaults give them.
    fn missing_info(&self, spec: &CertificateOrderSpec) -> Option<String> {
        self.applicant_info(spec).err().map(|e| e.message)
    }

    fn account(&self) -> AccountState {
        match self.refused() {
            Some(why) => AccountState::Refused(why),
            None => AccountState::Accepted,
        }
    }

    async fn reread_credentials(&self, client: &kube::Client) {
        if self.reread_credentials_due()
            && let Ok((credentials, _)) = read_credentials(client, &self.credentials_secret).await
        {
            self.replace_credentials(credentials);
        }
    }
}

/// The refusal of an order UCloud would take money for and then never issue.
fn missing_info(missing: &[String]) -> ProviderError {
    ProviderError::permanent(format!(
        "UCloud requires a company and an applicant for every order (ComplementCSRInfo: CompanyName, CompanyDivision, AdminName, AdminTitle and the rest), and nothing is bought without them: set {}",
        missing.join(" and ")
    ))
}

fn params(value: Value) -> BTreeMap<String, Value> {
    match value {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// Whether a listed order may be the one a lost `PurchaseCertificate` bought: this product,
/// created since the intent, and either nothing sent for it yet or exactly this order's domains
/// (the info went out before the status could record the purchase). An entry without
/// `CreateTime` (the documented list example has none) counts too: adopting an unused order of
/// the same product costs nothing, buying a second one costs money.
pub fn lost_purchase_candidate(c: &wire::ListedCertificate, product: &str, since: i64, domains: &[String]) -> bool {
    let fresh =
        !matches!(stage_of(&c.state_code), VendorStage::Issuable | VendorStage::Rejected | VendorStage::Cancelled);
    (c.mode.is_empty() || c.mode.eq_ignore_ascii_case("purchase"))
        && c.name.eq_ignore_ascii_case(product)
        && (c.domains.trim().is_empty() || holds_domains(c, domains))
        && c.create_time.is_none_or(|t| t >= since)
        && fresh
}

/// Whether the vendor order was filled in with exactly these domains.
fn holds_domains(c: &wire::ListedCertificate, domains: &[String]) -> bool {
    let mut listed: Vec<String> =
        c.domains.split(',').map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()).collect();
    let mut ours: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    listed.sort();
    ours.sort();
    !ours.is_empty() && listed == ours
}

/// The vendor's `StateCode` in the lifecycle's terms. Codes certorder does not know are
/// `Unknown` and shown verbatim, never guessed into a phase.
pub fn stage_of(code: &str) -> VendorStage {
    let c = code.to_ascii_uppercase();
    match c.as_str() {
        "COMPLETED" | "RENEWED" | "ISSUED" => return VendorStage::Issuable,
        "REJECTED" | "SECURITY_REVIEW_FAILED" => return VendorStage::Rejected,
        _ => {}
    }
    if c.contains("CANCEL") || c.contains("REFUND") {
        VendorStage::Cancelled
    } else if c.contains("LETTER") || c.contains("DOCUMENT") || c.contains("MATERIAL") {
        VendorStage::AwaitingDocuments
    } else if c.contains("REVIEW") {
        VendorStage::OrganizationReview
    } else if c.contains("AUTH") || c.contains("VERIFY") || c.contains("VALIDAT") || c.contains("ISSUING") {
        VendorStage::DomainValidation
    } else if c.contains("PENDING") || c.contains("APPLY") {
        VendorStage::AwaitingInfo
    } else {
        VendorStage::Unknown
    }
}

/// The validations `GetDVAuthInfo` asks for, as challenges. DNS keys that are a bare label are
/// made into a name under the domain. `DNS_CNAME` auths are CNAME challenges (record name =
/// `AuthKey`, target = `AuthValue`); every other DNS auth is a TXT record.
pub fn challenges(answer: &Value, domains: &[String]) -> Vec<ChallengeSpec> {
    let (method, auths) = wire::dv_auth(answer);
    auths
        .into_iter()
        .filter(|a| !a.value.is_empty())
        .filter_map(|a| {
            let domain = if a.domain.is_empty() { domains.first().cloned()? } else { a.domain.to_ascii_lowercase() };
            let kind = if a.auth_type.is_empty() { method.clone() } else { a.auth_type.clone() };
            let is_file = kind.to_ascii_uppercase().contains("FILE")
                || (!a.path.is_empty() && !kind.to_ascii_uppercase().contains("DNS"));
            let base = domain.trim_start_matches("*.").to_string();
            if is_file {
                let file = if a.key.is_empty() { "fileauth.txt".to_string() } else { a.key.clone() };
                let path = if a.path.is_empty() {
                    format!("/.well-known/pki-validation/{file}")
                } else if a.path.ends_with(&file) {
                    a.path.clone()
                } else {
                    format!("{}/{file}", a.path.trim_end_matches('/'))
                };
                let path = if path.starts_with('/') { path } else { format!("/{path}") };
                Some(ChallengeSpec {
                    domain,
                    method: ValidationMethod::HTTP,
                    target: format!("http://{base}{path}"),
                    expected_value: a.value,
                    record_type: None,
                })
            } else {
                let target = if a.key.is_empty() {
                    txt_record_name(DNS_LABEL, &domain)
                } else if a.key.contains('.') {
                    a.key.trim_end_matches('.').to_ascii_lowercase()
                } else {
                    format!("{}.{base}", a.key.to_ascii_lowercase())
                };
                // `DNS_CNAME`: the CA looks up a CNAME at the key whose target is the value.
                let cname = kind.to_ascii_uppercase().contains("CNAME");
                let (expected_value, record_type) = match cname {
                    true => (a.value.trim().trim_end_matches('.').to_owned(), Some(DnsRecordType::CNAME)),
                    false => (a.value, None),
                };
                Some(ChallengeSpec { domain, method: ValidationMethod::DNS, target, expected_value, record_type })
            }
        })
        .collect()
}

fn join_pem(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        out.push_str(p);
        out.push('\n');
    }
    out
}

/// Most files read from a certificate zip, and most bytes of one file once uncompressed: a
/// certificate bundle is a few kilobytes, whatever a zip's headers claim.
const ZIP_MAX_FILES: usize = 64;
const ZIP_MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The chain from the older zip answer (Stored or Deflate-compressed): the Nginx bundle when there
/// is one, otherwise every certificate file in the zip, leaf first as listed, without repeats. A
/// file that inflates beyond [`ZIP_MAX_FILE_BYTES`] refuses the zip (a zip bomb is not read).
pub fn chain_from_zip(bytes: &[u8]) -> Result<String, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    if archive.len() > ZIP_MAX_FILES {
        return Err(format!("it holds {} files; a certificate zip has a handful", archive.len()));
    }
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| e.to_string())?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_string();
        let mut data = Vec::new();
        entry.take(ZIP_MAX_FILE_BYTES + 1).read_to_end(&mut data).map_err(|e| format!("{name}: {e}"))?;
        if data.len() as u64 > ZIP_MAX_FILE_BYTES {
            return Err(format!("{name} is larger than {} KiB once uncompressed", ZIP_MAX_FILE_BYTES / 1024));
        }
        let Ok(text) = String::from_utf8(data) else { continue };
        if text.contains("-----BEGIN CERTIFICATE-----") {
            files.push((name, text));
        }
    }
    if let Some((_, nginx)) = files.iter().find(|(n, _)| n.to_ascii_lowercase().starts_with("nginx/")) {
        return Ok(nginx.clone());
    }
    let mut blocks: Vec<String> = Vec::new();
    for (_, text) in &files {
        for block in text.split_inclusive("-----END CERTIFICATE-----") {
            let Some(start) = block.find("-----BEGIN CERTIFICATE-----") else {
                continue;
            };
            let block = block[start..].trim().to_string();
            if !blocks.contains(&block) {
                blocks.push(block);
            }
        }
    }
    if blocks.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(join_pem(&blocks))
}

/// The Mozilla root program's CA certificates (the `webpki-root-certs` crate, as browsers trust
/// them), and the provider's own bundle.
fn trust_anchors(bundle: Option<&str>) -> Vec<String> {
    let roots: Vec<Vec<u8>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| c.as_ref().to_vec()).collect();
    let mut trust = vec![crate::pki::certificates_to_pem(&roots)];
    trust.extend(bundle.map(str::to_string));
    trust
}
