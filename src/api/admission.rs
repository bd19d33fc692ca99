//! The admission rules of both CRDs: CEL expressions and the messages the API server answers
//! with, kept in one place so the types, the README and the table test use the same text.
//!
//! Everything here runs on any Kubernetes from 1.29 on (CRD validation rules are GA there, and
//! `reason`/`fieldPath` exist since 1.28): the rules use only the CEL standard library (`matches`,
//! `size`, `in`, `duration`, the `all`/`exists` macros) and `lowerAscii` of the strings extension,
//! which every release with validation rules has. No IP, CIDR, format or URL library is needed:
//! each syntax is a regular expression (RE2 and Rust's `regex` agree on every construct used).
//!
//! Cost: every string a rule reads has a `maxLength`, every list a `maxItems` and every map a
//! `maxProperties`, so kube-apiserver's static cost estimate stays bounded (a test checks this).

use kube::core::{Message, Rule};
use schemars::Schema;
use serde_json::{Value, json};

use super::MAX_LIFETIME_HOURS;

/// PEM CA certificates, as a provider's extra trust bundle.
pub fn pem_bundle(what: &str) -> Rule {
    rule(
        "self.contains('-----BEGIN CERTIFICATE-----') && self.contains('-----END CERTIFICATE-----')".into(),
        format!("{what} must be PEM CA certificates (-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)"),
    )
}

/// A rule with a message built at run time (`Rule::message` takes only `&str`).
fn rule(cel: String, message: String) -> Rule {
    Rule::new(cel).message(Message::Message(message))
}

fn rule_json(cel: &str, message: &str) -> Value {
    json!({"rule": cel, "message": message})
}

/// Appends rules to the `x-kubernetes-validations` of the sub-schema at `key` (`items`,
/// `additionalProperties`), for checks that must name the offending item.
fn add_rules(schema: &mut Schema, key: &str, rules: Vec<Value>) {
    let Some(sub) = schema.get_mut(key).and_then(Value::as_object_mut) else {
        panic!("schema has no {key} to put rules on");
    };
    let list = sub.entry("x-kubernetes-validations").or_insert_with(|| json!([]));
    list.as_array_mut().expect("x-kubernetes-validations is a list").extend(rules);
}

// ---- Kubernetes names -----------------------------------------------------------------------

/// A lowercase RFC 1123 subdomain: what object names (Secret, Ingress, IngressClass, Gateway,
/// ClusterCertificateProvider) must be. The length (at most 253) is the schema's `maxLength`.
pub const DNS1123_SUBDOMAIN: &str = r"'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'";
/// A lowercase RFC 1123 label: what namespace names must be (at most 63, the schema's `maxLength`).
pub const DNS1123_LABEL: &str = r"'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'";

/// The message for an object name; `what` names the field and what it refers to.
pub fn subdomain_message(what: &str, example: &str) -> String {
    format!(
        "{what} must be a lowercase DNS-1123 subdomain such as {example} (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"
    )
}

/// An object name (`what` as in [`subdomain_message`]).
pub fn subdomain(what: &str, example: &str) -> Rule {
    rule(format!("self.matches({DNS1123_SUBDOMAIN})"), subdomain_message(what, example))
}

pub fn label_message(what: &str, example: &str) -> String {
    format!(
        "{what} must be a lowercase DNS-1123 label such as {example} (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
    )
}

/// A namespace name.
pub fn dns_label(what: &str, example: &str) -> Rule {
    rule(format!("self.matches({DNS1123_LABEL})"), label_message(what, example))
}

/// A key of a Secret's data: `[-._a-zA-Z0-9]+`, not `.` or `..` nor starting with `..`.
pub const SECRET_KEY_RULE: &str = r"self.matches('^[-._a-zA-Z0-9]+$') && self != '.' && !self.startsWith('..')";

pub fn secret_key_message(what: &str) -> String {
    format!(
        "{what} must be a key of the Secret's data such as letter.pdf (letters, digits, '-', '_' and '.', not starting with '..', at most 253 characters)"
    )
}

pub fn secret_key(what: &str) -> Rule {
    rule(SECRET_KEY_RULE.to_string(), secret_key_message(what))
}

