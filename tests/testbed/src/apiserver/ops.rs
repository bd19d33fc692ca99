//! The write paths (create, update, patch, apply, delete) with kube-apiserver's semantics, run
//! while holding the store lock.
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult, Target};
use super::registry::{KindInfo, ResourceInfo};
use super::schema::FieldError;
use super::store::{Obj, ObjKey, Store};
use super::{cel, crd, events, schema, smp, ssa};

/// `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> ApiResult<Self> {
        match s {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(o) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {o}, supported values are: Ignore, Warn, Strict"
            ))),
        }
    }
}

/// Options of a write request.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub field_manager: String,
    pub validation: FieldValidation,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<String>,
    pub force: bool,
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct Written {
    pub obj: Obj,
    pub created: bool,
    /// Warnings for the `Warning` header (unknown fields dropped under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A stored object in the version of the request (Events are stored in their core form).
fn in_version(ri: &ResourceInfo, obj: Obj) -> Obj {
    super::registry::present(&obj, &ri.api_version())
}

fn target<'a>(ri: &'a ResourceInfo, name: &'a str) -> Target<'a> {
    Target { group: &ri.group, resource: &ri.plural, name }
}

pub fn key(ri: &ResourceInfo, namespace: Option<&str>, name: &str) -> ObjKey {
    ObjKey {
        storage: ri.storage_key(),
        namespace: if ri.namespaced { namespace.unwrap_or_default().to_string() } else { String::new() },
        name: name.to_string(),
    }
}

fn types(ri: &ResourceInfo) -> ssa::TypeInfo {
    let schema = match &ri.kind_info {
        KindInfo::Custom(c) => c.schema.clone(),
        KindInfo::Builtin { .. } => None,
    };
    ssa::TypeInfo { schema, api_version: ri.api_version(), kind: ri.kind.clone() }
}

fn tracks_generation(ri: &ResourceInfo) -> bool {
    ri.is_custom() || ri.status_subresource
}

fn is_crd(ri: &ResourceInfo) -> bool {
    ri.group == "apiextensions.k8s.io" && ri.plural == "customresourcedefinitions"
}

fn is_namespace(ri: &ResourceInfo) -> bool {
    ri.group.is_empty() && ri.plural == "namespaces"
}

fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("object")
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Checks `apiVersion`/`kind` of a request body and fills them in when absent.
fn check_type(ri: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let av = ri.api_version();
    match obj["apiVersion"].as_str() {
        None | Some("") => obj["apiVersion"] = json!(av),
        Some(v) if v == av => {}
        // another served version of the same resource (custom resources share storage)
        Some(v) if ri.is_custom() && v.starts_with(&format!("{}/", ri.group)) => obj["apiVersion"] = json!(av),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({av})"
            )));
        }
    }
    match obj["kind"].as_str() {
        None | Some("") => obj["kind"] = json!(ri.kind),
        Some(k) if k == ri.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                ri.kind
            )));
        }
    }
    Ok(())
}

fn valid_name(ri: &ResourceInfo, name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('%') {
        return Some(format!("may not contain '/' or '%' or be '.' or '..': \"{name}\""));
    }
    // RBAC names are path segments (e.g. "system:controller"); everything else is a DNS subdomain.
    if ri.group == "rbac.authorization.k8s.io" {
        return None;
    }
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars || !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Some(format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ));
    }
    None
}

