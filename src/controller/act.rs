//! Act: one lifecycle step's I/O. Every action is idempotent: a re-run after a crash at any
//! point converges (keys are created, never overwritten; purchases look their name up first;
//! the TLS Secret is only written with a verified certificate).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::context::Context;
use super::observe::{Observation, certificate_info, key_algorithm, pending_key_secret_name, secret_field};
use crate::api::{
    CertificateOrder, Challenge, MANAGED_BY_LABEL, MANAGER, ORDER_ANNOTATION, ORDER_LABEL, PublishedValidation,
    RotationPolicy, SelfCheck, ValidationMethod, order_label_value,
};
use crate::lifecycle::{InstalledObs, KeyObs, Outcome, Step, StepError};
use crate::pki::{self, PrivateKey, TLS_KEY, TLS_SECRET_TYPE};
use crate::provider::{OrderContext, Provider};

/// Annotations on the TLS Secret naming where the certificate came from (and [`ORDER_ANNOTATION`]).
pub const SECRET_SERIAL_ANNOTATION: &str = "certorder.io/serial";
pub const SECRET_EXPIRY_ANNOTATION: &str = "certorder.io/not-after";

fn api_error(step: &'static str, e: kube::Error) -> Outcome {
    let retryable = match &e {
        kube::Error::Api(s) => !matches!(s.code, 400 | 403 | 422),
        _ => true,
    };
    let message = format!("Kubernetes API: {e}");
    let error = if retryable { StepError::transient(message) } else { StepError::permanent(message) };
    Outcome::Failed { step, error }
}

fn failed(step: &'static str, error: impl Into<StepError>) -> Outcome {
    Outcome::Failed { step, error: error.into() }
}

/// Runs one step. Updates `seen` with what the step changed, so the next decision sees it.
#[allow(clippy::too_many_arguments)] // to be bundled into one input with the step refactor (issue 14)
pub async fn act(
    ctx: &Context,
    order: &CertificateOrder,
    provider: &Provider,
    step: &Step,
    pctx: &OrderContext<'_>,
    challenges: &[Challenge],
    published: Option<&PublishedValidation>,
    seen: &mut Observation,
) -> Outcome {
    let name = step.name();
    match step {
        Step::GenerateKey => generate_key(ctx, order, seen).await,
        Step::RecordPurchaseIntent => {
            ctx.remember(pctx.uid, |m| {
                m.purchase_intent_here = true;
                m.purchase_called = false;
            });
            Outcome::PurchaseIntentRecorded
        }
        Step::Purchase => {
            let memory = ctx.memory(pctx.uid);
            let buy_again = pctx.buy_again;
            let domains_count = pctx.domains.len() as u32;
            if let Some(id) = memory.bought {
                // Bought by this process, but the status write failed: record it, buy nothing.
                return Outcome::Purchased { id, buy_again, domains_count };
            }
            let may_have_bought = !memory.purchase_intent_here || memory.purchase_called;
            ctx.remember(pctx.uid, |m| m.purchase_called = true);
            let claims = ctx.vendor_claims(&order.spec.provider_ref.name);
            match provider.purchase(&OrderContext { may_have_bought, ..*pctx }, &claims).await {
                Ok(id) => {
                    ctx.remember(pctx.uid, |m| m.bought = Some(id.clone()));
                    Outcome::Purchased { id, buy_again, domains_count }
                }
                Err(e) if e.outcome_unknown => Outcome::PurchaseUnconfirmed { reason: e.message },
                Err(e) => {
                    // Refused outright: nothing was bought by this attempt.
                    if !may_have_bought {
                        ctx.remember(pctx.uid, |m| m.purchase_called = false);
                    }
                    failed(name, e)
                }
            }
        }
        Step::RecordTermRenewalIntent => Outcome::TermRenewalIntentRecorded,
        Step::RenewTerm => match provider.renew_term(pctx).await {
            Ok(()) => Outcome::TermRenewed,
            Err(e) => failed(name, e),
        },
        Step::SubmitInfo { digest } => {
            let csr = match csr(seen, pctx.domains) {
                Ok(csr) => csr,
                Err(e) => return e,
            };
            match provider.submit_info(pctx, &csr).await {
                Ok(submitted) => Outcome::InfoSubmitted { digest: digest.clone(), submitted },
                Err(e) => failed(name, e),
            }
        }
        Step::UploadLetter { digest } => {
            let Some((bytes, file_name)) = &seen.letter else {
                return failed(name, StepError::transient("the confirmation letter disappeared"));
            };
            match provider.upload_letter(pctx, bytes, file_name).await {
                Ok(()) => Outcome::LetterUploaded { digest: digest.clone() },
                Err(e) => failed(name, e),
            }
        }
        Step::OfferLetterTemplate => offer_letter_template(ctx, order, provider, pctx).await,
        Step::Poll => {
            let result = provider.poll(pctx).await;
            seen.observed.last_poll = Some(pctx.now);
            ctx.remember(pctx.uid, |m| m.last_poll = Some(pctx.now));
            match result {
                Ok(view) => Outcome::Polled(view),
                Err(e) => failed(name, e),
            }
        }
        Step::PublishChallenges { digest } => {
            match super::publish::publish(
                &ctx.client,
                &ctx.dns,
                order,
                challenges,
                digest,
                &ctx.solver_image(&order.spec.provider_ref.name),
                published,
            )
            .await
            {
                Ok(p) => {
                    seen.observed.solver_missing = false;
                    Outcome::Published(p)
                }
                Err(e) => failed(name, e),
            }
        }
        Step::Unpublish => match super::publish::unpublish(&ctx.client, &ctx.dns, order, published).await {
            Ok(()) => Outcome::Unpublished,
            Err(e) => failed(name, e),
        },
        Step::SelfCheck => self_check(ctx, pctx, challenges, seen).await,
        Step::Install => install(ctx, order, provider, pctx, seen, false).await,
        Step::Reinstall => install(ctx, order, provider, pctx, seen, true).await,
        Step::AdoptInstalled => match &seen.observed.installed {
            InstalledObs::Certificate { info, .. } => Outcome::Installed(info.clone()),
            _ => failed(name, StepError::transient("the TLS Secret changed while adopting it")),
        },
        Step::DiscardPendingKey => {
            let ns = order.namespace().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            match api.delete(&pending_key_secret_name(&order.name_any()), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return api_error(name, e),
            }
            seen.observed.pending_key = None;
            seen.pending_key = None;
            Outcome::PendingKeyDiscarded
        }
    }
}