// ---- labels and annotations -----------------------------------------------------------------

/// A label or annotation key: an optional DNS subdomain prefix (at most 253) and `/`, then a
/// name of at most 63 characters. `k` is the key as the rule names it.
fn qualified_name(k: &str) -> String {
    format!(
        r"{k}.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$') && (!{k}.contains('/') || {k}.indexOf('/') <= 253)"
    )
}

pub const LABEL_KEY_MESSAGE: &str = "spec.secretTemplate.labels keys must be label keys such as team or app.kubernetes.io/part-of: an optional lowercase DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
pub const ANNOTATION_KEY_MESSAGE: &str = "spec.secretTemplate.annotations keys must be annotation keys such as example.com/owner: an optional DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
pub const RESERVED_LABEL_MESSAGE: &str = "spec.secretTemplate.labels cannot set app.kubernetes.io/managed-by or certorder.io/ keys: certorder sets those on the Secret itself";
pub const RESERVED_ANNOTATION_MESSAGE: &str =
    "spec.secretTemplate.annotations cannot set certorder.io/ keys: certorder sets those on the Secret itself";
pub const LABEL_VALUE_MESSAGE: &str = "label values must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, such as web";

/// At most this many labels, and as many annotations, on the TLS Secret.
pub const MAX_TEMPLATE_LABELS: u32 = 64;
pub const MAX_TEMPLATE_ANNOTATIONS: u32 = 50;
/// Longest annotation value: 50 annotations of 317-character keys and 1024 four-byte characters
/// stay under the 256 KiB the API server allows for all of an object's annotations.
pub const MAX_ANNOTATION_VALUE: u32 = 1024;

pub fn label_keys() -> Rule {
    rule(format!("self.all(k, {})", qualified_name("k")), LABEL_KEY_MESSAGE.into())
}

pub fn reserved_labels() -> Rule {
    rule(
        "!self.exists(k, k == 'app.kubernetes.io/managed-by' || k.startsWith('certorder.io/'))".into(),
        RESERVED_LABEL_MESSAGE.into(),
    )
}

/// Annotation keys are checked lowercased, as kube-apiserver does (the prefix may have capitals).
pub fn annotation_keys() -> Rule {
    rule(format!("self.all(k, {})", qualified_name("k.lowerAscii()")), ANNOTATION_KEY_MESSAGE.into())
}

pub fn reserved_annotations() -> Rule {
    rule("!self.exists(k, k.lowerAscii().startsWith('certorder.io/'))".into(), RESERVED_ANNOTATION_MESSAGE.into())
}

/// Schema transform of `secretTemplate.labels`: at most 64, each value a label value.
pub fn label_values(schema: &mut Schema) {
    schema.insert("maxProperties".into(), json!(MAX_TEMPLATE_LABELS));
    let values = schema.get_mut("additionalProperties").and_then(Value::as_object_mut).expect("a map");
    values.insert("maxLength".into(), json!(63));
    add_rules(
        schema,
        "additionalProperties",
        vec![rule_json(r"self.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')", LABEL_VALUE_MESSAGE)],
    );
}

/// Schema transform of `secretTemplate.annotations`: at most 50 of at most 1024 characters.
pub fn annotation_values(schema: &mut Schema) {
    schema.insert("maxProperties".into(), json!(MAX_TEMPLATE_ANNOTATIONS));
    let values = schema.get_mut("additionalProperties").and_then(Value::as_object_mut).expect("a map");
    values.insert("maxLength".into(), json!(MAX_ANNOTATION_VALUE));
}

// ---- domains --------------------------------------------------------------------------------

