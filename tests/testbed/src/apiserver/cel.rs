//! `x-kubernetes-validations` (CEL) rules of CRD schemas.
//!
//! Rules are compiled with the `cel` crate (its standard library, the strings and lists
//! extensions, plus Kubernetes' list helpers and `isURL`), evaluated at every schema node with
//! `self` bound to the value there (typed from the schema: `number` fields are doubles,
//! `format: date-time` strings timestamps, `format: byte` strings bytes, `format: duration`
//! strings durations), and `oldSelf` for transition rules when the old object has a value at
//! the same path (object properties, map values and items of `x-kubernetes-list-type: map` lists
//! correlate, as in Kubernetes). Failures are reported as kube-apiserver does:
//! `Invalid value: "object": <message>` at the node's path (or the rule's `fieldPath`).
//!
//! Known gaps: no static type checking (a rule naming a field the schema lacks compiles, and
//! fails at evaluation with `no such key`), no cost limits, none of the newer Kubernetes
//! libraries (quantity, ip/cidr, format, authz) beyond what is listed above.
use super::schema::{FieldError, child_path, index_path, property_schema};
use cel::extractors::This;
use cel::objects::{Key, OptionalValue};
use cel::{Context, Env, ExecutionError, Program, Value as CelValue};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Evaluates every `x-kubernetes-validations` rule in the schema against `new` (and, for
/// transition rules that use `oldSelf`, against `old` when there is one). A failing rule yields
/// its `message` (or `messageExpression`, or kube-apiserver's default text) at its field path.
pub fn validate_rules(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(schema, new, old, "", true, &mut errs);
    errs
}

/// What kube-apiserver answers for a custom resource's body (after pruning and defaulting): the
/// schema's errors, then the CEL rules, unless a schema error is of a kind that blocks them (a
/// wrong type, a missing required field, an unsupported enum value, a string, list or map over
/// its maximum). Then the rules are not run, and one more error says so, as in
/// apiextensions-apiserver's `hasBlockingErr`.
pub fn validate_custom_resource(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = super::schema::validate(schema, new);
    let blocking = errs.iter().any(|e| {
        matches!(
            e.reason.as_str(),
            "FieldValueNotSupported"
                | "FieldValueRequired"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
                | "FieldValueTypeInvalid"
        )
    });
    if blocking {
        errs.push(FieldError::invalid(
            "<nil>",
            &Value::String("null".into()),
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
    } else {
        errs.extend(validate_rules(schema, new, old));
    }
    errs
}

/// The compile errors of every rule (and `messageExpression`) in the schema, for refusing a CRD
/// at creation as kube-apiserver does. Paths are relative to the schema, e.g.
/// `openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`; prefix them with
/// `spec.versions[i].schema.` for a CRD's error.
pub fn compile_errors(schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    compile_walk(schema, "openAPIV3Schema", &mut errs);
    errs
}

fn compile_walk(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    if let Some(rules) = obj.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (i, rule) in rules.iter().enumerate() {
            let rpath = format!("{path}.x-kubernetes-validations[{i}]");
            let Some(src) = rule.get("rule").and_then(Value::as_str) else {
                errs.push(FieldError::required(&format!("{rpath}.rule"), ""));
                continue;
            };
            if let Err(e) = compile(src) {
                let detail = format!("compilation failed: {e}");
                errs.push(FieldError::invalid(&format!("{rpath}.rule"), &Value::String(src.into()), &detail));
            }
            if let Some(m) = rule.get("messageExpression").and_then(Value::as_str)
                && let Err(e) = compile(m)
            {
                let detail = format!("messageExpression compilation failed: {e}");
                errs.push(FieldError::invalid(
                    &format!("{rpath}.messageExpression"),
                    &Value::String(m.into()),
                    &detail,
                ));
            }
            if let Some(r) = rule.get("reason").and_then(Value::as_str) {
                let allowed = ["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"];
                if !allowed.contains(&r) {
                    let supported: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
                    errs.push(FieldError::not_supported(
                        &format!("{rpath}.reason"),
                        &Value::String(r.into()),
                        &supported,
                    ));
                }
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            compile_walk(s, &format!("{path}.properties[{k}]"), errs);
        }
    }
    if let Some(s @ Value::Object(_)) = obj.get("additionalProperties") {
        compile_walk(s, &format!("{path}.additionalProperties"), errs);
    }
    if let Some(s) = obj.get("items") {
        compile_walk(s, &format!("{path}.items"), errs);
    }
    for comb in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = obj.get(comb).and_then(Value::as_array) {
            for (i, s) in list.iter().enumerate() {
                compile_walk(s, &format!("{path}.{comb}[{i}]"), errs);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings).expect("strings extension");
        env.add_extension(cel::extensions::lists).expect("lists extension");
        Arc::new(env)
    })
    .clone()
}

/// A compiled rule and whether it is a transition rule (uses `oldSelf`).
struct Compiled {
    program: Program,
    uses_old_self: bool,
}

type CompileResult = Result<Arc<Compiled>, String>;

fn compile(src: &str) -> CompileResult {
    static CACHE: OnceLock<Mutex<HashMap<String, CompileResult>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(src) {
        return hit.clone();
    }
    let result = env()
        .compile(src)
        .map(|program| {
            let uses_old_self = program.references().has_variable("oldSelf");
            Arc::new(Compiled { program, uses_old_self })
        })
        .map_err(|e| e.to_string().trim().to_string());
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() > 10_000 {
        guard.clear();
    }
    guard.insert(src.to_string(), result.clone());
    result
}

// ---------------------------------------------------------------------------------------------
// Walking the schema
// ---------------------------------------------------------------------------------------------

fn walk(schema: &Value, new: &Value, old: Option<&Value>, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    if !schema.is_object() || new.is_null() {
        return;
    }
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        let mut bound = Bindings::default();
        for rule in rules {
            eval_rule(schema, rule, new, old, path, root, &mut bound, errs);
        }
    }
    match new {
        Value::Object(map) => {
            for (k, v) in map {
                if root && matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                    continue;
                }
                let Some(ps) = property_schema(schema, k) else {
                    continue;
                };
                let old_child = old.and_then(|o| o.get(k));
                walk(ps, v, old_child, &child_path(path, k), false, errs);
            }
        }
        Value::Array(items) => {
            let Some(is) = schema.get("items") else {
                return;
            };
            let map_keys: Option<Vec<&str>> = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|ks| ks.iter().filter_map(Value::as_str).collect()),
                _ => None,
            };
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let old_item = match (&map_keys, old_items) {
                    (Some(keys), Some(olds)) => olds.iter().find(|o| keys.iter().all(|k| o.get(k) == item.get(k))),
                    _ => None,
                };
                walk(is, item, old_item, &index_path(path, i), false, errs);
            }
        }
        _ => {}
    }
}

