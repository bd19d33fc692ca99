//! What the order cache keeps of each order: its name, namespace and uid, the few facts the
//! metrics read at every scrape, and its metadata, spec and status as Deflate-compressed JSON,
//! decoded when a reconcile reads the order.
//!
//! A decoded issued order takes about 4 KB of heap (its struct alone is 2 KB, mostly empty
//! optional parts). Its spec and status are about 2.2 KB of JSON: 880 bytes compressed alone,
//! about 340 with a preset dictionary of what orders' JSON shares (the field names, the
//! conditions and messages certorder writes: `cache_dictionary.jsonl`). With 10,000 orders that
//! was most of the operator's memory (issue 16). Decoding costs tens of microseconds, once per
//! reconcile.
//!
//! kube-runtime keeps a reference to each order (`ObjectRef`: name, namespace, and the uid and
//! resourceVersion it finds in the metadata) in its store, its scheduler and its delay queue.
//! The cached metadata has only the name and namespace, so those copies hold no more.

use chrono::{DateTime, Utc};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::cell::RefCell;

use super::guard::Cache;
use crate::api::{CertificateOrder, CertificateOrderSpec, CertificateOrderStatus, Phase};

/// An order as the cache keeps it (see the module doc). It names the same API resource as
/// `CertificateOrder`, so the controller and its store can be built over it.
#[derive(Clone, Debug)]
pub struct CachedOrder {
    /// The name and namespace; the rest is in `body`.
    pub metadata: ObjectMeta,
    /// The uid, which the process memory of orders is kept by.
    uid: Option<Box<str>>,
    /// The resourceVersion, as a number (`None` when it is not one).
    version: Option<u64>,
    /// What the metrics export of the order, read without decoding it.
    pub facts: OrderFacts,
    /// `{"metadata": …, "spec": …, "status": …}` (the metadata without name and namespace),
    /// compressed.
    body: Box<[u8]>,
}

/// The fields of an order the metrics read at every scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderFacts {
    pub phase: Phase,
    /// A purchase may have been made but is not found yet.
    pub purchase_unconfirmed: bool,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub renewal_time: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct BodyRef<'a> {
    metadata: &'a ObjectMeta,
    spec: &'a CertificateOrderSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a CertificateOrderStatus>,
}

#[derive(Deserialize)]
struct Body {
    metadata: ObjectMeta,
    spec: CertificateOrderSpec,
    status: Option<CertificateOrderStatus>,
}

impl OrderFacts {
    pub fn of(order: &CertificateOrder) -> Self {
        let Some(status) = &order.status else { return Self::default() };
        let vendor = status.order.as_ref();
        Self {
            phase: status.phase,
            purchase_unconfirmed: vendor.is_some_and(|v| v.id.is_none() && v.purchase_unconfirmed_time.is_some()),
            not_before: status.certificate.as_ref().map(|c| c.not_before),
            not_after: status.certificate.as_ref().map(|c| c.not_after),
            renewal_time: status.renewal_time,
        }
    }
}

impl From<&CertificateOrder> for CachedOrder {
    fn from(order: &CertificateOrder) -> Self {
        let meta = &order.metadata;
        let (name, namespace) = (meta.name.clone(), meta.namespace.clone());
        let unnamed = ObjectMeta { name: None, namespace: None, ..meta.clone() };
        let body = BodyRef { metadata: &unnamed, spec: &order.spec, status: order.status.as_ref() };
        let json = serde_json::to_vec(&body).expect("an order serializes");
        Self {
            metadata: ObjectMeta { name, namespace, ..ObjectMeta::default() },
            uid: meta.uid.as_deref().map(Box::from),
            version: meta.resource_version.as_deref().and_then(|v| v.parse().ok()),
            facts: OrderFacts::of(order),
            body: deflate(&json),
        }
    }
}

impl CachedOrder {
    /// The whole order, as it was cached. An error here is a bug: the bytes were written by
    /// `from` in this process.
    pub fn order(&self) -> Result<CertificateOrder, serde_json::Error> {
        let json = inflate(&self.body).map_err(serde::de::Error::custom)?;
        let Body { metadata, spec, status } = serde_json::from_slice(&json)?;
        let mut order = CertificateOrder::new(self.metadata.name.as_deref().unwrap_or_default(), spec);
        order.metadata =
            ObjectMeta { name: self.metadata.name.clone(), namespace: self.metadata.namespace.clone(), ..metadata };
        order.status = status;
        Ok(order)
    }