/// A DNS name as users write it: lowercase ASCII or Unicode labels of at most 63 characters, no
/// leading or trailing `-`, at least two labels, optionally a leading `*.`.
pub const DOMAIN_SYNTAX_RULE: &str = r"self.matches('^(\\*\\.)?([a-z0-9\\x{80}-\\x{10FFFF}]([-a-z0-9\\x{80}-\\x{10FFFF}]{0,61}[a-z0-9\\x{80}-\\x{10FFFF}])?\\.)+[a-z0-9\\x{80}-\\x{10FFFF}]([-a-z0-9\\x{80}-\\x{10FFFF}]{0,61}[a-z0-9\\x{80}-\\x{10FFFF}])?$')";
pub const DOMAIN_SYNTAX_MESSAGE: &str = "each domain must be a lowercase DNS name such as example.com, www.example.com or *.example.com: at least two labels of at most 63 letters, digits or '-', none starting or ending with '-' (no scheme, port, path or trailing dot)";
/// An IPv4 address (or any name whose last label is all digits, which no CA certifies) or an
/// IPv6 address.
pub const DOMAIN_IP_RULE: &str =
    r"!self.matches('(^|\\.)[0-9]+$') && !(self.contains(':') && self.matches('^[0-9A-Fa-f:.]+$'))";
pub const DOMAIN_IP_MESSAGE: &str = "each domain must be a DNS name, not an IP address such as 192.0.2.10 or 2001:db8::1 (a name's last label cannot be all digits): certificates are bought for names such as www.example.com";
pub const DOMAIN_WILDCARD_RULE: &str = r"!self.contains('*') || self.matches('^\\*\\.[^*]*$')";
pub const DOMAIN_WILDCARD_MESSAGE: &str = "a wildcard must be the whole leftmost label, as in *.example.com (not www.*.example.com, *example.com or *.*.example.com)";

/// Schema transform of `spec.domains`: the checks of each name, so the error names its index.
pub fn domain_items(schema: &mut Schema) {
    add_rules(
        schema,
        "items",
        vec![
            rule_json(DOMAIN_SYNTAX_RULE, DOMAIN_SYNTAX_MESSAGE),
            rule_json(DOMAIN_IP_RULE, DOMAIN_IP_MESSAGE),
            rule_json(DOMAIN_WILDCARD_RULE, DOMAIN_WILDCARD_MESSAGE),
        ],
    );
}

// ---- durations ------------------------------------------------------------------------------

/// A Go duration both Go's `time.ParseDuration` (kube-apiserver's CEL `duration()`) and the
/// operator parse alike: hours, minutes, seconds, ms, us, ns in that order, each at most once
/// with at most 6 digits, so no value can overflow (at most about 1,020,000h).
pub const DURATION: &str = r"'^([0-9]{1,6}(\\.[0-9]{1,9})?h)?([0-9]{1,6}(\\.[0-9]{1,9})?m)?([0-9]{1,6}(\\.[0-9]{1,9})?s)?([0-9]{1,6}(\\.[0-9]{1,9})?ms)?([0-9]{1,6}(\\.[0-9]{1,9})?us)?([0-9]{1,6}(\\.[0-9]{1,9})?ns)?$'";

pub fn duration_syntax_message(what: &str, example: &str) -> String {
    format!(
        "{what} must be a duration such as {example}: a number of hours (h), minutes (m), seconds (s), ms, us or ns, in that order, each at most once and at most 6 digits (no days: write 24h for a day)"
    )
}

pub fn duration_syntax(what: &str, example: &str) -> Rule {
    rule(format!("self != '' && self.matches({DURATION})"), duration_syntax_message(what, example))
}

/// A duration within `[min, max]` (`max_exclusive`: below `max`). Passes what is not a duration
/// at all, which [`duration_syntax`] reports.
pub fn duration_bounds(min: &str, max: &str, max_exclusive: bool, message: &str) -> Rule {
    let upper = if max_exclusive { "<" } else { "<=" };
    rule(
        format!(
            "self == '' || !self.matches({DURATION}) || (duration(self) >= duration('{min}') && duration(self) {upper} duration('{max}'))"
        ),
        message.to_string(),
    )
}

pub fn renew_before_bounds_message() -> String {
    format!(
        "spec.renewBefore must be at least 1h and less than {MAX_LIFETIME_HOURS}h (200 days, the longest certificate lifetime), such as 720h"
    )
}

pub fn lifetime_bounds_message() -> String {
    format!(
        "spec.local.certificateLifetime must be between 1h and {MAX_LIFETIME_HOURS}h (200 days, the CA/Browser Forum maximum), such as 2160h"
    )
}

