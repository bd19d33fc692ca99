//! Installing certorder the way users do, checked against the testbed API server:
//!
//! - the Helm chart `charts/certorder`: `.ci/helm-check.py` lints and renders it with the real Helm
//!   engine (the helm-python-sdk package, pinned in `.ci/requirements.txt`); here the rendered
//!   objects are parsed as the Kubernetes types they claim, their RBAC is checked for least
//!   privilege, they are applied with the real `kubectl`, and the operator binary is started with
//!   the arguments of the rendered Deployment and takes an order from the chart's default provider
//!   to `Issued` (the README's quickstart);
//! - the chart's `crds/` equals the CRDs the code generates;
//! - `examples/` applies with `kubectl` and `kubectl get certorders -A` shows the printer columns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;
use testbed::ApiServer;

const RELEASE_NAMESPACE: &str = "certorder-system";
const VARIANTS: [&str; 4] = ["default", "all-on", "namespaced", "minimal"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- rendering ---------------------------------------------------------------------------------

/// Runs `.ci/helm-check.py` once for the whole test binary and returns the directory holding
/// `<variant>.yaml` and `<variant>-notes.txt`. The script fails (and so every chart test) when lint
/// reports an error or a warning, or when the schema accepts a wrong value.
fn rendered_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-rendered");
        let _ = std::fs::remove_dir_all(&out);
        let result = Command::new("python3")
            .arg(repo().join(".ci/helm-check.py"))
            .arg("--out")
            .arg(&out)
            .output()
            .expect("python3 on PATH (the chart checks run .ci/helm-check.py with it)");
        let stdout = String::from_utf8_lossy(&result.stdout);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            result.status.success(),
            ".ci/helm-check.py failed:\n{stdout}\n{stderr}\n(install its package with: python3 -m pip install -r .ci/requirements.txt)"
        );
        assert!(stdout.contains("helm-check: ok"), "{stdout}");
        out
    })
}

/// The objects of one rendered variant, as JSON, in the order Helm rendered them.
fn rendered(variant: &str) -> Vec<Value> {
    let path = rendered_dir().join(format!("{variant}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_documents(&text)
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).expect("YAML maps to JSON"))
        .collect()
}

fn kind_of(o: &Value) -> (&str, &str) {
    (o["apiVersion"].as_str().unwrap_or_default(), o["kind"].as_str().unwrap_or_default())
}

fn name_of(o: &Value) -> String {
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{} {ns}/{name}", kind_of(o).1),
        None => format!("{} {name}", kind_of(o).1),
    }
}

fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects.iter().filter(move |o| o["kind"] == kind)
}

fn typed<T: serde::de::DeserializeOwned>(o: &Value) -> T {
    serde_json::from_value(o.clone()).unwrap_or_else(|e| panic!("{}: {e}", name_of(o)))
}

/// The fields of `original` that `roundtrip` lost: what the typed decoding did not recognise.
fn lost_fields(original: &Value, roundtrip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, roundtrip) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &format!("{path}.{k}"), out),
                    None if v.is_null() => {}
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

/// Decodes `o` into `T` and encodes it again; every field must survive (a misspelt or misplaced
/// field is silently dropped by the typed decoding, so a plain parse would not catch it).
fn parses_as<T: serde::Serialize + serde::de::DeserializeOwned>(o: &Value) -> Result<(), String> {
    let t: T = serde_json::from_value(o.clone()).map_err(|e| format!("does not parse: {e}"))?;
    let back = serde_json::to_value(&t).unwrap();
    let mut lost = Vec::new();
    lost_fields(o, &back, "", &mut lost);
    if lost.is_empty() { Ok(()) } else { Err(format!("unknown or mistyped fields: {}", lost.join(", "))) }
}

/// The ServiceMonitor fields the chart sets (prometheus-operator's monitoring.coreos.com/v1 is not
/// in k8s-openapi); unknown fields are refused.
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ServiceMonitorSpec,
}
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    endpoints: Vec<ServiceMonitorEndpoint>,
}
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorEndpoint {
    port: String,
    path: String,
    interval: String,
    scrape_timeout: String,
}

/// Why `o` is not the Kubernetes object it claims to be; `Ok` when it is.
fn check_type(o: &Value) -> Result<(), String> {
    use k8s_openapi::api::*;
    match kind_of(o) {
        ("apps/v1", "Deployment") => parses_as::<apps::v1::Deployment>(o),
        ("v1", "Service") => parses_as::<core::v1::Service>(o),
        ("v1", "ServiceAccount") => parses_as::<core::v1::ServiceAccount>(o),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => parses_as::<rbac::v1::ClusterRole>(o),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => parses_as::<rbac::v1::ClusterRoleBinding>(o),
        ("rbac.authorization.k8s.io/v1", "Role") => parses_as::<rbac::v1::Role>(o),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => parses_as::<rbac::v1::RoleBinding>(o),
        ("policy/v1", "PodDisruptionBudget") => parses_as::<policy::v1::PodDisruptionBudget>(o),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => parses_as::<ServiceMonitor>(o),
        ("certorder.io/v1alpha1", "ClusterCertificateProvider") => {
            parses_as::<certorder::api::ClusterCertificateProvider>(o)
        }
        (api_version, kind) => Err(format!("{api_version} {kind} is not a kind the chart should render")),
    }
}

