//! `ClusterCertificateProvider`: a vendor account, or the built-in CA.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Message, Reason, Rule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::admission as adm;
use super::{Applicant, Condition, NamespacedSecretRef, Organization};

/// Longest certificate lifetime the CA/Browser Forum allows today (200 days, from 15 March 2026).
pub const MAX_LIFETIME_HOURS: i64 = 200 * 24;

/// Where orders buy certificates: a vendor account or the built-in CA. Exactly one kind is set.
// kube's printcolumn(…) attributes each repeat `type_ = …`, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
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
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".status.namespaces"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = one_kind_rule())]
pub struct ClusterCertificateProviderSpec {
    // The kinds of provider, one field each, listed again in `kinds` below.
    /// The built-in CA: for trying certorder without a vendor account, and for internal PKI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalProviderSpec>,
    /// A UCloud account buying from USSL, UCloud's certificate store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ucloud: Option<UcloudProviderSpec>,
    // Settings every kind shares.
    /// The namespaces whose orders may use this provider, by their labels (as a webhook's
    /// `namespaceSelector`). Unset (the default): every namespace, as before this field existed.
    /// An order from a namespace it does not select is Stalled and nothing is bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// The most one order may buy, as domains × years (`spec.domains` × `spec.product.validityYears`).
    /// Unset (the default): no cap. An order above it is Stalled and nothing is bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_domain_years: Option<u32>,
    /// HTTP validation of this provider's orders: the solver Pod's image and pull Secrets, and
    /// whether orders may route hosts that another namespace serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_validation: Option<ProviderHttpValidation>,
}

/// One kind of provider: a field of [`ClusterCertificateProviderSpec`] naming a vendor (or the
/// built-in CA), of which a provider sets exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderKind {
    /// The field under `spec`, which is also the kind's name in `status.kind`.
    pub field: &'static str,
    /// What it is, for people: the admission message names it.
    pub what: &'static str,
}

impl ClusterCertificateProviderSpec {
    /// Every kind of provider, in one place, with whether this spec sets it. The admission rule and
    /// its message, `status.kind` and the operator's choice of vendor are all built from this list:
    /// a new kind adds its field above and one line here.
    pub fn kinds(&self) -> Vec<(ProviderKind, bool)> {
        vec![
            (ProviderKind { field: "local", what: "the built-in CA" }, self.local.is_some()),
            (ProviderKind { field: "ucloud", what: "a UCloud USSL account" }, self.ucloud.is_some()),
        ]
    }

    /// The kind this spec sets, or what to fix when it sets none or several (`sets no kind: set
    /// spec.local or spec.ucloud`).
    pub fn kind(&self) -> Result<&'static str, String> {
        let kinds = self.kinds();
        let fields = |set_only: bool, last: &str| {
            let names: Vec<String> =
                kinds.iter().filter(|(_, set)| *set || !set_only).map(|(k, _)| format!("spec.{}", k.field)).collect();
            join(&names, last)
        };
        let set: Vec<&'static str> = kinds.iter().filter(|(_, set)| *set).map(|(k, _)| k.field).collect();
        match set[..] {
            [kind] => Ok(kind),
            [] => Err(format!("sets no kind: set {}", fields(false, "or"))),
            _ => Err(format!("sets {} kinds: set only one of {}", set.len(), fields(true, "and"))),
        }
    }
}

/// The admission rule that a provider sets exactly one kind, built from
/// [`ClusterCertificateProviderSpec::kinds`]: a new kind needs no new rule.
fn one_kind_rule() -> Rule {
    let kinds = ClusterCertificateProviderSpec::default().kinds();
    let has: Vec<String> = kinds.iter().map(|(k, _)| format!("has(self.{})", k.field)).collect();
    let named: Vec<String> = kinds.iter().map(|(k, _)| format!("spec.{} ({})", k.field, k.what)).collect();
    Rule::new(format!("[{}].exists_one(set, set)", has.join(", ")))
        .message(Message::Message(format!("set exactly one of {}", join(&named, "and"))))
        .reason(Reason::FieldValueRequired)
}

/// `a`, `a and b`, `a, b and c`.
fn join(items: &[String], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., end] => format!("{} {last} {end}", rest.join(", ")),
    }
}

/// Namespaces by their labels, as a `metav1.LabelSelector`: every `matchLabels` entry and every
/// `matchExpressions` requirement must hold; `{}` selects every namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels the namespace must carry with these values (at most 64).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = selector_labels)]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements on the namespace's labels (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub match_expressions: Vec<NamespaceRequirement>,
}

/// One requirement on a namespace label, as in `metav1.LabelSelectorRequirement`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceRequirement {
    /// The label's key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn` (at most 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

fn selector_labels(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".into(), serde_json::json!(64));
    if let Some(values) = schema.get_mut("additionalProperties").and_then(serde_json::Value::as_object_mut) {
        values.insert("maxLength".into(), serde_json::json!(63));
    }
}

impl NamespaceSelector {
    /// The same selector as a `metav1.LabelSelector`.
    pub fn to_label_selector(&self) -> LabelSelector {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        LabelSelector {
            match_labels: (!self.match_labels.is_empty()).then(|| self.match_labels.clone()),
            match_expressions: (!self.match_expressions.is_empty()).then(|| {
                self.match_expressions
                    .iter()
                    .map(|r| LabelSelectorRequirement {
                        key: r.key.clone(),
                        operator: format!("{:?}", r.operator),
                        values: (!r.values.is_empty()).then(|| r.values.clone()),
                    })
                    .collect()
            }),
        }
    }
}

