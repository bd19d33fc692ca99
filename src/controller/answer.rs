//! What the operator reads of the API server's answer to its own patches: the object's name,
//! namespace, uid, labels, annotations and resourceVersion. The rest of the answer (an order's
//! spec and status, a Secret's certificate and key, every object's `managedFields`) is skipped
//! unread instead of being decoded into an object nobody looks at (issue 16).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// The answer to a write of a `K`, as far as the operator reads it. An `Api<Answer<K>>` writes
/// where an `Api<K>` would.
pub struct Answer<K> {
    /// Only the name, namespace, uid, labels, annotations and resourceVersion are filled in.
    pub metadata: ObjectMeta,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Answer<K> {
    fn clone(&self) -> Self {
        Self { metadata: self.metadata.clone(), kind: PhantomData }
    }
}

impl<K> std::fmt::Debug for Answer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer").field("metadata", &self.metadata).finish()
    }
}

impl<'de, K> Deserialize<'de> for Answer<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Fields it does not name (spec, status, data, managedFields, …) are skipped by serde
        /// without being kept.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            name: Option<String>,
            namespace: Option<String>,
            uid: Option<String>,
            resource_version: Option<String>,
            labels: Option<BTreeMap<String, String>>,
            annotations: Option<BTreeMap<String, String>>,
        }
        #[derive(Deserialize)]
        struct Object {
            metadata: Option<Meta>,
        }
        let Object { metadata } = Object::deserialize(deserializer)?;
        let metadata = metadata.map_or_else(ObjectMeta::default, |m| ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            labels: m.labels,
            annotations: m.annotations,
            ..ObjectMeta::default()
        });
        Ok(Self { metadata, kind: PhantomData })
    }
}

resource_as_inner!(Answer, |answer| &answer.metadata, |answer| &mut answer.metadata);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CertificateOrder;
    use k8s_openapi::api::core::v1::Secret;
    use kube::{Resource, ResourceExt};

    #[test]
    fn the_metadata_is_read_and_the_rest_skipped() {
        let answer = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "shop-tls", "namespace": "web", "uid": "u1", "resourceVersion": "42",
                "labels": {"app.kubernetes.io/managed-by": "certorder"},
                "annotations": {"certorder.io/order": "shop"},
                "managedFields": [{"manager": "certorder", "operation": "Apply", "fieldsV1": {"f:data": {}}}],
            },
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "LS0t", "tls.key": "LS0t"},
        });
        let written: Answer<Secret> = serde_json::from_value(answer.clone()).unwrap();
        let full: Secret = serde_json::from_value(answer).unwrap();
        assert_eq!(written.resource_version().as_deref(), Some("42"));
        assert_eq!(written.metadata.name, full.metadata.name);
        assert_eq!(written.metadata.namespace, full.metadata.namespace);
        assert_eq!(written.metadata.uid, full.metadata.uid);
        assert_eq!(written.metadata.labels, full.metadata.labels);
        assert_eq!(written.metadata.annotations, full.metadata.annotations);
        assert!(written.metadata.managed_fields.is_none());
        // An answer without metadata is read as empty metadata, not refused.
        let bare: Answer<Secret> = serde_json::from_str(r#"{"kind": "Secret"}"#).unwrap();
        assert!(bare.resource_version().is_none());
    }

    #[test]
    fn it_writes_where_the_type_it_stands_for_does() {
        let url = |ns| Answer::<CertificateOrder>::url_path(&(), Some(ns));
        assert_eq!(url("web"), CertificateOrder::url_path(&(), Some("web")));
        assert_eq!(Answer::<Secret>::url_path(&(), Some("web")), Secret::url_path(&(), Some("web")));
        assert_eq!(Answer::<Secret>::kind(&()), "Secret");
    }
}
