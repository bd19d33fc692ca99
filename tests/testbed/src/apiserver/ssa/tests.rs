use super::*;
use serde_json::json;

fn deployment_types() -> TypeInfo {
    TypeInfo { schema: None, api_version: "apps/v1".into(), kind: "Deployment".into() }
}

fn cm_types() -> TypeInfo {
    TypeInfo { schema: None, api_version: "v1".into(), kind: "ConfigMap".into() }
}

fn crd_types() -> TypeInfo {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "domains": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "contacts": {"type": "array", "items": {"type": "string"}},
            "years": {"type": "integer"},
            "product": {"type": "object", "properties": {"type": {"type": "string"}, "name": {"type": "string"}}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                      "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}, "name": {"type": "string"}}}}
        }},
        "status": {"type": "object", "properties": {
            "phase": {"type": "string"},
            "observedGeneration": {"type": "integer"},
            "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"}}}}
        }}
    }});
    TypeInfo {
        schema: Some(std::sync::Arc::new(schema)),
        api_version: "certorder.io/v1alpha1".into(),
        kind: "CertificateOrder".into(),
    }
}

fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"].as_array()?.iter().find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn fields(obj: &Value, manager: &str, operation: &str) -> Value {
    entry(obj, manager, operation).map(|e| e["fieldsV1"].clone()).unwrap_or(Value::Null)
}

fn conflicts(r: Result<Value, Vec<Conflict>>) -> Vec<(String, String)> {
    match r {
        Ok(v) => panic!("expected conflicts, got {v:#}"),
        Err(c) => c.into_iter().map(|c| (c.manager, c.field)).collect(),
    }
}

fn order(spec: Value) -> Value {
    json!({"apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder", "metadata": {"name": "o", "namespace": "d"}, "spec": spec})
}

#[test]
fn create_by_apply_records_the_applied_leaves() {
    let cfg = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]}
            ]}}
        }
    });
    let out = apply(None, &cfg, "kubectl", false, None, &deployment_types()).unwrap();
    let e = entry(&out, "kubectl", "Apply").expect("an Apply entry");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e.get("subresource").is_none());
    let time = e["time"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}
                }
            }
        })
    );
    // The key order of the entry is kube-apiserver's.
    let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]);
    // The object is the configuration.
    assert_eq!(out["spec"], cfg["spec"]);
}

#[test]
fn second_apply_without_a_field_removes_it() {
    let types = cm_types();
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1", "b": "2"}},
                       "data": {"x": "1", "y": "2"}});
    let live = apply(None, &first, "kubectl", false, None, &types).unwrap();
    let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1"}});
    let out = apply(Some(&live), &second, "kubectl", false, None, &types).unwrap();
    assert_eq!(out["data"], json!({"x": "1"}));
    assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
    assert_eq!(
        fields(&out, "kubectl", "Apply"),
        json!({"f:data": {"f:x": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
    );

    // Dropping the last label and all data removes the now empty maps too.
    let third =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "binaryData": {"z": "AA=="}});
    let out = apply(Some(&out), &third, "kubectl", false, None, &types).unwrap();
    assert!(out.get("data").is_none(), "{out:#}");
    assert!(out["metadata"].get("labels").is_none(), "{out:#}");
    assert_eq!(out["metadata"]["name"], "c");
    assert_eq!(out["binaryData"], json!({"z": "AA=="}));
}

