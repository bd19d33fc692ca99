//! The CRD types of `certorder.io/v1alpha1`: serde + schemars + kube derive, nothing else.
//!
//! Admission-time checks live here as OpenAPI constraints and CEL rules, each with a message that
//! says what to fix; the controller re-checks what a schema cannot express (IDNA, durations).

pub mod admission;
mod dnszone;
mod order;
mod provider;

pub use dnszone::*;
pub use order::*;
pub use provider::*;

use chrono::{DateTime, Utc};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every certorder resource.
pub const GROUP: &str = "certorder.io";
/// Label put on everything the operator creates; its watches select on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`], also the server-side apply field manager.
pub const MANAGER: &str = "certorder";
/// Label naming the order an object belongs to.
pub const ORDER_LABEL: &str = "certorder.io/order";
/// Finalizer on orders: removes what the order published, and cancels the vendor order when asked.
pub const FINALIZER: &str = "certorder.io/cleanup";

/// Annotation the local provider's manual review reads: `approved` or `rejected`.
pub const REVIEW_ANNOTATION: &str = "certorder.io/review";
/// Generation of the spec the review decision applies to; a newer spec needs a new decision.
pub const REVIEW_GENERATION_ANNOTATION: &str = "certorder.io/review-generation";
/// Why the reviewer rejected the order.
pub const REVIEW_REASON_ANNOTATION: &str = "certorder.io/review-reason";
/// Set by `certorder renew`: the RFC 3339 time of the request; the order renews once for it.
pub const RENEW_ANNOTATION: &str = "certorder.io/renew-requested";
/// Set by `certorder buy-again`: the RFC 3339 time of a person's decision that a purchase whose
/// outcome is unknown was not made; the order buys once for it.
pub const BUY_AGAIN_ANNOTATION: &str = "certorder.io/buy-again";

/// A condition in the Kubernetes API conventions (the `metav1.Condition` wire shape).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled`, or one per step (see the README).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason a program can match on.
    pub reason: String,
    /// What happened, for people.
    #[serde(default)]
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A reference to one key of a Secret in the order's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = admission::subdomain("the Secret's name", "acme-letter"))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = admission::secret_key("the key"))]
    pub key: String,
}

/// A reference to a Secret in a given namespace (cluster-scoped objects must name one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedSecretRef {
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = admission::subdomain("the Secret's name", "example-secret"))]
    pub name: String,
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = admission::dns_label("the Secret's namespace", "certorder-system"))]
    pub namespace: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crds_carry_the_admission_rules_and_columns() {
        let order = serde_json::to_string(&CertificateOrder::crd()).unwrap();
        for needle in [
            "wildcard names (*.example.com) can only be validated by DNS",
            "OV and EV certificates need spec.organization",
            "OV and EV certificates need spec.documents.confirmationLetter",
            "\"x-kubernetes-list-type\":\"set\"",
            "\"maxItems\":100",
            "\"jsonPath\":\".spec.domains[0]\"",
            "\"shortNames\":[\"certorder\",\"certorders\",\"co\"]",
        ] {
            assert!(order.contains(needle), "CertificateOrder CRD lacks {needle}");
        }
        let provider = serde_json::to_string(&ClusterCertificateProvider::crd()).unwrap();
        assert!(provider.contains("\"scope\":\"Cluster\""));
    }
}
