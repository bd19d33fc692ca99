//! CRD structural schemas (`openAPIV3Schema`, as JSON): validation, defaulting and pruning.
//!
//! Messages follow kube-apiserver: the structural schema is checked by kube-openapi's validator
//! (`spec.replicas in body should be greater than or equal to 1`) and its errors are turned into
//! field errors by apiextensions-apiserver (`Invalid value: 0: spec.replicas in body ...`,
//! `Unsupported value: "X": supported values: "A", "B"`, `Required value`, `Too many: 3: must have
//! at most 2 items`, `Too long: may not be more than 5 bytes`), plus the list-type uniqueness check
//! (`Duplicate value: "a"`).
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One field error, as kube-apiserver reports it in a 422 `Invalid` status's `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `reason` of the cause: `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueTooMany`, `FieldValueTooLong`, `FieldValueForbidden`, `FieldValueDuplicate`, `FieldValueTypeInvalid`.
    pub reason: String,
    /// Dotted path as kube-apiserver prints it, e.g. `spec.domains[0]`, `spec.organization`.
    pub field: String,
    /// Human message, e.g. `Unsupported value: "X": supported values: "DV", "OV", "EV"`.
    pub message: String,
}

impl FieldError {
    fn new(reason: &str, field: &str, message: String) -> Self {
        FieldError { reason: reason.to_string(), field: field.to_string(), message }
    }

    /// `Required value` (with an optional detail).
    pub fn required(field: &str, detail: &str) -> Self {
        let mut m = "Required value".to_string();
        if !detail.is_empty() {
            m.push_str(": ");
            m.push_str(detail);
        }
        Self::new("FieldValueRequired", field, m)
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        Self::new("FieldValueInvalid", field, with_detail(format!("Invalid value: {}", go_value(value)), detail))
    }

    /// Like [`FieldError::invalid`], with reason `FieldValueTypeInvalid`.
    pub fn type_invalid(field: &str, value: &Value, detail: &str) -> Self {
        Self::new("FieldValueTypeInvalid", field, with_detail(format!("Invalid value: {}", go_value(value)), detail))
    }

    /// `Unsupported value: "X": supported values: "A", "B"`.
    pub fn not_supported(field: &str, value: &Value, supported: &[String]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        let detail = if quoted.is_empty() { String::new() } else { format!("supported values: {}", quoted.join(", ")) };
        Self::new(
            "FieldValueNotSupported",
            field,
            with_detail(format!("Unsupported value: {}", go_value(value)), &detail),
        )
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: &str, max: i64) -> Self {
        let detail =
            if max >= 0 { format!("may not be more than {max} bytes") } else { "value is too long".to_string() };
        Self::new("FieldValueTooLong", field, format!("Too long: {detail}"))
    }

    /// `Too many: N: must have at most M items`.
    pub fn too_many(field: &str, actual: i64, max: i64) -> Self {
        let detail = if max >= 0 { format!("must have at most {max} items") } else { "has too many items".to_string() };
        let head = if actual >= 0 { format!("Too many: {actual}") } else { "Too many".to_string() };
        Self::new("FieldValueTooMany", field, format!("{head}: {detail}"))
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: &str, value: &Value) -> Self {
        Self::new("FieldValueDuplicate", field, format!("Duplicate value: {}", go_value(value)))
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self::new("FieldValueForbidden", field, with_detail("Forbidden".to_string(), detail))
    }

    /// The whole error as kube-apiserver prints it in a Status message: `spec.x: Invalid value: ...`.
    pub fn to_string_with_field(&self) -> String {
        if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string_with_field())
    }
}

fn with_detail(mut s: String, detail: &str) -> String {
    if !detail.is_empty() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s
}

/// A string quoted as Go's `%q` does (close enough: JSON escaping).
pub(crate) fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A float as Go's `%v` prints it: `%g` with the shortest precision, so the exponent form is used
/// when the decimal exponent is below -4 or at least 6 (`1e+06`, `1.5e-05`, `123456`).
pub(crate) fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let e = format!("{f:e}"); // shortest digits, e.g. "1.5e6", "-2e-7"
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        format!("{f}")
    }
}

