//! `ClusterDNSZone`: DNS access an admin configures once per zone, so that orders validating by
//! DNS get their records published (and removed) by certorder instead of by a person.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::admission as adm;

/// A DNS name (letters, digits, '-' and '_' labels), no trailing dot.
pub const ZONE_NAME_RULE: &str = r"self.matches('^([A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?\\.)*[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?$')";
pub const ZONE_NAME_MESSAGE: &str = "spec.zone and spec.rfc2136.tsigKeyName must be DNS names such as example.com (labels of letters, digits, '-' and '_', separated by dots, no trailing dot)";
/// `host`, `host:port`, `ip`, `ip:port` or `[v6]:port`.
pub const NAMESERVER_RULE: &str =
    r"self.matches('^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+|[0-9A-Fa-f:]+)(:[0-9]{1,5})?$')";
pub const NAMESERVER_MESSAGE: &str = "spec.rfc2136.nameserver must be the primary server as host, host:port, ip:port or [v6]:port, such as ns1.example.com:53 or 192.0.2.53";

/// A DNS zone certorder may publish validation records in, and how. Orders validating by DNS
/// use the zone whose name is the longest suffix of the record name (after following a CNAME at
/// it, for delegated names), or the one named in `spec.domainValidation.dns.zoneRef`. Exactly
/// one way of publishing is set.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "certorder.io",
    version = "v1alpha1",
    kind = "ClusterDNSZone",
    plural = "clusterdnszones",
    singular = "clusterdnszone",
    shortname = "cdz",
    category = "certorder",
    printcolumn(name = "Zone", type_ = "string", json_path = ".spec.zone"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.rfc2136) != has(self.externalDNS)")
    .message("set exactly one of spec.rfc2136 (dynamic DNS update with a TSIG key) and spec.externalDNS (a DNSEndpoint that external-dns publishes)")
    .reason(Reason::FieldValueRequired))]
pub struct ClusterDNSZoneSpec {
    /// The zone's name (its SOA owner), e.g. `example.com`: records at this name and below it.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(ZONE_NAME_RULE).message(ZONE_NAME_MESSAGE))]
    pub zone: String,
    /// Dynamic DNS update (RFC 2136) signed with a TSIG key: BIND, PowerDNS, Knot, Windows DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc2136: Option<Rfc2136>,
    /// A `DNSEndpoint` (externaldns.k8s.io/v1alpha1) that external-dns publishes to its provider.
    #[serde(default, rename = "externalDNS", skip_serializing_if = "Option::is_none")]
    pub external_dns: Option<ExternalDns>,
    /// TTL of the records published, in seconds; default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl: Option<u32>,
}

/// Where and how to send RFC 2136 updates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rfc2136 {
    /// The primary server that accepts updates for the zone: `host:port` or `ip:port`
    /// (`[v6]:port`); the port defaults to 53.
    #[schemars(length(min = 1, max = 260))]
    #[x_kube(validation = Rule::new(NAMESERVER_RULE).message(NAMESERVER_MESSAGE))]
    pub nameserver: String,
    /// Name of the TSIG key, as the server knows it (BIND: `key "<name>"`).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(ZONE_NAME_RULE).message(ZONE_NAME_MESSAGE))]
    pub tsig_key_name: String,
    /// `HMACSHA256` (default), `HMACSHA384` or `HMACSHA512`.
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// Secret holding the base64 TSIG secret (as `tsig-keygen` prints it) under `key`.
    pub tsig_secret_ref: NamespacedSecretKeyRef,
}

/// TSIG algorithms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TsigAlgorithm {
    #[default]
    HMACSHA256,
    HMACSHA384,
    HMACSHA512,
}

/// A key of a Secret in a given namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedSecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::subdomain("spec.rfc2136.tsigSecretRef.name", "dns-tsig"))]
    pub name: String,
    /// Namespace of the Secret (the operator's, typically).
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = adm::dns_label("spec.rfc2136.tsigSecretRef.namespace", "certorder-system"))]
    pub namespace: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = adm::secret_key("the key"))]
    pub key: String,
}

/// external-dns settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDns {
    /// Namespace the `DNSEndpoint`s are created in (one that external-dns watches, with
    /// `--source=crd`). Default: the order's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = adm::dns_label("spec.externalDNS.namespace", "external-dns"))]
    pub namespace: Option<String>,
    /// Labels put on each `DNSEndpoint`, for an external-dns started with `--label-filter`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(transform = adm::label_values)]
    #[x_kube(validation = adm::label_keys())]
    pub labels: std::collections::BTreeMap<String, String>,
}
