//! `ClusterCertificateProvider`: a vendor account, or the built-in CA.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, NamespacedSecretRef};

/// Longest certificate lifetime the CA/Browser Forum allows today (200 days, from 15 March 2026).
pub const MAX_LIFETIME_HOURS: i64 = 200 * 24;

/// Where orders buy certificates: a vendor account or the built-in CA. Exactly one kind is set.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "certorder.io",
    version = "v1alpha1",
    kind = "ClusterCertificateProvider",
    plural = "clustercertificateproviders",
    singular = "clustercertificateprovider",
    status = "ClusterCertificateProviderStatus",
    shortname = "ccp",
    category = "certorder",
    printcolumn(name = "Kind", type_ = "string", json_path = ".status.kind"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.local)")
    .message("set spec.local: the built-in CA is the only kind of provider in this version")
    .reason(Reason::FieldValueRequired)
    .field_path(".local"))]
pub struct ClusterCertificateProviderSpec {
    /// The built-in CA: for trying certorder without a vendor account, and for internal PKI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalProvider>,
}

/// A CA run by the operator, with the vendor's steps: review (manual or automatic) and real
/// domain validation before it issues.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalProvider {
    /// Secret with the CA's `tls.crt` and `tls.key`; generated on first use when absent.
    pub ca_secret_ref: NamespacedSecretRef,
    /// `Manual` (default): `certorder approve` / `certorder reject` decide OV and EV orders.
    /// `Automatic`: every order is approved.
    #[serde(default)]
    pub review: ReviewMode,
    /// Lifetime of issued certificates as a duration; default `2160h` (90 days), at most `4800h`
    /// (200 days, the CA/Browser Forum maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub certificate_lifetime: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ReviewMode {
    #[default]
    Manual,
    Automatic,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCertificateProviderStatus {
    /// `local` or a vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