/// A JSON number as Go prints it (int64 for whole JSON numbers without a fraction, as
/// kube-apiserver's JSON decoder produces them, float64 otherwise).
pub(crate) fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        go_float(n.as_f64().unwrap_or(0.0))
    }
}

/// A bad value as `field.Error.ErrorBody` prints it: strings quoted, simple types plain,
/// composite values as JSON.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The JSON type name of a value as kube-openapi infers it (`integer` for whole numbers without a
/// fraction, as kube-apiserver's decoder produces int64 for them).
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(crate) fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

pub(crate) fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Schema of a property of an object node: `properties[key]`, else a schema-valued
/// `additionalProperties`.
pub(crate) fn property_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    declared_or_additional(schema.get("properties").and_then(Value::as_object), schema.get("additionalProperties"), key)
}

/// `properties[key]`, else `additionalProperties` when it is a schema.
fn declared_or_additional<'a>(
    properties: Option<&'a Map<String, Value>>,
    additional: Option<&'a Value>,
    key: &str,
) -> Option<&'a Value> {
    properties.and_then(|p| p.get(key)).or(additional.filter(|a| a.is_object()))
}

/// The keywords of one schema node that every walk asks for, read in one pass over its members.
/// A node has a few members, and each lookup by name hashes the name: the walks below asked for
/// a dozen names at every node of every object written. The rarer checks (bounds, lengths,
/// patterns, combinators) are only flagged here, and read by name when the flag is set.
#[derive(Default)]
struct Keywords<'a> {
    ty: Option<&'a str>,
    nullable: bool,
    int_or_string: bool,
    preserve_unknown: bool,
    embedded: bool,
    properties: Option<&'a Map<String, Value>>,
    additional: Option<&'a Value>,
    items: Option<&'a Value>,
    default: Option<&'a Value>,
    enumeration: Option<&'a Vec<Value>>,
    required: Option<&'a Vec<Value>>,
    /// `allOf`, `anyOf`, `oneOf` or `not`.
    combinators: bool,
    /// `maxLength`, `minLength`, `pattern` or `format`.
    string_checks: bool,
    /// `maximum`, `minimum` or `multipleOf`.
    number_checks: bool,
    /// `minItems`, `maxItems` or `x-kubernetes-list-type`.
    array_checks: bool,
    /// `maxProperties` or `minProperties`.
    object_checks: bool,
}

impl<'a> Keywords<'a> {
    fn of(schema: &'a Value) -> Self {
        let mut k = Keywords::default();
        let Some(members) = schema.as_object() else { return k };
        for (name, value) in members {
            match name.as_str() {
                "type" => k.ty = value.as_str(),
                "nullable" => k.nullable = value.as_bool() == Some(true),
                "x-kubernetes-int-or-string" => k.int_or_string = value.as_bool() == Some(true),
                "x-kubernetes-preserve-unknown-fields" => k.preserve_unknown = value.as_bool() == Some(true),
                "x-kubernetes-embedded-resource" => k.embedded = value.as_bool() == Some(true),
                "properties" => k.properties = value.as_object(),
                "additionalProperties" => k.additional = Some(value),
                "items" => k.items = Some(value),
                "default" => k.default = Some(value),
                "enum" => k.enumeration = value.as_array(),
                "required" => k.required = value.as_array(),
                "allOf" | "anyOf" | "oneOf" | "not" => k.combinators = true,
                "maxLength" | "minLength" | "pattern" | "format" => k.string_checks = true,
                "maximum" | "minimum" | "multipleOf" => k.number_checks = true,
                "minItems" | "maxItems" | "x-kubernetes-list-type" => k.array_checks = true,
                "maxProperties" | "minProperties" => k.object_checks = true,
                _ => {}
            }
        }
        k
    }

    /// [`property_schema`] of this node.
    fn property(&self, key: &str) -> Option<&'a Value> {
        declared_or_additional(self.properties, self.additional, key)
    }
}