#[allow(clippy::result_large_err)] // an Outcome is what every step returns; this one is built once per order
fn csr(seen: &Observation, domains: &[String]) -> Result<String, Outcome> {
    let key = seen
        .pending_key
        .as_ref()
        .ok_or_else(|| failed("SubmitInfo", StepError::transient("the private key Secret disappeared")))?;
    pki::build_csr(key, domains)
        .map_err(|e| failed("SubmitInfo", StepError::permanent(format!("cannot build the CSR: {e}"))))
}

/// Name of the ConfigMap that holds the vendor's confirmation-letter template for an order.
pub fn letter_template_name(order: &str) -> String {
    crate::api::shortened(order, "-letter-template", 253)
}

/// Largest template put in a ConfigMap (the API server's limit is 1 MiB for the whole object).
const MAX_TEMPLATE_BYTES: usize = 900 * 1024;

/// Puts the vendor's confirmation-letter template in a ConfigMap owned by the order, so the user
/// can fill it in and stamp it. A vendor that offers none (or refuses for good) is not an error:
/// the order keeps waiting for the letter.
async fn offer_letter_template(
    ctx: &Context,
    order: &CertificateOrder,
    provider: &Provider,
    pctx: &OrderContext<'_>,
) -> Outcome {
    let step = "OfferLetterTemplate";
    let file = match provider.letter_template(pctx).await {
        Ok(Some(file)) if file.data.len() <= MAX_TEMPLATE_BYTES => file,
        Ok(Some(file)) => {
            tracing::warn!(
                bytes = file.data.len(),
                "the vendor's letter template is too big for a ConfigMap; not offering it"
            );
            return Outcome::LetterTemplateOffered { config_map: None };
        }
        Ok(None) => return Outcome::LetterTemplateOffered { config_map: None },
        Err(e) if e.retryable => return failed(step, e),
        Err(e) => {
            tracing::warn!(error = %e.message, "the vendor gave no letter template");
            return Outcome::LetterTemplateOffered { config_map: None };
        }
    };
    let key: String = file
        .file_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let name = letter_template_name(&order.name_any());
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": pctx.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGER, ORDER_LABEL: order_label_value(&order.name_any())},
            "annotations": {ORDER_ANNOTATION: order.name_any()},
            "annotations": {"certorder.io/purpose": "the vendor's confirmation-letter template: fill it in, stamp it, scan it and store the scan in the Secret spec.documents.confirmationLetter names"},
            "ownerReferences": [owner_reference(order)],
        },
        "binaryData": {key: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &file.data)},
    });
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(ctx.client.clone(), pctx.namespace);
    match api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch)).await {
        Ok(_) => Outcome::LetterTemplateOffered { config_map: Some(name) },
        Err(e) => api_error(step, e),
    }
}