    /// The order's uid (`metadata.uid`, which the cached metadata leaves out).
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// The order's resourceVersion, as a number.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The heap the compressed body takes.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }
}

/// What the JSON of orders shares, given to Deflate as its preset dictionary.
const DICTIONARY: &[u8] = include_bytes!("cache_dictionary.jsonl");

thread_local! {
    // One compressor and one decompressor per thread, reset for each use: a new compressor
    // allocates a quarter of a megabyte.
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// Raw Deflate of `json` with the dictionary.
fn deflate(json: &[u8]) -> Box<[u8]> {
    DEFLATE.with_borrow_mut(|deflate| {
        deflate.reset();
        deflate.set_dictionary(DICTIONARY).expect("a dictionary before any input");
        let mut out = Vec::with_capacity(json.len() / 4 + 64);
        loop {
            let status = deflate
                .compress_vec(&json[deflate.total_in() as usize..], &mut out, FlushCompress::Finish)
                .expect("compressing to memory");
            if status == Status::StreamEnd {
                return out.into_boxed_slice();
            }
            out.reserve(out.capacity());
        }
    })
}

/// The JSON `deflate` compressed.
fn inflate(body: &[u8]) -> Result<Vec<u8>, String> {
    INFLATE.with_borrow_mut(|inflate| {
        inflate.reset(false);
        inflate.set_dictionary(DICTIONARY).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(body.len() * 8);
        loop {
            let before = (inflate.total_in(), inflate.total_out());
            let status = inflate
                .decompress_vec(&body[inflate.total_in() as usize..], &mut out, FlushDecompress::Finish)
                .map_err(|e| e.to_string())?;
            if status == Status::StreamEnd {
                return Ok(out);
            }
            if out.len() < out.capacity() && before == (inflate.total_in(), inflate.total_out()) {
                return Err("the compressed order ends early".into());
            }
            out.reserve(out.capacity());
        }
    })
}

/// Never called by the cache (it is filled from decoded orders); the controller's bounds ask
/// for it. Reads a whole order and keeps it compressed.
impl<'de> Deserialize<'de> for CachedOrder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CertificateOrder::deserialize(deserializer).map(|order| Self::from(&order))
    }
}

impl Resource for CachedOrder {
    type DynamicType = ();
    type Scope = <CertificateOrder as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        CertificateOrder::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        CertificateOrder::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        CertificateOrder::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        CertificateOrder::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// One event of the order watch, its orders compressed for the cache.
pub fn compress(event: watcher::Event<CertificateOrder>) -> watcher::Event<CachedOrder> {
    super::map_event(event, |order| CachedOrder::from(&order))
}

/// The guard (`guard::readable`) takes an order that cannot be read out of the cache by the
/// version cached before it.
impl Cache<CertificateOrder> for Store<CachedOrder> {
    fn version(&self, key: &ObjectRef<CertificateOrder>) -> Option<CertificateOrder> {
        let mut cached = ObjectRef::<CachedOrder>::new(&key.name);
        if let Some(namespace) = &key.namespace {
            cached = cached.within(namespace);
        }
        self.get(&cached)?.order().ok()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn issued() -> CertificateOrder {
        serde_json::from_value(json!({
            "apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder",
            "metadata": {"name": "shop", "namespace": "team-a", "uid": "u-1", "resourceVersion": "42",
                         "generation": 2, "finalizers": ["certorder.io/cleanup"],
                         "labels": {"app": "shop"}},
            "spec": {"providerRef": {"name": "ucloud"}, "product": {"type": "OV"},
                     "domains": ["shop.example.com", "www.shop.example.com"], "secretName": "shop-tls",
                     "organization": {"name": "Example Ltd", "address": "1 Road", "city": "Shanghai",
                                      "region": "Shanghai", "country": "CN", "phone": "021-1234"},
                     "renewBefore": "720h"},
            "status": {"phase": "Issued", "observedGeneration": 2,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Issued",
                                       "message": "the certificate is installed in Secret shop-tls",
                                       "lastTransitionTime": "2026-11-26T10:00:00Z", "observedGeneration": 2}],
                       "domains": ["shop.example.com", "www.shop.example.com"],
                       "order": {"name": "shop-1", "id": "39487", "issuances": 1,
                                 "purchaseUnconfirmedTime": "2026-11-20T10:00:00Z"},
                       "certificate": {"serial": "0a1b", "notBefore": "2026-11-26T00:00:00Z",
                                       "notAfter": "2027-06-14T00:00:00Z", "issuer": "CN=Example CA",
                                       "sha256Fingerprint": "00", "secretName": "shop-tls",
                                       "keyFingerprint": "11"},
                       "renewalTime": "2027-05-15T00:00:00Z"}
        }))
        .unwrap()
    }

