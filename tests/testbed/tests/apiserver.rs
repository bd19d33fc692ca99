//! The in-memory API server against kube-rs, kube-runtime and the real kubectl.
use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use testbed::{ApiServer, FaultAnswer, FaultMatch};

fn code(r: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

async fn eventually<F: FnMut() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, mut f: F) {
    // Up to 10 s: a watcher's backoff after a refused watch takes about 4 (kube's default).
    for _ in 0..400 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn create_ns(server: &ApiServer, name: &str) {
    let api: Api<Namespace> = Api::all(server.client());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.size <= 10"
              message: "size must be at most 10"
            properties:
              size: {type: integer, default: 1}
              color: {type: string, enum: [red, blue]}
              tags: {type: array, items: {type: string}, x-kubernetes-list-type: set}
          status:
            type: object
            properties:
              phase: {type: string}
"#;

async fn widgets(server: &ApiServer) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let crd: CustomResourceDefinition = serde_yaml::from_str(WIDGET_CRD).unwrap();
    let created = crds.create(&PostParams::default(), &crd).await.unwrap();
    let conds = created.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets");
    Api::namespaced_with(server.client(), "default", &ar)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

#[tokio::test]
async fn crud_conflicts_and_errors() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();

    let a = api.create(&pp, &cm("a", &[("k", "1")])).await.unwrap();
    let uid = a.metadata.uid.clone().unwrap();
    assert!(a.metadata.creation_timestamp.is_some());
    let rv1: u64 = a.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert_eq!(code(api.create(&pp, &cm("a", &[])).await), (409, "AlreadyExists".into()));

    // update with a stale resourceVersion is a conflict; without one it is unconditional
    let mut fresh = api.get("a").await.unwrap();
    fresh.data = Some(BTreeMap::from([("k".into(), "2".into())]));
    let updated = api.replace("a", &pp, &fresh).await.unwrap();
    let rv2: u64 = updated.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    assert_eq!(updated.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(code(api.replace("a", &pp, &fresh).await), (409, "Conflict".into()));
    let mut blind = cm("a", &[("k", "3")]);
    blind.metadata.resource_version = None;
    assert_eq!(api.replace("a", &pp, &blind).await.unwrap().data.unwrap()["k"], "3");

    // merge patch and JSON patch
    let p = api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"m": "x"}}))).await.unwrap();
    assert_eq!(p.data.as_ref().unwrap()["m"], "x");
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/k", "value": "4"}])).unwrap();
    let p = api.patch("a", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(p.data.unwrap()["k"], "4");
    // a patch carrying a stale resourceVersion is a conflict
    let stale = Patch::Merge(json!({"metadata": {"resourceVersion": rv1.to_string()}, "data": {"z": "1"}}));
    assert_eq!(code(api.patch("a", &PatchParams::default(), &stale).await).0, 409);

    // generateName
    let mut g = cm("", &[]);
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let g = api.create(&pp, &g).await.unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));

    // namespace must exist; invalid names are 422
    let other: Api<ConfigMap> = Api::namespaced(server.client(), "nope");
    assert_eq!(code(other.create(&pp, &cm("a", &[])).await), (404, "NotFound".into()));
    assert_eq!(code(api.create(&pp, &cm("Bad_Name", &[])).await), (422, "Invalid".into()));
    // label values of more than 63 characters (or not label-shaped) are 422, as kube-apiserver's ValidateLabels
    for (key, value) in [("order", "a".repeat(64)), ("order", "ends-with-dash-".into()), ("bad key", "x".into())] {
        let mut c = cm("labelled", &[]);
        c.metadata.labels = Some(BTreeMap::from([(key.to_string(), value.clone())]));
        let err = api.create(&pp, &c).await.unwrap_err();
        let kube::Error::Api(status) = err else { panic!("{err}") };
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"), "{key}={value}");
        assert!(status.message.contains("metadata.labels"), "{}", status.message);
    }
    let mut c = cm("labelled", &[]);
    c.metadata.labels = Some(BTreeMap::from([("example.com/order".into(), "a".repeat(63))]));
    api.create(&pp, &c).await.expect("a 63-character label value is fine");
    api.delete("labelled", &DeleteParams::default()).await.unwrap();

    // list with selectors and pages
    for i in 0..25 {
        let mut c = cm(&format!("l{i:02}"), &[]);
        c.metadata.labels = Some(BTreeMap::from([("tier".into(), if i % 2 == 0 { "even" } else { "odd" }.into())]));
        api.create(&pp, &c).await.unwrap();
    }
    let even = api.list(&ListParams::default().labels("tier=even")).await.unwrap();
    assert_eq!(even.items.len(), 13);
    let not_even = api.list(&ListParams::default().labels("tier notin (even)")).await.unwrap();
    assert_eq!(not_even.items.len(), 12 + 2, "odd ones plus the two unlabelled");
    let by_name = api.list(&ListParams::default().fields("metadata.name=l03")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    let page = api.list(&ListParams::default().labels("tier").limit(10)).await.unwrap();
    assert_eq!(page.items.len(), 10);
    let token = page.metadata.continue_.clone().expect("continue token");
    let rest = api.list(&ListParams::default().labels("tier").limit(10).continue_token(&token)).await.unwrap();
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("l10"));

    // delete, then it is gone
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(api.get("a").await), (404, "NotFound".into()));
    let dc = api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("tier=odd")).await.unwrap();
    assert!(dc.is_left());
    assert_eq!(api.list(&ListParams::default().labels("tier")).await.unwrap().items.len(), 13);
    assert!(server.request_count("create", "configmaps") >= 27);
}

