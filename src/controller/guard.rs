//! Objects that cannot be read: one malformed object must not stall the controller.
//!
//! Orders and providers are watched through [`Guarded`] (what kube's `DeserializeGuard` does,
//! without its copy of every object): an object whose JSON does not fit the Rust type (a field
//! of the wrong type, stored before the CRD's schema tightened) arrives as an [`InvalidObject`]
//! instead of failing the whole list, which would stop the watch, keep the cache from filling and
//! leave every other object waiting. Such an object is kept out of the cache (taken out, when an
//! earlier readable version is in it), so it is not reconciled, and it is reported once per
//! version: a log line and a Warning event `Unreadable` on it, saying which field is wrong and
//! how to fix it. Its next readable version is read as usual.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use tracing::warn;

use crate::api::MANAGER;

/// The reason of the Warning event on an object certorder cannot read.
pub const UNREADABLE: &str = "Unreadable";

/// An object read from the API, or why it could not be (with its metadata, read apart).
///
/// kube's `DeserializeGuard` does the same through a copy of the object as a `serde_value` tree,
/// cloned before it is decoded: a tenth of the operator's CPU at 1,000 orders (issue 16). This
/// one keeps the object's JSON text (the watch and list answers are JSON) and decodes the type
/// straight from it, without its `managedFields` (see `lean`), and only the metadata from it
/// again when that fails.
#[derive(Clone, Debug)]
pub struct Guarded<K>(pub Result<K, InvalidObject>);

impl<'de, K: Resource + DeserializeOwned> Deserialize<'de> for Guarded<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Box::<RawValue>::deserialize(deserializer)?;
        match super::lean::from_str::<K>(text.get()) {
            Ok(object) => Ok(Guarded(Ok(object))),
            Err(error) => {
                let PartialObjectMeta { metadata, .. } =
                    serde_json::from_str::<PartialObjectMeta<K>>(text.get()).map_err(serde::de::Error::custom)?;
                Ok(Guarded(Err(InvalidObject { error: error.to_string(), metadata })))
            }
        }
    }
}

resource_as_inner!(Guarded, |guarded| guarded.0.as_ref().map_or_else(|bad| &bad.metadata, K::meta), |guarded| guarded
    .0
    .as_mut()
    .map_or_else(|bad| &mut bad.metadata, K::meta_mut));

/// The watch `events` with the objects that could be read; the others are reported (through
/// `client`) and, when `cache` holds an older version, deleted from it.
pub(crate) fn readable<K, S>(
    events: S,
    cache: impl Cache<K>,
    client: Client,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static,
    S: Stream<Item = Result<watcher::Event<Guarded<K>>, watcher::Error>> + Send,
{
    let mut reported = HashSet::new();
    events.filter_map(move |event| {
        let mut report = |bad: InvalidObject| {
            let version = (bad.metadata.uid.clone(), bad.metadata.resource_version.clone());
            if reported.insert(version) {
                tokio::spawn(report::<K>(client.clone(), bad));
            }
        };
        futures::future::ready(match event {
            Ok(event) => split(event, &cache, &mut report).map(Ok),
            Err(e) => Some(Err(e)),
        })
    })
}

/// The event for the readable objects; `report` gets the unreadable one.
fn split<K>(
    event: watcher::Event<Guarded<K>>,
    cache: &impl Cache<K>,
    report: &mut impl FnMut(InvalidObject),
) -> Option<watcher::Event<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    use watcher::Event::*;
    match event {
        Init => Some(Init),
        InitDone => Some(InitDone),
        InitApply(Guarded(Ok(object))) => Some(InitApply(object)),
        Apply(Guarded(Ok(object))) => Some(Apply(object)),
        Delete(Guarded(Ok(object))) => Some(Delete(object)),
        InitApply(Guarded(Err(bad))) => {
            report(bad);
            None
        }
        Apply(Guarded(Err(bad))) => {
            let cached = cached(cache, &bad);
            report(bad);
            cached.map(Delete)
        }
        Delete(Guarded(Err(bad))) => cached(cache, &bad).map(Delete),
    }
}

