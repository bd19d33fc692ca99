//! Act: one lifecycle step's I/O. A step reads what [`StepInput`] bundles and returns what came of
//! it ([`Done`]): the outcome the lifecycle absorbs into status, and what the controller learnt
//! besides, which the controller records in the observation and the process memory
//! ([`Observation::record`]). No step changes either itself.
//!
//! Every action is idempotent: a re-run after a crash at any point converges (keys are created,
//! never overwritten; purchases look their name up first; the TLS Secret is only written with a
//! verified certificate).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::answer::Answer;
use super::classify;
use super::context::{Context, Memory};
use super::objects::{self, pending_key_secret_name};
use super::observe::{Learnt, Observation, certificate_info, key_algorithm, secret_field};
use super::secrets::{Ownership, SecretFacts};
use super::tenancy;
use crate::api::{
    CertificateInfo, CertificateOrder, Challenge, MANAGER, PublishedValidation, RotationPolicy, SelfCheck,
    ValidationMethod,
};
use crate::lifecycle::{InstalledObs, Outcome, Step, StepError};
use crate::pki::{self, KeyAlgorithm, PrivateKey, TLS_KEY};
use crate::provider::{OrderContext, Provider};

/// Everything a step reads.
pub struct StepInput<'a> {
    pub ctx: &'a Context,
    pub order: &'a CertificateOrder,
    pub provider: &'a Provider,
    /// The order as the provider is told about it.
    pub order_ctx: OrderContext<'a>,
    /// `status.challenges` and `status.published`.
    pub challenges: &'a [Challenge],
    pub published: Option<&'a PublishedValidation>,
    pub observation: &'a Observation,
    /// The order's process memory before the step.
    pub memory: Memory,
}

/// What came of a step: the outcome for status, and what the controller learnt besides.
pub struct Done {
    pub outcome: Outcome,
    pub learnt: Learnt,
    /// The step found the order may not do what it would, as a check before it would have
    /// ([`tenancy::refusal`]); nothing was done, and the outcome is not absorbed.
    pub refused: Option<String>,
}

impl Done {
    fn with(outcome: Outcome, learnt: Learnt) -> Done {
        Done { outcome, learnt, refused: None }
    }

    fn refused(step: &'static str, why: String) -> Done {
        Done { outcome: failed(step, StepError::transient(why.clone())), learnt: Learnt::Nothing, refused: Some(why) }
    }
}

impl From<Outcome> for Done {
    fn from(outcome: Outcome) -> Done {
        Done::with(outcome, Learnt::Nothing)
    }
}

fn failed(step: &'static str, error: impl Into<StepError>) -> Outcome {
    Outcome::Failed { step, error: error.into() }
}

fn api_failed(step: &'static str, e: kube::Error) -> Outcome {
    failed(step, classify("Kubernetes API", e))
}

fn key_gone(step: &'static str) -> Outcome {
    failed(step, StepError::transient("the private key Secret disappeared"))
}

/// Runs one step.
pub async fn act(step: &Step, input: &StepInput<'_>) -> Done {
    let name = step.name();
    match step {
        Step::GenerateKey => generate_key(input, name).await,
        Step::RecordPurchaseIntent => Done::with(Outcome::PurchaseIntentRecorded, Learnt::PurchaseIntent),
        Step::Purchase => purchase(input, name).await,
        Step::RecordTermRenewalIntent => Outcome::TermRenewalIntentRecorded.into(),
        Step::RenewTerm => match input.provider.renew_term(&input.order_ctx).await {
            Ok(()) => Outcome::TermRenewed.into(),
            Err(e) => failed(name, e).into(),
        },
        Step::SubmitInfo { digest } => submit_info(input, name, digest).await.into(),
        Step::UploadLetter { digest } => upload_letter(input, name, digest).await.into(),
        Step::OfferLetterTemplate => offer_letter_template(input, name).await.into(),
        Step::Poll => poll(input, name).await,
        Step::PublishChallenges { digest } => publish(input, name, digest).await,
        Step::Unpublish => {
            let ctx = input.ctx;
            match super::publish::unpublish(ctx, input.order, input.published).await {
                Ok(()) => Outcome::Unpublished.into(),
                Err(e) => failed(name, e).into(),
            }
        }
        Step::SelfCheck => self_check(input).await,
        Step::Install => install(input, name).await,
        Step::Reinstall => reinstall(input, name).await,
        Step::AdoptInstalled => match &input.observation.observed.installed {
            InstalledObs::Certificate { info, .. } => Outcome::Installed(info.clone()).into(),
            _ => failed(name, StepError::transient("the TLS Secret changed while adopting it")).into(),
        },
        Step::DiscardPendingKey => discard_pending_key(input, name).await,
    }
}

