use super::*;
use serde_json::json;

const DOMAINS_RULE: &str = r"self.all(d, d.matches('^(\\*\\.)?([a-z0-9\\x{80}-\\x{10FFFF}]([-a-z0-9\\x{80}-\\x{10FFFF}]{0,61}[a-z0-9\\x{80}-\\x{10FFFF}])?\\.)+[a-z0-9\\x{80}-\\x{10FFFF}]([-a-z0-9\\x{80}-\\x{10FFFF}]{0,61}[a-z0-9\\x{80}-\\x{10FFFF}])?$'))";

/// Shaped like certorder's CertificateOrder schema, with the same kind of rules.
fn order_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "!self.domains.exists(d, d.startsWith('*.')) || self.domainValidation.method == 'DNS'",
                     "message": "wildcard names (*.example.com) can only be validated by DNS"},
                    {"rule": "self.product.type == 'DV' || has(self.organization)",
                     "message": "OV and EV certificates need spec.organization"},
                    {"rule": "self.product.type == 'DV' || (has(self.documents) && has(self.documents.confirmationLetter))",
                     "message": "OV and EV certificates need spec.documents.confirmationLetter"}
                ],
                "properties": {
                    "domains": {"type": "array", "items": {"type": "string"},
                                "x-kubernetes-validations": [{"rule": DOMAINS_RULE, "message": "each domain must be a lowercase DNS name"}]},
                    "domainValidation": {"type": "object", "properties": {"method": {"type": "string"}}},
                    "product": {"type": "object", "properties": {"type": {"type": "string"}}},
                    "organization": {"type": "object", "properties": {"name": {"type": "string"}}},
                    "documents": {"type": "object", "properties": {"confirmationLetter": {"type": "object", "properties": {"name": {"type": "string"}}}}},
                    "privateKey": {"type": "object",
                        "x-kubernetes-validations": [{"rule": "!has(self.size) || (self.algorithm == 'RSA' ? self.size in [2048, 3072, 4096] : self.size in [256, 384])",
                                                      "message": "privateKey.size must be 256 or 384 for ECDSA, and 2048, 3072 or 4096 for RSA"}],
                        "properties": {"algorithm": {"type": "string"}, "size": {"type": "integer"}}}
                }
            }
        }
    })
}

fn order(spec: Value) -> Value {
    json!({"apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder", "metadata": {"name": "o", "namespace": "d"}, "spec": spec})
}

fn lines(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(|e| format!("{} | {} | {}", e.reason, e.field, e.message)).collect()
}

#[test]
fn operator_rules_pass_and_fail_with_their_messages() {
    let schema = order_schema();
    let dv = json!({"domains": ["example.com", "*.example.com", "bücher.example"], "domainValidation": {"method": "DNS"}, "product": {"type": "DV"}});
    assert!(validate_rules(&schema, &order(dv), None).is_empty());

    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"domains": ["*.example.com"], "domainValidation": {"method": "HTTP"}, "product": {"type": "DV"}}),
            vec![
                r#"FieldValueInvalid | spec | Invalid value: "object": wildcard names (*.example.com) can only be validated by DNS"#,
            ],
        ),
        (
            json!({"domains": ["example.com"], "domainValidation": {"method": "HTTP"}, "product": {"type": "OV"}}),
            vec![
                r#"FieldValueInvalid | spec | Invalid value: "object": OV and EV certificates need spec.organization"#,
                r#"FieldValueInvalid | spec | Invalid value: "object": OV and EV certificates need spec.documents.confirmationLetter"#,
            ],
        ),
        (
            json!({"domains": ["example.com"], "domainValidation": {"method": "HTTP"}, "product": {"type": "OV"},
                   "organization": {"name": "ACME"}, "documents": {}}),
            vec![
                r#"FieldValueInvalid | spec | Invalid value: "object": OV and EV certificates need spec.documents.confirmationLetter"#,
            ],
        ),
        (
            json!({"domains": ["Example.com", "example.com."], "domainValidation": {"method": "DNS"}, "product": {"type": "DV"}}),
            vec![
                r#"FieldValueInvalid | spec.domains | Invalid value: "array": each domain must be a lowercase DNS name"#,
            ],
        ),
        (
            json!({"domains": ["example.com"], "domainValidation": {"method": "DNS"}, "product": {"type": "DV"},
                   "privateKey": {"algorithm": "ECDSA", "size": 2048}}),
            vec![
                r#"FieldValueInvalid | spec.privateKey | Invalid value: "object": privateKey.size must be 256 or 384 for ECDSA, and 2048, 3072 or 4096 for RSA"#,
            ],
        ),
    ];
    for (spec, want) in cases {
        let got = lines(&validate_rules(&schema, &order(spec.clone()), None));
        assert_eq!(got, want, "spec {spec}");
    }
}

