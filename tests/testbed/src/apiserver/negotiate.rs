//! Content negotiation of answers from `Accept`, as kube-apiserver does it: the first media type the
//! server can produce wins; `as=Table`, `as=PartialObjectMetadata(List)` (group `meta.k8s.io`) and
//! `as=APIGroupDiscoveryList` (group `apidiscovery.k8s.io`) ask for another shape of the answer.
//! Also the shapes themselves: objects and lists reduced to their metadata.
use http::HeaderMap;
use serde_json::{Value, json};

use super::error::ApiError;

/// The shape of an answer a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The object (or list) itself.
    Object,
    /// `meta.k8s.io` Table (kubectl get).
    Table,
    /// `PartialObjectMetadata` in `meta.k8s.io/{version}`; `list` when `PartialObjectMetadataList`
    /// was asked for.
    Metadata { version: String, list: bool },
    /// Aggregated discovery in `apidiscovery.k8s.io/{version}`.
    Discovery { version: String },
}

/// One entry of `Accept`: type/subtype and parameters.
#[derive(Debug)]
struct MediaType<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> MediaType<'a> {
    fn parse(s: &'a str) -> Self {
        let mut parts = s.split(';').map(str::trim);
        let essence = parts.next().unwrap_or_default();
        let params =
            parts.filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim(), v.trim().trim_matches('"'))).collect();
        MediaType { essence, params }
    }
    fn param(&self, k: &str) -> Option<&'a str> {
        self.params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }
}

/// The shape the first producible media type of `Accept` asks for. A missing or empty header means
/// the object; 406 when no entry can be produced.
pub fn negotiate(headers: &HeaderMap) -> Result<Shape, ApiError> {
    let Some(accept) = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Shape::Object);
    };
    if accept.trim().is_empty() {
        return Ok(Shape::Object);
    }
    for entry in accept.split(',') {
        let mt = MediaType::parse(entry);
        if !matches!(mt.essence, "application/json" | "application/*" | "*/*" | "*") {
            continue;
        }
        let (group, version) = (mt.param("g").unwrap_or(""), mt.param("v").unwrap_or(""));
        match mt.param("as") {
            None => return Ok(Shape::Object),
            Some("Table") if group == "meta.k8s.io" && matches!(version, "v1" | "v1beta1") => return Ok(Shape::Table),
            Some(k @ ("PartialObjectMetadata" | "PartialObjectMetadataList"))
                if group == "meta.k8s.io" && matches!(version, "v1" | "v1beta1") =>
            {
                return Ok(Shape::Metadata { version: version.into(), list: k.ends_with("List") });
            }
            Some("APIGroupDiscoveryList") if group == "apidiscovery.k8s.io" && matches!(version, "v2" | "v2beta1") => {
                return Ok(Shape::Discovery { version: version.into() });
            }
            Some(_) => continue,
        }
    }
    Err(not_acceptable(
        "only the following media types are accepted: application/json, application/json;as=Table;g=meta.k8s.io;v=v1, application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    ))
}

pub fn not_acceptable(msg: impl Into<String>) -> ApiError {
    ApiError::new(406, "NotAcceptable", msg)
}

/// The `PartialObjectMetadata` of an object.
pub fn partial(version: &str, obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": obj["metadata"]})
}

/// An object as `shape` presents a single object (406 for a list shape, as kube-apiserver).
pub fn object(shape: &Shape, obj: &Value) -> Result<Option<Value>, ApiError> {
    match shape {
        Shape::Metadata { list: true, .. } => {
            Err(not_acceptable("you requested PartialObjectMetadataList, but the requested object is not a list"))
        }
        Shape::Metadata { version, .. } => Ok(Some(partial(version, obj))),
        _ => Ok(None),
    }
}

/// A list as `shape` presents it, when it is metadata.
pub fn metadata_list(shape: &Shape, list_meta: &Value, items: &[&Value]) -> Result<Option<Value>, ApiError> {
    match shape {
        Shape::Metadata { list: false, .. } => {
            Err(not_acceptable("you requested PartialObjectMetadata, but the requested object is a list"))
        }
        Shape::Metadata { version, .. } => {
            let items: Vec<Value> = items.iter().map(|o| partial(version, o)).collect();
            Ok(Some(json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": format!("meta.k8s.io/{version}"),
                "metadata": list_meta,
                "items": items,
            })))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(accept: &str) -> Result<Shape, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, accept.parse().unwrap());
        negotiate(&h)
    }

    #[test]
    fn first_producible_media_type_wins() {
        assert_eq!(shape("application/json").unwrap(), Shape::Object);
        assert_eq!(shape("application/vnd.kubernetes.protobuf, application/json").unwrap(), Shape::Object);
        assert_eq!(shape("application/json;as=Table;v=v1;g=meta.k8s.io,application/json").unwrap(), Shape::Table);
        assert_eq!(
            shape("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1").unwrap(),
            Shape::Metadata { version: "v1".into(), list: true }
        );
        assert_eq!(
            shape("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json").unwrap(),
            Shape::Discovery { version: "v2".into() }
        );
        assert_eq!(shape("application/json;as=Bogus;g=x;v=v1, application/json").unwrap(), Shape::Object);
        assert_eq!(shape("application/vnd.kubernetes.protobuf;as=Table;g=meta.k8s.io;v=v1").unwrap_err().code, 406);
    }

    #[test]
    fn metadata_shapes() {
        let o = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a"}, "spec": {}});
        let m = Shape::Metadata { version: "v1".into(), list: false };
        assert_eq!(
            object(&m, &o).unwrap().unwrap(),
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "a"}})
        );
        assert_eq!(metadata_list(&m, &json!({}), &[&o]).unwrap_err().code, 406);
        let l = Shape::Metadata { version: "v1".into(), list: true };
        let list = metadata_list(&l, &json!({"resourceVersion": "5"}), &[&o]).unwrap().unwrap();
        assert_eq!(list["kind"], "PartialObjectMetadataList");
        assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
        assert!(object(&Shape::Object, &o).unwrap().is_none());
    }
}
