//! `x-kubernetes-validations` (CEL) rules of CRD schemas.
//!
//! Rules are compiled with the `cel` crate (its standard library, the strings and lists
//! extensions, plus Kubernetes' list helpers and `isURL`), evaluated at every schema node with
//! `self` bound to the value there (typed from the schema: `number` fields are doubles,
//! `format: date-time` strings timestamps, `format: byte` strings bytes, `format: duration`
//! strings durations), and `oldSelf` for transition rules when the old object has a value at
//! the same path (object properties, map values and items of `x-kubernetes-list-type: map` lists
//! correlate, as in Kubernetes). Only what the node's rules can observe of those values (the
//! fields their field selections reach, see `Need`) is converted and bound, which answers as
//! the whole value would. Failures are reported as kube-apiserver does:
//! `Invalid value: "object": <message>` at the node's path (or the rule's `fieldPath`).
//!
//! Known gaps: no static type checking (a rule naming a field the schema lacks compiles, and
//! fails at evaluation with `no such key`), no cost limits, none of the newer Kubernetes
//! libraries (quantity, ip/cidr, format, authz) beyond what is listed above.
use super::schema::{FieldError, child_path, index_path, property_schema};
use cel::common::ast::{EntryExpr, Expr};
use cel::extractors::This;
use cel::objects::{Key, OptionalValue};
use cel::{Context, Env, ExecutionError, IdedExpr, Program, Value as CelValue};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Evaluates every `x-kubernetes-validations` rule in the schema against `new` (and, for
/// transition rules that use `oldSelf`, against `old` when there is one). A failing rule yields
/// its `message` (or `messageExpression`, or kube-apiserver's default text) at its field path.
pub fn validate_rules(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(rules) = RuleTree::of(schema) {
        walk(schema, &rules, new, old, "", true, &mut errs);
    }
    errs
}

/// Where a schema's rules are: its nodes with `x-kubernetes-validations` and the nodes above
/// them, worked out once per CRD version. The walk goes only there: most of an object (a whole
/// `status`, say) has no rule at or below it.
#[derive(Debug)]
pub struct RuleTree {
    /// This node has rules.
    here: bool,
    /// Declared properties with rules at or below them. When `additional` has rules, every
    /// declared property is listed (`None` for those without), as a declared name does not
    /// take `additionalProperties`.
    properties: Vec<(String, Option<RuleTree>)>,
    additional: Option<Box<RuleTree>>,
    items: Option<Box<RuleTree>>,
}

impl RuleTree {
    /// The rules of `schema`; `None` when it has none at or below its root.
    pub fn of(schema: &Value) -> Option<RuleTree> {
        let node = schema.as_object()?;
        let here = node.get("x-kubernetes-validations").and_then(Value::as_array).is_some_and(|r| !r.is_empty());
        let additional = node.get("additionalProperties").filter(|a| a.is_object()).and_then(Self::of).map(Box::new);
        let items = node.get("items").and_then(Self::of).map(Box::new);
        let properties: Vec<(String, Option<RuleTree>)> = node
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, property)| (name.clone(), Self::of(property)))
            .filter(|(_, rules)| rules.is_some() || additional.is_some())
            .collect();
        let below = additional.is_some() || items.is_some() || properties.iter().any(|(_, r)| r.is_some());
        (here || below).then_some(RuleTree { here, properties, additional, items })
    }

    /// The rules of property `key`'s schema (see [`property_schema`]).
    fn property(&self, key: &str) -> Option<&RuleTree> {
        match self.properties.iter().find(|(name, _)| name == key) {
            Some((_, rules)) => rules.as_ref(),
            None => self.additional.as_deref(),
        }
    }
}

/// What kube-apiserver answers for a custom resource's body (after pruning and defaulting): the
/// schema's errors, then the CEL rules, unless a schema error is of a kind that blocks them (a
/// wrong type, a missing required field, an unsupported enum value, a string, list or map over
/// its maximum). Then the rules are not run, and one more error says so, as in
/// apiextensions-apiserver's `hasBlockingErr`.
pub fn validate_custom_resource(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    validate_object(schema, RuleTree::of(schema).as_ref(), new, old)
}

/// [`validate_custom_resource`] with the schema's rules worked out already.
pub fn validate_object(schema: &Value, rules: Option<&RuleTree>, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    with_rules(super::schema::validate(schema, new), schema, rules, new, old)
}