/// What the cluster admin decides for HTTP validation of a provider's orders (never the order).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderHttpValidation {
    /// Image of the solver Pods. Default: the operator's `--solver-image` (the chart's image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = adm::image())]
    pub solver_image: Option<String>,
    /// Names of Secrets, in each order's namespace, for pulling the solver image. Default: the
    /// operator's `--solver-image-pull-secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub image_pull_secrets: Option<Vec<String>>,
    /// Let an order route a host that an Ingress or HTTPRoute of another namespace already serves.
    /// Default `false`: such an order is Stalled, naming the other object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_hosts_of_other_namespaces: bool,
    /// `pathType` of the validation paths in Ingresses for orders that set none: for an ingress
    /// controller that wants another than the operator's `--ingress-path-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_type: Option<crate::api::IngressPathType>,
}

/// A UCloud account: orders buy the products of UCloud's SSL certificate service (USSL).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UcloudProviderSpec {
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
    /// What orders of this provider send UCloud when they name none themselves: USSL's
    /// `ComplementCSRInfo` requires a company and an applicant for every order, DV included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<UcloudDefaults>,
}

/// The company and applicant an order of this provider falls back to. An order's own
/// `spec.organization` / `spec.applicant` win; from the defaults it takes the whole company or
/// applicant when it names none, and only `division` / `title` when it names one without them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UcloudDefaults {
    /// The company, as an order's `spec.organization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<DefaultOrganization>,
    /// The applicant, as an order's `spec.applicant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicant: Option<DefaultApplicant>,
}

/// A default company: the fields of an order's `spec.organization`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultOrganization {
    /// Registered name of the company.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.organization.name", "Example Trading Co., Ltd."))]
    pub name: String,
    /// Department, e.g. `IT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.organization.division", "IT"))]
    pub division: Option<String>,
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.organization.address", "1 Example Road"))]
    pub address: String,
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.organization.city", "Shanghai"))]
    pub city: String,
    /// Province or state.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.organization.region", "Shanghai"))]
    pub region: String,
    /// ISO 3166-1 alpha-2 country code, e.g. `CN`.
    #[schemars(length(min = 2, max = 2))]
    #[x_kube(validation = adm::country_of("spec.ucloud.defaults.organization.country"))]
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = adm::postal_code_of("spec.ucloud.defaults.organization.postalCode"))]
    pub postal_code: Option<String>,
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = adm::phone("spec.ucloud.defaults.organization.phone"))]
    pub phone: String,
    /// Kind of organization as the vendor names it (e.g. `Enterprise`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.organization.type", "Enterprise"))]
    pub type_: Option<String>,
    /// Kind of registration code (e.g. `UnifiedSocialCreditCode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.organization.codeType", "UnifiedSocialCreditCode"))]
    pub code_type: Option<String>,
    /// The registration code itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.organization.code", "91310000MA1EXAMPLE"))]
    pub code: Option<String>,
}

impl From<DefaultOrganization> for Organization {
    fn from(d: DefaultOrganization) -> Organization {
        Organization {
            name: d.name,
            division: d.division,
            address: d.address,
            city: d.city,
            region: d.region,
            country: d.country,
            postal_code: d.postal_code,
            phone: d.phone,
            type_: d.type_,
            code_type: d.code_type,
            code: d.code,
        }
    }
}

/// A default applicant: the fields of an order's `spec.applicant`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultApplicant {
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.applicant.name", "Li Lei"))]
    pub name: String,
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = adm::phone("spec.ucloud.defaults.applicant.phone"))]
    pub phone: String,
    #[schemars(length(min = 1, max = 254))]
    #[x_kube(validation = adm::email_of("spec.ucloud.defaults.applicant.email"))]
    pub email: String,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.ucloud.defaults.applicant.title", "IT Manager"))]
    pub title: Option<String>,
}

impl From<DefaultApplicant> for Applicant {
    fn from(d: DefaultApplicant) -> Applicant {
        Applicant { name: d.name, phone: d.phone, email: d.email, title: d.title }
    }
}

/// A CA run by the operator, with the vendor's steps: review (manual or automatic) and real
/// domain validation before it issues.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalProviderSpec {
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
    /// The namespaces allowed to use the provider, for `kubectl get`: `*` (all) or the selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_is_the_one_field_set() {
        let reference = NamespacedSecretRef { name: "s".into(), namespace: "n".into() };
        let local = LocalProviderSpec {
            ca_secret_ref: reference.clone(),
            review: ReviewMode::Manual,
            certificate_lifetime: None,
        };
        let ucloud: UcloudProviderSpec =
            serde_json::from_value(serde_json::json!({"credentialsSecretRef": {"name": "s", "namespace": "n"}}))
                .unwrap();
        let spec = |local: Option<LocalProviderSpec>, ucloud: Option<UcloudProviderSpec>| {
            ClusterCertificateProviderSpec { local, ucloud, ..Default::default() }
        };
        assert_eq!(spec(Some(local.clone()), None).kind(), Ok("local"));
        assert_eq!(spec(None, Some(ucloud.clone())).kind(), Ok("ucloud"));
        assert_eq!(spec(None, None).kind(), Err("sets no kind: set spec.local or spec.ucloud".into()));
        assert_eq!(
            spec(Some(local), Some(ucloud)).kind(),
            Err("sets 2 kinds: set only one of spec.local and spec.ucloud".into())
        );
    }
}
