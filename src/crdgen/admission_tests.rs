//! Admission, field by field: what the API server refuses (with the exact answer) and accepts,
//! run through the testbed's kube-apiserver validation (pruning, defaulting, the OpenAPI schema,
//! then the CEL rules unless a schema error blocks them) of the CRDs the code generates.

use serde_json::{Value, json};
use testbed::apiserver::{cel, schema};

use super::crds;
use crate::api::admission as adm;

/// The `openAPIV3Schema` of the CRD serving `kind`.
fn schema_of(kind: &str) -> Value {
    crds()
        .into_iter()
        .find_map(|f| {
            let crd: Value = serde_yaml::from_str(&f.yaml).unwrap();
            (crd["spec"]["names"]["kind"] == kind)
                .then(|| crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone())
        })
        .unwrap_or_else(|| panic!("no CRD serves {kind}"))
}

/// What kube-apiserver (strict field validation) answers for a create of `doc`: one line per
/// error, `field: message`; empty when it accepts it.
fn admit(doc: &Value) -> Vec<String> {
    let schema = schema_of(doc["kind"].as_str().unwrap());
    let mut obj = doc.clone();
    let mut errs: Vec<String> =
        schema::prune(&schema, &mut obj).into_iter().map(|f| format!("unknown field {f}")).collect();
    schema::apply_defaults(&schema, &mut obj);
    errs.extend(cel::validate_custom_resource(&schema, &obj, None).iter().map(|e| e.to_string_with_field()));
    errs
}

/// What kube-apiserver answers for an update of `old` to `new` through the main resource: the
/// stored status is kept, and transition rules see `oldSelf`.
fn admit_update(old: &Value, new: &Value) -> Vec<String> {
    let schema = schema_of(new["kind"].as_str().unwrap());
    let mut obj = new.clone();
    match old.get("status") {
        Some(s) => obj["status"] = s.clone(),
        None => {
            obj.as_object_mut().unwrap().remove("status");
        }
    }
    let mut errs: Vec<String> =
        schema::prune(&schema, &mut obj).into_iter().map(|f| format!("unknown field {f}")).collect();
    schema::apply_defaults(&schema, &mut obj);
    // The stored object was defaulted when it was written.
    let mut old = old.clone();
    schema::apply_defaults(&schema, &mut old);
    errs.extend(cel::validate_custom_resource(&schema, &obj, Some(&old)).iter().map(|e| e.to_string_with_field()));
    errs
}

fn dv() -> Value {
    json!({
        "apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder",
        "metadata": {"name": "example-com", "namespace": "default"},
        "spec": {
            "providerRef": {"name": "local"},
            "product": {"type": "DV"},
            "domains": ["example.com", "www.example.com"],
            "secretName": "example-com-tls",
        },
    })
}

fn http() -> Value {
    let mut order = dv();
    order["spec"]["domainValidation"] = json!({"method": "HTTP", "http": {}});
    order
}

fn ov() -> Value {
    let mut order = dv();
    order["spec"]["product"] = json!({"brand": "DigiCert", "name": "SecureSite OV", "type": "OV"});
    order["spec"]["organization"] = json!({
        "name": "Example Trading Co., Ltd.", "division": "IT", "address": "1 Example Road", "city": "Shanghai",
        "region": "Shanghai", "country": "CN", "postalCode": "200000", "phone": "+86-21-5555-0100",
        "type": "Enterprise", "codeType": "UnifiedSocialCreditCode", "code": "91310000MA1EXAMPLE",
    });
    order["spec"]["applicant"] =
        json!({"name": "Li Lei", "phone": "+86 138 0000 0000", "email": "li.lei@example.com", "title": "IT Manager"});
    order["spec"]["documents"] = json!({"confirmationLetter": {"name": "acme-letter", "key": "letter.pdf"}});
    order
}

fn local() -> Value {
    json!({
        "apiVersion": "certorder.io/v1alpha1", "kind": "ClusterCertificateProvider", "metadata": {"name": "local"},
        "spec": {"local": {"caSecretRef": {"name": "certorder-local-ca", "namespace": "certorder-system"}}},
    })
}

fn ucloud() -> Value {
    json!({
        "apiVersion": "certorder.io/v1alpha1", "kind": "ClusterCertificateProvider", "metadata": {"name": "ucloud"},
        "spec": {"ucloud": {"credentialsSecretRef": {"name": "ucloud-credentials", "namespace": "certorder-system"}}},
    })
}