#[tokio::test]
async fn bearer_token_is_required() {
    let server = ApiServer::start().await;
    let mut config = server.config();
    config.auth_info = Default::default();
    let anon = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(anon);
    assert_eq!(code(api.list(&ListParams::default()).await), (401, "Unauthorized".into()));
}

#[tokio::test]
async fn a_client_certificate_from_the_kubeconfig_authenticates_without_the_token() {
    let server = ApiServer::start().await;
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    assert!(config.auth_info.client_certificate_data.is_some());
    config.auth_info.token = None;
    let api: Api<ConfigMap> = Api::default_namespaced(kube::Client::try_from(config.clone()).unwrap());
    api.list(&ListParams::default()).await.unwrap();
    // over plain HTTP there is no certificate to show
    config.cluster_url = server.url().parse().unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
    assert_eq!(code(api.list(&ListParams::default()).await).0, 401);
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let server = ApiServer::start().await;
    let api = widgets(&server).await;
    let w = api.create(&PostParams::default(), &widget("w", json!({"size": 2}))).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    // the main endpoint ignores status
    let p = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert!(p.data.get("status").is_none());
    assert_eq!(p.metadata.generation, Some(1), "metadata changes do not bump generation");
    // the status endpoint changes only status
    let s = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["phase"], "Ready");
    assert_eq!(s.data["spec"]["size"], 2);
    assert_eq!(s.metadata.generation, Some(1));
    let g = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 3}}))).await.unwrap();
    assert_eq!(g.metadata.generation, Some(2));
    assert_eq!(g.data["status"]["phase"], "Ready");
    // a no-op write does not change the resourceVersion
    let again = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 3}}))).await.unwrap();
    assert_eq!(again.metadata.resource_version, g.metadata.resource_version);
    // SMP is refused for custom resources, like kube-apiserver does
    let smp = api.patch("w", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"size": 4}}))).await;
    assert_eq!(code(smp).0, 415);
    // an apply to the status carrying a stale resourceVersion is a conflict, as in kube-apiserver
    // (controllers make their status writes conditional this way)
    let stale = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "resourceVersion": s.metadata.resource_version}, "status": {"phase": "Old"}});
    let refused = api.patch_status("w", &PatchParams::apply("ctl").force(), &Patch::Apply(&stale)).await;
    assert_eq!(code(refused).0, 409);
    let current = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "resourceVersion": again.metadata.resource_version}, "status": {"phase": "New"}});
    let applied = api.patch_status("w", &PatchParams::apply("ctl").force(), &Patch::Apply(&current)).await.unwrap();
    assert_eq!(applied.data["status"]["phase"], "New");
}

#[tokio::test]
async fn a_status_write_is_checked_against_the_status_schema_and_the_rules() {
    let server = ApiServer::start().await;
    let api = widgets(&server).await;
    api.create(&PostParams::default(), &widget("w", json!({"size": 2, "color": "red"}))).await.unwrap();
    // The CRD then refuses red, defaults a status field, and gets a rule on the whole object.
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let mut crd = crds.get("widgets.example.com").await.unwrap();
    let mut schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let root = &mut schema["openAPIV3Schema"];
    root["properties"]["spec"]["properties"]["color"]["enum"] = json!(["blue"]);
    root["properties"]["status"]["properties"]["level"] = json!({"type": "integer", "default": 0});
    root["x-kubernetes-validations"] = json!([{"rule": "!has(self.status) || !has(self.status.phase) || self.status.phase != 'Broken'",
                "message": "a widget is never Broken"}]);
    crd.spec.versions[0].schema = Some(serde_json::from_value(schema).unwrap());
    crds.replace("widgets.example.com", &PostParams::default(), &crd).await.unwrap();

    // kube-apiserver checks only `status` against its schema on a status write: the stored
    // spec, which the new schema refuses, does not stop it. Status is pruned and defaulted.
    let status = |phase: Value| Patch::Merge(json!({"status": {"phase": phase, "bogus": 1}}));
    let written = api.patch_status("w", &PatchParams::default(), &status(json!("Ready"))).await.unwrap();
    assert_eq!(written.data["status"], json!({"phase": "Ready", "level": 0}));
    // A write of the object itself checks all of it.
    let labels = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    let Err(kube::Error::Api(refused)) = api.patch("w", &PatchParams::default(), &labels).await else {
        panic!("the red spec was not checked")
    };
    assert!(refused.message.contains("spec.color: Unsupported value: \"red\""), "{}", refused.message);
    // A bad status value is refused at its path; the rules of the whole object still run.
    let Err(kube::Error::Api(wrong)) = api.patch_status("w", &PatchParams::default(), &status(json!(5))).await else {
        panic!("a number for a string")
    };
    assert!(wrong.message.contains("status.phase: Invalid value: \"integer\""), "{}", wrong.message);
    let Err(kube::Error::Api(broken)) = api.patch_status("w", &PatchParams::default(), &status(json!("Broken"))).await
    else {
        panic!("the rule on the whole object did not run")
    };
    assert!(broken.message.contains("a widget is never Broken"), "{}", broken.message);
    // A status write that removes the status checks no schema either (it is not nullable: dropped).
    let removed = api.patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"status": null}))).await.unwrap();
    assert!(removed.data.get("status").is_none(), "{:?}", removed.data);
}