fn schema_type(schema: &Value) -> String {
    schema.get("type").and_then(Value::as_str).unwrap_or("").to_string()
}

fn rule_error_string(rule: &Value) -> String {
    let msg = rule.get("message").and_then(Value::as_str).unwrap_or("").trim();
    if !msg.is_empty() {
        return msg.to_string();
    }
    rule.get("rule").and_then(Value::as_str).unwrap_or("").trim().to_string()
}

fn rule_message_or_default(rule: &Value) -> String {
    let msg = rule.get("message").and_then(Value::as_str).unwrap_or("").trim();
    if msg.is_empty() { format!("failed rule: {}", rule_error_string(rule)) } else { msg.to_string() }
}

/// The rules of one schema node see the same `self` and `oldSelf`: the values are converted to
/// CEL once, and each way of binding them (`self` alone, with `oldSelf`, with an optional
/// `oldSelf`) makes one context, shared by the node's rules.
#[derive(Default)]
struct Bindings {
    values: Option<(CelValue, Option<CelValue>)>,
    contexts: Vec<(Binding, Context<'static, 'static>)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Binding {
    SelfOnly,
    OldSelf,
    OptionalOldSelf,
}

impl Bindings {
    fn context(
        &mut self,
        binding: Binding,
        schema: &Value,
        new: &Value,
        old: Option<&Value>,
        root: bool,
    ) -> &Context<'static, 'static> {
        if let Some(i) = self.contexts.iter().position(|(b, _)| *b == binding) {
            return &self.contexts[i].1;
        }
        let (self_val, old_val) = self
            .values
            .get_or_insert_with(|| (root_view(schema, new, root), old.map(|o| root_view(schema, o, root))))
            .clone();
        let mut ctx = Context::with_env(env());
        register_functions(&mut ctx);
        ctx.add_variable_from_value("self", self_val);
        match binding {
            Binding::SelfOnly => {}
            Binding::OldSelf => ctx.add_variable_from_value("oldSelf", old_val.unwrap_or(CelValue::Null)),
            Binding::OptionalOldSelf => {
                let opt = match old_val {
                    Some(v) => OptionalValue::of(v),
                    None => OptionalValue::none(),
                };
                ctx.add_variable_from_value("oldSelf", CelValue::Opaque(Arc::new(opt)));
            }
        }
        self.contexts.push((binding, ctx));
        &self.contexts.last().expect("just pushed").1
    }
}

#[allow(clippy::too_many_arguments)]
fn eval_rule(
    schema: &Value,
    rule: &Value,
    new: &Value,
    old: Option<&Value>,
    path: &str,
    root: bool,
    bound: &mut Bindings,
    errs: &mut Vec<FieldError>,
) {
    let Some(src) = rule.get("rule").and_then(Value::as_str) else {
        return;
    };
    let shown_path = if root && path.is_empty() { "<nil>".to_string() } else { path.to_string() };
    let ty = Value::String(schema_type(schema));
    let compiled = match compile(src) {
        Ok(c) => c,
        Err(e) => {
            errs.push(FieldError::invalid(&shown_path, &ty, &format!("rule compile error: compilation failed: {e}")));
            return;
        }
    };
    let optional_old = rule.get("optionalOldSelf").and_then(Value::as_bool).unwrap_or(false);
    if compiled.uses_old_self && old.is_none() && !optional_old {
        // A transition rule without a correlated old value is not evaluated (creates, new items).
        return;
    }
    // Validation ratcheting (KEP-4008, GA in Kubernetes 1.33): a rule that does not use `oldSelf`
    // does not fail a value that is unchanged from the stored object, so an unchanged value
    // (a status write leaves the spec as it was) is not evaluated at all.
    if !compiled.uses_old_self && old == Some(new) {
        return;
    }
    let binding = match (compiled.uses_old_self, optional_old) {
        (false, _) => Binding::SelfOnly,
        (true, false) => Binding::OldSelf,
        (true, true) => Binding::OptionalOldSelf,
    };
    let ctx = bound.context(binding, schema, new, old, root);
    let rule_err = rule_error_string(rule);
    match compiled.program.execute(ctx) {
        Ok(CelValue::Bool(true)) => {}
        Ok(CelValue::Bool(false)) => {
            let field = match rule.get("fieldPath").and_then(Value::as_str) {
                Some(fp) if !fp.is_empty() => join_field_path(path, fp),
                _ => shown_path.clone(),
            };
            let mut message = rule_message_or_default(rule);
            if let Some(me) = rule.get("messageExpression").and_then(Value::as_str)
                && let Some(m) = eval_message_expression(me, ctx)
            {
                message = m;
            }
            let reason = rule.get("reason").and_then(Value::as_str).unwrap_or("FieldValueInvalid");
            errs.push(match reason {
                "FieldValueForbidden" => FieldError::forbidden(&field, &message),
                "FieldValueRequired" => FieldError::required(&field, &message),
                "FieldValueDuplicate" => FieldError::duplicate(&field, &ty),
                _ => FieldError::invalid(&field, &ty, &message),
            });
        }
        Ok(other) => {
            let detail =
                format!("rule did not evaluate to a bool (got {}) evaluating rule: {rule_err}", type_name(&other));
            errs.push(FieldError::invalid(&shown_path, &ty, &detail));
        }
        Err(e) => {
            let detail = match &e {
                ExecutionError::NoSuchOverload(_) | ExecutionError::UnsupportedBinaryOperator(..) => format!(
                    "'{}': call arguments did not match a supported operator, function or macro signature for rule: {rule_err}",
                    eval_error_text(&e)
                ),
                _ => format!("{} evaluating rule: {rule_err}", eval_error_text(&e)),
            };
            errs.push(FieldError::invalid(&shown_path, &ty, &detail));
        }
    }
}

/// cel-go's wording of the common evaluation errors (`no such key: x`), which kube-apiserver
/// puts in its messages.
fn eval_error_text(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_string(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_string(),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {}", cel_to_json(i)),
        ExecutionError::NoSuchOverload(_) | ExecutionError::UnsupportedBinaryOperator(..) => {
            "no such overload".to_string()
        }
        ExecutionError::UndeclaredReference(r) => format!("no such attribute: {r}"),
        other => other.to_string(),
    }
}

fn type_name(v: &CelValue) -> &'static str {
    match v {
        CelValue::List(_) => "list",
        CelValue::Map(_) => "map",
        CelValue::Int(_) => "int",
        CelValue::UInt(_) => "uint",
        CelValue::Float(_) => "double",
        CelValue::String(_) => "string",
        CelValue::Bytes(_) => "bytes",
        CelValue::Bool(_) => "bool",
        CelValue::Null => "null_type",
        _ => "dyn",
    }
}