#[test]
fn removed_items_of_associative_lists_and_sets_go_away() {
    let types = crd_types();
    let live = apply(
        None,
        &order(json!({"domains": ["a.com", "b.com"], "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]})),
        "kubectl",
        false,
        None,
        &types,
    )
    .unwrap();
    assert_eq!(
        fields(&live, "kubectl", "Apply")["f:spec"],
        json!({
            "f:domains": {"v:\"a.com\"": {}, "v:\"b.com\"": {}},
            "f:ports": {
                "k:{\"port\":443,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}},
                "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}}
            }
        })
    );
    let out = apply(
        Some(&live),
        &order(json!({"domains": ["b.com"], "ports": [{"port": 443, "name": "tls"}]})),
        "kubectl",
        false,
        None,
        &types,
    )
    .unwrap();
    assert_eq!(out["spec"], json!({"domains": ["b.com"], "ports": [{"port": 443, "name": "tls"}]}));
}

#[test]
fn two_managers_share_merge_and_conflict() {
    let types = deployment_types();
    let a_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}}});
    let live = apply(None, &a_cfg, "alice", false, None, &types).unwrap();

    // Bob adds a sidecar and a label: no overlap, both kept.
    let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "b"}},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "side:1"}]}}}});
    let live = apply(Some(&live), &b_cfg, "bob", false, None, &types).unwrap();
    let names: Vec<&str> = live["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "sidecar"]);
    assert_eq!(live["spec"]["replicas"], 2);

    // Bob sets replicas to a different value and alice's image: two conflicts with alice.
    let b_conflicting = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
    assert_eq!(
        conflicts(apply(Some(&live), &b_conflicting, "bob", false, None, &types)),
        vec![
            ("alice".to_string(), ".spec.replicas".to_string()),
            ("alice".to_string(), ".spec.template.spec.containers[name=\"app\"].image".to_string()),
        ]
    );

    // The same value is no conflict: the field becomes shared.
    let b_same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "b"}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "sidecar", "image": "side:1"}]}}}});
    let live = apply(Some(&live), &b_same, "bob", false, None, &types).unwrap();
    assert_eq!(fields(&live, "bob", "Apply")["f:spec"]["f:replicas"], json!({}));
    assert_eq!(fields(&live, "alice", "Apply")["f:spec"]["f:replicas"], json!({}));

    // Alice stops applying replicas: bob still owns it, so it stays.
    let a_less = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}}});
    let live = apply(Some(&live), &a_less, "alice", false, None, &types).unwrap();
    assert_eq!(live["spec"]["replicas"], 2);
    assert!(fields(&live, "alice", "Apply")["f:spec"].get("f:replicas").is_none());

    // Bob forces replicas: he takes it over; alice applying it again conflicts with bob.
    let b_force = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "b"}},
        "spec": {"replicas": 7, "template": {"spec": {"containers": [{"name": "sidecar", "image": "side:1"}, {"name": "app", "image": "app:3"}]}}}});
    let live = apply(Some(&live), &b_force, "bob", true, None, &types).unwrap();
    assert_eq!(live["spec"]["replicas"], 7);
    assert_eq!(live["spec"]["template"]["spec"]["containers"][0]["image"], "app:3");
    let alice = fields(&live, "alice", "Apply");
    assert!(
        alice["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"].get("f:image").is_none(),
        "{alice:#}"
    );
    let a_again = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}}});
    assert_eq!(
        conflicts(apply(Some(&live), &a_again, "alice", false, None, &types)),
        vec![
            ("bob".to_string(), ".spec.replicas".to_string()),
            ("bob".to_string(), ".spec.template.spec.containers[name=\"app\"].image".to_string()),
        ]
    );
}

#[test]
fn an_update_takes_fields_from_appliers_and_the_next_apply_conflicts() {
    let types = deployment_types();
    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3, "paused": false}});
    let live = apply(None, &cfg, "kubectl", false, None, &types).unwrap();

    // `kubectl scale`-like update by another manager.
    let mut new = live.clone();
    new["spec"]["replicas"] = json!(5);
    record_update(Some(&live), &mut new, "kubectl-scale", None, &types);
    assert_eq!(fields(&new, "kubectl-scale", "Update"), json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(fields(&new, "kubectl", "Apply"), json!({"f:spec": {"f:paused": {}}}));
    // Apply entries come before Update entries.
    let ops: Vec<&str> =
        new["metadata"]["managedFields"].as_array().unwrap().iter().map(|e| e["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, ["Apply", "Update"]);

    assert_eq!(
        conflicts(apply(Some(&new), &cfg, "kubectl", false, None, &types)),
        vec![("kubectl-scale".to_string(), ".spec.replicas".to_string())]
    );
    let forced = apply(Some(&new), &cfg, "kubectl", true, None, &types).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(entry(&forced, "kubectl-scale", "Update").is_none(), "the updater owned nothing else");
}

#[test]
fn record_update_on_create_marks_new_maps_and_items() {
    let types = crd_types();
    let mut obj = order(json!({"years": 1, "product": {"type": "DV"}, "domains": ["a.com"]}));
    obj["metadata"]["labels"] = json!({"app": "x"});
    record_update(None, &mut obj, "kube-rs", None, &types);
    assert_eq!(
        fields(&obj, "kube-rs", "Update"),
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {".": {}, "f:domains": {".": {}, "v:\"a.com\"": {}}, "f:product": {".": {}, "f:type": {}}, "f:years": {}}
        })
    );
    let e = entry(&obj, "kube-rs", "Update").unwrap();
    assert!(e.get("time").is_some());

    // An update that removes a field takes it out of every set; one that changes nothing leaves
    // the entries alone.
    let before = obj.clone();
    let mut newer = obj.clone();
    newer["spec"].as_object_mut().unwrap().remove("years");
    record_update(Some(&before), &mut newer, "editor", None, &types);
    assert!(fields(&newer, "kube-rs", "Update")["f:spec"].get("f:years").is_none());
    assert!(entry(&newer, "editor", "Update").is_none(), "a pure removal gives the editor nothing");
    let mut same = newer.clone();
    record_update(Some(&newer), &mut same, "editor", None, &types);
    assert_eq!(same, newer);
}