/// Buys once: a purchase this process made and could not record yet is recorded instead, and the
/// provider is told whether an earlier attempt may have bought (`OrderContext::may_have_bought`).
async fn purchase(input: &StepInput<'_>, step: &'static str) -> Done {
    let order_ctx = &input.order_ctx;
    let memory = &input.memory;
    let purchased =
        |id| Outcome::Purchased { id, buy_again: order_ctx.buy_again, domains_count: order_ctx.domains.len() as u32 };
    if let Some(id) = &memory.bought {
        // Bought by this process, but the status write failed: record it, buy nothing.
        return purchased(id.clone()).into();
    }
    // `observe::before_step` noted in memory that the vendor is being called.
    let may_have_bought = !memory.purchase_intent_here || memory.purchase_called;
    // A vendor whose purchase is idempotent never adopts a vendor order it did not make for this
    // order, so the claims (a pass over every order) are not gathered for it.
    let claims = match input.provider.purchase_is_idempotent() {
        true => BTreeMap::new(),
        false => input.ctx.vendor_claims(&input.order.spec.provider_ref.name),
    };
    match input.provider.purchase(&OrderContext { may_have_bought, ..*order_ctx }, &claims).await {
        Ok(id) => Done::with(purchased(id.clone()), Learnt::Bought(id)),
        Err(e) if e.outcome_unknown => Outcome::PurchaseUnconfirmed { reason: e.message }.into(),
        // Refused outright: nothing was bought by this attempt.
        Err(e) if !may_have_bought => Done::with(failed(step, e), Learnt::PurchaseRefused),
        Err(e) => failed(step, e).into(),
    }
}

async fn submit_info(input: &StepInput<'_>, step: &'static str, digest: &str) -> Outcome {
    let Some(key) = &input.observation.pending_key else { return key_gone(step) };
    let csr = match pki::build_csr(key, input.order_ctx.domains) {
        Ok(csr) => csr,
        Err(e) => return failed(step, StepError::permanent(format!("cannot build the CSR: {e}"))),
    };
    match input.provider.submit_info(&input.order_ctx, &csr).await {
        Ok(submitted) => Outcome::InfoSubmitted { digest: digest.to_string(), submitted },
        Err(e) => failed(step, e),
    }
}

async fn upload_letter(input: &StepInput<'_>, step: &'static str, digest: &str) -> Outcome {
    let Some((bytes, file_name)) = &input.observation.letter else {
        return failed(step, StepError::transient("the confirmation letter disappeared"));
    };
    match input.provider.upload_letter(&input.order_ctx, bytes, file_name).await {
        Ok(()) => Outcome::LetterUploaded { digest: digest.to_string() },
        Err(e) => failed(step, e),
    }
}

/// Largest template put in a ConfigMap (the API server's limit is 1 MiB for the whole object).
const MAX_TEMPLATE_BYTES: usize = 900 * 1024;

/// Puts the vendor's confirmation-letter template in a ConfigMap owned by the order, so the user
/// can fill it in and stamp it. A vendor that offers none (or refuses for good) is not an error:
/// the order keeps waiting for the letter.
async fn offer_letter_template(input: &StepInput<'_>, step: &'static str) -> Outcome {
    let none = Outcome::LetterTemplateOffered { config_map: None };
    let file = match input.provider.letter_template(&input.order_ctx).await {
        Ok(Some(file)) if file.data.len() <= MAX_TEMPLATE_BYTES => file,
        Ok(Some(file)) => {
            tracing::warn!(
                bytes = file.data.len(),
                "the vendor's letter template is too big for a ConfigMap; not offering it"
            );
            return none;
        }
        Ok(None) => return none,
        Err(e) if e.retryable => return failed(step, e),
        Err(e) => {
            tracing::warn!(error = %e.message, "the vendor gave no letter template");
            return none;
        }
    };
    let config_map = objects::letter_template(input.order, &file.file_name, &file.data);
    let name = config_map.name_any();
    let api: Api<ConfigMap> = Api::namespaced(input.ctx.client.clone(), input.order_ctx.namespace);
    match api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&config_map)).await {
        Ok(_) => Outcome::LetterTemplateOffered { config_map: Some(name) },
        Err(e) => api_failed(step, e),
    }
}