pub fn poll_bounds_message(field: &str, example: &str) -> String {
    format!("spec.ucloud.{field} must be between 1s and 24h, such as {example}")
}

// ---- free text ------------------------------------------------------------------------------

/// One line of text that is not blank: no control characters (line breaks, tabs, NUL).
pub const TEXT_RULE: &str = r"!self.matches('[\\x00-\\x1F\\x7F]') && self.matches('[^ ]')";

pub fn text_message(what: &str, example: &str) -> String {
    format!(
        "{what} must be one line of text such as {example}: not blank, no line breaks, tabs or other control characters"
    )
}

pub fn text(what: &str, example: &str) -> Rule {
    rule(TEXT_RULE.to_string(), text_message(what, example))
}

// ---- organization and applicant -------------------------------------------------------------

/// Officially assigned ISO 3166-1 alpha-2 codes, and XK (Kosovo), which CAs accept.
pub const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "XK", "YE", "YT",
    "ZA", "ZM", "ZW",
];

pub const COUNTRY_MESSAGE: &str = "spec.organization.country must be an ISO 3166-1 alpha-2 country code in capitals, such as CN, US, DE or GB (not UK)";

pub fn country_message(what: &str) -> String {
    format!("{what} must be an ISO 3166-1 alpha-2 country code in capitals, such as CN, US, DE or GB (not UK)")
}

pub fn country() -> Rule {
    country_of("spec.organization.country")
}

/// The country code at `what` (the order's organization, or a provider's default one).
pub fn country_of(what: &str) -> Rule {
    let list: Vec<String> = COUNTRY_CODES.iter().map(|c| format!("'{c}'")).collect();
    rule(format!("self in [{}]", list.join(", ")), country_message(what))
}

/// Digits with an optional leading `+`, and spaces, `-`, `.`, `(` or `)` between them.
pub const PHONE_RULE: &str = r"self.matches('^\\+?[0-9(][0-9 ().-]{3,30}[0-9]$')";

pub fn phone_message(what: &str) -> String {
    format!(
        "{what} must be a phone number such as +86-21-5555-0100: digits with an optional leading '+', and spaces, '-', '.', '(' or ')' between them (5 to 32 characters)"
    )
}

pub fn phone(what: &str) -> Rule {
    rule(PHONE_RULE.to_string(), phone_message(what))
}

/// An address a CA can write to: a dot-atom local part and an ASCII DNS name with a dot.
pub const EMAIL_RULE: &str = r#"self.matches("^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)+$")"#;
pub const EMAIL_MESSAGE: &str = "spec.applicant.email must be an email address such as li.lei@example.com (an ASCII domain name after the '@', at most 254 characters)";

pub fn email_message(what: &str) -> String {
    format!(
        "{what} must be an email address such as li.lei@example.com (an ASCII domain name after the '@', at most 254 characters)"
    )
}

pub fn email() -> Rule {
    email_of("spec.applicant.email")
}

pub fn email_of(what: &str) -> Rule {
    rule(EMAIL_RULE.to_string(), email_message(what))
}

pub const POSTAL_CODE_RULE: &str = r"self.matches('^[A-Za-z0-9]([-A-Za-z0-9 ]{0,14}[A-Za-z0-9])?$')";
pub const POSTAL_CODE_MESSAGE: &str = "spec.organization.postalCode must be a postal code such as 200000 or SW1A 1AA: letters and digits, with spaces or '-' between them (at most 16 characters)";

pub fn postal_code_message(what: &str) -> String {
    format!(
        "{what} must be a postal code such as 200000 or SW1A 1AA: letters and digits, with spaces or '-' between them (at most 16 characters)"
    )
}

pub fn postal_code() -> Rule {
    postal_code_of("spec.organization.postalCode")
}

pub fn postal_code_of(what: &str) -> Rule {
    rule(POSTAL_CODE_RULE.to_string(), postal_code_message(what))
}

// ---- images and URLs ------------------------------------------------------------------------

