use super::*;
use serde_json::json;

/// A schema shaped like a CRD version's `openAPIV3Schema`.
fn order_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["domains", "validation"],
                "properties": {
                    "domains": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 3,
                        "x-kubernetes-list-type": "set",
                        "items": {"type": "string", "maxLength": 20, "pattern": "^[a-z0-9.*-]+$"}
                    },
                    "validation": {"type": "string", "enum": ["DV", "OV", "EV"]},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
                    "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "exclusiveMaximum": true, "maximum": 1},
                    "years": {"type": "integer", "format": "int32", "default": 1},
                    "name": {"type": "string", "minLength": 3},
                    "notAfter": {"type": "string", "format": "date-time"},
                    "blob": {"type": "string", "format": "byte"},
                    "port": {"x-kubernetes-int-or-string": true},
                    "note": {"type": "string", "nullable": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2, "minProperties": 1},
                    "contacts": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}, "email": {"type": "string"}}
                        }
                    },
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
                    "choice": {"oneOf": [{"required": ["a"]}, {"required": ["b"]}], "type": "object",
                               "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
                    "flag": {"type": "boolean"}
                }
            },
            "status": {
                "type": "object",
                "properties": {
                    "phase": {"type": "string"},
                    "conditions": {"type": "array", "items": {"type": "object", "properties": {
                        "type": {"type": "string"}, "status": {"type": "string", "default": "Unknown"}}}}
                }
            }
        }
    })
}

fn valid_order() -> Value {
    json!({
        "apiVersion": "certorder.io/v1",
        "kind": "CertificateOrder",
        "metadata": {"name": "a", "namespace": "default", "labels": {"x": "y"}},
        "spec": {"domains": ["example.com"], "validation": "DV"}
    })
}

fn with_spec(patch: Value) -> Value {
    let mut o = valid_order();
    for (k, v) in patch.as_object().unwrap() {
        o["spec"][k] = v.clone();
    }
    o
}

fn msgs(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(|e| format!("{} | {} | {}", e.reason, e.field, e.message)).collect()
}

#[test]
fn valid_object_has_no_errors() {
    let errs = validate(&order_schema(), &valid_order());
    assert!(errs.is_empty(), "{:?}", msgs(&errs));
}