fn cel_to_json(v: &CelValue) -> String {
    v.json().map(|j| j.to_string()).unwrap_or_else(|_| format!("{v:?}"))
}

fn eval_message_expression(src: &str, ctx: &Context) -> Option<String> {
    let compiled = compile(src).ok()?;
    match compiled.program.execute(ctx) {
        Ok(CelValue::String(s)) if !s.trim().is_empty() && !s.contains('\n') => Some(s.trim().to_string()),
        _ => None,
    }
}

/// Joins a rule's `fieldPath` (`.spec.x`, `.map['key']`, `.list[0]`) to the node's path.
fn join_field_path(base: &str, fp: &str) -> String {
    let mut path = base.to_string();
    let mut rest = fp;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            path = child_path(&path, &r[..end]);
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").unwrap_or(r.len());
            path = child_path(&path, &r[..end]);
            rest = r.get(end + 2..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            path = format!("{path}[{}]", &r[..end]);
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            // Not a path we understand: keep it verbatim.
            path = child_path(&path, rest);
            break;
        }
    }
    path
}

/// `v` in CEL, typed by `schema`. At the root, rules only see `metadata.name` and
/// `metadata.generateName`, as in Kubernetes.
fn root_view(schema: &Value, v: &Value, root: bool) -> CelValue {
    let Some(meta) = v.get("metadata").and_then(Value::as_object).filter(|_| root) else {
        return to_cel(Some(schema), v);
    };
    let seen: serde_json::Map<String, Value> = meta
        .iter()
        .filter(|(k, _)| *k == "name" || *k == "generateName")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let seen = Value::Object(seen);
    let CelValue::Map(mut converted) = to_cel_except(Some(schema), v, "metadata") else {
        unreachable!("an object converts to a map")
    };
    let meta_schema = property_schema(schema, "metadata");
    Arc::make_mut(&mut converted.map).insert(Key::String(Arc::new("metadata".into())), to_cel(meta_schema, &seen));
    CelValue::Map(converted)
}

