//! Tools for people: `certorder approve`, `reject` and `renew` (also `kubectl certorder …`).
//!
//! Each tool reads what it acts on, refuses with a message that says what to do instead when the
//! action cannot apply, and otherwise sets annotations on the order with one JSON merge patch; the
//! controller does the rest. The checks and patches are pure functions, tested below.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use crate::api::{
    CertificateOrder, ClusterCertificateProvider, REVIEW_ANNOTATION, REVIEW_GENERATION_ANNOTATION,
    REVIEW_REASON_ANNOTATION, RENEW_ANNOTATION, ReviewMode,
};

/// Why a tool refused or failed; every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "CertificateOrder {namespace}/{name} does not exist; list the orders with `kubectl get certificateorders -n {namespace}`, or pass the right namespace with -n"
    )]
    OrderNotFound { namespace: String, name: String },
    #[error(
        "CertificateOrder {namespace}/{order} refers to ClusterCertificateProvider {provider}, which does not exist; create it or fix spec.providerRef.name"
    )]
    ProviderNotFound { namespace: String, order: String, provider: String },
    #[error(
        "ClusterCertificateProvider {provider} is not a local provider: its vendor's CA reviews the order, so there is nothing to {action} here"
    )]
    NotLocal { provider: String, action: &'static str },
    #[error(
        "ClusterCertificateProvider {provider} reviews orders automatically (spec.local.review: Automatic); set it to Manual to {action} orders by hand"
    )]
    AutomaticReview { provider: String, action: &'static str },
    #[error(
        "CertificateOrder {namespace}/{name} is a DV order: DV certificates have no organization review, so there is nothing to {action}"
    )]
    NotReviewed { namespace: String, name: String, action: &'static str },
    #[error("CertificateOrder {namespace}/{name} has no metadata.generation; is the API server a real one?")]
    NoGeneration { namespace: String, name: String },
    #[error("--reason must say why the order is rejected; the order's status shows it to its owner")]
    EmptyReason,
    #[error("cannot read kubeconfig: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error(
        "cannot find a cluster to talk to (no usable kubeconfig and not running in a cluster): {0}; pass --kubeconfig or set KUBECONFIG"
    )]
    Infer(#[source] kube::config::InferConfigError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Which cluster and namespace a tool talks to, as kubectl would pick them.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// A kubeconfig file; without it, `KUBECONFIG` or `~/.kube/config`, then the in-cluster
    /// service account.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig; without it, its current context.
    pub context: Option<String>,
    /// The namespace; without it, the context's namespace (or `default`).
    pub namespace: Option<String>,
}

/// A client for the target and the namespace to use.
pub async fn connect(target: &Target) -> Result<(kube::Client, String), ToolError> {
    let options = KubeConfigOptions { context: target.context.clone(), ..Default::default() };
    let config = match (&target.kubeconfig, &target.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(ToolError::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(ToolError::Kubeconfig)?
        }
        // A context only means something in a kubeconfig: do not fall back to in-cluster.
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await.map_err(ToolError::Kubeconfig)?,
        (None, None) => kube::Config::infer().await.map_err(ToolError::Infer)?,
    };
    let namespace = target.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)?;
    Ok((client, namespace))
}

/// The decision `approve` or `reject` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Review {
    Approve,
    Reject { reason: String },
}

impl Review {
    fn action(&self) -> &'static str {
        match self {
            Review::Approve => "approve",
            Review::Reject { .. } => "reject",
        }
    }
}

