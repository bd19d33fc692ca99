//! The commands for people: `certorder approve`, `reject`, `renew`, `buy-again`, `status` and
//! `check` (also `kubectl certorder …`). `main.rs` parses their flags and calls these.
//!
//! Each command reads what it acts on, refuses with a message that says what to do instead when the
//! action cannot apply, and otherwise writes the order with one JSON merge patch (a review decision
//! in `status.approval` through the status subresource, a renewal request in an annotation); the
//! controller does the rest. The checks and patches are pure functions, tested next to them.

mod inspect;
mod renew;
mod review;

use std::path::PathBuf;

use kube::api::{Api, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::api::CertificateOrder;

pub use inspect::{check, render_status, status};
pub use renew::{buy_again, renew, renew_patch};
pub use review::{Review, check_reviewable, review, review_patch};

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
    #[error(
        "CertificateOrder {namespace}/{name} has no unconfirmed purchase (condition PurchaseUnconfirmed), so there is nothing to buy again; `certorder status {name} -n {namespace}` shows where it is"
    )]
    NotUnconfirmed { namespace: String, name: String },
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
    #[error("cannot run the check: {0}")]
    Check(String),
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
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(ToolError::Kubeconfig)?
        }
        // A context only means something in a kubeconfig: do not fall back to in-cluster.
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await.map_err(ToolError::Kubeconfig)?,
        (None, None) => kube::Config::infer().await.map_err(ToolError::Infer)?,
    };
    let namespace = target.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)?;
    Ok((client, namespace))
}

/// Field manager of the tools' patches, so `managedFields` shows who approved.
pub const FIELD_MANAGER: &str = "certorder-tools";

fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

/// The order, or a message that says how to find the right one.
async fn get_order(api: &Api<CertificateOrder>, namespace: &str, name: &str) -> Result<CertificateOrder, ToolError> {
    api.get_opt(name).await?.ok_or_else(|| ToolError::OrderNotFound { namespace: namespace.into(), name: name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        ClusterCertificateProvider, ClusterCertificateProviderSpec, LocalProviderSpec, NamespacedSecretRef,
        RENEW_ANNOTATION, ReviewMode,
    };
    use chrono::{DateTime, Utc};
    use serde_json::json;

    pub(super) fn order(kind: &str, generation: Option<i64>) -> CertificateOrder {
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

    pub(super) fn local(review: ReviewMode) -> ClusterCertificateProvider {
        ClusterCertificateProvider::new(
            "local",
            ClusterCertificateProviderSpec {
                local: Some(LocalProviderSpec {
                    ca_secret_ref: NamespacedSecretRef { name: "ca".into(), namespace: "certorder-system".into() },
                    review,
                    certificate_lifetime: None,
                }),
                ..Default::default()
            },
        )
    }

    pub(super) fn reject(reason: &str) -> Review {
        Review::Reject { reason: reason.into() }
    }

    // ---- against the testbed API server, through a kubeconfig as a person would ----------------

    mod on_testbed {
        use super::*;
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::CustomResourceExt;
        use kube::api::PostParams;
        use std::path::Path;
        use testbed::apiserver::ApiServer;

        async fn install_crds(client: &kube::Client) {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            for crd in [CertificateOrder::crd(), ClusterCertificateProvider::crd()] {
                crds.create(&PostParams::default(), &crd).await.expect("the testbed accepts the CRD");
            }
            let orders: Api<CertificateOrder> = Api::namespaced(client.clone(), "web");
            for _ in 0..50 {
                if orders.list(&Default::default()).await.is_ok() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the CertificateOrder CRD never became served");
        }

        async fn create<K>(api: &Api<K>, object: K)
        where
            K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
        {
            api.create(&PostParams::default(), &object).await.expect("create");
        }

        fn annotations(order: &CertificateOrder) -> std::collections::BTreeMap<String, String> {
            order.metadata.annotations.clone().unwrap_or_default()
        }

        #[tokio::test]
        async fn approve_reject_and_renew_through_a_kubeconfig() {
            let server = ApiServer::start().await;
            let admin = server.client();
            install_crds(&admin).await;
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
            let mut web = k8s_openapi::api::core::v1::Namespace::default();
            web.metadata.name = Some("web".into());
            create(&namespaces, web).await;
            let providers: Api<ClusterCertificateProvider> = Api::all(admin.clone());
            create(&providers, local(ReviewMode::Manual)).await;
            let mut auto = local(ReviewMode::Automatic);
            auto.metadata.name = Some("local-auto".into());
            create(&providers, auto).await;
            let orders: Api<CertificateOrder> = Api::namespaced(admin.clone(), "web");
            // The OV example carries the company, applicant and letter the admission rules ask for.
            let ov_example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ov-order.yaml");
            let mut ov: CertificateOrder = serde_yaml::from_str(&std::fs::read_to_string(ov_example).unwrap()).unwrap();
            ov.metadata = order("OV", None).metadata;
            create(&orders, ov).await;
            let mut dv = order("DV", None);
            dv.metadata.name = Some("dv".into());
            dv.spec.provider_ref.name = "local-auto".into();
            create(&orders, dv).await;

            let target =
                Target { kubeconfig: Some(server.kubeconfig_path()), context: None, namespace: Some("web".into()) };
            let (client, namespace) = connect(&target).await.expect("the testbed's kubeconfig works");
            assert_eq!(namespace, "web");

            // Reject, then approve: the reason goes away, the generation is recorded.
            let said = review(client.clone(), "web", "shop", reject("licence expired")).await.unwrap();
            assert!(said.contains("web/shop rejected (generation 1): licence expired"), "{said}");
            let approval = |o: CertificateOrder| o.status.and_then(|s| s.approval).expect("status.approval");
            let a = approval(orders.get("shop").await.unwrap());
            assert_eq!((a.decision, a.generation), (crate::api::ApprovalDecision::Rejected, 1));
            assert_eq!(a.reason.as_deref(), Some("licence expired"));
            assert!(annotations(&orders.get("shop").await.unwrap()).is_empty(), "no annotation decides a review");

            let mut fixed = orders.get("shop").await.unwrap();
            fixed.spec.domains.push("checkout.example.com".into());
            orders.replace("shop", &PostParams::default(), &fixed).await.unwrap();
            let said = review(client.clone(), "web", "shop", Review::Approve).await.unwrap();
            assert!(said.contains("web/shop approved (generation 2)"), "{said}");
            let a = approval(orders.get("shop").await.unwrap());
            assert_eq!((a.decision, a.generation), (crate::api::ApprovalDecision::Approved, 2));
            assert_eq!(a.reason, None);

            // Refusals.
            let err = review(client.clone(), "web", "nope", Review::Approve).await.unwrap_err().to_string();
            assert!(err.contains("CertificateOrder web/nope does not exist"), "{err}");
            let err = review(client.clone(), "web", "dv", Review::Approve).await.unwrap_err().to_string();
            assert!(err.contains("reviews orders automatically"), "{err}");
            assert!(orders.get("dv").await.unwrap().status.and_then(|s| s.approval).is_none());
            let err = renew(client.clone(), "other", "shop", Utc::now()).await.unwrap_err().to_string();
            assert!(err.contains("CertificateOrder other/shop does not exist"), "{err}");

            // Renew.
            let now = DateTime::parse_from_rfc3339("2026-05-01T10:00:00Z").unwrap().with_timezone(&Utc);
            renew(client, "web", "dv", now).await.unwrap();
            let a = annotations(&orders.get("dv").await.unwrap());
            assert_eq!(a.get(RENEW_ANNOTATION).map(String::as_str), Some("2026-05-01T10:00:00Z"));
        }
    }
}