#[test]
fn validation_errors_match_kube_apiserver_messages() {
    // (spec fields to set, expected "reason | field | message" lines)
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"validation": "XV"}),
            vec![
                r#"FieldValueNotSupported | spec.validation | Unsupported value: "XV": supported values: "DV", "OV", "EV""#,
            ],
        ),
        (
            json!({"replicas": "three"}),
            vec![
                r#"FieldValueTypeInvalid | spec.replicas | Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            ],
        ),
        (
            json!({"replicas": 1.5}),
            vec![
                r#"FieldValueTypeInvalid | spec.replicas | Invalid value: "number": spec.replicas in body must be of type integer: "number""#,
            ],
        ),
        (
            json!({"replicas": 0}),
            vec![
                "FieldValueInvalid | spec.replicas | Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            ],
        ),
        (
            json!({"replicas": 6}),
            vec![
                "FieldValueInvalid | spec.replicas | Invalid value: 6: spec.replicas in body should be less than or equal to 5",
            ],
        ),
        (
            json!({"ratio": 0}),
            vec!["FieldValueInvalid | spec.ratio | Invalid value: 0: spec.ratio in body should be greater than 0"],
        ),
        (
            json!({"ratio": 1.0}),
            vec!["FieldValueInvalid | spec.ratio | Invalid value: 1: spec.ratio in body should be less than 1"],
        ),
        (
            json!({"domains": ["averyveryverylongdomainname.example.com"]}),
            vec!["FieldValueTooLong | spec.domains[0] | Too long: may not be more than 20 bytes"],
        ),
        (
            json!({"domains": ["UPPER.example"]}),
            vec![
                r#"FieldValueInvalid | spec.domains[0] | Invalid value: "UPPER.example": spec.domains[0] in body should match '^[a-z0-9.*-]+$'"#,
            ],
        ),
        (
            json!({"domains": []}),
            vec![
                "FieldValueInvalid | spec.domains | Invalid value: 0: spec.domains in body should have at least 1 items",
            ],
        ),
        (
            json!({"domains": ["a.com", "b.com", "c.com", "d.com"]}),
            vec!["FieldValueTooMany | spec.domains | Too many: 4: must have at most 3 items"],
        ),
        (
            json!({"domains": ["a.com", "b.com", "a.com"]}),
            vec![r#"FieldValueDuplicate | spec.domains[2] | Duplicate value: "a.com""#],
        ),
        (
            json!({"name": "ab"}),
            vec![
                r#"FieldValueInvalid | spec.name | Invalid value: "ab": spec.name in body should be at least 3 chars long"#,
            ],
        ),
        (
            json!({"notAfter": "tomorrow"}),
            vec![
                r#"FieldValueTypeInvalid | spec.notAfter | Invalid value: "tomorrow": spec.notAfter in body must be of type date-time: "tomorrow""#,
            ],
        ),
        (
            json!({"blob": "not base64!"}),
            vec![
                r#"FieldValueTypeInvalid | spec.blob | Invalid value: "not base64!": spec.blob in body must be of type byte: "not base64!""#,
            ],
        ),
        (
            json!({"port": true}),
            vec![
                r#"FieldValueTypeInvalid | spec.port | Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
            ],
        ),
        (
            json!({"flag": null}),
            vec![
                r#"FieldValueTypeInvalid | spec.flag | Invalid value: "null": spec.flag in body must be of type boolean: "null""#,
            ],
        ),
        (
            json!({"labels": {"a": "1", "b": "2", "c": "3"}}),
            vec!["FieldValueTooMany | spec.labels | Too many: 3: must have at most 2 items"],
        ),
        (
            json!({"labels": {}}),
            vec![
                "FieldValueInvalid | spec.labels | Invalid value: 0: spec.labels in body should have at least 1 properties",
            ],
        ),
        (
            json!({"labels": {"a": 1}}),
            vec![
                r#"FieldValueTypeInvalid | spec.labels.a | Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#,
            ],
        ),
        (
            json!({"contacts": [{"name": "a"}, {"name": "b"}, {"name": "a", "email": "x"}]}),
            vec![r#"FieldValueDuplicate | spec.contacts[2] | Duplicate value: {"name":"a"}"#],
        ),
        (json!({"contacts": [{"email": "x"}]}), vec!["FieldValueRequired | spec.contacts[0].name | Required value"]),
        (
            json!({"template": {"metadata": {"name": "x"}}}),
            vec![
                "FieldValueRequired | spec.template.apiVersion | Required value: must not be empty",
                "FieldValueRequired | spec.template.kind | Required value: must not be empty",
            ],
        ),
        (
            json!({"choice": {"a": "x", "b": "y"}}),
            vec![
                r#"FieldValueInvalid | spec.choice | Invalid value: {"a":"x","b":"y"}: spec.choice in body must validate one and only one schema (oneOf)"#,
            ],
        ),
    ];
    for (patch, want) in cases {
        let obj = with_spec(patch.clone());
        let got = msgs(&validate(&order_schema(), &obj));
        assert_eq!(got, want, "for spec patch {patch}");
    }
}

#[test]
fn accepted_values() {
    // Each of these is valid: no errors expected.
    let cases = vec![
        json!({"replicas": 3}),
        json!({"replicas": 3.0}), // a whole float is an integer for kube-openapi
        json!({"ratio": 0.5}),
        json!({"port": 8080}),
        json!({"port": "http"}),
        json!({"note": null}),
        json!({"notAfter": "2025-01-02T03:04:05Z"}),
        json!({"blob": "aGVsbG8="}),
        json!({"free": {"anything": {"goes": [1, "two"]}}}),
        json!({"template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}}),
        json!({"choice": {"a": "x"}}),
        json!({"contacts": [{"name": "a"}, {"name": "b"}]}),
    ];
    for patch in cases {
        let errs = validate(&order_schema(), &with_spec(patch.clone()));
        assert!(errs.is_empty(), "{patch}: {:?}", msgs(&errs));
    }
}

#[test]
fn required_fields_are_reported() {
    let obj =
        json!({"apiVersion": "certorder.io/v1", "kind": "CertificateOrder", "metadata": {"name": "a"}, "spec": {}});
    let got = msgs(&validate(&order_schema(), &obj));
    assert_eq!(
        got,
        vec![
            "FieldValueRequired | spec.domains | Required value",
            "FieldValueRequired | spec.validation | Required value"
        ]
    );
}

#[test]
fn type_error_stops_deeper_checks_and_root_metadata_is_not_checked() {
    let schema = order_schema();
    let obj = json!({"apiVersion": "v", "kind": "K", "metadata": {"name": 5}, "spec": "oops"});
    let got = msgs(&validate(&schema, &obj));
    assert_eq!(
        got,
        vec![
            r#"FieldValueTypeInvalid | spec | Invalid value: "string": spec in body must be of type object: "string""#
        ]
    );
}

#[test]
fn enum_of_numbers_lists_json_values() {
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}});
    let got = msgs(&validate(&schema, &json!({"n": 3})));
    assert_eq!(got, vec![r#"FieldValueNotSupported | n | Unsupported value: 3: supported values: "1", "2""#]);
}

#[test]
fn any_all_not() {
    let schema = json!({"type": "object", "properties": {
        "any": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "all": {"type": "string", "allOf": [{"minLength": 2}, {"maxLength": 3}]},
        "not": {"type": "string", "not": {"enum": ["forbidden"]}}
    }});
    assert!(validate(&schema, &json!({"any": "x", "all": "ab", "not": "ok"})).is_empty());
    let got = msgs(&validate(&schema, &json!({"any": true})));
    assert_eq!(
        got.last().unwrap(),
        "FieldValueInvalid | any | Invalid value: true: any in body must validate at least one schema (anyOf)"
    );
    let got = msgs(&validate(&schema, &json!({"all": "abcd"})));
    assert_eq!(
        got,
        vec![
            "FieldValueTooLong | all | Too long: may not be more than 3 bytes",
            r#"FieldValueInvalid | all | Invalid value: "abcd": all in body must validate all the schemas (allOf)"#
        ]
    );
    let got = msgs(&validate(&schema, &json!({"not": "forbidden"})));
    assert_eq!(
        got,
        vec![r#"FieldValueInvalid | not | Invalid value: "forbidden": not in body must not validate the schema (not)"#]
    );
}

#[test]
fn go_float_formatting() {
    for (f, want) in [
        (1.0, "1"),
        (1.5, "1.5"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1.5e-5, "1.5e-05"),
        (0.001, "0.001"),
        (-2.0, "-2"),
    ] {
        assert_eq!(go_float(f), want, "{f}");
    }
}

// ---- pruning ----

#[test]
fn prune_removes_undeclared_fields_and_reports_paths() {
    let mut obj = valid_order();
    obj["spec"]["unknown"] = json!(1);
    obj["spec"]["contacts"] = json!([{"name": "a", "phone": "1"}]);
    obj["status"] = json!({"phase": "Ready", "bogus": true});
    obj["extra"] = json!("x");
    obj["metadata"]["whatever"] = json!("kept"); // metadata at the root is not the schema's business
    let removed = prune(&order_schema(), &mut obj);
    assert_eq!(removed, vec![".spec.unknown", ".spec.contacts[0].phone", ".status.bogus", ".extra"]);
    assert_eq!(obj["spec"]["contacts"], json!([{"name": "a"}]));
    assert_eq!(obj["status"], json!({"phase": "Ready"}));
    assert!(obj.get("extra").is_none());
    assert_eq!(obj["metadata"]["whatever"], "kept");
    assert_eq!(obj["apiVersion"], "certorder.io/v1");
}

#[test]
fn prune_honours_preserve_unknown_fields_additional_properties_and_embedded_resources() {
    let mut obj = with_spec(json!({
        "free": {"a": {"b": 1}},
        "labels": {"x": "1", "y": "2"},
        "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n", "labels": {"a": "b"}}, "data": {"k": "v"}}
    }));
    let before = obj.clone();
    let removed = prune(&order_schema(), &mut obj);
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(obj, before);

    // An embedded resource without preserve-unknown-fields keeps its type and object meta only.
    let schema = json!({"type": "object", "properties": {"t": {"type": "object", "x-kubernetes-embedded-resource": true,
        "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}}}}}});
    let mut obj = json!({"t": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}, "data": {"k": "v"}, "spec": {}}});
    let removed = prune(&schema, &mut obj);
    assert_eq!(removed, vec![".t.spec"]);
    assert_eq!(
        obj,
        json!({"t": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}, "data": {"k": "v"}}})
    );

    // preserve-unknown-fields with declared properties still prunes inside the declared ones.
    let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}});
    let mut obj = json!({"other": {"z": 1}, "known": {"a": "x", "b": "y"}});
    assert_eq!(prune(&schema, &mut obj), vec![".known.b"]);
    assert_eq!(obj, json!({"other": {"z": 1}, "known": {"a": "x"}}));

    // additionalProperties: false prunes every undeclared key; true keeps them.
    let schema = json!({"type": "object", "properties": {
        "closed": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}},
        "open": {"type": "object", "additionalProperties": true}}});
    let mut obj = json!({"closed": {"a": "1", "b": "2"}, "open": {"c": {"d": 1}}});
    assert_eq!(prune(&schema, &mut obj), vec![".closed.b"]);
    assert_eq!(obj, json!({"closed": {"a": "1"}, "open": {"c": {"d": 1}}}));
}

