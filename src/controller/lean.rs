//! Objects decoded without `metadata.managedFields`.
//!
//! The API server sends every object with its `managedFields`: which manager set which field, as
//! a tree of JSON objects (`fieldsV1`) that for an issued order is about as large as its status.
//! certorder never reads them, but kube's types decoded them into `serde_json` maps, which were
//! then dropped unread: about a twentieth of the operator's CPU at 1,000 orders
//! (issue 16). Here the parser skips that member, without building anything of it.
//!
//! It works on any type decoded from a JSON object whose `metadata` is a JSON object: a
//! deserializer wraps the one of the whole object, and the one of its `metadata` member, and
//! leaves every other member to the type's own decoding. A `managedFields` key anywhere else (in
//! a spec, in an annotation's name) is decoded as usual.

use std::fmt;

use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A `K` decoded without its `metadata.managedFields` (which it has as `None`). An
/// `Api<Lean<K>>` reads and watches what an `Api<K>` would.
#[derive(Clone, Debug)]
pub struct Lean<K>(pub K);

impl<'de, K: Deserialize<'de>> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Skipping { inner: deserializer, level: Level::Object }).map(Lean)
    }
}

resource_as_inner!(Lean, |lean| lean.0.meta(), |lean| lean.0.meta_mut());

/// The `K` of the JSON `text`, without its `metadata.managedFields`.
pub fn from_str<'a, K: Deserialize<'a>>(text: &'a str) -> serde_json::Result<K> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let object = K::deserialize(Skipping { inner: &mut deserializer, level: Level::Object })?;
    deserializer.end()?;
    Ok(object)
}

/// A watch event of lean objects, as one of the objects themselves.
pub fn event<K>(event: kube::runtime::watcher::Event<Lean<K>>) -> kube::runtime::watcher::Event<K> {
    super::map_event(event, |Lean(object)| object)
}

/// Which map a [`Skipping`] deserializer reads.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    /// The object: its `metadata` member is read at the next level.
    Object,
    /// The object's metadata: its `managedFields` member is skipped.
    Metadata,
}

/// The deserializer `inner`, whose map (at `level`) is read through [`SkippingMap`]. Whatever
/// else it is asked for is passed on unchanged.
struct Skipping<D> {
    inner: D,
    level: Level,
}

macro_rules! pass_on {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            self.inner.$method($($arg,)* visitor)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Skipping<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(SkippingVisitor { inner: visitor, level: self.level })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(SkippingVisitor { inner: visitor, level: self.level })
    }

    /// An optional object or metadata (k8s-openapi's types decode theirs as an `Option`).
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_option(SkippingVisitor { inner: visitor, level: self.level })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(name, fields, SkippingVisitor { inner: visitor, level: self.level })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }

    pass_on! {
        deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32(); deserialize_i64();
        deserialize_i128(); deserialize_u8(); deserialize_u16(); deserialize_u32(); deserialize_u64();
        deserialize_u128(); deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_unit(); deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str); deserialize_seq(); deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier(); deserialize_ignored_any();
    }
}

/// The type's own visitor, given the map through [`SkippingMap`] (and an optional one's value
/// through [`Skipping`]). A JSON object is a map; an object that is not one is refused as the
/// type refuses it (`expecting` is the type's).
struct SkippingVisitor<V> {
    inner: V,
    level: Level,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SkippingVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(SkippingMap { inner: map, level: self.level, metadata_next: false })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Skipping { inner: deserializer, level: self.level })
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }
}

/// The members of a map; at `Level::Metadata` without `managedFields`, at `Level::Object` with
/// the `metadata` member read through [`Skipping`] at `Level::Metadata`.
struct SkippingMap<A> {
    inner: A,
    level: Level,
    /// The key given last was the object's `metadata`.
    metadata_next: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkippingMap<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<Key<'de>>()? else { return Ok(None) };
            if self.level == Level::Metadata && key.as_str() == "managedFields" {
                self.inner.next_value::<IgnoredAny>()?;
                continue;
            }
            self.metadata_next = self.level == Level::Object && key.as_str() == "metadata";
            return match key {
                Key::Borrowed(key) => seed.deserialize(BorrowedStrDeserializer::new(key)),
                Key::Owned(key) => seed.deserialize(StringDeserializer::new(key)),
            }
            .map(Some);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.metadata_next) {
            self.inner.next_value_seed(MetadataSeed(seed))
        } else {
            self.inner.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// The type's seed for the `metadata` member, given a deserializer that skips `managedFields`.
struct MetadataSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for MetadataSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Skipping { inner: deserializer, level: Level::Metadata })
    }
}