#[test]
fn record_update_resets_managed_fields_on_request() {
    let types = cm_types();
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    record_update(None, &mut obj, "creator", None, &types);
    let mut reset = obj.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    reset["data"]["b"] = json!("2");
    record_update(Some(&obj), &mut reset, "editor", None, &types);
    let managers: Vec<&str> =
        reset["metadata"]["managedFields"].as_array().unwrap().iter().map(|e| e["manager"].as_str().unwrap()).collect();
    assert_eq!(managers, ["editor"]);
}

#[test]
fn status_apply_by_a_controller_touches_only_status() {
    let types = crd_types();
    // The user created the order with kubectl (an Update entry owning spec).
    let mut live = order(json!({"years": 1, "product": {"type": "DV"}}));
    record_update(None, &mut live, "kubectl-create", None, &types);

    // The controller applies status (with force, as kube-rs's controllers do), its config also
    // carrying a stale spec, which the status endpoint ignores.
    let mut status_cfg = order(json!({"years": 99}));
    status_cfg["status"] =
        json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False", "reason": "Ordering"}]});
    let out = apply(Some(&live), &status_cfg, "certorder", true, Some("status"), &types).unwrap();
    assert_eq!(out["spec"], live["spec"]);
    assert_eq!(out["status"]["phase"], "Pending");
    let e = entry(&out, "certorder", "Apply").unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:reason": {}, "f:status": {}, "f:type": {}}}, "f:phase": {}}})
    );
    assert_eq!(fields(&out, "kubectl-create", "Update"), fields(&live, "kubectl-create", "Update"));

    // The next status apply changes a condition and drops the phase.
    let mut next = order(json!({}));
    next["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Issued"}]});
    let out2 = apply(Some(&out), &next, "certorder", true, Some("status"), &types).unwrap();
    assert_eq!(out2["status"], json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Issued"}]}));

    // Applying the same status again is a no-op: the very same object comes back.
    let out3 = apply(Some(&out2), &next, "certorder", true, Some("status"), &types).unwrap();
    assert_eq!(out3, out2);
}