#[tokio::test]
async fn crd_schema_defaults_pruning_and_cel() {
    let server = ApiServer::start().await;
    let api = widgets(&server).await;
    let pp = PostParams::default();
    let w = api.create(&pp, &widget("d", json!({"color": "red", "unknown": 1}))).await.unwrap();
    assert_eq!(w.data["spec"]["size"], 1, "defaulted");
    assert!(w.data["spec"].get("unknown").is_none(), "pruned");
    let strict = PatchParams::default().validation_strict();
    let (c, reason) = code(api.patch("d", &strict, &Patch::Merge(json!({"spec": {"bogus": true}}))).await);
    assert_eq!((c, reason.as_str()), (400, "BadRequest"));
    let bad_enum = api.create(&pp, &widget("e", json!({"color": "green"}))).await;
    assert_eq!(code(bad_enum), (422, "Invalid".into()));
    let bad_type = api.create(&pp, &widget("t", json!({"size": "big"}))).await;
    assert_eq!(code(bad_type), (422, "Invalid".into()));
    match api.create(&pp, &widget("c", json!({"size": 11}))).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("size must be at most 10"), "{}", s.message);
        }
        other => panic!("CEL rule not enforced: {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_with_two_managers() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let a = PatchParams::apply("alice");
    let b = PatchParams::apply("bob");
    api.patch(
        "s",
        &a,
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"x": "1", "y": "1"}}),
        ),
    )
    .await
    .unwrap();
    let both = api
        .patch(
            "s",
            &b,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"z": "1"}}),
            ),
        )
        .await
        .unwrap();
    let data = both.data.clone().unwrap();
    assert_eq!((data["x"].as_str(), data["z"].as_str()), ("1", "1"), "bob's apply keeps alice's fields");
    let managers: Vec<_> = both.metadata.managed_fields.unwrap().iter().filter_map(|m| m.manager.clone()).collect();
    assert!(managers.contains(&"alice".to_string()) && managers.contains(&"bob".to_string()), "{managers:?}");
    // bob setting alice's field differently conflicts, unless forced
    let take = Patch::Apply(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"z": "1", "x": "2"}}),
    );
    assert_eq!(code(api.patch("s", &b, &take).await), (409, "Conflict".into()));
    let forced = api.patch("s", &b.clone().force(), &take).await.unwrap();
    assert_eq!(forced.data.unwrap()["x"], "2");
    // alice stops applying y: it is removed
    let a2 = api
        .patch(
            "s",
            &a,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {}})),
        )
        .await
        .unwrap();
    let d = a2.data.unwrap_or_default();
    assert!(!d.contains_key("y"), "{d:?}");
    assert_eq!(d["x"], "2");
}

#[tokio::test]
async fn finalizers_and_garbage_collection() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let mut f = cm("fin", &[]);
    f.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    api.create(&pp, &f).await.unwrap();
    let del = api.delete("fin", &DeleteParams::default()).await.unwrap();
    assert!(del.is_left(), "still there");
    let held = api.get("fin").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch("fin", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(code(api.get("fin").await).0, 404, "removing the last finalizer deletes it");

    // background: dependents of a deleted owner are deleted
    let owner = api.create(&pp, &cm("owner", &[])).await.unwrap();
    let oref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap()}]);
    let mut dep: ConfigMap = cm("dep", &[]);
    dep.metadata.owner_references = Some(serde_json::from_value(oref.clone()).unwrap());
    api.create(&pp, &dep).await.unwrap();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually("dependent deleted", || async { api.get_opt("dep").await.unwrap().is_none() }).await;

    // orphan: the dependent stays, without the owner reference
    let owner2 = api.create(&pp, &cm("owner2", &[])).await.unwrap();
    let mut dep2 = cm("dep2", &[]);
    dep2.metadata.owner_references = Some(
        serde_json::from_value(
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner2.metadata.uid.unwrap()}]),
        )
        .unwrap(),
    );
    api.create(&pp, &dep2).await.unwrap();
    api.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    eventually("owner gone", || async { api.get_opt("owner2").await.unwrap().is_none() }).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kept = api.get("dep2").await.unwrap();
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());

    // deleting a namespace deletes its content
    create_ns(&server, "doomed").await;
    let doomed: Api<ConfigMap> = Api::namespaced(server.client(), "doomed");
    doomed.create(&pp, &cm("x", &[])).await.unwrap();
    let nss: Api<Namespace> = Api::all(server.client());
    nss.delete("doomed", &DeleteParams::default()).await.unwrap();
    eventually("namespace gone", || async { nss.get_opt("doomed").await.unwrap().is_none() }).await;
    assert_eq!(server.object_count("", "configmaps", Some("doomed")), 0);
}

#[tokio::test]
async fn deleting_a_crd_removes_its_objects_and_stops_serving() {
    let server = ApiServer::start().await;
    let api = widgets(&server).await;
    api.create(&PostParams::default(), &widget("a", json!({}))).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    assert_eq!(server.object_count("example.com", "widgets", None), 0);
    assert_eq!(code(api.list(&ListParams::default()).await).0, 404);
}

