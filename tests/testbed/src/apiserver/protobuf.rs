//! `application/vnd.kubernetes.protobuf` request bodies, which client-go's typed clients (so
//! `kubectl create namespace|secret|configmap|...`) send for built-in kinds: the `k8s\0` magic, then
//! a `runtime.Unknown` whose `typeMeta` names the kind and whose `raw` is the object's message.
//! The message is read through descriptors of Kubernetes' own `generated.proto` files (vendored in
//! `tests/testbed/proto`, parsed once with rust-protobuf's pure-Rust parser) and turned into the
//! JSON the kind has, which the server then handles as if it had been sent as JSON. Answers stay
//! JSON (a client that accepts no JSON gets 406 from content negotiation).
use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use protobuf::descriptor::FileDescriptorProto;
use protobuf::reflect::{FileDescriptor, MessageDescriptor, ReflectValueRef, RuntimeFieldType};
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};
use super::registry::ResourceInfo;

const MAGIC: &[u8] = b"k8s\0";

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Go's zero `time.Time` as Unix seconds (what a zero `metav1.Time` encodes to).
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// The vendored files by proto package (`api.core.v1`, `apimachinery.pkg.apis.meta.v1`, ...).
fn files() -> &'static Result<HashMap<String, FileDescriptor>, String> {
    static FILES: OnceLock<Result<HashMap<String, FileDescriptor>, String>> = OnceLock::new();
    FILES.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
        let mut inputs = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "proto") {
                    inputs.push(p);
                }
            }
        }
        let parsed = protobuf_parse::Parser::new()
            .pure()
            .include(&root)
            .inputs(&inputs)
            .parse_and_typecheck()
            .map_err(|e| format!("parsing the Kubernetes .proto files: {e:#}"))?;
        let protos: Vec<FileDescriptorProto> = parsed.file_descriptors;
        let fds = FileDescriptor::new_dynamic_fds(protos, &[]).map_err(|e| e.to_string())?;
        Ok(fds.into_iter().map(|f| (f.package().to_string(), f)).collect())
    })
}

/// The proto package of a served group version.
fn package(group: &str, version: &str) -> String {
    match group {
        "" => format!("api.core.{version}"),
        "meta.k8s.io" => format!("apimachinery.pkg.apis.meta.{version}"),
        "apiextensions.k8s.io" => format!("apiextensions_apiserver.pkg.apis.apiextensions.{version}"),
        "apiregistration.k8s.io" => format!("kube_aggregator.pkg.apis.apiregistration.{version}"),
        g => format!("api.{}.{version}", g.split('.').next().unwrap_or_default()),
    }
}

fn file(group: &str, version: &str) -> Option<&'static FileDescriptor> {
    files().as_ref().ok()?.get(&package(group, version))
}

fn message(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    file(group, version)
        .and_then(|f| f.message_by_package_relative_name(kind))
        // DeleteOptions and other meta types are sent with the request's group version.
        .or_else(|| file("meta.k8s.io", "v1")?.message_by_package_relative_name(kind))
}

/// The error kube-apiserver gives for a body it cannot decode.
fn undecodable(ri: &ResourceInfo, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: {why}",
        ri.kind, ri.version, ri.kind
    ))
}

/// The 415 for an encoding the resource does not take.
pub fn unsupported(ri: &ResourceInfo) -> ApiError {
    let types = if ri.is_custom() {
        "application/json, application/yaml"
    } else {
        "application/json, application/yaml, application/vnd.kubernetes.protobuf"
    };
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!("the body of the request was in an unknown format - accepted media types include: {types}"),
    )
}