// ---- defaulting ----

#[test]
fn defaults_are_applied_to_present_objects_only() {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "years": {"type": "integer", "default": 1},
            "renew": {"type": "object", "properties": {"before": {"type": "string", "default": "720h"}, "enabled": {"type": "boolean", "default": true}}},
            "tls": {"type": "object", "default": {}, "properties": {"minVersion": {"type": "string", "default": "1.2"}}},
            "items": {"type": "array", "items": {"type": "object", "properties": {"weight": {"type": "integer", "default": 10}}}},
            "byName": {"type": "object", "additionalProperties": {"type": "object", "properties": {"on": {"type": "boolean", "default": false}}}},
            "keep": {"type": "string", "default": "d"},
            "nullable": {"type": "string", "nullable": true, "default": "d"},
            "dropped": {"type": "string"}
        }},
        "status": {"type": "object", "properties": {"phase": {"type": "string", "default": "Pending"}}}
    }});
    let mut obj = json!({"metadata": {"name": "x"}, "spec": {
        "renew": {},
        "items": [{}, {"weight": 3}],
        "byName": {"a": {}, "b": {"on": true}},
        "keep": null,
        "nullable": null,
        "dropped": null
    }});
    apply_defaults(&schema, &mut obj);
    assert_eq!(
        obj,
        json!({"metadata": {"name": "x"}, "spec": {
            "renew": {"before": "720h", "enabled": true},
            "items": [{"weight": 10}, {"weight": 3}],
            "byName": {"a": {"on": false}, "b": {"on": true}},
            "keep": "d",
            "nullable": null,
            "years": 1,
            "tls": {"minVersion": "1.2"}
        }})
    );
    // `status` is absent and has no default itself: its nested default is not applied.
    assert!(obj.get("status").is_none());
}

#[test]
fn null_array_items_get_the_items_default() {
    let schema =
        json!({"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "string", "default": "z"}}}});
    let mut obj = json!({"xs": ["a", null]});
    apply_defaults(&schema, &mut obj);
    assert_eq!(obj, json!({"xs": ["a", "z"]}));
}
