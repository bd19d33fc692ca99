//! Subresources other than `status`: `scale` (autoscaling/v1 Scale over the replicas of a workload
//! or of a custom resource with `subresources.scale`), CertificateSigningRequest `approval` and Pod
//! `ephemeralcontainers` (writes that change only part of the object).
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Target};
use super::ops::{self, PatchKind, WriteOpts};
use super::registry::{KindInfo, ResourceInfo};
use super::schema::FieldError;
use super::smp;
use super::store::{ObjKey, Store};

/// Where a resource keeps what its Scale shows.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    spec_replicas: String,
    status_replicas: String,
    /// A label selector string (custom resources) or, for built-in kinds, `spec.selector`.
    selector: Option<String>,
}

/// The Scale paths of a resource, if it has a `scale` subresource.
pub fn scale_paths(ri: &ResourceInfo) -> Option<ScalePaths> {
    if !ri.has_subresource("scale") {
        return None;
    }
    let path = |v: &Value| v.as_str().map(|s| s.trim_start_matches('.').to_string());
    match &ri.kind_info {
        KindInfo::Custom(c) => {
            let s = c.scale.as_ref()?;
            Some(ScalePaths {
                spec_replicas: path(&s["specReplicasPath"])?,
                status_replicas: path(&s["statusReplicasPath"])?,
                selector: path(&s["labelSelectorPath"]),
            })
        }
        KindInfo::Builtin { .. } => Some(ScalePaths {
            spec_replicas: "spec.replicas".into(),
            status_replicas: "status.replicas".into(),
            selector: Some("spec.selector".into()),
        }),
    }
}

fn get_path<'a>(obj: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(obj, |cur, seg| &cur[seg])
}

fn set_path(obj: &mut Value, path: &str, v: Value) {
    let mut cur = obj;
    for seg in path.split('.') {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur.as_object_mut().expect("object").entry(seg).or_insert(Value::Null);
    }
    *cur = v;
}

/// `metav1.FormatLabelSelector` of a LabelSelector object, or the selector map of a
/// ReplicationController.
fn format_selector(sel: &Value) -> String {
    let Some(o) = sel.as_object() else { return sel.as_str().unwrap_or_default().to_string() };
    if !o.contains_key("matchLabels") && !o.contains_key("matchExpressions") {
        return o.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",");
    }
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let vals: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        });
    }
    if parts.is_empty() { String::new() } else { parts.join(",") }
}

/// The Scale of an object.
pub fn scale_of(paths: &ScalePaths, obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut meta = json!({"name": m["name"]});
    for f in ["namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if !m[f].is_null() {
            meta[f] = m[f].clone();
        }
    }
    let mut status = json!({"replicas": get_path(obj, &paths.status_replicas).as_i64().unwrap_or(0)});
    if let Some(sel) = &paths.selector {
        let s = format_selector(get_path(obj, sel));
        if !s.is_empty() {
            status["selector"] = json!(s);
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": get_path(obj, &paths.spec_replicas).as_i64().unwrap_or(0)},
        "status": status,
    })
}

/// Writes a new Scale (PUT, or a patch already applied to the current Scale) to the object: its
/// `spec.replicas` goes to the spec replicas path. Returns the object's new Scale.
pub fn write_scale(
    store: &mut Store,
    ri: &ResourceInfo,
    paths: &ScalePaths,
    key: &ObjKey,
    scale: Value,
    opts: &WriteOpts,
) -> ApiResult<Value> {
    let target = Target { group: &ri.group, resource: &ri.plural, name: &key.name };
    let old = store.get(key).ok_or_else(|| ApiError::not_found(target))?;
    let replicas = match &scale["spec"]["replicas"] {
        Value::Null => 0,
        v => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(
                "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas must be an integer",
            )
        })?,
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            &key.name,
            &[FieldError {
                reason: "FieldValueInvalid".into(),
                field: "spec.replicas".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            }],
        ));
    }
    let mut new = (*old).clone();
    set_path(&mut new, &paths.spec_replicas, json!(replicas));
    if let Some(rv) = scale["metadata"]["resourceVersion"].as_str().filter(|r| !r.is_empty()) {
        new["metadata"]["resourceVersion"] = json!(rv);
    }
    let w = ops::write_existing(store, ri, key, old, new, opts, false)?;
    Ok(scale_of(paths, &w.obj))
}

