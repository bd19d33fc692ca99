//! `CertificateOrder`: one certificate's whole life, from purchase to a renewed TLS Secret.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::admission as adm;
use super::{Condition, SecretKeyRef};

/// Buys one certificate from a provider, validates it and keeps it, renewed, in a TLS Secret.
// kube's printcolumn(…) attributes each repeat `type_ = …`, which clippy takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "certorder.io",
    version = "v1alpha1",
    kind = "CertificateOrder",
    plural = "certificateorders",
    singular = "certificateorder",
    namespaced,
    status = "CertificateOrderStatus",
    shortname = "certorder",
    shortname = "certorders",
    shortname = "co",
    category = "certorder",
    validation = Rule::new(adm::PRODUCT_FIXED_RULE).message(adm::PRODUCT_FIXED_MESSAGE).field_path(".spec.product"),
    validation = Rule::new(adm::PROVIDER_FIXED_RULE).message(adm::PROVIDER_FIXED_MESSAGE).field_path(".spec.providerRef"),
    validation = Rule::new(adm::DOMAINS_BOUGHT_RULE).message(adm::DOMAINS_BOUGHT_MESSAGE).field_path(".spec.domains"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.product.type"),
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domains[0]"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.providerRef.name"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.certificate.notAfter"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.domains.exists(d, d.startsWith('*.')) || self.domainValidation.method == 'DNS'")
    .message("wildcard names (*.example.com) can only be validated by DNS: set spec.domainValidation.method to DNS, or remove the wildcard names")
    .field_path(".domainValidation.method"))]
#[x_kube(validation = Rule::new("self.product.type == 'DV' || has(self.organization)")
    .message("OV and EV certificates need spec.organization (the company the CA verifies)")
    .reason(Reason::FieldValueRequired)
    .field_path(".organization"))]
#[x_kube(validation = Rule::new("self.product.type == 'DV' || has(self.applicant)")
    .message("OV and EV certificates need spec.applicant (the person the CA calls during review)")
    .reason(Reason::FieldValueRequired)
    .field_path(".applicant"))]
#[x_kube(validation = Rule::new("self.product.type == 'DV' || (has(self.documents) && has(self.documents.confirmationLetter))")
    .message("OV and EV certificates need spec.documents.confirmationLetter: a Secret key holding the company's stamped confirmation letter")
    .reason(Reason::FieldValueRequired)
    .field_path(".documents"))]
pub struct CertificateOrderSpec {
    /// The `ClusterCertificateProvider` to buy from.
    pub provider_ref: ProviderRef,
    /// What to buy.
    pub product: Product,
    /// DNS names of the certificate, 1 to 100; the first is the common name. Wildcards
    /// (`*.example.com`) need DNS validation. Unicode names are converted to punycode.
    #[schemars(length(min = 1, max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(inner(length(min = 1, max = 253)))]
    #[schemars(transform = adm::domain_items)]
    pub domains: Vec<String>,
    /// The private key generated in the cluster for this certificate.
    #[serde(default)]
    pub private_key: PrivateKeySpec,
    /// Name of the `kubernetes.io/tls` Secret the certificate is written to (same namespace).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::subdomain("spec.secretName", "example-com-tls"))]
    pub secret_name: String,
    /// Labels and annotations copied onto the TLS Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    /// The company the CA verifies (OV and EV; UCloud asks for one for DV too, and takes the
    /// provider's `spec.ucloud.defaults.organization` when the order names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    /// The person the CA contacts (OV and EV; UCloud asks for one for DV too, and takes the
    /// provider's `spec.ucloud.defaults.applicant` when the order names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicant: Option<Applicant>,
    /// Documents the CA needs (OV and EV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<Documents>,
    /// How the domains are proven.
    #[serde(default)]
    pub domain_validation: DomainValidation,
    /// How long before expiry to renew, as a duration (`720h`). Default: a third of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = adm::duration_syntax("spec.renewBefore", "720h"))]
    #[x_kube(validation = adm::duration_bounds("1h", "4800h", true, &adm::renew_before_bounds_message()))]
    pub renew_before: Option<String>,
    /// Cancel the vendor order when the CertificateOrder is deleted before issuance.
    #[serde(default)]
    pub cancel_on_delete: bool,
}

