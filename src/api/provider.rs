//! `ClusterCertificateProvider`: a vendor account, or the built-in CA.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::admission as adm;
use super::{Condition, NamespacedSecretRef};

/// Longest certificate lifetime the CA/Browser Forum allows today (200 days, from 15 March 2026).
pub const MAX_LIFETIME_HOURS: i64 = 200 * 24;

/// Where orders buy certificates: a vendor account or the built-in CA. Exactly one kind is set.
// kube's printcolumn(…) attributes each repeat `type_ = …`, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
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
#[x_kube(validation = Rule::new("has(self.local) != has(self.ucloud)")
    .message("set exactly one of spec.local (the built-in CA) and spec.ucloud (a UCloud USSL account)")
    .reason(Reason::FieldValueRequired))]
pub struct ClusterCertificateProviderSpec {
    /// The built-in CA: for trying certorder without a vendor account, and for internal PKI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalProvider>,
    /// A UCloud account buying from USSL, UCloud's certificate store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ucloud: Option<UcloudProvider>,
}

/// A UCloud account: orders buy the products of UCloud's SSL certificate service (USSL).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UcloudProvider {
    /// API endpoint; default `https://api.ucloud.cn` (inside UCloud's VPCs `http://api.service.ucloud.cn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = adm::endpoint())]
    pub endpoint: Option<String>,
    /// Project the certificates are bought in; empty means the account's default project
    /// (sub-accounts must set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = adm::project_id())]
    pub project_id: Option<String>,
    /// Secret with the API key pair under the keys `PublicKey` and `PrivateKey`.
    pub credentials_secret_ref: NamespacedSecretRef,
    /// Calls per second to the API, shared by every order of this provider; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub requests_per_second: Option<u32>,
    /// How often to ask the vendor while the CA reviews an organization, as a duration;
    /// default the operator's `--review-poll` (10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = adm::duration_syntax("spec.ucloud.reviewPollInterval", "10m"))]
    #[x_kube(validation = adm::duration_bounds("1s", "24h", false, &adm::poll_bounds_message("reviewPollInterval", "10m")))]
    pub review_poll_interval: Option<String>,
    /// How often to ask the vendor while it validates domains, as a duration; default the
    /// operator's `--validation-poll` (1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = adm::duration_syntax("spec.ucloud.validationPollInterval", "1m"))]
    #[x_kube(validation = adm::duration_bounds("1s", "24h", false, &adm::poll_bounds_message("validationPollInterval", "1m")))]
    pub validation_poll_interval: Option<String>,
    /// After a purchase whose outcome is unknown (its answer was lost), buy again on its own once
    /// this long has passed with no such order in the vendor's list, as a duration (e.g. `1h`).
    /// Unset (the default): never; the order waits, looking, until a person sets
    /// `status.order.id` or runs `certorder buy-again`. Set it longer than the vendor's listing
    /// lag, or an order can be paid twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = adm::duration_syntax("spec.ucloud.buyAgainAfter", "1h"))]
    #[x_kube(validation = adm::duration_bounds("1s", "720h", false, "spec.ucloud.buyAgainAfter must be between 1s and 720h, such as 1h (longer than the vendor's listing lag)"))]
    pub buy_again_after: Option<String>,
    /// Extra CA certificates (PEM) that issued certificates may chain to, besides the Mozilla
    /// root program's (for a vendor that sells from a private CA). A certificate that chains to
    /// neither is never installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    #[x_kube(validation = adm::pem_bundle("spec.ucloud.caBundle"))]
    pub ca_bundle: Option<String>,
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
    #[schemars(length(max = 64))]
    #[x_kube(validation = adm::duration_syntax("spec.local.certificateLifetime", "2160h"))]
    #[x_kube(validation = adm::duration_bounds("1h", "4800h", false, &adm::lifetime_bounds_message()))]
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
