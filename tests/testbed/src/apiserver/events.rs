//! Events: kube-apiserver stores core `v1` Events and `events.k8s.io/v1` Events once and serves the
//! same objects through both APIs, converting field by field (`pkg/apis/events/v1/conversion.go`).
//! The store holds the core form; [`to_version`] presents a stored Event in either API and
//! [`to_storage`] turns a written one into the stored form.
use serde_json::{Map, Value};

/// apiVersion of the events.k8s.io API.
pub const EVENTS_V1: &str = "events.k8s.io/v1";

/// `(events.k8s.io/v1 field, core v1 field)`; the other fields have the same name in both.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Fields both forms have under one name.
const SHARED: &[&str] =
    &["metadata", "eventTime", "series", "related", "action", "reason", "type", "reportingInstance"];

fn is_event(obj: &Value) -> bool {
    obj["kind"] == "Event" && matches!(obj["apiVersion"].as_str(), Some("v1" | EVENTS_V1))
}

/// The Event in the form of `to` (`v1` or [`EVENTS_V1`]).
fn convert(obj: &Value, to: &str) -> Value {
    let to_events = to == EVENTS_V1;
    let src = obj.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    out.insert("kind".into(), Value::from("Event"));
    out.insert("apiVersion".into(), Value::from(to));
    for f in SHARED {
        if let Some(v) = src.get(*f) {
            out.insert(f.to_string(), v.clone());
        }
    }
    for (events_name, core_name) in RENAMED {
        let (from, into) = if to_events { (core_name, events_name) } else { (events_name, core_name) };
        if let Some(v) = src.get(*from) {
            out.insert(into.to_string(), v.clone());
        }
    }
    // core v1's deprecated `series.state` has no events.k8s.io counterpart
    if to_events && let Some(Value::Object(series)) = out.get_mut("series") {
        series.remove("state");
    }
    Value::Object(out)
}

/// A stored Event (or any object) as `api_version` presents it; None when nothing changes but
/// `apiVersion`.
pub fn to_version(obj: &Value, api_version: &str) -> Option<Value> {
    if !is_event(obj) || obj["apiVersion"] == api_version {
        return None;
    }
    Some(match api_version {
        EVENTS_V1 | "v1" => convert(obj, api_version),
        _ => return None,
    })
}

/// A written object in the form the store keeps (events.k8s.io Events become core Events).
pub fn to_storage(obj: Value) -> Value {
    if is_event(&obj) && obj["apiVersion"] == EVENTS_V1 { to_version(&obj, "v1").unwrap_or(obj) } else { obj }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_ways() {
        let ev = json!({
            "apiVersion": EVENTS_V1, "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "regarding": {"kind": "Widget", "name": "w1", "uid": "u"},
            "note": "hello", "reason": "Made", "type": "Normal", "action": "Make",
            "reportingController": "ctl", "reportingInstance": "ctl-1",
            "series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:01.000000Z"},
        });
        let core = to_storage(ev.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "w1");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "ctl");
        assert_eq!(core["series"]["count"], 2);
        assert!(core.get("note").is_none());
        assert_eq!(to_version(&core, EVENTS_V1).unwrap(), ev);
        assert!(to_version(&core, "v1").is_none());
    }
}