// ---------------------------------------------------------------------------------------------
// Pruning
// ---------------------------------------------------------------------------------------------

/// Removes fields the schema does not declare (honouring `x-kubernetes-preserve-unknown-fields`,
/// `additionalProperties`, and never touching `apiVersion`, `kind` or the contents of `metadata` at
/// the root). Returns the paths it removed, so `fieldValidation=Strict` can refuse them.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune_node(schema, obj, "", true, &mut removed);
    removed
}

/// [`prune`] of the value at `path` (`.status`), by its own schema.
pub fn prune_at(schema: &Value, value: &mut Value, path: &str) -> Vec<String> {
    let mut removed = Vec::new();
    prune_node(schema, value, path, false, &mut removed);
    removed
}

fn prune_node(schema: &Value, value: &mut Value, path: &str, root: bool, removed: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let kw = Keywords::of(schema);
            let mut undeclared = Vec::new();
            for (key, v) in map.iter_mut() {
                if (root || kw.embedded) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    // Type meta and object meta are the server's business, not the schema's.
                    continue;
                }
                if let Some(ps) = kw.properties.and_then(|p| p.get(key)) {
                    prune_node(ps, v, &format!("{path}.{key}"), false, removed);
                    continue;
                }
                match kw.additional {
                    Some(ap @ Value::Object(_)) => {
                        prune_node(ap, v, &format!("{path}.{key}"), false, removed);
                        continue;
                    }
                    Some(Value::Bool(true)) => continue,
                    _ => {}
                }
                if !kw.preserve_unknown {
                    removed.push(format!("{path}.{key}"));
                    undeclared.push(key.clone());
                }
            }
            for key in undeclared {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            if let Some(is) = Keywords::of(schema).items {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_node(is, v, &format!("{path}[{i}]"), false, removed);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------------------------

/// Fills `default` values, recursively, as kube-apiserver does after pruning.
///
/// Like kube-apiserver's structural defaulting: a property that is absent, or `null` while not
/// `nullable`, gets its default; defaults are applied top-down, so a defaulted object gets its own
/// nested defaults; `items` and `additionalProperties` are recursed into; afterwards `null`
/// values of non-nullable properties without a default are dropped.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    default_node(schema, obj, true);
}

/// [`apply_defaults`] to a value below the root (`status`), by its own schema.
pub fn apply_defaults_at(schema: &Value, value: &mut Value) {
    default_node(schema, value, false);
}

/// What defaulting makes of a member whose value is `null`, by the member's schema: its
/// `default`, `null` kept when it is nullable, or `None`: the member is dropped.
pub fn defaulted_null(schema: &Value) -> Option<Value> {
    let kw = Keywords::of(schema);
    match kw.default {
        Some(default) => Some(default.clone()),
        None => kw.nullable.then_some(Value::Null),
    }
}

fn default_node(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let kw = Keywords::of(schema);
            if let Some(props) = kw.properties {
                for (k, ps) in props {
                    if root && k == "metadata" {
                        continue;
                    }
                    let child = Keywords::of(ps);
                    let Some(def) = child.default else {
                        continue;
                    };
                    let set = match map.get(k) {
                        None => true,
                        Some(Value::Null) => !child.nullable,
                        Some(_) => false,
                    };
                    if set {
                        map.insert(k.clone(), def.clone());
                    }
                }
            }
            let mut dropped = Vec::new();
            for (k, v) in map.iter_mut() {
                if root && matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                    continue;
                }
                let Some(ps) = kw.property(k) else {
                    continue;
                };
                if v.is_null() {
                    let child = Keywords::of(ps);
                    if !child.nullable && child.default.is_none() {
                        dropped.push(k.clone());
                    }
                } else {
                    default_node(ps, v, false);
                }
            }
            for k in dropped {
                map.remove(&k);
            }
        }
        Value::Array(items) => {
            if let Some(is) = Keywords::of(schema).items {
                let item = Keywords::of(is);
                for v in items.iter_mut() {
                    if v.is_null()
                        && !item.nullable
                        && let Some(def) = item.default
                    {
                        *v = def.clone();
                    }
                    default_node(is, v, false);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Checks the object against the schema (types, required, enum, formats, min/max, lengths,
/// items, patterns, nullable, ...). Does not run CEL rules (see [`super::cel`]).
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_node(schema, obj, "", true, &mut errs);
    errs
}

/// [`validate`] of the value at `path` (`status`), by its own schema, as kube-apiserver checks
/// a write to the status subresource.
pub fn validate_at(schema: &Value, value: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_node(schema, value, path, false, &mut errs);
    errs
}

/// kube-openapi's message prefix: `<path> in body`.
fn in_body(path: &str) -> String {
    if path.is_empty() { "body".to_string() } else { format!("{path} in body") }
}

fn type_ok(expected: &str, v: &Value) -> bool {
    let actual = json_type(v);
    match expected {
        "integer" => actual == "integer" || v.as_f64().is_some_and(|f| f.fract() == 0.0 && f.is_finite()),
        "number" => actual == "integer" || actual == "number",
        other => other == actual,
    }
}

fn validate_node(schema: &Value, v: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    if !schema.is_object() {
        return;
    }
    let kw = Keywords::of(schema);
    let (nullable, int_or_string, ty) = (kw.nullable, kw.int_or_string, kw.ty);

    // Type (and nullability).
    if v.is_null() {
        if (ty.is_some() || int_or_string) && !nullable {
            let tn = if int_or_string { "integer,string" } else { ty.unwrap_or_default() };
            let msg = format!("{} must be of type {}: \"null\"", in_body(path), tn);
            errs.push(FieldError::type_invalid(path, &Value::String("null".into()), &msg));
        }
        return;
    }
    let expected = if int_or_string { Some("integer,string") } else { ty };
    if let Some(expected) = expected {
        let ok = if int_or_string { type_ok("integer", v) || type_ok("string", v) } else { type_ok(expected, v) };
        if !ok {
            let actual = json_type(v);
            let msg = format!("{} must be of type {}: {}", in_body(path), expected, go_quote(actual));
            errs.push(FieldError::type_invalid(path, &Value::String(actual.into()), &msg));
            return;
        }
    }

    // allOf / anyOf / oneOf / not.
    if kw.combinators {
        validate_combinators(schema, v, path, errs);
    }

    match v {
        Value::String(s) if kw.string_checks => validate_string(schema, s, v, path, errs),
        Value::Number(_) if kw.number_checks => validate_number(schema, v, path, errs),
        _ => {}
    }

    // enum
    if let Some(options) = kw.enumeration
        && !options.iter().any(|o| json_equal(o, v))
    {
        let supported: Vec<String> = options
            .iter()
            .map(|o| match o {
                Value::String(s) => s.clone(),
                other => serde_json::to_string(other).unwrap_or_default(),
            })
            .collect();
        errs.push(FieldError::not_supported(path, v, &supported));
    }

    match v {
        Value::Array(items) => validate_array(schema, &kw, items, path, errs),
        Value::Object(map) => validate_object(schema, &kw, map, path, root, errs),
        _ => {}
    }
}

fn validate_string(schema: &Value, s: &str, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let len = s.chars().count() as i64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_i64)
        && len > max
    {
        errs.push(FieldError::too_long(path, max));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_i64)
        && len < min
    {
        let msg = format!("{} should be at least {} chars long", in_body(path), min);
        errs.push(FieldError::invalid(path, v, &msg));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        match cached_regex(p) {
            Some(re) => {
                if !re.is_match(s) {
                    let msg = format!("{} should match '{}'", in_body(path), p);
                    errs.push(FieldError::invalid(path, v, &msg));
                }
            }
            None => {
                let msg = format!("{}: invalid pattern '{}'", in_body(path), p);
                errs.push(FieldError::invalid(path, v, &msg));
            }
        }
    }
    if let Some(fmt) = schema.get("format").and_then(Value::as_str)
        && let Some(false) = format_ok(fmt, s)
    {
        let msg = format!("{} must be of type {}: {}", in_body(path), fmt, go_quote(s));
        errs.push(FieldError::type_invalid(path, v, &msg));
    }
}

/// `Some(valid)` for the formats kube-apiserver checks, `None` for formats it ignores.
fn format_ok(format: &str, s: &str) -> Option<bool> {
    use base64::Engine;
    let ok = match format {
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "date-time" | "datetime" => {
            chrono::DateTime::parse_from_rfc3339(s).is_ok()
                || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        }
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" => {
            let b = s.as_bytes();
            b.len() == 36
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() })
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => match s.split_once('/') {
            Some((ip, bits)) => {
                let bits: Option<u8> = bits.parse().ok();
                match (ip.parse::<std::net::IpAddr>(), bits) {
                    (Ok(std::net::IpAddr::V4(_)), Some(b)) => b <= 32,
                    (Ok(std::net::IpAddr::V6(_)), Some(b)) => b <= 128,
                    _ => false,
                }
            }
            None => false,
        },
        "hostname" => {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        "email" => match s.split_once('@') {
            Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.starts_with('.'),
            None => false,
        },
        "uri" => s.split_once(':').is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        }),
        "mac" => {
            let parts: Vec<&str> = s.split([':', '-']).collect();
            (parts.len() == 6 || parts.len() == 8)
                && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        }
        _ => return None,
    };
    Some(ok)
}

