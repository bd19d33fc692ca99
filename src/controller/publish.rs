//! HTTP validation's I/O: applies what [`crate::validation::http`] builds (ConfigMap, solver Pod
//! and Service, and the route) and removes it again. Idempotent both ways: applying twice changes
//! nothing, removing what is gone is done.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use super::classify;
use super::context::Context;
use crate::api::{CertificateOrder, Challenge, MANAGER, PublishedValidation, ValidationMethod};
use crate::lifecycle::StepError;
use crate::validation::http::{self, Owner};

fn http_route_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk_with_plural(&gvk, "httproutes"))
}

async fn apply<K>(
    api: &Api<K>,
    name: &str,
    object: &(impl Serialize + std::fmt::Debug),
    what: &str,
) -> Result<(), StepError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(|e| classify(&format!("cannot apply {what} {name}"), e))
}

/// An ingress controller's admission webhook refused the route (ingress-nginx's strict path
/// validation, say). The fix may be the order's, its provider's or the operator's path type, so
/// the step is retried with backoff rather than held until the order itself changes.
fn refused_route(e: StepError) -> StepError {
    if e.kind != crate::lifecycle::ErrorKind::Permanent || !e.message.contains("admission webhook") {
        return e;
    }
    StepError::transient(format!(
        "{}: set spec.domainValidation.http.pathType, the provider's spec.httpValidation.pathType or the operator's --ingress-path-type to a type the ingress controller accepts",
        e.message
    ))
}

/// Deletes, treating NotFound (also: the kind is not installed) as done.
async fn delete<K>(api: &Api<K>, name: &str, what: &str) -> Result<(), StepError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(classify(&format!("cannot delete {what} {name}"), e)),
    }
}

/// Publishes the files the challenges ask for, and the route to them; `previous` is what was
/// published before (its paths in another Ingress are removed when the spec moved them).
pub async fn publish(
    ctx: &Context,
    order: &CertificateOrder,
    challenges: &[Challenge],
    digest: &str,
    defaults: &http::HttpDefaults,
    previous: Option<&PublishedValidation>,
) -> Result<PublishedValidation, StepError> {
    if order.spec.domain_validation.method == ValidationMethod::DNS {
        return super::dns_publish::publish(ctx, order, challenges, digest, previous).await;
    }
    let client = &ctx.client;
    let ns = order.namespace().unwrap_or_default();
    let name = order.name_any();
    let uid = order.uid().unwrap_or_default();
    let owner = Owner { namespace: &ns, name: &name, uid: &uid };
    let files = http::file_challenges(challenges)
        .map_err(|e| StepError::permanent(format!("the vendor's file challenge cannot be served: {e}")))?;
    let settings = order.spec.domain_validation.http.clone().unwrap_or_default();
    let path_type = settings.path_type.unwrap_or(defaults.path_type);
    let object_name = http::solver_name(&name);

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    apply(&config_maps, &object_name, &http::config_map(&owner, &files), "ConfigMap").await?;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    apply(&services, &object_name, &http::solver_service(&owner), "Service").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = http::solver_pod(&owner, &defaults.image, &defaults.pull_secrets);
    if let Err(e) = apply(&pods, &object_name, &pod, "Pod").await {
        // A Pod's spec cannot change (a new image): replace it.
        delete(&pods, &object_name, "Pod").await?;
        return Err(StepError::transient(format!("{}; replacing the solver Pod", e.message)));
    }

    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let routes = http_route_api(client, &ns);
    if let Some(old) = previous.and_then(|p| p.ingress_name.as_deref())
        && settings.ingress_name.as_deref() != Some(old)
    {
        remove_paths(&ingresses, &owner, old).await?;
    }
    if let Some(gateway) = &settings.gateway_ref {
        delete(&ingresses, &object_name, "Ingress").await?;
        let route = http::http_route(&owner, gateway, &files);
        routes
            .patch(&object_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&route))
            .await
            .map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 404 => StepError::permanent(
                    "cannot create the HTTPRoute: the Gateway API (gateway.networking.k8s.io/v1) is not installed; install it or remove spec.domainValidation.http.gatewayRef",
                ),
                _ => classify(&format!("cannot apply HTTPRoute {object_name}"), e),
            })?;
    } else {
        delete(&routes, &object_name, "HTTPRoute").await?;
        match &settings.ingress_name {
            Some(existing) => {
                delete(&ingresses, &object_name, "Ingress").await?;
                add_paths(&ingresses, &owner, existing, &files, path_type).await.map_err(refused_route)?;
            }
            None => {
                let ingress = http::ingress(&owner, settings.ingress_class_name.as_deref(), &files, path_type);
                apply(&ingresses, &object_name, &ingress, "Ingress").await.map_err(refused_route)?;
            }
        }
    }
    tracing::debug!(order = %name, files = files.len(), "published the validation files");
    Ok(PublishedValidation {
        digest: digest.to_string(),
        ingress_name: settings.ingress_name.clone(),
        dns_records: Vec::new(),
    })
}

