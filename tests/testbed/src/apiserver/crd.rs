//! CustomResourceDefinition semantics: checks kube-apiserver makes on a CRD and the status it
//! reports (`NamesAccepted`, `Established`, `acceptedNames`, `storedVersions`).
use serde_json::{Value, json};

use super::schema::FieldError;

fn err(reason: &str, field: &str, message: impl Into<String>) -> FieldError {
    FieldError { reason: reason.into(), field: field.into(), message: message.into() }
}

/// The checks of `apiextensions` validation that matter to our tests.
pub fn validate(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        errs.push(err("FieldValueRequired", "spec.group", "Required value"));
    }
    if plural.is_empty() {
        errs.push(err("FieldValueRequired", "spec.names.plural", "Required value"));
    }
    if spec["names"]["kind"].as_str().unwrap_or_default().is_empty() {
        errs.push(err("FieldValueRequired", "spec.names.kind", "Required value"));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(err(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        other => errs.push(err(
            "FieldValueNotSupported",
            "spec.scope",
            format!("Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"", json!(other.unwrap_or(""))),
        )),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(err(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: null: must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions.iter().filter(|v| v["storage"] == true).count();
        if storage != 1 {
            errs.push(err(
                "FieldValueInvalid",
                "spec.versions",
                format!("Invalid value: []apiextensions.CustomResourceDefinitionVersion{{...}}: must have exactly one version marked as storage version (found {storage})"),
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            if v["schema"]["openAPIV3Schema"].is_null() {
                errs.push(err(
                    "FieldValueRequired",
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "Required value: schemas are required",
                ));
            }
        }
    }
    errs
}

/// Sets the status kube-apiserver's CRD controllers converge to, keeping transition times of
/// conditions that did not change.
pub fn set_status(crd: &mut Value, old: Option<&Value>, now: &str) {
    let names = crd["spec"]["names"].clone();
    let mut accepted = json!({
        "plural": names["plural"],
        "kind": names["kind"],
        "singular": names["singular"].as_str().map(String::from).unwrap_or_else(|| names["kind"].as_str().unwrap_or_default().to_lowercase()),
        "listKind": names["listKind"].as_str().map(String::from).unwrap_or_else(|| format!("{}List", names["kind"].as_str().unwrap_or_default())),
    });
    for k in ["shortNames", "categories"] {
        if names[k].is_array() {
            accepted[k] = names[k].clone();
        }
    }
    let since = |t: &str| -> String {
        old.and_then(|o| o["status"]["conditions"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["type"] == t && c["status"] == "True"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(now)
            .to_string()
    };
    let mut stored: Vec<Value> =
        old.and_then(|o| o["status"]["storedVersions"].as_array().cloned()).unwrap_or_default();
    for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
        if v["storage"] == true && !stored.contains(&v["name"]) {
            stored.push(v["name"].clone());
        }
    }
    crd["status"] = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since("Established")},
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_validation() {
        let mut crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        });
        assert!(validate(&crd).is_empty());
        set_status(&mut crd, None, "2024-01-01T00:00:00Z");
        assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
        assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        crd["metadata"]["name"] = json!("wrong");
        assert_eq!(validate(&crd)[0].field, "metadata.name");
    }
}