/// Paths present (non-null) in `orig` but absent from `kept`.
fn dropped_fields(orig: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, kept) {
        (Value::Object(o), Value::Object(k)) => {
            for (name, v) in o {
                let p = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                match k.get(name) {
                    None if !v.is_null() => out.push(p),
                    Some(kv) => dropped_fields(v, kv, &p, out),
                    None => {}
                }
            }
        }
        (Value::Array(o), Value::Array(k)) if o.len() == k.len() => {
            for (i, (a, b)) in o.iter().zip(k).enumerate() {
                dropped_fields(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn unknown_fields_answer(ri: &ResourceInfo, unknown: &[String], v: FieldValidation) -> ApiResult<Vec<String>> {
    match v {
        FieldValidation::Strict if !unknown.is_empty() => {
            let list: Vec<String> = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
            Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                ri.kind,
                ri.version,
                ri.kind,
                list.join(", ")
            )))
        }
        FieldValidation::Warn => Ok(unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect()),
        _ => Ok(Vec::new()),
    }
}

/// The stored object `old` with the `status` (and the managedFields, when it has them) of a
/// write to the status subresource, `new`: the rest of the write is ignored. Neither is copied
/// from `old` only to be replaced; each takes the place of the old one.
fn with_status_of(old: &Value, mut new: Value) -> Value {
    let mut status = new.as_object_mut().and_then(|o| o.remove("status"));
    let mut managed_fields =
        new.get_mut("metadata").and_then(Value::as_object_mut).and_then(|m| m.remove("managedFields"));
    let mut object = serde_json::Map::new();
    for (key, value) in old.as_object().into_iter().flatten() {
        match (key.as_str(), value) {
            ("status", _) => {
                if let Some(s) = status.take() {
                    object.insert(key.clone(), s);
                }
            }
            ("metadata", Value::Object(meta)) if managed_fields.is_some() => {
                let mut copy = serde_json::Map::new();
                for (field, v) in meta {
                    let v = match field.as_str() {
                        "managedFields" => managed_fields.take().unwrap_or_default(),
                        _ => v.clone(),
                    };
                    copy.insert(field.clone(), v);
                }
                if let Some(mf) = managed_fields.take() {
                    copy.insert("managedFields".into(), mf);
                }
                object.insert(key.clone(), Value::Object(copy));
            }
            _ => {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(s) = status {
        object.insert("status".into(), s);
    }
    Value::Object(object)
}

/// Decoding, pruning, defaulting and validation of a new object state (`old` on updates).
fn admit(ri: &ResourceInfo, obj: &mut Value, old: Option<&Value>, opts: &WriteOpts) -> ApiResult<Vec<String>> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let warnings = match &ri.kind_info {
        KindInfo::Builtin { roundtrip } => {
            if ri.group.is_empty() && ri.kind == "Secret" {
                fold_string_data(obj);
                // kube-apiserver's defaulting (protobuf bodies from client-go carry `type: ""`)
                if obj["type"].as_str().is_none_or(str::is_empty) {
                    obj["type"] = json!("Opaque");
                }
            }
            if ri.group == "networking.k8s.io" && ri.kind == "Ingress" {
                super::ingress_admission::check(obj).map_err(ApiError::bad_request)?;
            }
            let kept = roundtrip(obj).map_err(|e| {
                ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: {e}",
                    ri.kind, ri.version, ri.kind
                ))
            })?;
            let mut unknown = Vec::new();
            dropped_fields(obj, &kept, "", &mut unknown);
            *obj = kept;
            unknown_fields_answer(ri, &unknown, opts.validation)?
        }
        KindInfo::Custom(c) => {
            let mut warnings = Vec::new();
            if let Some(s) = &c.schema {
                // A write to the status subresource keeps all but `status` as stored (see
                // `write_existing`): kube-apiserver prunes, defaults and validates only `status`,
                // by its own schema, and runs the rules of the whole object.
                let status_schema = match opts.subresource.as_deref() {
                    Some("status") => schema::property_schema(s, "status"),
                    _ => None,
                };
                let errs = match status_schema {
                    Some(ss) => {
                        match obj.get_mut("status") {
                            None => {}
                            Some(status) if status.is_null() => match schema::defaulted_null(ss) {
                                Some(value) => {
                                    *status = value;
                                    schema::apply_defaults_at(ss, status);
                                }
                                None => {
                                    obj.as_object_mut().map(|o| o.remove("status"));
                                }
                            },
                            Some(status) => {
                                let unknown = schema::prune_at(ss, status, ".status");
                                warnings = unknown_fields_answer(ri, &unknown, opts.validation)?;
                                schema::apply_defaults_at(ss, status);
                            }
                        }
                        cel::validate_status_write(s, ss, c.rules.as_deref(), obj, old)
                    }
                    None => {
                        let unknown = schema::prune(s, obj);
                        warnings = unknown_fields_answer(ri, &unknown, opts.validation)?;
                        schema::apply_defaults(s, obj);
                        cel::validate_object(s, c.rules.as_deref(), obj, old)
                    }
                };
                if !errs.is_empty() {
                    return Err(ApiError::invalid(&ri.kind, &ri.group, &name, &errs));
                }
            }
            warnings
        }
    };
    let errs = label_errors(&obj["metadata"]["labels"]);
    if !errs.is_empty() {
        return Err(ApiError::invalid(&ri.kind, &ri.group, &name, &errs));
    }
    if is_crd(ri) {
        let errs = crd::validate(obj);
        if !errs.is_empty() {
            return Err(ApiError::invalid(&ri.kind, &ri.group, &name, &errs));
        }
        if opts.subresource.is_none() {
            crd::set_status(obj, old, &now());
        }
    }
    Ok(warnings)
}

/// kube-apiserver's `ValidateLabels` for every object: each value at most 63 characters of
/// `[A-Za-z0-9_.-]`, beginning and ending with an alphanumeric (or empty); the key's name part the
/// same, with an optional DNS-subdomain prefix and '/'.
fn label_errors(labels: &Value) -> Vec<FieldError> {
    fn qualified_part(s: &str) -> bool {
        let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        s.len() <= 63
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && alnum(s.chars().next())
            && alnum(s.chars().last())
    }
    let Some(labels) = labels.as_object() else { return Vec::new() };
    let mut errors = Vec::new();
    for (key, value) in labels {
        let name = key.rsplit_once('/').map_or(key.as_str(), |(_, n)| n);
        if !qualified_part(name) {
            errors.push(FieldError::invalid(
                "metadata.labels",
                &json!(key),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ));
        }
        let text = value.as_str().unwrap_or_default();
        if text.len() > 63 {
            errors.push(FieldError::invalid("metadata.labels", value, "must be no more than 63 characters"));
        } else if !text.is_empty() && !qualified_part(text) {
            errors.push(FieldError::invalid(
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ));
        }
    }
    errors
}

/// A Secret's `stringData` is write-only: kube-apiserver merges it into `data` (base64, taking
/// precedence) and never stores it.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        obj["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}{suffix}")
}

