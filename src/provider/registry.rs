//! One registry of providers for the whole process: each `ClusterCertificateProvider` is built once
//! per generation and shared by every namespace the operator watches — one client, one rate limit,
//! one claims map and one purchase lock per provider, however many namespaces its orders live in.
//! It also knows every order cache, so the vendor order ids orders hold are seen across namespaces.

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

    pub fn watch_orders(&self, store: Store<CertificateOrder>) {
        self.orders.lock().expect("registry lock").push(store);
    }

    /// The orders of every namespace that `keep` keeps (only those are copied out of the caches:
    /// this runs at every reconcile, over every order).
    fn orders_where(&self, keep: impl Fn(&CertificateOrder) -> bool) -> Vec<Arc<CertificateOrder>> {
        self.orders.lock().expect("registry lock").iter().flat_map(|s| s.state_filter(|o| keep(o))).collect()
    }

    /// Vendor order ids held by the orders of `provider`, in any namespace, with the uid of the
    /// order holding each.
    pub fn vendor_claims(&self, provider: &str) -> BTreeMap<String, String> {
        self.orders_where(|o| o.spec.provider_ref.name == provider)
            .iter()
            .filter_map(|o| Some((o.status.as_ref()?.order.as_ref()?.id.clone()?, o.uid()?)))
            .collect()
    }

    /// Other orders of the same provider, in any namespace, whose status holds `order`'s vendor
    /// order id (`namespace/name`, sorted).
    pub fn other_holders(&self, order: &CertificateOrder) -> Vec<String> {
        fn vendor_id(o: &CertificateOrder) -> Option<&str> {
            o.status.as_ref()?.order.as_ref()?.id.as_deref()
        }
        let Some(id) = vendor_id(order) else { return Vec::new() };
        let mut others: Vec<String> = self
            .orders_where(|o| {
                vendor_id(o) == Some(id)
                    && o.spec.provider_ref.name == order.spec.provider_ref.name
                    && o.uid() != order.uid()
            })
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
            .collect();
        others.sort();
        others
    }
}