#[test]
fn rendered_objects_are_the_kubernetes_types_they_claim() {
    let mut problems = Vec::new();
    let mut counts = BTreeMap::new();
    for variant in VARIANTS {
        let objects = rendered(variant);
        for o in &objects {
            if let Err(e) = check_type(o) {
                problems.push(format!("{variant}: {}: {e}", name_of(o)));
            }
            let labels = &o["metadata"]["labels"];
            if labels["app.kubernetes.io/managed-by"] != "Helm" || labels["app.kubernetes.io/instance"] != "certorder" {
                problems.push(format!("{variant}: {} lacks the chart's labels: {labels}", name_of(o)));
            }
        }
        let mut kinds: Vec<&str> = objects.iter().map(|o| kind_of(o).1).collect();
        kinds.sort();
        counts.insert(variant, kinds.join(","));
    }
    assert!(problems.is_empty(), "rendered objects that are not what they claim:\n  {}", problems.join("\n  "));
    // What each variant renders; a new or vanished object must be a deliberate change.
    let expected = [
        (
            "default",
            "ClusterCertificateProvider,ClusterRole,ClusterRole,ClusterRole,ClusterRole,ClusterRole,ClusterRoleBinding,ClusterRoleBinding,Deployment,Role,RoleBinding,Service,ServiceAccount",
        ),
        (
            "all-on",
            "ClusterCertificateProvider,ClusterRole,ClusterRole,ClusterRole,ClusterRole,ClusterRoleBinding,Deployment,PodDisruptionBudget,Role,Role,Role,RoleBinding,RoleBinding,RoleBinding,Service,ServiceAccount,ServiceMonitor",
        ),
        (
            "namespaced",
            "ClusterCertificateProvider,ClusterRole,ClusterRole,ClusterRole,ClusterRole,ClusterRoleBinding,Deployment,Role,Role,Role,RoleBinding,RoleBinding,RoleBinding,Service,ServiceAccount",
        ),
        ("minimal", "Deployment,Service"),
    ];
    for (variant, kinds) in expected {
        assert_eq!(counts[variant], kinds, "objects rendered for {variant}");
    }
}

#[test]
fn the_type_check_catches_a_misplaced_field() {
    let mut deployment = rendered("default").into_iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(check_type(&deployment), Ok(()));
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] =
        serde_json::json!({"httpGet": {"path": "/healthz"}});
    let err = check_type(&deployment).unwrap_err();
    assert!(err.contains(".spec.template.spec.containers[0].livenessprobe"), "{err}");
    let mut role = rendered("default").into_iter().find(|o| o["kind"] == "Role").unwrap();
    role["rules"][0]["verbs"] = serde_json::json!("get");
    assert!(check_type(&role).unwrap_err().contains("does not parse"));
    let monitor = rendered("all-on").into_iter().find(|o| o["kind"] == "ServiceMonitor").unwrap();
    assert_eq!(check_type(&monitor), Ok(()));
    let mut monitor = monitor;
    monitor["spec"]["endpoints"][0]["scrapeTimout"] = "5s".into();
    assert!(check_type(&monitor).is_err());
}

// ---- RBAC --------------------------------------------------------------------------------------

/// What the operator does in a namespace whose orders it watches: (API group, resource, verbs).
const NEEDED_IN_WATCHED_NAMESPACES: &[(&str, &str, &[&str])] = &[
    ("certorder.io", "certificateorders", &["get", "list", "watch", "patch"]),
    ("certorder.io", "certificateorders/status", &["get", "patch", "update"]),
    ("", "secrets", &["get", "list", "watch", "create", "patch", "update", "delete"]),
    ("", "events", &["create", "patch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("", "configmaps", &["get", "list", "watch", "create", "patch", "delete"]),
    ("", "pods", &["get", "list", "watch", "create", "patch", "delete"]),
    ("", "services", &["get", "list", "watch", "create", "patch", "delete"]),
    ("networking.k8s.io", "ingresses", &["get", "list", "watch", "create", "patch", "update", "delete"]),
    ("gateway.networking.k8s.io", "httproutes", &["get", "list", "watch", "create", "patch", "delete"]),
    // DNS validation through external-dns: the order's DNSEndpoint.
    ("externaldns.k8s.io", "dnsendpoints", &["get", "create", "patch", "delete"]),
];
/// Cluster-wide, in every mode.
const NEEDED_CLUSTER_WIDE: &[(&str, &str, &[&str])] = &[
    ("certorder.io", "clustercertificateproviders", &["get", "list", "watch"]),
    ("certorder.io", "clustercertificateproviders/status", &["patch"]),
    // A shared cluster: the namespace's labels against a provider's namespaceSelector, and the
    // hosts other namespaces serve before HTTP validation routes one.
    ("", "namespaces", &["get"]),
    ("networking.k8s.io", "ingresses", &["list"]),
    ("gateway.networking.k8s.io", "httproutes", &["list"]),
    // The DNS zones records are published with, cached by a watch.
    ("certorder.io", "clusterdnszones", &["get", "list", "watch"]),
];
/// In the operator's own namespace, in every mode.
const NEEDED_IN_OWN_NAMESPACE: &[(&str, &str, &[&str])] =
    &[("", "secrets", &["get", "create"]), ("coordination.k8s.io", "leases", &["get", "create", "update", "patch"])];

/// Every (group, resource, verb) the rules grant.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn expand(needed: &[&[(&str, &str, &[&str])]]) -> BTreeSet<(String, String, String)> {
    needed
        .iter()
        .flat_map(|n| n.iter())
        .flat_map(|(g, r, vs)| vs.iter().map(move |v| (g.to_string(), r.to_string(), v.to_string())))
        .collect()
}

/// What the operator's ServiceAccount may do, per namespace ("" for cluster-wide), following the
/// bindings to their roles.
fn effective_permissions(objects: &[Value]) -> BTreeMap<String, BTreeSet<(String, String, String)>> {
    let sa: ServiceAccount = typed(of_kind(objects, "ServiceAccount").next().expect("a ServiceAccount"));
    let sa_name = sa.metadata.name.unwrap();
    let binds_sa = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount" && s.name == sa_name && s.namespace.as_deref() == Some(RELEASE_NAMESPACE)
        })
    };
    let cluster_roles: BTreeMap<String, ClusterRole> = of_kind(objects, "ClusterRole")
        .map(typed::<ClusterRole>)
        .map(|r| (r.metadata.name.clone().unwrap(), r))
        .collect();
    let roles: BTreeMap<(String, String), Role> = of_kind(objects, "Role")
        .map(typed::<Role>)
        .map(|r| ((r.metadata.namespace.clone().unwrap(), r.metadata.name.clone().unwrap()), r))
        .collect();
    let mut out: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    for b in of_kind(objects, "ClusterRoleBinding").map(typed::<ClusterRoleBinding>) {
        assert_eq!(b.role_ref.kind, "ClusterRole");
        if binds_sa(&b.subjects) {
            let role = cluster_roles.get(&b.role_ref.name).expect("the bound ClusterRole is rendered");
            out.entry(String::new()).or_default().extend(grants(role.rules.as_deref().unwrap_or_default()));
        }
    }
    for b in of_kind(objects, "RoleBinding").map(typed::<RoleBinding>) {
        let ns = b.metadata.namespace.clone().unwrap();
        assert_eq!(b.role_ref.kind, "Role", "RoleBinding {ns}/{:?} must bind a Role of its namespace", b.metadata.name);
        if binds_sa(&b.subjects) {
            let role = roles.get(&(ns.clone(), b.role_ref.name.clone())).expect("the bound Role is rendered");
            out.entry(ns).or_default().extend(grants(role.rules.as_deref().unwrap_or_default()));
        }
    }
    out
}