/// Creates an object. `managed` is true when server-side apply already set `managedFields`.
pub fn create(
    store: &mut Store,
    ri: &ResourceInfo,
    namespace: Option<&str>,
    mut obj: Value,
    opts: &WriteOpts,
    managed: bool,
) -> ApiResult<Written> {
    check_type(ri, &mut obj)?;
    let m = meta(&mut obj);
    if ri.namespaced {
        let ns = namespace.unwrap_or_default();
        match m.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
        m.insert("namespace".into(), json!(ns));
    } else {
        m.remove("namespace");
    }
    let mut name = m.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if name.is_empty() {
        match m.get("generateName").and_then(Value::as_str) {
            Some(p) if !p.is_empty() => {
                name = generate_name(p);
                m.insert("name".into(), json!(name));
            }
            _ => {
                return Err(ApiError::invalid(
                    &ri.kind,
                    &ri.group,
                    "",
                    &[FieldError {
                        reason: "FieldValueRequired".into(),
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                    }],
                ));
            }
        }
    }
    if let Some(msg) = valid_name(ri, &name) {
        return Err(ApiError::invalid(
            &ri.kind,
            &ri.group,
            &name,
            &[FieldError { reason: "FieldValueInvalid".into(), field: "metadata.name".into(), message: msg }],
        ));
    }
    if ri.namespaced {
        let ns = namespace.unwrap_or_default();
        let ns_key = ObjKey { storage: "namespaces".into(), namespace: String::new(), name: ns.into() };
        match store.get(&ns_key) {
            None => {
                return Err(ApiError::not_found(Target { group: "", resource: "namespaces", name: ns }));
            }
            Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => {
                return Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    ri.plural
                )));
            }
            _ => {}
        }
    }
    let key = key(ri, namespace, &name);
    if store.get(&key).is_some() {
        return Err(ApiError::already_exists(target(ri, &name)));
    }
    let m = meta(&mut obj);
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now()));
    for f in ["deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"] {
        m.remove(f);
    }
    if tracks_generation(ri) {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if ri.status_subresource
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    if is_namespace(ri) {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    }
    let warnings = admit(ri, &mut obj, None, opts)?;
    if !managed {
        ssa::record_update(None, &mut obj, &opts.field_manager, None, &types(ri));
    }
    if opts.dry_run {
        return Ok(Written { obj: super::store::kube_field_order(obj).into(), created: true, warnings });
    }
    let stored = store.put(&key, events::to_storage(obj));
    if is_crd(ri) {
        store.registry.set_crd(&stored);
    }
    Ok(Written { obj: stored, created: true, warnings })
}