/// Asks the vendor where the order is; the time of asking is learnt whatever the answer.
async fn poll(input: &StepInput<'_>, step: &'static str) -> Done {
    let result = input.provider.poll(&input.order_ctx).await;
    let learnt = Learnt::Polled { at: input.order_ctx.now };
    match result {
        Ok(view) => Done::with(Outcome::Polled(view), learnt),
        Err(e) => Done::with(failed(step, e), learnt),
    }
}

async fn publish(input: &StepInput<'_>, step: &'static str, digest: &str) -> Done {
    let (ctx, order) = (input.ctx, input.order);
    let defaults = ctx.http_defaults(&order.spec.provider_ref.name);
    match super::publish::publish(ctx, order, input.challenges, digest, &defaults, input.published).await {
        Ok(published) => Done::with(Outcome::Published(published), Learnt::Published),
        Err(e) => failed(step, e).into(),
    }
}

/// Deletes the pending key's Secret (gone already is done).
async fn discard_pending_key(input: &StepInput<'_>, step: &'static str) -> Done {
    let (order, secrets) = (input.order, &input.ctx.secrets);
    let (namespace, name) = (order.namespace().unwrap_or_default(), pending_key_secret_name(&order.name_any()));
    let api: Api<Secret> = Api::namespaced(input.ctx.client.clone(), &namespace);
    // Announced before the call: the watch may report the deletion before the call returns.
    secrets.deleting(&namespace, &name);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => secrets.not_deleted(&namespace, &name),
        Err(e) => {
            secrets.not_deleted(&namespace, &name);
            return api_failed(step, e).into();
        }
    }
    Done::with(Outcome::PendingKeyDiscarded, Learnt::PendingKeyDiscarded)
}

/// Creates the pending key Secret. An existing one is kept when it holds a usable key (a crash
/// after creating it); with `rotationPolicy: Never` the installed key is reused.
async fn generate_key(input: &StepInput<'_>, step: &'static str) -> Done {
    let algorithm = key_algorithm(input.order);
    let key = match new_key(input, step, algorithm).await {
        Ok(key) => key,
        Err(failed) => return failed.into(),
    };
    let secret = objects::pending_key_secret(input.order, key.to_pem());
    match create_pending_key(input.ctx, input.order, &secret, key, algorithm).await {
        Ok(PendingKey::Holds(key)) => {
            let name = secret.name_any();
            Done::with(Outcome::KeyGenerated { secret: name.clone() }, Learnt::KeyGenerated { secret: name, key })
        }
        Ok(PendingKey::Refused(why)) => Done::refused(step, why),
        Err(e) => api_failed(step, e).into(),
    }
}

/// The key for the next certificate: the installed one when the spec says to keep it (and it is
/// of the algorithm asked for), else a new one.
async fn new_key(input: &StepInput<'_>, step: &'static str, algorithm: KeyAlgorithm) -> Result<PrivateKey, Outcome> {
    if let (RotationPolicy::Never, Some(key)) =
        (&input.order.spec.private_key.rotation_policy, &input.observation.installed_key)
        && key.algorithm() == algorithm
    {
        return Ok(key.clone());
    }
    // An ECDSA key takes tens of microseconds: less than handing it to a blocking thread costs.
    // An RSA key takes up to seconds, and must not hold up the runtime.
    let generated = match algorithm.rsa_bits() {
        None => pki::generate_key(algorithm),
        Some(_) => match tokio::task::spawn_blocking(move || pki::generate_key(algorithm)).await {
            Ok(generated) => generated,
            Err(e) => return Err(failed(step, StepError::transient(format!("key generation did not finish: {e}")))),
        },
    };
    generated.map_err(|e| failed(step, StepError::permanent(format!("cannot generate a {algorithm} key: {e}"))))
}