/// The `ClusterCertificateProvider` an order buys from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::subdomain("spec.providerRef.name (a ClusterCertificateProvider)", "local"))]
    pub name: String,
}

/// The vendor's product.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Brand (CA), e.g. `DigiCert`, `GeoTrust`, `CFCA`. Free text for the local provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.product.brand", "DigiCert"))]
    pub brand: Option<String>,
    /// The vendor's product name, e.g. `SecureSite OV`. Free text for the local provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.product.name", "SecureSite OV"))]
    pub name: Option<String>,
    /// Validation level: `DV` (domain), `OV` (organization) or `EV` (extended).
    #[serde(rename = "type")]
    pub type_: CertificateType,
    /// Years bought. Certificates last at most 200 days, so a multi-year purchase is several issuances.
    #[serde(default = "default_validity_years")]
    #[schemars(range(min = 1, max = 5))]
    pub validity_years: u32,
}

fn default_validity_years() -> u32 {
    1
}

/// Validation level of the certificate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CertificateType {
    DV,
    OV,
    EV,
}

impl CertificateType {
    /// OV and EV go through documents and the CA's organization review.
    pub fn needs_organization_review(self) -> bool {
        !matches!(self, CertificateType::DV)
    }
}

/// The private key, generated in the cluster; the vendor only ever sees a CSR.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.size) || (self.algorithm == 'RSA' ? self.size in [2048, 3072, 4096] : self.size in [256, 384])")
    .message("privateKey.size must be 256 or 384 for ECDSA, and 2048, 3072 or 4096 for RSA")
    .field_path(".size"))]
pub struct PrivateKeySpec {
    /// `ECDSA` (default) or `RSA`.
    #[serde(default)]
    pub algorithm: KeyAlgorithm,
    /// Curve size for ECDSA (256 default, 384) or modulus for RSA (2048 default, 3072, 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// `Always` (default): a new key on every renewal. `Never`: keep the key across renewals.
    #[serde(default)]
    pub rotation_policy: RotationPolicy,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum KeyAlgorithm {
    #[default]
    ECDSA,
    RSA,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RotationPolicy {
    #[default]
    Always,
    Never,
}

/// Labels and annotations for the TLS Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// At most 64 labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = adm::label_values)]
    #[x_kube(validation = adm::label_keys(), validation = adm::reserved_labels())]
    pub labels: BTreeMap<String, String>,
    /// At most 50 annotations, each value at most 1024 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = adm::annotation_values)]
    #[x_kube(validation = adm::annotation_keys(), validation = adm::reserved_annotations())]
    pub annotations: BTreeMap<String, String>,
}

/// The company, as the vendor's "complete info" form asks for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Registered name of the company.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = adm::text("spec.organization.name", "Example Trading Co., Ltd."))]
    pub name: String,
    /// Department, e.g. `IT`. UCloud requires it (`CompanyDivision`): unset, the provider's
    /// default organization's division is sent, and an order with neither is refused before buying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.organization.division", "IT"))]
    pub division: Option<String>,
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = adm::text("spec.organization.address", "1 Example Road"))]
    pub address: String,
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.organization.city", "Shanghai"))]
    pub city: String,
    /// Province or state.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.organization.region", "Shanghai"))]
    pub region: String,
    /// ISO 3166-1 alpha-2 country code, e.g. `CN`.
    #[schemars(length(min = 2, max = 2))]
    #[x_kube(validation = adm::country())]
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = adm::postal_code())]
    pub postal_code: Option<String>,
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = adm::phone("spec.organization.phone"))]
    pub phone: String,
    /// Kind of organization as the vendor names it (e.g. `Enterprise`, `Government`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = adm::text("spec.organization.type", "Enterprise"))]
    pub type_: Option<String>,
    /// Kind of registration code (e.g. `UnifiedSocialCreditCode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = adm::text("spec.organization.codeType", "UnifiedSocialCreditCode"))]
    pub code_type: Option<String>,
    /// The registration code itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = adm::text("spec.organization.code", "91310000MA1EXAMPLE"))]
    pub code: Option<String>,
}

