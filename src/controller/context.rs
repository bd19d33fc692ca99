//! What every reconcile shares: the client, caches of what the operator watches, configured
//! providers, and a little memory per order that is not worth a status write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::Config;
use crate::api::{ClusterCertificateProvider, MANAGER};
use crate::pki::PrivateKey;
use crate::provider::{AccountState, Provider};
use crate::validation::dns::DnsChecker;
use crate::validation::http::{HttpChecker, Ports};

/// The `ClusterDNSZone` cache, and whether it has done its first full list.
#[derive(Clone)]
pub struct ZoneCache {
    pub store: Store<crate::api::ClusterDNSZone>,
    pub synced: Arc<std::sync::atomic::AtomicBool>,
}

/// How often the memory of deleted orders is dropped.
const MEMORY_SWEEP: Duration = Duration::from_secs(60);

/// Pending keys kept in the process memory at most (about 1 KB each for P-256, 3 KB for RSA
/// 4096, and the CSR built with it, 0.5 to 1.7 KB): beyond that many orders between key and
/// install, keys are read from their Secrets.
const KEPT_KEYS: usize = 1024;

/// Per-order memory: polls and checks are cheap to repeat after a restart, so their times live
/// here rather than in status writes.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub last_poll: Option<DateTime<Utc>>,
    pub last_self_check: Option<DateTime<Utc>>,
    pub self_check_failures: u32,
    /// Reconcile errors in a row, for the error policy's backoff.
    pub errors: u32,
    /// The resourceVersion of the operator's last status write: an older object in the cache
    /// is stale and must not be acted on.
    pub written_version: Option<u64>,
    /// The resourceVersion of the TLS Secret this process last wrote, and when: an older copy
    /// in the Secret cache is stale, and so is a missing one for a little while (it would look
    /// as if nothing were installed).
    pub secret_written_version: Option<(u64, std::time::Instant)>,
    /// This process recorded the order's purchase intent (no earlier process can have bought
    /// under it), and whether it has called the vendor to buy since.
    pub purchase_intent_here: bool,
    pub purchase_called: bool,
    /// The vendor order this process bought for the order: if writing it to status failed, the
    /// next attempt records it from here instead of looking for it (or buying) again.
    pub bought: Option<String>,
}

pub struct Context {
    pub client: Client,
    pub config: Config,
    /// The Secrets certorder labelled, as far as reconciles read them (see `secrets`).
    pub secrets: Arc<super::secrets::SecretCache>,
    pub providers: Store<ClusterCertificateProvider>,
    pub dns: Arc<DnsChecker>,
    /// Fetches HTTP validation files as a CA does (self-check and the local CA).
    pub http: Arc<HttpChecker>,
    pub metrics: Arc<super::metrics::Metrics>,
    /// Metadata of the solver Pods the operator published (labelled), when watched.
    pub solver_pods: Option<Store<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Pod>>>,
    /// The process's providers and the orders of every namespace (shared by all Contexts).
    registry: Arc<crate::provider::registry::Registry>,
    /// Closes when a leader could not renew its Lease in time: no step may then start or run on.
    pub fence: Arc<super::fence::Fence>,
    /// The `ClusterDNSZone`s (cluster-scoped and few, shared by all Contexts), once listed.
    dns_zones: Option<ZoneCache>,
    memory: Mutex<HashMap<String, Memory>>,
    /// Pending keys this process generated, kept from the key's step to its discard so that the
    /// info and install steps need not read them back.
    kept_keys: Mutex<KeptKeys>,
}

/// Pending keys by order uid, at most `limit` of them.
struct KeptKeys {
    keys: HashMap<String, PrivateKey>,
    limit: usize,
}

impl KeptKeys {
    fn new(limit: usize) -> Self {
        KeptKeys { keys: HashMap::new(), limit }
    }

    /// Keeps the pending key of order `uid`; a new order's key only while fewer than `limit`
    /// are kept.
    fn keep(&mut self, uid: &str, key: &PrivateKey) {
        if self.keys.len() < self.limit || self.keys.contains_key(uid) {
            self.keys.insert(uid.to_string(), key.clone());
        }
    }

