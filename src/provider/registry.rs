//! One registry of providers for the whole process: each `ClusterCertificateProvider` is built once
//! per generation and shared by every namespace the operator watches — one client, one rate limit,
//! one claims map and one purchase lock per provider, however many namespaces its orders live in.
//! It also keeps an index of every watched order (by vendor order id, and by TLS Secret), so the
//! vendor order ids orders hold are seen across namespaces without going through every order at
//! each reconcile, and which providers use the same vendor account: those share one [`Account`] (purchase lock and
//! claims), so an order of one never adopts a vendor order bought for an order of the other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;

use super::Provider;
use crate::api::CertificateOrder;

#[derive(Default)]
pub struct Registry {
    /// Provider name → (uid/generation it was built from, the provider).
    built: tokio::sync::Mutex<HashMap<String, (String, Arc<Provider>)>>,
    /// What the cross-order checks read of every watched order.
    orders: Mutex<OrderIndex>,
    /// Vendor account key → what every provider using that account shares.
    accounts: Mutex<HashMap<String, Arc<Account>>>,
    /// Provider name → its vendor account key.
    account_of: Mutex<HashMap<String, String>>,
}

/// What the providers of one vendor account share: the vendor sees one account, whichever
/// `ClusterCertificateProvider` an order names.
#[derive(Debug, Default)]
pub struct Account {
    /// Vendor order ids bought or adopted by this process, with the order (uid) they went to: the
    /// order caches may not show them yet.
    pub claimed: Mutex<BTreeMap<String, String>>,
    /// Purchase calls share it; a lookup for a lost purchase holds it alone, so it never sees an
    /// order whose purchase call is still being answered, and two lookups never pick the same one.
    pub buying: tokio::sync::RwLock<()>,
}

impl Registry {
    /// The provider built from `version` of `name`, building it with `build` when there is none
    /// (or an older one). `on_built` sees every build's result (to report it in the provider's
    /// status). One build at a time.
    pub async fn get_or_build<B, F>(
        &self,
        name: &str,
        version: &str,
        build: B,
        on_built: impl AsyncFnOnce(&Result<Provider, String>),
    ) -> Result<Arc<Provider>, String>
    where
        B: FnOnce() -> F,
        F: Future<Output = Result<Provider, String>>,
    {
        let mut built = self.built.lock().await;
        if let Some((v, provider)) = built.get(name)
            && v == version
        {
            return Ok(provider.clone());
        }
        let result = build().await;
        on_built(&result).await;
        let provider = Arc::new(result?);
        built.insert(name.to_string(), (version.to_string(), provider.clone()));
        Ok(provider)
    }

    /// The shared state of vendor account `key`, for provider `provider`, which uses it from now on.
    pub fn account(&self, provider: &str, key: &str) -> Arc<Account> {
        self.account_of.lock().expect("registry lock").insert(provider.to_string(), key.to_string());
        self.accounts.lock().expect("registry lock").entry(key.to_string()).or_default().clone()
    }

    /// Names of the providers that use the same vendor account as `provider` (itself included).
    fn same_account(&self, provider: &str) -> Vec<String> {
        let accounts = self.account_of.lock().expect("registry lock");
        match accounts.get(provider) {
            Some(key) => accounts.iter().filter(|(_, k)| *k == key).map(|(p, _)| p.clone()).collect(),
            None => vec![provider.to_string()],
        }
    }

    /// A new source of order events (one per watched namespace, or one for all): its number.
    pub fn order_source(&self) -> usize {
        let mut index = self.orders.lock().expect("registry lock");
        index.sources += 1;
        index.sources - 1
    }

    /// Follows one event of the order watch of `source`, as its cache does.
    pub fn order_event(&self, source: usize, event: &watcher::Event<CertificateOrder>) {
        self.orders.lock().expect("registry lock").apply(source, event);
    }

    /// Vendor order ids held by the orders of `provider` (or of a provider of the same account), in
    /// any namespace, with the uid of the order holding each.
    pub fn vendor_claims(&self, provider: &str) -> BTreeMap<String, String> {
        let providers = self.same_account(provider);
        let index = self.orders.lock().expect("registry lock");
        index
            .entries
            .iter()
            .filter(|(_, e)| providers.iter().any(|p| **p == *e.provider))
            .filter_map(|(uid, e)| Some((e.vendor_id.as_deref()?.to_owned(), uid.to_string())))
            .collect()
    }

