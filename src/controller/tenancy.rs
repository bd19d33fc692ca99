//! A shared cluster: what an order may ask of the operator, whose rights are wider than its
//! author's. Checked before each step that writes, buys or publishes (not on every reconcile):
//!
//! - Secrets: the operator writes or deletes only a Secret it created for this order (labelled
//!   `certorder.io/order=<order>`), one that does not exist, or one whose owner annotated it
//!   `certorder.io/adopt-for=<order>`. Of two orders naming one Secret that neither holds yet, the
//!   older one may take it.
//! - Providers: a `ClusterCertificateProvider` with `spec.namespaceSelector` serves only the
//!   namespaces it selects.
//! - Hosts: HTTP validation does not route a host that an Ingress or HTTPRoute of another
//!   namespace serves, unless the provider allows it.
//!
//! A refusal is a message naming the object and the rule; the order is Stalled with it
//! (`ProviderObs::NotPermitted`) and a Warning event, and looks again after a while.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::core::labels::{Selector, SelectorExt};
use kube::{Api, ResourceExt};

use super::context::Context;
use super::observe::pending_key_secret_name;
use super::secrets::Ownership;
use crate::api::{ADOPT_ANNOTATION, CertificateOrder, ClusterCertificateProvider, ORDER_LABEL, ValidationMethod};
use crate::lifecycle::{Step, normalize_domains};

/// Objects listed per page when looking for other namespaces' hosts.
const PAGE: u32 = 500;

/// Why the order may not take `step`, or `None`. API errors are returned as errors (the check
/// fails closed: the step waits).
/// `passed` holds the checks that passed earlier in the same reconcile: the first steps of a new
/// certificate (key, intent, purchase) ask the same questions, which are answered once.
pub async fn refusal(
    ctx: &Context,
    order: &CertificateOrder,
    step: &Step,
    passed: &mut BTreeSet<Check>,
) -> Result<Option<String>, kube::Error> {
    let checks: &[Check] = match step {
        // The first steps of a (new) certificate: everything is checked before a key is made or
        // anything is bought.
        Step::GenerateKey | Step::RecordPurchaseIntent | Step::Purchase => {
            &[Check::Namespace, Check::Spend, Check::PendingKey, Check::TlsSecret, Check::Hosts]
        }
        // Renewing the term spends money again: the namespace must still be granted the provider.
        Step::RecordTermRenewalIntent | Step::RenewTerm => &[Check::Namespace, Check::Spend],
        Step::Install | Step::Reinstall => &[Check::TlsSecret],
        Step::DiscardPendingKey => &[Check::PendingKey],
        Step::PublishChallenges { .. } => &[Check::Hosts],
        _ => &[],
    };
    for check in checks {
        if passed.contains(check) {
            continue;
        }
        let found = match check {
            Check::Namespace => forbidden_is_refusal(namespace_refusal(ctx, order).await, "get Namespaces")?,
            Check::Spend => provider_object(ctx, order).and_then(|p| spend_refusal(&p, order)),
            Check::PendingKey => {
                let name = pending_key_secret_name(&order.name_any());
                // The key's Secret is created, never applied: before its creation, the create is the look.
                let lookup = if *step == Step::GenerateKey { Lookup::ByCreate } else { Lookup::Get };
                secret_refusal(ctx, order, &name, SecretUse::PendingKey, lookup).await?
            }
            Check::TlsSecret => {
                secret_refusal(ctx, order, &order.spec.secret_name, SecretUse::Tls, Lookup::Get).await?
            }
            Check::Hosts => {
                forbidden_is_refusal(hosts_refusal(ctx, order).await, "list Ingresses and HTTPRoutes cluster-wide")?
            }
        };
        if found.is_some() {
            return Ok(found);
        }
        passed.insert(*check);
    }
    Ok(None)
}

/// The operator may not read what a check needs (RBAC from an older chart): the order is
/// refused, saying which permission is missing, rather than failing reconcile after reconcile.
fn forbidden_is_refusal(
    result: Result<Option<String>, kube::Error>,
    what: &str,
) -> Result<Option<String>, kube::Error> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Some(format!(
            "certorder cannot check this order in a shared cluster: its ServiceAccount may not {what} ({}); \
             grant it (the chart's ClusterRole does)",
            s.message
        ))),
        other => other,
    }
}