/// Applies a patch to the current Scale of an object and writes the result.
pub fn patch_scale(
    store: &mut Store,
    ri: &ResourceInfo,
    paths: &ScalePaths,
    key: &ObjKey,
    kind: PatchKind,
    body: &[u8],
    opts: &WriteOpts,
) -> ApiResult<Value> {
    let target = Target { group: &ri.group, resource: &ri.plural, name: &key.name };
    let old = store.get(key).ok_or_else(|| ApiError::not_found(target))?;
    let mut scale = scale_of(paths, &old);
    let decode = |b: &[u8]| -> ApiResult<Value> {
        serde_json::from_slice(b).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut scale, &p).map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
        }
        PatchKind::Merge => json_patch::merge(&mut scale, &decode(body)?),
        PatchKind::Strategic => {
            scale = smp::strategic_merge_patch(&scale, &decode(body)?, "autoscaling/v1", "Scale")
                .map_err(|e| ApiError::new(422, "Invalid", e))?;
        }
        PatchKind::Apply => {
            let applied: Value =
                serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if let Some(r) = applied["spec"].get("replicas") {
                scale["spec"]["replicas"] = r.clone();
            }
        }
    }
    // A patch carries no precondition unless it sets one.
    if scale["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"] {
        scale["metadata"]["resourceVersion"] = Value::Null;
    }
    write_scale(store, ri, paths, key, scale, opts)
}

/// What a write through `approval` or `ephemeralcontainers` keeps of the new object: kube-apiserver
/// takes only the CSR's `status.conditions` (with their times filled in), or only the Pod's
/// `spec.ephemeralContainers` (which may be added but neither changed nor removed).
pub fn partial_update(sub: &str, ri: &ResourceInfo, old: &Value, new: Value, now: &str) -> ApiResult<Value> {
    match sub {
        "approval" => {
            let mut out = new;
            out["spec"] = old["spec"].clone();
            let mut conditions = out["status"]["conditions"].clone();
            for c in conditions.as_array_mut().into_iter().flatten() {
                let before = old["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|o| o["type"] == c["type"] && o["status"] == c["status"]);
                for t in ["lastUpdateTime", "lastTransitionTime"] {
                    if c[t].is_null() {
                        c[t] = before.map(|b| b[t].clone()).filter(|v| !v.is_null()).unwrap_or_else(|| json!(now));
                    }
                }
            }
            out["status"] = old["status"].clone();
            if conditions.is_null() {
                if let Some(s) = out["status"].as_object_mut() {
                    s.remove("conditions");
                }
            } else {
                out["status"]["conditions"] = conditions;
            }
            Ok(out)
        }
        "ephemeralcontainers" => {
            let name = old["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let wanted = new["spec"]["ephemeralContainers"].clone();
            let before = old["spec"]["ephemeralContainers"].as_array().cloned().unwrap_or_default();
            let after = wanted.as_array().cloned().unwrap_or_default();
            let mut errs = Vec::new();
            for (i, c) in before.iter().enumerate() {
                let cname = c["name"].as_str().unwrap_or_default();
                match after.iter().find(|a| a["name"] == c["name"]) {
                    None => errs.push(FieldError {
                        reason: "FieldValueForbidden".into(),
                        field: format!("spec.ephemeralContainers[{i}]"),
                        message: format!("Forbidden: existing ephemeral containers \"{cname}\" may not be removed"),
                    }),
                    Some(a) if a != c => errs.push(FieldError {
                        reason: "FieldValueForbidden".into(),
                        field: format!("spec.ephemeralContainers[{i}]"),
                        message: format!("Forbidden: existing ephemeral containers \"{cname}\" may not be changed"),
                    }),
                    Some(_) => {}
                }
            }
            if !errs.is_empty() {
                return Err(ApiError::invalid(&ri.kind, &ri.group, &name, &errs));
            }
            let mut out = old.clone();
            out["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
            if wanted.is_null() {
                if let Some(s) = out["spec"].as_object_mut() {
                    s.remove("ephemeralContainers");
                }
            } else {
                out["spec"]["ephemeralContainers"] = wanted;
            }
            Ok(out)
        }
        _ => Ok(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_paths() {
        assert_eq!(format_selector(&json!({"matchLabels": {"app": "a"}})), "app=a");
        assert_eq!(
            format_selector(&json!({"matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}]})),
            "t in (x,y)"
        );
        assert_eq!(format_selector(&json!({"app": "rc"})), "app=rc");
        let mut o = json!({});
        set_path(&mut o, "spec.deep.replicas", json!(3));
        assert_eq!(o, json!({"spec": {"deep": {"replicas": 3}}}));
    }

    #[test]
    fn approval_takes_only_conditions() {
        let ri = super::super::registry::Registry::new()
            .get("certificates.k8s.io", "v1", "certificatesigningrequests")
            .unwrap();
        let old = json!({"metadata": {"name": "c"}, "spec": {"request": "x"}, "status": {"certificate": "Y"}});
        let new = json!({"metadata": {"name": "c"}, "spec": {"request": "changed"}, "status": {"certificate": "Z", "conditions": [{"type": "Approved", "status": "True"}]}});
        let out = partial_update("approval", &ri, &old, new, "2025-01-01T00:00:00Z").unwrap();
        assert_eq!(out["spec"]["request"], "x");
        assert_eq!(out["status"]["certificate"], "Y");
        assert_eq!(out["status"]["conditions"][0]["lastUpdateTime"], "2025-01-01T00:00:00Z");
    }
}
