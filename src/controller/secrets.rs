//! The Secret cache keeps, of each Secret certorder labelled, only what reconciles read: who
//! holds it (the labels and annotations ownership checks read, `Ownership`), its
//! resourceVersion, and in place of the key and certificate bytes the key's algorithm and
//! fingerprint and what checking the certificate against the key found that depends neither on
//! the time nor on the names (`pki::Inspected`), worked out once per version as the watch
//! delivers it. The steps that need the key itself (the CSR, the install, a kept key) read the
//! Secret from the API.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher;
use sha2::{Digest, Sha256};

use crate::api::{ADOPT_ANNOTATION, MANAGED_BY_LABEL, MANAGER, ORDER_LABEL, order_label_value, owning_order};
use crate::pki::{self, KeyAlgorithm, PrivateKey, TLS_CRT, TLS_KEY};

/// What a labelled Secret's data held, as far as reconciles care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretFacts {
    /// The resourceVersion the facts were read from (as a number, as the API server makes
    /// them; `None` when it is not one).
    pub resource_version: Option<u64>,
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
    /// The facts of a Secret this process writes: `key` in `tls.key` and, when given, in
    /// `tls.crt` a chain that passed `pki::verify_issued` for it, whose leaf is `leaf`.
    pub fn written(key: &PrivateKey, leaf: Option<pki::CertInfo>) -> SecretFacts {
        SecretFacts {
            resource_version: None,
            key: KeyFacts::Key { algorithm: key.algorithm(), fingerprint: key.public_key_fingerprint() },
            has_certificate: leaf.is_some(),
            certificate: leaf.map(pki::Inspected::verified),
        }
    }

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
        let facts =
            SecretFacts { resource_version: version_of(secret), key, certificate, has_certificate: chain.is_some() };
        (facts, private_key.flatten())
    }
}

type Key = (String, String);

/// A labelled Secret as the cache keeps it: who holds it, and what its data held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedSecret {
    pub ownership: Ownership,
    /// Read from the same version as `ownership` (`facts.resource_version`).
    pub facts: SecretFacts,
}

impl CachedSecret {
    pub fn of(secret: &Secret) -> Self {
        Self { ownership: Ownership::of(&secret.metadata), facts: SecretFacts::of(secret) }
    }

    pub fn resource_version(&self) -> Option<u64> {
        self.facts.resource_version
    }

    /// Labelled for the order named `order` (its [`ORDER_LABEL`] value).
    pub fn labelled_for(&self, order: &str) -> bool {
        self.ownership.order_label.as_deref() == Some(order_label_value(order).as_str())
    }
}

/// What ownership checks read of a Secret's labels and annotations (`tenancy::holder`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Labelled as certorder's ([`MANAGED_BY_LABEL`]).
    pub managed: bool,
    /// The order it belongs to: its annotation, or else its label (`api::owning_order`).
    pub order: Option<String>,
    /// Its [`ORDER_LABEL`] value.
    pub order_label: Option<String>,
    /// The order a person allowed to adopt it ([`ADOPT_ANNOTATION`]).
    pub adopt: Option<String>,
}

impl Ownership {
    pub fn of(meta: &ObjectMeta) -> Self {
        let label = |key: &str| meta.labels.as_ref()?.get(key).cloned();
        Self {
            managed: label(MANAGED_BY_LABEL).as_deref() == Some(MANAGER),
            order: owning_order(meta),
            order_label: label(ORDER_LABEL),
            adopt: meta.annotations.as_ref().and_then(|a| a.get(ADOPT_ANNOTATION).cloned()),
        }
    }
}

/// The Secrets certorder labelled, by namespace and name, as the watch delivers them. Only
/// what reconciles read is kept (not the Secret objects: their labels and annotations alone
/// took 1 KB each in two maps).
pub struct SecretCache {
    inner: Mutex<Table>,
    /// Whether the watch has done its first full list.
    synced: tokio::sync::watch::Sender<bool>,
}

impl Default for SecretCache {
    fn default() -> Self {
        Self { inner: Mutex::default(), synced: tokio::sync::watch::Sender::new(false) }
    }
}

#[derive(Default)]
struct Table {
    secrets: HashMap<Key, Arc<CachedSecret>>,
    /// Secrets listed since the watch restarted, while it lists.
    relisted: Option<HashSet<Key>>,
    /// Secrets this process is deleting, or deleted and has not seen the deletion of yet.
    deleting: HashSet<Key>,
    /// Secrets this process is writing and has no answer for yet: what the facts are read from
    /// in the data it sends ([`facts_digest`]), and those facts.
    writing: HashMap<Key, ([u8; 32], SecretFacts)>,
}