/// The person who applies; the CA phones and emails them during review.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Applicant {
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.applicant.name", "Li Lei"))]
    pub name: String,
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = adm::phone("spec.applicant.phone"))]
    pub phone: String,
    #[schemars(length(min = 1, max = 254))]
    #[x_kube(validation = adm::email())]
    pub email: String,
    /// Job title. UCloud requires it (`AdminTitle`): unset, the provider's default applicant's
    /// title is sent, and an order with neither is refused before buying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = adm::text("spec.applicant.title", "IT Manager"))]
    pub title: Option<String>,
}

/// Documents for the organization review.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Documents {
    /// The company's stamped confirmation letter (PDF, JPG or PNG), in a Secret of this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_letter: Option<SecretKeyRef>,
}

/// How the domains are proven to the CA.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(adm::HTTP_SETTINGS_RULE).message(adm::HTTP_SETTINGS_MESSAGE).field_path(".http"))]
#[x_kube(validation = Rule::new(adm::DNS_SETTINGS_RULE).message(adm::DNS_SETTINGS_MESSAGE).field_path(".dns"))]
pub struct DomainValidation {
    /// `DNS` (a TXT record) or `HTTP` (a file under /.well-known/pki-validation/).
    #[serde(default)]
    pub method: ValidationMethod,
    /// Settings of DNS validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsValidation>,
    /// Settings of HTTP file validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpValidation>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ValidationMethod {
    #[default]
    DNS,
    HTTP,
}

/// The type of DNS record a DNS challenge asks for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DnsRecordType {
    /// A TXT record holding the value.
    #[default]
    TXT,
    /// A CNAME record pointing at the value (UCloud's `DNS_CNAME`, Sectigo-style DCV).
    CNAME,
}

/// DNS validation. When a `ClusterDNSZone` covers the record name (or the name a CNAME there
/// points to), certorder creates the record before its self-check and removes it after
/// validation or when the order is deleted; otherwise the status lists the records for a person
/// to create. Either way the operator checks them against the zone's authoritative name servers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsValidation {
    /// The `ClusterDNSZone` to publish the records with, instead of the one whose zone is the
    /// longest suffix of the record name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::subdomain("spec.domainValidation.dns.zoneRef (a ClusterDNSZone)", "example-com"))]
    pub zone_ref: Option<String>,
}

/// HTTP file validation: the operator publishes each file in a ConfigMap, serves it with a solver
/// Pod and Service (`certorder solver`), and routes `/.well-known/pki-validation/<file>` of every
/// domain to it: by a new Ingress (default), by paths added to an existing Ingress
/// (`ingressName`), or by an HTTPRoute attached to a Gateway (`gatewayRef`). All of it is removed
/// once the certificate is issued or the order is deleted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.ingressName) && has(self.gatewayRef))")
    .message("set at most one of ingressName (add paths to an existing Ingress) and gatewayRef (attach an HTTPRoute)")
    .field_path(".gatewayRef"))]
pub struct HttpValidation {
    /// `ingressClassName` of the Ingress the operator creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::subdomain("spec.domainValidation.http.ingressClassName (an IngressClass)", "nginx"))]
    pub ingress_class_name: Option<String>,
    /// An existing Ingress of this namespace to add the validation paths to (and remove them from
    /// afterwards), for ingress controllers that give each Ingress its own address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::subdomain("spec.domainValidation.http.ingressName (an Ingress)", "shop-site"))]
    pub ingress_name: Option<String>,
    /// A Gateway API Gateway to attach an HTTPRoute to, instead of an Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ref: Option<GatewayRef>,
    /// `pathType` of the validation paths in an Ingress: `ImplementationSpecific` (accepted by
    /// ingress-nginx ≥ 1.12, whose strict path validation refuses `Exact` and `Prefix` paths
    /// containing a dot, and the only type GCE accepts), `Exact` or `Prefix`. Default: the
    /// provider's `spec.httpValidation.pathType`, else the operator's `--ingress-path-type`
    /// (`ImplementationSpecific` unless the admin changed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_type: Option<IngressPathType>,
}