    fn forget(&mut self, uid: &str) {
        self.keys.remove(uid);
    }

    /// The key of order `uid`, when it has this public key and algorithm.
    fn get(&self, uid: &str, fingerprint: &str, algorithm: crate::pki::KeyAlgorithm) -> Option<PrivateKey> {
        self.keys.get(uid).filter(|k| k.algorithm() == algorithm && k.public_key_fingerprint() == fingerprint).cloned()
    }
}

impl Context {
    pub fn new(
        client: Client,
        config: Config,
        secrets: Arc<super::secrets::SecretCache>,
        providers: Store<ClusterCertificateProvider>,
        dns: Arc<DnsChecker>,
        metrics: Arc<super::metrics::Metrics>,
        registry: Arc<crate::provider::registry::Registry>,
    ) -> Context {
        let http = Arc::new(HttpChecker::new(
            dns.clone(),
            Ports { http: config.http_validation_port, https: config.https_validation_port },
        ));
        Context {
            client,
            config,
            secrets,
            providers,
            http,
            dns,
            metrics,
            solver_pods: None,
            registry,
            fence: super::fence::Fence::open(),
            dns_zones: None,
            memory: Mutex::default(),
            kept_keys: Mutex::new(KeptKeys::new(KEPT_KEYS)),
        }
    }

    /// Vendor order ids held by the orders of `provider` (any namespace), with the order (uid)
    /// holding each.
    pub fn vendor_claims(&self, provider: &str) -> std::collections::BTreeMap<String, String> {
        self.registry.vendor_claims(provider)
    }

    /// Other orders of the same provider (any namespace) whose status holds `order`'s vendor id.
    pub fn other_holders(&self, order: &crate::api::CertificateOrder) -> Vec<String> {
        self.registry.other_holders(order)
    }

    pub fn with_fence(mut self, fence: Arc<super::fence::Fence>) -> Context {
        self.fence = fence;
        self
    }

    /// The other orders of `namespace` naming the TLS Secret `secret` and not being deleted:
    /// (creation time, name).
    pub fn secret_claimants(
        &self,
        namespace: &str,
        secret: &str,
        except_uid: &str,
    ) -> Vec<(Option<k8s_openapi::jiff::Timestamp>, String)> {
        self.registry.secret_claimants(namespace, secret, except_uid)
    }

    /// The image solver Pods of `provider`'s orders run, and its pull Secrets: the provider's
    /// `spec.httpValidation`, else the operator's flags. Never the order's choice.
    pub fn http_defaults(&self, provider: &str) -> crate::validation::http::HttpDefaults {
        let http = self.providers.get(&ObjectRef::new(provider)).and_then(|p| p.spec.http_validation.clone());
        let http = http.unwrap_or_default();
        crate::validation::http::HttpDefaults {
            image: http.solver_image.unwrap_or_else(|| self.config.solver_image.clone()),
            pull_secrets: http.image_pull_secrets.unwrap_or_else(|| self.config.solver_image_pull_secrets.clone()),
            path_type: http.path_type.unwrap_or(self.config.ingress_path_type),
        }
    }

    /// Watches the solver Pods through `store`, so a Pod that disappears is published again.
    pub fn with_solver_pods(
        mut self,
        store: Store<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Pod>>,
    ) -> Context {
        self.solver_pods = Some(store);
        self
    }

    pub fn with_dns_zones(mut self, zones: ZoneCache) -> Context {
        self.dns_zones = Some(zones);
        self
    }

    /// Every `ClusterDNSZone`, when the cache has listed them (`None`: list them).
    pub fn cached_dns_zones(&self) -> Option<Vec<Arc<crate::api::ClusterDNSZone>>> {
        let zones = self.dns_zones.as_ref().filter(|z| z.synced.load(std::sync::atomic::Ordering::Relaxed))?;
        Some(zones.store.state())
    }

