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