/// A container image reference in the grammar of distribution/reference (what the kubelet's
/// runtime parses): `[registry[:port]/]path[:tag][@algorithm:hex]`, the path lowercase.
pub const IMAGE_RULE: &str = r"self.matches('^(([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9])(\\.([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9]))*(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*(:[A-Za-z0-9_][-A-Za-z0-9_.]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$')";
pub const IMAGE_MESSAGE: &str = "spec.httpValidation.solverImage must be an image reference such as ghcr.io/certorder/certorder:0.1.0: an optional registry host and port, a lowercase repository path, an optional :tag and @sha256:digest";

pub fn image() -> Rule {
    rule(IMAGE_RULE.to_string(), IMAGE_MESSAGE.into())
}

/// `http(s)://host[:port][/path]`: a DNS name, IPv4 or bracketed IPv6 host, a port 1–65535, a
/// path of URL characters; no user info, query or fragment (the client appends `/` and posts).
pub const ENDPOINT_RULE: &str = r"self.matches('^https?://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*)(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[-A-Za-z0-9._~!$&()*+,;=:@%/]*)?$')";
pub const ENDPOINT_MESSAGE: &str = "spec.ucloud.endpoint must be the http:// or https:// URL of the UCloud API, such as https://api.ucloud.cn or http://api.service.ucloud.cn: a host name or IP address, an optional port (1-65535) and path; no user name, password, query or fragment";

pub fn endpoint() -> Rule {
    rule(ENDPOINT_RULE.to_string(), ENDPOINT_MESSAGE.into())
}

pub const PROJECT_ID_RULE: &str = r"self.matches('^([A-Za-z0-9][-A-Za-z0-9_]{0,63})?$')";
pub const PROJECT_ID_MESSAGE: &str = "spec.ucloud.projectId must be a UCloud project id such as org-abc123 (letters, digits, '-' and '_', at most 64 characters), or empty for the account's default project";

pub fn project_id() -> Rule {
    rule(PROJECT_ID_RULE.to_string(), PROJECT_ID_MESSAGE.into())
}

// ---- whole objects --------------------------------------------------------------------------

pub const HTTP_SETTINGS_RULE: &str = "!has(self.http) || self.method == 'HTTP'";
pub const HTTP_SETTINGS_MESSAGE: &str = "spec.domainValidation.http is only used by HTTP validation: set spec.domainValidation.method to HTTP, or remove spec.domainValidation.http";
pub const DNS_SETTINGS_RULE: &str = "!has(self.dns) || self.method == 'DNS'";
pub const DNS_SETTINGS_MESSAGE: &str = "spec.domainValidation.dns is only used by DNS validation: set spec.domainValidation.method to DNS, or remove spec.domainValidation.dns";

/// What was bought is fixed: once `status.order.id` is recorded, the product and the provider
/// stay as they were, and the domains may not outnumber those bought. Transition rules on the
/// root: they run on updates only, and see the stored status (a spec update through the main
/// resource keeps it).
pub const PRODUCT_FIXED_RULE: &str = "!(has(oldSelf.status) && has(oldSelf.status.order) && has(oldSelf.status.order.id)) || self.spec.product == oldSelf.spec.product";
pub const PRODUCT_FIXED_MESSAGE: &str = "spec.product cannot change once the order is purchased (status.order.id is set): what was bought is fixed; create a new CertificateOrder to buy another product";
pub const PROVIDER_FIXED_RULE: &str = "!(has(oldSelf.status) && has(oldSelf.status.order) && has(oldSelf.status.order.id)) || self.spec.providerRef == oldSelf.spec.providerRef";
pub const PROVIDER_FIXED_MESSAGE: &str = "spec.providerRef cannot change once the order is purchased (status.order.id is set): what was bought is fixed; create a new CertificateOrder to buy from another provider";
pub const DOMAINS_BOUGHT_RULE: &str = "!(has(oldSelf.status) && has(oldSelf.status.order) && has(oldSelf.status.order.domainsCount)) || size(self.spec.domains) <= oldSelf.status.order.domainsCount";
pub const DOMAINS_BOUGHT_MESSAGE: &str = "spec.domains cannot list more names than were bought (status.order.domainsCount): domains may change only within what was bought; create a new CertificateOrder for more names";