#[test]
fn conditions_of_two_managers_merge_by_type() {
    let types = crd_types();
    let mut a = order(json!({}));
    a["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
    let live = apply(None, &a, "ctrl-a", false, Some("status"), &types).unwrap();
    let mut b = order(json!({}));
    b["status"] = json!({"conditions": [{"type": "Synced", "status": "True"}]});
    let live = apply(Some(&live), &b, "ctrl-b", false, Some("status"), &types).unwrap();
    assert_eq!(
        live["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}])
    );
    // b changing a's condition conflicts on the item's field.
    let mut b2 = order(json!({}));
    b2["status"] = json!({"conditions": [{"type": "Ready", "status": "False"}]});
    assert_eq!(
        conflicts(apply(Some(&live), &b2, "ctrl-b", false, Some("status"), &types)),
        vec![("ctrl-a".to_string(), ".status.conditions[type=\"Ready\"].status".to_string())]
    );
    // a dropping its condition removes it and leaves b's.
    let mut a2 = order(json!({}));
    a2["status"] = json!({"conditions": []});
    let live = apply(Some(&live), &a2, "ctrl-a", false, Some("status"), &types).unwrap();
    assert_eq!(live["status"]["conditions"], json!([{"type": "Synced", "status": "True"}]));
}

#[test]
fn atomic_lists_and_maps_are_owned_whole() {
    let types = crd_types();
    let live = apply(
        None,
        &order(json!({"contacts": ["a", "b"], "selector": {"x": "1", "y": "2"}})),
        "m1",
        false,
        None,
        &types,
    )
    .unwrap();
    assert_eq!(fields(&live, "m1", "Apply")["f:spec"], json!({"f:contacts": {}, "f:selector": {}}));
    // Another manager setting the atomic list conflicts even though one item is the same.
    assert_eq!(
        conflicts(apply(Some(&live), &order(json!({"contacts": ["a"]})), "m2", false, None, &types)),
        vec![("m1".to_string(), ".spec.contacts".to_string())]
    );
    // The owner replaces them whole.
    let out = apply(Some(&live), &order(json!({"contacts": ["c"], "selector": {"z": "3"}})), "m1", false, None, &types)
        .unwrap();
    assert_eq!(out["spec"], json!({"contacts": ["c"], "selector": {"z": "3"}}));
}

#[test]
fn finalizers_are_a_set_and_owner_references_a_map() {
    let types = cm_types();
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["x.io/a"],
        "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": "u1"}]}});
    let live = apply(None, &a, "a", false, None, &types).unwrap();
    assert_eq!(
        fields(&live, "a", "Apply"),
        json!({"f:metadata": {"f:finalizers": {"v:\"x.io/a\"": {}}, "f:ownerReferences": {"k:{\"uid\":\"u1\"}": {
            ".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}}}}})
    );
    let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["x.io/b"]}});
    let live = apply(Some(&live), &b, "b", false, None, &types).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["x.io/a", "x.io/b"]));
    let a2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let live = apply(Some(&live), &a2, "a", false, None, &types).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["x.io/b"]));
    assert!(live["metadata"].get("ownerReferences").is_none(), "{live:#}");
    assert!(entry(&live, "a", "Apply").is_none(), "an empty set leaves no entry");
}

#[test]
fn objects_without_managed_fields_belong_to_before_first_apply() {
    let types = cm_types();
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "5"}, "data": {"a": "1"}});
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "2"}});
    assert_eq!(
        conflicts(apply(Some(&live), &cfg, "kubectl", false, None, &types)),
        vec![("before-first-apply".to_string(), ".data.a".to_string())]
    );
    let same =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
    let out = apply(Some(&live), &same, "kubectl", false, None, &types).unwrap();
    assert_eq!(fields(&out, "before-first-apply", "Update"), json!({"f:data": {".": {}, "f:a": {}}}));
    assert_eq!(fields(&out, "kubectl", "Apply"), json!({"f:data": {"f:a": {}, "f:b": {}}}));
    assert_eq!(out["metadata"]["resourceVersion"], "5");
}

#[test]
fn operator_applies_child_secrets_repeatedly() {
    // An operator applies a Secret it owns on every reconcile; the second apply with the same
    // content is a no-op and a rotated key replaces the old one.
    let types = TypeInfo { schema: None, api_version: "v1".into(), kind: "Secret".into() };
    let s1 = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": "d",
        "labels": {"app.kubernetes.io/managed-by": "certorder"},
        "ownerReferences": [{"apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder", "name": "o", "uid": "u", "controller": true}]},
        "type": "kubernetes.io/tls", "data": {"tls.key": "a2V5", "tls.crt": "Y3J0"}});
    let live = apply(None, &s1, "certorder", true, None, &types).unwrap();
    let again = apply(Some(&live), &s1, "certorder", true, None, &types).unwrap();
    assert_eq!(again, live);
    let mut s2 = s1.clone();
    s2["data"] = json!({"tls.key": "bmV3", "tls.crt": "bmV3Y3J0"});
    let out = apply(Some(&live), &s2, "certorder", true, None, &types).unwrap();
    assert_eq!(out["data"], s2["data"]);
    assert_eq!(out["metadata"]["ownerReferences"], s1["metadata"]["ownerReferences"]);
}