fn rbac_problems(objects: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for o in objects.iter().filter(|o| matches!(kind_of(o).1, "ClusterRole" | "Role")) {
        let rules: Vec<PolicyRule> = serde_json::from_value(o["rules"].clone()).unwrap_or_default();
        for rule in &rules {
            let lists = [&rule.api_groups, &rule.resources, &Some(rule.verbs.clone())];
            if lists.iter().any(|l| l.iter().flatten().any(|s| s.contains('*'))) {
                problems.push(format!("{} has a wildcard: {rule:?}", name_of(o)));
            }
            if rule.resource_names.is_some() || rule.non_resource_urls.is_some() {
                problems.push(format!("{} grants more than resources: {rule:?}", name_of(o)));
            }
        }
    }
    problems
}

#[test]
fn rbac_grants_exactly_what_the_operator_needs_and_no_wildcards() {
    for variant in ["default", "all-on", "namespaced"] {
        let objects = rendered(variant);
        let problems = rbac_problems(&objects);
        assert!(problems.is_empty(), "{variant}:\n  {}", problems.join("\n  "));

        let deployment: Deployment = typed(of_kind(&objects, "Deployment").next().unwrap());
        let args = deployment.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
        let watched: Vec<String> = args
            .iter()
            .find_map(|a| a.strip_prefix("--watch-namespaces="))
            .map(|l| l.split(',').map(String::from).collect())
            .unwrap_or_default();

        let perms = effective_permissions(&objects);
        let cluster = perms.get("").cloned().unwrap_or_default();
        let mut expected: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
        if watched.is_empty() {
            expected.insert(String::new(), expand(&[NEEDED_CLUSTER_WIDE, NEEDED_IN_WATCHED_NAMESPACES]));
        } else {
            expected.insert(String::new(), expand(&[NEEDED_CLUSTER_WIDE]));
            for ns in &watched {
                expected.insert(ns.clone(), expand(&[NEEDED_IN_WATCHED_NAMESPACES]));
            }
            // No cluster-wide access to anything namespaced, Secrets above all.
            assert!(
                !cluster.iter().any(|(_, r, _)| r == "secrets"),
                "{variant}: watchNamespaces is set but a ClusterRole grants Secrets: {cluster:?}"
            );
        }
        expected.entry(RELEASE_NAMESPACE.into()).or_default().extend(expand(&[NEEDED_IN_OWN_NAMESPACE]));
        // Nothing more and nothing less than needed, namespace by namespace.
        let namespaces: BTreeSet<&String> = perms.keys().chain(expected.keys()).collect();
        let mut wrong = Vec::new();
        for ns in namespaces {
            let (has, needs) =
                (perms.get(ns).cloned().unwrap_or_default(), expected.get(ns).cloned().unwrap_or_default());
            let scope = if ns.is_empty() { "cluster-wide".to_string() } else { format!("in namespace {ns}") };
            wrong.extend(needs.difference(&has).map(|p| format!("missing {scope}: {p:?}")));
            wrong.extend(has.difference(&needs).map(|p| format!("not needed {scope}: {p:?}")));
        }
        assert!(
            wrong.is_empty(),
            "{variant} (watchNamespaces {watched:?}), the ServiceAccount's permissions:\n  {}",
            wrong.join("\n  ")
        );
    }
    // Without RBAC the chart renders none.
    let minimal = rendered("minimal");
    assert!(minimal.iter().all(|o| !kind_of(o).0.starts_with("rbac.")), "minimal renders RBAC");
}

/// Whether `rules` allow `verb` on `resource` of `group` (RBAC's rule matching, no wildcards:
/// the chart has none, checked above).
fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    grants(rules).contains(&(group.to_string(), resource.to_string(), verb.to_string()))
}