    /// Which zones exist, in which generation ("" before the cache has listed them, or with
    /// none): records are published again when this changes (a zone added after an order's
    /// records were shown to a person publishes them).
    pub fn dns_zones_fingerprint(&self) -> String {
        let mut zones: Vec<String> = self
            .cached_dns_zones()
            .unwrap_or_default()
            .iter()
            .map(|z| format!("{}@{}", z.name_any(), z.metadata.generation.unwrap_or_default()))
            .collect();
        zones.sort();
        zones.join(",")
    }

    /// Publishes an event about the order. Each event gets a recorder of its own: kube-runtime's
    /// recorder folds events of one reason into a series that keeps the first note (a new
    /// diagnosis must read as such), and caches every event it published for minutes, which at
    /// thousands of orders is memory for nothing.
    pub async fn publish(&self, event: &kube::runtime::events::Event, order: &crate::api::CertificateOrder) {
        use kube::Resource;
        let reporter =
            kube::runtime::events::Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        let reference = order.object_ref(&());
        let result = match long_name_event(event, &reference, &reporter) {
            // kube's Recorder names an event `<order>.<nanoseconds in hex>`, too long for an order
            // name near 253 characters: such events are named from a shortened order name.
            Some(object) => {
                let namespace = reference.namespace.clone().unwrap_or_default();
                let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &namespace);
                events.create(&Default::default(), &object).await.map(|_| ())
            }
            None => Recorder::new(self.client.clone(), reporter).publish(event, &reference).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot publish an event");
        }
    }

    /// Whether the Secret cache has done its first full list (kube-runtime waits only for the
    /// orders' cache).
    pub fn secrets_synced(&self) -> bool {
        self.secrets.is_synced()
    }

    /// Whether the providers' cache has done its first full list: until then a provider not
    /// found proves nothing (the order would be Stalled, and look again only after a while).
    pub fn providers_synced(&self) -> bool {
        use futures::FutureExt;
        self.providers.wait_until_ready().now_or_never().is_some_and(|ready| ready.is_ok())
    }

    pub fn memory(&self, uid: &str) -> Memory {
        self.memory.lock().expect("memory lock").get(uid).cloned().unwrap_or_default()
    }

    /// Whether this process has already acted on `order` as cached: its version is one this
    /// process wrote, or older than that (status writes are conditional on the version read, so
    /// no one else's change comes between). Its watch event then needs no reconcile: the one
    /// that wrote it decided what comes next.
    pub fn acted_on(&self, order: &super::cache::CachedOrder) -> bool {
        let (Some(uid), Some(version)) = (order.uid(), order.version()) else { return false };
        let memory = self.memory.lock().expect("memory lock");
        memory.get(uid).and_then(|m| m.written_version).is_some_and(|written| version <= written)
    }

    pub fn remember(&self, uid: &str, update: impl FnOnce(&mut Memory)) {
        update(self.memory.lock().expect("memory lock").entry(uid.to_string()).or_default());
    }

    pub fn forget(&self, uid: &str) {
        self.memory.lock().expect("memory lock").remove(uid);
        self.forget_key(uid);
    }

    /// Keeps the pending key of order `uid`, while fewer than [`KEPT_KEYS`] are kept.
    pub fn keep_key(&self, uid: &str, key: &PrivateKey) {
        self.kept_keys.lock().expect("kept keys lock").keep(uid, key);
    }

    /// Forgets the pending key of order `uid` (discarded, or the order gone).
    pub fn forget_key(&self, uid: &str) {
        self.kept_keys.lock().expect("kept keys lock").forget(uid);
    }

    /// The kept pending key of order `uid` when it is the one the order's Secret holds (same
    /// public key) and of `algorithm`: a key changed or replaced in the Secret is read from it.
    pub fn kept_key(&self, uid: &str, fingerprint: &str, algorithm: crate::pki::KeyAlgorithm) -> Option<PrivateKey> {
        self.kept_keys.lock().expect("kept keys lock").get(uid, fingerprint, algorithm)
    }

    /// Forgets, once a minute, the orders `orders` no longer holds: an order without a finalizer
    /// goes without a last reconcile, and a relist drops deleted orders without a word.
    pub fn forget_deleted_orders(self: &Arc<Self>, orders: Store<super::cache::CachedOrder>) {
        let ctx = Arc::clone(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(MEMORY_SWEEP);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let orders = orders.state();
                let live: std::collections::HashSet<&str> = orders.iter().filter_map(|o| o.uid()).collect();
                ctx.memory.lock().expect("memory lock").retain(|uid, _| live.contains(uid.as_str()));
                ctx.kept_keys.lock().expect("kept keys lock").keys.retain(|uid, _| live.contains(uid.as_str()));
            }
        });
    }

    /// A Secret the operator labelled, as the cache keeps it: who holds it and what its data
    /// held, read from one version.
    pub fn cached_secret(&self, namespace: &str, name: &str) -> Option<Arc<super::secrets::CachedSecret>> {
        self.secrets.get(namespace, name)
    }

    /// The provider an order names, built once per provider generation; `Err` says what to fix.
    pub async fn provider(&self, name: &str) -> Result<Arc<Provider>, String> {
        let Some(object) = self.providers.get(&ObjectRef::new(name)) else {
            return Err(format!(
                "ClusterCertificateProvider {name:?} not found: create it, or fix spec.providerRef.name"
            ));
        };
        let version =
            format!("{}/{}", object.uid().unwrap_or_default(), object.metadata.generation.unwrap_or_default());
        let provider = self
            .registry
            .get_or_build(
                name,
                &version,
                || self.build_provider(&object),
                async |result: &Result<Provider, String>| self.report_provider(&object, result).await,
            )
            .await?;
        self.check_account(&object, &provider).await;
        Ok(provider)
    }

    /// Builds the provider through its vendor's constructor (`provider::Provider::build`).
    async fn build_provider(&self, object: &ClusterCertificateProvider) -> Result<Provider, String> {
        let name = object.name_any();
        let env = crate::provider::Env {
            name: &name,
            client: &self.client,
            dns: &self.dns,
            http: &self.http,
            registry: &self.registry,
        };
        Provider::build(&object.spec, &env).await
    }

    /// While the vendor refuses the account, the provider shows Ready=False with the reason, and
    /// the credentials are read again from their Secret before retries: fixing the Secret resumes
    /// the orders with no change to any spec. Ready again once a call succeeds.
    async fn check_account(&self, object: &ClusterCertificateProvider, provider: &Provider) {
        match provider.account() {
            AccountState::NoAccount => {}
            AccountState::Refused(why) => {
                self.report_ready(object, Some(provider), false, "AccountRefused", &why).await;
                provider.reread_credentials(&self.client).await;
            }
            AccountState::Accepted => {
                self.report_ready(object, Some(provider), true, "Ready", &provider.ready_message()).await
            }
        }
    }

    /// After an order's steps: what the vendor answered them may have changed whether it
    /// refuses the account (a refusal, or the first call that succeeds after one). The provider
    /// shows it now, rather than at the next reconcile that reads the provider.
    pub async fn recheck_account(&self, name: &str, provider: &Provider) {
        if let Some(object) = self.providers.get(&ObjectRef::new(name)) {
            self.check_account(&object, provider).await;
        }
    }

    /// Writes the provider's kind and Ready condition, when they change.
    async fn report_provider(&self, object: &ClusterCertificateProvider, result: &Result<Provider, String>) {
        match result {
            Ok(p) => self.report_ready(object, Some(p), true, "Ready", &p.ready_message()).await,
            Err(e) => self.report_ready(object, None, false, "Invalid", e).await,
        }
    }

    /// Writes the provider's Ready condition, unless the cached provider shows it already and
    /// it is also the one this process last wrote (the cache may not show that write yet).
    async fn report_ready(
        &self,
        object: &ClusterCertificateProvider,
        provider: Option<&Provider>,
        ready: bool,
        reason: &str,
        message: &str,
    ) {
        let status = crate::api::ConditionStatus::from(ready);
        let current = object.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        let namespaces = super::tenancy::describe_selector(object);
        let last_written = provider.and_then(Provider::reported);
        if current.is_some_and(|c| c.status == status && c.message == message)
            && object.status.as_ref().and_then(|s| s.observed_generation) == object.metadata.generation
            && object.status.as_ref().and_then(|s| s.namespaces.as_ref()) == Some(&namespaces)
            && last_written.as_ref().is_none_or(|(r, m)| *r == ready && m == message)
        {
            return;
        }
        let since = match current {
            Some(c) if c.status == status => c.last_transition_time,
            _ => Utc::now(),
        };
        let patch = json!({
            "apiVersion": "certorder.io/v1alpha1",
            "kind": "ClusterCertificateProvider",
            "status": {
                "kind": object.spec.kind().ok(),
                "observedGeneration": object.metadata.generation,
                "namespaces": namespaces,
                "conditions": [{
                    "type": "Ready", "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": since, "observedGeneration": object.metadata.generation,
                }],
            },
        });
        let api: Api<ClusterCertificateProvider> = Api::all(self.client.clone());
        match api.patch_status(&object.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(patch)).await {
            Ok(_) => {
                if let Some(provider) = provider {
                    provider.set_reported(ready, message);
                }
            }
            Err(e) => tracing::warn!(provider = %object.name_any(), error = %e, "cannot write the provider's status"),
        }
    }
}