/// Decodes a protobuf request body into the JSON of the object (`kind`, `apiVersion` included).
/// `ri` is the resource of the request; `DeleteOptions` bodies are decoded too.
pub fn decode(ri: &ResourceInfo, body: &[u8]) -> ApiResult<Value> {
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return Err(undecodable(
            ri,
            format!("provided data does not appear to be a protobuf message, expected prefix {:?}", MAGIC),
        ));
    };
    let files = files().as_ref().map_err(|e| ApiError::internal(e.clone()))?;
    let unknown_md = files["apimachinery.pkg.runtime"].message_by_package_relative_name("Unknown").expect("Unknown");
    let unknown = unknown_md
        .parse_from_bytes(rest)
        .map_err(|e| undecodable(ri, format!("unable to decode the protobuf envelope: {e}")))?;
    let envelope = to_json(&*unknown);
    let type_meta = |f: &str| envelope["typeMeta"][f].as_str().filter(|s| !s.is_empty()).map(String::from);
    let api_version = type_meta("apiVersion").unwrap_or_else(|| ri.api_version());
    let kind = type_meta("kind").unwrap_or_else(|| ri.kind.clone());
    let md = message(&api_version, &kind)
        .ok_or_else(|| undecodable(ri, format!("no kind \"{kind}\" is registered for version \"{api_version}\"")))?;
    let raw = match unknown_md.field_by_name("raw").and_then(|f| f.get_singular(&*unknown)) {
        Some(ReflectValueRef::Bytes(b)) => b.to_vec(),
        _ => Vec::new(),
    };
    let msg = md.parse_from_bytes(&raw).map_err(|e| undecodable(ri, e))?;
    let mut v = to_json(&*msg);
    if let Value::Object(o) = &mut v {
        let mut out = Map::new();
        out.insert("kind".into(), json!(kind));
        out.insert("apiVersion".into(), json!(api_version));
        out.append(o);
        v = Value::Object(out);
    }
    Ok(v)
}

/// A message as Kubernetes' JSON has it: fields by their proto names (which are the JSON names),
/// the apimachinery wrapper types as their JSON forms.
fn to_json(msg: &dyn protobuf::MessageDyn) -> Value {
    let md = msg.descriptor_dyn();
    if let Some(v) = special(&md, msg) {
        return v;
    }
    let is_object_meta = md.full_name() == "apimachinery.pkg.apis.meta.v1.ObjectMeta";
    let mut out = Map::new();
    for f in md.fields() {
        let v = match f.runtime_field_type() {
            RuntimeFieldType::Singular(_) => match f.get_singular(msg) {
                Some(v) => value(v),
                None => continue,
            },
            RuntimeFieldType::Repeated(_) => {
                let r = f.get_repeated(msg);
                if r.is_empty() {
                    continue;
                }
                Value::Array((0..r.len()).map(|i| value(r.get(i))).collect())
            }
            RuntimeFieldType::Map(..) => {
                let m = f.get_map(msg);
                if m.is_empty() {
                    continue;
                }
                let mut o = Map::new();
                for (k, v) in &m {
                    let key = match k {
                        ReflectValueRef::String(s) => s.to_string(),
                        other => other.to_string(),
                    };
                    o.insert(key, value(v));
                }
                Value::Object(o)
            }
        };
        // gogo-protobuf writes every non-pointer field, so zero values are on the wire; in
        // ObjectMeta (all scalars but deletionGracePeriodSeconds are plain values with `omitempty`)
        // they mean "unset".
        if v.is_null() || (is_object_meta && (v == json!("") || v == json!(0))) {
            continue;
        }
        out.insert(f.name().to_string(), v);
    }
    Value::Object(out)
}

fn value(v: ReflectValueRef) -> Value {
    match v {
        ReflectValueRef::U32(n) => json!(n),
        ReflectValueRef::U64(n) => json!(n),
        ReflectValueRef::I32(n) => json!(n),
        ReflectValueRef::I64(n) => json!(n),
        ReflectValueRef::F32(n) => json!(n),
        ReflectValueRef::F64(n) => json!(n),
        ReflectValueRef::Bool(b) => json!(b),
        ReflectValueRef::String(s) => json!(s),
        ReflectValueRef::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ReflectValueRef::Enum(e, n) => e.value_by_number(n).map(|v| json!(v.name())).unwrap_or(json!(n)),
        ReflectValueRef::Message(m) => to_json(&*m),
    }
}

