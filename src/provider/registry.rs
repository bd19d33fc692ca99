//! One registry of providers for the whole process: each `ClusterCertificateProvider` is built once
//! per generation and shared by every namespace the operator watches — one client, one rate limit,
//! one claims map and one purchase lock per provider, however many namespaces its orders live in.
//! It also knows every order cache, so the vendor order ids orders hold are seen across namespaces,
//! and which providers use the same vendor account: those share one [`Account`] (purchase lock and
//! claims), so an order of one never adopts a vendor order bought for an order of the other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::Provider;
use crate::api::CertificateOrder;

#[derive(Default)]
pub struct Registry {
    /// Provider name → (uid/generation it was built from, the provider).
    built: tokio::sync::Mutex<HashMap<String, (String, Arc<Provider>)>>,
    /// The order caches of every watched namespace.
    orders: Mutex<Vec<Store<CertificateOrder>>>,
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

/// The vendor order id an order holds, and its uid.
fn claim_of(o: &CertificateOrder) -> Option<(&String, &String)> {
    Some((o.status.as_ref()?.order.as_ref()?.id.as_ref()?, o.metadata.uid.as_ref()?))
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

    pub fn watch_orders(&self, store: Store<CertificateOrder>) {
        self.orders.lock().expect("registry lock").push(store);
    }

    /// The orders of every namespace that `keep` keeps (only those are copied out of the caches:
    /// this runs at every reconcile, over every order).
    pub fn orders_where(&self, keep: impl Fn(&CertificateOrder) -> bool) -> Vec<Arc<CertificateOrder>> {
        self.orders.lock().expect("registry lock").iter().flat_map(|s| s.state_filter(|o| keep(o))).collect()
    }

    /// Vendor order ids held by the orders of `provider` (or of a provider of the same account), in
    /// any namespace, with the uid of the order holding each.
    pub fn vendor_claims(&self, provider: &str) -> BTreeMap<String, String> {
        let providers = self.same_account(provider);
        self.orders_where(|o| claim_of(o).is_some() && providers.contains(&o.spec.provider_ref.name))
            .iter()
            .filter_map(|o| claim_of(o).map(|(id, uid)| (id.clone(), uid.clone())))
            .collect()
    }

    /// Other orders of the same provider (or vendor account), in any namespace, whose status holds
    /// `order`'s vendor order id (`namespace/name`, sorted).
    pub fn other_holders(&self, order: &CertificateOrder) -> Vec<String> {
        fn vendor_id(o: &CertificateOrder) -> Option<&str> {
            o.status.as_ref()?.order.as_ref()?.id.as_deref()
        }
        let Some(id) = vendor_id(order) else { return Vec::new() };
        let providers = self.same_account(&order.spec.provider_ref.name);
        let mut others: Vec<String> = self
            .orders_where(|o| {
                vendor_id(o) == Some(id)
                    && providers.contains(&o.spec.provider_ref.name)
                    && o.metadata.uid != order.metadata.uid
            })
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
            .collect();
        others.sort();
        others
    }
}