fn owner_reference(order: &CertificateOrder) -> serde_json::Value {
    json!({
        "apiVersion": CertificateOrder::api_version(&()),
        "kind": CertificateOrder::kind(&()),
        "name": order.name_any(),
        "uid": order.uid().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Creates the pending key Secret. An existing one is kept when it holds a usable key (a crash
/// after creating it); with `rotationPolicy: Never` the installed key is reused.
async fn generate_key(ctx: &Context, order: &CertificateOrder, seen: &mut Observation) -> Outcome {
    let step = "GenerateKey";
    let ns = order.namespace().unwrap_or_default();
    let name = pending_key_secret_name(&order.name_any());
    let algorithm = key_algorithm(order);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);

    let reuse = match (&order.spec.private_key.rotation_policy, &seen.installed_key) {
        (RotationPolicy::Never, Some(key)) if key.algorithm() == algorithm => Some(key.clone()),
        _ => None,
    };
    let key = match reuse {
        Some(key) => key,
        None => match tokio::task::spawn_blocking(move || pki::generate_key(algorithm)).await {
            Ok(Ok(key)) => key,
            Ok(Err(e)) => return failed(step, StepError::permanent(format!("cannot generate a {algorithm} key: {e}"))),
            Err(e) => return failed(step, StepError::transient(format!("key generation did not finish: {e}"))),
        },
    };
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {MANAGED_BY_LABEL: MANAGER, ORDER_LABEL: order_label_value(&order.name_any())},
            "annotations": {ORDER_ANNOTATION: order.name_any()},
            "ownerReferences": [owner_reference(order)],
        },
        "type": "Opaque",
        "stringData": {TLS_KEY: key.to_pem()},
    }))
    .expect("a Secret from a literal");
    let key = match api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &secret).await
    {
        Ok(_) => {
            tracing::debug!(secret = %name, "created the pending key");
            key
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!(secret = %name, "the pending key exists; reusing it");
            // Created before a crash, or the cache is behind: keep the key that exists when it fits.
            let existing = match api.get(&name).await {
                Ok(existing) => existing,
                Err(e) => return api_error(step, e),
            };
            let usable = secret_field(&existing, TLS_KEY)
                .and_then(|pem| PrivateKey::from_pem(&String::from_utf8_lossy(&pem)).ok())
                .filter(|k| k.algorithm() == algorithm);
            match usable {
                Some(existing_key) => existing_key,
                None => {
                    // A key of another algorithm (the spec changed): replace it.
                    let mut replacement = secret.clone();
                    replacement.metadata.resource_version = existing.metadata.resource_version.clone();
                    if let Err(e) = api.replace(&name, &PostParams::default(), &replacement).await {
                        return api_error(step, e);
                    }
                    key
                }
            }
        }
        Err(e) => return api_error(step, e),
    };
    seen.observed.pending_key = Some(KeyObs { secret: name.clone(), fingerprint: key.public_key_fingerprint() });
    seen.pending_key = Some(key);
    Outcome::KeyGenerated { secret: name }
}

/// Checks every challenge the way the CA will, and records what was seen.
async fn self_check(
    ctx: &Context,
    pctx: &OrderContext<'_>,
    challenges: &[Challenge],
    seen: &mut Observation,
) -> Outcome {
    let checks = challenges.iter().map(|c| async move {
        let check = match c.method {
            ValidationMethod::DNS => {
                let o = ctx.dns.check_txt(&c.target, &c.expected_value).await;
                SelfCheck {
                    passed: o.matched,
                    seen: o.found.join(", "),
                    diagnosis: if o.matched { String::new() } else { o.diagnosis },
                    server: (!o.server.is_empty()).then_some(o.server),
                    status_code: None,
                    redirect_target: None,
                    content_length: None,
                    last_check_time: pctx.now,
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
                    last_check_time: pctx.now,
                }
            }
        };
        (c.domain.clone(), check)
    });
    let results: Vec<(String, SelfCheck)> = futures::future::join_all(checks).await;
    let all_passed = results.iter().all(|(_, c)| c.passed);
    ctx.metrics.self_checks(all_passed);
    seen.observed.last_self_check = Some(pctx.now);
    let failures = if all_passed { 0 } else { seen.observed.self_check_failures + 1 };
    seen.observed.self_check_failures = failures;
    ctx.remember(pctx.uid, |m| {
        m.last_self_check = Some(pctx.now);
        m.self_check_failures = failures;
    });
    Outcome::SelfChecked(results)
}

