//! `/openapi/v3`: an index of group versions and, per group version, a document with a PATCH
//! operation (tagged with `x-kubernetes-group-version-kind` and declaring the `fieldValidation`
//! query parameter) on every resource path. That is what kubectl's `QueryParamVerifierV3` looks
//! for to decide that the server validates fields itself, so `kubectl apply` sends
//! `fieldValidation=Strict` instead of validating against an OpenAPI v2 schema client-side.
//! Component schemas are left empty, so kubectl computes strategic merge patches from its
//! compiled-in types.
use serde_json::{Map, Value, json};

use super::registry::Registry;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// A stable hash of the served resources, so kubectl's OpenAPI cache notices new CRDs.
fn hash(reg: &Registry, group: &str, version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in reg.in_group_version(group, version) {
        (&r.plural, &r.kind, r.namespaced, r.status_subresource).hash(&mut h);
        if let Some(s) = r.schema() {
            s.to_string().hash(&mut h);
        }
    }
    format!("{:016X}", h.finish())
}

pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let p = gv_path(&g, &v);
            paths
                .insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(reg, &g, &v))}));
        }
    }
    json!({"paths": paths})
}

/// The document of `api/v1` or `apis/{group}/{version}`.
pub fn document(reg: &Registry, path: &str) -> Option<Value> {
    let (group, version) = match path.split('/').collect::<Vec<_>>()[..] {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return None,
    };
    let resources = reg.in_group_version(&group, &version);
    if resources.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ]);
    for r in resources {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let base = format!("/{}", gv_path(&group, &version));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        let op = |id: &str| {
            json!({
                "operationId": format!("patch{}{}", id, r.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "requestBody": {"content": {
                    "application/apply-patch+yaml": {"schema": {"type": "object"}},
                    "application/json-patch+json": {"schema": {"type": "object"}},
                    "application/merge-patch+json": {"schema": {"type": "object"}},
                    "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
                }, "required": true},
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(item.clone(), json!({"patch": op("")}));
        if r.status_subresource {
            paths.insert(format!("{item}/status"), json!({"patch": op("Status")}));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
