//! Aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1): `/api` and `/apis` answer one
//! `APIGroupDiscoveryList` with every group, version, resource and subresource when the client asks
//! for it in `Accept` (kubectl and kube-rs do), instead of one request per group version.
use serde_json::{Map, Value, json};

use super::registry::{Registry, ResourceInfo};

/// The `Content-Type` of an aggregated discovery answer in `version` (`v2` or `v2beta1`).
pub fn content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

fn gvk(api_version: &str, kind: &str) -> Value {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    json!({"group": group, "version": version, "kind": kind})
}

fn resource(r: &ResourceInfo) -> Value {
    let mut v = Map::new();
    v.insert("resource".into(), json!(r.plural));
    v.insert("responseKind".into(), gvk(&r.api_version(), &r.kind));
    v.insert("scope".into(), json!(if r.namespaced { "Namespaced" } else { "Cluster" }));
    v.insert("singularResource".into(), json!(r.singular));
    v.insert("verbs".into(), json!(r.verbs()));
    if !r.short_names.is_empty() {
        v.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        v.insert("categories".into(), json!(r.categories));
    }
    let subs: Vec<Value> = r
        .subresources()
        .iter()
        .map(|s| json!({"subresource": s.name, "responseKind": gvk(&s.api_version, &s.kind), "verbs": s.verbs}))
        .collect();
    if !subs.is_empty() {
        v.insert("subresources".into(), json!(subs));
    }
    Value::Object(v)
}

/// The `APIGroupDiscoveryList` of the core group (`/api`, `core` true) or of every named group
/// (`/apis`), in apidiscovery `version`.
pub fn document(reg: &Registry, core: bool, version: &str) -> Value {
    let items: Vec<Value> = reg
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let mut rs = reg.in_group_version(&group, v);
                    rs.sort_by(|a, b| a.plural.cmp(&b.plural));
                    let resources: Vec<Value> = rs.iter().map(|r| resource(r)).collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !group.is_empty() {
                meta["name"] = json!(group);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_groups() {
        let reg = Registry::new();
        let core = document(&reg, true, "v2");
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let v1 = &core["items"][0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        let pods = v1["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["responseKind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(pods["subresources"].as_array().unwrap().iter().any(|s| s["subresource"] == "status"));
        let apis = document(&reg, false, "v2beta1");
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let apps = apis["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
        let deploy = &apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        let scale = deploy["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale").unwrap();
        assert_eq!(scale["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
    }
}