#[tokio::test]
async fn watch_events_selectors_bookmarks_and_gone() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let mut c = cm("w", &[]);
    c.metadata.labels = Some(BTreeMap::from([("app".into(), "x".into())]));
    let created = api.create(&pp, &c).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();

    // from "0": the current state as ADDED first
    let wp = WatchParams::default().labels("app=x").timeout(5);
    let mut s = api.watch(&wp, "0").await.unwrap().boxed();
    assert!(
        matches!(s.try_next().await.unwrap(), Some(WatchEvent::Added(o)) if o.metadata.name.as_deref() == Some("w"))
    );
    // leaving the selector is a DELETED for this watcher
    api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})))
        .await
        .unwrap();
    assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Deleted(_))));
    api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})))
        .await
        .unwrap();
    assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Added(_))));

    // from a resourceVersion: only what happened after it
    let mut s2 = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    assert!(matches!(s2.try_next().await.unwrap(), Some(WatchEvent::Modified(_))));

    // bookmarks
    let server2 = ApiServer::start_with(testbed::ApiServerOptions {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let api2: Api<ConfigMap> = Api::default_namespaced(server2.client());
    let mut s3 = api2
        .watch(
            &WatchParams { bookmarks: true, ..WatchParams::default() }.timeout(5),
            &server2.resource_version().to_string(),
        )
        .await
        .unwrap()
        .boxed();
    assert!(matches!(s3.try_next().await.unwrap(), Some(WatchEvent::Bookmark(_))));

    // too old: 410 in the stream
    api.create(&pp, &cm("w2", &[])).await.unwrap();
    server.compact();
    let mut s4 = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    match s4.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_converges_through_dropped_watches_and_410() {
    let server = ApiServer::start().await;
    create_ns(&server, "w").await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "w");
    let pp = PostParams::default();
    api.create(&pp, &cm("a1", &[])).await.unwrap();
    api.create(&pp, &cm("a2", &[])).await.unwrap();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default())).default_backoff();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    let names = |r: &reflector::Store<ConfigMap>| {
        let mut v: Vec<String> = r.state().iter().filter_map(|o| o.metadata.name.clone()).collect();
        v.sort();
        v
    };
    eventually("initial list", || async { names(&reader) == ["a1", "a2"] }).await;
    let lists = server.request_count("list", "configmaps");

    // a dropped watch resumes from its resourceVersion without a re-list
    server.drop_watches();
    api.create(&pp, &cm("a3", &[])).await.unwrap();
    api.delete("a1", &DeleteParams::default()).await.unwrap();
    eventually("after dropped watch", || async { names(&reader) == ["a2", "a3"] }).await;
    assert_eq!(server.request_count("list", "configmaps"), lists);

    // a 410 makes the watcher re-list
    server.faults().inject(FaultMatch::default().verb("watch").resource("configmaps"), FaultAnswer::InternalError, 1);
    server.drop_watches();
    api.create(&pp, &cm("a4", &[])).await.unwrap();
    api.patch("a2", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.unwrap();
    server.compact();
    eventually("after 410", || async {
        names(&reader) == ["a2", "a3", "a4"]
            && reader
                .state()
                .iter()
                .any(|o| o.data.as_ref().is_some_and(|d| d.get("v").map(String::as_str) == Some("2")))
    })
    .await;
    assert!(server.request_count("list", "configmaps") > lists, "re-listed after 410");
    task.abort();
}

#[tokio::test]
async fn faults_and_counters() {
    let server = ApiServer::start().await;
    let mut config = server.config();
    config.default_retry = false; // see the 429 rather than kube-rs retrying it
    let api: Api<ConfigMap> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
    api.create(&PostParams::default(), &cm("f", &[])).await.unwrap();
    server.faults().inject(
        FaultMatch::default().verb("get").resource("configmaps").name("f"),
        FaultAnswer::InternalError,
        1,
    );
    server.faults().inject(FaultMatch::default().verb("list"), FaultAnswer::TooManyRequests { retry_after_secs: 1 }, 1);
    server.faults().inject(FaultMatch::default().verb("update"), FaultAnswer::Conflict, 1);
    assert_eq!(code(api.get("f").await).0, 500);
    assert!(api.get("f").await.is_ok());
    assert_eq!(code(api.list(&ListParams::default()).await), (429, "TooManyRequests".into()));
    assert_eq!(code(api.replace("f", &PostParams::default(), &cm("f", &[])).await).0, 409);
    assert_eq!(server.request_count("get", "configmaps"), 2);
    server.faults().set_latency(Duration::from_millis(200));
    let t = std::time::Instant::now();
    api.get("f").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
}

fn kubectl(server: &ApiServer, home: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", server.kubeconfig_path())
        .env("HOME", home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl on PATH");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_with_default_flags() {
    let server = ApiServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_path_buf();
    let run = |args: &'static [&'static str], stdin: Option<String>| {
        let (ok, out, err) = kubectl(&server, &h, args, stdin.as_deref());
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        (out, err)
    };
    let (out, _) = tokio::task::block_in_place(|| run(&["apply", "-f", "-"], Some(WIDGET_CRD.into())));
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"), "{out}");
    let (out, _) = tokio::task::block_in_place(|| {
        run(&["wait", "--for", "condition=established", "--timeout=10s", "crd/widgets.example.com"], None)
    });
    assert!(out.contains("condition met"), "{out}");
    let w = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3, color: red}\n";
    let (out, _) = tokio::task::block_in_place(|| run(&["apply", "-f", "-"], Some(w.into())));
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    let (out, _) = tokio::task::block_in_place(|| run(&["get", "widgets"], None));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].split_whitespace().eq(["NAME", "SIZE", "COLOR"]), "{out}");
    assert!(lines[1].split_whitespace().eq(["w1", "3", "red"]), "{out}");
    let (out, _) = tokio::task::block_in_place(|| run(&["get", "wd", "w1", "-o", "json"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["size"], 3);
    assert!(v["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());

    // client-side apply twice: the second is a strategic merge patch
    let cm1 = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: \"1\", b: \"1\"}\n";
    let cm2 = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: \"2\"}\n";
    tokio::task::block_in_place(|| run(&["apply", "-f", "-"], Some(cm1.into())));
    let (out, _) = tokio::task::block_in_place(|| run(&["apply", "-f", "-"], Some(cm2.into())));
    assert!(out.contains("configmap/cfg configured"), "{out}");
    assert!(server.request_count("patch", "configmaps") >= 1);
    let (out, _) = tokio::task::block_in_place(|| run(&["get", "cm", "cfg", "-o", "jsonpath={.data}"], None));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"a": "2"}), "SMP applied and b removed");

    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: nginx}]\n";
    tokio::task::block_in_place(|| run(&["apply", "-f", "-"], Some(deploy.into())));
    let (out, _) =
        tokio::task::block_in_place(|| run(&["apply", "-f", "-"], Some(deploy.replace("replicas: 1", "replicas: 2"))));
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let (out, _) =
        tokio::task::block_in_place(|| run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"], None));
    assert_eq!(out.trim(), "2");

    // server-side apply
    let ss = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {k: v}\n";
    let (out, _) = tokio::task::block_in_place(|| run(&["apply", "--server-side", "-f", "-"], Some(ss.into())));
    assert!(out.contains("configmap/ssa serverside-applied"), "{out}");
    let (out, _) =
        tokio::task::block_in_place(|| run(&["get", "cm", "ssa", "-o", "json", "--show-managed-fields"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["k"], "v");
    assert!(
        v["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply")
    );

    // unknown fields are refused under kubectl's default (strict) validation
    let (ok, _, err) = tokio::task::block_in_place(|| {
        kubectl(
            &server,
            &h,
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\nbogus: 1\n"),
        )
    });
    assert!(!ok && err.contains("unknown field \"bogus\""), "{err}");

    let (out, _) = tokio::task::block_in_place(|| run(&["delete", "widget", "w1"], None));
    assert!(out.contains("widget.example.com \"w1\" deleted"), "{out}");
    assert_eq!(server.object_count("example.com", "widgets", None), 0);
}

#[tokio::test]
async fn secret_string_data_is_folded_into_data() {
    let server = testbed::ApiServer::start().await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(server.client(), "default");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s"},
        "data": {"a": "b2xk", "b": "a2VlcA=="},
        "stringData": {"a": "new", "c": "plain"},
    }))
    .unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    let stored = secrets.get("s").await.unwrap();
    assert!(stored.string_data.is_none(), "stringData is never stored");
    let data = stored.data.unwrap();
    let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    assert_eq!((text("a"), text("b"), text("c")), ("new".into(), "keep".into(), "plain".into()));
}