/// The cache's (readable, older) version of the object `bad` is a version of.
fn cached<K>(cache: &impl Cache<K>, bad: &InvalidObject) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut key = ObjectRef::<K>::new(bad.metadata.name.as_deref()?);
    if let Some(namespace) = &bad.metadata.namespace {
        key = key.within(namespace);
    }
    cache.version(&key)
}

/// Where `readable` finds the cached version of an object: a store of the objects themselves,
/// or of what stands for them (the compressed orders of `cache::CachedOrder`).
pub(crate) trait Cache<K: Resource<DynamicType = ()>>: Send + 'static {
    fn version(&self, key: &ObjectRef<K>) -> Option<K>;
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> Cache<K> for Store<K> {
    fn version(&self, key: &ObjectRef<K>) -> Option<K> {
        self.get(key).map(|object| (*object).clone())
    }
}

/// The log line and the Warning event about an object that cannot be read.
async fn report<K>(client: Client, bad: InvalidObject)
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let kind = K::kind(&());
    let name = match &bad.metadata.namespace {
        Some(namespace) => format!("{namespace}/{}", bad.metadata.name.as_deref().unwrap_or_default()),
        None => bad.metadata.name.clone().unwrap_or_default(),
    };
    let problem = locate::<K>(&client, &bad).await.unwrap_or_else(|| bad.error.clone());
    warn!(object = %format!("{kind} {name}"), %problem, "cannot read the object: it is not reconciled until it is fixed");
    let note = format!(
        "certorder cannot read this {kind}: {problem}. It is not reconciled until it is fixed: give the field the type the CRD declares (`kubectl explain {}.spec`) with kubectl edit or apply",
        K::plural(&())
    );
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: UNREADABLE.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Read".into(),
        secondary: None,
    };
    let reference = Guarded::<K>(Err(bad)).object_ref(&());
    let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
    if let Err(e) = Recorder::new(client, reporter).publish(&event, &reference).await {
        warn!(object = %format!("{kind} {name}"), error = %e, "cannot publish the Unreadable event");
    }
}

