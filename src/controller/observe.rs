//! Observe: what the lifecycle needs to know, read from the caches (and, for the confirmation
//! letter the user stores without our label, from the API).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};

use super::context::Context;
use super::secrets::{KeyFacts, SecretFacts};
use crate::api::{
    CertificateInfo, CertificateOrder, KeyAlgorithm as SpecAlgorithm, ORDER_LABEL, RotationPolicy, order_label_value,
};
use crate::lifecycle::{InstalledObs, KeyObs, LetterObs, Observed, ProviderObs, Step};
use crate::pki::{self, KeyAlgorithm, PrivateKey, VerifyError};
use crate::provider::letter::check_letter;

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

/// The pending key, when its Secret exists and holds a key of the algorithm the spec asks for
/// (from the cache: the key itself is read by [`load_key`] when a step needs it).
pub async fn pending_key(ctx: &Context, order: &CertificateOrder) -> Result<Option<KeyObs>, kube::Error> {
    let ns = order.namespace().unwrap_or_default();
    let name = pending_key_secret_name(&order.name_any());
    let Some((_, facts)) = ctx.cached_secret_facts(&ns, &name).await? else { return Ok(None) };
    Ok(match &facts.key {
        KeyFacts::Key { algorithm, fingerprint } if *algorithm == key_algorithm(order) => {
            Some(KeyObs { secret: name, fingerprint: fingerprint.clone() })
        }
        _ => None,
    })
}

/// The private key in Secret `name`, read from the API, when it is a key of `algorithm` (and, when
/// given, has this public key fingerprint).
pub async fn load_key(
    ctx: &Context,
    namespace: &str,
    name: &str,
    algorithm: KeyAlgorithm,
    fingerprint: Option<&str>,
) -> Result<Option<PrivateKey>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = api.get_opt(name).await? else { return Ok(None) };
    let (_, key) = SecretFacts::with_key(&secret);
    Ok(key.filter(|k| k.algorithm() == algorithm && fingerprint.is_none_or(|f| k.public_key_fingerprint() == f)))
}

/// The TLS Secret, when it is ours (labelled for this order): what it holds, verified for the
/// spec's names now (from the cached facts of its data).
pub async fn installed(
    ctx: &Context,
    order: &CertificateOrder,
    domains: &[String],
    now: DateTime<Utc>,
) -> Result<InstalledObs, kube::Error> {
    let ns = order.namespace().unwrap_or_default();
    let Some((secret, facts)) = ctx.cached_secret_facts(&ns, &order.spec.secret_name).await? else {
        return Ok(InstalledObs::Missing);
    };
    if secret.labels().get(ORDER_LABEL) != Some(&order_label_value(&order.name_any())) {
        return Ok(InstalledObs::Missing);
    }
    let key_fingerprint = match (&facts.key, facts.has_certificate) {
        (KeyFacts::Absent, _) | (_, false) => {
            return Ok(InstalledObs::Unusable("the Secret lacks tls.crt or tls.key".into()));
        }
        (KeyFacts::NotAKey, _) => return Ok(InstalledObs::Unusable("tls.key is not a private key".into())),
        (KeyFacts::Key { fingerprint, .. }, true) => fingerprint,
    };
    let Some(inspected) = &facts.certificate else {
        return Ok(InstalledObs::Unusable("the Secret lacks tls.crt or tls.key".into()));
    };
    let info = |info| certificate_info_of(info, &order.spec.secret_name, key_fingerprint);
    // A good key next to a certificate that is not (garbled, expired, another key's).
    let damaged =
        |e: VerifyError| InstalledObs::Damaged { reason: e.to_string(), key_fingerprint: key_fingerprint.clone() };
    Ok(match inspected.verify(domains, now) {
        Ok(i) => InstalledObs::Certificate { info: info(i), covers: true },
        Err(VerifyError::NameNotCovered { .. }) => match inspected.verify(&[], now) {
            Ok(i) => InstalledObs::Certificate { info: info(i), covers: false },
            Err(e) => damaged(e),
        },
        Err(e) => damaged(e),
    })
}

pub fn certificate_info(info: pki::CertInfo, secret_name: &str, key: &PrivateKey) -> CertificateInfo {
    certificate_info_of(info, secret_name, &key.public_key_fingerprint())
}

fn certificate_info_of(info: pki::CertInfo, secret_name: &str, key_fingerprint: &str) -> CertificateInfo {
    CertificateInfo {
        serial: info.serial_hex,
        issuer: info.issuer,
        not_before: info.not_before,
        not_after: info.not_after,
        sha256_fingerprint: info.sha256_fingerprint,
        secret_name: secret_name.to_string(),
        key_fingerprint: key_fingerprint.to_string(),
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
    /// The pending key and the installed one, once read (see [`load_keys`]).
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
    let pending_obs = pending_key(ctx, order).await?;
    let installed_obs = installed(ctx, order, domains, now).await?;
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
        pending_key: None,
        installed_key: None,
        letter,
    })
}

/// Reads the keys `step` needs from their Secrets: the pending key for the CSR and the install,
/// the installed key when a new certificate keeps it (`rotationPolicy: Never`). Other steps need
/// neither, so most reconciles read no key at all.
pub async fn load_keys(
    ctx: &Context,
    order: &CertificateOrder,
    step: &Step,
    seen: &mut Observation,
) -> Result<(), kube::Error> {
    let ns = order.namespace().unwrap_or_default();
    let algorithm = key_algorithm(order);
    match step {
        Step::SubmitInfo { .. } | Step::Install if seen.pending_key.is_none() => {
            if let Some(obs) = &seen.observed.pending_key {
                seen.pending_key = load_key(ctx, &ns, &obs.secret, algorithm, Some(&obs.fingerprint)).await?;
            }
        }
        Step::GenerateKey | Step::Reinstall
            if seen.installed_key.is_none()
                && (*step == Step::Reinstall || order.spec.private_key.rotation_policy == RotationPolicy::Never) =>
        {
            let ours = match ctx.cached_secret_facts(&ns, &order.spec.secret_name).await? {
                Some((secret, facts)) => {
                    secret.labels().get(ORDER_LABEL) == Some(&order_label_value(&order.name_any()))
                        && facts.has_certificate
                }
                None => false,
            };
            if ours {
                seen.installed_key = load_key(ctx, &ns, &order.spec.secret_name, algorithm, None).await?;
            }
        }
        _ => {}
    }
    Ok(())
}