#[tokio::test]
async fn aggregated_discovery_lists_every_group_with_subresources() {
    let server = testbed::ApiServer::start().await;
    let client = server.client();
    let core = client.list_core_api_versions_aggregated().await.unwrap();
    let v1 = &core.items[0].versions[0];
    let pods = v1.resources.iter().find(|r| r.resource.as_deref() == Some("pods")).unwrap();
    assert_eq!(pods.scope.as_deref(), Some("Namespaced"));
    assert_eq!(pods.short_names, ["po"]);
    assert!(pods.subresources.iter().any(|s| s.subresource.as_deref() == Some("ephemeralcontainers")));
    let apis = client.list_api_groups_aggregated().await.unwrap();
    let apps = apis.items.iter().find(|g| g.metadata.as_ref().and_then(|m| m.name.as_deref()) == Some("apps")).unwrap();
    let deploy = apps.versions[0].resources.iter().find(|r| r.resource.as_deref() == Some("deployments")).unwrap();
    let scale = deploy.subresources.iter().find(|s| s.subresource.as_deref() == Some("scale")).unwrap();
    assert_eq!(scale.response_kind.as_ref().unwrap().kind.as_deref(), Some("Scale"));
    assert_eq!(apps.versions[0].freshness.as_deref(), Some("Current"));

    // kube-rs's discovery through it, and a CRD showing up in it
    widgets(&server).await;
    let discovery = kube::Discovery::new(client.clone()).run_aggregated().await.unwrap();
    let (ar, caps) = discovery.get("example.com").unwrap().recommended_kind("Widget").unwrap();
    assert_eq!((ar.plural.as_str(), caps.subresources.len()), ("widgets", 1));
    // the plain form is still what a client gets without asking
    let text = client.request_text(http::Request::get("/apis").body(vec![]).unwrap()).await.unwrap();
    assert!(text.contains("\"kind\":\"APIGroupList\""), "{text}");
}

#[tokio::test]
async fn partial_object_metadata_for_get_list_patch_and_watch() {
    use kube::core::{ObjectMeta, PartialObjectMetaExt};
    let server = testbed::ApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &cm("a", &[("k", "v")])).await.unwrap();
    let meta = cms.get_metadata("a").await.unwrap();
    assert_eq!(meta.types.as_ref().unwrap().kind, "PartialObjectMetadata");
    assert_eq!(meta.metadata.name.as_deref(), Some("a"));
    let list = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].types.as_ref().unwrap().api_version, "meta.k8s.io/v1");
    let patch = ObjectMeta { annotations: Some([("x".to_string(), "1".to_string())].into()), ..Default::default() }
        .into_request_partial::<ConfigMap>();
    let patched = cms.patch_metadata("a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(patched.types.as_ref().unwrap().kind, "PartialObjectMetadata");
    assert_eq!(patched.metadata.annotations.unwrap()["x"], "1");

    // a list asked for as a single PartialObjectMetadata is not acceptable, as in kube-apiserver
    let req = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header("Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
        .body(vec![])
        .unwrap();
    let err = server.client().request_text(req).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 406));

    // metadata watches (kube-runtime's metadata_watcher) see PartialObjectMetadata objects
    let raw = server.client();
    let req = http::Request::get("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1")
        .header("Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
        .body(vec![])
        .unwrap();
    let text = raw.request_text(req).await.unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["object"]["kind"], "PartialObjectMetadata");
    assert!(first["object"].get("data").is_none(), "{first}");
    let metas: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::default_namespaced(server.client());
    let stream = watcher(metas, watcher::Config::default()).applied_objects().boxed();
    let seen =
        tokio::time::timeout(Duration::from_secs(10), stream.take(1).try_collect::<Vec<_>>()).await.unwrap().unwrap();
    assert_eq!(seen[0].metadata.name.as_deref(), Some("a"));
}