/// Whether `a` and `b` differ outside metadata (and status, when it is a subresource): what
/// moves the generation.
fn spec_differs(ri: &ResourceInfo, a: &Value, b: &Value) -> bool {
    let counted = |k: &str| k != "metadata" && !(ri.status_subresource && k == "status");
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let count = |o: &serde_json::Map<String, Value>| o.keys().filter(|k| counted(k)).count();
            count(a) != count(b) || a.iter().any(|(k, v)| counted(k) && b.get(k) != Some(v))
        }
        _ => a != b,
    }
}

/// Replaces an existing object with `new` (already merged from the request), with the
/// subresource, metadata, generation, no-op and finalizer semantics of kube-apiserver.
pub fn write_existing(
    store: &mut Store,
    ri: &ResourceInfo,
    key: &ObjKey,
    old: Obj,
    mut new: Value,
    opts: &WriteOpts,
    managed: bool,
) -> ApiResult<Written> {
    let old = in_version(ri, old);
    check_type(ri, &mut new)?;
    let t = target(ri, &key.name);
    let old_rv = old["metadata"]["resourceVersion"].clone();
    match new["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && Some(rv) != old_rv.as_str() => return Err(ApiError::stale(t)),
        _ => {}
    }
    match new["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() && n != key.name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                key.name
            )));
        }
        _ => {}
    }
    if opts.subresource.as_deref() == Some("status") {
        new = with_status_of(&old, new);
    } else if let Some(sub @ ("approval" | "ephemeralcontainers")) = opts.subresource.as_deref() {
        new = super::subresources::partial_update(sub, ri, &old, new, &now())?;
    } else if ri.status_subresource {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|o| o.remove("status"));
            }
        }
    }
    {
        let no_meta = serde_json::Map::new();
        let om = old["metadata"].as_object().unwrap_or(&no_meta);
        let m = meta(&mut new);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match om.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
        if !m.contains_key("managedFields")
            && let Some(mf) = om.get("managedFields")
        {
            m.insert("managedFields".into(), mf.clone());
        }
        m.insert("resourceVersion".into(), old_rv);
        m.remove("selfLink");
    }
    if is_namespace(ri) && opts.subresource.is_none() {
        new["spec"] = old["spec"].clone();
    }
    let warnings = admit(ri, &mut new, Some(&old), opts)?;
    if tracks_generation(ri) && spec_differs(ri, &new, &old) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
        new["metadata"]["generation"] = json!(g + 1);
    }
    if new == *old {
        return Ok(Written { obj: old, created: false, warnings });
    }
    if !managed {
        ssa::record_update(Some(&old), &mut new, &opts.field_manager, opts.subresource.as_deref(), &types(ri));
    }
    if opts.dry_run {
        return Ok(Written { obj: super::store::kube_field_order(new).into(), created: false, warnings });
    }
    if !new["metadata"]["deletionTimestamp"].is_null() && finalizers(&new).is_empty() && !is_namespace(ri) {
        let gone = remove_object(store, ri, key).unwrap_or(old);
        return Ok(Written { obj: gone, created: false, warnings });
    }
    let stored = store.put(key, events::to_storage(new));
    if is_crd(ri) {
        store.registry.set_crd(&stored);
    }
    note_finalizing(store, key, &stored);
    Ok(Written { obj: stored, created: false, warnings })
}