/// One question asked before a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    Namespace,
    Spend,
    PendingKey,
    TlsSecret,
    Hosts,
}

/// How a Secret the cache does not hold (it holds only certorder's) is looked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// One GET.
    Get,
    /// Not at all: the step creates it, and its create fails on one that exists, whose holder the
    /// step then checks ([`pending_key_refusal`]).
    ByCreate,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SecretUse {
    /// `spec.secretName`: may be adopted with the owner's annotation.
    Tls,
    /// `<order>-certorder-key`: never adopted.
    PendingKey,
}

/// Who holds an existing Secret, as far as certorder is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    /// Created by certorder for this order, or its owner lets this order adopt it.
    ThisOrder,
    /// Created by certorder for another order.
    Order(String),
    /// Not created by certorder for any order.
    Foreign,
}

/// Who holds `secret`, for the order named `order` (pure: labels and annotations only).
pub fn holder(secret: &Ownership, order: &str, adoptable: bool) -> Holder {
    if adoptable && secret.adopt.as_deref() == Some(order) {
        return Holder::ThisOrder;
    }
    if !secret.managed {
        return Holder::Foreign;
    }
    // The full order name (long names are shortened in the label and kept whole in the annotation).
    match &secret.order {
        Some(o) if o == order => Holder::ThisOrder,
        Some(o) => Holder::Order(o.clone()),
        None => Holder::Foreign,
    }
}

async fn secret_refusal(
    ctx: &Context,
    order: &CertificateOrder,
    name: &str,
    purpose: SecretUse,
    lookup: Lookup,
) -> Result<Option<String>, kube::Error> {
    let ns = order.namespace().unwrap_or_default();
    // The cache holds only Secrets labelled as certorder's; anything else needs one GET, unless
    // the step's own create is the look (it fails on a Secret that exists, see `pending_key_refusal`).
    let existing = match (ctx.cached_secret(&ns, name), lookup) {
        (Some(cached), _) => Some(cached.ownership.clone()),
        (None, Lookup::ByCreate) => return Ok(None),
        (None, Lookup::Get) => {
            Api::<Secret>::namespaced(ctx.client.clone(), &ns).get_opt(name).await?.map(|s| Ownership::of(&s.metadata))
        }
    };
    Ok(refusal_for_secret(ctx, order, name, purpose, existing.as_ref()))
}

/// Why the order may not take the pending key's Secret that its create found existing (`secret`).
pub fn pending_key_refusal(ctx: &Context, order: &CertificateOrder, secret: &Ownership) -> Option<String> {
    let name = pending_key_secret_name(&order.name_any());
    refusal_for_secret(ctx, order, &name, SecretUse::PendingKey, Some(secret))
}

/// Why the order may not write the Secret `name`, which is `existing` (or does not exist).
fn refusal_for_secret(
    ctx: &Context,
    order: &CertificateOrder,
    name: &str,
    purpose: SecretUse,
    existing: Option<&Ownership>,
) -> Option<String> {
    let ns = order.namespace().unwrap_or_default();
    let me = order.name_any();
    let adoptable = purpose == SecretUse::Tls;
    let what = match purpose {
        SecretUse::Tls => "spec.secretName",
        SecretUse::PendingKey => "the order's pending private key",
    };
    let Some(secret) = existing else {
        return match purpose {
            SecretUse::Tls => earlier_claimant(ctx, order).map(|other| {
                format!(
                    "Secret {name:?} ({what}) is also named by CertificateOrder {other:?}, which was created first and \
                     takes it: choose another spec.secretName"
                )
            }),
            SecretUse::PendingKey => None,
        };
    };
    match (holder(secret, &me, adoptable), purpose) {
        (Holder::ThisOrder, _) => None,
        (Holder::Order(other), SecretUse::Tls) => Some(format!(
            "Secret {name:?} ({what}) is held by CertificateOrder {other:?} (its label {ORDER_LABEL}); certorder does \
             not take it over: choose another spec.secretName, or let this order adopt it by annotating the Secret \
             {ADOPT_ANNOTATION}={me}"
        )),
        (Holder::Order(other), SecretUse::PendingKey) => Some(format!(
            "Secret {name:?} ({what}) is held by CertificateOrder {other:?}; certorder does not replace or delete \
             it: rename this order"
        )),
        (Holder::Foreign, SecretUse::Tls) => Some(format!(
            "Secret {name:?} ({what}) exists and was not created by certorder for this order; certorder writes \
             only Secrets it created: choose another spec.secretName, or let this order adopt it by annotating the \
             Secret {ADOPT_ANNOTATION}={me} (kubectl annotate secret {name} -n {ns} {ADOPT_ANNOTATION}={me})"
        )),
        (Holder::Foreign, SecretUse::PendingKey) => Some(format!(
            "Secret {name:?} ({what}) exists and was not created by certorder for this order; certorder does not \
             replace or delete it: rename that Secret or this order"
        )),
    }
}