#[test]
fn accessing_an_absent_field_is_an_evaluation_error() {
    // Missing `domainValidation`: the first rule reads it and fails to evaluate, as in Kubernetes.
    let schema = order_schema();
    let got = lines(&validate_rules(&schema, &order(json!({"domains": ["*.a.com"], "product": {"type": "DV"}})), None));
    assert_eq!(
        got,
        vec![
            r#"FieldValueInvalid | spec | Invalid value: "object": no such key: domainValidation evaluating rule: wildcard names (*.example.com) can only be validated by DNS"#
        ]
    );
}

fn scalar_rule(rule: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "name": {"type": "string", "x-kubernetes-validations": [rule]},
        "n": {"type": "integer"},
        "ratio": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "when": {"type": "string", "format": "date-time"},
        "every": {"type": "string", "format": "duration"},
        "x-y": {"type": "string"},
        "namespace": {"type": "string"}
    }, "x-kubernetes-validations": [{"rule": "true"}]}}})
}

/// Evaluates `rule` on the spec object; `true` when it passes.
fn spec_rule_passes(rule: &str, spec: Value) -> Result<bool, String> {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "name": {"type": "string"}, "n": {"type": "integer"}, "ratio": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "when": {"type": "string", "format": "date-time"},
        "every": {"type": "string", "format": "duration"},
        "blob": {"type": "string", "format": "byte"},
        "x-y": {"type": "string"}, "namespace": {"type": "string"}
    }, "x-kubernetes-validations": [{"rule": rule}]}}});
    let errs = validate_rules(&schema, &json!({"spec": spec}), None);
    match errs.as_slice() {
        [] => Ok(true),
        [e] if e.message.contains("failed rule: ") => Ok(false),
        [e] => Err(e.message.clone()),
        _ => Err(format!("{errs:?}")),
    }
}

#[test]
fn cel_library_as_kubernetes_rules_use_it() {
    let spec = json!({
        "name": "Hello-World", "n": 3, "ratio": 1, "tags": ["b", "a", "c"], "labels": {"app": "web", "tier": "front"},
        "when": "2025-01-02T03:04:05Z", "every": "1h30m", "blob": "aGk=", "x-y": "dash", "namespace": "ns"
    });
    let cases: Vec<(&str, bool)> = vec![
        ("has(self.name) && !has(self.missing)", true),
        ("size(self.name) == 11 && self.name.size() == 11", true),
        ("self.tags.all(t, size(t) == 1)", true),
        ("self.tags.exists(t, t == 'a')", true),
        ("self.tags.exists_one(t, t == 'z')", false),
        ("self.tags.map(t, t + t) == ['bb', 'aa', 'cc']", true),
        ("self.tags.filter(t, t != 'a') == ['b', 'c']", true),
        ("'a' in self.tags && 'app' in self.labels", true),
        ("self.labels.all(k, k in ['app', 'tier'])", true),
        ("self.labels['app'] == 'web'", true),
        ("self.name.matches('^[A-Z][a-z]+-[A-Z][a-z]+$')", true),
        ("matches(self.name, '^Hello') && !self.name.matches('^World')", true),
        ("self.tags.all(t, t.matches('^[a-c]$')) && !self.tags.exists(t, t.matches('[0-9]'))", true),
        ("self.name.startsWith('Hello') && self.name.endsWith('World') && self.name.contains('-')", true),
        ("self.name.lowerAscii() == 'hello-world' && self.name.upperAscii() == 'HELLO-WORLD'", true),
        ("self.name.indexOf('-') == 5 && self.name.lastIndexOf('o') == 7", true),
        ("' x '.trim() == 'x' && self.name.replace('-', '_') == 'Hello_World'", true),
        ("self.name.split('-') == ['Hello', 'World'] && self.tags.join(',') == 'b,a,c'", true),
        ("self.name.substring(0, 5) == 'Hello'", true),
        ("self.ratio == 1.0 && self.ratio > 0.5", true),
        ("self.n in [1, 2, 3]", true),
        ("self.n > 5", false),
        ("self.when > timestamp('2024-01-01T00:00:00Z')", true),
        ("self.every == duration('90m')", true),
        ("self.blob == b'hi'", true),
        ("self.x__dash__y == 'dash' && self.__namespace__ == 'ns'", true),
        ("self.?missing.orValue('d') == 'd' && self.?name.hasValue()", true),
        ("self.tags.isSorted()", false),
        ("['a', 'b'].isSorted() && [1, 2, 3].sum() == 6 && [3, 1, 2].min() == 1 && [3, 1, 2].max() == 3", true),
        ("isURL('https://example.com/x') && !isURL('not a url')", true),
        ("self.tags.sort() == ['a', 'b', 'c']", true),
        ("int(self.n) + 1 == 4 && string(self.n) == '3'", true),
    ];
    for (rule, want) in cases {
        assert_eq!(spec_rule_passes(rule, spec.clone()), Ok(want), "rule {rule}");
    }
}