// ---------------------------------------------------------------------------------------------
// JSON to CEL, typed by the schema
// ---------------------------------------------------------------------------------------------

const CEL_RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Kubernetes' escaping of property names for CEL: `__` → `__underscores__`, `.` → `__dot__`,
/// `-` → `__dash__`, `/` → `__slash__`, and reserved words as `__{word}__`.
fn escape_property(name: &str) -> String {
    if CEL_RESERVED.contains(&name) {
        return format!("__{name}__");
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("__") {
            out.push_str("__underscores__");
            rest = r;
            continue;
        }
        let c = rest.chars().next().expect("non-empty");
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn to_cel(schema: Option<&Value>, v: &Value) -> CelValue {
    to_cel_except(schema, v, "")
}

/// `to_cel`, leaving out the property `skip` of an object (none when empty).
fn to_cel_except(schema: Option<&Value>, v: &Value, skip: &str) -> CelValue {
    let ty = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
    let format = schema.and_then(|s| s.get("format")).and_then(Value::as_str);
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            if ty == Some("number") {
                CelValue::Float(n.as_f64().unwrap_or(0.0))
            } else if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                CelValue::UInt(u)
            } else {
                CelValue::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => match format {
            Some("date-time") => match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(t) => CelValue::Timestamp(t),
                Err(_) => CelValue::String(Arc::new(s.clone())),
            },
            Some("byte") => {
                use base64::Engine;
                match base64::engine::general_purpose::STANDARD.decode(s) {
                    Ok(b) => CelValue::Bytes(Arc::new(b)),
                    Err(_) => CelValue::String(Arc::new(s.clone())),
                }
            }
            Some("duration") => match parse_go_duration(s) {
                Some(d) => CelValue::Duration(d),
                None => CelValue::String(Arc::new(s.clone())),
            },
            _ => CelValue::String(Arc::new(s.clone())),
        },
        Value::Array(items) => {
            let is = schema.and_then(|s| s.get("items"));
            CelValue::List(Arc::new(items.iter().map(|i| to_cel(is, i)).collect()))
        }
        Value::Object(map) => {
            let props = schema.and_then(|s| s.get("properties")).and_then(Value::as_object);
            let mut out: HashMap<Key, CelValue> = HashMap::with_capacity(map.len());
            for (k, val) in map.iter().filter(|(k, _)| skip.is_empty() || *k != skip) {
                let (name, ps) = match props.and_then(|p| p.get(k)) {
                    Some(ps) => (escape_property(k), Some(ps)),
                    None => (k.clone(), schema.and_then(|s| property_schema(s, k))),
                };
                out.insert(Key::String(Arc::new(name)), to_cel(ps, val));
            }
            CelValue::Map(cel::objects::Map { map: Arc::new(out) })
        }
    }
}