/// `p` compiled once (`None` when it is not a regex). Shared, not cloned: a cloned `Regex`
/// starts a pool of match caches of its own, which it then builds at its first match.
pub(crate) fn cached_regex(p: &str) -> Option<Arc<regex::Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<regex::Regex>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(compiled) = guard.get(p) {
        return compiled.clone();
    }
    guard.entry(p.to_string()).or_insert_with(|| regex::Regex::new(p).ok().map(Arc::new)).clone()
}

fn validate_number(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(x) = v.as_f64() else { return };
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
        if (exclusive && x >= max) || (!exclusive && x > max) {
            let rel = if exclusive { "less than" } else { "less than or equal to" };
            let msg = format!("{} should be {} {}", in_body(path), rel, go_float(max));
            errs.push(FieldError::invalid(path, v, &msg));
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
        if (exclusive && x <= min) || (!exclusive && x < min) {
            let rel = if exclusive { "greater than" } else { "greater than or equal to" };
            let msg = format!("{} should be {} {}", in_body(path), rel, go_float(min));
            errs.push(FieldError::invalid(path, v, &msg));
        }
    }
    if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
        && m > 0.0
    {
        let q = x / m;
        if (q - q.round()).abs() > 1e-9 {
            let msg = format!("{} should be a multiple of {}", in_body(path), go_float(m));
            errs.push(FieldError::invalid(path, v, &msg));
        }
    }
}