/// The roles for people aggregate into Kubernetes' view, edit and admin as cert-manager's do, and
/// split the review decision off: what a user bound to `edit` (and so to certorder-edit) may do
/// is read from the rules the chart grants, as the API server's RBAC authorizer would (the
/// testbed does not enforce RBAC).
#[test]
fn the_roles_for_people_aggregate_and_only_the_approver_may_decide_a_review() {
    let objects = rendered("default");
    let roles: BTreeMap<String, ClusterRole> = of_kind(&objects, "ClusterRole")
        .map(typed::<ClusterRole>)
        .map(|r| (r.metadata.name.clone().unwrap(), r))
        .collect();
    let role = |name: &str| roles.get(name).unwrap_or_else(|| panic!("ClusterRole {name} is rendered"));
    let aggregates_into = |name: &str| -> BTreeSet<String> {
        role(name)
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, v)| v == "true" && k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
            .map(|(k, _)| k.rsplit('-').next().unwrap().to_string())
            .collect()
    };
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(aggregates_into("certorder-view"), set(&["view", "edit", "admin"]));
    assert_eq!(aggregates_into("certorder-edit"), set(&["edit", "admin"]));
    assert_eq!(aggregates_into("certorder-approver"), set(&[]), "reviewers are bound on purpose");
    // Not bound to the operator: these are for people.
    let sa_roles: BTreeSet<String> =
        of_kind(&objects, "ClusterRoleBinding").map(typed::<ClusterRoleBinding>).map(|b| b.role_ref.name).collect();
    for people in ["certorder-view", "certorder-edit", "certorder-approver"] {
        assert!(!sa_roles.contains(people), "{people} is bound to the operator: {sa_roles:?}");
    }

    // What Kubernetes' edit role gains (and so a namespace's order authors).
    let edit: Vec<PolicyRule> = roles
        .values()
        .filter(|r| {
            r.metadata.labels.as_ref().is_some_and(|l| l.get("rbac.authorization.k8s.io/aggregate-to-edit").is_some())
        })
        .flat_map(|r| r.rules.clone().unwrap_or_default())
        .collect();
    for verb in ["create", "update", "patch", "delete", "get", "list", "watch"] {
        assert!(allows(&edit, "certorder.io", "certificateorders", verb), "edit may {verb} orders");
    }
    // ... but cannot write the status subresource, where `certorder approve` records the decision.
    for verb in ["patch", "update", "create"] {
        assert!(!allows(&edit, "certorder.io", "certificateorders/status", verb), "edit must not {verb} order status");
    }
    assert!(!allows(&edit, "certorder.io", "clustercertificateproviders", "patch"));
    let approver = role("certorder-approver").rules.clone().unwrap_or_default();
    // What `certorder approve` calls: get the order and its provider, merge-patch the status.
    assert!(allows(&approver, "certorder.io", "certificateorders", "get"));
    assert!(allows(&approver, "certorder.io", "clustercertificateproviders", "get"));
    assert!(allows(&approver, "certorder.io", "certificateorders/status", "patch"));
    assert!(!allows(&approver, "certorder.io", "certificateorders", "patch"), "a reviewer does not edit the spec");

    // Without rbac.create the chart renders none of them.
    assert!(!of_kind(&rendered("minimal"), "ClusterRole").any(|r| r["metadata"]["name"] == "certorder-edit"));
}

#[test]
fn the_rbac_checks_catch_a_wildcard_and_cluster_wide_secrets() {
    let mut objects = rendered("namespaced");
    let role = objects.iter_mut().find(|o| o["kind"] == "ClusterRole").unwrap();
    role["rules"][0]["verbs"] = serde_json::json!(["*"]);
    role["rules"][1]["resources"] = serde_json::json!(["secrets"]);
    let problems = rbac_problems(&objects);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let cluster = effective_permissions(&objects).remove("").unwrap();
    assert!(cluster.iter().any(|(_, r, _)| r == "secrets"));
}

// ---- the Deployment ----------------------------------------------------------------------------