#[test]
fn fields_v1_round_trip() {
    let v = json!({
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}}}, "f:list": {"i:0": {}}, "f:set": {"v:1": {}, "v:\"x\"": {}}}
    });
    let set = fields_v1_to_set(&v);
    assert_eq!(set.len(), 7);
    assert!(set.contains(&Path::of_fields(&["metadata", "labels"])));
    assert!(!set.contains(&Path::of_fields(&["metadata"])));
    assert_eq!(set_to_fields_v1(&set), v);
    // Key objects are normalised (sorted names) when parsed.
    let unsorted = json!({"f:ports": {"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {}}});
    assert_eq!(
        set_to_fields_v1(&fields_v1_to_set(&unsorted)),
        json!({"f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}})
    );
}

#[test]
fn conflict_paths_print_like_structured_merge_diff() {
    let cases = vec![
        (vec![field("spec"), field("replicas")], ".spec.replicas"),
        (
            vec![field("spec"), field("ports"), PE::Key(r#"{"port":80,"protocol":"TCP"}"#.into()), field("name")],
            r#".spec.ports[port=80,protocol="TCP"].name"#,
        ),
        (vec![field("metadata"), field("finalizers"), PE::Val(r#""x""#.into())], r#".metadata.finalizers[="x"]"#),
        (vec![field("spec"), field("args"), PE::Index(2)], ".spec.args[2]"),
    ];
    for (p, want) in cases {
        assert_eq!(path_string(&Path::from_elements(&p)), want);
    }
}

#[test]
fn applying_an_empty_map_removes_the_fields_applied_before() {
    let types = cm_types();
    let live = apply(
        None,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"x": "1", "y": "1"}}),
        "alice",
        false,
        None,
        &types,
    )
    .unwrap();
    let out = apply(
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {}}),
        "alice",
        false,
        None,
        &types,
    )
    .unwrap();
    assert_eq!(out["data"], json!({}));
    assert_eq!(fields(&out, "alice", "Apply"), json!({"f:data": {}}));
}

/// An entry's `fieldsV1` is written back as read only while its fields are unchanged: fields a
/// forced apply takes leave the other manager's entry, and a client's own spelling of its
/// managed fields is written as the server spells them.
#[test]
fn an_entry_keeps_its_fields_v1_only_while_its_fields_are_unchanged() {
    let types = deployment_types();
    let cfg =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let live = apply(None, &cfg, "kubectl", false, None, &types).unwrap();
    let mut new = live.clone();
    new["spec"]["replicas"] = json!(5);
    new["spec"]["paused"] = json!(true);
    record_update(Some(&live), &mut new, "scaler", None, &types);
    assert_eq!(fields(&new, "scaler", "Update"), json!({"f:spec": {"f:paused": {}, "f:replicas": {}}}));

    // Applying again what it applied before: the scaler's entry is read and written back as it is.
    let unchanged = apply(
        Some(&new),
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
        "other",
        false,
        None,
        &types,
    )
    .unwrap();
    assert_eq!(fields(&unchanged, "scaler", "Update"), fields(&new, "scaler", "Update"));

    let forced = apply(Some(&new), &cfg, "kubectl", true, None, &types).unwrap();
    assert_eq!(fields(&forced, "scaler", "Update"), json!({"f:spec": {"f:paused": {}}}));
    assert_eq!(fields(&forced, "kubectl", "Apply"), json!({"f:spec": {"f:replicas": {}}}));

    // A client that sends managed fields spelled its own way (key names unsorted).
    let mut sent = forced.clone();
    sent["metadata"]["managedFields"] = json!([{
        "manager": "mine", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:ports": {"k:{\"protocol\":\"TCP\",\"containerPort\":80}": {}}}},
    }]);
    record_update(Some(&forced), &mut sent, "mine", None, &types);
    assert_eq!(
        fields(&sent, "mine", "Update"),
        json!({"f:spec": {"f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}}})
    );
}

/// Apply's merge finds a map-list item by the key it has now: an item whose merge changed its key
/// (a null key field removed, so the default applies) no longer matches its old key.
#[test]
fn a_list_item_is_matched_by_its_key_after_a_merge() {
    let types = crd_types();
    let live = order(json!({"ports": [{"port": 80, "protocol": null}]}));
    let cfg = order(json!({"ports": [{"port": 80, "protocol": null}, {"port": 80, "protocol": null, "name": "x"}]}));
    let out = apply(Some(&live), &cfg, "m", true, None, &types).unwrap();
    assert_eq!(out["spec"]["ports"], json!([{"port": 80}, {"port": 80, "protocol": null, "name": "x"}]));
}

/// An apply writes the managed fields last in `metadata`, the key that was last moving into their
/// old place (the order `Map::remove` leaves); an update writes them where they were.
#[test]
fn managed_fields_are_written_last_in_metadata() {
    let types = cm_types();
    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}});
    let mut live = apply(None, &cfg, "kubectl", false, None, &types).unwrap();
    let meta = live["metadata"].as_object_mut().unwrap();
    let managed = meta.shift_remove("managedFields").unwrap();
    meta.shift_insert(0, "managedFields".into(), managed);
    meta.insert("uid".into(), json!("u"));
    let keys = |v: &Value| v["metadata"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&live), ["managedFields", "name", "labels", "uid"]);

    let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "2"}}});
    let out = apply(Some(&live), &cfg, "kubectl", false, None, &types).unwrap();
    assert_eq!(keys(&out), ["uid", "name", "labels", "managedFields"]);

    let mut new = live.clone();
    new["metadata"]["labels"]["b"] = json!("3");
    record_update(Some(&live), &mut new, "editor", None, &types);
    assert_eq!(keys(&new), ["managedFields", "name", "labels", "uid"]);
}

