//! DNS validation's I/O: publishes the records of DNS challenges with the `ClusterDNSZone`
//! that covers each (RFC 2136 update, or an external-dns `DNSEndpoint`), and removes exactly the
//! values certorder added. Records no zone covers are left for a person, as the status shows.
//! Idempotent both ways; removal covers both what status recorded and what the recorded
//! challenges would publish, and the controller writes new challenges to status before it puts
//! their values into an RFC 2136 zone, so a crash or a deletion between publishing and writing
//! status leaves nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};

use super::classify;
use super::context::Context;
use crate::api::{
    CertificateOrder, Challenge, ClusterDNSZone, MANAGER, PublishedRecord, PublishedValidation, ValidationMethod,
};
use crate::lifecycle::StepError;
use crate::validation::dns::DnsChecker;
use crate::validation::dns::publish::{
    DEFAULT_TTL, RecordKind, Rfc2136Client, dns_endpoint, endpoint_name, resolve_nameserver, select_zone,
};

fn endpoint_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("externaldns.k8s.io", "v1alpha1", "DNSEndpoint");
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk_with_plural(&gvk, "dnsendpoints"))
}

/// Every `ClusterDNSZone` (from the cache once it has listed them); none when the CRD is not
/// installed.
async fn zones(ctx: &Context) -> Result<Vec<Arc<ClusterDNSZone>>, StepError> {
    if let Some(cached) = ctx.cached_dns_zones() {
        return Ok(cached);
    }
    match Api::<ClusterDNSZone>::all(ctx.client.clone()).list(&ListParams::default()).await {
        Ok(list) => Ok(list.items.into_iter().map(Arc::new).collect()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(e) => Err(classify("cannot list the ClusterDNSZones", e)),
    }
}

/// Whether some `ClusterDNSZone` is updated by RFC 2136 (true when that cannot be read: then
/// the caller takes the careful path).
pub async fn updates_a_zone(ctx: &Context) -> bool {
    zones(ctx).await.ok().is_none_or(|zones| zones.iter().any(|z| z.spec.rfc2136.is_some()))
}

/// Whether any `ClusterDNSZone` exists (true when that cannot be read).
pub async fn any_zone(ctx: &Context) -> bool {
    zones(ctx).await.ok().is_none_or(|zones| !zones.is_empty())
}

/// The record kind a challenge asks for (`recordType: CNAME`, or TXT) and its value.
fn kind_of(c: &Challenge) -> (RecordKind, String) {
    match c.is_cname() {
        true => (RecordKind::Cname, c.expected_value.trim_end_matches('.').to_owned()),
        false => (RecordKind::Txt, c.expected_value.clone()),
    }
}

/// A CNAME challenge's name must hold certorder's CNAME: one that already points elsewhere
/// (someone else's, not a value certorder published before) is not overwritten.
async fn check_cname_names(
    dns: &DnsChecker,
    want: &[PublishedRecord],
    previous: Option<&PublishedValidation>,
) -> Result<(), StepError> {
    for r in want.iter().filter(|r| r.type_ == RecordKind::Cname.as_str()) {
        let Some(existing) = dns.cname_at(&r.name).await else { continue };
        let ours = |v: &str| v.trim_end_matches('.').eq_ignore_ascii_case(r.value.trim_end_matches('.'));
        let published_before = previous.is_some_and(|p| {
            p.dns_records.iter().any(|q| {
                q.name == r.name
                    && q.type_ == r.type_
                    && q.value.trim_end_matches('.').eq_ignore_ascii_case(existing.trim_end_matches('.'))
            })
        });
        if !ours(&existing) && !published_before {
            return Err(StepError::transient(format!(
                "{} is already a CNAME to {existing}, which certorder did not create: the CA wants CNAME {} → {}; \
                 certorder does not overwrite another CNAME, delete it (or change it to {}) yourself",
                r.name, r.name, r.value, r.value
            )));
        }
    }
    Ok(())
}

/// The records the challenges would publish now, with the zone of each.
async fn desired(
    order: &CertificateOrder,
    challenges: &[Challenge],
    zones: &[Arc<ClusterDNSZone>],
    dns: &DnsChecker,
) -> Result<Vec<PublishedRecord>, StepError> {
    let explicit = order.spec.domain_validation.dns.as_ref().and_then(|d| d.zone_ref.as_deref());
    if zones.is_empty() && explicit.is_none() {
        // No zone can take a record: nothing to publish, and no CNAME worth looking up.
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for c in challenges.iter().filter(|c| c.method == ValidationMethod::DNS) {
        let (kind, value) = kind_of(c);
        // A CNAME challenge is published at the name itself; a TXT one where a CNAME there leads
        // (the one-time delegation to a zone certorder can update).
        let name = match kind {
            RecordKind::Txt => dns.follow_cname(&c.target).await,
            RecordKind::Cname => c.target.clone(),
        };
        let zone = select_zone(zones.iter().map(|z| &**z), explicit, &name).map_err(StepError::permanent)?;
        if let Some(zone) = zone {
            let record = PublishedRecord { name, type_: kind.as_str().into(), value, zone: zone.name_any() };
            if !out.contains(&record) {
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// Reads the TSIG secret; the message never holds the secret itself.
async fn rfc2136_client(client: &Client, zone: &ClusterDNSZone) -> Result<Rfc2136Client, StepError> {
    let Some(settings) = &zone.spec.rfc2136 else {
        return Err(StepError::permanent(format!("ClusterDNSZone {} has no spec.rfc2136", zone.name_any())));
    };
    let r = &settings.tsig_secret_ref;
    let secret = Api::<Secret>::namespaced(client.clone(), &r.namespace)
        .get_opt(&r.name)
        .await
        .map_err(|e| classify(&format!("cannot read Secret {}/{}", r.namespace, r.name), e))?
        .ok_or_else(|| {
            StepError::transient(format!(
                "the TSIG Secret {}/{} of ClusterDNSZone {} does not exist: create it",
                r.namespace,
                r.name,
                zone.name_any()
            ))
        })?;
    let value = secret.data.as_ref().and_then(|d| d.get(&r.key)).ok_or_else(|| {
        StepError::transient(format!(
            "the TSIG Secret {}/{} has no key {:?} (ClusterDNSZone {} spec.rfc2136.tsigSecretRef.key)",
            r.namespace,
            r.name,
            r.key,
            zone.name_any()
        ))
    })?;
    let text = String::from_utf8_lossy(&value.0).into_owned();
    let server = resolve_nameserver(&settings.nameserver).await.map_err(StepError::transient)?;
    Rfc2136Client::new(server, &zone.spec.zone, &settings.tsig_key_name, settings.tsig_algorithm, &text).map_err(|e| {
        StepError::permanent(format!(
            "ClusterDNSZone {} (Secret {}/{} key {}): {e}",
            zone.name_any(),
            r.namespace,
            r.name,
            r.key
        ))
    })
}

/// One namespace's `DNSEndpoint`: its records, labels and TTL.
type Endpoint = (Vec<PublishedRecord>, BTreeMap<String, String>, u32);

fn endpoint_namespace(zone: &ClusterDNSZone, order_ns: &str) -> Option<String> {
    zone.spec.external_dns.as_ref().map(|e| e.namespace.clone().unwrap_or_else(|| order_ns.to_owned()))
}

/// Publishes the records of the order's DNS challenges; `previous` lists what was published
/// before (values no longer wanted are removed).
pub async fn publish(
    ctx: &Context,
    order: &CertificateOrder,
    challenges: &[Challenge],
    digest: &str,
    previous: Option<&PublishedValidation>,
) -> Result<PublishedValidation, StepError> {
    let (client, dns) = (&ctx.client, &ctx.dns);
    let zones = zones(ctx).await?;
    let want = desired(order, challenges, &zones, dns).await?;
    check_cname_names(dns, &want, previous).await?;
    let ns = order.namespace().unwrap_or_default();
    let stale: Vec<PublishedRecord> =
        previous.map(|p| p.dns_records.iter().filter(|r| !want.contains(r)).cloned().collect()).unwrap_or_default();
    remove_records(client, &zones, &stale).await?;

    let mut endpoints: BTreeMap<String, Endpoint> = BTreeMap::new();
    for zone in &zones {
        let mine: Vec<&PublishedRecord> = want.iter().filter(|r| r.zone == zone.name_any()).collect();
        let ttl = zone.spec.ttl.unwrap_or(DEFAULT_TTL);
        if let Some(namespace) = endpoint_namespace(zone, &ns) {
            let entry = endpoints.entry(namespace).or_insert_with(|| (Vec::new(), BTreeMap::new(), ttl));
            entry.0.extend(mine.into_iter().cloned());
            entry.1.extend(zone.spec.external_dns.as_ref().map(|e| e.labels.clone()).unwrap_or_default());
            entry.2 = entry.2.min(ttl);
            continue;
        }
        if mine.is_empty() {
            continue;
        }
        let updater = rfc2136_client(client, zone).await?;
        for r in mine {
            let kind = RecordKind::parse(&r.type_).unwrap_or(RecordKind::Txt);
            updater.add(&r.name, kind, &r.value, ttl).await.map_err(StepError::transient)?;
        }
    }
    let name = endpoint_name(&order.name_any());
    for (namespace, (records, labels, ttl)) in endpoints {
        let api = endpoint_api(client, &namespace);
        if records.is_empty() {
            delete_endpoint(&api, &name).await?;
            continue;
        }
        // Owned by the order when in its namespace, so deleting the order removes it even if
        // the finalizer is bypassed.
        let owner = (namespace == ns).then(|| owner_reference(order)).flatten();
        let endpoint = dns_endpoint(&name, &namespace, &labels, owner, &records, ttl);
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&endpoint)).await.map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 404 => StepError::permanent(format!(
                "cannot create DNSEndpoint {namespace}/{name}: external-dns's CRD (externaldns.k8s.io/v1alpha1 DNSEndpoint) is not installed; install it, or use spec.rfc2136 in the ClusterDNSZone"
            )),
            _ => classify(&format!("cannot apply DNSEndpoint {namespace}/{name}"), e),
        })?;
    }
    tracing::debug!(order = %order.name_any(), records = want.len(), "published the DNS records");
    Ok(PublishedValidation { digest: digest.to_string(), ingress_name: None, dns_records: want })
}

fn owner_reference(order: &CertificateOrder) -> Option<serde_json::Value> {
    let oref = order.controller_owner_ref(&())?;
    serde_json::to_value(oref).ok()
}

async fn delete_endpoint(api: &Api<DynamicObject>, name: &str) -> Result<(), StepError> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(classify(&format!("cannot delete DNSEndpoint {name}"), e)),
    }
}