fn note_finalizing(store: &mut Store, key: &ObjKey, obj: &Value) {
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        let f = finalizers(obj);
        if f.iter().any(|f| f == "orphan" || f == "foregroundDeletion") {
            store.gc.finalizing.insert(key.clone());
        }
    }
}

/// Removes an object for good; removing a CRD removes its objects and stops serving them.
pub fn remove_object(store: &mut Store, ri: &ResourceInfo, key: &ObjKey) -> Option<Obj> {
    if is_crd(ri)
        && let Some(crd) = store.get(key)
    {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        let storage = super::registry::storage_key(group, plural);
        for k in store.keys_of(&storage) {
            store.remove(&k);
        }
        store.registry.remove_crd(&key.name);
    }
    store.remove(key)
}

/// Updates (PUT) an object; 404 when it does not exist.
pub fn update(store: &mut Store, ri: &ResourceInfo, key: &ObjKey, body: Value, opts: &WriteOpts) -> ApiResult<Written> {
    let old = store.get(key).ok_or_else(|| ApiError::not_found(target(ri, &key.name)))?;
    write_existing(store, ri, key, old, body, opts, false)
}

/// The patch formats kube-apiserver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" | "application/apply-patch+cbor" => {
                if base.ends_with("cbor") { Err(ApiError::unsupported_media(ct)) } else { Ok(Self::Apply) }
            }
            _ => Err(ApiError::unsupported_media(ct)),
        }
    }
}

/// Patches an object (or creates it, for server-side apply).
pub fn patch(
    store: &mut Store,
    ri: &ResourceInfo,
    key: &ObjKey,
    kind: PatchKind,
    body: &[u8],
    opts: &WriteOpts,
) -> ApiResult<Written> {
    let t = target(ri, &key.name);
    if kind == PatchKind::Apply {
        return apply(store, ri, key, body, opts);
    }
    if kind == PatchKind::Strategic && ri.is_custom() {
        return Err(ApiError::unsupported_media("application/strategic-merge-patch+json"));
    }
    let old = in_version(ri, store.get(key).ok_or_else(|| ApiError::not_found(t))?);
    let mut doc = (*old).clone();
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        PatchKind::Merge => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut doc, &p);
        }
        PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            doc = smp::strategic_merge_patch(&doc, &p, &ri.api_version(), &ri.kind)
                .map_err(|e| ApiError::new(422, "Invalid", e))?;
        }
        PatchKind::Apply => unreachable!(),
    }
    write_existing(store, ri, key, old, doc, opts, false)
}