/// Parses a Go duration (`1h30m`, `720h`, `1.5s`, `300ms`, `-2m`).
fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_ns += n * scale;
    }
    let ns = if neg { -total_ns } else { total_ns };
    Some(chrono::Duration::nanoseconds(ns as i64))
}

// ---------------------------------------------------------------------------------------------
// Kubernetes' CEL library additions
// ---------------------------------------------------------------------------------------------

fn register_functions(ctx: &mut Context) {
    // Names the environment already declares are skipped (add_function refuses them).
    let _ = ctx.add_function("isSorted", |This(this): This<CelValue>| -> Result<bool, ExecutionError> {
        let items = list_of(&this, "isSorted")?;
        for w in items.windows(2) {
            match w[0].partial_cmp(&w[1]) {
                Some(std::cmp::Ordering::Greater) => return Ok(false),
                Some(_) => {}
                None => return Err(ExecutionError::ValuesNotComparable(w[0].clone(), w[1].clone())),
            }
        }
        Ok(true)
    });
    let _ = ctx.add_function("sum", |This(this): This<CelValue>| -> Result<CelValue, ExecutionError> {
        let items = list_of(&this, "sum")?;
        let mut int_acc: i64 = 0;
        let mut float_acc: f64 = 0.0;
        let mut is_float = false;
        for i in items.iter() {
            match i {
                CelValue::Int(x) => {
                    int_acc = int_acc
                        .checked_add(*x)
                        .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?
                }
                CelValue::UInt(x) => int_acc += *x as i64,
                CelValue::Float(x) => {
                    is_float = true;
                    float_acc += x
                }
                CelValue::Duration(_) => {
                    return Err(ExecutionError::function_error("sum", "durations are not supported"));
                }
                other => return Err(ExecutionError::function_error("sum", format!("unsupported item {other:?}"))),
            }
        }
        Ok(if is_float { CelValue::Float(float_acc + int_acc as f64) } else { CelValue::Int(int_acc) })
    });
    for (name, want) in [("min", std::cmp::Ordering::Less), ("max", std::cmp::Ordering::Greater)] {
        let _ = ctx.add_function(name, move |This(this): This<CelValue>| -> Result<CelValue, ExecutionError> {
            let items = list_of(&this, name)?;
            let mut best =
                items.first().cloned().ok_or_else(|| ExecutionError::function_error(name, "list is empty"))?;
            for i in items.iter().skip(1) {
                match i.partial_cmp(&best) {
                    Some(o) if o == want => best = i.clone(),
                    Some(_) => {}
                    None => return Err(ExecutionError::ValuesNotComparable(best.clone(), i.clone())),
                }
            }
            Ok(best)
        });
    }
    let _ = ctx.add_function("isURL", |s: Arc<String>| -> bool { is_url(&s) });
    // `matches` as the API server has it (cel-go compiles a rule's regex once): the cel crate's
    // own compiles the regex at every call, which was a seventh of the testbed's CPU (issue 16).
    let _ = ctx.add_function(
        "matches",
        |This(this): This<Arc<String>>, pattern: Arc<String>| -> Result<bool, ExecutionError> {
            match super::schema::cached_regex(&pattern) {
                Some(re) => Ok(re.is_match(&this)),
                None => Err(ExecutionError::function_error("matches", format!("'{pattern}' not a valid regex"))),
            }
        },
    );
}

fn list_of<'a>(v: &'a CelValue, func: &str) -> Result<&'a Arc<Vec<CelValue>>, ExecutionError> {
    match v {
        CelValue::List(l) => Ok(l),
        other => Err(ExecutionError::function_error(func, format!("expected a list, got {}", type_name(other)))),
    }
}

/// Kubernetes' `isURL`: an absolute URI with a scheme, or an absolute path.
fn is_url(s: &str) -> bool {
    if s.starts_with('/') {
        return !s.contains(char::is_whitespace);
    }
    match s.split_once(':') {
        Some((scheme, rest)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
