//! Label and field selectors (`labelSelector=`, `fieldSelector=`) as kube-apiserver parses them.
use serde_json::Value;

use super::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn set_values(rest: &str, raw: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: found '{raw}', expected: '('")))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement { key: key.trim().to_string(), op: Op::NotExists }
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement { key: k.trim().to_string(), op: Op::NotEq(v.trim().to_string()) }
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement { key: k.trim().to_string(), op: Op::Eq(v.trim().to_string()) }
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement { key: k.trim().to_string(), op: Op::Eq(v.trim().to_string()) }
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement { key: k.trim().to_string(), op: Op::NotIn(set_values(rest, part)?) }
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement { key: k.trim().to_string(), op: Op::In(set_values(rest, part)?) }
            } else {
                Requirement { key: part.to_string(), op: Op::Exists }
            };
            if req.key.is_empty() || req.key.contains(' ') {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label key \"{}\"",
                    req.key
                )));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.0.iter().all(|r| {
            let v = labels.get(&r.key).and_then(Value::as_str);
            match &r.op {
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
            }
        })
    }
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma separated. After
/// [`FieldSelector::for_resource`] the labels are the ones kube-apiserver supports for the kind, and
/// fields absent from an object have the value kube-apiserver gives them (`false`, `0`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<FieldTerm>);

/// `path` (dotted JSON path) `=`/`!=` `want`; `default` is the value of an absent field.
#[derive(Debug, Clone, Default, PartialEq)]
struct FieldTerm {
    path: String,
    default: &'static str,
    eq: bool,
    want: String,
}

/// How a field label reads an object: the JSON path and the value when absent.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FieldSource {
    path: &'static str,
    default: &'static str,
}

const fn at(path: &'static str) -> FieldSource {
    FieldSource { path, default: "" }
}