/// Checks that a person can review `order` under `provider` (a local provider with manual review,
/// an OV or EV order); returns the generation the decision applies to.
pub fn check_reviewable(
    order: &CertificateOrder,
    provider: Option<&ClusterCertificateProvider>,
    review: &Review,
) -> Result<i64, ToolError> {
    let namespace = order.metadata.namespace.clone().unwrap_or_default();
    let name = order.metadata.name.clone().unwrap_or_default();
    let action = review.action();
    if let Review::Reject { reason } = review
        && reason.trim().is_empty()
    {
        return Err(ToolError::EmptyReason);
    }
    let provider_name = order.spec.provider_ref.name.clone();
    let Some(provider) = provider else {
        return Err(ToolError::ProviderNotFound { namespace, order: name, provider: provider_name });
    };
    let Some(local) = &provider.spec.local else {
        return Err(ToolError::NotLocal { provider: provider_name, action });
    };
    if local.review == ReviewMode::Automatic {
        return Err(ToolError::AutomaticReview { provider: provider_name, action });
    }
    if !order.spec.product.type_.needs_organization_review() {
        return Err(ToolError::NotReviewed { namespace, name, action });
    }
    order.metadata.generation.ok_or(ToolError::NoGeneration { namespace, name })
}

/// The merge patch that records a review decision for `generation`. Approving removes the reason
/// of an earlier rejection.
pub fn review_patch(review: &Review, generation: i64) -> Value {
    let (decision, reason) = match review {
        Review::Approve => ("approved", Value::Null),
        Review::Reject { reason } => ("rejected", Value::String(reason.trim().to_string())),
    };
    json!({ "metadata": { "annotations": {
        REVIEW_ANNOTATION: decision,
        REVIEW_GENERATION_ANNOTATION: generation.to_string(),
        REVIEW_REASON_ANNOTATION: reason,
    }}})
}

/// The merge patch that asks for a renewal at `now`.
pub fn renew_patch(now: DateTime<Utc>) -> Value {
    json!({ "metadata": { "annotations": {
        RENEW_ANNOTATION: now.to_rfc3339_opts(SecondsFormat::Secs, true),
    }}})
}

/// Field manager of the tools' patches, so `managedFields` shows who approved.
pub const FIELD_MANAGER: &str = "certorder-tools";

fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

async fn get_order(api: &Api<CertificateOrder>, namespace: &str, name: &str) -> Result<CertificateOrder, ToolError> {
    api.get_opt(name)
        .await?
        .ok_or_else(|| ToolError::OrderNotFound { namespace: namespace.into(), name: name.into() })
}

/// `certorder approve` / `reject`: records the decision for the order's current generation.
/// Returns a line for the person.
pub async fn review(
    client: kube::Client,
    namespace: &str,
    name: &str,
    review: Review,
) -> Result<String, ToolError> {
    let orders: Api<CertificateOrder> = Api::namespaced(client.clone(), namespace);
    let order = get_order(&orders, namespace, name).await?;
    let providers: Api<ClusterCertificateProvider> = Api::all(client);
    let provider = providers.get_opt(&order.spec.provider_ref.name).await?;
    let generation = check_reviewable(&order, provider.as_ref(), &review)?;
    orders
        .patch(name, &patch_params(), &Patch::Merge(review_patch(&review, generation)))
        .await?;
    Ok(match review {
        Review::Approve => format!(
            "certificateorder {namespace}/{name} approved (generation {generation}); the local CA goes on to domain validation"
        ),
        Review::Reject { reason } => format!(
            "certificateorder {namespace}/{name} rejected (generation {generation}): {}; it resubmits when its spec changes",
            reason.trim()
        ),
    })
}

