//! `meta.k8s.io/v1` Tables (what `kubectl get` asks for): Name and Age for built-in kinds but Events
//! (kube-apiserver's event columns), the CRD's `additionalPrinterColumns` for custom resources.
use serde_json::{Value, json};

use super::registry::{KindInfo, ResourceInfo};

/// kube's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    let d = h / 24;
    let y = d / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        if d % 365 == 0 { format!("{y}y") } else { format!("{y}y{}d", d % 365) }
    } else {
        format!("{y}y")
    }
}

fn age(ts: &Value) -> Value {
    match ts.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => json!(human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())),
        None => json!("<unknown>"),
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(String, String),
}

fn parse_path(p: &str) -> Option<Vec<Step>> {
    let p = p.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(i) = inner.parse() {
                steps.push(Step::Index(i));
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = f.split_once("==")?;
                steps.push(Step::Filter(k.trim().into(), v.trim().trim_matches(['"', '\'']).into()));
            } else {
                steps.push(Step::Field(inner.trim_matches(['"', '\'']).into()));
            }
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Field(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Some(steps)
}

/// Evaluates simple JSONPath (`.a.b`, `[0]`, `[*]`, `[?(@.type=="Ready")]`); all results.
pub fn jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse_path(path) else { return Vec::new() };
    let mut cur = vec![obj];
    for s in steps {
        let mut next = Vec::new();
        for v in cur {
            match &s {
                Step::Field(f) => next.extend(v.get(f)),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => next.extend(v.as_array().into_iter().flatten()),
                Step::Filter(k, want) => next.extend(v.as_array().into_iter().flatten().filter(|e| {
                    let mut x = *e;
                    for part in k.split('.') {
                        x = &x[part];
                    }
                    match x {
                        Value::String(s) => s == want,
                        Value::Null => false,
                        o => serde_json::to_string(o).is_ok_and(|text| text == *want),
                    }
                })),
            }
        }
        cur = next;
    }
    cur.into_iter().filter(|v| !v.is_null()).collect()
}

fn column(name: &str, ty: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn cell(ty: &str, v: Option<&Value>) -> Value {
    let Some(v) = v else { return Value::Null };
    match ty {
        "date" => age(v),
        "string" => match v {
            Value::String(s) => json!(s),
            o => json!(o.to_string()),
        },
        _ => v.clone(),
    }
}

fn is_event(ri: &ResourceInfo) -> bool {
    ri.kind == "Event" && (ri.group.is_empty() || ri.group == "events.k8s.io")
}

/// kube-apiserver's Event columns (the same for both Event APIs).
fn event_columns() -> Vec<Value> {
    vec![
        column(
            "Last Seen",
            "string",
            "",
            "The time at which the most recent occurrence of this event was recorded.",
            0,
        ),
        column("Type", "string", "", "Type of this event (Normal, Warning), new types could be added in the future", 0),
        column(
            "Reason",
            "string",
            "",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            0,
        ),
        column("Object", "string", "", "The object that this event is about.", 0),
        column(
            "Subobject",
            "string",
            "",
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
            1,
        ),
        column(
            "Source",
            "string",
            "",
            "The component reporting this event. Should be a short machine understandable string.",
            1,
        ),
        column("Message", "string", "", "A human-readable description of the status of this operation.", 0),
        column(
            "First Seen",
            "string",
            "",
            "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            1,
        ),
        column("Count", "string", "", "The number of times this event has occurred.", 1),
        column("Name", "string", "name", "Name must be unique within a namespace.", 1),
    ]
}

/// The cells of kube-apiserver's `printEvent`, from an Event in either API's form.
fn event_cells(o: &Value) -> Vec<Value> {
    let core = super::events::to_version(o, "v1");
    let e = core.as_ref().unwrap_or(o);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let first = if e["firstTimestamp"].is_string() { age(&e["firstTimestamp"]) } else { age(&e["eventTime"]) };
    let mut last = if e["lastTimestamp"].is_string() { age(&e["lastTimestamp"]) } else { first.clone() };
    let mut count = e["count"].as_i64().unwrap_or(0);
    if e["series"].is_object() {
        last = age(&e["series"]["lastObservedTime"]);
        count = e["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let regarding = &e["involvedObject"];
    let kind = s(&regarding["kind"]).to_lowercase();
    let target = match regarding["name"].as_str() {
        Some(n) if !n.is_empty() => format!("{kind}/{n}"),
        _ => kind,
    };
    let first_non_empty = |a: String, b: String| if a.is_empty() { b } else { a };
    let component = first_non_empty(s(&e["source"]["component"]), s(&e["reportingComponent"]));
    let instance = first_non_empty(s(&e["source"]["host"]), s(&e["reportingInstance"]));
    let source = match (component.is_empty(), instance.is_empty()) {
        (true, _) => String::new(),
        (false, true) => component,
        (false, false) => format!("{component}, {instance}"),
    };
    vec![
        last,
        json!(s(&e["type"])),
        json!(s(&e["reason"])),
        json!(target),
        json!(s(&regarding["fieldPath"])),
        json!(source),
        json!(s(&e["message"]).trim()),
        first,
        json!(count),
        e["metadata"]["name"].clone(),
    ]
}

/// The Table of `objects`; `include` is the `includeObject` parameter (None, Metadata, Object).
pub fn table(ri: &ResourceInfo, objects: &[&Value], rv: &str, cont: Option<&str>, include: &str) -> Value {
    if is_event(ri) {
        return finish(event_columns(), objects.iter().map(|o| (*o, event_cells(o))).collect(), rv, cont, include);
    }
    let custom_cols: Vec<Value> = match &ri.kind_info {
        KindInfo::Custom(c) if !c.printer_columns.is_empty() => c.printer_columns.clone(),
        KindInfo::Custom(_) => vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})],
        KindInfo::Builtin { .. } => vec![
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}),
        ],
    };
    let mut defs = vec![column("Name", "string", "name", "Name must be unique within a namespace.", 0)];
    for c in &custom_cols {
        defs.push(column(
            c["name"].as_str().unwrap_or_default(),
            c["type"].as_str().unwrap_or("string"),
            c["format"].as_str().unwrap_or_default(),
            c["description"].as_str().unwrap_or_default(),
            c["priority"].as_i64().unwrap_or(0),
        ));
    }
    let rows = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for c in &custom_cols {
                let ty = c["type"].as_str().unwrap_or("string");
                cells.push(cell(ty, jsonpath(o, c["jsonPath"].as_str().unwrap_or_default()).first().copied()));
            }
            (*o, cells)
        })
        .collect();
    finish(defs, rows, rv, cont, include)
}

/// The Table of the column definitions and the rows' objects with their cells.
fn finish(defs: Vec<Value>, rows: Vec<(&Value, Vec<Value>)>, rv: &str, cont: Option<&str>, include: &str) -> Value {
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(o, cells)| {
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
                }
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_and_durations() {
        let o = json!({"spec": {"a": [1, 2]}, "status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(jsonpath(&o, ".spec.a[1]"), vec![&json!(2)]);
        assert_eq!(jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"), vec![&json!("True")]);
        assert_eq!(jsonpath(&o, ".status.conditions[*].type").len(), 2);
        assert!(jsonpath(&o, ".spec.missing").is_empty());
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
    }
}