    #[test]
    fn an_order_comes_back_from_the_cache_as_it_went_in() {
        let mut annotated = issued();
        annotated.metadata.annotations = Some([("argocd.argoproj.io/tracking-id".into(), "shop:x/y".into())].into());
        for order in [issued(), CertificateOrder { status: None, ..issued() }, annotated] {
            let cached = CachedOrder::from(&order);
            assert_eq!(serde_json::to_value(cached.order().unwrap()).unwrap(), serde_json::to_value(&order).unwrap());
            assert_eq!(cached.uid(), order.metadata.uid.as_deref());
            assert_eq!(cached.version(), Some(42));
            let only_names = ObjectMeta {
                name: order.metadata.name.clone(),
                namespace: order.metadata.namespace.clone(),
                ..ObjectMeta::default()
            };
            assert_eq!(cached.metadata, only_names, "the rest is in the body");
            let json: serde_json::Value = serde_json::from_slice(&inflate(&cached.body).unwrap()).unwrap();
            assert_eq!(json["spec"], serde_json::to_value(&order.spec).unwrap(), "the spec is kept whole");
        }
    }

    #[test]
    fn the_cache_keeps_what_the_metrics_read_and_less_than_the_json() {
        let order = issued();
        let cached = CachedOrder::from(&order);
        assert_eq!(
            cached.facts,
            OrderFacts {
                phase: Phase::Issued,
                purchase_unconfirmed: false,
                not_before: Some("2026-11-26T00:00:00Z".parse().unwrap()),
                not_after: Some("2027-06-14T00:00:00Z".parse().unwrap()),
                renewal_time: Some("2027-05-15T00:00:00Z".parse().unwrap()),
            }
        );
        let mut unconfirmed = order.clone();
        unconfirmed.status.as_mut().unwrap().order.as_mut().unwrap().id = None;
        assert!(OrderFacts::of(&unconfirmed).purchase_unconfirmed);
        assert_eq!(OrderFacts::of(&CertificateOrder { status: None, ..order.clone() }), OrderFacts::default());

        // With the dictionary, a quarter of its JSON; Deflate alone makes it more than half.
        let json = serde_json::to_vec(&(&order.metadata, &order.spec, &order.status)).unwrap();
        let mut alone = Compress::new(Compression::fast(), false);
        let mut plain = Vec::with_capacity(json.len() * 2);
        alone.compress_vec(&json, &mut plain, FlushCompress::Finish).unwrap();
        assert!(
            cached.body_len() * 4 < json.len() + 100 && cached.body_len() * 2 < plain.len(),
            "{} bytes of JSON, {} compressed alone, {} with the dictionary",
            json.len(),
            plain.len(),
            cached.body_len()
        );
    }

    #[test]
    fn a_damaged_body_is_an_error_not_a_panic() {
        let mut cached = CachedOrder::from(&issued());
        let len = cached.body.len();
        cached.body = cached.body[..len / 2].into();
        assert!(cached.order().is_err());
        cached.body = vec![0xff; 40].into();
        assert!(cached.order().is_err());
        // The thread's decompressor is reset for the next order.
        assert!(CachedOrder::from(&issued()).order().is_ok());
    }

    #[test]
    fn the_dictionary_is_json_lines() {
        for line in DICTIONARY.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            serde_json::from_slice::<serde_json::Value>(line).expect("a JSON line");
        }
    }
}