#[test]
fn evaluation_errors_are_reported_with_the_rule() {
    let spec = json!({"name": "x", "n": 1});
    let err = spec_rule_passes("self.n / 0 == 1", spec.clone()).unwrap_err();
    assert_eq!(err, r#"Invalid value: "object": division by zero evaluating rule: self.n / 0 == 1"#);
    let err = spec_rule_passes("self.name + 1 == 'x'", spec.clone()).unwrap_err();
    assert!(err.contains("call arguments did not match a supported operator, function or macro signature for rule: self.name + 1 == 'x'"), "{err}");
    let err = spec_rule_passes("self.name.matches('(x')", spec.clone()).unwrap_err();
    assert!(err.contains("'(x' not a valid regex"), "{err}");
    let err = spec_rule_passes("self.name", spec).unwrap_err();
    assert!(err.contains("rule did not evaluate to a bool"), "{err}");
}

#[test]
fn default_message_message_expression_field_path_and_reason() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
    "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "m": {"type": "object", "additionalProperties": {"type": "string"}}},
    "x-kubernetes-validations": [
        {"rule": "self.min <= self.max"},
        {"rule": "self.min <= self.max", "messageExpression": "'min (' + string(self.min) + ') must not exceed max (' + string(self.max) + ')'"},
        {"rule": "self.min <= self.max", "message": "static", "messageExpression": "''"},
        {"rule": "self.min <= self.max", "message": "on max", "fieldPath": ".max", "reason": "FieldValueForbidden"},
        {"rule": "self.min <= self.max", "message": "needed", "fieldPath": ".m['a.b']", "reason": "FieldValueRequired"},
        {"rule": "self.min <= self.max", "reason": "FieldValueDuplicate"}
    ]}}});
    let got = lines(&validate_rules(&schema, &json!({"spec": {"min": 5, "max": 2}}), None));
    assert_eq!(
        got,
        vec![
            r#"FieldValueInvalid | spec | Invalid value: "object": failed rule: self.min <= self.max"#,
            r#"FieldValueInvalid | spec | Invalid value: "object": min (5) must not exceed max (2)"#,
            r#"FieldValueInvalid | spec | Invalid value: "object": static"#,
            "FieldValueForbidden | spec.max | Forbidden: on max",
            "FieldValueRequired | spec.m.a.b | Required value: needed",
            r#"FieldValueDuplicate | spec | Duplicate value: "object""#,
        ]
    );
    assert!(validate_rules(&schema, &json!({"spec": {"min": 1, "max": 2}}), None).is_empty());
}

