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
/// Label naming the order an object belongs to: the order's name, or for a name longer than a
/// label value may be, a stable short form of it (see [`order_label_value`]).
pub const ORDER_LABEL: &str = "certorder.io/order";
/// Annotation with the full name of the order an object belongs to (names may have 253 characters,
/// label values 63).
pub const ORDER_ANNOTATION: &str = "certorder.io/order";
/// Finalizer on orders: removes what the order published, and cancels the vendor order when asked.
pub const FINALIZER: &str = "certorder.io/cleanup";

/// Annotation on an existing Secret by which its owner lets one order (named in the value) take
/// it over as its TLS Secret; without it certorder never writes a Secret it did not create.
pub const ADOPT_ANNOTATION: &str = "certorder.io/adopt-for";
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
    pub status: ConditionStatus,
    /// A CamelCase reason a program can match on.
    pub reason: String,
    /// What happened, for people.
    #[serde(default)]
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The status of a [`Condition`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds { ConditionStatus::True } else { ConditionStatus::False }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `status == "True"`, as tests and people write it.
impl PartialEq<&str> for ConditionStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ConditionStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
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

/// The [`ORDER_LABEL`] value for an order named `name`: the name itself when it fits a label value
/// (at most 63 characters; an object name is otherwise a valid one), else its first 46 characters
/// and 16 hex digits of its SHA-256, so that long names stay distinct and stable.
pub fn order_label_value(name: &str) -> String {
    shortened(name, "", 63)
}

/// `name` followed by `suffix`, within `max` characters: as is when it fits, else a stem of `name`,
/// 16 hex digits of its SHA-256, then `suffix`. Names derived from an order's (the pending key
/// Secret, the letter template ConfigMap) use it, so an order of 253 characters still gets them.
pub fn shortened(name: &str, suffix: &str, max: usize) -> String {
    use sha2::Digest;
    let full = format!("{name}{suffix}");
    if full.len() <= max {
        return full;
    }
    let hash = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..8]);
    let room = max.saturating_sub(hash.len() + 1 + suffix.len());
    let stem: String = name.chars().take(room).collect();
    let stem = stem.trim_end_matches(['-', '.']);
    if stem.is_empty() { format!("{hash}{suffix}") } else { format!("{stem}-{hash}{suffix}") }
}

/// The full name of the order an object of certorder's belongs to: its [`ORDER_ANNOTATION`], or
/// (objects written before names were shortened) its [`ORDER_LABEL`].
pub fn owning_order(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    let from = |m: &Option<std::collections::BTreeMap<String, String>>, key: &str| m.as_ref()?.get(key).cloned();
    from(&meta.annotations, ORDER_ANNOTATION).or_else(|| from(&meta.labels, ORDER_LABEL))
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn long_order_names_become_distinct_valid_label_values_and_object_names() {
        assert_eq!(order_label_value("site"), "site");
        assert_eq!(order_label_value(&"a".repeat(63)), "a".repeat(63));
        let long = format!("{}.example-{}", "x".repeat(120), "y".repeat(120));
        assert_eq!(long.len(), 249);
        let other = format!("{}.example-{}", "x".repeat(120), "z".repeat(120));
        let (a, b) = (order_label_value(&long), order_label_value(&other));
        assert_ne!(a, b, "names that share their first characters stay apart");
        for value in [&a, &b] {
            assert!(value.len() <= 63, "{value}");
            assert!(value.starts_with('x') && value.chars().last().unwrap().is_ascii_alphanumeric(), "{value}");
        }
        assert_eq!(order_label_value(&long), a, "stable");
        // A stem that would end with '-' or '.' before the hash is trimmed.
        let dotted = format!("{}.{}", "d".repeat(45), "e".repeat(40));
        assert!(!order_label_value(&dotted).contains(".-"), "{}", order_label_value(&dotted));

        let key = shortened(&long, "-certorder-key", 253);
        assert!(key.len() <= 253 && key.ends_with("-certorder-key"), "{key}");
        assert_eq!(shortened("site", "-certorder-key", 253), "site-certorder-key");
    }
}