/// `certorder renew`: asks the controller to renew the order's certificate once, now.
pub async fn renew(client: kube::Client, namespace: &str, name: &str, now: DateTime<Utc>) -> Result<String, ToolError> {
    let orders: Api<CertificateOrder> = Api::namespaced(client, namespace);
    get_order(&orders, namespace, name).await?;
    orders
        .patch(name, &patch_params(), &Patch::Merge(renew_patch(now)))
        .await?;
    Ok(format!(
        "certificateorder {namespace}/{name}: renewal requested at {}",
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterCertificateProviderSpec, LocalProvider, NamespacedSecretRef};

    fn order(kind: &str, generation: Option<i64>) -> CertificateOrder {
        let mut order: CertificateOrder = serde_json::from_value(json!({
            "apiVersion": "certorder.io/v1alpha1",
            "kind": "CertificateOrder",
            "metadata": {"name": "shop", "namespace": "web"},
            "spec": {
                "providerRef": {"name": "local"},
                "product": {"type": kind},
                "domains": ["shop.example.com"],
                "secretName": "shop-tls",
            }
        }))
        .unwrap();
        order.metadata.generation = generation;
        order
    }

    fn local(review: ReviewMode) -> ClusterCertificateProvider {
        ClusterCertificateProvider::new(
            "local",
            ClusterCertificateProviderSpec {
                local: Some(LocalProvider {
                    ca_secret_ref: NamespacedSecretRef {
                        name: "ca".into(),
                        namespace: "certorder-system".into(),
                    },
                    review,
                    certificate_lifetime: None,
                }),
            },
        )
    }

    fn reject(reason: &str) -> Review {
        Review::Reject { reason: reason.into() }
    }

    #[test]
    fn a_manual_local_provider_lets_people_review_ov_and_ev_at_the_current_generation() {
        let provider = local(ReviewMode::Manual);
        assert_eq!(check_reviewable(&order("OV", Some(3)), Some(&provider), &Review::Approve).unwrap(), 3);
        assert_eq!(check_reviewable(&order("EV", Some(1)), Some(&provider), &reject("no")).unwrap(), 1);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let manual = local(ReviewMode::Manual);
        let automatic = local(ReviewMode::Automatic);
        let vendor = ClusterCertificateProvider::new("local", ClusterCertificateProviderSpec { local: None });
        let cases: Vec<(CertificateOrder, Option<&ClusterCertificateProvider>, Review, &str)> = vec![
            (order("OV", Some(1)), None, Review::Approve,
             "refers to ClusterCertificateProvider local, which does not exist; create it or fix spec.providerRef.name"),
            (order("OV", Some(1)), Some(&automatic), Review::Approve,
             "reviews orders automatically (spec.local.review: Automatic); set it to Manual to approve orders by hand"),
            (order("OV", Some(1)), Some(&vendor), reject("x"),
             "is not a local provider: its vendor's CA reviews the order, so there is nothing to reject here"),
            (order("DV", Some(1)), Some(&manual), Review::Approve,
             "web/shop is a DV order: DV certificates have no organization review, so there is nothing to approve"),
            (order("OV", Some(1)), Some(&manual), reject("  "),
             "--reason must say why the order is rejected"),
            (order("OV", None), Some(&manual), Review::Approve, "has no metadata.generation"),
        ];
        for (order, provider, review, want) in cases {
            let err = check_reviewable(&order, provider, &review).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn approving_records_the_generation_and_clears_an_old_reason() {
        assert_eq!(
            review_patch(&Review::Approve, 4),
            json!({"metadata": {"annotations": {
                "certorder.io/review": "approved",
                "certorder.io/review-generation": "4",
                "certorder.io/review-reason": null,
            }}})
        );
    }

    #[test]
    fn rejecting_records_the_trimmed_reason() {
        assert_eq!(
            review_patch(&reject(" licence expired \n"), 2),
            json!({"metadata": {"annotations": {
                "certorder.io/review": "rejected",
                "certorder.io/review-generation": "2",
                "certorder.io/review-reason": "licence expired",
            }}})
        );
    }

    #[test]
    fn renewing_records_the_time_in_rfc3339() {
        let now = DateTime::parse_from_rfc3339("2026-03-15T08:09:10.123Z").unwrap().with_timezone(&Utc);
        assert_eq!(
            renew_patch(now),
            json!({"metadata": {"annotations": {"certorder.io/renew-requested": "2026-03-15T08:09:10Z"}}})
        );
    }
}