/// Downloads, verifies against the key, the names and the provider's CA, and only then writes
/// the TLS Secret, in one server-side apply. `reinstall`: the key is the TLS Secret's own (its
/// certificate was damaged), not the pending one.
async fn install(
    ctx: &Context,
    order: &CertificateOrder,
    provider: &Provider,
    pctx: &OrderContext<'_>,
    seen: &mut Observation,
    reinstall: bool,
) -> Outcome {
    let step = if reinstall { "Reinstall" } else { "Install" };
    let key = if reinstall { seen.installed_key.clone() } else { seen.pending_key.clone() };
    let Some(key) = key else {
        return failed(step, StepError::transient("the private key Secret disappeared"));
    };
    let csr = match pki::build_csr(&key, pctx.domains) {
        Ok(csr) => csr,
        Err(e) => return failed(step, StepError::permanent(format!("cannot build the CSR: {e}"))),
    };
    let chain = match provider.download(pctx, &csr).await {
        Ok(chain) => chain,
        Err(e) => return failed(step, e),
    };
    let now = pctx.now;
    let trust = provider.trust_anchors();
    let info = match pki::verify_issued(&chain, &key, pctx.domains, now, trust.as_deref()) {
        Ok(info) => info,
        // A bad download never replaces a good Secret: refuse it and ask again later.
        Err(e) => return failed(step, StepError::transient(format!("the downloaded certificate was refused: {e}"))),
    };
    let data = match pki::tls_secret_data(&chain, key.to_pem(), None) {
        Ok(data) => data,
        Err(e) => return failed(step, StepError::transient(format!("the downloaded certificate was refused: {e}"))),
    };
    let info = certificate_info(info, &order.spec.secret_name, &key);
    let template = order.spec.secret_template.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = template.labels;
    labels.insert(MANAGED_BY_LABEL.into(), MANAGER.into());
    labels.insert(ORDER_LABEL.into(), order_label_value(&order.name_any()));
    let mut annotations: BTreeMap<String, String> = template.annotations;
    annotations.insert(ORDER_ANNOTATION.into(), order.name_any());
    annotations.insert(SECRET_SERIAL_ANNOTATION.into(), info.serial.clone());
    annotations.insert(SECRET_EXPIRY_ANNOTATION.into(), info.not_after.to_rfc3339());
    let encoded: BTreeMap<String, String> = data
        .into_iter()
        .map(|(k, v)| (k, base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v)))
        .collect();
    let patch = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": order.spec.secret_name, "namespace": pctx.namespace, "labels": labels, "annotations": annotations},
        "type": TLS_SECRET_TYPE,
        "data": encoded,
    });
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), pctx.namespace);
    let written = match api
        .patch(&order.spec.secret_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch))
        .await
    {
        Ok(written) => written,
        Err(e) => {
            let hint = match &e {
                kube::Error::Api(s) if s.code == 422 => format!(
                    "cannot write Secret {:?} (is it an existing Secret of another type? delete it or choose another spec.secretName): {e}",
                    order.spec.secret_name
                ),
                _ => format!("cannot write Secret {:?}: {e}", order.spec.secret_name),
            };
            return failed(step, StepError::transient(hint));
        }
    };
    let version = written.resource_version().and_then(|v| v.parse::<u64>().ok());
    ctx.remember(pctx.uid, |m| m.secret_written_version = version.map(|v| (v, std::time::Instant::now())));
    seen.observed.installed = InstalledObs::Certificate { info: info.clone(), covers: true };
    seen.installed_key = Some(key);
    if reinstall {
        tracing::info!(secret = %order.spec.secret_name, serial = %info.serial, "the damaged TLS Secret was written again with its certificate");
        Outcome::Reinstalled(info)
    } else {
        Outcome::Installed(info)
    }
}