/// What creating the pending key's Secret came to.
enum PendingKey {
    /// The Secret holds this key.
    Holds(PrivateKey),
    /// A Secret of that name exists that the order may not take (see `tenancy::pending_key_refusal`).
    Refused(String),
}

/// Creates `secret` holding `key`. One that exists (created before a crash, or the cache is
/// behind) is kept when it is this order's and holds a key of `algorithm`, replaced when it is
/// this order's with another key (the spec changed), and refused when it is not this order's:
/// the create is the only look for it (tenancy's `Lookup::ByCreate`).
async fn create_pending_key(
    ctx: &Context,
    order: &CertificateOrder,
    secret: &Secret,
    key: PrivateKey,
    algorithm: KeyAlgorithm,
) -> Result<PendingKey, kube::Error> {
    let (name, namespace) = (secret.name_any(), secret.namespace().unwrap_or_default());
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let facts = SecretFacts::written(&key, None);
    ctx.secrets.writing(secret, facts.clone());
    match create_reading_metadata(ctx, &namespace, secret).await {
        Ok(created) => {
            ctx.secrets.wrote(&created.metadata, facts);
            tracing::debug!(secret = %name, "created the pending key");
            return Ok(PendingKey::Holds(key));
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            ctx.secrets.not_written(&namespace, &name);
            tracing::debug!(secret = %name, "the pending key's Secret exists");
        }
        Err(e) => {
            ctx.secrets.not_written(&namespace, &name);
            return Err(e);
        }
    }
    let existing = api.get(&name).await?;
    if let Some(why) = tenancy::pending_key_refusal(ctx, order, &Ownership::of(&existing.metadata)) {
        return Ok(PendingKey::Refused(why));
    }
    let usable = secret_field(&existing, TLS_KEY)
        .and_then(|pem| PrivateKey::from_pem(&String::from_utf8_lossy(&pem)).ok())
        .filter(|k| k.algorithm() == algorithm);
    if let Some(existing_key) = usable {
        return Ok(PendingKey::Holds(existing_key));
    }
    let mut replacement = secret.clone();
    replacement.metadata.resource_version = existing.metadata.resource_version.clone();
    api.replace(&name, &PostParams::default(), &replacement).await?;
    Ok(PendingKey::Holds(key))
}

/// Creates `secret`, reading only the metadata of the API server's answer (see `answer`): the
/// answer repeats the key, which `Api::create` would decode for nothing.
async fn create_reading_metadata(
    ctx: &Context,
    namespace: &str,
    secret: &Secret,
) -> Result<Answer<Secret>, kube::Error> {
    let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    let body = serde_json::to_vec(secret).map_err(kube::Error::SerdeError)?;
    let mut request = kube::core::Request::new(Secret::url_path(&(), Some(namespace)))
        .create(&params, body)
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("create");
    ctx.client.request::<Answer<Secret>>(request).await
}

/// Checks every challenge the way the CA will, and records what was seen.
async fn self_check(input: &StepInput<'_>) -> Done {
    let now = input.order_ctx.now;
    let checks = input.challenges.iter().map(|c| async move { (c.domain.clone(), check(input.ctx, c, now).await) });
    let results: Vec<(String, SelfCheck)> = futures::future::join_all(checks).await;
    let all_passed = results.iter().all(|(_, c)| c.passed);
    input.ctx.metrics.self_checks(all_passed);
    Done::with(Outcome::SelfChecked(results), Learnt::SelfChecked { at: now, all_passed })
}

async fn check(ctx: &Context, c: &Challenge, now: DateTime<Utc>) -> SelfCheck {
    match c.method {
        ValidationMethod::DNS => {
            let o = ctx.dns.check_challenge(c).await;
            SelfCheck {
                passed: o.matched,
                seen: o.found.join(", "),
                diagnosis: if o.matched { String::new() } else { o.diagnosis },
                server: (!o.server.is_empty()).then_some(o.server),
                status_code: None,
                redirect_target: None,
                content_length: None,
                last_check_time: now,
            }
        }
        ValidationMethod::HTTP => {
            let o = ctx.http.check(&c.target, &c.expected_value).await;
            SelfCheck {
                passed: o.passed,
                seen: o.first_bytes,
                diagnosis: o.diagnosis,
                server: o.server,
                status_code: o.status_code,
                redirect_target: o.location,
                content_length: o.content_length,
                last_check_time: now,
            }
        }
    }
}

