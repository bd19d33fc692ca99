//! Building a UCloud provider from its spec: the key pair from its Secret (read by name, never
//! cached or logged), and the account it shares with every provider of the same UCloud account.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::{Credentials, UcloudProvider, account_key};
use crate::api::{NamespacedSecretRef, UcloudProviderSpec};
use crate::provider::Env;

/// A UCloud client with the key pair from the provider's Secret: one client, and one rate
/// limiter, per provider generation. `Err` says what to fix.
pub async fn build(spec: &UcloudProviderSpec, env: &Env<'_>) -> Result<UcloudProvider, String> {
    let (credentials, secret_name) = read_credentials(env.client, &spec.credentials_secret_ref).await?;
    let account = env.registry.account(env.name, &account_key(spec, &credentials));
    UcloudProvider::new(spec, credentials, secret_name, account).map_err(|e| e.message)
}

/// The key pair from the Secret `reference`, and the Secret's `namespace/name`.
pub async fn read_credentials(
    client: &kube::Client,
    reference: &NamespacedSecretRef,
) -> Result<(Credentials, String), String> {
    let secret_name = format!("{}/{}", reference.namespace, reference.name);
    let api: Api<Secret> = Api::namespaced(client.clone(), &reference.namespace);
    let secret = match api.get_opt(&reference.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(format!(
                "credentials Secret {secret_name} not found: create it with keys PublicKey and PrivateKey"
            ));
        }
        Err(e) => return Err(format!("cannot read credentials Secret {secret_name}: {e}")),
    };
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!("Secret {secret_name} has no key {key}: store the UCloud API key pair under PublicKey and PrivateKey")
            })
    };
    let credentials = Credentials { public_key: field("PublicKey")?, private_key: field("PrivateKey")? };
    Ok((credentials, secret_name))
}