#[test]
fn the_deployment_is_restricted_and_probes_the_health_endpoints() {
    for variant in VARIANTS {
        let objects = rendered(variant);
        let deployment: Deployment = typed(of_kind(&objects, "Deployment").next().unwrap());
        let spec = deployment.spec.unwrap();
        let pod = spec.template.spec.clone().unwrap();
        // Never two operators acting at once: one replica recreated, or several gated by a Lease.
        let args = pod.containers[0].args.clone().unwrap_or_default();
        let strategy = spec.strategy.clone().unwrap().type_;
        if args.iter().any(|a| a == "--leader-elect") {
            assert_eq!(strategy.as_deref(), Some("RollingUpdate"), "{variant}");
            assert!(args.iter().any(|a| a.starts_with("--lease-duration=")), "{variant}");
        } else {
            assert_eq!(spec.replicas, Some(1), "{variant}");
            assert_eq!(strategy.as_deref(), Some("Recreate"), "{variant}: no two operators at once");
        }
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true), "{variant}");
        assert!(psc.run_as_user.is_some_and(|u| u != 0), "{variant}");
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault", "{variant}");
        assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.volumes.is_none(), "{variant}");
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{variant}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{variant}");
        assert_eq!(sc.privileged, None, "{variant}");
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]), "{variant}");
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault", "{variant}");

        // The probes hit the operator's own endpoints on the port it is told to listen on.
        let args = c.args.clone().unwrap();
        assert_eq!(args[0], "run", "{variant}");
        let addr: std::net::SocketAddr =
            args.iter().find_map(|a| a.strip_prefix("--metrics-addr=")).expect("--metrics-addr").parse().unwrap();
        let port = c.ports.as_ref().unwrap().iter().find(|p| p.name.as_deref() == Some("metrics")).unwrap();
        assert_eq!(port.container_port, i32::from(addr.port()), "{variant}");
        for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
            let get = probe.clone().unwrap().http_get.unwrap();
            assert_eq!(get.path.as_deref(), Some(path), "{variant}");
            assert_eq!(get.port, k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into()));
        }
        let env: BTreeMap<String, String> = c
            .env
            .iter()
            .flatten()
            .map(|e| {
                let field = e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.clone());
                (e.name.clone(), field.or(e.value.clone()).unwrap_or_default())
            })
            .collect();
        assert_eq!(env.get("POD_NAMESPACE").map(String::as_str), Some("metadata.namespace"), "{variant}");
        assert_eq!(
            env.get("CERTORDER_SOLVER_IMAGE"),
            c.image.as_ref(),
            "{variant}: solver Pods run the operator's image"
        );

        // The metrics Service selects the Pod and targets the named port.
        let service: Service = typed(of_kind(&objects, "Service").next().unwrap());
        let selector = service.spec.as_ref().unwrap().selector.clone().unwrap();
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)), "{variant}: {selector:?} vs {labels:?}");
        assert_eq!(spec.selector.match_labels.unwrap(), selector, "{variant}");
        let sport = &service.spec.unwrap().ports.unwrap()[0];
        assert_eq!(sport.name.as_deref(), Some("metrics"));
        assert_eq!(
            sport.target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into()))
        );
    }

    // The all-on values reach the Deployment.
    let objects = rendered("all-on");
    let deployment: Deployment = typed(of_kind(&objects, "Deployment").next().unwrap());
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    for arg in [
        "--metrics-addr=0.0.0.0:9090",
        "--log-format=json",
        "--log-level=info,certorder=debug",
        "--concurrency=4",
        "--watch-namespaces=team-a,team-b",
        "--dns-servers=10.0.0.10,10.0.0.11:5353",
        "--review-poll=30m",
    ] {
        assert!(args.iter().any(|a| a == arg), "{arg} missing from {args:?}");
    }
    assert_eq!(pod.containers[0].image.as_deref(), Some("registry.example.com/platform/certorder:0.1.0-test"));
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-cluster-critical"));
    assert_eq!(pod.service_account_name.as_deref(), Some("certorder-operator"));
    assert!(
        pod.tolerations.is_some()
            && pod.affinity.is_some()
            && pod.node_selector.is_some()
            && pod.image_pull_secrets.is_some()
    );
    let pdb: PodDisruptionBudget = typed(of_kind(&objects, "PodDisruptionBudget").next().unwrap());
    assert!(pdb.spec.unwrap().selector.unwrap().match_labels.is_some());
    let provider = of_kind(&objects, "ClusterCertificateProvider").next().unwrap();
    assert_eq!(provider["spec"]["local"]["review"], "Automatic");
    assert_eq!(provider["spec"]["local"]["caSecretRef"]["namespace"], RELEASE_NAMESPACE);

    // NOTES.txt tells the next command.
    let notes = std::fs::read_to_string(rendered_dir().join("default-notes.txt")).unwrap();
    assert!(notes.contains("kubectl -n certorder-system rollout status deployment/certorder"), "{notes}");
    assert!(notes.contains("kubectl get certificateorders -A -w"), "{notes}");
    let notes = std::fs::read_to_string(rendered_dir().join("namespaced-notes.txt")).unwrap();
    assert!(notes.contains("It watches orders in: team-a, team-b."), "{notes}");
}

// ---- CRDs --------------------------------------------------------------------------------------

#[test]
fn the_charts_crds_equal_the_generated_crds() {
    let dir = repo().join("charts/certorder/crds");
    let problems = certorder::crdgen::diff_dir(&dir).expect("charts/certorder/crds is readable");
    assert!(
        problems.is_empty(),
        "charts/certorder/crds/ differs from the CRDs the code generates:\n  {}\nregenerate both with:\n  {}\n  cargo run -p certorder -- crd --out-dir charts/certorder/crds",
        problems.join("\n  "),
        certorder::crdgen::REGENERATE_COMMAND
    );
    // And so equals crds/ (kept equal to the code by src/crdgen.rs's test), byte for byte.
    for file in certorder::crdgen::crds() {
        let top = std::fs::read_to_string(repo().join("crds").join(&file.file_name)).unwrap();
        let chart = std::fs::read_to_string(dir.join(&file.file_name)).unwrap();
        assert_eq!(top, chart, "{} differs between crds/ and charts/certorder/crds/", file.file_name);
    }
}

/// The rows of a kubectl table, each cell found under its column's header (empty cells included).
fn table(out: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = out.lines();
    let header = lines.next().expect("a header line");
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut at = 0;
    for word in header.split_whitespace() {
        let start = at + header[at..].find(word).unwrap();
        starts.push((start, word));
        at = start + word.len();
    }
    lines
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(i, (start, name))| {
                    let end = starts.get(i + 1).map_or(line.len(), |(s, _)| (*s).min(line.len()));
                    let cell = line.get((*start).min(line.len())..end).unwrap_or_default();
                    (name.to_string(), cell.trim().to_string())
                })
                .collect()
        })
        .collect()
}

// ---- kubectl against the testbed --------------------------------------------------------------

struct Kubectl<'a> {
    server: &'a ApiServer,
    home: tempfile::TempDir,
}

impl<'a> Kubectl<'a> {
    fn new(server: &'a ApiServer) -> Self {
        Kubectl { server, home: tempfile::tempdir().unwrap() }
    }

    /// Runs kubectl with the testbed's kubeconfig; returns (success, stdout, stderr).
    fn try_run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.server.kubeconfig_path())
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl on PATH");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn run(&self, args: &[&str]) -> String {
        let (ok, out, err) = tokio::task::block_in_place(|| self.try_run(args, None));
        assert!(ok, "kubectl {} failed:\n{err}\n{out}", args.join(" "));
        out
    }

    fn apply_stdin(&self, yaml: &str) -> String {
        let (ok, out, err) = tokio::task::block_in_place(|| self.try_run(&["apply", "-f", "-"], Some(yaml)));
        assert!(ok, "kubectl apply failed:\n{err}\n{out}\n---\n{yaml}");
        out
    }

    /// `kubectl apply -f DIR` of the CRDs, then waits until they are served.
    fn install_crds(&self, dir: &Path) {
        let out = self.run(&["apply", "-f", dir.to_str().unwrap()]);
        assert!(
            out.contains("customresourcedefinition.apiextensions.k8s.io/certificateorders.certorder.io created"),
            "{out}"
        );
        self.run(&[
            "wait",
            "--for=condition=established",
            "--timeout=20s",
            "crd/certificateorders.certorder.io",
            "crd/clustercertificateproviders.certorder.io",
        ]);
    }
}

