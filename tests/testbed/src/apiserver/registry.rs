//! The kinds the server serves: built-in kinds registered from k8s-openapi types, and the resources
//! of established CustomResourceDefinitions.
use std::collections::HashMap;
use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Decodes a JSON object into the k8s-openapi type and encodes it again: what the built-in kind
/// keeps of the object (unknown fields are dropped), or the decoding error.
pub type RoundTrip = fn(&Value) -> Result<Value, String>;

fn roundtrip<T: Serialize + DeserializeOwned>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Built-in kind or custom resource.
#[derive(Debug, Clone)]
pub enum KindInfo {
    Builtin { roundtrip: RoundTrip },
    Custom(CustomInfo),
}

/// What a CRD says about one served version.
#[derive(Debug, Clone)]
pub struct CustomInfo {
    /// `metadata.name` of the CRD.
    pub crd_name: String,
    /// `openAPIV3Schema` of this version (shared: every write of the kind reads it).
    pub schema: Option<std::sync::Arc<Value>>,
    /// Where that schema's CEL rules are (`None`: it has none).
    pub rules: Option<std::sync::Arc<super::cel::RuleTree>>,
    /// `additionalPrinterColumns` of this version.
    pub printer_columns: Vec<Value>,
    /// `subresources.scale` of this version (`specReplicasPath`, `statusReplicasPath`,
    /// `labelSelectorPath`).
    pub scale: Option<Box<Value>>,
    /// `selectableFields[].jsonPath` of this version, as field selector labels (`spec.color`).
    pub selectable_fields: Box<[String]>,
}

/// One served resource (a group/version/plural).
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    pub kind_info: KindInfo,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
    /// Key of the storage shared by every version of the resource: `plural.group`.
    pub fn storage_key(&self) -> String {
        storage_key(&self.group, &self.plural)
    }
    pub fn is_custom(&self) -> bool {
        matches!(self.kind_info, KindInfo::Custom(_))
    }
    pub fn schema(&self) -> Option<&Value> {
        match &self.kind_info {
            KindInfo::Custom(c) => c.schema.as_deref(),
            KindInfo::Builtin { .. } => None,
        }
    }
    /// The verbs kube-apiserver serves for the resource (virtual kinds serve only some).
    pub fn verbs(&self) -> Vec<&'static str> {
        match (self.group.as_str(), self.plural.as_str()) {
            ("authentication.k8s.io", "tokenreviews" | "selfsubjectreviews") => vec!["create"],
            ("", "componentstatuses") => vec!["get", "list"],
            _ => vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }
    }

    /// The subresources served for the resource, as discovery lists them.
    pub fn subresources(&self) -> Vec<Subresource> {
        let sub = |name: &'static str, api_version: &str, kind: &str, verbs: &[&'static str]| Subresource {
            name,
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            verbs: verbs.to_vec(),
        };
        let rw: &[&'static str] = &["get", "patch", "update"];
        let mut out = Vec::new();
        if self.status_subresource {
            out.push(sub("status", &self.api_version(), &self.kind, rw));
        }
        let scale = match &self.kind_info {
            KindInfo::Custom(c) => c.scale.is_some(),
            KindInfo::Builtin { .. } => matches!(
                (self.group.as_str(), self.plural.as_str()),
                ("apps", "deployments" | "replicasets" | "statefulsets") | ("", "replicationcontrollers")
            ),
        };
        if scale {
            out.push(sub("scale", "autoscaling/v1", "Scale", rw));
        }
        match (self.group.as_str(), self.plural.as_str()) {
            ("certificates.k8s.io", "certificatesigningrequests") => {
                out.push(sub("approval", &self.api_version(), &self.kind, rw))
            }
            ("", "pods") => out.push(sub("ephemeralcontainers", "v1", "Pod", rw)),
            ("", "serviceaccounts") => out.push(sub("token", "authentication.k8s.io/v1", "TokenRequest", &["create"])),
            _ => {}
        }
        out
    }

    /// Whether `name` is a subresource the server implements for this resource.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources().iter().any(|s| s.name == name)
    }
}