#[tokio::test]
async fn field_selectors_follow_each_kinds_field_labels() {
    use k8s_openapi::api::core::v1::Node;
    let server = testbed::ApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.client());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let schedulable = ListParams::default().fields("spec.unschedulable==false");
    assert_eq!(nodes.list(&schedulable).await.unwrap().items.len(), 1, "absent means false");
    nodes.cordon("n1").await.unwrap();
    assert_eq!(nodes.list(&schedulable).await.unwrap().items.len(), 0);
    nodes.uncordon("n1").await.unwrap();
    assert_eq!(nodes.list(&schedulable).await.unwrap().items.len(), 1);

    let err = nodes.list(&ListParams::default().fields("metadata.namespace=x")).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400 && s.message == "field label not supported: metadata.namespace"),
        "{err:?}"
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let err = cms.list(&ListParams::default().fields("data.k=v")).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400 && s.message == r#""data.k" is not a known field selector: only "metadata.name", "metadata.namespace""#),
        "{err:?}"
    );
    let watch = cms.watch(&WatchParams::default().fields("data.k=v"), "0").await;
    assert!(matches!(watch, Err(kube::Error::Api(s)) if s.code == 400));
}

#[tokio::test]
async fn a_new_cluster_has_the_kubernetes_service_default_roles_and_component_statuses() {
    use k8s_openapi::api::core::v1::{ComponentStatus, Service};
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let server = testbed::ApiServer::start().await;
    let client = server.client();
    let svc: Service = Api::namespaced(client.clone(), "default").get("kubernetes").await.unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 443);
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for name in ["cluster-admin", "admin", "edit", "view"] {
        roles.get(name).await.unwrap();
    }
    let cs: Api<ComponentStatus> = Api::all(client.clone());
    let scheduler = cs.get("scheduler").await.unwrap();
    assert_eq!(scheduler.conditions.unwrap()[0].type_, "Healthy");
    assert_eq!(cs.list(&ListParams::default()).await.unwrap().items.len(), 3);
    assert_eq!(code(cs.delete("scheduler", &DeleteParams::default()).await).0, 405);

    // kube-apiserver's field order: kind first
    let text = client
        .request_text(http::Request::get("/api/v1/namespaces/default/services/kubernetes").body(vec![]).unwrap())
        .await
        .unwrap();
    assert!(text.starts_with(r#"{"kind":"Service","apiVersion":"v1","metadata":"#), "{text}");
}

const SCALED_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: scaleds.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: scaleds, kind: Scaled}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {replicas: {type: integer}}}
          status: {type: object, properties: {replicas: {type: integer}, selector: {type: string}}}
"#;

#[tokio::test]
async fn scale_subresource_of_custom_resources_and_deployments() {
    use k8s_openapi::api::apps::v1::Deployment;
    let server = testbed::ApiServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    crds.create(&PostParams::default(), &serde_yaml::from_str(SCALED_CRD).unwrap()).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Scaled"), "scaleds");
    let api: Api<DynamicObject> = Api::namespaced_with(server.client(), "default", &ar);
    let obj: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Scaled", "metadata": {"name": "s"}, "spec": {"replicas": 2}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let status = json!({"status": {"replicas": 1, "selector": "app=s"}});
    api.patch_status("s", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let scale = api.get_scale("s").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    let st = scale.status.unwrap();
    assert_eq!((st.replicas, st.selector.as_deref()), (1, Some("app=s")));
    let patched =
        api.patch_scale("s", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(3));
    let now = api.get("s").await.unwrap();
    assert_eq!(now.data["spec"]["replicas"], 3);
    assert_eq!(now.metadata.generation, Some(2));
    let stale: k8s_openapi::api::autoscaling::v1::Scale =
        serde_json::from_value(json!({"metadata": {"name": "s", "resourceVersion": "1"}, "spec": {"replicas": 4}}))
            .unwrap();
    assert_eq!(code(api.replace_scale("s", &PostParams::default(), &stale).await).0, 409);
    let negative = json!({"spec": {"replicas": -1}});
    assert_eq!(code(api.patch_scale("s", &PatchParams::default(), &Patch::Merge(negative)).await).0, 422);

    let deploys: Api<Deployment> = Api::default_namespaced(server.client());
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let s = deploys.get_scale("d").await.unwrap();
    assert_eq!(s.status.unwrap().selector.as_deref(), Some("app=d"));
    deploys.patch_scale("d", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}}))).await.unwrap();
    assert_eq!(deploys.get("d").await.unwrap().spec.unwrap().replicas, Some(5));
}