/// `doc` with the value at the JSON pointer `path` set (intermediate objects created), or
/// removed when `value` is `None`.
fn with(mut doc: Value, path: &str, value: Option<Value>) -> Value {
    let (parent, key) = path.rsplit_once('/').unwrap();
    let mut node = &mut doc;
    for part in parent.split('/').skip(1) {
        node = match node {
            Value::Array(items) => &mut items[part.parse::<usize>().unwrap()],
            other => {
                let map = other.as_object_mut().unwrap();
                map.entry(part.to_string()).or_insert_with(|| json!({}))
            }
        };
    }
    match (node, value) {
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().unwrap()] = v,
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_string(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (other, _) => panic!("cannot set {path} in {other}"),
    }
    doc
}

/// A CEL rule's refusal of the string (or object, list) at `field`.
fn bad(field: &str, message: impl AsRef<str>) -> String {
    format!("{field}: Invalid value: \"string\": {}", message.as_ref())
}

fn bad_object(field: &str, message: impl AsRef<str>) -> String {
    format!("{field}: Invalid value: \"object\": {}", message.as_ref())
}

/// The line kube-apiserver adds when a schema error keeps the CEL rules from running.
const NOT_CHECKED: &str = "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

fn too_long(field: &str, max: usize) -> [String; 2] {
    [format!("{field}: Too long: may not be more than {max} bytes"), NOT_CHECKED.to_string()]
}