/// Removes RFC 2136 values (external-dns records go with their `DNSEndpoint`).
async fn remove_records(
    client: &Client,
    zones: &[Arc<ClusterDNSZone>],
    records: &[PublishedRecord],
) -> Result<(), StepError> {
    for zone in zones.iter().filter(|z| z.spec.rfc2136.is_some()) {
        let mine: Vec<&PublishedRecord> = records.iter().filter(|r| r.zone == zone.name_any()).collect();
        if mine.is_empty() {
            continue;
        }
        let updater = rfc2136_client(client, zone).await?;
        for r in mine {
            let kind = RecordKind::parse(&r.type_).unwrap_or(RecordKind::Txt);
            updater.remove(&r.name, kind, &r.value).await.map_err(StepError::transient)?;
        }
    }
    Ok(())
}

/// Removes every record the order published: those recorded, and those its current challenges
/// would publish (published just before a crash). Values of others at the same names stay.
pub async fn unpublish(
    ctx: &Context,
    order: &CertificateOrder,
    published: Option<&PublishedValidation>,
    challenges: &[Challenge],
) -> Result<(), StepError> {
    let (client, dns) = (&ctx.client, &ctx.dns);
    let zones = zones(ctx).await?;
    let mut records: Vec<PublishedRecord> = published.map(|p| p.dns_records.clone()).unwrap_or_default();
    // An order whose zoneRef no longer exists still removes what it recorded.
    if let Ok(now) = desired(order, challenges, &zones, dns).await {
        for r in now {
            if !records.contains(&r) {
                records.push(r);
            }
        }
    }
    remove_records(client, &zones, &records).await?;
    tracing::debug!(order = %order.name_any(), records = records.len(), "removed the DNS records");
    let ns = order.namespace().unwrap_or_default();
    let name = endpoint_name(&order.name_any());
    let mut namespaces: Vec<String> = zones.iter().filter_map(|z| endpoint_namespace(z, &ns)).collect();
    namespaces.sort();
    namespaces.dedup();
    for namespace in namespaces {
        delete_endpoint(&endpoint_api(client, &namespace), &name).await?;
    }
    Ok(())
}