/// A map key, borrowed from the JSON text when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(key) => key,
            Key::Owned(key) => key,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(key))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(key.to_owned()))
            }
            fn visit_string<E>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(key))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use kube::core::WatchEvent;
    use serde_json::json;

    use super::*;
    use crate::api::CertificateOrder;

    fn managed_fields() -> serde_json::Value {
        json!([
            {"manager": "certorder", "operation": "Update", "apiVersion": "certorder.io/v1alpha1",
             "time": "2026-11-27T01:00:00Z", "subresource": "status",
             "fieldsV1": {"f:status": {"f:phase": {}, "f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}}}}}},
            {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {"f:domains": {}}}}
        ])
    }

    fn order(managed: Option<serde_json::Value>) -> serde_json::Value {
        let mut metadata = json!({
            "name": "shop", "namespace": "web", "uid": "u1", "resourceVersion": "7", "generation": 2,
            "labels": {"app": "shop"},
            // A key of that name elsewhere is data, and is kept.
            "annotations": {"managedFields": "kept"},
            "finalizers": ["certorder.io/cleanup"],
        });
        if let Some(managed) = managed {
            metadata["managedFields"] = managed;
        }
        json!({
            "apiVersion": "certorder.io/v1alpha1", "kind": "CertificateOrder",
            "metadata": metadata,
            "spec": {"providerRef": {"name": "local"}, "product": {"type": "DV"},
                     "domains": ["shop.example.com"], "secretName": "shop-tls"},
            "status": {"phase": "Issued", "message": "managedFields"},
        })
    }

    /// What kube's own decoding gives, with `managedFields` dropped afterwards.
    fn trimmed<K: serde::de::DeserializeOwned + kube::Resource>(text: &str) -> K {
        let mut object: K = serde_json::from_str(text).unwrap();
        object.meta_mut().managed_fields = None;
        object
    }

    #[test]
    fn an_object_reads_as_it_would_less_its_managed_fields() {
        for managed in [None, Some(managed_fields()), Some(json!([])), Some(json!(null))] {
            let text = order(managed).to_string();
            let lean: CertificateOrder = from_str(&text).unwrap();
            assert!(lean.metadata.managed_fields.is_none());
            assert_eq!(
                serde_json::to_value(&lean).unwrap(),
                serde_json::to_value(trimmed::<CertificateOrder>(&text)).unwrap()
            );
            assert_eq!(lean.metadata.annotations.unwrap()["managedFields"], "kept");
        }
    }

    #[test]
    fn the_managed_fields_are_skipped_wherever_they_stand_in_the_metadata() {
        let managed = managed_fields().to_string();
        for metadata in [
            format!(r#"{{"managedFields": {managed}, "name": "a", "resourceVersion": "1"}}"#),
            format!(r#"{{"name": "a", "managedFields": {managed}, "resourceVersion": "1"}}"#),
            format!(r#"{{"name": "a", "resourceVersion": "1", "managedFields": {managed}}}"#),
            // An escaped key is the same key.
            format!(r#"{{"name": "a", "resourceVersion": "1", "managed\u0046ields": {managed}}}"#),
        ] {
            let text = format!(
                r#"{{"apiVersion": "v1", "kind": "Secret", "metadata": {metadata}, "type": "kubernetes.io/tls", "data": {{"tls.crt": "TFMwdA=="}}}}"#
            );
            let lean: Secret = from_str(&text).unwrap();
            assert_eq!(lean, trimmed::<Secret>(&text), "{text}");
            assert_eq!(lean.metadata.resource_version.as_deref(), Some("1"));
            assert_eq!(lean.data.unwrap()["tls.crt"].0, b"LS0t");
        }
    }

    #[test]
    fn a_watch_event_of_lean_objects_reads_as_one_of_the_objects() {
        let object = order(Some(managed_fields()));
        // The event's type may come before or after the object.
        for text in [
            json!({"type": "MODIFIED", "object": object}).to_string(),
            format!(r#"{{"object": {object}, "type": "MODIFIED"}}"#),
        ] {
            let WatchEvent::Modified(Lean(lean)) =
                serde_json::from_str::<WatchEvent<Lean<CertificateOrder>>>(&text).unwrap()
            else {
                panic!("a modified order")
            };
            assert!(lean.metadata.managed_fields.is_none());
            assert_eq!(
                serde_json::to_value(&lean).unwrap(),
                serde_json::to_value(trimmed::<CertificateOrder>(&object.to_string())).unwrap()
            );
        }
    }

    #[test]
    fn a_wrong_field_is_still_named_and_the_text_must_end() {
        let mut bad = order(Some(managed_fields()));
        bad["spec"]["domains"] = json!("shop.example.com");
        let error = from_str::<CertificateOrder>(&bad.to_string()).unwrap_err().to_string();
        assert_eq!(error, serde_json::from_str::<CertificateOrder>(&bad.to_string()).unwrap_err().to_string());
        assert!(error.contains("expected a sequence"), "{error}");
        // Not an object at all: refused as the type refuses it.
        for text in ["[5]", "5", "\"Secret\""] {
            let error = from_str::<Secret>(text).unwrap_err().to_string();
            assert_eq!(error, serde_json::from_str::<Secret>(text).unwrap_err().to_string());
        }
        assert!(from_str::<Secret>(r#"{"metadata": {"name": "a"}} trailing"#).is_err());
        // Metadata that is not an object is the type's error too; null metadata is none.
        assert!(from_str::<Secret>(r#"{"metadata": 5}"#).is_err());
        let text = r#"{"metadata": null, "type": "Opaque"}"#;
        assert_eq!(from_str::<Secret>(text).unwrap(), serde_json::from_str::<Secret>(text).unwrap());
    }
}