fn validate_array(schema: &Value, kw: &Keywords, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    if let Some(is) = kw.items {
        for (i, item) in items.iter().enumerate() {
            validate_node(is, item, &index_path(path, i), false, errs);
        }
    }
    if !kw.array_checks {
        return;
    }
    let n = items.len() as i64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_i64)
        && n < min
    {
        let msg = format!("{} should have at least {} items", in_body(path), min);
        errs.push(FieldError::invalid(path, &Value::from(n), &msg));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_i64)
        && n > max
    {
        errs.push(FieldError::too_many(path, n, max));
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].iter().any(|prev| json_equal(prev, item)) {
                    errs.push(FieldError::duplicate(&index_path(path, i), item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<String> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let item_schema = kw.items;
            let key_of = |item: &Value| -> Option<Map<String, Value>> {
                let obj = item.as_object()?;
                let mut m = Map::new();
                for k in &keys {
                    let val = obj
                        .get(k)
                        .cloned()
                        .or_else(|| item_schema.and_then(|s| s.pointer(&format!("/properties/{k}/default")).cloned()));
                    if let Some(val) = val {
                        m.insert(k.clone(), val);
                    }
                }
                Some(m)
            };
            let all: Vec<Option<Map<String, Value>>> = items.iter().map(key_of).collect();
            for i in 0..all.len() {
                let Some(k) = &all[i] else { continue };
                if all[..i].iter().flatten().any(|p| map_equal(p, k)) {
                    errs.push(FieldError::duplicate(&index_path(path, i), &Value::Object(k.clone())));
                }
            }
        }
        _ => {}
    }
}

