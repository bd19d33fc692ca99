//! Observe: what the lifecycle needs to know, read from the caches (and, for the confirmation
//! letter the user stores without our label, from the API).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};

use super::context::Context;
use crate::api::{CertificateInfo, CertificateOrder, KeyAlgorithm as SpecAlgorithm, ORDER_LABEL, order_label_value};
use crate::lifecycle::{InstalledObs, KeyObs, LetterObs, Observed, ProviderObs};
use crate::pki::{self, KeyAlgorithm, PrivateKey, TLS_CRT, TLS_KEY, VerifyError};
use crate::provider::local::check_letter;

/// Name of the Secret holding an order's key until the certificate is issued.
pub fn pending_key_secret_name(order: &str) -> String {
    crate::api::shortened(order, "-certorder-key", 253)
}

/// The key algorithm the spec asks for.
pub fn key_algorithm(order: &CertificateOrder) -> KeyAlgorithm {
    let key = &order.spec.private_key;
    match (key.algorithm, key.size) {
        (SpecAlgorithm::ECDSA, Some(384)) => KeyAlgorithm::EcdsaP384,
        (SpecAlgorithm::ECDSA, _) => KeyAlgorithm::EcdsaP256,
        (SpecAlgorithm::RSA, Some(3072)) => KeyAlgorithm::Rsa3072,
        (SpecAlgorithm::RSA, Some(4096)) => KeyAlgorithm::Rsa4096,
        (SpecAlgorithm::RSA, _) => KeyAlgorithm::Rsa2048,
    }
}

pub fn secret_field(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone())
}

/// The pending key, when its Secret exists and holds a key of the algorithm the spec asks for.
pub fn pending_key(ctx: &Context, order: &CertificateOrder) -> Option<(KeyObs, PrivateKey)> {
    let ns = order.namespace().unwrap_or_default();
    let name = pending_key_secret_name(&order.name_any());
    let secret = ctx.cached_secret(&ns, &name)?;
    let pem = String::from_utf8(secret_field(&secret, TLS_KEY)?).ok()?;
    let key = PrivateKey::from_pem(&pem).ok()?;
    if key.algorithm() != key_algorithm(order) {
        return None;
    }
    Some((KeyObs { secret: name, fingerprint: key.public_key_fingerprint() }, key))
}

/// The TLS Secret, when it is ours (labelled for this order), and its key.
pub fn installed(
    ctx: &Context,
    order: &CertificateOrder,
    domains: &[String],
    now: DateTime<Utc>,
) -> (InstalledObs, Option<PrivateKey>) {
    let ns = order.namespace().unwrap_or_default();
    let Some(secret) = ctx.cached_secret(&ns, &order.spec.secret_name) else {
        return (InstalledObs::Missing, None);
    };
    if secret.labels().get(ORDER_LABEL) != Some(&order_label_value(&order.name_any())) {
        return (InstalledObs::Missing, None);
    }
    let (Some(chain), Some(key_pem)) = (secret_field(&secret, TLS_CRT), secret_field(&secret, TLS_KEY)) else {
        return (InstalledObs::Unusable("the Secret lacks tls.crt or tls.key".into()), None);
    };
    let chain = String::from_utf8_lossy(&chain);
    let Ok(key) = PrivateKey::from_pem(&String::from_utf8_lossy(&key_pem)) else {
        return (InstalledObs::Unusable("tls.key is not a private key".into()), None);
    };
    let damaged =
        |e: VerifyError| InstalledObs::Damaged { reason: e.to_string(), key_fingerprint: key.public_key_fingerprint() };
    let observed = match pki::verify_issued(&chain, &key, domains, now, None) {
        Ok(info) => {
            InstalledObs::Certificate { info: certificate_info(info, &order.spec.secret_name, &key), covers: true }
        }
        Err(VerifyError::NameNotCovered { .. }) => match pki::verify_issued(&chain, &key, &[], now, None) {
            Ok(info) => {
                InstalledObs::Certificate { info: certificate_info(info, &order.spec.secret_name, &key), covers: false }
            }
            Err(e) => damaged(e),
        },
        Err(e) => damaged(e),
    };
    (observed, Some(key))
}