async fn add_paths(
    api: &Api<Ingress>,
    owner: &Owner<'_>,
    name: &str,
    files: &[http::FileChallenge],
    path_type: crate::api::IngressPathType,
) -> Result<(), StepError> {
    let existing = match api.get_opt(name).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Err(StepError::transient(format!(
                "Ingress {name} (spec.domainValidation.http.ingressName) does not exist in namespace {}: create it or remove ingressName",
                owner.namespace
            )));
        }
        Err(e) => return Err(classify(&format!("cannot read Ingress {name}"), e)),
    };
    if let Some(patched) = http::add_paths(&existing, owner, files, path_type) {
        replace_ingress(api, name, &patched)
            .await
            .map_err(|e| classify(&format!("cannot add the validation paths to Ingress {name}"), e))?;
    }
    Ok(())
}

/// Writes a user's Ingress back. `replace` carries the resourceVersion read: a concurrent
/// change is a conflict, retried.
async fn replace_ingress(api: &Api<Ingress>, name: &str, ingress: &Ingress) -> Result<Ingress, kube::Error> {
    let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    api.replace(name, &params, ingress).await
}

async fn remove_paths(api: &Api<Ingress>, owner: &Owner<'_>, name: &str) -> Result<(), StepError> {
    let existing = match api.get_opt(name).await {
        Ok(Some(i)) => i,
        Ok(None) => return Ok(()),
        Err(e) => return Err(classify(&format!("cannot read Ingress {name}"), e)),
    };
    if let Some(restored) = http::remove_paths(&existing, owner) {
        match replace_ingress(api, name, &restored).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(classify(&format!("cannot remove the validation paths from Ingress {name}"), e));
            }
        }
    }
    Ok(())
}

/// Removes everything HTTP validation published for the order: its own objects, and its paths
/// in the user's Ingress (the one recorded as published and the one the spec names).
pub async fn unpublish(
    ctx: &Context,
    order: &CertificateOrder,
    published: Option<&PublishedValidation>,
) -> Result<(), StepError> {
    if order.spec.domain_validation.method == ValidationMethod::DNS
        || published.is_some_and(|p| !p.dns_records.is_empty())
    {
        let challenges = order.status.as_ref().map(|s| s.challenges.as_slice()).unwrap_or_default();
        super::dns_publish::unpublish(ctx, order, published, challenges).await?;
        if order.spec.domain_validation.method == ValidationMethod::DNS
            && published.is_none_or(|p| p.ingress_name.is_none())
        {
            return Ok(());
        }
    }
    let client = &ctx.client;
    let ns = order.namespace().unwrap_or_default();
    let name = order.name_any();
    let uid = order.uid().unwrap_or_default();
    let owner = Owner { namespace: &ns, name: &name, uid: &uid };
    let object_name = http::solver_name(&name);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let mut users: Vec<String> = published.and_then(|p| p.ingress_name.clone()).into_iter().collect();
    if let Some(named) = order.spec.domain_validation.http.as_ref().and_then(|h| h.ingress_name.clone())
        && !users.contains(&named)
    {
        users.push(named);
    }
    for user in &users {
        remove_paths(&ingresses, &owner, user).await?;
    }
    delete(&ingresses, &object_name, "Ingress").await?;
    delete(&http_route_api(client, &ns), &object_name, "HTTPRoute").await?;
    delete(&Api::<Service>::namespaced(client.clone(), &ns), &object_name, "Service").await?;
    delete(&Api::<Pod>::namespaced(client.clone(), &ns), &object_name, "Pod").await?;
    delete(&Api::<ConfigMap>::namespaced(client.clone(), &ns), &object_name, "ConfigMap").await?;
    tracing::debug!(order = %name, "removed the validation files");
    Ok(())
}