/// [`validate_custom_resource`] for a write to the status subresource: kube-apiserver checks
/// only `status` against its own schema (its `statusSchemaValidator`; the rest of the object is
/// the stored one), then the rules of the whole object.
pub fn validate_status_write(
    schema: &Value,
    status_schema: &Value,
    rules: Option<&RuleTree>,
    new: &Value,
    old: Option<&Value>,
) -> Vec<FieldError> {
    let errs = match new.get("status") {
        Some(status) => super::schema::validate_at(status_schema, status, "status"),
        None => Vec::new(),
    };
    with_rules(errs, schema, rules, new, old)
}

/// The schema's errors `errs`, and the rules' unless one of them blocks them.
fn with_rules(
    mut errs: Vec<FieldError>,
    schema: &Value,
    rules: Option<&RuleTree>,
    new: &Value,
    old: Option<&Value>,
) -> Vec<FieldError> {
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
    } else if let Some(rules) = rules {
        walk(schema, rules, new, old, "", true, &mut errs);
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

/// A compiled rule, whether it is a transition rule (uses `oldSelf`), and what it can observe
/// of `self` and `oldSelf` (see [`Need`]).
struct Compiled {
    program: Program,
    uses_old_self: bool,
    self_need: Need,
    old_need: Need,
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
            let (self_need, old_need) = observed(program.expression());
            Arc::new(Compiled { program, uses_old_self, self_need, old_need })
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
// What a rule can observe of `self` and `oldSelf`
// ---------------------------------------------------------------------------------------------

/// What a rule can observe of the value bound to `self` or `oldSelf`, found from its syntax
/// tree, so that only that much is converted to CEL and bound (converting a whole object for
/// each root rule was most of the cost of evaluating them).
///
/// A use of the variable is observed through the longest chain of plain field selections above
/// it (`self.spec.product`, `has(oldSelf.status.order.id)`), which ends at anything else (an
/// index, a call on or with the value, a comparison, a macro, `.?` optional selection): the value
/// at the end of a chain is observed whole, and a presence test (`has()`) only observes whether
/// its field is there. The maps on the way are only ever selected from with the fields of the
/// chains through them, so a map holding only those fields (those the object has) answers the
/// rule exactly as the whole one does.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Need {
    /// Only whether the value is there (`has(x.f)` on its map): it is bound as `null`.
    Presence,
    /// Only these fields of the value, when it is an object (the whole value otherwise). With
    /// no fields, nothing is observed.
    Fields(BTreeMap<String, Need>),
    /// All of it.
    Whole,
}

impl Need {
    fn nothing() -> Need {
        Need::Fields(BTreeMap::new())
    }

    /// Adds `other`: the value then holds what either needs.
    fn merge(&mut self, other: &Need) {
        match (&mut *self, other) {
            (Need::Whole, _) | (_, Need::Presence) => {}
            (_, Need::Whole) | (Need::Presence, Need::Fields(_)) => *self = other.clone(),
            (Need::Fields(mine), Need::Fields(theirs)) => {
                for (k, n) in theirs {
                    match mine.get_mut(k) {
                        Some(m) => m.merge(n),
                        None => {
                            mine.insert(k.clone(), n.clone());
                        }
                    }
                }
            }
        }
    }

    /// Adds the field path `path`, with `leaf` the need at its end.
    fn add_path(&mut self, path: &[String], leaf: Need) {
        let need = path.iter().rev().fold(leaf, |n, f| Need::Fields(BTreeMap::from([(f.clone(), n)])));
        self.merge(&need);
    }
}

#[derive(Clone, Copy)]
enum Bound {
    SelfValue,
    OldSelf,
}

/// `self` or `oldSelf` (also spelt absolutely, `.self`), or neither.
fn bound_variable(name: &str) -> Option<Bound> {
    match name.strip_prefix('.').unwrap_or(name) {
        "self" => Some(Bound::SelfValue),
        "oldSelf" => Some(Bound::OldSelf),
        _ => None,
    }
}

/// What the expression can observe of `self` and of `oldSelf`. When a macro's variable is
/// named like one of them (it would hide it inside the macro), both are needed whole.
fn observed(expr: &IdedExpr) -> (Need, Need) {
    let mut acc = Observed { self_need: Need::nothing(), old_need: Need::nothing(), unsure: false };
    acc.visit(expr);
    if acc.unsure { (Need::Whole, Need::Whole) } else { (acc.self_need, acc.old_need) }
}

struct Observed {
    self_need: Need,
    old_need: Need,
    unsure: bool,
}

impl Observed {
    fn add(&mut self, var: Bound, path: &[String], leaf: Need) {
        match var {
            Bound::SelfValue => self.self_need.add_path(path, leaf),
            Bound::OldSelf => self.old_need.add_path(path, leaf),
        }
    }

    fn visit(&mut self, expr: &IdedExpr) {
        match &expr.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => {
                if let Some(var) = bound_variable(name) {
                    self.add(var, &[], Need::Whole);
                }
            }
            Expr::Select(select) => match selection_chain(&select.operand.expr) {
                Some((var, mut path)) => {
                    path.push(select.field.clone());
                    self.add(var, &path, if select.test { Need::Presence } else { Need::Whole });
                }
                None => self.visit(&select.operand),
            },
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.visit(target);
                }
                for arg in &call.args {
                    self.visit(arg);
                }
            }
            Expr::Comprehension(comp) => {
                let vars = [Some(&comp.iter_var), comp.iter_var2.as_ref(), Some(&comp.accu_var)];
                if vars.into_iter().flatten().any(|v| bound_variable(v).is_some()) {
                    self.unsure = true;
                }
                for e in [&comp.iter_range, &comp.accu_init, &comp.loop_cond, &comp.loop_step, &comp.result] {
                    self.visit(e);
                }
            }
            Expr::List(list) => {
                for e in &list.elements {
                    self.visit(e);
                }
            }
            Expr::Map(map) => self.visit_entries(&map.entries),
            Expr::Struct(st) => self.visit_entries(&st.entries),
        }
    }

    fn visit_entries(&mut self, entries: &[cel::common::ast::IdedEntryExpr]) {
        for entry in entries {
            match &entry.expr {
                EntryExpr::StructField(f) => self.visit(&f.value),
                EntryExpr::MapEntry(m) => {
                    self.visit(&m.key);
                    self.visit(&m.value);
                }
            }
        }
    }
}