/// SHA-256 of what [`SecretFacts`] are read from: `tls.key` and `tls.crt`, each absent or with
/// its length.
fn facts_digest(secret: &Secret) -> [u8; 32] {
    let mut sha = Sha256::new();
    for field in [TLS_KEY, TLS_CRT] {
        match secret.data.as_ref().and_then(|d| d.get(field)) {
            None => sha.update([0]),
            Some(bytes) => {
                sha.update([1]);
                sha.update((bytes.0.len() as u64).to_be_bytes());
                sha.update(&bytes.0);
            }
        }
    }
    sha.finalize().into()
}

fn version_of(secret: &Secret) -> Option<u64> {
    secret.metadata.resource_version.as_deref().and_then(|v| v.parse().ok())
}

fn key_of(secret: &Secret) -> Key {
    (secret.namespace().unwrap_or_default(), secret.name_any())
}

impl SecretCache {
    /// Takes one event of the Secret watch: keeps what the Secret it carries holds, and passes
    /// the event on without the Secret's data, to wake its order's reconcile. The event of a
    /// version this process wrote (`wrote`), or of a deletion it made (`deleting`), is not passed
    /// on: the reconcile that wrote it decided what comes next.
    pub fn absorb(&self, event: watcher::Event<Secret>) -> Option<watcher::Event<Secret>> {
        let mut table = self.inner.lock().expect("secret cache lock");
        let mut own = false;
        match &event {
            watcher::Event::Init => {
                table.relisted = Some(HashSet::new());
                // A relist brings no deletion events: the ones awaited will not come.
                table.deleting.clear();
            }
            watcher::Event::InitDone => {
                if let Some(listed) = table.relisted.take() {
                    table.secrets.retain(|k, _| listed.contains(k));
                }
                self.synced.send_replace(true);
            }
            watcher::Event::Delete(secret) => {
                let key = key_of(secret);
                table.secrets.remove(&key);
                own = table.deleting.remove(&key);
            }
            watcher::Event::Apply(secret) | watcher::Event::InitApply(secret) => {
                let key = key_of(secret);
                if let Some(listed) = &mut table.relisted {
                    listed.insert(key.clone());
                }
                // The version this process wrote (`wrote`) is known already: its key and
                // certificate are not read again.
                let version = version_of(secret);
                let mut known =
                    table.secrets.get(&key).is_some_and(|c| version.is_some() && c.resource_version() == version);
                // The event of a write whose answer has not come yet: the facts were worked out
                // before writing, and are the same for the same bytes.
                if !known
                    && let Some((digest, facts)) = table.writing.get(&key)
                    && *digest == facts_digest(secret)
                {
                    let facts = SecretFacts { resource_version: version, ..facts.clone() };
                    let cached = CachedSecret { ownership: Ownership::of(&secret.metadata), facts };
                    table.writing.remove(&key);
                    table.secrets.insert(key.clone(), Arc::new(cached));
                    known = true;
                }
                if !known {
                    table.secrets.insert(key, Arc::new(CachedSecret::of(secret)));
                }
                own = known && matches!(event, watcher::Event::Apply(_));
            }
        }
        drop(table);
        (!own).then(|| event.modify(strip))
    }

    /// What this process just wrote: the `metadata` of the API server's answer to the write (its
    /// name, labels, annotations and version), and `facts` of the data written, worked out before
    /// writing (their version is set here). The watch's event of that version then finds them rather than
    /// reading the key and certificate again; a newer version in the cache stays.
    pub fn wrote(&self, metadata: &ObjectMeta, facts: SecretFacts) {
        let mut table = self.inner.lock().expect("secret cache lock");
        let key = (metadata.namespace.clone().unwrap_or_default(), metadata.name.clone().unwrap_or_default());
        table.writing.remove(&key);
        let Some(version) = metadata.resource_version.as_deref().and_then(|v| v.parse().ok()) else { return };
        if table.secrets.get(&key).and_then(|c| c.resource_version()).is_some_and(|cached| cached >= version) {
            return;
        }
        let facts = SecretFacts { resource_version: Some(version), ..facts };
        table.secrets.insert(key, Arc::new(CachedSecret { ownership: Ownership::of(metadata), facts }));
    }

    /// This process is about to write `secret` (its namespace, name and data), whose data has
    /// `facts`. When the watch brings that data before the write's answer comes (and
    /// [`Self::wrote`] with it), it is known all the same: not read again, and no reconcile woken.
    /// Call [`Self::not_written`] when the write fails.
    pub fn writing(&self, secret: &Secret, facts: SecretFacts) {
        let entry = (facts_digest(secret), facts);
        self.inner.lock().expect("secret cache lock").writing.insert(key_of(secret), entry);
    }