/// A subresource of a served resource (`status`, `scale`, ...), with the kind it answers.
#[derive(Debug, Clone)]
pub struct Subresource {
    pub name: &'static str,
    pub api_version: String,
    pub kind: String,
    pub verbs: Vec<&'static str>,
}

pub fn storage_key(group: &str, plural: &str) -> String {
    match (group, plural) {
        // one storage for both Event APIs (see events.rs)
        ("events.k8s.io", "events") => plural.to_string(),
        ("", _) => plural.to_string(),
        _ => format!("{plural}.{group}"),
    }
}

/// A stored object as `api_version` serves it: Events converted between their two APIs, custom
/// resources (whose versions share storage) with their apiVersion replaced.
pub fn present(obj: &Arc<Value>, api_version: &str) -> Arc<Value> {
    if obj["apiVersion"].as_str() == Some(api_version) {
        return obj.clone();
    }
    if let Some(v) = super::events::to_version(obj, api_version) {
        return Arc::new(v);
    }
    let mut o = (**obj).clone();
    o["apiVersion"] = Value::from(api_version);
    Arc::new(o)
}

/// Maps a k8s-openapi scope type to "namespaced or not".
pub trait ScopeFlag {
    const NAMESPACED: bool;
}
impl ScopeFlag for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl ScopeFlag for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn builtin<T>(status: bool) -> ResourceInfo
where
    T: k8s_openapi::Resource + k8s_openapi::ListableResource + Serialize + DeserializeOwned,
    T::Scope: ScopeFlag,
{
    let plural = T::URL_PATH_SEGMENT.to_string();
    let (short_names, categories) = extra_names(T::GROUP, &plural);
    ResourceInfo {
        group: T::GROUP.to_string(),
        version: T::VERSION.to_string(),
        kind: T::KIND.to_string(),
        list_kind: T::LIST_KIND.to_string(),
        singular: T::KIND.to_lowercase(),
        plural,
        namespaced: <T::Scope as ScopeFlag>::NAMESPACED,
        short_names,
        categories,
        status_subresource: status,
        kind_info: KindInfo::Builtin { roundtrip: roundtrip::<T> },
    }
}

/// A kind kube-apiserver serves without storing it (reviews, component statuses): no list kind of
/// its own unless listable, no status subresource.
fn virtual_kind<T>(list_kind: &str) -> ResourceInfo
where
    T: k8s_openapi::Resource + Serialize + DeserializeOwned,
    T::Scope: ScopeFlag,
{
    ResourceInfo {
        group: T::GROUP.to_string(),
        version: T::VERSION.to_string(),
        kind: T::KIND.to_string(),
        list_kind: list_kind.to_string(),
        singular: T::KIND.to_lowercase(),
        plural: T::URL_PATH_SEGMENT.to_string(),
        namespaced: <T::Scope as ScopeFlag>::NAMESPACED,
        short_names: extra_names(T::GROUP, T::URL_PATH_SEGMENT).0,
        categories: Vec::new(),
        status_subresource: false,
        kind_info: KindInfo::Builtin { roundtrip: roundtrip::<T> },
    }
}

