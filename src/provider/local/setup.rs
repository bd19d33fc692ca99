//! Building the built-in CA from its spec: its CA certificate and key come from a Secret, which is
//! generated on first use.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::LocalProvider;
use crate::api::{LocalProviderSpec, MANAGED_BY_LABEL, MANAGER};
use crate::pki::{LocalCa, TLS_CRT, TLS_KEY};
use crate::provider::Env;

/// The built-in CA of `spec`, with the CA from its Secret; `Err` says what to fix.
pub async fn build(spec: &LocalProviderSpec, env: &Env<'_>) -> Result<LocalProvider, String> {
    let reference = &spec.ca_secret_ref;
    let ca = load_ca(env.client, &reference.namespace, &reference.name)
        .await
        .map_err(|e| format!("CA Secret {}/{}: {e}", reference.namespace, reference.name))?;
    LocalProvider::new(spec, ca, env.dns.clone(), env.http.clone()).map_err(|e| e.message)
}

/// Loads the local CA from its Secret, generating it on first use.
async fn load_ca(client: &kube::Client, namespace: &str, name: &str) -> Result<LocalCa, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let existing = api.get_opt(name).await.map_err(|e| format!("cannot read it: {e}"))?;
    let secret = match existing {
        Some(secret) => secret,
        None => {
            let ca = LocalCa::generate("certorder local CA").map_err(|e| e.to_string())?;
            let (cert, key) = ca.to_pem();
            let secret: Secret = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY_LABEL: MANAGER}},
                "type": "kubernetes.io/tls",
                "stringData": {TLS_CRT: cert, TLS_KEY: key},
            }))
            .map_err(|e| e.to_string())?;
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => return Ok(ca),
                // Another replica created it first: use theirs.
                Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await.map_err(|e| e.to_string())?,
                Err(e) => return Err(format!("cannot create it: {e}")),
            }
        }
    };
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| format!("it has no {key}"))
    };
    LocalCa::from_pem(&field(TLS_CRT)?, &field(TLS_KEY)?).map_err(|e| e.to_string())
}