/// Another order of the namespace naming the same TLS Secret and created before this one (by
/// creation time, then name): it is the one that may take the Secret.
fn earlier_claimant(ctx: &Context, order: &CertificateOrder) -> Option<String> {
    let meta = &order.metadata;
    let mine = (meta.creation_timestamp.as_ref().map(|t| t.0), meta.name.clone().unwrap_or_default());
    let (ns, uid) = (meta.namespace.as_deref().unwrap_or_default(), meta.uid.as_deref().unwrap_or_default());
    ctx.secret_claimants(ns, &order.spec.secret_name, uid)
        .into_iter()
        .filter(|other| *other < mine)
        .map(|(_, name)| name)
        .min()
}

fn provider_object(ctx: &Context, order: &CertificateOrder) -> Option<std::sync::Arc<ClusterCertificateProvider>> {
    ctx.providers.get(&kube::runtime::reflector::ObjectRef::new(&order.spec.provider_ref.name))
}

/// The provider's `spec.namespaceSelector`, for people: `*` when it selects every namespace.
pub fn describe_selector(provider: &ClusterCertificateProvider) -> String {
    match provider.spec.namespace_selector.as_ref().map(|s| Selector::try_from(s.to_label_selector())) {
        None => "*".into(),
        Some(Ok(s)) if s.selects_all() => "*".into(),
        Some(Ok(s)) => s.to_string(),
        Some(Err(e)) => format!("invalid: {e}"),
    }
}

async fn namespace_refusal(ctx: &Context, order: &CertificateOrder) -> Result<Option<String>, kube::Error> {
    let Some(provider) = provider_object(ctx, order) else { return Ok(None) };
    let Some(selector) = provider.spec.namespace_selector.as_ref().map(|s| s.to_label_selector()) else {
        return Ok(None);
    };
    let provider_name = provider.name_any();
    let ns = order.namespace().unwrap_or_default();
    let selector = match Selector::try_from(selector) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Some(format!(
                "ClusterCertificateProvider {provider_name:?} has an invalid spec.namespaceSelector ({e}), so it serves \
                 no namespace: ask the cluster admin to fix it"
            )));
        }
    };
    if selector.selects_all() {
        return Ok(None);
    }
    let labels: BTreeMap<String, String> = Api::<Namespace>::all(ctx.client.clone())
        .get_metadata_opt(&ns)
        .await?
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    if selector.matches(&labels) {
        return Ok(None);
    }
    Ok(Some(format!(
        "ClusterCertificateProvider {provider_name:?} is not granted to namespace {ns:?}: its spec.namespaceSelector \
         ({selector}) does not select the namespace's labels; nothing is bought. Ask the cluster admin to label the \
         namespace or widen the selector, or use another provider"
    )))
}

/// The provider's cap on what one order buys (`spec.maxDomainYears`), when the order exceeds it.
pub fn spend_refusal(provider: &ClusterCertificateProvider, order: &CertificateOrder) -> Option<String> {
    let max = provider.spec.max_domain_years?;
    let domains = order.spec.domains.len() as u64;
    let years = u64::from(order.spec.product.validity_years.max(1));
    let asked = domains * years;
    (asked > u64::from(max)).then(|| {
        format!(
            "the order asks for {domains} domain(s) × {years} year(s) = {asked} domain-years, more than \
             ClusterCertificateProvider {:?} allows one order (spec.maxDomainYears: {max}); nothing is bought. \
             Split the order, or ask the cluster admin to raise the cap",
            provider.name_any()
        )
    })
}