#[tokio::test]
async fn csr_approval_pod_ephemeral_containers_and_service_account_tokens() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
    let server = testbed::ApiServer::start().await;
    let client = server.client();

    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr: CertificateSigningRequest = serde_json::from_value(json!({"metadata": {"name": "c"},
        "spec": {"request": "cmVx", "signerName": "example.com/x", "usages": ["client auth"]}}))
    .unwrap();
    csrs.create(&PostParams::default(), &csr).await.unwrap();
    let approve = json!({"spec": {"signerName": "changed"}, "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Test"}]}});
    csrs.patch_approval("c", &PatchParams::default(), &Patch::Merge(&approve)).await.unwrap();
    let after = csrs.get_approval("c").await.unwrap();
    let cond = &after.status.unwrap().conditions.unwrap()[0];
    assert_eq!(cond.type_, "Approved");
    assert!(cond.last_update_time.is_some(), "the server fills in the times");
    assert_eq!(after.spec.signer_name, "example.com/x", "approval changes only the conditions");

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let eph = |name: &str| json!({"name": name, "image": "busybox", "command": ["sh"]});
    let body: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"ephemeralContainers": [eph("e1")]}}))
            .unwrap();
    let p = pods.replace_ephemeral_containers("p", &PostParams::default(), &body).await.unwrap();
    assert_eq!(p.spec.as_ref().unwrap().containers.len(), 1, "the containers stay");
    let patch: Pod = serde_json::from_value(json!({"spec": {"ephemeralContainers": [eph("e2")]}})).unwrap();
    let p = pods.patch_ephemeral_containers("p", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    assert_eq!(p.spec.unwrap().ephemeral_containers.unwrap().len(), 2);
    let removed: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"ephemeralContainers": []}})).unwrap();
    assert_eq!(code(pods.replace_ephemeral_containers("p", &PostParams::default(), &removed).await).0, 422);

    let sas: Api<ServiceAccount> = Api::default_namespaced(client.clone());
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "sa"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": ["api"]}})).unwrap();
    let token = sas.create_token_request("sa", &PostParams::default(), &tr).await.unwrap().status.unwrap().token;
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = |token: String| {
        serde_json::from_value::<TokenReview>(json!({"spec": {"token": token, "audiences": ["api"]}})).unwrap()
    };
    let status = reviews.create(&PostParams::default(), &review(token.clone())).await.unwrap().status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.user.unwrap().username.as_deref(), Some("system:serviceaccount:default:sa"));
    sas.delete("sa", &DeleteParams::default()).await.unwrap();
    let status = reviews.create(&PostParams::default(), &review(token)).await.unwrap().status.unwrap();
    assert_ne!(status.authenticated, Some(true), "the service account is gone");
    assert!(status.error.is_some());
    assert_eq!(code(sas.create_token_request("sa", &PostParams::default(), &tr).await).0, 404);
}

const GADGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        description: A gadget to try kubectl with.
        properties:
          spec:
            type: object
            description: What the gadget should be.
            properties:
              size: {type: integer, description: How big the gadget is.}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