fn field<'a>(md: &MessageDescriptor, msg: &'a dyn protobuf::MessageDyn, name: &str) -> Option<ReflectValueRef<'a>> {
    md.field_by_name(name)?.get_singular(msg)
}

fn raw_json(md: &MessageDescriptor, msg: &dyn protobuf::MessageDyn, name: &str) -> Value {
    match field(md, msg, name) {
        Some(ReflectValueRef::Bytes(b)) => serde_json::from_slice(b).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The apimachinery types whose JSON is not their message's shape.
fn special(md: &MessageDescriptor, msg: &dyn protobuf::MessageDyn) -> Option<Value> {
    let name = md.full_name();
    let (package, short) = name.rsplit_once('.').unwrap_or(("", name));
    let int = |n: &str| match field(md, msg, n) {
        Some(ReflectValueRef::I64(v)) => v,
        Some(ReflectValueRef::I32(v)) => v as i64,
        _ => 0,
    };
    let string = |n: &str| match field(md, msg, n) {
        Some(ReflectValueRef::String(s)) => Some(s.to_string()),
        _ => None,
    };
    Some(match (package, short) {
        ("apimachinery.pkg.apis.meta.v1", "Time" | "MicroTime") => {
            let (secs, nanos) = (int("seconds"), int("nanos"));
            if secs == GO_ZERO_TIME && nanos == 0 {
                return Some(Value::Null);
            }
            let t = chrono::DateTime::from_timestamp(secs, nanos as u32)?;
            let precision = if short == "Time" { chrono::SecondsFormat::Secs } else { chrono::SecondsFormat::Micros };
            json!(t.to_rfc3339_opts(precision, true))
        }
        ("apimachinery.pkg.apis.meta.v1", "Duration") => json!(go_duration(int("duration"))),
        ("apimachinery.pkg.apis.meta.v1", "FieldsV1") => raw_json(md, msg, "Raw"),
        ("apimachinery.pkg.runtime", "RawExtension") => raw_json(md, msg, "raw"),
        ("apimachinery.pkg.api.resource", "Quantity") => json!(string("string").unwrap_or_default()),
        ("apimachinery.pkg.util.intstr", "IntOrString") => {
            if int("type") == 1 {
                json!(string("strVal").unwrap_or_default())
            } else {
                json!(int("intVal"))
            }
        }
        (_, "ExtraValue" | "Verbs") => {
            let f = md.field_by_name("items")?;
            let r = f.get_repeated(msg);
            Value::Array((0..r.len()).map(|i| value(r.get(i))).collect())
        }
        ("apiextensions_apiserver.pkg.apis.apiextensions.v1", "JSON") => raw_json(md, msg, "raw"),
        ("apiextensions_apiserver.pkg.apis.apiextensions.v1", "JSONSchemaPropsOrBool") => {
            match field(md, msg, "schema") {
                Some(ReflectValueRef::Message(m)) => to_json(&*m),
                _ => json!(matches!(field(md, msg, "allows"), Some(ReflectValueRef::Bool(true)))),
            }
        }
        ("apiextensions_apiserver.pkg.apis.apiextensions.v1", "JSONSchemaPropsOrArray") => {
            match field(md, msg, "schema") {
                Some(ReflectValueRef::Message(m)) => to_json(&*m),
                _ => {
                    let r = md.field_by_name("jSONSchemas")?.get_repeated(msg);
                    Value::Array((0..r.len()).map(|i| value(r.get(i))).collect())
                }
            }
        }
        ("apiextensions_apiserver.pkg.apis.apiextensions.v1", "JSONSchemaPropsOrStringArray") => {
            match field(md, msg, "schema") {
                Some(ReflectValueRef::Message(m)) => to_json(&*m),
                _ => {
                    let r = md.field_by_name("property")?.get_repeated(msg);
                    Value::Array((0..r.len()).map(|i| value(r.get(i))).collect())
                }
            }
        }
        _ => return None,
    })
}

/// Go's `time.Duration.String()` of `ns` nanoseconds (`1h2m3s`, `1.5s`, `300ms`, `0s`).
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let n = ns.unsigned_abs();
    let frac = |v: u64, unit: u64| -> String {
        let (whole, rest) = (v / unit, v % unit);
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let f = format!("{rest:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 1_000_000));
    }
    let secs = n / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let s = frac(n % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::reflect::ReflectValueBox;

    /// `msg` in the envelope client-go sends.
    fn envelope(api_version: &str, kind: &str, msg: Box<dyn protobuf::MessageDyn>) -> Vec<u8> {
        assert_eq!(msg.descriptor_dyn().name(), kind);
        let runtime = &files().as_ref().unwrap()["apimachinery.pkg.runtime"];
        let type_meta = runtime.message_by_package_relative_name("TypeMeta").unwrap();
        let mut tm = type_meta.new_instance();
        set(&mut *tm, "apiVersion", ReflectValueBox::String(api_version.into()));
        set(&mut *tm, "kind", ReflectValueBox::String(kind.into()));
        let unknown = runtime.message_by_package_relative_name("Unknown").unwrap();
        let mut u = unknown.new_instance();
        set(&mut *u, "typeMeta", ReflectValueBox::Message(tm));
        set(&mut *u, "raw", ReflectValueBox::Bytes(msg.write_to_bytes_dyn().unwrap()));
        let mut out = MAGIC.to_vec();
        out.extend(u.write_to_bytes_dyn().unwrap());
        out
    }

    fn set(m: &mut dyn protobuf::MessageDyn, field: &str, v: ReflectValueBox) {
        m.descriptor_dyn().field_by_name(field).unwrap().set_singular_field(m, v);
    }

    #[test]
    fn secret_from_protobuf() {
        let reg = super::super::registry::Registry::new();
        let ri = reg.get("", "v1", "secrets").unwrap();
        let core = file("", "v1").unwrap();
        let meta_file = file("meta.k8s.io", "v1").unwrap();
        let mut meta = meta_file.message_by_package_relative_name("ObjectMeta").unwrap().new_instance();
        set(&mut *meta, "name", ReflectValueBox::String("s".into()));
        set(&mut *meta, "generateName", ReflectValueBox::String(String::new()));
        let mut ts = meta_file.message_by_package_relative_name("Time").unwrap().new_instance();
        set(&mut *ts, "seconds", ReflectValueBox::I64(GO_ZERO_TIME));
        set(&mut *ts, "nanos", ReflectValueBox::I32(0));
        set(&mut *meta, "creationTimestamp", ReflectValueBox::Message(ts));
        let labels = meta.descriptor_dyn().field_by_name("labels").unwrap();
        labels.mut_map(&mut *meta).insert(ReflectValueBox::String("app".into()), ReflectValueBox::String("x".into()));
        let mut secret = core.message_by_package_relative_name("Secret").unwrap().new_instance();
        set(&mut *secret, "metadata", ReflectValueBox::Message(meta));
        let data = secret.descriptor_dyn().field_by_name("data").unwrap();
        data.mut_map(&mut *secret).insert(ReflectValueBox::String("a".into()), ReflectValueBox::Bytes(b"b".to_vec()));
        set(&mut *secret, "type", ReflectValueBox::String("Opaque".into()));
        let v = decode(&ri, &envelope("v1", "Secret", secret)).unwrap();
        assert_eq!(
            v,
            json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s", "labels": {"app": "x"}}, "data": {"a": "Yg=="}, "type": "Opaque"})
        );
        let e = decode(&ri, b"{}").unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
    }

    #[test]
    fn every_served_builtin_kind_has_a_message() {
        let reg = super::super::registry::Registry::new();
        for r in reg.resources() {
            assert!(message(&r.api_version(), &r.kind).is_some(), "{} {}", r.api_version(), r.kind);
        }
        assert!(message("v1", "DeleteOptions").is_some());
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(0), "0s");
    }
}