    /// Other orders of the same provider (or vendor account), in any namespace, whose status holds
    /// `order`'s vendor order id (`namespace/name`, sorted).
    pub fn other_holders(&self, order: &CertificateOrder) -> Vec<String> {
        let Some(id) = order.status.as_ref().and_then(|s| s.order.as_ref()).and_then(|o| o.id.as_ref()) else {
            return Vec::new();
        };
        let providers = self.same_account(&order.spec.provider_ref.name);
        let index = self.orders.lock().expect("registry lock");
        let mut others: Vec<String> = index
            .by_vendor_id
            .get(id.as_str())
            .into_iter()
            .flatten()
            .filter(|uid| order.metadata.uid.as_deref() != Some(&***uid))
            .filter_map(|uid| index.entries.get(uid))
            .filter(|e| providers.iter().any(|p| **p == *e.provider))
            .map(|e| format!("{}/{}", e.namespace, e.name))
            .collect();
        others.sort();
        others
    }

    /// The other orders of `namespace` that name the TLS Secret `secret`, and are not being deleted:
    /// (creation time, name).
    pub fn secret_claimants(
        &self,
        namespace: &str,
        secret: &str,
        except_uid: &str,
    ) -> Vec<(Option<Timestamp>, String)> {
        let index = self.orders.lock().expect("registry lock");
        let Some(uids) = index.by_secret.get(&(Box::from(namespace), Box::from(secret))) else {
            return Vec::new();
        };
        uids.iter()
            .filter(|uid| ***uid != *except_uid)
            .filter_map(|uid| index.entries.get(uid))
            .filter(|e| !e.deleting)
            .map(|e| (e.created, e.name.to_string()))
            .collect()
    }
}

/// What the cross-order checks read of one order. The namespace and provider are shared with
/// every other order of theirs (`OrderIndex::shared`).
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    source: usize,
    namespace: Arc<str>,
    name: Box<str>,
    provider: Arc<str>,
    secret_name: Box<str>,
    vendor_id: Option<Box<str>>,
    created: Option<Timestamp>,
    deleting: bool,
}

/// A TLS Secret: (namespace, name).
type SecretKey = (Box<str>, Box<str>);

impl Entry {
    /// The TLS Secret the order names, as `OrderIndex::by_secret` keys it.
    fn secret_key(&self) -> SecretKey {
        (Box::from(&*self.namespace), self.secret_name.clone())
    }
}

/// Every watched order by uid (with the source that saw it), and the lookups the checks make:
/// kept from the watch events, so a lookup costs what it finds, not the number of orders. Each
/// uid is one shared string, held by the entry and the lookups (with 10,000 orders, copies of
/// the uid, namespace and provider in every map took a quarter of the index).
#[derive(Default)]
struct OrderIndex {
    sources: usize,
    entries: HashMap<Arc<str>, Entry>,
    /// Uids by vendor order id, and by (namespace, TLS Secret): almost always one each, so a
    /// `Vec` (a B-tree set would take a node of eleven slots per order).
    by_vendor_id: HashMap<Box<str>, Vec<Arc<str>>>,
    by_secret: HashMap<SecretKey, Vec<Arc<str>>>,
    /// Namespaces and provider names, one copy each for all the orders that name them.
    shared: HashSet<Arc<str>>,
    /// A relist in progress, by source: the orders it has listed so far.
    relisting: HashMap<usize, Vec<(Arc<str>, Entry)>>,
}