/// The variable and the fields of `expr` when it is `self` or `oldSelf` with plain field
/// selections on it (`self.spec.product`: `self`, [spec, product]).
fn selection_chain(expr: &Expr) -> Option<(Bound, Vec<String>)> {
    let mut fields = Vec::new();
    let mut e = expr;
    loop {
        match e {
            Expr::Ident(name) => {
                let var = bound_variable(name)?;
                fields.reverse();
                return Some((var, fields));
            }
            Expr::Select(select) if !select.test => {
                fields.push(select.field.clone());
                e = &select.operand.expr;
            }
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Walking the schema
// ---------------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn walk(
    schema: &Value,
    rules: &RuleTree,
    new: &Value,
    old: Option<&Value>,
    path: &str,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    if !schema.is_object() || new.is_null() {
        return;
    }
    if rules.here
        && let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array)
    {
        let plans: Vec<_> = rules.iter().map(|rule| plan_rule(schema, rule, new, old, path, root)).collect();
        let mut bound = Bindings::new(plans.iter().flatten().flatten());
        for (rule, plan) in rules.iter().zip(&plans) {
            match plan {
                None => {}
                Some(Err(e)) => errs.push(e.clone()),
                Some(Ok(run)) => eval_rule(schema, rule, run, new, old, path, root, &mut bound, errs),
            }
        }
    }
    match new {
        Value::Object(map) => {
            for (k, v) in map {
                if root && matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                    continue;
                }
                let Some(below) = rules.property(k) else {
                    continue;
                };
                let Some(ps) = property_schema(schema, k) else {
                    continue;
                };
                let old_child = old.and_then(|o| o.get(k));
                walk(ps, below, v, old_child, &child_path(path, k), false, errs);
            }
        }
        Value::Array(items) => {
            let (Some(below), Some(is)) = (rules.items.as_deref(), schema.get("items")) else {
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
                walk(is, below, item, old_item, &index_path(path, i), false, errs);
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

/// A rule that is to be evaluated: its program, how `oldSelf` is bound, and its compiled
/// `messageExpression` (none when it has none or it does not compile).
struct Run {
    compiled: Arc<Compiled>,
    binding: Binding,
    message: Option<Arc<Compiled>>,
}

/// The rules of one schema node see the same `self` and `oldSelf`: the values are converted to
/// CEL once, holding what any of the node's rules to be evaluated (or their messageExpressions)
/// can observe of them (see [`Need`]), and each way of binding them (`self` alone, with
/// `oldSelf`, with an optional `oldSelf`) makes one context, shared by the node's rules.
struct Bindings {
    self_need: Need,
    old_need: Need,
    binds_old: bool,
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
    fn new<'a>(runs: impl Iterator<Item = &'a Run>) -> Bindings {
        let (mut self_need, mut old_need, mut binds_old) = (Need::nothing(), Need::nothing(), false);
        for run in runs {
            let binds = run.binding != Binding::SelfOnly;
            binds_old |= binds;
            for c in std::iter::once(&run.compiled).chain(&run.message) {
                self_need.merge(&c.self_need);
                if binds {
                    old_need.merge(&c.old_need);
                }
            }
        }
        Bindings { self_need, old_need, binds_old, values: None, contexts: Vec::new() }
    }

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
        let (self_need, old_need) = (&self.self_need, &self.old_need);
        let old = old.filter(|_| self.binds_old);
        let (self_val, old_val) = self
            .values
            .get_or_insert_with(|| {
                (root_view(schema, new, root, self_need), old.map(|o| root_view(schema, o, root, old_need)))
            })
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

fn shown_path(path: &str, root: bool) -> String {
    if root && path.is_empty() { "<nil>".to_string() } else { path.to_string() }
}

/// Whether `rule` is to be evaluated here (`None` when it is not), and how; or its compile error.
fn plan_rule(
    schema: &Value,
    rule: &Value,
    new: &Value,
    old: Option<&Value>,
    path: &str,
    root: bool,
) -> Option<Result<Run, FieldError>> {
    let src = rule.get("rule").and_then(Value::as_str)?;
    let compiled = match compile(src) {
        Ok(c) => c,
        Err(e) => {
            let ty = Value::String(schema_type(schema));
            let detail = format!("rule compile error: compilation failed: {e}");
            return Some(Err(FieldError::invalid(&shown_path(path, root), &ty, &detail)));
        }
    };
    let optional_old = rule.get("optionalOldSelf").and_then(Value::as_bool).unwrap_or(false);
    if compiled.uses_old_self && old.is_none() && !optional_old {
        // A transition rule without a correlated old value is not evaluated (creates, new items).
        return None;
    }
    // Validation ratcheting (KEP-4008, GA in Kubernetes 1.33): a rule that does not use `oldSelf`
    // does not fail a value that is unchanged from the stored object, so an unchanged value
    // (a status write leaves the spec as it was) is not evaluated at all.
    if !compiled.uses_old_self && old == Some(new) {
        return None;
    }
    let binding = match (compiled.uses_old_self, optional_old) {
        (false, _) => Binding::SelfOnly,
        (true, false) => Binding::OldSelf,
        (true, true) => Binding::OptionalOldSelf,
    };
    let message = rule.get("messageExpression").and_then(Value::as_str).and_then(|m| compile(m).ok());
    Some(Ok(Run { compiled, binding, message }))
}

#[allow(clippy::too_many_arguments)]
fn eval_rule(
    schema: &Value,
    rule: &Value,
    run: &Run,
    new: &Value,
    old: Option<&Value>,
    path: &str,
    root: bool,
    bound: &mut Bindings,
    errs: &mut Vec<FieldError>,
) {
    let ctx = bound.context(run.binding, schema, new, old, root);
    let result = run.compiled.program.execute(ctx);
    if matches!(result, Ok(CelValue::Bool(true))) {
        return;
    }
    // The rule failed: what the error says.
    let shown_path = shown_path(path, root);
    let ty = Value::String(schema_type(schema));
    let rule_err = rule_error_string(rule);
    match result {
        Ok(CelValue::Bool(true)) => {}
        Ok(CelValue::Bool(false)) => {
            let field = match rule.get("fieldPath").and_then(Value::as_str) {
                Some(fp) if !fp.is_empty() => join_field_path(path, fp),
                _ => shown_path.clone(),
            };
            let mut message = rule_message_or_default(rule);
            if let Some(me) = &run.message
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

fn eval_message_expression(compiled: &Compiled, ctx: &Context) -> Option<String> {
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

/// `v` in CEL, typed by `schema`, holding what `need` asks for. At the root, rules only see
/// `metadata.name` and `metadata.generateName`, as in Kubernetes.
fn root_view(schema: &Value, v: &Value, root: bool, need: &Need) -> CelValue {
    let Some(meta) = v.get("metadata").and_then(Value::as_object).filter(|_| root) else {
        return to_cel_part(Some(schema), v, need, "");
    };
    let CelValue::Map(mut converted) = to_cel_part(Some(schema), v, need, "metadata") else {
        unreachable!("an object converts to a map")
    };
    let meta_need = match need {
        Need::Fields(fields) => fields.get("metadata"),
        other => Some(other),
    };
    if let Some(meta_need) = meta_need {
        let seen: serde_json::Map<String, Value> = meta
            .iter()
            .filter(|(k, _)| *k == "name" || *k == "generateName")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let meta_schema = property_schema(schema, "metadata");
        let seen = to_cel_part(meta_schema, &Value::Object(seen), meta_need, "");
        Arc::make_mut(&mut converted.map).insert(Key::String(Arc::new("metadata".into())), seen);
    }
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
fn escape_property(name: &str) -> Cow<'_, str> {
    if CEL_RESERVED.contains(&name) {
        return Cow::Owned(format!("__{name}__"));
    }
    if !name.contains(['.', '-', '/']) && !name.contains("__") {
        return Cow::Borrowed(name);
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
    Cow::Owned(out)
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
            let mut out: HashMap<Key, CelValue> = HashMap::with_capacity(map.len());
            for (name, ps, val) in cel_members(schema, map, skip) {
                out.insert(Key::String(Arc::new(name.into_owned())), to_cel(ps, val));
            }
            CelValue::Map(cel::objects::Map { map: Arc::new(out) })
        }
    }
}

/// The members of an object typed by `schema` but `skip` (none when empty), each with its CEL
/// name and its schema (see [`cel_property`]).
fn cel_members<'a>(
    schema: Option<&'a Value>,
    map: &'a serde_json::Map<String, Value>,
    skip: &'a str,
) -> impl Iterator<Item = (Cow<'a, str>, Option<&'a Value>, &'a Value)> {
    let props = schema.and_then(|s| s.get("properties")).and_then(Value::as_object);
    map.iter().filter(move |(k, _)| skip.is_empty() || *k != skip).map(move |(k, val)| {
        let (name, ps) = cel_property(schema, props, k);
        (name, ps, val)
    })
}

/// The CEL name of the property `k` of an object typed by `schema` (whose `properties` are
/// `props`), and its schema: declared properties are escaped, others (`additionalProperties`)
/// are not.
fn cel_property<'a, 'k>(
    schema: Option<&'a Value>,
    props: Option<&'a serde_json::Map<String, Value>>,
    k: &'k str,
) -> (Cow<'k, str>, Option<&'a Value>) {
    match props.and_then(|p| p.get(k)) {
        Some(ps) => (escape_property(k), Some(ps)),
        None => (Cow::Borrowed(k), schema.and_then(|s| property_schema(s, k))),
    }
}

/// `to_cel_except`, holding only what `need` asks for: of an object, only the properties it
/// names (by their CEL names), each as its own need asks; a value only tested for presence is
/// `null`. Anything but an object is converted whole.
fn to_cel_part(schema: Option<&Value>, v: &Value, need: &Need, skip: &str) -> CelValue {
    let fields = match (need, v) {
        (Need::Presence, _) => return CelValue::Null,
        (Need::Fields(fields), Value::Object(_)) => fields,
        _ => return to_cel_except(schema, v, skip),
    };
    let mut out: HashMap<Key, CelValue> = HashMap::with_capacity(fields.len());
    if let (Value::Object(map), false) = (v, fields.is_empty()) {
        for (name, ps, val) in cel_members(schema, map, skip) {
            if let Some(n) = fields.get(name.as_ref()) {
                out.insert(Key::String(Arc::new(name.into_owned())), to_cel_part(ps, val, n, ""));
            }
        }
    }
    CelValue::Map(cel::objects::Map { map: Arc::new(out) })
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