/// A kubectl left running (`get -w`, `wait`, `delete`), with its output lines as they come.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(server: &ApiServer, home: &std::path::Path, args: &[&str]) -> Running {
        use std::io::BufRead;
        let mut child = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", server.kubeconfig_path())
            .env("HOME", home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("kubectl on PATH");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// The next output line, waiting up to 20 s.
    fn line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(20)).expect("a line of kubectl output")
    }

    /// Waits for kubectl to end; its success and remaining output.
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.lines.iter().collect();
        (status.success(), rest.join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_everyday_commands() {
    use kube::Resource as _;
    let server = ApiServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_path_buf();
    let run = |args: &[&str], stdin: Option<&str>| {
        let (ok, out, err) = tokio::task::block_in_place(|| kubectl(&server, &h, args, stdin));
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        out
    };

    // `kubectl create` sends protobuf for built-in kinds
    assert_eq!(run(&["create", "namespace", "x"], None).trim(), "namespace/x created");
    let out = run(&["create", "secret", "generic", "s", "--from-literal=a=b"], None);
    assert_eq!(out.trim(), "secret/s created");
    assert_eq!(run(&["create", "configmap", "c", "--from-literal=a=b", "-n", "x"], None).trim(), "configmap/c created");
    assert_eq!(run(&["get", "secret", "s", "-o", "jsonpath={.data.a}"], None), "Yg==");
    assert_eq!(run(&["get", "cm", "c", "-n", "x", "-o", "jsonpath={.data.a}"], None), "b");
    let secret = server.object("", "secrets", Some("default"), "s").unwrap();
    assert_eq!(secret["type"], "Opaque");
    assert!(secret["metadata"].get("generateName").is_none(), "zero values of ObjectMeta are not kept: {secret}");
    // a client that only takes protobuf gets kube-apiserver's 406; protobuf custom resources a 415
    let client = server.client();
    let only_protobuf = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header("Accept", "application/vnd.kubernetes.protobuf")
        .body(Vec::new())
        .unwrap();
    assert_eq!(code(client.request_text(only_protobuf).await), (406, "NotAcceptable".into()));

    // explain reads the CRD's schema from /openapi/v3
    run(&["apply", "-f", "-"], Some(GADGET_CRD));
    run(&["wait", "--for", "condition=established", "--timeout=10s", "crd/gadgets.example.com"], None);
    let out = run(&["explain", "gadget.spec"], None);
    assert!(out.contains("What the gadget should be.") && out.contains("How big the gadget is."), "{out}");
    assert!(out.lines().any(|l| l.split_whitespace().eq(["size", "<integer>"])), "{out}");
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds");
    run(&["apply", "-f", crds], None);
    let out = run(&["explain", "certificateorder.spec"], None);
    assert!(out.contains("KIND:       CertificateOrder") && out.contains("domains"), "{out}");
    let out = run(&["explain", "certificateorder.metadata.name"], None);
    assert!(out.contains("Name must be unique within a namespace."), "{out}");
    let protobuf_cr = http::Request::post("/apis/example.com/v1/namespaces/default/gadgets")
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .body(b"k8s\0".to_vec())
        .unwrap();
    assert_eq!(code(client.request_text(protobuf_cr).await), (415, "UnsupportedMediaType".into()));

    // events written through events.k8s.io/v1 are core v1 events too (kubectl get events, describe)
    run(
        &["apply", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {size: 3}\n"),
    );
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Gadget"), "gadgets");
    let gadgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let g1 = gadgets.get("g1").await.unwrap();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter { controller: "gadget-controller".into(), instance: Some("gc-0".into()) },
    );
    let ev = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Polished".into(),
        note: Some("the gadget shines".into()),
        action: "Polish".into(),
        secondary: None,
    };
    let reference = g1.object_ref(&ar);
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap(); // the second one is a merge patch adding a series
    let out = run(&["get", "events"], None);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].split_whitespace().eq(["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]), "{out}");
    let row: Vec<&str> = lines[1].split_whitespace().skip(1).collect();
    assert_eq!(row, ["Normal", "Polished", "gadget/g1", "the", "gadget", "shines"], "{out}");
    let core: Value = serde_json::from_str(&run(&["get", "events", "-o", "json"], None)).unwrap();
    let e = &core["items"][0];
    assert_eq!((e["apiVersion"].as_str(), e["message"].as_str()), (Some("v1"), Some("the gadget shines")));
    assert_eq!(e["involvedObject"]["uid"], json!(g1.metadata.uid));
    assert_eq!((e["reportingComponent"].as_str(), e["series"]["count"].as_i64()), (Some("gadget-controller"), Some(2)));
    let out = run(&["describe", "gadget", "g1"], None);
    let events = out.split("Events:").nth(1).unwrap_or_default();
    assert!(events.contains("Polished") && events.contains("the gadget shines"), "{out}");
    let new: Value = serde_json::from_str(&run(&["get", "events.events.k8s.io", "-o", "json"], None)).unwrap();
    assert_eq!(new["items"][0]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(new["items"][0]["note"], "the gadget shines");
    // and a core v1 event is an events.k8s.io/v1 one
    let core_events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let mut watch = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "default")
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let core_event: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "core-ev"},
        "involvedObject": {"kind": "Gadget", "name": "g1", "namespace": "default", "uid": g1.metadata.uid},
        "reason": "Seen", "message": "through core v1", "type": "Normal", "source": {"component": "someone"},
    }))
    .unwrap();
    core_events.create(&PostParams::default(), &core_event).await.unwrap();
    let mut seen = None;
    while let Some(Ok(WatchEvent::Added(e))) = watch.next().await {
        if e.metadata.name.as_deref() == Some("core-ev") {
            seen = Some(e);
            break;
        }
    }
    let seen = seen.expect("the core event in the events.k8s.io watch");
    assert_eq!(seen.note.as_deref(), Some("through core v1"));
    assert_eq!(seen.regarding.unwrap().name.as_deref(), Some("g1"));
    assert_eq!(seen.deprecated_source.unwrap().component.as_deref(), Some("someone"));
    let out = run(&["get", "events", "--field-selector", "involvedObject.name=g1,reason=Seen", "-o", "name"], None);
    assert_eq!(out.trim(), "event/core-ev");

    // wait for a condition while it is set through the status subresource
    let wait = Running::start(&server, &h, &["wait", "--for=condition=Ready", "gadget/g1", "--timeout=20s"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    gadgets.patch_status("g1", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let (ok, out) = tokio::task::block_in_place(|| wait.finish());
    assert!(ok && out.contains("gadget.example.com/g1 condition met"), "{out}");

    // get -w prints the table, then a row per change
    let watch = Running::start(&server, &h, &["get", "gadgets", "-w"]);
    let (header, first) = tokio::task::block_in_place(|| (watch.line(), watch.line()));
    assert!(header.split_whitespace().eq(["NAME", "SIZE"]), "{header}");
    assert!(first.split_whitespace().eq(["g1", "3"]), "{first}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    gadgets.patch("g1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 7}}))).await.unwrap();
    let changed = tokio::task::block_in_place(|| watch.line());
    assert!(changed.split_whitespace().eq(["g1", "7"]), "{changed}");
    drop(watch);

    // edit: a merge patch for custom resources, a strategic merge patch for built-in kinds
    let editor = h.join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i -e 's/size: 7/size: 8/' -e 's/^  a: b$/  a: edited/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edit = |args: &[&str]| {
        let out = tokio::task::block_in_place(|| {
            std::process::Command::new("kubectl")
                .args(args)
                .env("KUBECONFIG", server.kubeconfig_path())
                .env("HOME", &h)
                .env("KUBE_EDITOR", &editor)
                .output()
                .unwrap()
        });
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let patches = server.request_count("patch", "gadgets");
    assert_eq!(edit(&["edit", "gadget", "g1"]).trim(), "gadget.example.com/g1 edited");
    assert_eq!(server.request_count("patch", "gadgets"), patches + 1);
    assert_eq!(gadgets.get("g1").await.unwrap().data["spec"]["size"], 8);
    assert_eq!(edit(&["edit", "cm", "c", "-n", "x"]).trim(), "configmap/c edited");
    assert_eq!(run(&["get", "cm", "c", "-n", "x", "-o", "jsonpath={.data.a}"], None), "edited");

    // delete waits for the finalizers to go
    let fin = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    gadgets.patch("g1", &PatchParams::default(), &Patch::Merge(&fin)).await.unwrap();
    let mut delete = Running::start(&server, &h, &["delete", "gadget", "g1", "--wait=true"]);
    eventually("deletionTimestamp set", || async {
        gadgets.get("g1").await.is_ok_and(|g| g.metadata.deletion_timestamp.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(delete.child.try_wait().unwrap().is_none(), "kubectl delete returned before the finalizer went");
    let unfin = json!({"metadata": {"finalizers": null}});
    gadgets.patch("g1", &PatchParams::default(), &Patch::Merge(&unfin)).await.unwrap();
    let (ok, out) = tokio::task::block_in_place(|| delete.finish());
    assert!(ok && out.contains("gadget.example.com \"g1\" deleted"), "{out}");
    assert!(gadgets.get_opt("g1").await.unwrap().is_none());
    assert_eq!(run(&["delete", "cm", "c", "-n", "x", "--wait=true"], None).trim(), "configmap \"c\" deleted");
    assert_eq!(server.object_count("", "configmaps", Some("x")), 0);
}
