use super::*;
use serde_json::json;

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                     "finalizers": ["a.io/x"]},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "imagePullPolicy": "IfNotPresent",
                     "args": ["--a", "--b"],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9090, "protocol": "TCP", "name": "metrics"}],
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                    {"name": "sidecar", "image": "side:1"}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "tolerations": [{"key": "k", "operator": "Exists"}]
            }}
        }
    })
}

fn patch(p: Value) -> Value {
    strategic_merge_patch(&deployment(), &p, "apps/v1", "Deployment").unwrap()
}

fn containers(d: &Value) -> &Vec<Value> {
    d["spec"]["template"]["spec"]["containers"].as_array().unwrap()
}

#[test]
fn second_kubectl_apply_patch_merges_containers_by_name() {
    // What kubectl apply sends when the image changes and a label is dropped.
    let out = patch(json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}"}, "labels": {"tier": null}},
        "spec": {"replicas": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "app:2"}]
        }}}
    }));
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"], "{\"new\":true}");
    assert_eq!(out["spec"]["replicas"], 3);
    let cs = containers(&out);
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0]["image"], "app:2");
    assert_eq!(cs[0]["imagePullPolicy"], "IfNotPresent", "fields the patch does not name are kept");
    assert_eq!(cs[0]["env"], deployment()["spec"]["template"]["spec"]["containers"][0]["env"]);
    assert_eq!(cs[1], json!({"name": "sidecar", "image": "side:1"}));
}

#[test]
fn nested_lists_merge_by_their_keys() {
    let out = patch(json!({"spec": {"template": {"spec": {
        "containers": [{"name": "app",
            "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}, {"name": "A", "$patch": "delete"}],
            "ports": [{"containerPort": 9090, "name": "prom"}],
            "volumeMounts": [{"mountPath": "/cache", "name": "cache"}]}],
        "volumes": [{"name": "cache", "emptyDir": {}}]
    }}}}));
    let c = &containers(&out)[0];
    assert_eq!(c["env"], json!([{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]));
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9090, "protocol": "TCP", "name": "prom"}])
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data"}, {"mountPath": "/cache", "name": "cache"}])
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}])
    );
}

#[test]
fn atomic_lists_are_replaced() {
    let out = patch(json!({"spec": {"template": {"spec": {
        "tolerations": [{"key": "other", "operator": "Exists"}],
        "containers": [{"name": "app", "args": ["--c"]}]
    }}}}));
    assert_eq!(out["spec"]["template"]["spec"]["tolerations"], json!([{"key": "other", "operator": "Exists"}]));
    assert_eq!(containers(&out)[0]["args"], json!(["--c"]));

    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
        "spec": {"rules": [{"host": "a"}, {"host": "b"}]}});
    let out =
        strategic_merge_patch(&ing, &json!({"spec": {"rules": [{"host": "c"}]}}), "networking.k8s.io/v1", "Ingress")
            .unwrap();
    assert_eq!(out["spec"]["rules"], json!([{"host": "c"}]));
}

#[test]
fn deleting_a_container_and_reordering() {
    let out = patch(json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "containers": [{"$patch": "delete", "name": "nope"}]
    }}}}));
    let names: Vec<&str> = containers(&out).iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sidecar", "app"]);

    let out = patch(json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}]
    }}}}));
    let names: Vec<&str> = containers(&out).iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app"]);
}

#[test]
fn primitive_lists_with_merge_strategy() {
    let out = patch(json!({"metadata": {"finalizers": ["b.io/y", "a.io/x"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));
    let out = patch(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!([]));
    let out =
        patch(json!({"metadata": {"$setElementOrder/finalizers": ["b.io/y", "a.io/x"], "finalizers": ["b.io/y"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["b.io/y", "a.io/x"]));
}

#[test]
fn patch_directives_on_maps() {
    // replace: the map becomes the patch's.
    let out = patch(json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    // delete: the map goes away.
    let out = patch(json!({"metadata": {"annotations": {"$patch": "delete"}}}));
    assert!(out["metadata"].get("annotations").is_none());
    // retainKeys: switching the strategy drops rollingUpdate.
    let out =
        patch(json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}));
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    // a whole list replaced through a list item directive.
    let out = patch(
        json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o:1"}]}}}}),
    );
    assert_eq!(containers(&out), &vec![json!({"name": "only", "image": "o:1"})]);
}

#[test]
fn services_configmaps_and_new_fields() {
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "targetPort": 8443}]}});
    let out =
        strategic_merge_patch(&svc, &json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}), "v1", "Service")
            .unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "targetPort": 9443}])
    );

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
    let out = strategic_merge_patch(
        &cm,
        &json!({"data": {"b": null, "c": "3"}, "binaryData": {"x": "AA=="}}),
        "v1",
        "ConfigMap",
    )
    .unwrap();
    assert_eq!(out["data"], json!({"a": "1", "c": "3"}));
    assert_eq!(out["binaryData"], json!({"x": "AA=="}));
    // Directives inside newly added maps are stripped.
    let out =
        strategic_merge_patch(&cm, &json!({"metadata": {"labels": {"$patch": "merge", "x": "y"}}}), "v1", "ConfigMap")
            .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"x": "y"}));
}

#[test]
fn errors() {
    let d = deployment();
    let cases = vec![
        (json!([1]), "the patch is not a JSON object"),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            "does not contain declared merge key: name",
        ),
        (json!({"metadata": {"labels": {"$patch": "explode"}}}), "Unknown patch type: explode"),
        (
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}),
            "not in $retainKeys",
        ),
        (json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}), "expected a list"),
    ];
    for (p, want) in cases {
        let err = strategic_merge_patch(&d, &p, "apps/v1", "Deployment").unwrap_err();
        assert!(err.contains(want), "{p}: {err}");
    }
}