fn apply(store: &mut Store, ri: &ResourceInfo, key: &ObjKey, body: &[u8], opts: &WriteOpts) -> ApiResult<Written> {
    if opts.field_manager.is_empty() {
        return Err(ApiError::bad_request("PATCH requests with apply content type must specify a fieldManager"));
    }
    // JSON (what clients send) is YAML too, and parsed much faster as JSON.
    let mut applied: Value = serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    check_type(ri, &mut applied)?;
    match applied["metadata"]["name"].as_str() {
        Some(n) if n == key.name => {}
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                key.name
            )));
        }
        None => {
            applied["metadata"]["name"] = json!(key.name);
        }
    }
    let live = store.get(key).map(|o| in_version(ri, o));
    // A resourceVersion in the applied configuration is a precondition, also for the status
    // subresource (whose merge keeps only the applied status).
    if let (Some(rv), Some(old)) = (applied["metadata"]["resourceVersion"].as_str().filter(|rv| !rv.is_empty()), &live)
        && old["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return Err(ApiError::stale(target(ri, &key.name)));
    }
    let merged =
        ssa::apply(live.as_deref(), &applied, &opts.field_manager, opts.force, opts.subresource.as_deref(), &types(ri))
            .map_err(|conflicts| conflict_error(ri, &key.name, &conflicts))?;
    match live {
        None if opts.subresource.is_some() => Err(ApiError::not_found(target(ri, &key.name))),
        None => {
            let ns = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
            create(store, ri, ns, merged, opts, true)
        }
        Some(old) => write_existing(store, ri, key, old, merged, opts, true),
    }
}

fn conflict_error(ri: &ResourceInfo, name: &str, conflicts: &[ssa::Conflict]) -> ApiError {
    let av = ri.api_version();
    let lines: Vec<String> =
        conflicts.iter().map(|c| format!("conflict with \"{}\" using {av}: {}", c.manager, c.field)).collect();
    let n = conflicts.len();
    let msg = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let mut e = ApiError::new(409, "Conflict", msg);
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {av}", c.manager), "field": c.field}))
        .collect();
    e.details = Some(Box::new(json!({"name": name, "group": ri.group, "kind": ri.plural, "causes": causes})));
    e
}

/// Deletes an object: at once, or (with finalizers) by setting `deletionTimestamp`. Returns the
/// object and whether it is gone.
pub fn delete(store: &mut Store, ri: &ResourceInfo, key: &ObjKey, opts: &DeleteOpts) -> ApiResult<(Obj, bool)> {
    let t = target(ri, &key.name);
    let obj = store.get(key).ok_or_else(|| ApiError::not_found(t))?;
    if let Some(uid) = &opts.uid {
        let have = obj["metadata"]["uid"].as_str().unwrap_or_default();
        if uid != have {
            return Err(ApiError::conflict(
                t,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
            ));
        }
    }
    if let Some(rv) = &opts.resource_version {
        let have = obj["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        if rv != have {
            return Err(ApiError::conflict(
                t,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
                ),
            ));
        }
    }
    let mut fins = finalizers(&obj);
    match opts.propagation.as_deref() {
        None | Some("Background") => {}
        Some("Orphan") => {
            if !fins.iter().any(|f| f == "orphan") {
                fins.push("orphan".into())
            }
        }
        Some("Foreground") => {
            if !fins.iter().any(|f| f == "foregroundDeletion") {
                fins.push("foregroundDeletion".into())
            }
        }
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{o}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    }
    if opts.dry_run {
        return Ok((obj, fins.is_empty()));
    }
    if is_namespace(ri) {
        if obj["metadata"]["deletionTimestamp"].is_null() {
            let mut n = (*obj).clone();
            n["metadata"]["deletionTimestamp"] = json!(now());
            n["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            n["status"]["phase"] = json!("Terminating");
            let stored = store.put(key, n);
            store.gc.namespaces.insert(key.name.clone());
            return Ok((stored, false));
        }
        return Ok((obj, false));
    }
    if fins.is_empty() {
        let gone = remove_object(store, ri, key).expect("present");
        return Ok((gone, true));
    }
    let mut n = (*obj).clone();
    let was_deleting = !n["metadata"]["deletionTimestamp"].is_null();
    if !was_deleting {
        n["metadata"]["deletionTimestamp"] = json!(now());
        n["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if tracks_generation(ri) {
            let g = n["metadata"]["generation"].as_i64().unwrap_or(0);
            n["metadata"]["generation"] = json!(g + 1);
        }
    }
    n["metadata"]["finalizers"] = json!(fins);
    if n == *obj {
        return Ok((obj, false));
    }
    let stored = store.put(key, n);
    note_finalizing(store, key, &stored);
    Ok((stored, false))
}