impl OrderIndex {
    fn apply(&mut self, source: usize, event: &watcher::Event<CertificateOrder>) {
        match event {
            watcher::Event::Apply(order) => {
                if let Some((uid, entry)) = self.entry(source, order) {
                    self.insert(uid, entry);
                }
            }
            watcher::Event::Delete(order) => {
                if let Some(uid) = &order.metadata.uid {
                    self.remove(uid);
                }
            }
            watcher::Event::Init => {
                self.relisting.insert(source, Vec::new());
            }
            watcher::Event::InitApply(order) => {
                if let Some(found) = self.entry(source, order) {
                    self.relisting.entry(source).or_default().push(found);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.remove(&source).unwrap_or_default();
                let gone: Vec<Arc<str>> =
                    self.entries.iter().filter(|(_, e)| e.source == source).map(|(uid, _)| uid.clone()).collect();
                for uid in gone {
                    self.remove(&uid);
                }
                for (uid, entry) in listed {
                    self.insert(uid, entry);
                }
            }
        }
    }

    /// The one copy of `text` the index keeps.
    fn share(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.shared.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.shared.insert(shared.clone());
        shared
    }

    fn entry(&mut self, source: usize, order: &CertificateOrder) -> Option<(Arc<str>, Entry)> {
        let meta = &order.metadata;
        let (uid, namespace, name) = (meta.uid.as_deref()?, meta.namespace.as_deref()?, meta.name.as_deref()?);
        let uid = self.entries.get_key_value(uid).map(|(u, _)| u.clone()).unwrap_or_else(|| Arc::from(uid));
        let entry = Entry {
            source,
            namespace: self.share(namespace),
            name: name.into(),
            provider: self.share(&order.spec.provider_ref.name),
            secret_name: order.spec.secret_name.as_str().into(),
            vendor_id: order
                .status
                .as_ref()
                .and_then(|s| s.order.as_ref())
                .and_then(|o| o.id.as_deref())
                .map(Box::from),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            deleting: meta.deletion_timestamp.is_some(),
        };
        Some((uid, entry))
    }

    fn insert(&mut self, uid: Arc<str>, entry: Entry) {
        if self.entries.get(&uid).is_some_and(|e| *e == entry) {
            return;
        }
        self.remove(&uid);
        // Almost always the only one: room for one (a default `Vec` makes room for four).
        let one = || Vec::with_capacity(1);
        if let Some(id) = &entry.vendor_id {
            self.by_vendor_id.entry(id.clone()).or_insert_with(one).push(uid.clone());
        }
        let key = entry.secret_key();
        self.by_secret.entry(key).or_insert_with(one).push(uid.clone());
        self.entries.insert(uid, entry);
    }

    fn remove(&mut self, uid: &str) {
        let Some(entry) = self.entries.remove(uid) else { return };
        if let Some(id) = &entry.vendor_id
            && let Some(uids) = self.by_vendor_id.get_mut(id)
        {
            uids.retain(|u| **u != *uid);
            if uids.is_empty() {
                self.by_vendor_id.remove(id);
            }
        }
        let key = entry.secret_key();
        if let Some(uids) = self.by_secret.get_mut(&key) {
            uids.retain(|u| **u != *uid);
            if uids.is_empty() {
                self.by_secret.remove(&key);
            }
        }
        // A namespace or provider no other order names is dropped.
        let Entry { namespace, provider, .. } = entry;
        for shared in [namespace, provider] {
            if Arc::strong_count(&shared) == 2 {
                self.shared.remove(&shared);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(ns: &str, name: &str, uid: &str, secret: &str, vendor_id: Option<&str>) -> CertificateOrder {
        let mut status = serde_json::json!({});
        if let Some(id) = vendor_id {
            status = serde_json::json!({"order": {"name": name, "id": id}});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "creationTimestamp": "2026-11-26T00:00:00Z"},
            "spec": {"providerRef": {"name": "p"}, "product": {"type": "DV"}, "domains": ["a.example"], "secretName": secret},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn the_order_index_follows_applies_deletes_and_relists() {
        let registry = Registry::default();
        let (a, b) = (registry.order_source(), registry.order_source());
        assert_ne!(a, b);
        let one = order("x", "one", "u1", "tls", Some("V1"));
        let two = order("x", "two", "u2", "tls", Some("V1"));
        let three = order("y", "three", "u3", "tls", None);
        registry.order_event(a, &watcher::Event::Apply(one.clone()));
        registry.order_event(a, &watcher::Event::Apply(two.clone()));
        registry.order_event(b, &watcher::Event::Apply(three.clone()));
        assert_eq!(registry.other_holders(&one), ["x/two"]);
        assert_eq!(registry.secret_claimants("x", "tls", "u1").len(), 1);
        assert_eq!(registry.secret_claimants("y", "tls", "").len(), 1, "namespaces apart");
        assert_eq!(registry.vendor_claims("p").get("V1").map(String::len), Some(2));
        // The second order's vendor id changes: it no longer shares.
        registry.order_event(a, &watcher::Event::Apply(order("x", "two", "u2", "tls", Some("V2"))));
        assert!(registry.other_holders(&one).is_empty());
        // A relist of source a that no longer has "two": it is gone; source b is untouched.
        registry.order_event(a, &watcher::Event::Init);
        registry.order_event(a, &watcher::Event::InitApply(one.clone()));
        registry.order_event(a, &watcher::Event::InitDone);
        assert!(registry.secret_claimants("x", "tls", "u1").is_empty());
        assert_eq!(registry.secret_claimants("y", "tls", "").len(), 1);
        assert_eq!(registry.vendor_claims("p").len(), 1);
        registry.order_event(b, &watcher::Event::Delete(three));
        assert!(registry.secret_claimants("y", "tls", "").is_empty());
        let index = registry.orders.lock().unwrap();
        assert_eq!(index.entries.len(), 1);
        assert_eq!(index.by_vendor_id.len(), 1, "emptied lookups are dropped");
        assert_eq!(index.by_secret.len(), 1);
        // One copy of the namespace and provider the order left names; namespace "y" is gone.
        let mut shared: Vec<&str> = index.shared.iter().map(|s| &**s).collect();
        shared.sort();
        assert_eq!(shared, ["p", "x"]);
        let entry = index.entries.get("u1").unwrap();
        assert!(Arc::ptr_eq(&entry.namespace, index.shared.get("x").unwrap()), "shared, not copied");
        assert!(
            index
                .by_secret
                .values()
                .flatten()
                .all(|uid| Arc::ptr_eq(uid, index.entries.get_key_value("u1").unwrap().0))
        );
    }
}