/// `pathType` of an Ingress path.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IngressPathType {
    #[default]
    ImplementationSpecific,
    Exact,
    Prefix,
}

impl IngressPathType {
    pub fn as_str(self) -> &'static str {
        match self {
            IngressPathType::ImplementationSpecific => "ImplementationSpecific",
            IngressPathType::Exact => "Exact",
            IngressPathType::Prefix => "Prefix",
        }
    }

    pub fn parse(text: &str) -> Option<IngressPathType> {
        [IngressPathType::ImplementationSpecific, IngressPathType::Exact, IngressPathType::Prefix]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

/// The parent Gateway of the HTTPRoute (`parentRefs[0]`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::subdomain("spec.domainValidation.http.gatewayRef.name (a Gateway)", "public"))]
    pub name: String,
    /// Namespace of the Gateway. Default: the order's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = adm::dns_label("spec.domainValidation.http.gatewayRef.namespace", "infra"))]
    pub namespace: Option<String>,
    /// The Gateway's listener to attach to (it must accept plain HTTP on port 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::subdomain("spec.domainValidation.http.gatewayRef.sectionName (a listener name)", "http"))]
    pub section_name: Option<String>,
}

/// Where an order is in the vendor's lifecycle.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing bought yet (or about to buy).
    #[default]
    Pending,
    /// Bought; the vendor holds an empty order.
    Purchased,
    /// Applicant, company and CSR sent.
    InfoSubmitted,
    /// The confirmation letter is with the vendor (OV/EV).
    DocumentsUploaded,
    /// The CA is reviewing the organization (OV/EV), which takes days.
    OrganizationReview,
    /// Waiting for the CA to see the DNS record or file.
    DomainValidation,
    /// The TLS Secret holds a verified certificate.
    Issued,
    /// The CA turned the order down; fix the spec to resubmit.
    Rejected,
    /// Stopped; only a change of the spec (or credentials) can help.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Purchased => "Purchased",
            Phase::InfoSubmitted => "InfoSubmitted",
            Phase::DocumentsUploaded => "DocumentsUploaded",
            Phase::OrganizationReview => "OrganizationReview",
            Phase::DomainValidation => "DomainValidation",
            Phase::Issued => "Issued",
            Phase::Rejected => "Rejected",
            Phase::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The types of an order's conditions, in the order they are listed (see the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The TLS Secret holds a verified certificate for the spec.
    Ready,
    /// The operator is working towards Ready (Kubernetes' kstatus convention).
    Reconciling,
    /// Only a change by a person can help; the reason says which.
    Stalled,
    Purchased,
    InfoSubmitted,
    /// OV/EV only.
    DocumentsUploaded,
    /// OV/EV only.
    OrganizationVerified,
    DomainsVerified,
    /// Present (True) only while a purchase may have been made but is not found.
    PurchaseUnconfirmed,
    /// Present (True) only when a DV order is not issued a day after it was bought.
    IssuanceDelayed,
    /// Present (True) only when the CA's review of the organization (OV/EV) can be reused for
    /// less than 30 more days.
    OrganizationRevalidationDue,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Reconciling => "Reconciling",
            ConditionType::Stalled => "Stalled",
            ConditionType::Purchased => "Purchased",
            ConditionType::InfoSubmitted => "InfoSubmitted",
            ConditionType::DocumentsUploaded => "DocumentsUploaded",
            ConditionType::OrganizationVerified => "OrganizationVerified",
            ConditionType::DomainsVerified => "DomainsVerified",
            ConditionType::PurchaseUnconfirmed => "PurchaseUnconfirmed",
            ConditionType::IssuanceDelayed => "IssuanceDelayed",
            ConditionType::OrganizationRevalidationDue => "OrganizationRevalidationDue",
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl CertificateOrderStatus {
    /// The condition of this type, if listed.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
    }
}