/// The field labels kube-apiserver supports for a kind (its field label conversion functions and
/// the fields each registry strategy sets), with where the value comes from. None: the kind has no
/// conversion function of its own and takes the default one (`metadata.name`, `metadata.namespace`).
fn kind_fields(group: &str, kind: &str, label: &str) -> Option<Result<FieldSource, ()>> {
    let meta = |l: &str| match l {
        "metadata.name" => Some(at("metadata.name")),
        "metadata.namespace" => Some(at("metadata.namespace")),
        _ => None,
    };
    let found = match (group, kind) {
        ("", "Pod") => meta(label).or(match label {
            "spec.nodeName" | "spec.host" => Some(at("spec.nodeName")),
            "spec.restartPolicy" => Some(at("spec.restartPolicy")),
            "spec.schedulerName" => Some(at("spec.schedulerName")),
            "spec.serviceAccountName" => Some(at("spec.serviceAccountName")),
            "spec.hostNetwork" => Some(FieldSource { path: "spec.hostNetwork", default: "false" }),
            "status.phase" => Some(at("status.phase")),
            "status.podIP" => Some(at("status.podIP")),
            "status.podIPs" => Some(at("status.podIPs")),
            "status.nominatedNodeName" => Some(at("status.nominatedNodeName")),
            _ => None,
        }),
        ("", "Node") => match label {
            "metadata.name" => Some(at("metadata.name")),
            "spec.unschedulable" => Some(FieldSource { path: "spec.unschedulable", default: "false" }),
            _ => None,
        },
        ("", "ReplicationController") | ("apps", "ReplicaSet") => meta(label).or(match label {
            "status.replicas" => Some(FieldSource { path: "status.replicas", default: "0" }),
            _ => None,
        }),
        ("apps", "StatefulSet") => meta(label).or(match label {
            "status.successful" => Some(at("status.successful")),
            _ => None,
        }),
        ("batch", "Job") => meta(label).or(match label {
            "status.successful" => Some(FieldSource { path: "status.succeeded", default: "0" }),
            _ => None,
        }),
        // events.k8s.io shares core Events' field labels; both read the stored core form (events.rs).
        ("", "Event") | ("events.k8s.io", "Event") => meta(label).or(match label {
            "involvedObject.kind" => Some(at("involvedObject.kind")),
            "involvedObject.namespace" => Some(at("involvedObject.namespace")),
            "involvedObject.name" => Some(at("involvedObject.name")),
            "involvedObject.uid" => Some(at("involvedObject.uid")),
            "involvedObject.apiVersion" => Some(at("involvedObject.apiVersion")),
            "involvedObject.resourceVersion" => Some(at("involvedObject.resourceVersion")),
            "involvedObject.fieldPath" => Some(at("involvedObject.fieldPath")),
            "reason" => Some(at("reason")),
            "reportingComponent" => Some(at("reportingComponent")),
            "source" => Some(at("source.component")),
            "type" => Some(at("type")),
            _ => None,
        }),
        ("", "Namespace") => match label {
            "metadata.name" => Some(at("metadata.name")),
            "status.phase" => Some(at("status.phase")),
            _ => None,
        },
        ("", "Secret") => meta(label).or(match label {
            "type" => Some(at("type")),
            _ => None,
        }),
        ("", "Service") => meta(label).or(match label {
            "spec.clusterIP" => Some(at("spec.clusterIP")),
            "spec.type" => Some(at("spec.type")),
            _ => None,
        }),
        ("certificates.k8s.io", "CertificateSigningRequest") => match label {
            "metadata.name" => Some(at("metadata.name")),
            "spec.signerName" => Some(at("spec.signerName")),
            _ => None,
        },
        _ => return None,
    };
    Some(found.ok_or(()))
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut out = Vec::new();
        for part in split_top(s) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{part}'; can't understand '{part}'")));
            };
            out.push(FieldTerm { path: k.trim().to_string(), default: "", eq, want: v.trim().to_string() });
        }
        Ok(FieldSelector(out))
    }

    /// Checks the labels against what kube-apiserver supports for the resource (400 with its
    /// message otherwise) and maps each label to where its value is read from. `custom` is
    /// `Some(selectableFields)` for custom resources.
    pub fn for_resource(self, group: &str, kind: &str, custom: Option<&[String]>) -> Result<Self, ApiError> {
        let mut out = Vec::with_capacity(self.0.len());
        for term in self.0 {
            let label = term.path.clone();
            let (path, default) = if let Some(selectable) = custom {
                match label.as_str() {
                    "metadata.name" | "metadata.namespace" => (label.clone(), ""),
                    l if selectable.iter().any(|s| s == l) => (label.clone(), ""),
                    _ => return Err(ApiError::bad_request(format!("field label not supported: {label}"))),
                }
            } else {
                match kind_fields(group, kind, &label) {
                    Some(Ok(src)) => (src.path.to_string(), src.default),
                    Some(Err(())) => return Err(ApiError::bad_request(format!("field label not supported: {label}"))),
                    None if label == "metadata.name" || label == "metadata.namespace" => (label.clone(), ""),
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "\"{label}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                        )));
                    }
                }
            };
            out.push(FieldTerm { path, default, ..term });
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `metadata.name` this selector requires, if any (lets get-like lists be fast).
    pub fn required_name(&self) -> Option<&str> {
        self.0.iter().find(|t| t.path == "metadata.name" && t.eq).map(|t| t.want.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|t| {
            let mut cur = obj;
            for seg in t.path.split('.') {
                cur = &cur[seg];
            }
            let have = match cur {
                Value::String(s) => s.clone(),
                Value::Null => t.default.to_string(),
                // status.podIPs: the addresses, comma separated
                Value::Array(a) => {
                    a.iter().filter_map(|e| e["ip"].as_str().or(e.as_str())).collect::<Vec<_>>().join(",")
                }
                other => other.to_string(),
            };
            (have == t.want) == t.eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("missing", false),
            ("!missing", true),
            ("app=web,tier in (fe,be)", true),
            ("app=web,tier notin (fe,be)", false),
            ("missing notin (x)", true),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(&o), want, "{sel}");
        }
    }

    #[test]
    fn field_selector() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns"}, "involvedObject": {"name": "x"}});
        assert!(FieldSelector::parse("metadata.name=a").unwrap().matches(&o));
        assert!(!FieldSelector::parse("metadata.name!=a").unwrap().matches(&o));
        assert!(FieldSelector::parse("metadata.namespace==ns,involvedObject.name=x").unwrap().matches(&o));
        assert!(FieldSelector::parse("nonsense").is_err());
    }

    #[test]
    fn field_labels_per_kind() {
        let node = json!({"metadata": {"name": "n"}, "spec": {}});
        let sel = |s: &str, g: &str, k: &str| FieldSelector::parse(s).unwrap().for_resource(g, k, None);
        assert!(sel("spec.unschedulable==false", "", "Node").unwrap().matches(&node));
        assert!(!sel("spec.unschedulable=true", "", "Node").unwrap().matches(&node));
        let e = sel("metadata.namespace=x", "", "Node").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "field label not supported: metadata.namespace"));
        let e = sel("spec.replicas=1", "apps", "Deployment").unwrap_err();
        assert_eq!(
            e.message,
            r#""spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(sel("spec.host=n1,status.phase=Running", "", "Pod").unwrap().matches(&pod));
        let ev = json!({"metadata": {"name": "e"}, "source": {"component": "kubelet"}});
        assert!(sel("source=kubelet", "", "Event").unwrap().matches(&ev));
        let cr = FieldSelector::parse("spec.color=red").unwrap();
        assert!(cr.clone().for_resource("example.com", "Widget", Some(&["spec.color".to_string()])).is_ok());
        assert_eq!(
            cr.for_resource("example.com", "Widget", Some(&[])).unwrap_err().message,
            "field label not supported: spec.color"
        );
    }
}