/// Short names and categories are not in the OpenAPI types; these are kube-apiserver's.
fn extra_names(group: &str, plural: &str) -> (Vec<String>, Vec<String>) {
    let short: &[&str] = match (group, plural) {
        ("", "namespaces") => &["ns"],
        ("", "configmaps") => &["cm"],
        ("", "services") => &["svc"],
        ("", "endpoints") => &["ep"],
        ("", "pods") => &["po"],
        ("", "serviceaccounts") => &["sa"],
        ("", "events") => &["ev"],
        ("events.k8s.io", "events") => &["ev"],
        ("", "nodes") => &["no"],
        ("", "componentstatuses") => &["cs"],
        ("", "persistentvolumes") => &["pv"],
        ("", "persistentvolumeclaims") => &["pvc"],
        ("", "replicationcontrollers") => &["rc"],
        ("", "resourcequotas") => &["quota"],
        ("", "limitranges") => &["limits"],
        ("apps", "deployments") => &["deploy"],
        ("apps", "replicasets") => &["rs"],
        ("apps", "statefulsets") => &["sts"],
        ("apps", "daemonsets") => &["ds"],
        ("batch", "cronjobs") => &["cj"],
        ("autoscaling", "horizontalpodautoscalers") => &["hpa"],
        ("networking.k8s.io", "ingresses") => &["ing"],
        ("networking.k8s.io", "networkpolicies") => &["netpol"],
        ("policy", "poddisruptionbudgets") => &["pdb"],
        ("apiextensions.k8s.io", "customresourcedefinitions") => &["crd", "crds"],
        ("storage.k8s.io", "storageclasses") => &["sc"],
        ("scheduling.k8s.io", "priorityclasses") => &["pc"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["csr"],
        _ => &[],
    };
    let categories: &[&str] = match plural {
        "pods"
        | "services"
        | "replicationcontrollers"
        | "deployments"
        | "replicasets"
        | "statefulsets"
        | "daemonsets"
        | "jobs"
        | "cronjobs"
        | "horizontalpodautoscalers" => &["all"],
        "customresourcedefinitions"
        | "validatingwebhookconfigurations"
        | "mutatingwebhookconfigurations"
        | "apiservices" => &["api-extensions"],
        _ => &[],
    };
    (short.iter().map(|s| s.to_string()).collect(), categories.iter().map(|s| s.to_string()).collect())
}

/// Registers k8s-openapi types: `builtins![status: core::v1::Pod, ...; plain: core::v1::ConfigMap, ...]`
/// (`status` marks kinds with a status subresource).
macro_rules! builtins {
    (status: $($s:path),* ; plain: $($p:path),* $(,)?) => {
        vec![$(builtin::<$s>(true),)* $(builtin::<$p>(false),)*]
    };
}

fn builtin_resources() -> Vec<ResourceInfo> {
    use k8s_openapi::api::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
    let mut all = builtins![
        status:
            core::v1::Namespace, core::v1::Service, core::v1::Pod, core::v1::Node,
            core::v1::PersistentVolume, core::v1::PersistentVolumeClaim, core::v1::ReplicationController,
            core::v1::ResourceQuota,
            apps::v1::Deployment, apps::v1::ReplicaSet, apps::v1::StatefulSet, apps::v1::DaemonSet,
            batch::v1::Job, batch::v1::CronJob,
            autoscaling::v2::HorizontalPodAutoscaler,
            networking::v1::Ingress,
            policy::v1::PodDisruptionBudget,
            apiextensions::CustomResourceDefinition,
            apiregistration::APIService,
            admissionregistration::v1::ValidatingAdmissionPolicy,
            certificates::v1::CertificateSigningRequest,
            storage::v1::VolumeAttachment;
        plain:
            core::v1::ConfigMap, core::v1::Secret, core::v1::Endpoints, core::v1::ServiceAccount,
            core::v1::Event, core::v1::LimitRange, core::v1::PodTemplate,
            apps::v1::ControllerRevision,
            coordination::v1::Lease,
            events::v1::Event,
            networking::v1::IngressClass, networking::v1::NetworkPolicy,
            rbac::v1::ClusterRole, rbac::v1::ClusterRoleBinding, rbac::v1::Role, rbac::v1::RoleBinding,
            admissionregistration::v1::ValidatingWebhookConfiguration,
            admissionregistration::v1::MutatingWebhookConfiguration,
            admissionregistration::v1::ValidatingAdmissionPolicyBinding,
            storage::v1::StorageClass, storage::v1::CSIDriver, storage::v1::CSINode,
            scheduling::v1::PriorityClass,
            discovery::v1::EndpointSlice,
            node::v1::RuntimeClass,
    ];
    all.push(virtual_kind::<core::v1::ComponentStatus>("ComponentStatusList"));
    all.push(virtual_kind::<authentication::v1::TokenReview>(""));
    all.push(virtual_kind::<authentication::v1::SelfSubjectReview>(""));
    all
}

/// Every served resource, in kube-apiserver's group order (core first, then by registration).
#[derive(Debug, Clone)]
pub struct Registry {
    resources: Vec<Arc<ResourceInfo>>,
    by_gvr: HashMap<(String, String, String), Arc<ResourceInfo>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let mut r = Registry { resources: Vec::new(), by_gvr: HashMap::new() };
        for info in builtin_resources() {
            r.add(info);
        }
        r
    }

    fn add(&mut self, info: ResourceInfo) {
        let info = Arc::new(info);
        self.by_gvr.insert((info.group.clone(), info.version.clone(), info.plural.clone()), info.clone());
        self.resources.push(info);
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.by_gvr.get(&(group.to_string(), version.to_string(), plural.to_string())).cloned()
    }

    pub fn resources(&self) -> &[Arc<ResourceInfo>] {
        &self.resources
    }

    /// The resource of a kind in a group version (used for owner references and apply).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.resources.iter().find(|r| r.kind == kind && r.api_version() == api_version).cloned()
    }

    /// Groups with their versions, the preferred (first registered / CRD's first served) first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.resources {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, vs)) => {
                    if !vs.contains(&r.version) {
                        vs.push(r.version.clone())
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.resources.iter().filter(|r| r.group == group && r.version == version).cloned().collect()
    }

    /// Serves the versions of a CRD (replacing what it served before).
    pub fn set_crd(&mut self, crd: &Value) {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
        self.remove_crd(&name);
        let spec = &crd["spec"];
        let names = &spec["names"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        let kind = names["kind"].as_str().unwrap_or_default().to_string();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
        };
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["served"] != Value::Bool(true) {
                continue;
            }
            let info = ResourceInfo {
                group: group.clone(),
                version: v["name"].as_str().unwrap_or_default().to_string(),
                kind: kind.clone(),
                list_kind: names["listKind"].as_str().map(String::from).unwrap_or_else(|| format!("{kind}List")),
                plural: plural.clone(),
                singular: names["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase()),
                namespaced: spec["scope"] == "Namespaced",
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status_subresource: v["subresources"]["status"].is_object(),
                kind_info: KindInfo::Custom(CustomInfo {
                    crd_name: name.clone(),
                    schema: v["schema"]["openAPIV3Schema"]
                        .as_object()
                        .map(|o| std::sync::Arc::new(Value::Object(o.clone()))),
                    rules: super::cel::RuleTree::of(&v["schema"]["openAPIV3Schema"]).map(std::sync::Arc::new),
                    printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
                    scale: v["subresources"]["scale"].as_object().map(|o| Box::new(Value::Object(o.clone()))),
                    selectable_fields: v["selectableFields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f["jsonPath"].as_str())
                        .map(|p| p.trim_start_matches('.').to_string())
                        .collect(),
                }),
            };
            self.add(info);
        }
    }

    pub fn remove_crd(&mut self, crd_name: &str) {
        let is_it = |r: &ResourceInfo| matches!(&r.kind_info, KindInfo::Custom(c) if c.crd_name == crd_name);
        self.resources.retain(|r| !is_it(r));
        self.by_gvr.retain(|_, r| !is_it(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_come_from_the_types() {
        let r = Registry::new();
        let d = r.get("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert!(d.namespaced && d.status_subresource);
        assert_eq!(d.short_names, vec!["deploy"]);
        let ns = r.get("", "v1", "namespaces").unwrap();
        assert!(!ns.namespaced);
        assert_eq!(r.get("", "v1", "configmaps").unwrap().list_kind, "ConfigMapList");
        let events = r.get("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(events.storage_key(), r.get("", "v1", "events").unwrap().storage_key());
        assert_eq!(r.groups()[0].0, "");
    }

    #[test]
    fn roundtrip_drops_unknown_fields() {
        let r = Registry::new();
        let cm = r.get("", "v1", "configmaps").unwrap();
        let KindInfo::Builtin { roundtrip } = cm.kind_info else { panic!() };
        let out = roundtrip(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}, "bogus": 1})).unwrap();
        assert!(out.get("bogus").is_none());
        assert_eq!(out["data"]["k"], "v");
    }
}