/// The Event kube's Recorder would write, for an order whose name leaves no room for the Recorder's
/// `.<nanoseconds>` suffix within the 253 characters of an object name; `None` for other orders.
fn long_name_event(
    event: &kube::runtime::events::Event,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    reporter: &kube::runtime::events::Reporter,
) -> Option<k8s_openapi::api::events::v1::Event> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let name = reference.name.as_deref()?;
    if name.len() + 17 <= 253 {
        return None;
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    Some(k8s_openapi::api::events::v1::Event {
        metadata: ObjectMeta {
            name: Some(crate::api::shortened(name, &format!(".{:x}", now.as_nanosecond()), 253)),
            namespace: reference.namespace.clone(),
            ..Default::default()
        },
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        related: event.secondary.clone(),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone().unwrap_or_else(|| reporter.controller.clone())),
        type_: Some(match event.type_ {
            kube::runtime::events::EventType::Normal => "Normal".into(),
            kube::runtime::events::EventType::Warning => "Warning".into(),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{KeyAlgorithm, generate_key};

    #[test]
    fn kept_keys_are_bounded_and_given_only_for_the_secrets_key() {
        let (a, b, c) = (
            generate_key(KeyAlgorithm::EcdsaP256).unwrap(),
            generate_key(KeyAlgorithm::EcdsaP256).unwrap(),
            generate_key(KeyAlgorithm::EcdsaP256).unwrap(),
        );
        let p256 = KeyAlgorithm::EcdsaP256;
        let mut kept = KeptKeys::new(2);
        kept.keep("u1", &a);
        kept.keep("u2", &b);
        kept.keep("u3", &c);
        let fingerprint = |k: &PrivateKey| k.public_key_fingerprint();
        assert_eq!(
            kept.get("u1", &fingerprint(&a), p256).map(|k| k.to_pem().to_string()),
            Some(a.to_pem().to_string())
        );
        assert!(kept.get("u3", &fingerprint(&c), p256).is_none(), "beyond the limit a key is read from its Secret");
        // The Secret holds another key (replaced by someone): the kept one is not used.
        assert!(kept.get("u1", &fingerprint(&b), p256).is_none());
        assert!(kept.get("u1", &fingerprint(&a), KeyAlgorithm::EcdsaP384).is_none());
        // A kept order's new key replaces its old one even at the limit; a forgotten one frees a place.
        kept.keep("u2", &c);
        assert!(kept.get("u2", &fingerprint(&c), p256).is_some());
        kept.forget("u1");
        assert!(kept.get("u1", &fingerprint(&a), p256).is_none());
        kept.keep("u3", &c);
        assert!(kept.get("u3", &fingerprint(&c), p256).is_some());
    }
}