#[test]
fn rules_run_at_every_level_items_and_map_values() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {"w": {"type": "integer",
            "x-kubernetes-validations": [{"rule": "self >= 0", "message": "w must not be negative"}]}},
            "x-kubernetes-validations": [{"rule": "has(self.w)", "message": "w is required"}]}},
        "byName": {"type": "object", "additionalProperties": {"type": "string",
            "x-kubernetes-validations": [{"rule": "self.size() <= 3", "message": "too long"}]}}
    }}}});
    let obj = json!({"spec": {"items": [{"w": 1}, {"w": -1}, {}], "byName": {"a": "ok", "b": "toolong"}}});
    let got = lines(&validate_rules(&schema, &obj, None));
    assert_eq!(
        got,
        vec![
            r#"FieldValueInvalid | spec.items[1].w | Invalid value: "integer": w must not be negative"#,
            r#"FieldValueInvalid | spec.items[2] | Invalid value: "object": w is required"#,
            r#"FieldValueInvalid | spec.byName.b | Invalid value: "string": too long"#,
        ]
    );
}

#[test]
fn root_rules_see_name_but_print_nil_path() {
    let schema = json!({"type": "object", "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('ok-')", "message": "name must start with ok-"},
        {"rule": "!has(self.metadata.namespace)", "message": "namespace is hidden from rules"}
    ], "properties": {"spec": {"type": "object"}}});
    assert!(
        validate_rules(&schema, &json!({"metadata": {"name": "ok-1", "namespace": "n"}, "spec": {}}), None).is_empty()
    );
    let got =
        lines(&validate_rules(&schema, &json!({"metadata": {"name": "bad", "namespace": "n"}, "spec": {}}), None));
    assert_eq!(got, vec![r#"FieldValueInvalid | <nil> | Invalid value: "object": name must start with ok-"#]);
}

#[test]
fn transition_rules_need_a_correlated_old_value() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "mode": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]},
        "n": {"type": "integer", "x-kubernetes-validations": [{"rule": "!oldSelf.hasValue() || self >= oldSelf.value()", "optionalOldSelf": true, "message": "n may only grow"}]},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "port is immutable"}]}}}},
        "list": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "never correlated"}]}}
    }}}});
    let new = json!({"spec": {"mode": "a", "n": 1, "ports": [{"name": "http", "port": 80}], "list": ["x"]}});
    // Create: no old object, transition rules are skipped (optionalOldSelf ones run with none).
    assert!(validate_rules(&schema, &new, None).is_empty());
    // Same values: fine.
    assert!(validate_rules(&schema, &new, Some(&new)).is_empty());
    let old = json!({"spec": {"mode": "b", "n": 5, "ports": [{"name": "https", "port": 443}, {"name": "http", "port": 8080}], "list": ["y"]}});
    let got = lines(&validate_rules(&schema, &new, Some(&old)));
    assert_eq!(
        got,
        vec![
            r#"FieldValueInvalid | spec.mode | Invalid value: "string": mode is immutable"#,
            r#"FieldValueInvalid | spec.n | Invalid value: "integer": n may only grow"#,
            r#"FieldValueInvalid | spec.ports[0].port | Invalid value: "integer": port is immutable"#,
        ]
    );
    // A field added on update has no old value at its path: its transition rule is skipped.
    let old = json!({"spec": {"n": 0}});
    assert!(validate_rules(&schema, &new, Some(&old)).is_empty());
}

#[test]
fn compile_errors_are_reported_with_schema_paths() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [{"rule": "self.a =="}, {"rule": "true", "messageExpression": "'x' +"}, {"rule": "true", "reason": "Nope"}],
        "properties": {"xs": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith("}]}}}}}});
    let errs = compile_errors(&schema);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule",
            "openAPIV3Schema.properties[spec].x-kubernetes-validations[1].messageExpression",
            "openAPIV3Schema.properties[spec].x-kubernetes-validations[2].reason",
            "openAPIV3Schema.properties[spec].properties[xs].items.x-kubernetes-validations[0].rule",
        ]
    );
    assert!(
        errs[0]
            .message
            .starts_with(r#"Invalid value: "self.a ==": compilation failed: ERROR: <input>:1:10: Syntax error"#),
        "{}",
        errs[0].message
    );
    assert!(compile_errors(&order_schema()).is_empty());

    // Evaluating a schema with a broken rule reports the compile error instead of passing.
    let got = lines(&validate_rules(&schema, &json!({"spec": {}}), None));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("compilation failed"), "{got:?}");
}

#[test]
fn property_names_are_escaped_as_in_kubernetes() {
    for (name, want) in [
        ("x-y", "x__dash__y"),
        ("a.b", "a__dot__b"),
        ("a/b", "a__slash__b"),
        ("a__b", "a__underscores__b"),
        ("if", "__if__"),
        ("plain", "plain"),
    ] {
        assert_eq!(escape_property(name), want);
    }
}