/// Installs the certificate issued for the pending key.
async fn install(input: &StepInput<'_>, step: &'static str) -> Done {
    let Some(key) = input.observation.pending_key.clone() else { return key_gone(step).into() };
    match write_certificate(input, step, key).await {
        Ok(written) => Done::with(Outcome::Installed(written.info.clone()), written.learnt()),
        Err(failed) => failed.into(),
    }
}

/// Writes the TLS Secret again with the certificate issued for its own key: its certificate was
/// damaged, next to a good key.
async fn reinstall(input: &StepInput<'_>, step: &'static str) -> Done {
    let Some(key) = input.observation.installed_key.clone() else { return key_gone(step).into() };
    match write_certificate(input, step, key).await {
        Ok(written) => {
            tracing::info!(secret = %input.order.spec.secret_name, serial = %written.info.serial, "the damaged TLS Secret was written again with its certificate");
            Done::with(Outcome::Reinstalled(written.info.clone()), written.learnt())
        }
        Err(failed) => failed.into(),
    }
}

/// A certificate written to the TLS Secret.
struct Written {
    info: CertificateInfo,
    key: PrivateKey,
    /// The Secret's resourceVersion after the write, and when it was written.
    secret_version: Option<(u64, Instant)>,
}

impl Written {
    fn learnt(self) -> Learnt {
        Learnt::Installed { info: self.info, key: self.key, secret_version: self.secret_version }
    }
}

/// Downloads the certificate for `key`, verifies it against the key, the names and the provider's
/// CA, and only then writes the TLS Secret, in one server-side apply.
async fn write_certificate(input: &StepInput<'_>, step: &'static str, key: PrivateKey) -> Result<Written, Outcome> {
    let (order, order_ctx) = (input.order, &input.order_ctx);
    // A bad download never replaces a good Secret: refuse it and ask again later.
    let refused = |e: pki::VerifyError| {
        failed(step, StepError::transient(format!("the downloaded certificate was refused: {e}")))
    };
    let csr = pki::build_csr(&key, order_ctx.domains)
        .map_err(|e| failed(step, StepError::permanent(format!("cannot build the CSR: {e}"))))?;
    let chain = input.provider.download(order_ctx, &csr).await.map_err(|e| failed(step, e))?;
    let now = order_ctx.now;
    let trust = input.provider.trust_anchors();
    let info = pki::verify_issued(&chain, &key, order_ctx.domains, now, trust.as_deref()).map_err(refused)?;
    let data = pki::tls_secret_data(&chain, key.to_pem(), None).map_err(refused)?;
    let facts = SecretFacts::written(&key, Some(info.clone()));
    let info = certificate_info(info, &order.spec.secret_name, &key);
    let secret = objects::tls_secret(order, data, &info);
    // The answer's certificate and key are what was just sent: only its metadata is read.
    let api: Api<Answer<Secret>> = Api::namespaced(input.ctx.client.clone(), order_ctx.namespace);
    input.ctx.secrets.writing(&secret, facts.clone());
    let written = api
        .patch(&order.spec.secret_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&secret))
        .await
        .map_err(|e| {
            input.ctx.secrets.not_written(order_ctx.namespace, &order.spec.secret_name);
            failed(step, tls_secret_refused(&order.spec.secret_name, e))
        })?;
    input.ctx.secrets.wrote(&written.metadata, facts);
    let secret_version = written.resource_version().and_then(|v| v.parse::<u64>().ok()).map(|v| (v, Instant::now()));
    Ok(Written { info, key, secret_version })
}

/// Why the TLS Secret could not be written, and what to do about it.
fn tls_secret_refused(name: &str, e: kube::Error) -> StepError {
    StepError::transient(match &e {
        kube::Error::Api(s) if s.code == 422 => format!(
            "cannot write Secret {name:?} (is it an existing Secret of another type? delete it or choose another spec.secretName): {e}"
        ),
        _ => format!("cannot write Secret {name:?}: {e}"),
    })
}
