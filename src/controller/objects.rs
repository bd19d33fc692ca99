//! The objects the steps write, other than the validation ones ([`crate::validation::http`] and
//! [`crate::validation::dns::publish`] build those): the pending key's Secret, the TLS Secret and
//! the letter-template ConfigMap, with their names. Pure functions: [`super::act`] writes what
//! they build.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::{CertificateInfo, CertificateOrder, MANAGED_BY_LABEL, MANAGER, ORDER_ANNOTATION, ORDER_LABEL};
use crate::api::{order_label_value, shortened};
use crate::pki::{TLS_KEY, TLS_SECRET_TYPE};

/// Annotations on the TLS Secret naming where the certificate came from (and [`ORDER_ANNOTATION`]).
pub const SECRET_SERIAL_ANNOTATION: &str = "certorder.io/serial";
pub const SECRET_EXPIRY_ANNOTATION: &str = "certorder.io/not-after";

/// Annotation on the letter-template ConfigMap saying what to do with it.
pub const PURPOSE_ANNOTATION: &str = "certorder.io/purpose";
const LETTER_TEMPLATE_PURPOSE: &str = "the vendor's confirmation-letter template: fill it in, stamp it, scan it and store the scan in the Secret spec.documents.confirmationLetter names";

/// Name of the Secret holding an order's key until the certificate is issued.
pub fn pending_key_secret_name(order: &str) -> String {
    shortened(order, "-certorder-key", 253)
}

/// Name of the ConfigMap that holds the vendor's confirmation-letter template for an order.
pub fn letter_template_name(order: &str) -> String {
    shortened(order, "-letter-template", 253)
}

/// The order as the controlling owner of what it leaves behind when deleted.
fn owner_reference(order: &CertificateOrder) -> OwnerReference {
    OwnerReference {
        api_version: CertificateOrder::api_version(&()).into_owned(),
        kind: CertificateOrder::kind(&()).into_owned(),
        name: order.name_any(),
        uid: order.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Labels every object certorder writes for an order carries: they put it in the watched cache.
fn labels(order: &CertificateOrder) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (ORDER_LABEL.to_string(), order_label_value(&order.name_any())),
    ])
}

/// `name` in the order's namespace, labelled, annotated and owned by the order.
fn owned_metadata(order: &CertificateOrder, name: String, annotations: BTreeMap<String, String>) -> ObjectMeta {
    let mut annotations = annotations;
    annotations.insert(ORDER_ANNOTATION.into(), order.name_any());
    ObjectMeta {
        name: Some(name),
        namespace: Some(order.namespace().unwrap_or_default()),
        labels: Some(labels(order)),
        annotations: Some(annotations),
        owner_references: Some(vec![owner_reference(order)]),
        ..ObjectMeta::default()
    }
}

/// The Secret that holds the key of the certificate being bought (see [`pending_key_secret_name`]),
/// owned by the order: it goes with it.
pub fn pending_key_secret(order: &CertificateOrder, key_pem: &str) -> Secret {
    Secret {
        metadata: owned_metadata(order, pending_key_secret_name(&order.name_any()), BTreeMap::new()),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(TLS_KEY.to_string(), key_pem.to_string())])),
        ..Secret::default()
    }
}