/// Whether an Ingress or HTTPRoute host (possibly `*.example.com`) serves `domain`.
pub fn host_serves(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match host.strip_prefix("*.") {
        Some(suffix) => domain.split_once('.').is_some_and(|(_, rest)| rest == suffix),
        None => host == domain,
    }
}

/// The first object of another namespace that serves one of `domains`: `(domain, description)`.
fn other_server<'a>(
    domains: &[String],
    ns: &str,
    objects: impl Iterator<Item = (String, String, Vec<String>)> + 'a,
) -> Option<(String, String)> {
    for (object_ns, description, hosts) in objects {
        if object_ns == ns {
            continue;
        }
        if let Some(domain) = domains.iter().find(|d| hosts.iter().any(|h| host_serves(h, d))) {
            return Some((domain.clone(), description));
        }
    }
    None
}

async fn hosts_refusal(ctx: &Context, order: &CertificateOrder) -> Result<Option<String>, kube::Error> {
    if order.spec.domain_validation.method != ValidationMethod::HTTP {
        return Ok(None);
    }
    let provider = provider_object(ctx, order);
    if provider
        .as_ref()
        .and_then(|p| p.spec.http_validation.as_ref())
        .is_some_and(|h| h.allow_hosts_of_other_namespaces)
    {
        return Ok(None);
    }
    let provider_name = order.spec.provider_ref.name.clone();
    let ns = order.namespace().unwrap_or_default();
    let domains = normalize_domains(&order.spec.domains).unwrap_or_default();
    let refuse = |(domain, object): (String, String)| {
        format!(
            "{domain} is served by {object} in another namespace: HTTP validation does not route another namespace's \
             host; use DNS validation, or ask the cluster admin to set spec.httpValidation.allowHostsOfOtherNamespaces \
             on ClusterCertificateProvider {provider_name:?}"
        )
    };
    // Page by page, keeping only what matches: the cluster's Ingresses are never all in memory.
    let ingresses: Api<Ingress> = Api::all(ctx.client.clone());
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = ingresses.list(&params).await?;
        let objects = page.items.iter().map(|i| {
            let hosts = i.spec.iter().flat_map(|s| s.rules.iter().flatten()).filter_map(|r| r.host.clone()).collect();
            (
                i.namespace().unwrap_or_default(),
                format!("Ingress {}/{}", i.namespace().unwrap_or_default(), i.name_any()),
                hosts,
            )
        });
        if let Some(found) = other_server(&domains, &ns, objects) {
            return Ok(Some(refuse(found)));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<DynamicObject> =
        Api::all_with(ctx.client.clone(), &ApiResource::from_gvk_with_plural(&gvk, "httproutes"));
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match routes.list(&params).await {
            Ok(page) => page,
            // The Gateway API is not installed: no HTTPRoute serves anything.
            Err(kube::Error::Api(s)) if s.code == 404 => break,
            Err(e) => return Err(e),
        };
        let objects = page.items.iter().map(|r| {
            let hosts = r.data["spec"]["hostnames"]
                .as_array()
                .map(|h| h.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default();
            (
                r.namespace().unwrap_or_default(),
                format!("HTTPRoute {}/{}", r.namespace().unwrap_or_default(), r.name_any()),
                hosts,
            )
        });
        if let Some(found) = other_server(&domains, &ns, objects) {
            return Ok(Some(refuse(found)));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MANAGED_BY_LABEL, MANAGER};
    use serde_json::json;

    fn secret(labels: serde_json::Value, annotations: serde_json::Value) -> Secret {
        serde_json::from_value(json!({"metadata": {"name": "tls", "labels": labels, "annotations": annotations}}))
            .unwrap()
    }

    #[test]
    fn a_secret_is_this_orders_only_when_certorder_made_it_for_it_or_its_owner_says_so() {
        let ours = json!({MANAGED_BY_LABEL: MANAGER, ORDER_LABEL: "shop"});
        let theirs = json!({MANAGED_BY_LABEL: MANAGER, ORDER_LABEL: "blog"});
        let cases = [
            (secret(ours.clone(), json!({})), "shop", true, Holder::ThisOrder),
            (secret(theirs.clone(), json!({})), "shop", true, Holder::Order("blog".into())),
            (secret(theirs.clone(), json!({ADOPT_ANNOTATION: "shop"})), "shop", true, Holder::ThisOrder),
            (secret(theirs, json!({ADOPT_ANNOTATION: "shop"})), "shop", false, Holder::Order("blog".into())),
            (secret(json!({}), json!({})), "shop", true, Holder::Foreign),
            // certorder's label alone (the local CA's Secret) names no order.
            (secret(json!({MANAGED_BY_LABEL: MANAGER}), json!({})), "shop", true, Holder::Foreign),
            // A tenant's own label does not make a Secret certorder's.
            (secret(json!({ORDER_LABEL: "shop"}), json!({})), "shop", true, Holder::Foreign),
            (secret(json!({}), json!({ADOPT_ANNOTATION: "other"})), "shop", true, Holder::Foreign),
            (secret(json!({}), json!({ADOPT_ANNOTATION: "shop"})), "shop", true, Holder::ThisOrder),
        ];
        for (secret, order, adoptable, want) in cases {
            assert_eq!(holder(&Ownership::of(&secret.metadata), order, adoptable), want, "{:?}", secret.metadata);
        }
    }

    #[test]
    fn a_providers_cap_refuses_orders_above_domains_times_years() {
        let provider: ClusterCertificateProvider = serde_json::from_value(json!({
            "apiVersion": "certorder.io/v1alpha1", "kind": "ClusterCertificateProvider", "metadata": {"name": "ucloud"},
            "spec": {"maxDomainYears": 4},
        }))
        .unwrap();
        let order = |domains: &[&str], years: u32| -> CertificateOrder {
            serde_json::from_value(json!({
                "apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder", "metadata": {"name": "o", "namespace": "shop"},
                "spec": {"providerRef": {"name": "ucloud"}, "product": {"type": "DV", "validityYears": years},
                    "domains": domains, "secretName": "tls"},
            }))
            .unwrap()
        };
        assert_eq!(spend_refusal(&provider, &order(&["a.example.com", "b.example.com"], 2)), None);
        let refused =
            spend_refusal(&provider, &order(&["a.example.com", "b.example.com", "c.example.com"], 2)).unwrap();
        assert!(refused.contains("3 domain(s) × 2 year(s) = 6 domain-years"), "{refused}");
        assert!(
            refused.contains("ClusterCertificateProvider \"ucloud\"") && refused.contains("spec.maxDomainYears: 4"),
            "{refused}"
        );
        let uncapped = ClusterCertificateProvider::new("local", Default::default());
        assert_eq!(spend_refusal(&uncapped, &order(&["a.example.com"], 9)), None);
    }

    #[test]
    fn hosts_match_exactly_or_by_one_wildcard_label() {
        assert!(host_serves("shop.example.com", "shop.example.com"));
        assert!(host_serves("Shop.Example.com.", "shop.example.com"));
        assert!(host_serves("*.example.com", "shop.example.com"));
        assert!(!host_serves("*.example.com", "a.shop.example.com"));
        assert!(!host_serves("*.example.com", "example.com"));
        assert!(!host_serves("example.com", "shop.example.com"));
        let objects = vec![
            ("web".to_string(), "Ingress web/site".to_string(), vec!["shop.example.com".to_string()]),
            ("blog".to_string(), "Ingress blog/site".to_string(), vec!["*.example.com".to_string()]),
        ];
        assert_eq!(
            other_server(&["shop.example.com".into()], "web", objects.clone().into_iter()),
            Some(("shop.example.com".into(), "Ingress blog/site".into()))
        );
        assert_eq!(other_server(&["example.com".into()], "web", objects.into_iter()), None);
    }
}