#[test]
fn every_field_refuses_what_the_operator_would_fail_on_and_accepts_the_rest() {
    use adm::*;
    let secret_name = |s: &str| subdomain_message(s, "example-com-tls");
    let hex64 = "a".repeat(64);
    let label63 = "a".repeat(63);
    let long_domain =
        format!("{}.example.com", ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(50)].join("."));
    let labels = |n: usize| Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect());
    let http_field = "spec.domainValidation.http";

    // (the object, what the API server answers: every error line; none = accepted)
    let cases: Vec<(Value, Vec<String>)> = vec![
        // ---- metadata.name: it becomes the certorder.io/order label value of every object
        (with(dv(), "/metadata/name", Some(json!("a".repeat(63)))), vec![]),
        // Long names are fine: label values get a short stable form of the name (api::order_label_value).
        (with(dv(), "/metadata/name", Some(json!(format!("{}.{}", "a".repeat(126), "b".repeat(126))))), vec![]),
        // ---- spec.providerRef.name
        (with(dv(), "/spec/providerRef/name", Some(json!("ucloud.prod"))), vec![]),
        (
            with(dv(), "/spec/providerRef/name", Some(json!("Local"))),
            vec![bad("spec.providerRef.name", subdomain_message("spec.providerRef.name (a ClusterCertificateProvider)", "local"))],
        ),
        // ---- spec.product
        (with(ov(), "/spec/product/brand", Some(json!("Digi\nCert"))), vec![bad("spec.product.brand", text_message("spec.product.brand", "DigiCert"))]),
        (with(ov(), "/spec/product/name", Some(json!("  "))), vec![bad("spec.product.name", text_message("spec.product.name", "SecureSite OV"))]),
        (with(ov(), "/spec/product/name", Some(json!("x".repeat(129)))), too_long("spec.product.name", 128).to_vec()),
        (
            with(dv(), "/spec/product/validityYears", Some(json!(6))),
            vec!["spec.product.validityYears: Invalid value: 6: spec.product.validityYears in body should be less than or equal to 5".into()],
        ),
        // ---- spec.domains: DNS names only
        (with(dv(), "/spec/domains", Some(json!(["bücher.example.com", "xn--bcher-kva.example.org", "a-b.example.co.uk"]))), vec![]),
        (with(dv(), "/spec/domains", Some(json!(["*.example.com", "example.com"]))), vec![]),
        (with(dv(), "/spec/domains", Some(json!([format!("{label63}.example.com")]))), vec![]),
        (with(dv(), "/spec/domains/1", Some(json!("192.0.2.10"))), vec![bad("spec.domains[1]", DOMAIN_IP_MESSAGE)]),
        (with(dv(), "/spec/domains/0", Some(json!("example.123"))), vec![bad("spec.domains[0]", DOMAIN_IP_MESSAGE)]),
        (
            with(dv(), "/spec/domains/0", Some(json!("2001:db8::1"))),
            vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE), bad("spec.domains[0]", DOMAIN_IP_MESSAGE)],
        ),
        (
            with(dv(), "/spec/domains/0", Some(json!("www.*.example.com"))),
            vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE), bad("spec.domains[0]", DOMAIN_WILDCARD_MESSAGE)],
        ),
        (
            with(dv(), "/spec/domains/0", Some(json!("*.*.example.com"))),
            vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE), bad("spec.domains[0]", DOMAIN_WILDCARD_MESSAGE)],
        ),
        (
            with(dv(), "/spec/domains/0", Some(json!("*example.com"))),
            vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE), bad("spec.domains[0]", DOMAIN_WILDCARD_MESSAGE)],
        ),
        (with(dv(), "/spec/domains/0", Some(json!(format!("{label63}a.example.com")))), vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE)]),
        (with(dv(), "/spec/domains/0", Some(json!("-shop.example.com"))), vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE)]),
        (with(dv(), "/spec/domains/0", Some(json!("shop-.example.com"))), vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE)]),
        (with(dv(), "/spec/domains/0", Some(json!("Example.com"))), vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE)]),
        (with(dv(), "/spec/domains/0", Some(json!("example.com."))), vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE)]),
        (with(dv(), "/spec/domains/0", Some(json!("localhost"))), vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE)]),
        (with(dv(), "/spec/domains/0", Some(json!("https://example.com/"))), vec![bad("spec.domains[0]", DOMAIN_SYNTAX_MESSAGE)]),
        (with(dv(), "/spec/domains/0", Some(json!(long_domain))), too_long("spec.domains[0]", 253).to_vec()),
        (with(dv(), "/spec/domains/1", Some(json!("example.com"))), vec!["spec.domains[1]: Duplicate value: \"example.com\"".into()]),
        (
            with(http(), "/spec/domains/0", Some(json!("*.example.com"))),
            vec![bad_object("spec.domainValidation.method", "wildcard names (*.example.com) can only be validated by DNS: set spec.domainValidation.method to DNS, or remove the wildcard names")],
        ),
        // ---- spec.secretName: the example
        (with(dv(), "/spec/secretName", Some(json!("My_TLS_Secret"))), vec![bad("spec.secretName", secret_name("spec.secretName"))]),
        (with(dv(), "/spec/secretName", Some(json!("tls.example.com"))), vec![]),
        (with(dv(), "/spec/secretName", Some(json!("tls-"))), vec![bad("spec.secretName", secret_name("spec.secretName"))]),
        (with(dv(), "/spec/secretName", Some(json!("a".repeat(254)))), too_long("spec.secretName", 253).to_vec()),
        // ---- spec.secretTemplate
        (
            with(dv(), "/spec/secretTemplate", Some(json!({"labels": {"team": "web", "Team": "", "app.kubernetes.io/part-of": "shop.v2"},
                "annotations": {"Example.COM/Owner": "Li Lei <li.lei@example.com>", "note": "any text\nat all"}}))),
            vec![],
        ),
        (with(dv(), "/spec/secretTemplate/labels", Some(json!({"my team": "web"}))), vec![bad_object("spec.secretTemplate.labels", LABEL_KEY_MESSAGE)]),
        (with(dv(), "/spec/secretTemplate/labels", Some(json!({"Example.com/team": "web"}))), vec![bad_object("spec.secretTemplate.labels", LABEL_KEY_MESSAGE)]),
        (with(dv(), "/spec/secretTemplate/labels", Some(json!({format!("{label63}a"): "web"}))), vec![bad_object("spec.secretTemplate.labels", LABEL_KEY_MESSAGE)]),
        (with(dv(), "/spec/secretTemplate/labels", Some(json!({"certorder.io/order": "other"}))), vec![bad_object("spec.secretTemplate.labels", RESERVED_LABEL_MESSAGE)]),
        (
            with(dv(), "/spec/secretTemplate/labels", Some(json!({"app.kubernetes.io/managed-by": "helm"}))),
            vec![bad_object("spec.secretTemplate.labels", RESERVED_LABEL_MESSAGE)],
        ),
        (with(dv(), "/spec/secretTemplate/labels", Some(json!({"team": "web shop"}))), vec![bad("spec.secretTemplate.labels.team", LABEL_VALUE_MESSAGE)]),
        (with(dv(), "/spec/secretTemplate/labels", Some(json!({"team": format!("{label63}a")}))), too_long("spec.secretTemplate.labels.team", 63).to_vec()),
        (
            with(dv(), "/spec/secretTemplate/labels", Some(labels(65))),
            vec!["spec.secretTemplate.labels: Too many: 65: must have at most 64 items".into(), NOT_CHECKED.into()],
        ),
        (with(dv(), "/spec/secretTemplate/annotations", Some(json!({"a/b/c": "x"}))), vec![bad_object("spec.secretTemplate.annotations", ANNOTATION_KEY_MESSAGE)]),
        (
            with(dv(), "/spec/secretTemplate/annotations", Some(json!({"certorder.io/serial": "1"}))),
            vec![bad_object("spec.secretTemplate.annotations", RESERVED_ANNOTATION_MESSAGE)],
        ),
        (with(dv(), "/spec/secretTemplate/annotations", Some(json!({"note": "x".repeat(1025)}))), too_long("spec.secretTemplate.annotations.note", 1024).to_vec()),
        // ---- spec.organization
        (with(ov(), "/spec/organization/country", Some(json!("GB"))), vec![]),
        (with(ov(), "/spec/organization/country", Some(json!("UK"))), vec![bad("spec.organization.country", COUNTRY_MESSAGE)]),
        (with(ov(), "/spec/organization/country", Some(json!("cn"))), vec![bad("spec.organization.country", COUNTRY_MESSAGE)]),
        (with(ov(), "/spec/organization/country", Some(json!("China"))), too_long("spec.organization.country", 2).to_vec()),
        (with(ov(), "/spec/organization/phone", Some(json!("(021) 5555-0100"))), vec![]),
        (with(ov(), "/spec/organization/phone", Some(json!("call the front desk"))), vec![bad("spec.organization.phone", phone_message("spec.organization.phone"))]),
        (with(ov(), "/spec/organization/postalCode", Some(json!("SW1A 1AA"))), vec![]),
        (with(ov(), "/spec/organization/postalCode", Some(json!("200 000!"))), vec![bad("spec.organization.postalCode", POSTAL_CODE_MESSAGE)]),
        (
            with(ov(), "/spec/organization/name", Some(json!("Example\tTrading"))),
            vec![bad("spec.organization.name", text_message("spec.organization.name", "Example Trading Co., Ltd."))],
        ),
        (
            with(ov(), "/spec/organization/address", Some(json!("1 Example Road\nShanghai"))),
            vec![bad("spec.organization.address", text_message("spec.organization.address", "1 Example Road"))],
        ),
        (with(ov(), "/spec/organization/code", Some(json!("x".repeat(65)))), too_long("spec.organization.code", 64).to_vec()),
        // ---- spec.applicant
        (with(ov(), "/spec/applicant/email", Some(json!("o'brien+certs@mail.example.ie"))), vec![]),
        (with(ov(), "/spec/applicant/email", Some(json!("li.lei@localhost"))), vec![bad("spec.applicant.email", EMAIL_MESSAGE)]),
        (with(ov(), "/spec/applicant/email", Some(json!("Li Lei <li.lei@example.com>"))), vec![bad("spec.applicant.email", EMAIL_MESSAGE)]),
        (with(ov(), "/spec/applicant/phone", Some(json!("+86"))), vec![bad("spec.applicant.phone", phone_message("spec.applicant.phone"))]),
        (with(ov(), "/spec/applicant/title", Some(json!("IT\r\nManager"))), vec![bad("spec.applicant.title", text_message("spec.applicant.title", "IT Manager"))]),
        // ---- spec.documents.confirmationLetter
        (
            with(ov(), "/spec/documents/confirmationLetter/name", Some(json!("ACME_letter"))),
            vec![bad("spec.documents.confirmationLetter.name", subdomain_message("the Secret's name", "acme-letter"))],
        ),
        (with(ov(), "/spec/documents/confirmationLetter/key", Some(json!("letter.PDF"))), vec![]),
        (
            with(ov(), "/spec/documents/confirmationLetter/key", Some(json!("stamped letter.pdf"))),
            vec![bad("spec.documents.confirmationLetter.key", secret_key_message("the key"))],
        ),
        (with(ov(), "/spec/documents/confirmationLetter/key", Some(json!(".."))), vec![bad("spec.documents.confirmationLetter.key", secret_key_message("the key"))]),
        // ---- spec.domainValidation
        (with(dv(), "/spec/domainValidation", Some(json!({"method": "DNS", "http": {"ingressClassName": "nginx"}}))), vec![bad_object(http_field, HTTP_SETTINGS_MESSAGE)]),
        (with(dv(), "/spec/domainValidation", Some(json!({"method": "HTTP", "dns": {}}))), vec![bad_object("spec.domainValidation.dns", DNS_SETTINGS_MESSAGE)]),
        (
            with(http(), "/spec/domainValidation/http", Some(json!({"ingressClassName": "nginx"}))),
            vec![],
        ),
        (
            with(http(), "/spec/domainValidation/http/ingressClassName", Some(json!("Nginx"))),
            vec![bad("spec.domainValidation.http.ingressClassName", subdomain_message("spec.domainValidation.http.ingressClassName (an IngressClass)", "nginx"))],
        ),
        (
            with(http(), "/spec/domainValidation/http/ingressName", Some(json!("shop_site"))),
            vec![bad("spec.domainValidation.http.ingressName", subdomain_message("spec.domainValidation.http.ingressName (an Ingress)", "shop-site"))],
        ),
        (with(http(), "/spec/domainValidation/http/gatewayRef", Some(json!({"name": "public", "namespace": "infra", "sectionName": "http"}))), vec![]),
        (
            with(http(), "/spec/domainValidation/http/gatewayRef", Some(json!({"name": "Public"}))),
            vec![bad("spec.domainValidation.http.gatewayRef.name", subdomain_message("spec.domainValidation.http.gatewayRef.name (a Gateway)", "public"))],
        ),
        (
            with(http(), "/spec/domainValidation/http/gatewayRef", Some(json!({"name": "public", "namespace": "infra.prod"}))),
            vec![bad("spec.domainValidation.http.gatewayRef.namespace", label_message("spec.domainValidation.http.gatewayRef.namespace", "infra"))],
        ),
        (
            with(http(), "/spec/domainValidation/http/gatewayRef", Some(json!({"name": "public", "sectionName": "HTTP"}))),
            vec![bad(
                "spec.domainValidation.http.gatewayRef.sectionName",
                subdomain_message("spec.domainValidation.http.gatewayRef.sectionName (a listener name)", "http"),
            )],
        ),
        // ---- ClusterCertificateProvider spec.httpValidation (the admin's, never the order's)
        (with(local(), "/spec/httpValidation", Some(json!({"solverImage": "registry.example.com:5000/tools/certorder:0.1.0", "imagePullSecrets": ["regcred"]}))), vec![]),
        (with(local(), "/spec/httpValidation/solverImage", Some(json!(format!("certorder@sha256:{hex64}")))), vec![]),
        (with(local(), "/spec/httpValidation/solverImage", Some(json!("ghcr.io/CertOrder/certorder:0.1.0"))), vec![bad("spec.httpValidation.solverImage", IMAGE_MESSAGE)]),
        (with(local(), "/spec/httpValidation/solverImage", Some(json!("certorder:0.1.0 --debug"))), vec![bad("spec.httpValidation.solverImage", IMAGE_MESSAGE)]),
        (with(local(), "/spec/namespaceSelector", Some(json!({"matchLabels": {"team": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}))), vec![]),
        // ---- spec.renewBefore
        (with(dv(), "/spec/renewBefore", Some(json!("1h30m"))), vec![]),
        (with(dv(), "/spec/renewBefore", Some(json!("4799h59m"))), vec![]),
        (with(dv(), "/spec/renewBefore", Some(json!("30d"))), vec![bad("spec.renewBefore", duration_syntax_message("spec.renewBefore", "720h"))]),
        (with(dv(), "/spec/renewBefore", Some(json!("30m1h"))), vec![bad("spec.renewBefore", duration_syntax_message("spec.renewBefore", "720h"))]),
        (with(dv(), "/spec/renewBefore", Some(json!("59m"))), vec![bad("spec.renewBefore", renew_before_bounds_message())]),
        (with(dv(), "/spec/renewBefore", Some(json!("4800h"))), vec![bad("spec.renewBefore", renew_before_bounds_message())]),
        // ---- ClusterCertificateProvider spec.local
        (with(local(), "/spec/local/certificateLifetime", Some(json!("4800h"))), vec![]),
        (with(local(), "/spec/local/certificateLifetime", Some(json!("4801h"))), vec![bad("spec.local.certificateLifetime", lifetime_bounds_message())]),
        (with(local(), "/spec/local/certificateLifetime", Some(json!("30m"))), vec![bad("spec.local.certificateLifetime", lifetime_bounds_message())]),
        (
            with(local(), "/spec/local/certificateLifetime", Some(json!("90 days"))),
            vec![bad("spec.local.certificateLifetime", duration_syntax_message("spec.local.certificateLifetime", "2160h"))],
        ),
        (
            with(local(), "/spec/local/caSecretRef/name", Some(json!("Local-CA"))),
            vec![bad("spec.local.caSecretRef.name", subdomain_message("the Secret's name", "example-secret"))],
        ),
        (
            with(local(), "/spec/local/caSecretRef/namespace", Some(json!("certorder.system"))),
            vec![bad("spec.local.caSecretRef.namespace", label_message("the Secret's namespace", "certorder-system"))],
        ),
        // ---- ClusterCertificateProvider spec.ucloud
        (
            with(ucloud(), "/spec/ucloud", Some(json!({"endpoint": "http://127.0.0.1:18080", "projectId": "org-abc123", "requestsPerSecond": 100,
                "reviewPollInterval": "1s", "validationPollInterval": "24h",
                "credentialsSecretRef": {"name": "ucloud-credentials", "namespace": "certorder-system"}}))),
            vec![],
        ),
        (with(ucloud(), "/spec/ucloud/endpoint", Some(json!("https://proxy.example.com:8443/ucloud"))), vec![]),
        (with(ucloud(), "/spec/ucloud/endpoint", Some(json!("https://[2001:db8::1]"))), vec![]),
        (with(ucloud(), "/spec/ucloud/endpoint", Some(json!("https://key:secret@api.ucloud.cn"))), vec![bad("spec.ucloud.endpoint", ENDPOINT_MESSAGE)]),
        (with(ucloud(), "/spec/ucloud/endpoint", Some(json!("https://api.ucloud.cn/?Region=cn-bj2"))), vec![bad("spec.ucloud.endpoint", ENDPOINT_MESSAGE)]),
        (with(ucloud(), "/spec/ucloud/endpoint", Some(json!("api.ucloud.cn"))), vec![bad("spec.ucloud.endpoint", ENDPOINT_MESSAGE)]),
        (with(ucloud(), "/spec/ucloud/endpoint", Some(json!("https://api.ucloud.cn:65536"))), vec![bad("spec.ucloud.endpoint", ENDPOINT_MESSAGE)]),
        (with(ucloud(), "/spec/ucloud/projectId", Some(json!(""))), vec![]),
        (with(ucloud(), "/spec/ucloud/projectId", Some(json!("org abc"))), vec![bad("spec.ucloud.projectId", PROJECT_ID_MESSAGE)]),
        (
            with(ucloud(), "/spec/ucloud/requestsPerSecond", Some(json!(0))),
            vec!["spec.ucloud.requestsPerSecond: Invalid value: 0: spec.ucloud.requestsPerSecond in body should be greater than or equal to 1".into()],
        ),
        (with(ucloud(), "/spec/ucloud/reviewPollInterval", Some(json!("0.5s"))), vec![bad("spec.ucloud.reviewPollInterval", poll_bounds_message("reviewPollInterval", "10m"))]),
        (with(ucloud(), "/spec/ucloud/validationPollInterval", Some(json!("25h"))), vec![bad("spec.ucloud.validationPollInterval", poll_bounds_message("validationPollInterval", "1m"))]),
        (
            with(ucloud(), "/spec/ucloud/validationPollInterval", Some(json!("1 minute"))),
            vec![bad("spec.ucloud.validationPollInterval", duration_syntax_message("spec.ucloud.validationPollInterval", "1m"))],
        ),
        // ---- ClusterCertificateProvider spec.ucloud.defaults: the order's rules, naming the provider's field
        (
            with(ucloud(), "/spec/ucloud/defaults", Some(json!({
                "organization": {"name": "Example Trading Co., Ltd.", "division": "IT", "address": "1 Example Road", "city": "Shanghai",
                    "region": "Shanghai", "country": "CN", "postalCode": "200000", "phone": "+86-21-5555-0100"},
                "applicant": {"name": "Li Lei", "phone": "+86 138 0000 0000", "email": "li.lei@example.com", "title": "IT Manager"}}))),
            vec![],
        ),
        (with(ucloud(), "/spec/ucloud/defaults", Some(json!({}))), vec![]),
        (
            with(ucloud(), "/spec/ucloud/defaults/organization", Some(json!({"name": "Example", "division": "I\tT", "address": "1 Example Road",
                "city": "Shanghai", "region": "Shanghai", "country": "UK", "postalCode": "200 000!", "phone": "front desk"}))),
            vec![
                bad("spec.ucloud.defaults.organization.division", text_message("spec.ucloud.defaults.organization.division", "IT")),
                bad("spec.ucloud.defaults.organization.country", country_message("spec.ucloud.defaults.organization.country")),
                bad("spec.ucloud.defaults.organization.postalCode", postal_code_message("spec.ucloud.defaults.organization.postalCode")),
                bad("spec.ucloud.defaults.organization.phone", phone_message("spec.ucloud.defaults.organization.phone")),
            ],
        ),
        (
            with(ucloud(), "/spec/ucloud/defaults/organization", Some(json!({"name": "Example"}))),
            vec![
                "spec.ucloud.defaults.organization.address: Required value".into(),
                "spec.ucloud.defaults.organization.city: Required value".into(),
                "spec.ucloud.defaults.organization.country: Required value".into(),
                "spec.ucloud.defaults.organization.phone: Required value".into(),
                "spec.ucloud.defaults.organization.region: Required value".into(),
                NOT_CHECKED.into(),
            ],
        ),
        (
            with(ucloud(), "/spec/ucloud/defaults/applicant", Some(json!({"name": "Li Lei", "phone": "+86", "email": "li.lei@localhost", "title": " "}))),
            vec![
                bad("spec.ucloud.defaults.applicant.phone", phone_message("spec.ucloud.defaults.applicant.phone")),
                bad("spec.ucloud.defaults.applicant.email", email_message("spec.ucloud.defaults.applicant.email")),
                bad("spec.ucloud.defaults.applicant.title", text_message("spec.ucloud.defaults.applicant.title", "IT Manager")),
            ],
        ),
        (
            with(ucloud(), "/spec/ucloud/credentialsSecretRef/name", Some(json!("UCloud"))),
            vec![bad("spec.ucloud.credentialsSecretRef.name", subdomain_message("the Secret's name", "example-secret"))],
        ),
    ];

    // The order's messages are the same texts, naming its own fields.
    assert_eq!(COUNTRY_MESSAGE, country_message("spec.organization.country"));
    assert_eq!(EMAIL_MESSAGE, email_message("spec.applicant.email"));
    assert_eq!(POSTAL_CODE_MESSAGE, postal_code_message("spec.organization.postalCode"));

    let mut failures = Vec::new();
    for (doc, want) in &cases {
        let got = admit(doc);
        if &got != want {
            failures.push(format!(
                "{} {}\n  spec: {}\n  want: {want:#?}\n  got:  {got:#?}",
                doc["kind"].as_str().unwrap(),
                doc["metadata"]["name"].as_str().unwrap_or_default().chars().take(20).collect::<String>(),
                doc["spec"]
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    // The bases themselves are valid.
    for base in [dv(), http(), ov(), local(), ucloud()] {
        assert_eq!(admit(&base), Vec::<String>::new(), "{base}");
    }
}

/// What was bought is fixed: once `status.order.id` is set, product and provider cannot change
/// and the domains may not outnumber those bought; before that, anything may change.
#[test]
fn a_purchased_order_keeps_what_was_bought() {
    use adm::*;
    let mut pending = ov();
    pending["status"] = json!({"phase": "Pending", "order": {"name": "certorder-1"}});
    let mut bought = ov();
    bought["status"] = json!({"phase": "Purchased", "order": {"name": "certorder-1", "id": "42", "domainsCount": 2}});
    let mut bought_before_count = ov();
    bought_before_count["status"] = json!({"phase": "Purchased", "order": {"name": "certorder-1", "id": "42"}});
    let product = || bad_object("spec.product", PRODUCT_FIXED_MESSAGE);
    let provider = || bad_object("spec.providerRef", PROVIDER_FIXED_MESSAGE);
    let domains = || bad_object("spec.domains", DOMAINS_BOUGHT_MESSAGE);
    let ev = |doc: &Value| with(doc.clone(), "/spec/product/type", Some(json!("EV")));
    // (stored object, the update, the answer)
    let cases: Vec<(&Value, Value, Vec<String>)> = vec![
        // Not bought yet: anything goes.
        (&pending, ev(&pending), vec![]),
        (&pending, with(pending.clone(), "/spec/providerRef/name", Some(json!("ucloud"))), vec![]),
        (
            &pending,
            with(pending.clone(), "/spec/domains", Some(json!(["a.example.com", "b.example.com", "c.example.com"]))),
            vec![],
        ),
        // Bought: product and provider are fixed.
        (&bought, ev(&bought), vec![product()]),
        (&bought, with(bought.clone(), "/spec/product/name", Some(json!("SecureSite Pro OV"))), vec![product()]),
        (&bought, with(bought.clone(), "/spec/product/validityYears", Some(json!(2))), vec![product()]),
        (&bought, with(bought.clone(), "/spec/providerRef/name", Some(json!("ucloud"))), vec![provider()]),
        // The default is no change.
        (&bought, with(bought.clone(), "/spec/product/validityYears", Some(json!(1))), vec![]),
        // Domains change within what was bought.
        (&bought, with(bought.clone(), "/spec/domains", Some(json!(["shop.example.com", "www.example.com"]))), vec![]),
        (&bought, with(bought.clone(), "/spec/domains", Some(json!(["example.com"]))), vec![]),
        (
            &bought,
            with(bought.clone(), "/spec/domains", Some(json!(["a.example.com", "b.example.com", "c.example.com"]))),
            vec![domains()],
        ),
        (
            &bought_before_count,
            with(
                bought_before_count.clone(),
                "/spec/domains",
                Some(json!(["a.example.com", "b.example.com", "c.example.com"])),
            ),
            vec![],
        ),
        // Other fields stay editable.
        (&bought, with(bought.clone(), "/spec/secretName", Some(json!("other-tls"))), vec![]),
    ];
    let mut failures = Vec::new();
    for (i, (old, new, want)) in cases.iter().enumerate() {
        let got = admit_update(old, new);
        if &got != want {
            failures.push(format!("case {i}: {}\n  want: {want:#?}\n  got:  {got:#?}", new["spec"]));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    // A create never runs the transition rules, whatever the status says.
    assert_eq!(admit(&ev(&bought)), Vec::<String>::new());
    // A status write (the operator recording the purchase) passes: the spec did not change.
    let schema = schema_of("CertificateOrder");
    let (mut old, mut new) = (pending.clone(), bought.clone());
    schema::apply_defaults(&schema, &mut old);
    schema::apply_defaults(&schema, &mut new);
    assert!(cel::validate_custom_resource(&schema, &new, Some(&old)).is_empty());
}

/// Every string a rule could read is bounded, so kube-apiserver's CEL cost estimate is: each
/// string of a spec has a `maxLength` (or an `enum`), each list a `maxItems`, each map a
/// `maxProperties`.
#[test]
fn every_spec_string_list_and_map_is_bounded() {
    fn walk(s: &Value, path: &str, out: &mut Vec<String>) {
        match s["type"].as_str() {
            Some("string") if s.get("maxLength").is_none() && s.get("enum").is_none() => {
                out.push(format!("{path}: no maxLength"))
            }
            Some("array") => {
                if s.get("maxItems").is_none() {
                    out.push(format!("{path}: no maxItems"));
                }
                walk(&s["items"], &format!("{path}[]"), out);
            }
            Some("object") => {
                if let Some(values) = s.get("additionalProperties").filter(|v| v.is_object()) {
                    if s.get("maxProperties").is_none() {
                        out.push(format!("{path}: no maxProperties"));
                    }
                    walk(values, &format!("{path}.*"), out);
                }
                for (k, sub) in s["properties"].as_object().into_iter().flatten() {
                    walk(sub, &format!("{path}.{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut unbounded = Vec::new();
    for kind in ["CertificateOrder", "ClusterCertificateProvider", "ClusterDNSZone"] {
        walk(&schema_of(kind)["properties"]["spec"], &format!("{kind} spec"), &mut unbounded);
    }
    assert!(unbounded.is_empty(), "unbounded fields:\n  {}", unbounded.join("\n  "));
}

/// Every rule compiles, and the README lists every message the API server can answer with.
#[test]
fn the_readme_lists_every_admission_message() {
    fn messages(s: &Value, out: &mut Vec<String>) {
        match s {
            Value::Object(map) => {
                for rule in map.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
                    out.push(rule["message"].as_str().expect("every rule has a message").to_string());
                }
                map.values().for_each(|v| messages(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| messages(v, out)),
            _ => {}
        }
    }
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut missing = Vec::new();
    for kind in ["CertificateOrder", "ClusterCertificateProvider", "ClusterDNSZone"] {
        let schema = schema_of(kind);
        assert_eq!(cel::compile_errors(&schema), Vec::new(), "{kind}");
        let mut all = Vec::new();
        messages(&schema, &mut all);
        missing.extend(all.into_iter().filter(|m| !readme.contains(&format!("`{m}`"))));
    }
    missing.dedup();
    assert!(missing.is_empty(), "README.md's admission rules lack (in backticks):\n  {}", missing.join("\n  "));
}

/// A provider sets exactly one kind. The rule and its message are built from the list of kinds
/// (`ClusterCertificateProviderSpec::kinds`), so a new kind needs no new rule.
#[test]
fn a_provider_sets_exactly_one_kind() {
    let message = "set exactly one of spec.local (the built-in CA) and spec.ucloud (a UCloud USSL account)";
    assert_eq!(admit(&local()), Vec::<String>::new());
    assert_eq!(admit(&ucloud()), Vec::<String>::new());
    let both = with(local(), "/spec/ucloud", Some(ucloud()["spec"]["ucloud"].clone()));
    let neither = with(local(), "/spec/local", None);
    for doc in [both, neither] {
        let errs = admit(&doc);
        assert!(errs.len() == 1 && errs[0].starts_with("spec: ") && errs[0].ends_with(message), "{errs:?}");
    }
}

/// Every property of a provider's spec is either a kind in `ClusterCertificateProviderSpec::kinds`
/// (which the one-of rule, `status.kind` and the choice of vendor are built from) or a setting
/// every kind shares: a kind left out of the list fails here.
#[test]
fn every_provider_kind_is_in_the_list_of_kinds() {
    const SHARED: [&str; 3] = ["namespaceSelector", "maxDomainYears", "httpValidation"];
    let kinds: Vec<&str> =
        crate::api::ClusterCertificateProviderSpec::default().kinds().iter().map(|(k, _)| k.field).collect();
    let schema = schema_of("ClusterCertificateProvider");
    let properties = schema["properties"]["spec"]["properties"].as_object().unwrap();
    for property in properties.keys() {
        assert!(
            kinds.contains(&property.as_str()) != SHARED.contains(&property.as_str()),
            "spec.{property}: list it in ClusterCertificateProviderSpec::kinds if it is a kind of provider, \
             or in SHARED here if every kind has it"
        );
    }
    for kind in kinds {
        assert!(properties.contains_key(kind), "kinds() lists {kind}, which is no field of the spec");
    }
}
