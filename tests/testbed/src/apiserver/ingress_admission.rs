//! What the ingress controllers of a real cluster refuse when an Ingress is written, answered
//! the way their admission webhooks answer (HTTP 400, the webhook's name and reason):
//!
//! - ingress-nginx ≥ 1.12 (class `nginx`, and Ingresses without a class, which the testbed's
//!   front door serves): strict path validation (`strict-validate-path-type`, on by default) refuses
//!   `Exact` and `Prefix` paths with characters other than letters, digits, `_`, `-` and `/` — a
//!   dot included, so `/.well-known/pki-validation/fileauth.txt` only passes as
//!   `ImplementationSpecific` (cert-manager issue #7791).
//! - GCE / GKE Ingress (class `gce`): only `ImplementationSpecific` paths (cert-manager #4371).
//!   GKE's controller reports this on the Ingress rather than in a webhook; the testbed refuses it
//!   at admission so a test cannot miss it.

use serde_json::Value;

/// Every path of an Ingress: (pathType, path).
fn paths(obj: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rule in obj["spec"]["rules"].as_array().into_iter().flatten() {
        for p in rule["http"]["paths"].as_array().into_iter().flatten() {
            out.push((
                p["pathType"].as_str().unwrap_or("ImplementationSpecific").to_string(),
                p["path"].as_str().unwrap_or("/").to_string(),
            ));
        }
    }
    out
}

fn nginx_strict_path(path: &str) -> bool {
    path.starts_with('/') && path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
}

/// `Err(message)` when the Ingress's controller would refuse it.
pub fn check(obj: &Value) -> Result<(), String> {
    let class = obj["spec"]["ingressClassName"]
        .as_str()
        .or_else(|| obj["metadata"]["annotations"]["kubernetes.io/ingress.class"].as_str())
        .unwrap_or("nginx");
    match class {
        "nginx" => {
            let bad: Vec<String> = paths(obj)
                .into_iter()
                .filter(|(t, p)| (t == "Exact" || t == "Prefix") && !nginx_strict_path(p))
                .map(|(t, p)| format!("path {p} cannot be used with pathType {t}"))
                .collect();
            if bad.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "admission webhook \"validate.nginx.ingress.kubernetes.io\" denied the request: ingress contains invalid paths: {}",
                    bad.join("; ")
                ))
            }
        }
        "gce" => {
            let bad: Vec<String> = paths(obj)
                .into_iter()
                .filter(|(t, _)| t != "ImplementationSpecific")
                .map(|(t, p)| format!("path {p} has pathType {t}"))
                .collect();
            if bad.is_empty() {
                Ok(())
            } else {
                Err(format!("GCE Ingress accepts only pathType ImplementationSpecific: {}", bad.join("; ")))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(class: &str, path_type: &str, path: &str) -> Value {
        json!({"spec": {"ingressClassName": class, "rules": [{"host": "a.example.com", "http": {"paths": [
            {"path": path, "pathType": path_type, "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}})
    }

    #[test]
    fn ingress_nginx_refuses_dotted_exact_and_prefix_paths_and_gce_all_but_implementation_specific() {
        let file = "/.well-known/pki-validation/fileauth.txt";
        let e = check(&ingress("nginx", "Exact", file)).unwrap_err();
        assert!(e.contains("cannot be used with pathType Exact"), "{e}");
        assert!(check(&ingress("nginx", "Prefix", file)).is_err());
        assert!(check(&ingress("nginx", "ImplementationSpecific", file)).is_ok());
        assert!(check(&ingress("nginx", "Prefix", "/shop/api")).is_ok());
        assert!(check(&ingress("gce", "Exact", "/a")).is_err());
        assert!(check(&ingress("gce", "ImplementationSpecific", file)).is_ok());
        assert!(check(&ingress("traefik", "Exact", file)).is_ok());
    }
}