/// prometheus-operator's ServiceMonitor CRD, reduced to what lets the testbed store one.
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_chart_applies_with_kubectl() {
    let server = ApiServer::start().await;
    let kubectl = Kubectl::new(&server);
    kubectl.install_crds(&repo().join("charts/certorder/crds"));
    kubectl.apply_stdin(SERVICE_MONITOR_CRD);
    kubectl.run(&["wait", "--for=condition=established", "--timeout=20s", "crd/servicemonitors.monitoring.coreos.com"]);
    for ns in [RELEASE_NAMESPACE, "team-a", "team-b"] {
        kubectl.apply_stdin(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"));
    }
    let mut applied = 0;
    for variant in VARIANTS {
        let path = rendered_dir().join(format!("{variant}.yaml"));
        let out = kubectl.run(&["apply", "-f", path.to_str().unwrap()]);
        let objects = rendered(variant);
        assert_eq!(out.lines().count(), objects.len(), "{variant}: one line per object:\n{out}");
        for o in &objects {
            let (api_version, _) = kind_of(o);
            let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let plural = match o["kind"].as_str().unwrap() {
                "ClusterCertificateProvider" => "clustercertificateproviders".to_string(),
                "PodDisruptionBudget" => "poddisruptionbudgets".to_string(),
                kind => format!("{}s", kind.to_lowercase()),
            };
            let stored = server
                .object(group, &plural, o["metadata"]["namespace"].as_str(), o["metadata"]["name"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{variant}: {} was not stored", name_of(o)));
            assert_eq!(stored["metadata"]["labels"], o["metadata"]["labels"], "{variant}: {}", name_of(o));
            applied += 1;
        }
    }
    // Each RBAC variant adds the three ClusterRoles for people (certorder-view, -edit, -approver).
    assert_eq!(applied, 13 + 17 + 15 + 2);
    // The stored default provider is what the CRD accepts (defaults applied by the server).
    let provider = server.object("certorder.io", "clustercertificateproviders", None, "local").unwrap();
    assert_eq!(provider["spec"]["local"]["caSecretRef"]["namespace"], RELEASE_NAMESPACE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_apply_with_kubectl_and_show_the_printer_columns() {
    let server = ApiServer::start().await;
    let kubectl = Kubectl::new(&server);
    kubectl.install_crds(&repo().join("crds"));
    // The namespace the chart installs into holds the UCloud example's credentials.
    kubectl.apply_stdin(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {RELEASE_NAMESPACE}\n"));
    let out = kubectl.run(&["apply", "-f", repo().join("examples").to_str().unwrap()]);
    for line in [
        "clustercertificateprovider.certorder.io/local created",
        "clustercertificateprovider.certorder.io/local-auto created",
        "certificateorder.certorder.io/api-example-com created",
        "certificateorder.certorder.io/example-com created",
        "certificateorder.certorder.io/shop-example-com created",
        "certificateorder.certorder.io/wildcard-example-com created",
        "certificateorder.certorder.io/www-example-org created",
        "secret/acme-confirmation-letter created",
        "clustercertificateprovider.certorder.io/ucloud created",
        "secret/ucloud-credentials created",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
    }

    // The short names `certorders` and `co`, and the plural, list the orders with the CRD's printer columns. No
    // controller runs here, so Phase and Expires are empty.
    for resource in ["certorders", "certificateorders", "co"] {
        let out = kubectl.run(&["get", resource, "-A"]);
        let rows = table(&out);
        assert_eq!(
            out.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["NAMESPACE", "NAME", "PHASE", "TYPE", "DOMAIN", "PROVIDER", "EXPIRES", "AGE"],
            "{out}"
        );
        let shown: BTreeSet<[&str; 7]> = rows
            .iter()
            .map(|r| ["NAMESPACE", "NAME", "PHASE", "TYPE", "DOMAIN", "PROVIDER", "EXPIRES"].map(|c| r[c].as_str()))
            .collect();
        let expected: BTreeSet<[&str; 7]> = [
            ["default", "api-example-com", "", "DV", "api.example.com", "ucloud", ""],
            ["default", "example-com", "", "DV", "example.com", "local-auto", ""],
            ["default", "shop-example-com", "", "OV", "shop.example.com", "local", ""],
            ["default", "wildcard-example-com", "", "DV", "*.example.com", "local-auto", ""],
            ["default", "www-example-org", "", "DV", "www.example.org", "local-auto", ""],
        ]
        .into_iter()
        .collect();
        assert!(expected.is_subset(&shown), "{out}");
    }

    let out = kubectl.run(&["get", "ccp"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "KIND", "READY", "NAMESPACES", "AGE"], "{out}");
    for provider in ["local", "local-auto", "ucloud"] {
        assert!(table(&out).iter().any(|r| r["NAME"] == provider), "{provider} not in:\n{out}");
    }

    // Applying again changes nothing; a Secret written with stringData is "configured" each time
    // (the server folds stringData into data, so kubectl always finds it to send again).
    let out = kubectl.run(&["apply", "-f", repo().join("examples").to_str().unwrap()]);
    assert!(out.lines().all(|l| l.ends_with(" unchanged") || l == "secret/ucloud-credentials configured"), "{out}");
}

/// The real `helm install` and `helm uninstall` (Helm's engine through helm-python-sdk) against the
/// testbed: the CRDs come from the chart's crds/ folder, every object of the release is created,
/// and uninstalling removes them all but the CRDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_and_uninstalls_the_chart() {
    let server = ApiServer::start().await;
    let kubectl = Kubectl::new(&server);
    // `--create-namespace` creates it with protobuf, which the testbed does not speak.
    kubectl.apply_stdin(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {RELEASE_NAMESPACE}\n"));
    let out = tokio::task::block_in_place(|| {
        Command::new("python3")
            .arg(repo().join(".ci/helm-check.py"))
            .arg("--install")
            .arg(server.kubeconfig_path())
            .env("HOME", kubectl.home.path())
            .output()
            .expect("python3 on PATH")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "helm install/uninstall failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("helm install certorder: deployed"), "{stdout}");
    assert!(stdout.contains("installed 13 objects"), "{stdout}");
    assert!(stdout.contains("helm uninstall certorder: uninstalled"), "{stdout}");
    for crd in ["certificateorders.certorder.io", "clustercertificateproviders.certorder.io"] {
        assert!(server.object("apiextensions.k8s.io", "customresourcedefinitions", None, crd).is_some(), "{crd} stays");
    }
    assert!(server.object("apps", "deployments", Some(RELEASE_NAMESPACE), "certorder").is_none());
    assert!(server.object("certorder.io", "clustercertificateproviders", None, "local").is_none());
}

// ---- the quickstart: the chart's Deployment runs the operator -----------------------------------

/// The operator process; killed when the test ends, however it ends.
struct Operator {
    child: std::process::Child,
    log: PathBuf,
}

impl Operator {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code of `GET path` on `addr`, or None when nothing answers.
fn http_status(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

async fn eventually<T>(what: &str, operator: &Operator, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; operator log:\n{}", operator.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The README's quickstart on the testbed: install the rendered chart (default values) with
/// kubectl, start the operator binary exactly as the chart's Deployment runs it, apply the OV
/// example against the chart's default provider, approve it with `certorder approve` and see the
/// TLS Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_deployment_runs_the_operator_through_the_quickstart() {
    let server = ApiServer::start().await;
    let dns = testbed::dns::TestDns::start(&["example.com"]).await.expect("test DNS");
    let kubectl = Kubectl::new(&server);
    kubectl.install_crds(&repo().join("charts/certorder/crds"));
    kubectl.apply_stdin(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {RELEASE_NAMESPACE}\n"));
    kubectl.run(&["apply", "-f", rendered_dir().join("default.yaml").to_str().unwrap()]);

    // The container as the chart renders it.
    let objects = rendered("default");
    let deployment: Deployment = typed(of_kind(&objects, "Deployment").next().unwrap());
    let container = deployment.spec.unwrap().template.spec.unwrap().containers.remove(0);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut args: Vec<String> = container
        .args
        .unwrap()
        .into_iter()
        // The only change: a free local port instead of the Pod's 0.0.0.0:8080.
        .map(|a| if a.starts_with("--metrics-addr=") { format!("--metrics-addr={metrics}") } else { a })
        .collect();
    // What operator.dnsServers and extraArgs would add: the test zone's server, shorter waits.
    args.extend(
        [
            format!("--dns-servers={}", dns.addr()),
            "--self-check-initial=200ms".into(),
            "--self-check-max=1s".into(),
            "--backoff-initial=200ms".into(),
            "--backoff-max=2s".into(),
            "--letter-poll=1s".into(),
        ]
        .into_iter(),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_certorder"));
    command.args(&args).env_clear().env("KUBECONFIG", server.kubeconfig_path());
    for env in container.env.unwrap() {
        let value = match env.value_from.and_then(|v| v.field_ref).map(|f| f.field_path) {
            Some(path) if path == "metadata.namespace" => RELEASE_NAMESPACE.to_string(),
            Some(path) if path == "metadata.name" => "certorder-5d9f8-abcde".to_string(),
            Some(path) => panic!("the test does not know the downward API field {path}"),
            None => env.value.unwrap_or_default(),
        };
        command.env(env.name, value);
    }
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-operator.log");
    let operator = Operator {
        child: command
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the certorder binary"),
        log,
    };

    // The liveness probe's endpoint answers.
    eventually("/healthz", &operator, || (http_status(metrics, "/healthz") == Some(200)).then_some(())).await;

    // The OV example, as the README's quickstart applies it.
    for file in ["examples/ov-confirmation-letter-secret.yaml", "examples/ov-order.yaml"] {
        kubectl.run(&["apply", "-f", repo().join(file).to_str().unwrap()]);
    }
    let phase = |server: &ApiServer| {
        server
            .object("certorder.io", "certificateorders", Some("default"), "shop-example-com")
            .and_then(|o| o["status"]["phase"].as_str().map(String::from))
    };
    eventually("OrganizationReview", &operator, || {
        (phase(&server).as_deref() == Some("OrganizationReview")).then_some(())
    })
    .await;
    // The chart's default provider, used by the order, becomes Ready; its CA is generated in the
    // release namespace.
    eventually("the default provider Ready", &operator, || {
        let p = server.object("certorder.io", "clustercertificateproviders", None, "local")?;
        let ready = p["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(())
    })
    .await;
    let ca = server.object("", "secrets", Some(RELEASE_NAMESPACE), "certorder-local-ca").expect("the CA Secret");
    assert_eq!(ca["type"], "kubernetes.io/tls");

    // Readiness follows the first reconcile.
    eventually("/readyz", &operator, || (http_status(metrics, "/readyz") == Some(200)).then_some(())).await;

    // `kubectl certorder approve` (the binary is the plugin).
    let out = Command::new(env!("CARGO_BIN_EXE_certorder"))
        .args(["approve", "shop-example-com", "-n", "default"])
        .env("KUBECONFIG", server.kubeconfig_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "approve: {}", String::from_utf8_lossy(&out.stderr));

    // The user creates the TXT records the status lists.
    let order = eventually("the challenges", &operator, || {
        let o = server.object("certorder.io", "certificateorders", Some("default"), "shop-example-com")?;
        (o["status"]["challenges"].as_array()?.len() == 2).then_some(o)
    })
    .await;
    for c in order["status"]["challenges"].as_array().unwrap() {
        dns.set_txt(c["target"].as_str().unwrap(), &[c["expectedValue"].as_str().unwrap()]).await.unwrap();
    }
    eventually("Issued", &operator, || (phase(&server).as_deref() == Some("Issued")).then_some(())).await;

    let secret = server.object("", "secrets", Some("default"), "shop-example-com-tls").expect("the TLS Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let out = kubectl.run(&["get", "certificateorders", "-n", "default"]);
    let row = table(&out).into_iter().find(|r| r["NAME"] == "shop-example-com").expect("the order's row");
    assert_eq!(
        (row["PHASE"].as_str(), row["TYPE"].as_str(), row["PROVIDER"].as_str()),
        ("Issued", "OV", "local"),
        "{out}"
    );
    assert!(!row["EXPIRES"].is_empty(), "{out}");
    assert_eq!(http_status(metrics, "/metrics"), Some(200));
}

// ---- the README ---------------------------------------------------------------------------------

/// Dotted paths of the schema's leaves: `image.repository`, `watchNamespaces`, `resources`.
fn value_paths(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    for (key, sub) in schema["properties"].as_object().into_iter().flatten() {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if sub["properties"].is_object() {
            value_paths(sub, &path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_chart_value_is_in_values_yaml_and_the_readme() {
    let chart = repo().join("charts/certorder");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart.join("values.schema.json")).unwrap()).unwrap();
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap()).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut paths = Vec::new();
    value_paths(&schema, "", &mut paths);
    paths.retain(|p| p != "global");
    assert!(paths.len() > 30, "{paths:?}");
    let mut problems = Vec::new();
    for path in &paths {
        if values.pointer(&format!("/{}", path.replace('.', "/"))).is_none() {
            problems.push(format!("{path} is in values.schema.json but not values.yaml"));
        }
        if !readme.contains(&format!("| `{path}` |")) {
            problems.push(format!("{path} is missing from the README's \"Chart values\" table"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The quickstart installs the chart the way NOTES.txt and the tests assume.
    assert!(readme.contains("helm install certorder ./charts/certorder -n certorder-system --create-namespace"));
}

// ---- the demo -----------------------------------------------------------------------------------

/// The README's first command, `cargo run --example demo -- --exit`, to completion: every order in
/// `examples/` is Issued (DNS orders through the test DNS, the HTTP order through the emulated
/// ingress, the OV order approved, the UCloud order through the USSL simulator) and it exits 0.
/// `cargo test` builds the example next to the test binaries; running it from there rather than
/// through a nested `cargo run` avoids waiting on the build directory's lock that this `cargo test`
/// holds.
#[test]
fn the_readme_demo_issues_every_example() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("cargo run --example demo -- --exit"), "the README no longer shows the demo command");
    let debug_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let demo = debug_dir.join("examples").join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(demo.exists(), "{} is missing: `cargo test` builds the examples (run the whole suite)", demo.display());
    let out = Command::new(&demo).arg("--exit").env("RUST_LOG", "warn").output().expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the demo failed ({}):\n{stdout}\n{stderr}", out.status);

    // Every order of examples/ is in the final `kubectl get certorders -A`, Issued.
    let mut orders = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for object in yaml_documents(&text) {
            if object["kind"] == "CertificateOrder" {
                orders.insert(name_of(&object).rsplit('/').next().unwrap().to_string());
            }
        }
    }
    assert!(orders.len() >= 5, "{orders:?}");
    let listing = stdout.split("$ kubectl get certorders -A\n").nth(1).expect("the final listing").to_string();
    let rows = table(listing.split("\n\n").next().unwrap());
    for order in &orders {
        let row = rows.iter().find(|r| &r["NAME"] == order).unwrap_or_else(|| panic!("{order} not listed:\n{stdout}"));
        assert_eq!(row["PHASE"], "Issued", "{order}:\n{stdout}");
        assert!(!row["EXPIRES"].is_empty(), "{order}:\n{stdout}");
    }
    // What a person watches: the records created, the URLs published, the approval.
    for shown in [
        "DNS: TXT _dnsauth.",
        "HTTP: http://www.example.org/.well-known/pki-validation/",
        "$ kubectl certorder approve shop-example-com -n default",
    ] {
        assert!(stdout.contains(shown), "{shown:?} not in:\n{stdout}");
    }
}

/// The README's command for the UCloud credentials, as written there (the `...` placeholders
/// filled in), against the testbed: the Secret holds the two keys the provider reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_credentials_command_creates_the_secret_the_provider_reads() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("kubectl create secret generic ucloud-credentials").expect("the README's command");
    let mut command = String::new();
    for line in readme[start..].lines() {
        command.push_str(line.trim_end_matches('\\').trim());
        command.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let command =
        command.replace("PublicKey=...", "PublicKey=pub-e2e").replace("PrivateKey=...", "PrivateKey=priv-e2e");
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    assert_eq!(args[..4], ["create", "secret", "generic", "ucloud-credentials"], "{command}");
    let server = ApiServer::start().await;
    let kubectl = Kubectl::new(&server);
    kubectl.run(&["create", "namespace", RELEASE_NAMESPACE]);
    kubectl.run(&args);
    let secret = server.object("", "secrets", Some(RELEASE_NAMESPACE), "ucloud-credentials").expect("the Secret");
    assert_eq!(secret["data"]["PublicKey"], "cHViLWUyZQ==", "{secret}");
    assert_eq!(secret["data"]["PrivateKey"], "cHJpdi1lMmU=", "{secret}");
}