/// Where in the object the problem is (`spec.cancelOnDelete: invalid type: string "yes",
/// expected a boolean`): the object read again as plain JSON and decoded with its path kept.
async fn locate<K>(client: &Client, bad: &InvalidObject) -> Option<String>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match &bad.metadata.namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let object = api.get_opt(bad.metadata.name.as_deref()?).await.ok()??;
    let error = serde_path_to_error::deserialize::<_, K>(serde_json::to_value(object).ok()?).err()?;
    Some(format!("{}: {}", error.path(), error.inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CertificateOrder;
    use serde_json::json;

    fn guarded(spec: serde_json::Value) -> Guarded<CertificateOrder> {
        let object = json!({
            "apiVersion": "certorder.io/v1alpha1",
            "kind": "CertificateOrder",
            "metadata": {"name": "shop", "namespace": "web", "uid": "u1", "resourceVersion": "7"},
            "spec": spec,
        });
        serde_json::from_str(&object.to_string()).unwrap()
    }

    fn good() -> Guarded<CertificateOrder> {
        guarded(json!({
            "providerRef": {"name": "local"},
            "product": {"type": "DV"},
            "domains": ["shop.example.com"],
            "secretName": "shop-tls",
        }))
    }

    fn bad() -> Guarded<CertificateOrder> {
        guarded(json!({
            "providerRef": {"name": "local"},
            "product": {"type": "DV"},
            "domains": "shop.example.com",
            "secretName": "shop-tls",
        }))
    }

    fn kind<K>(event: &Option<watcher::Event<K>>) -> &'static str {
        match event {
            None => "none",
            Some(watcher::Event::Init) => "Init",
            Some(watcher::Event::InitApply(_)) => "InitApply",
            Some(watcher::Event::InitDone) => "InitDone",
            Some(watcher::Event::Apply(_)) => "Apply",
            Some(watcher::Event::Delete(_)) => "Delete",
        }
    }

    #[test]
    fn unreadable_objects_are_reported_and_kept_out_of_the_cache() {
        let (cache, mut writer) = kube::runtime::reflector::store::<CertificateOrder>();
        let mut reported = Vec::new();
        let mut report = |bad: InvalidObject| reported.push(bad.metadata.name.unwrap_or_default());
        use watcher::Event::*;

        // A readable object passes; the cache gets it.
        let event = split(InitApply(good()), &cache, &mut report);
        assert_eq!(kind(&event), "InitApply");
        for e in [event.unwrap(), InitDone] {
            writer.apply_watcher_event(&e);
        }
        assert_eq!(cache.state().len(), 1);

        // Its next version cannot be read: it leaves the cache, and is reported.
        let event = split(Apply(bad()), &cache, &mut report);
        assert_eq!(kind(&event), "Delete");
        writer.apply_watcher_event(&event.unwrap());
        assert!(cache.state().is_empty());

        // In a (re)list an unreadable object is left out; its deletion is then nothing to do.
        assert_eq!(kind(&split(InitApply(bad()), &cache, &mut report)), "none");
        assert_eq!(kind(&split(Delete(bad()), &cache, &mut report)), "none");
        assert_eq!(kind(&split(Init, &cache, &mut report)), "Init");
        assert_eq!(reported, ["shop", "shop"]);
    }

    #[test]
    fn the_problem_names_the_field() {
        let value = json!({
            "apiVersion": "certorder.io/v1alpha1",
            "kind": "CertificateOrder",
            "metadata": {"name": "shop"},
            "spec": {"providerRef": {"name": "local"}, "product": {"type": "DV"}, "domains": "x", "secretName": "s"},
        });
        let error = serde_path_to_error::deserialize::<_, CertificateOrder>(value).unwrap_err();
        assert_eq!(error.path().to_string(), "spec.domains");
        assert_eq!(error.inner().to_string(), "invalid type: string \"x\", expected a sequence");
        let Guarded(Err(bad)) = bad() else { panic!("read") };
        assert!(bad.error.contains("expected a sequence"), "{}", bad.error);
        assert_eq!((bad.metadata.name.as_deref(), bad.metadata.uid.as_deref()), (Some("shop"), Some("u1")));
    }

    #[test]
    fn a_guarded_object_reads_as_the_type_itself_in_a_watch_event_and_a_list() {
        let order = json!({
            "apiVersion": "certorder.io/v1alpha1",
            "kind": "CertificateOrder",
            "metadata": {"name": "shop", "namespace": "web", "uid": "u1", "resourceVersion": "7"},
            "spec": {"providerRef": {"name": "local"}, "product": {"type": "DV"}, "domains": ["a.example.com"], "secretName": "s"},
            "status": {"phase": "Issued"},
        });
        let plain: CertificateOrder = serde_json::from_value(order.clone()).unwrap();
        let event = json!({"type": "MODIFIED", "object": order}).to_string();
        let kube::core::WatchEvent::Modified(Guarded(Ok(read))) =
            serde_json::from_slice::<kube::core::WatchEvent<Guarded<CertificateOrder>>>(event.as_bytes()).unwrap()
        else {
            panic!("a readable order")
        };
        assert_eq!(serde_json::to_value(&read).unwrap(), serde_json::to_value(&plain).unwrap());
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "9"}, "items": [order, {"metadata": {"name": "odd"}, "spec": 5}]});
        let list: kube::core::ObjectList<Guarded<CertificateOrder>> = serde_json::from_str(&list.to_string()).unwrap();
        assert!(list.items[0].0.is_ok());
        assert_eq!(list.items[1].meta().name.as_deref(), Some("odd"));
        assert!(list.items[1].0.is_err());
    }
}
