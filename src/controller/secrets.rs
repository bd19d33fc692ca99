//! The Secret cache keeps the Secrets certorder labelled without their data. Their metadata
//! (labels, annotations, owner references, resourceVersion: all that ownership checks read) and
//! type stay as they are; in place of the key and certificate bytes the operator keeps what
//! reconciles look at: the key's algorithm and fingerprint, and what checking the certificate
//! against the key found that depends neither on the time nor on the names (`pki::Inspected`),
//! worked out once per version as the watch delivers it. The steps that need the key itself (the
//! CSR, the install, a kept key) read the Secret from the API.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::watcher;

use crate::pki::{self, KeyAlgorithm, PrivateKey, TLS_CRT, TLS_KEY};

/// What a labelled Secret's data held, as far as reconciles care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretFacts {
    /// The resourceVersion the facts were read from.
    pub resource_version: Option<String>,
    pub key: KeyFacts,
    /// `tls.crt` checked against `tls.key`, when both are there and the key is one.
    pub certificate: Option<pki::Inspected>,
    /// `tls.crt` is there.
    pub has_certificate: bool,
}

/// `tls.key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFacts {
    Absent,
    NotAKey,
    Key {
        algorithm: KeyAlgorithm,
        /// SHA-256 of the public key, lowercase hex.
        fingerprint: String,
    },
}

impl SecretFacts {
    /// Reads the facts from a Secret with its data.
    pub fn of(secret: &Secret) -> SecretFacts {
        Self::with_key(secret).0
    }

    /// The facts, and the private key in `tls.key` when it is one.
    pub fn with_key(secret: &Secret) -> (SecretFacts, Option<PrivateKey>) {
        let field = |k: &str| secret.data.as_ref().and_then(|d| d.get(k)).map(|b| String::from_utf8_lossy(&b.0));
        let private_key = field(TLS_KEY).map(|pem| PrivateKey::from_pem(&pem).ok());
        let key = match &private_key {
            None => KeyFacts::Absent,
            Some(None) => KeyFacts::NotAKey,
            Some(Some(k)) => KeyFacts::Key { algorithm: k.algorithm(), fingerprint: k.public_key_fingerprint() },
        };
        let chain = field(TLS_CRT);
        let certificate = match (&chain, &private_key) {
            (Some(chain), Some(Some(key))) => Some(pki::inspect_issued(chain, key)),
            _ => None,
        };
        let facts = SecretFacts {
            resource_version: secret.resource_version(),
            key,
            certificate,
            has_certificate: chain.is_some(),
        };
        (facts, private_key.flatten())
    }
}

type Key = (String, String);

/// The facts of every Secret in the cache, by namespace and name.
#[derive(Default)]
pub struct FactsTable {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    facts: HashMap<Key, Arc<SecretFacts>>,
    /// Secrets listed since the watch restarted, while it lists.
    relisted: Option<HashSet<Key>>,
}

fn key_of(secret: &Secret) -> Key {
    (secret.namespace().unwrap_or_default(), secret.name_any())
}

impl FactsTable {
    /// Takes one event of the Secret watch on its way to the cache: records the facts of the
    /// Secret it carries and strips the data they were read from.
    pub fn absorb(&self, event: watcher::Event<Secret>) -> watcher::Event<Secret> {
        let mut table = self.inner.lock().expect("facts lock");
        match &event {
            watcher::Event::Init => table.relisted = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(listed) = table.relisted.take() {
                    table.facts.retain(|k, _| listed.contains(k));
                }
            }
            watcher::Event::Delete(secret) => {
                table.facts.remove(&key_of(secret));
            }
            watcher::Event::Apply(secret) | watcher::Event::InitApply(secret) => {
                let key = key_of(secret);
                if let Some(listed) = &mut table.relisted {
                    listed.insert(key.clone());
                }
                table.facts.insert(key, Arc::new(SecretFacts::of(secret)));
            }
        }
        drop(table);
        event.modify(strip)
    }

    /// The facts of `secret` (a cached copy), when they were read from its version.
    pub fn get(&self, secret: &Secret) -> Option<Arc<SecretFacts>> {
        let table = self.inner.lock().expect("facts lock");
        let facts = table.facts.get(&key_of(secret))?;
        (facts.resource_version == secret.resource_version()).then(|| facts.clone())
    }
}

/// What the cache keeps of a Secret: everything but its data and `managedFields`.
pub fn strip(secret: &mut Secret) {
    secret.managed_fields_mut().clear();
    secret.data = None;
    secret.string_data = None;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;

    fn secret(name: &str, version: &str, data: &[(&str, &str)]) -> Secret {
        let mut s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": version,
                         "labels": {"app.kubernetes.io/managed-by": "certorder"},
                         "annotations": {"certorder.io/order": "o"}},
            "type": "kubernetes.io/tls",
        }))
        .unwrap();
        s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect());
        s
    }

    #[test]
    fn the_cache_keeps_metadata_and_facts_and_drops_the_data() {
        let key = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let table = FactsTable::default();
        let event = table.absorb(watcher::Event::Apply(secret("k", "5", &[(TLS_KEY, key.to_pem())])));
        let watcher::Event::Apply(cached) = event else { panic!("an Apply stays an Apply") };
        assert_eq!(cached.data, None, "no key bytes in the cache");
        assert_eq!(cached.labels().get("app.kubernetes.io/managed-by").map(String::as_str), Some("certorder"));
        assert_eq!(cached.annotations().get("certorder.io/order").map(String::as_str), Some("o"));
        assert_eq!(cached.type_.as_deref(), Some("kubernetes.io/tls"));
        let facts = table.get(&cached).expect("facts of this version");
        assert_eq!(
            facts.key,
            KeyFacts::Key { algorithm: KeyAlgorithm::EcdsaP256, fingerprint: key.public_key_fingerprint() }
        );
        assert!(facts.certificate.is_none() && !facts.has_certificate);

        // Another version of the Secret in the cache has no facts until the watch delivers it.
        let mut newer = cached.clone();
        newer.metadata.resource_version = Some("6".into());
        assert!(table.get(&newer).is_none());

        let garbage = table.absorb(watcher::Event::Apply(secret("k", "6", &[(TLS_KEY, "garbage"), (TLS_CRT, "x")])));
        let watcher::Event::Apply(cached) = garbage else { panic!() };
        let facts = table.get(&cached).unwrap();
        assert_eq!((facts.key.clone(), facts.has_certificate), (KeyFacts::NotAKey, true));

        table.absorb(watcher::Event::Delete(cached.clone()));
        assert!(table.get(&cached).is_none(), "a deleted Secret's facts are forgotten");
    }

    #[test]
    fn a_relist_forgets_secrets_deleted_while_the_watch_was_down() {
        let table = FactsTable::default();
        for name in ["a", "b"] {
            table.absorb(watcher::Event::Apply(secret(name, "1", &[])));
        }
        table.absorb(watcher::Event::Init);
        let watcher::Event::InitApply(a) = table.absorb(watcher::Event::InitApply(secret("a", "1", &[]))) else {
            panic!()
        };
        table.absorb(watcher::Event::InitDone);
        assert!(table.get(&a).is_some());
        assert!(table.get(&secret("b", "1", &[])).is_none(), "b was not listed again");
    }
}