fn map_equal(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| json_equal(v, w)))
}

/// Deep equality of JSON values with numbers compared by value (`1 == 1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                i == j
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q)),
        (Value::Object(x), Value::Object(y)) => map_equal(x, y),
        _ => a == b,
    }
}

fn validate_object(
    schema: &Value,
    kw: &Keywords,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    if let Some(req) = kw.required {
        for r in req.iter().filter_map(Value::as_str) {
            if root && r == "metadata" {
                continue;
            }
            if !map.contains_key(r) {
                errs.push(FieldError::required(&child_path(path, r), ""));
            }
        }
    }
    let n = map.len() as i64;
    if kw.object_checks {
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_i64)
            && n > max
        {
            errs.push(FieldError::too_many(path, n, max));
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_i64)
            && n < min
        {
            let msg = format!("{} should have at least {} properties", in_body(path), min);
            errs.push(FieldError::invalid(path, &Value::from(n), &msg));
        }
    }
    let embedded = kw.embedded;
    let props = kw.properties;
    let additional = kw.additional;
    for (k, v) in map {
        if root && k == "metadata" {
            continue;
        }
        if embedded && k == "metadata" {
            continue;
        }
        let cpath = child_path(path, k);
        if let Some(ps) = props.and_then(|p| p.get(k)) {
            validate_node(ps, v, &cpath, false, errs);
        } else if let Some(ap @ Value::Object(_)) = additional {
            validate_node(ap, v, &cpath, false, errs);
        } else if let Some(Value::Bool(false)) = additional
            && (props.is_some() || !kw.preserve_unknown)
        {
            let msg = format!("{}.{} in body is a forbidden property", if path.is_empty() { "" } else { path }, k);
            errs.push(FieldError::forbidden(&cpath, &msg));
        }
    }
    if embedded {
        for k in ["apiVersion", "kind"] {
            if map.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(FieldError::required(&child_path(path, k), "must not be empty"));
            }
        }
    }
}

fn validate_combinators(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let sub_errors = |s: &Value| -> Vec<FieldError> {
        let mut e = Vec::new();
        validate_node(s, v, path, false, &mut e);
        e
    };
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let mut inner = Vec::new();
        for s in all {
            inner.extend(sub_errors(s));
        }
        if !inner.is_empty() {
            errs.extend(inner);
            let msg = format!("{} must validate all the schemas (allOf)", in_body(path));
            errs.push(FieldError::invalid(path, v, &msg));
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let results: Vec<Vec<FieldError>> = any.iter().map(sub_errors).collect();
        if !any.is_empty() && results.iter().all(|r| !r.is_empty()) {
            for r in &results {
                errs.extend(r.iter().cloned());
            }
            let msg = format!("{} must validate at least one schema (anyOf)", in_body(path));
            errs.push(FieldError::invalid(path, v, &msg));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let results: Vec<Vec<FieldError>> = one.iter().map(sub_errors).collect();
        let passing = results.iter().filter(|r| r.is_empty()).count();
        if !one.is_empty() && passing != 1 {
            if passing == 0 {
                for r in &results {
                    errs.extend(r.iter().cloned());
                }
            }
            let msg = format!("{} must validate one and only one schema (oneOf)", in_body(path));
            errs.push(FieldError::invalid(path, v, &msg));
        }
    }
    if let Some(not) = schema.get("not")
        && not.is_object()
        && sub_errors(not).is_empty()
    {
        let msg = format!("{} must not validate the schema (not)", in_body(path));
        errs.push(FieldError::invalid(path, v, &msg));
    }
}

#[cfg(test)]
mod tests;
