//! `/openapi/v3`: an index of group versions and, per group version, a document with a PATCH
//! operation (tagged with `x-kubernetes-group-version-kind` and declaring the `fieldValidation`
//! query parameter) on every resource path. That is what kubectl's `QueryParamVerifierV3` looks
//! for to decide that the server validates fields itself, so `kubectl apply` sends
//! `fieldValidation=Strict` instead of validating against an OpenAPI v2 schema client-side.
//!
//! Custom resources get their component schemas as kube-apiserver publishes them (the CRD's
//! `openAPIV3Schema` with `apiVersion`, `kind`, a `metadata` reference and
//! `x-kubernetes-group-version-kind`, and the list kind), with the `meta/v1` schemas they refer to,
//! which is what `kubectl explain` reads. Built-in kinds have none, so kubectl computes strategic
//! merge patches from its compiled-in types.
use serde_json::{Map, Value, json};

use super::registry::{Registry, ResourceInfo};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

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
    let mut schemas = Map::new();
    for r in reg.in_group_version(&group, &version).iter().filter(|r| r.is_custom()) {
        let (kind, list) = custom_resource_schemas(r);
        schemas.insert(rest_friendly_name(r, &r.kind), kind);
        schemas.insert(rest_friendly_name(r, &r.list_kind), list);
    }
    if !schemas.is_empty() {
        schemas.extend(meta_schemas());
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// kube-apiserver's name of a custom resource's component schema: the group reversed, the version
/// and the kind (`io.certorder.v1alpha1.CertificateOrder`).
fn rest_friendly_name(r: &ResourceInfo, kind: &str) -> String {
    let mut parts: Vec<&str> = r.group.split('.').rev().collect();
    parts.push(&r.version);
    parts.push(kind);
    parts.join(".")
}

fn schema_ref(name: &str, description: &str) -> Value {
    json!({"allOf": [{"$ref": format!("#/components/schemas/{name}")}], "description": description})
}

fn add_type_meta(schema: &mut Value) {
    schema["properties"]["apiVersion"] = json!({
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
    });
    schema["properties"]["kind"] = json!({
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
    });
}

/// The schemas of a custom resource's kind and list kind (apiextensions-apiserver's builder).
fn custom_resource_schemas(r: &ResourceInfo) -> (Value, Value) {
    let gvk = |kind: &str| json!([{"group": r.group, "version": r.version, "kind": kind}]);
    let mut kind = match r.schema() {
        Some(s) => {
            let mut s = s.clone();
            s["properties"]["metadata"] = schema_ref(
                OBJECT_META,
                "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            );
            add_type_meta(&mut s);
            s
        }
        None => json!({"type": "object"}),
    };
    kind["x-kubernetes-group-version-kind"] = gvk(&r.kind);
    let mut list = json!({
        "type": "object",
        "description": format!("{} is a list of {}", r.list_kind, r.kind),
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/api-conventions.md", r.plural),
                "items": {"$ref": format!("#/components/schemas/{}", rest_friendly_name(r, &r.kind))},
            },
            "metadata": schema_ref(LIST_META, "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"),
        },
        "x-kubernetes-group-version-kind": gvk(&r.list_kind),
    });
    add_type_meta(&mut list);
    (kind, list)
}

/// `ObjectMeta`, `ListMeta` and the schemas they refer to, from the k8s-openapi types.
fn meta_schemas() -> Map<String, Value> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<ObjectMeta>();
    generator.subschema_for::<ListMeta>();
    generator.take_definitions(true)
}