/// The key of a ConfigMap holding `file_name`: the characters a ConfigMap key may not hold become `_`.
pub fn config_map_key(file_name: &str) -> String {
    file_name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

/// The ConfigMap offering the vendor's confirmation-letter template (`file_name`, `data`) to the
/// user, owned by the order (see [`letter_template_name`]).
pub fn letter_template(order: &CertificateOrder, file_name: &str, data: &[u8]) -> ConfigMap {
    let purpose = BTreeMap::from([(PURPOSE_ANNOTATION.to_string(), LETTER_TEMPLATE_PURPOSE.to_string())]);
    ConfigMap {
        metadata: owned_metadata(order, letter_template_name(&order.name_any()), purpose),
        binary_data: Some(BTreeMap::from([(config_map_key(file_name), ByteString(data.to_vec()))])),
        ..ConfigMap::default()
    }
}

/// The TLS Secret `spec.secretName` holding `data` (see [`crate::pki::tls_secret_data`]), the
/// certificate described by `info`. Labelled for the order with the labels and annotations of
/// `spec.secretTemplate`, and not owned by it: the Secret outlives its order.
pub fn tls_secret(order: &CertificateOrder, data: BTreeMap<String, Vec<u8>>, info: &CertificateInfo) -> Secret {
    let template = order.spec.secret_template.clone().unwrap_or_default();
    let mut labels = template.labels;
    labels.extend(self::labels(order));
    let mut annotations = template.annotations;
    annotations.insert(ORDER_ANNOTATION.into(), order.name_any());
    annotations.insert(SECRET_SERIAL_ANNOTATION.into(), info.serial.clone());
    annotations.insert(SECRET_EXPIRY_ANNOTATION.into(), info.not_after.to_rfc3339());
    Secret {
        metadata: ObjectMeta {
            name: Some(order.spec.secret_name.clone()),
            namespace: Some(order.namespace().unwrap_or_default()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        type_: Some(TLS_SECRET_TYPE.into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::pki::TLS_CRT;

    fn order() -> CertificateOrder {
        serde_json::from_value(json!({
            "apiVersion": "certorder.io/v1alpha1",
            "kind": "CertificateOrder",
            "metadata": {"name": "acme", "namespace": "shop", "uid": "uid-1"},
            "spec": {
                "domains": ["example.com"],
                "secretName": "acme-tls",
                "providerRef": {"name": "ussl"},
                "product": {"type": "DV"},
                "domainValidation": {"method": "DNS"},
                "secretTemplate": {"labels": {"team": "web"}, "annotations": {"note": "kept"}},
            },
        }))
        .expect("an order")
    }

    fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
        meta.labels.as_ref()?.get(key).map(String::as_str)
    }

    fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
        meta.annotations.as_ref()?.get(key).map(String::as_str)
    }

    fn assert_owned_by_acme(meta: &ObjectMeta) {
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        assert_eq!(label(meta, MANAGED_BY_LABEL), Some("certorder"));
        assert_eq!(label(meta, ORDER_LABEL), Some("acme"));
        assert_eq!(annotation(meta, ORDER_ANNOTATION), Some("acme"));
        let owners = meta.owner_references.as_ref().expect("owned");
        assert_eq!(owners.len(), 1);
        let owner = &owners[0];
        assert_eq!((owner.kind.as_str(), owner.api_version.as_str()), ("CertificateOrder", "certorder.io/v1alpha1"));
        assert_eq!((owner.name.as_str(), owner.uid.as_str()), ("acme", "uid-1"));
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    }

    #[test]
    fn the_pending_key_secret_is_owned_by_the_order_and_holds_only_the_key() {
        let secret = pending_key_secret(&order(), "-----BEGIN PRIVATE KEY-----");
        assert_eq!(secret.metadata.name.as_deref(), Some("acme-certorder-key"));
        assert_owned_by_acme(&secret.metadata);
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        let data = secret.string_data.expect("the key");
        assert_eq!(data.keys().collect::<Vec<_>>(), [TLS_KEY]);
        assert_eq!(data[TLS_KEY], "-----BEGIN PRIVATE KEY-----");
        assert_eq!(label(&secret.metadata, "team"), None, "the secret template is for the TLS Secret only");
    }

    #[test]
    fn the_letter_template_config_map_is_owned_by_the_order_and_says_what_to_do() {
        let cm = letter_template(&order(), "confirm letter (1).docx", b"\x00docx");
        assert_eq!(cm.metadata.name.as_deref(), Some("acme-letter-template"));
        assert_owned_by_acme(&cm.metadata);
        assert!(annotation(&cm.metadata, PURPOSE_ANNOTATION).is_some_and(|p| p.contains("confirmationLetter")));
        let data = cm.binary_data.expect("the template");
        assert_eq!(data.keys().collect::<Vec<_>>(), ["confirm_letter__1_.docx"], "a valid ConfigMap key");
        assert_eq!(data["confirm_letter__1_.docx"].0, b"\x00docx");
        assert_eq!(cm.data, None);
    }

    fn info() -> CertificateInfo {
        let not_after = Utc.with_ymd_and_hms(2027, 1, 2, 3, 4, 5).unwrap();
        CertificateInfo {
            serial: "0a1b".into(),
            issuer: "CN=Test CA".into(),
            not_before: not_after - chrono::Duration::days(90),
            not_after,
            sha256_fingerprint: "ff".into(),
            secret_name: "acme-tls".into(),
            key_fingerprint: "ee".into(),
        }
    }

    #[test]
    fn the_tls_secret_carries_the_template_and_says_which_certificate_it_holds_and_outlives_the_order() {
        let data = BTreeMap::from([(TLS_CRT.to_string(), b"crt".to_vec()), (TLS_KEY.to_string(), b"key".to_vec())]);
        let secret = tls_secret(&order(), data, &info());
        let meta = &secret.metadata;
        assert_eq!((meta.name.as_deref(), meta.namespace.as_deref()), (Some("acme-tls"), Some("shop")));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(label(meta, "team"), Some("web"));
        assert_eq!(label(meta, MANAGED_BY_LABEL), Some("certorder"));
        assert_eq!(label(meta, ORDER_LABEL), Some("acme"));
        assert_eq!(annotation(meta, "note"), Some("kept"));
        assert_eq!(annotation(meta, ORDER_ANNOTATION), Some("acme"));
        assert_eq!(annotation(meta, SECRET_SERIAL_ANNOTATION), Some("0a1b"));
        assert_eq!(annotation(meta, SECRET_EXPIRY_ANNOTATION), Some("2027-01-02T03:04:05+00:00"));
        assert_eq!(meta.owner_references, None, "the TLS Secret outlives its order");
        let data = secret.data.expect("data");
        assert_eq!((data[TLS_CRT].0.as_slice(), data[TLS_KEY].0.as_slice()), (&b"crt"[..], &b"key"[..]));
    }

    #[test]
    fn a_template_cannot_take_the_labels_that_tie_the_tls_secret_to_its_order() {
        let mut order = order();
        let template = order.spec.secret_template.as_mut().unwrap();
        template.labels.insert(ORDER_LABEL.into(), "someone-else".into());
        template.annotations.insert(ORDER_ANNOTATION.into(), "someone-else".into());
        let secret = tls_secret(&order, BTreeMap::new(), &info());
        assert_eq!(label(&secret.metadata, ORDER_LABEL), Some("acme"));
        assert_eq!(annotation(&secret.metadata, ORDER_ANNOTATION), Some("acme"));
    }
}
