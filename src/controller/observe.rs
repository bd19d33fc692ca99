//! Observe: what the lifecycle needs to know, read from the caches (and, for the confirmation
//! letter the user stores without our label, from the API).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};

use super::context::{Context, Memory};
pub use super::objects::pending_key_secret_name;
use super::secrets::{KeyFacts, SecretFacts};
use crate::api::{CertificateInfo, CertificateOrder, KeyAlgorithm as SpecAlgorithm, RotationPolicy};
use crate::lifecycle::{InstalledObs, KeyObs, LetterObs, Observed, ProviderObs, Step};
use crate::pki::{self, KeyAlgorithm, PrivateKey, VerifyError};
use crate::provider::letter::check_letter;

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
    let Some(cached) = ctx.cached_secret(&ns, &name) else { return Ok(None) };
    Ok(match &cached.facts.key {
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
    let Some(cached) = ctx.cached_secret(&ns, &order.spec.secret_name) else {
        return Ok(InstalledObs::Missing);
    };
    if !cached.labelled_for(&order.name_any()) {
        return Ok(InstalledObs::Missing);
    }
    let facts = &cached.facts;
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
    let pending = pending_key(ctx, order).await?;
    let installed = installed(ctx, order, domains, now).await?;
    let (letter_state, letter) = letter(ctx, order).await?;
    Ok(Observation {
        observed: Observed {
            now,
            provider: provider.clone(),
            pending_key: pending,
            letter: letter_state,
            installed,
            last_poll: memory.last_poll,
            last_self_check: memory.last_self_check,
            self_check_failures: memory.self_check_failures,
            solver_missing: solver_missing(ctx, order),
            shared_with: ctx.other_holders(order),
            dns_zones: match order.spec.domain_validation.method {
                crate::api::ValidationMethod::DNS => ctx.dns_zones_fingerprint(),
                crate::api::ValidationMethod::HTTP => String::new(),
            },
        },
        pending_key: None,
        installed_key: None,
        letter,
    })
}

/// Reads the keys `step` needs from their Secrets: the pending key for the CSR and the install
/// (unless this process generated it and still keeps it),
/// the installed key when a new certificate keeps it (`rotationPolicy: Never`). Other steps need
/// neither, so most reconciles read no key at all.
pub async fn load_keys(
    ctx: &Context,
    order: &CertificateOrder,
    step: &Step,
    observation: &mut Observation,
) -> Result<(), kube::Error> {
    let ns = order.namespace().unwrap_or_default();
    let algorithm = key_algorithm(order);
    match step {
        Step::SubmitInfo { .. } | Step::Install if observation.pending_key.is_none() => {
            if let Some(pending) = &observation.observed.pending_key {
                let kept = ctx.kept_key(&order.uid().unwrap_or_default(), &pending.fingerprint, algorithm);
                observation.pending_key = match kept {
                    Some(key) => Some(key),
                    None => load_key(ctx, &ns, &pending.secret, algorithm, Some(&pending.fingerprint)).await?,
                };
            }
        }
        Step::GenerateKey | Step::Reinstall
            if observation.installed_key.is_none()
                && (*step == Step::Reinstall || order.spec.private_key.rotation_policy == RotationPolicy::Never) =>
        {
            let ours = ctx
                .cached_secret(&ns, &order.spec.secret_name)
                .is_some_and(|cached| cached.labelled_for(&order.name_any()) && cached.facts.has_certificate);
            if ours {
                observation.installed_key = load_key(ctx, &ns, &order.spec.secret_name, algorithm, None).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// What a step learnt besides its outcome (which goes to status): recorded by
/// [`Observation::record`] in the observation, for the next decision of this reconcile, and in the
/// process memory, for the next reconciles.
#[derive(Default)]
pub enum Learnt {
    #[default]
    Nothing,
    /// This process recorded the purchase intent: no earlier process can have bought under it,
    /// and none of its own calls to buy has been made since.
    PurchaseIntent,
    /// The vendor sold this order; kept until status records it.
    Bought(String),
    /// The vendor refused to buy outright, on an attempt that was the first that could buy: the
    /// next attempt still cannot find an earlier purchase.
    PurchaseRefused,
    /// The vendor was asked about the order (whatever it answered).
    Polled {
        at: DateTime<Utc>,
    },
    /// The validation files or records are published (a missing solver Pod among them).
    Published,
    /// The challenges were self-checked.
    SelfChecked {
        at: DateTime<Utc>,
        all_passed: bool,
    },
    /// The pending key's Secret holds this key.
    KeyGenerated {
        secret: String,
        key: PrivateKey,
    },
    PendingKeyDiscarded,
    /// The TLS Secret holds this certificate and key; its resourceVersion after the write, and when.
    Installed {
        info: CertificateInfo,
        key: PrivateKey,
        secret_version: Option<(u64, std::time::Instant)>,
    },
}

impl Observation {
    /// Records what a step learnt, in the observation and in the order's `memory`: the one place
    /// either changes after a step.
    pub fn record(&mut self, learnt: Learnt, memory: &mut Memory) {
        let observed = &mut self.observed;
        match learnt {
            Learnt::Nothing => {}
            Learnt::PurchaseIntent => {
                memory.purchase_intent_here = true;
                memory.purchase_called = false;
            }
            Learnt::Bought(id) => memory.bought = Some(id),
            Learnt::PurchaseRefused => memory.purchase_called = false,
            Learnt::Polled { at } => {
                observed.last_poll = Some(at);
                memory.last_poll = Some(at);
            }
            Learnt::Published => observed.solver_missing = false,
            Learnt::SelfChecked { at, all_passed } => {
                let failures = if all_passed { 0 } else { observed.self_check_failures + 1 };
                observed.last_self_check = Some(at);
                observed.self_check_failures = failures;
                memory.last_self_check = Some(at);
                memory.self_check_failures = failures;
            }
            Learnt::KeyGenerated { secret, key } => {
                observed.pending_key = Some(KeyObs { secret, fingerprint: key.public_key_fingerprint() });
                self.pending_key = Some(key);
            }
            Learnt::PendingKeyDiscarded => {
                observed.pending_key = None;
                self.pending_key = None;
            }
            Learnt::Installed { info, key, secret_version } => {
                memory.secret_written_version = secret_version;
                observed.installed = InstalledObs::Certificate { info, covers: true };
                self.installed_key = Some(key);
            }
        }
    }
}

/// What the order's `memory` must hold before `step` starts, in case the step never ends (a crash,
/// the fence): before a call to buy, that the vendor is being called, so a later attempt looks
/// for what this one may have bought.
pub fn before_step(step: &Step, memory: &mut Memory) {
    if *step == Step::Purchase && memory.bought.is_none() {
        memory.purchase_called = true;
    }
}