pub fn certificate_info(info: pki::CertInfo, secret_name: &str, key: &PrivateKey) -> CertificateInfo {
    CertificateInfo {
        serial: info.serial_hex,
        issuer: info.issuer,
        not_before: info.not_before,
        not_after: info.not_after,
        sha256_fingerprint: info.sha256_fingerprint,
        secret_name: secret_name.to_string(),
        key_fingerprint: key.public_key_fingerprint(),
    }
}

/// The confirmation letter: read from the API (the user's Secret carries no label of ours).
pub async fn letter(
    ctx: &Context,
    order: &CertificateOrder,
) -> Result<(LetterObs, Option<(Vec<u8>, String)>), kube::Error> {
    if !order.spec.product.type_.needs_organization_review() {
        return Ok((LetterObs::NotNeeded, None));
    }
    let Some(reference) = order.spec.documents.as_ref().and_then(|d| d.confirmation_letter.as_ref()) else {
        return Ok((LetterObs::Missing("spec.documents.confirmationLetter is not set".into()), None));
    };
    let ns = order.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(secret) = api.get_opt(&reference.name).await? else {
        return Ok((
            LetterObs::Missing(format!(
                "waiting for the confirmation letter: fill in and stamp the vendor's template, then store the scan in Secret {:?} under key {:?} (kubectl create secret generic {} -n {ns} --from-file={}=letter.pdf)",
                reference.name, reference.key, reference.name, reference.key
            )),
            None,
        ));
    };
    let Some(bytes) = secret_field(&secret, &reference.key) else {
        return Ok((
            LetterObs::Missing(format!(
                "Secret {:?} has no key {:?}: store the stamped letter under that key",
                reference.name, reference.key
            )),
            None,
        ));
    };
    if let Err(e) = check_letter(&bytes, &reference.key) {
        return Ok((LetterObs::Invalid(e.message), None));
    }
    let digest = hex::encode(&Sha256::digest(&bytes)[..12]);
    Ok((LetterObs::Present { digest }, Some((bytes, reference.key.clone()))))
}

/// HTTP validation published a solver Pod that the cache no longer holds (or holds being deleted).
fn solver_missing(ctx: &Context, order: &CertificateOrder) -> bool {
    let published = order.status.as_ref().is_some_and(|s| s.published.is_some());
    let Some(pods) = &ctx.solver_pods else { return false };
    if !published || order.spec.domain_validation.method != crate::api::ValidationMethod::HTTP {
        return false;
    }
    let name = crate::validation::http::solver_name(&order.name_any());
    let ns = order.namespace().unwrap_or_default();
    pods.get(&kube::runtime::reflector::ObjectRef::new(&name).within(&ns))
        .is_none_or(|pod| pod.metadata.deletion_timestamp.is_some())
}

/// Everything the lifecycle looks at, but for the provider (resolved by the caller).
pub struct Observation {
    pub observed: Observed,
    pub pending_key: Option<PrivateKey>,
    pub installed_key: Option<PrivateKey>,
    pub letter: Option<(Vec<u8>, String)>,
}

pub async fn observe(
    ctx: &Context,
    order: &CertificateOrder,
    domains: &[String],
    provider: &ProviderObs,
    now: DateTime<Utc>,
) -> Result<Observation, kube::Error> {
    let uid = order.uid().unwrap_or_default();
    let memory = ctx.memory(&uid);
    let (pending_obs, pending_key) = match pending_key(ctx, order) {
        Some((obs, key)) => (Some(obs), Some(key)),
        None => (None, None),
    };
    let (installed_obs, installed_key) = installed(ctx, order, domains, now);
    let (letter_obs, letter) = letter(ctx, order).await?;
    Ok(Observation {
        observed: Observed {
            now,
            provider: provider.clone(),
            pending_key: pending_obs,
            letter: letter_obs,
            installed: installed_obs,
            last_poll: memory.last_poll,
            last_self_check: memory.last_self_check,
            self_check_failures: memory.self_check_failures,
            solver_missing: solver_missing(ctx, order),
            shared_with: ctx.other_holders(order),
        },
        pending_key,
        installed_key,
        letter,
    })
}