/// What the operator knows; written only by the operator, once per reconcile, by server-side apply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateOrderStatus {
    #[serde(default)]
    pub phase: Phase,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` and one per step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// What the order is doing or waiting for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The domains in use, as ASCII (punycode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The vendor order behind this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<VendorOrder>,
    /// Name of the Secret holding the private key until the certificate is issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_secret: Option<String>,
    /// Domain validation, one entry per domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<Challenge>,
    /// The certificate in the TLS Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInfo>,
    /// When the certificate will be renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<DateTime<Utc>>,
    /// Failures in a row of the current step; reset on success.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// The last failure, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<DateTime<Utc>>,
    /// The spec generation that failed for good; a new generation tries again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_generation: Option<i64>,
    /// The `certorder renew` request (its time) the installed certificate answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_request_answered: Option<DateTime<Utc>>,
    /// Earliest time the operator acts again on its own (backoff or polling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<DateTime<Utc>>,
    /// HTTP validation: what the operator published (ConfigMap, solver, route) and must remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishedValidation>,
    /// The built-in CA's manual review: the decision a reviewer recorded with `certorder approve`
    /// or `certorder reject`. Written only through the status subresource (RBAC
    /// `certificateorders/status`), which order authors are not granted; the operator never writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// A reviewer's decision on an OV/EV order of a `local` provider with manual review.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// `Approved` or `Rejected`.
    pub decision: ApprovalDecision,
    /// The spec generation decided on; a newer spec needs a new decision.
    pub generation: i64,
    /// Why the reviewer rejected the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    /// When the decision was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_time: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApprovalDecision {
    Approved,
    Rejected,
}

/// The objects serving the validation files, as published.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedValidation {
    /// Identifies the files and the route published; a change publishes again.
    pub digest: String,
    /// The user's existing Ingress the validation paths were added to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_name: Option<String>,
    /// DNS records certorder added (only these values are removed again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_records: Vec<PublishedRecord>,
}

/// One DNS record value certorder added.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedRecord {
    /// Full name of the record (after following a delegating CNAME).
    pub name: String,
    /// `TXT` or `CNAME`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The value added.
    pub value: String,
    /// The `ClusterDNSZone` it was published with.
    pub zone: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The vendor order, recorded before it is bought so a crash cannot buy twice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VendorOrder {
    /// Name the operator gives the vendor order; unique to this CertificateOrder. Recorded before
    /// buying: after a crash the operator looks this name up before it buys again.
    pub name: String,
    /// The vendor's id once bought. From then on `spec.product` and `spec.providerRef` cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// How many domains were bought (the vendor's `DomainsCount`): `spec.domains` may not list more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains_count: Option<u32>,
    /// When the purchase was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_requested_time: Option<DateTime<Utc>>,
    /// Since when it is unknown whether the purchase was made: a purchase call got no answer, or
    /// the operator restarted after deciding to buy. The operator only looks for the order then,
    /// and buys again only when a person asks (`certorder buy-again`) or the provider allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_unconfirmed_time: Option<DateTime<Utc>>,
    /// What made the purchase unconfirmed, and what was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_unconfirmed_reason: Option<String>,
    /// The `certorder.io/buy-again` request a purchase answered (each request buys at most once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buy_again_answered: Option<DateTime<Utc>>,
    /// The vendor's own state code, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// What the vendor's state means for the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<VendorStage>,
    /// Digest of what was sent with the info (domains, company, applicant, CSR key); a change
    /// resubmits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_digest: Option<String>,
    /// Digest of the confirmation letter the vendor holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents_digest: Option<String>,
    /// ConfigMap in the order's namespace holding the vendor's confirmation-letter template, to
    /// fill in, stamp, scan and store in the letter Secret; empty when the vendor offers none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub letter_template: Option<String>,
    /// Who the vendor was told the order is for (UCloud): the company and the applicant the CA
    /// contacts, as sent with the info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<SubmittedInfo>,
    /// The CA's reason when it rejected the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    /// The spec generation the rejection applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_generation: Option<i64>,
    /// Certificates issued under this purchase (a multi-year purchase has several).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub issuances: u32,
    /// Until when the purchase (and its term renewals) was paid: the purchase time plus
    /// `spec.product.validityYears`, extended by each term renewal. A certificate that would
    /// outlive it is preceded by a term renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_end_time: Option<DateTime<Utc>>,
    /// When a term renewal was decided and not yet confirmed: after a lost answer or a restart the
    /// operator looks for a renewal paid since then before it renews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_renewal_requested_time: Option<DateTime<Utc>>,
    /// Term renewals made (`RenewCertificateOrder`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub term_renewals: u32,
    /// OV/EV: when the CA last finished its review of the organization. CAs reuse that review for
    /// 398 days (CA/Browser Forum Baseline Requirements 4.2.1); a certificate issued after that
    /// needs the confirmation letter and the review again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_validated_time: Option<DateTime<Utc>>,
}

/// What the vendor was sent about who orders: no secrets, only whom the CA will contact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmittedInfo {
    /// The company name sent (`CompanyName`).
    pub company_name: String,
    /// The applicant's name sent (`AdminName`).
    pub applicant_name: String,
    /// The applicant's email sent (`AdminEmail`): where the CA's mails, such as the domain
    /// confirmation of an OV/EV review, go.
    pub applicant_email: String,
}

/// The vendor's state, as it matters to the order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum VendorStage {
    /// Bought; waiting for the applicant, company and CSR.
    AwaitingInfo,
    /// Waiting for the confirmation letter (OV/EV).
    AwaitingDocuments,
    /// The CA reviews the organization (OV/EV).
    OrganizationReview,
    /// The CA waits to see the DNS records or files.
    DomainValidation,
    /// Everything is verified: the certificate can be downloaded.
    Issuable,
    /// The CA turned the order down.
    Rejected,
    /// The vendor order was cancelled or refunded.
    Cancelled,
    /// A state code the operator does not know; shown verbatim in `state`.
    Unknown,
}

/// One domain's validation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// The domain being validated (ASCII).
    pub domain: String,
    pub method: ValidationMethod,
    /// DNS: the record's full name. HTTP: the URL the CA fetches.
    pub target: String,
    /// The exact TXT value, CNAME target or file content the CA expects.
    pub expected_value: String,
    /// DNS: the record type the CA looks up, `TXT` or `CNAME`; absent means `TXT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<DnsRecordType>,
    /// What the operator's own check saw, the way the CA will look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_check: Option<SelfCheck>,
}

impl Challenge {
    /// Whether this is a DNS challenge asking for a CNAME (rather than a TXT record).
    pub fn is_cname(&self) -> bool {
        self.method == ValidationMethod::DNS && self.record_type == Some(DnsRecordType::CNAME)
    }
}

/// The result of the operator's check of one challenge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfCheck {
    /// Whether the CA would see the expected value.
    pub passed: bool,
    /// What was actually seen (values found, or the first bytes served).
    #[serde(default)]
    pub seen: String,
    /// What is wrong, in words a person can act on; empty when passed.
    #[serde(default)]
    pub diagnosis: String,
    /// Which server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// HTTP: the status code of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// HTTP: where redirects led (the URL the file was last fetched from), or the redirect the CA
    /// would not follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_target: Option<String>,
    /// HTTP: how many bytes the body had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    pub last_check_time: DateTime<Utc>,
}

/// The certificate the TLS Secret holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// Serial number, lowercase hex.
    pub serial: String,
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the leaf's DER, lowercase hex.
    pub sha256_fingerprint: String,
    pub secret_name: String,
    /// SHA-256 of the private key's public half, lowercase hex.
    pub key_fingerprint: String,
}
