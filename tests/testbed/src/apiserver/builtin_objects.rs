//! The objects every kube-apiserver starts with, created when the server starts: the system
//! namespaces, the `default/kubernetes` Service (with its Endpoints and EndpointSlice), the bootstrap
//! RBAC roles (`cluster-admin`, `admin`, `edit`, `view`, discovery roles) and their bindings, the
//! system PriorityClasses; and the `componentstatuses`, which kube-apiserver computes on every read.
use serde_json::{Value, json};

use super::ops::{self, WriteOpts};
use super::store::Store;

/// The ClusterIP of `default/kubernetes` (the first address of kube-apiserver's default range).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

fn bootstrap_meta(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

/// The bootstrap ClusterRoles, with the rules the aggregated roles end up with (what the
/// `system:aggregate-to-*` roles contribute, shortened to the resources the testbed serves).
fn cluster_roles() -> Vec<Value> {
    let view_rules = vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "serviceaccounts",
                "services",
                "services/status",
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "resourcequotas",
                "resourcequotas/status",
                "namespaces",
            ],
            READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
        rule(&["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
        rule(&["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"], READ),
        rule(&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
    ];
    let mut edit_rules = view_rules.clone();
    edit_rules.extend([
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "pods/eviction",
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        rule(&[""], &["secrets"], READ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
        rule(&["batch"], &["cronjobs", "jobs"], WRITE),
        rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], WRITE),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        ),
    ]);
    let mut admin_rules = edit_rules.clone();
    admin_rules.extend([
        rule(
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
            &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        ),
        rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
    ]);
    let aggregated = |name: &str, rules: Vec<Value>, to: &str| {
        let mut meta = bootstrap_meta(name);
        if let Some(to) = (!to.is_empty()).then_some(to) {
            meta["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{to}")] = json!("true");
        }
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta,
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}]},
            "rules": rules,
        })
    };
    let plain = |name: &str, rules: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": bootstrap_meta(name), "rules": rules});
    vec![
        plain(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        aggregated("admin", admin_rules, ""),
        aggregated("edit", edit_rules, "admin"),
        aggregated("view", view_rules, "edit"),
        plain(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        plain(
            "system:basic-user",
            json!([{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                   {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
        ),
        plain(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
    ]
}

fn cluster_role_bindings() -> Vec<Value> {
    let binding = |name: &str, subjects: Value| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": bootstrap_meta(name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        })
    };
    let group = |g: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g});
    vec![
        binding("cluster-admin", json!([group("system:masters")])),
        binding("system:discovery", json!([group("system:authenticated")])),
        binding("system:basic-user", json!([group("system:authenticated")])),
        binding("system:public-info-viewer", json!([group("system:authenticated"), group("system:unauthenticated")])),
    ]
}

/// `default/kubernetes` and what points it at the API server (`port` is where it listens).
fn kubernetes_service(port: u16) -> Vec<(&'static str, &'static str, Value)> {
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    vec![
        (
            "",
            "services",
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
                "spec": {
                    "clusterIP": KUBERNETES_SERVICE_IP,
                    "clusterIPs": [KUBERNETES_SERVICE_IP],
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"],
                    "ipFamilyPolicy": "SingleStack",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                    "sessionAffinity": "None",
                    "type": "ClusterIP",
                },
                "status": {"loadBalancer": {}},
            }),
        ),
        (
            "",
            "endpoints",
            json!({
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
            }),
        ),
        (
            "discovery.k8s.io",
            "endpointslices",
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }),
        ),
    ]
}

fn priority_classes() -> Vec<Value> {
    [("system-cluster-critical", 2_000_000_000), ("system-node-critical", 2_000_001_000)]
        .into_iter()
        .map(|(name, value)| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "preemptionPolicy": "PreemptLowerPriority",
                "description": "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
            })
        })
        .collect()
}

/// Creates the objects of a new cluster whose API server listens on `port`.
pub fn create(store: &mut Store, port: u16) -> anyhow::Result<()> {
    let opts = WriteOpts { field_manager: "kube-apiserver".into(), ..Default::default() };
    let mut objects: Vec<(&str, &str, Value)> = ["default", "kube-system", "kube-public", "kube-node-lease"]
        .into_iter()
        .map(|ns| ("", "namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})))
        .collect();
    objects.extend(kubernetes_service(port));
    objects.extend(cluster_roles().into_iter().map(|o| ("rbac.authorization.k8s.io", "clusterroles", o)));
    objects
        .extend(cluster_role_bindings().into_iter().map(|o| ("rbac.authorization.k8s.io", "clusterrolebindings", o)));
    objects.extend(priority_classes().into_iter().map(|o| ("scheduling.k8s.io", "priorityclasses", o)));
    for (group, plural, obj) in objects {
        let version = obj["apiVersion"].as_str().unwrap_or("v1").rsplit('/').next().unwrap_or("v1").to_string();
        let ri =
            store.registry.get(group, &version, plural).ok_or_else(|| anyhow::anyhow!("{plural} is not served"))?;
        let ns = obj["metadata"]["namespace"].as_str().map(String::from);
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let status = obj.get("status").cloned();
        let w = ops::create(store, &ri, ns.as_deref(), obj, &opts, false)
            .map_err(|e| anyhow::anyhow!("creating {plural} {name}: {e}"))?;
        // What controllers would have written to the status subresource.
        if let Some(s) = status
            && ri.status_subresource
            && plural != "namespaces"
        {
            let mut o = (*w.obj).clone();
            o["status"] = s;
            let key = ops::key(&ri, ns.as_deref(), &name);
            let sopts = WriteOpts { subresource: Some("status".into()), ..opts.clone() };
            ops::update(store, &ri, &key, o, &sopts).map_err(|e| anyhow::anyhow!("status of {plural} {name}: {e}"))?;
        }
    }
    Ok(())
}

/// The component statuses kube-apiserver reports (`kubectl get componentstatuses`): every
/// component healthy.
pub fn component_statuses() -> Vec<Value> {
    [("controller-manager", "ok"), ("etcd-0", "{\"health\":\"true\",\"reason\":\"\"}"), ("scheduler", "ok")]
        .into_iter()
        .map(|(name, message)| {
            json!({
                "kind": "ComponentStatus",
                "apiVersion": "v1",
                "metadata": {"name": name},
                "conditions": [{"type": "Healthy", "status": "True", "message": message}],
            })
        })
        .collect()
}

/// The warning kube-apiserver sends with every componentstatuses answer.
pub const COMPONENT_STATUS_WARNING: &str = "v1 ComponentStatus is deprecated in v1.19+";

#[cfg(test)]
mod tests {
    use super::super::store::ObjKey;
    use super::*;

    #[test]
    fn a_new_cluster_has_its_objects() {
        let mut store = Store::new(100);
        create(&mut store, 6443).unwrap();
        let get = |storage: &str, ns: &str, name: &str| {
            store.get(&ObjKey { storage: storage.into(), namespace: ns.into(), name: name.into() })
        };
        let svc = get("services", "default", "kubernetes").unwrap();
        assert_eq!(svc["spec"]["clusterIP"], KUBERNETES_SERVICE_IP);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 6443);
        for role in ["cluster-admin", "admin", "edit", "view"] {
            assert!(get("clusterroles.rbac.authorization.k8s.io", "", role).is_some(), "{role}");
        }
        assert!(get("namespaces", "", "kube-node-lease").is_some());
        assert_eq!(component_statuses().len(), 3);
    }
}