#[test]
fn go_durations_parse() {
    assert_eq!(parse_go_duration("1h30m"), Some(chrono::Duration::minutes(90)));
    assert_eq!(parse_go_duration("1.5s"), Some(chrono::Duration::milliseconds(1500)));
    assert_eq!(parse_go_duration("-2m"), Some(chrono::Duration::minutes(-2)));
    assert_eq!(parse_go_duration("0"), Some(chrono::Duration::zero()));
    assert_eq!(parse_go_duration("10"), None);
    assert_eq!(parse_go_duration("5d"), None);
}

#[test]
fn unused_scalar_rule_schema_helper_compiles() {
    // The helper's schema is valid and its rules compile.
    assert!(compile_errors(&scalar_rule(json!({"rule": "self.size() > 0"}))).is_empty());
    let errs = validate_rules(&scalar_rule(json!({"rule": "self.size() > 0"})), &json!({"spec": {"name": ""}}), None);
    assert_eq!(
        lines(&errs),
        vec![r#"FieldValueInvalid | spec.name | Invalid value: "string": failed rule: self.size() > 0"#]
    );
}

/// Validation ratcheting (KEP-4008, GA in 1.33): a value unchanged from the stored object is not
/// failed by a rule that does not use `oldSelf`, so an object stored before a rule tightened can
/// still be written (its status, another field); changing the value is checked again, and
/// transition rules are always evaluated.
#[test]
fn unchanged_values_are_ratcheted_and_transition_rules_are_not() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')", "message": "lowercase only"}]},
        "mode": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]},
        "other": {"type": "integer"}}}}});
    let stored = json!({"spec": {"name": "Bad", "mode": "a", "other": 1}});
    let other_changed = json!({"spec": {"name": "Bad", "mode": "a", "other": 2}});
    assert!(validate_rules(&schema, &other_changed, Some(&stored)).is_empty(), "the unchanged name is ratcheted");
    let got = lines(&validate_rules(&schema, &json!({"spec": {"name": "Worse", "mode": "a"}}), Some(&stored)));
    assert_eq!(got, vec![r#"FieldValueInvalid | spec.name | Invalid value: "string": lowercase only"#]);
    let got = lines(&validate_rules(&schema, &stored, None));
    assert_eq!(
        got,
        vec![r#"FieldValueInvalid | spec.name | Invalid value: "string": lowercase only"#],
        "a create is checked"
    );
    let got = lines(&validate_rules(&schema, &json!({"spec": {"name": "Bad", "mode": "b"}}), Some(&stored)));
    assert_eq!(got, vec![r#"FieldValueInvalid | spec.mode | Invalid value: "string": mode is immutable"#]);
}

/// The leaves of a need as dotted paths: `*` for the whole value, `a.b?` for a presence test,
/// none when nothing is observed.
fn need_paths(need: &Need) -> Vec<String> {
    fn leaves(need: &Need, prefix: &str, out: &mut Vec<String>) {
        match need {
            Need::Whole if prefix.is_empty() => out.push("*".to_string()),
            Need::Whole => out.push(prefix.to_string()),
            Need::Presence => out.push(format!("{prefix}?")),
            Need::Fields(fields) => {
                for (k, n) in fields {
                    leaves(n, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    leaves(need, "", &mut out);
    out
}

/// What the rule `src` observes of `self` and of `oldSelf`.
fn observed_paths(src: &str) -> (Vec<String>, Vec<String>) {
    let compiled = compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    (need_paths(&compiled.self_need), need_paths(&compiled.old_need))
}

#[test]
fn rules_observe_the_ends_of_their_field_selections() {
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("self.spec.product == oldSelf.spec.product", vec!["spec.product"], vec!["spec.product"]),
        (
            "!(has(oldSelf.status) && has(oldSelf.status.order) && has(oldSelf.status.order.id)) || self.spec.product == oldSelf.spec.product",
            vec!["spec.product"],
            vec!["spec.product", "status.order.id?"],
        ),
        (
            "!(has(oldSelf.status) && has(oldSelf.status.order) && has(oldSelf.status.order.domainsCount)) || size(self.spec.domains) <= oldSelf.status.order.domainsCount",
            vec!["spec.domains"],
            vec!["status.order.domainsCount"],
        ),
        // A presence test and a selection of the same field: the field is observed.
        ("has(self.a) && has(self.a.b) && self.a.b.c == 1", vec!["a.b.c"], vec![]),
        ("has(self.a.b) || self.a.size() > 0", vec!["a"], vec![]),
        // Calls with the value as target or argument, macros, indexes and optional selections
        // end the chain: what they are given is observed whole.
        ("self.spec.domains.all(d, d.startsWith('*.'))", vec!["spec.domains"], vec![]),
        ("size(self.spec.domains) == 1 && self.spec.name.matches('x')", vec!["spec.domains", "spec.name"], vec![]),
        ("self.spec.domains[0] == 'a' && self.spec.labels['k'] == 'v'", vec!["spec.domains", "spec.labels"], vec![]),
        ("self['spec'].product == 1", vec!["*"], vec![]),
        ("self.spec.?product.orValue(1) == 1", vec!["spec"], vec![]),
        ("self.spec.list.sortBy(e, e.k) == []", vec!["spec.list"], vec![]),
        ("[self.a, {'k': self.b.c}, {self.d: 1}].size() > 0", vec!["a", "b.c", "d"], vec![]),
        ("(self.a == 1 ? self.b : oldSelf.c).x == 1", vec!["a", "b"], vec!["c"]),
        // The whole value: bare, compared, or given to a call.
        ("self == oldSelf", vec!["*"], vec!["*"]),
        ("self.size() > 0 && oldSelf.x.y", vec!["*"], vec!["x.y"]),
        ("self.exists(k, k == 'status')", vec!["*"], vec![]),
        ("!oldSelf.hasValue() || self >= oldSelf.value()", vec!["*"], vec!["*"]),
        // Absolute names are the same variables; other names are not theirs.
        (".self.spec.x == .oldSelf.spec.x", vec!["spec.x"], vec!["spec.x"]),
        (
            "self.metadata.name.startsWith('ok-') && !has(self.metadata.namespace)",
            vec!["metadata.name", "metadata.namespace?"],
            vec![],
        ),
        ("oldSelf.x == 1", vec![], vec!["x"]),
        ("self.items.all(x, x.self == 1)", vec!["items"], vec![]),
        // A macro variable named like one of them hides it: both are needed whole.
        ("self.spec.domains.all(self, self != '')", vec!["*"], vec!["*"]),
        ("self.spec.domains.exists(oldSelf, oldSelf == 'a')", vec!["*"], vec!["*"]),
    ];
    for (src, want_self, want_old) in cases {
        assert_eq!(observed_paths(src), (strings(&want_self), strings(&want_old)), "{src}");
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Shaped like certorder's CertificateOrder, with its root transition rules: an issued order's
/// status is most of it.
fn purchased_schema(extra_rules: Value) -> Value {
    let mut rules = vec![
        json!({"rule": "!(has(oldSelf.status) && has(oldSelf.status.order) && has(oldSelf.status.order.id)) || self.spec.product == oldSelf.spec.product",
               "message": "spec.product cannot change once the order is purchased", "fieldPath": ".spec.product"}),
        json!({"rule": "!(has(oldSelf.status) && has(oldSelf.status.order) && has(oldSelf.status.order.id)) || self.spec.providerRef == oldSelf.spec.providerRef",
               "message": "spec.providerRef cannot change once the order is purchased", "fieldPath": ".spec.providerRef"}),
        json!({"rule": "!(has(oldSelf.status) && has(oldSelf.status.order) && has(oldSelf.status.order.domainsCount)) || size(self.spec.domains) <= oldSelf.status.order.domainsCount",
               "message": "spec.domains cannot list more names than were bought", "fieldPath": ".spec.domains"}),
    ];
    rules.extend(extra_rules.as_array().cloned().unwrap_or_default());
    let condition = json!({"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"},
        "lastTransitionTime": {"type": "string", "format": "date-time"}, "message": {"type": "string"}}});
    json!({"type": "object", "x-kubernetes-validations": rules, "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "providerRef": {"type": "object", "properties": {"name": {"type": "string"}}},
            "product": {"type": "object", "properties": {"type": {"type": "string"}, "validityYears": {"type": "integer"}}},
            "domains": {"type": "array", "items": {"type": "string"}},
            "secretName": {"type": "string"}}},
        "status": {"type": "object", "properties": {
            "phase": {"type": "string"},
            "conditions": {"type": "array", "items": condition},
            "order": {"type": "object", "properties": {"id": {"type": "string"}, "domainsCount": {"type": "integer"},
                "termEndTime": {"type": "string", "format": "date-time"}}},
            "certificate": {"type": "object", "properties": {"serial": {"type": "string"},
                "notAfter": {"type": "string", "format": "date-time"}}}}}}})
}

fn issued_order() -> Value {
    let conditions: Vec<Value> = ["Ready", "Reconciling", "Stalled", "Purchased", "InfoSubmitted", "DomainsVerified"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": "2026-11-26T12:43:26Z", "message": format!("{t} for a while")}))
        .collect();
    json!({"apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder",
        "metadata": {"name": "o0", "namespace": "d", "uid": "u", "labels": {"a": "b"}},
        "spec": {"providerRef": {"name": "local"}, "product": {"type": "DV", "validityYears": 1},
                 "domains": ["o0.bench.test", "www.o0.bench.test"], "secretName": "o0-tls"},
        "status": {"phase": "Issued", "conditions": conditions,
                   "order": {"id": "local-1", "domainsCount": 2, "termEndTime": "2027-11-26T12:43:26Z"},
                   "certificate": {"serial": "4bd8", "notAfter": "2027-02-24T12:43:26Z"}}})
}

#[test]
fn root_transition_rules_refuse_changing_what_was_bought_once_it_is() {
    let schema = purchased_schema(json!([]));
    let stored = issued_order();
    let check = |new: &Value, old: &Value| lines(&validate_rules(&schema, new, Some(old)));

    // A status write: the spec is as it was.
    let mut new = stored.clone();
    new["status"]["phase"] = json!("Renewing");
    new["status"]["conditions"][0]["status"] = json!("False");
    assert_eq!(check(&new, &stored), Vec::<String>::new());

    // Fields the rules do not name may change.
    let mut new = stored.clone();
    new["spec"]["secretName"] = json!("other-tls");
    new["metadata"]["labels"] = json!({});
    assert_eq!(check(&new, &stored), Vec::<String>::new());

    // What was bought may not.
    let mut new = stored.clone();
    new["spec"]["product"]["validityYears"] = json!(2);
    new["spec"]["providerRef"] = json!({"name": "other"});
    new["spec"]["domains"] = json!(["a.test", "b.test", "c.test"]);
    let refused = vec![
        r#"FieldValueInvalid | spec.product | Invalid value: "object": spec.product cannot change once the order is purchased"#,
        r#"FieldValueInvalid | spec.providerRef | Invalid value: "object": spec.providerRef cannot change once the order is purchased"#,
        r#"FieldValueInvalid | spec.domains | Invalid value: "object": spec.domains cannot list more names than were bought"#,
    ];
    assert_eq!(check(&new, &stored), refused);

    // Before the order has an id (or a count, or an order, or a status), it may.
    let mut unbought = stored.clone();
    unbought["status"]["order"].as_object_mut().expect("order").remove("id");
    unbought["status"]["order"].as_object_mut().expect("order").remove("domainsCount");
    assert_eq!(check(&new, &unbought), Vec::<String>::new());
    let mut counted = unbought.clone();
    counted["status"]["order"]["domainsCount"] = json!(2);
    assert_eq!(check(&new, &counted), vec![refused[2]]);
    unbought["status"].as_object_mut().expect("status").remove("order");
    assert_eq!(check(&new, &unbought), Vec::<String>::new());
    unbought.as_object_mut().expect("object").remove("status");
    assert_eq!(check(&new, &unbought), Vec::<String>::new());

    // A field a rule selects that the object lacks is an evaluation error, as it was.
    let mut new = stored.clone();
    new["spec"].as_object_mut().expect("spec").remove("product");
    assert_eq!(
        check(&new, &stored),
        vec![
            r#"FieldValueInvalid | <nil> | Invalid value: "object": no such key: product evaluating rule: spec.product cannot change once the order is purchased"#
        ]
    );
}

#[test]
fn rules_observing_whole_values_and_message_expressions_see_all_of_them() {
    let schema = purchased_schema(json!([
        {"rule": "self.status == oldSelf.status || oldSelf.status.phase != 'Issued'", "message": "an issued order's status is fixed"},
        {"rule": "self.size() == 5 && self.exists(k, k == 'status')", "message": "whole self"},
        {"rule": "self.spec.domains.all(d, d.endsWith('.test'))", "message": "test domains only"},
        {"rule": "self.metadata.name == oldSelf.metadata.name && !has(self.metadata.namespace)", "message": "metadata"}
    ]));
    let stored = issued_order();
    assert_eq!(lines(&validate_rules(&schema, &stored, Some(&stored))), Vec::<String>::new());
    let mut new = stored.clone();
    new["spec"]["secretName"] = json!("new-tls");
    assert_eq!(lines(&validate_rules(&schema, &new, Some(&stored))), Vec::<String>::new());

    // Only a nested field no rule names changes: the rule comparing whole statuses sees it.
    let mut new = stored.clone();
    new["status"]["conditions"][5]["lastTransitionTime"] = json!("2026-11-27T00:00:00Z");
    new["spec"]["domains"] = json!(["o0.bench.example"]);
    new["spec"]["secretName"] = json!("new-tls");
    new.as_object_mut().expect("object").remove("apiVersion");
    assert_eq!(
        lines(&validate_rules(&schema, &new, Some(&stored))),
        vec![
            r#"FieldValueInvalid | <nil> | Invalid value: "object": an issued order's status is fixed"#,
            r#"FieldValueInvalid | <nil> | Invalid value: "object": whole self"#,
            r#"FieldValueInvalid | <nil> | Invalid value: "object": test domains only"#,
        ]
    );

    // A messageExpression sees what it reads, though its rule does not read it.
    let schema = purchased_schema(json!([
        {"rule": "self.spec.secretName == oldSelf.spec.secretName", "message": "static",
         "messageExpression": "'secretName was ' + oldSelf.spec.secretName + ' for order ' + oldSelf.status.order.id + ' of ' + string(size(oldSelf.status.conditions)) + ' conditions'"}
    ]));
    assert_eq!(
        lines(&validate_rules(&schema, &new, Some(&stored))),
        vec![
            r#"FieldValueInvalid | <nil> | Invalid value: "object": secretName was o0-tls for order local-1 of 6 conditions"#
        ]
    );
}

#[test]
fn bound_values_hold_what_the_rules_observe() {
    let schema = purchased_schema(json!([]));
    let order = issued_order();
    let view = |src: &str, old: bool| {
        let compiled = compile(src).expect("compiles");
        let need = if old { &compiled.old_need } else { &compiled.self_need };
        root_view(&schema, &order, true, need).json().expect("converts to JSON")
    };
    // Selected fields whole, their maps holding only them, presence tests as null; missing
    // fields stay missing; metadata only shows name and generateName.
    assert_eq!(
        view(
            "has(self.status.order.id) && has(self.status.renewalTime) && self.spec.product.type == 'DV' && has(self.metadata.uid) && self.metadata.name == 'o0'",
            false
        ),
        json!({"spec": {"product": {"type": "DV"}}, "status": {"order": {"id": null}}, "metadata": {"name": "o0"}})
    );
    assert_eq!(
        view("oldSelf.status.order.domainsCount == 2 && oldSelf.spec.product == {}", true),
        json!({"status": {"order": {"domainsCount": 2}}, "spec": {"product": {"type": "DV", "validityYears": 1}}})
    );
    assert_eq!(view("oldSelf.status.order.domainsCount == 2", false), json!({}));
    // A rule observing the whole value gets all of it (but metadata), as converted before.
    let whole = view("self == oldSelf", false);
    assert_eq!(whole["metadata"], json!({"name": "o0"}));
    assert_eq!(whole["status"]["conditions"].as_array().map(Vec::len), Some(6));
    let compiled = compile("self.size() == 5").expect("compiles");
    let bound = root_view(&schema, &order, true, &compiled.self_need);
    assert_eq!(bound, root_view(&schema, &order, true, &Need::Whole));
    assert!(matches!(&bound, CelValue::Map(m) if m.map.len() == 5));
}