/// Encoded paths sort byte by byte as their elements do one by one (the order of `fieldsV1`, and
/// what `owns_path_or_below` relies on), and read back as written.
#[test]
fn encoded_paths_sort_as_their_elements() {
    let elements = [
        PE::Field(String::new()),
        PE::Field("a".into()),
        PE::Field("a\0".into()),
        PE::Field("a\u{1}".into()),
        PE::Field("a\u{1}b".into()),
        PE::Field("a\u{2}".into()),
        PE::Field("ab".into()),
        PE::Field("é".into()),
        PE::Key(r#"{"name":"a"}"#.into()),
        PE::Key(r#"{"name":"b"}"#.into()),
        PE::Val("\"a\"".into()),
        PE::Val("1".into()),
        PE::Index(0),
        PE::Index(1),
        PE::Index(255),
        PE::Index(256),
    ];
    let mut paths: Vec<Vec<PE>> = vec![vec![]];
    for a in &elements {
        paths.push(vec![a.clone()]);
        for b in &elements {
            paths.push(vec![a.clone(), b.clone()]);
        }
    }
    let encoded: Vec<Path> = paths.iter().map(Path::from_elements).collect();
    for (a, pa) in paths.iter().zip(&encoded) {
        assert_eq!(&pa.elements().collect::<Vec<_>>(), a);
        for (b, pb) in paths.iter().zip(&encoded) {
            assert_eq!(pa.cmp(pb), a.cmp(b), "{a:?} vs {b:?}");
            assert_eq!(pa.starts_with(pb), a.starts_with(b), "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn whole_numbers_are_written_in_path_elements_as_go_writes_their_float64() {
    for (value, text) in [
        (json!(1), "1"),
        (json!(1.0), "1"),
        (json!(-0.0), "0"),
        (json!(-3.0), "-3"),
        (json!(1.5), "1.5"),
        (json!(1.2345678901234567e20), "123456789012345670000"),
        (json!(18446744073709551615u64), "18446744073709552000"),
        (json!(18446744073709551615.0), "18446744073709552000"),
        (json!("1.0"), "\"1.0\""),
    ] {
        assert_eq!(value_text(&value), text, "{value}");
    }
}

/// structured-merge-diff compares numbers by value (`value.Compare`, `value.Equals`): a set's
/// `1` and `1.0` are one item, `v:1` (Go writes the float as `1`), and replacing one by the other
/// changes no field, so its owner keeps it.
#[test]
fn a_set_item_one_replaced_by_one_point_zero_is_the_same_item() {
    let types = crd_types();
    let old = apply(None, &order(json!({"domains": [1]})), "kubectl", false, None, &types).unwrap();
    let mut new = old.clone();
    new["spec"]["domains"] = json!([1.0]);
    record_update(Some(&old), &mut new, "editor", None, &types);
    assert_eq!(fields(&new, "editor", "Update"), Value::Null);
    assert_eq!(fields(&new, "kubectl", "Apply"), json!({"f:spec": {"f:domains": {"v:1": {}}}}));
    // Applied as `1.0` by another manager, it is the same element, shared.
    let shared = apply(Some(&old), &order(json!({"domains": [1.0]})), "other", false, None, &types).unwrap();
    assert_eq!(fields(&shared, "other", "Apply"), json!({"f:spec": {"f:domains": {"v:1": {}}}}));
    assert_eq!(fields(&shared, "kubectl", "Apply"), json!({"f:spec": {"f:domains": {"v:1": {}}}}));
}