    /// The write announced by [`Self::writing`] failed.
    pub fn not_written(&self, namespace: &str, name: &str) {
        self.inner.lock().expect("secret cache lock").writing.remove(&(namespace.to_string(), name.to_string()));
    }

    /// This process is about to delete Secret `namespace/name`: the watch's event of that
    /// deletion wakes no reconcile. Call [`Self::not_deleted`] when the delete fails.
    pub fn deleting(&self, namespace: &str, name: &str) {
        self.inner.lock().expect("secret cache lock").deleting.insert((namespace.to_string(), name.to_string()));
    }

    /// The delete announced by [`Self::deleting`] deleted nothing (it failed, or the Secret was
    /// gone): a later deletion by someone else wakes the reconcile as usual.
    pub fn not_deleted(&self, namespace: &str, name: &str) {
        self.inner.lock().expect("secret cache lock").deleting.remove(&(namespace.to_string(), name.to_string()));
    }

    /// The Secret `namespace/name`, when it is labelled as certorder's.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<CachedSecret>> {
        let table = self.inner.lock().expect("secret cache lock");
        table.secrets.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Returns once the watch has done its first full list.
    pub async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|s| *s).await;
    }
}

/// What goes on from the watch of a Secret (to find its order): everything but its data (its
/// `managedFields` are not decoded: see lean).
pub fn strip(secret: &mut Secret) {
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
                         "labels": {"app.kubernetes.io/managed-by": "certorder", "certorder.io/order": "o"},
                         "annotations": {"certorder.io/order": "o"}},
            "type": "kubernetes.io/tls",
        }))
        .unwrap();
        s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect());
        s
    }

    #[test]
    fn the_cache_keeps_ownership_and_facts_and_the_event_drops_the_data() {
        let key = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let cache = SecretCache::default();
        let event = cache.absorb(watcher::Event::Apply(secret("k", "5", &[(TLS_KEY, key.to_pem())])));
        let Some(watcher::Event::Apply(passed)) = event else { panic!("an Apply stays an Apply") };
        assert_eq!(passed.data, None, "no key bytes go on");
        assert_eq!(crate::api::owning_order(&passed.metadata).as_deref(), Some("o"), "the order is found from it");
        let cached = cache.get("ns", "k").expect("cached");
        assert_eq!(
            cached.ownership,
            Ownership { managed: true, order: Some("o".into()), order_label: Some("o".into()), adopt: None }
        );
        assert!(cached.labelled_for("o") && !cached.labelled_for("p"));
        assert_eq!(cached.resource_version(), Some(5));
        assert_eq!(
            cached.facts.key,
            KeyFacts::Key { algorithm: KeyAlgorithm::EcdsaP256, fingerprint: key.public_key_fingerprint() }
        );
        assert!(cached.facts.certificate.is_none() && !cached.facts.has_certificate);

        // A new version replaces what was kept of the old one.
        cache.absorb(watcher::Event::Apply(secret("k", "6", &[(TLS_KEY, "garbage"), (TLS_CRT, "x")])));
        let cached = cache.get("ns", "k").unwrap();
        assert_eq!(cached.resource_version(), Some(6));
        assert_eq!((cached.facts.key.clone(), cached.facts.has_certificate), (KeyFacts::NotAKey, true));

        cache.absorb(watcher::Event::Delete(passed));
        assert!(cache.get("ns", "k").is_none(), "a deleted Secret is forgotten");
        assert!(cache.get("other", "k").is_none());
    }

    #[test]
    fn what_this_process_wrote_is_not_read_again_when_the_watch_brings_it() {
        let key = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let cache = SecretCache::default();
        let facts = SecretFacts::written(&key, None);
        assert_eq!(
            facts,
            SecretFacts { resource_version: None, ..SecretFacts::of(&secret("k", "1", &[(TLS_KEY, key.to_pem())])) }
        );

        // The write's answer (version 7) is cached with the facts worked out before writing. Here
        // the event of version 7 carries other data, which would give other facts if it were
        // read: it is not, as the version is the one written.
        cache.wrote(&secret("k", "7", &[]).metadata, facts.clone());
        assert_eq!(cache.get("ns", "k").unwrap().facts, SecretFacts { resource_version: Some(7), ..facts.clone() });
        let event = cache.absorb(watcher::Event::Apply(secret("k", "7", &[(TLS_KEY, "garbage")])));
        assert_eq!(cache.get("ns", "k").unwrap().facts.key, facts.key, "version 7 not read again");
        assert!(event.is_none(), "and its event wakes no reconcile");
        // A later version is read, and passed on.
        let event = cache.absorb(watcher::Event::Apply(secret("k", "8", &[(TLS_KEY, "garbage")])));
        assert!(event.is_some());
        assert_eq!(cache.get("ns", "k").unwrap().facts.key, KeyFacts::NotAKey);
        // A write answered with an older version than the cache holds changes nothing.
        cache.wrote(&secret("k", "7", &[]).metadata, facts);
        assert_eq!(cache.get("ns", "k").unwrap().resource_version(), Some(8));
    }

    #[test]
    fn a_write_whose_event_comes_before_its_answer_is_known_by_its_data() {
        let key = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let other = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let cache = SecretCache::default();
        let sent = secret("k", "", &[(TLS_KEY, key.to_pem())]);
        let facts = SecretFacts::written(&key, None);

        // Someone else's data in the same Secret is read, and wakes the reconcile.
        cache.writing(&sent, facts.clone());
        let theirs = cache.absorb(watcher::Event::Apply(secret("k", "4", &[(TLS_KEY, other.to_pem())])));
        assert!(theirs.is_some());
        assert_eq!(
            cache.get("ns", "k").unwrap().facts,
            SecretFacts::of(&secret("k", "4", &[(TLS_KEY, other.to_pem())]))
        );
        // The event of the data written takes the facts worked out before writing, and wakes nothing.
        let echo = cache.absorb(watcher::Event::Apply(secret("k", "5", &[(TLS_KEY, key.to_pem())])));
        assert!(echo.is_none(), "the event of this process's own write");
        assert_eq!(cache.get("ns", "k").unwrap().facts, SecretFacts { resource_version: Some(5), ..facts.clone() });
        // The answer then comes: nothing changes.
        cache.wrote(&secret("k", "5", &[]).metadata, facts.clone());
        assert_eq!(cache.get("ns", "k").unwrap().resource_version(), Some(5));
        // Once answered, the same data again is someone else's write.
        assert!(cache.absorb(watcher::Event::Apply(secret("k", "6", &[(TLS_KEY, key.to_pem())]))).is_some());

        // A write that failed announced nothing.
        cache.writing(&secret("f", "", &[(TLS_KEY, key.to_pem())]), facts);
        cache.not_written("ns", "f");
        assert!(cache.absorb(watcher::Event::Apply(secret("f", "2", &[(TLS_KEY, key.to_pem())]))).is_some());
    }

    #[test]
    fn a_deletion_this_process_made_wakes_no_reconcile_and_others_do() {
        let cache = SecretCache::default();
        let deleted = |name: &str| cache.absorb(watcher::Event::Delete(secret(name, "3", &[])));
        for name in ["mine", "failed", "theirs"] {
            cache.absorb(watcher::Event::Apply(secret(name, "2", &[])));
        }
        cache.deleting("ns", "mine");
        assert!(deleted("mine").is_none(), "the deletion it announced");
        assert!(cache.get("ns", "mine").is_none(), "is forgotten all the same");
        assert!(deleted("mine").is_some(), "only once: a later deletion is someone else's");
        cache.deleting("ns", "failed");
        cache.not_deleted("ns", "failed");
        assert!(deleted("failed").is_some(), "a delete that failed announced nothing");
        assert!(deleted("theirs").is_some());
        // A relist brings no deletion events: what was awaited is forgotten.
        cache.deleting("ns", "gone");
        cache.absorb(watcher::Event::Init);
        cache.absorb(watcher::Event::InitDone);
        assert!(deleted("gone").is_some());
    }

    #[test]
    fn a_relist_forgets_secrets_deleted_while_the_watch_was_down() {
        let cache = SecretCache::default();
        assert!(!cache.is_synced());
        for name in ["a", "b"] {
            cache.absorb(watcher::Event::Apply(secret(name, "1", &[])));
        }
        cache.absorb(watcher::Event::Init);
        cache.absorb(watcher::Event::InitApply(secret("a", "1", &[])));
        assert!(cache.get("ns", "b").is_some(), "kept while the list runs");
        cache.absorb(watcher::Event::InitDone);
        assert!(cache.is_synced());
        assert!(cache.get("ns", "a").is_some());
        assert!(cache.get("ns", "b").is_none(), "b was not listed again");
    }

    #[test]
    fn ownership_reads_the_labels_and_annotations_that_say_who_holds_a_secret() {
        let mut foreign = secret("f", "1", &[]);
        foreign.metadata.labels = None;
        foreign.metadata.annotations = Some([(ADOPT_ANNOTATION.to_string(), "shop".to_string())].into());
        assert_eq!(
            Ownership::of(&foreign.metadata),
            Ownership { managed: false, order: None, order_label: None, adopt: Some("shop".into()) }
        );
    }
}
