//! Server-side apply (`application/apply-patch+yaml`) with `managedFields` (FieldsV1).
use serde_json::Value;

/// How a list is merged, from `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` (CRDs) or
/// from the built-in kinds' patch metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Type information that drives merging: for CRDs built from the version's schema, for built-in
/// kinds from a table of their associative lists.
#[derive(Debug, Clone, Default)]
pub struct TypeInfo {
    /// The CRD schema, when the kind is a custom resource.
    pub schema: Option<Value>,
    pub api_version: String,
    pub kind: String,
}

/// A conflict: another manager owns a field the applier sets to a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// e.g. `.spec.replicas`
    pub field: String,
}

/// Server-side apply of `applied` by `manager` onto `live` (None when creating). `subresource` is
/// `Some("status")` for the status endpoint. Returns the merged object with updated
/// `metadata.managedFields`, or the conflicts (409) when `force` is false.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    _manager: &str,
    _force: bool,
    _subresource: Option<&str>,
    _types: &TypeInfo,
) -> Result<Value, Vec<Conflict>> {
    let _ = live;
    Ok(applied.clone())
}

/// Records a non-apply write (create, update, patch) by `manager` in `new.metadata.managedFields`:
/// the manager's `Update` entry owns the fields it changed, which other managers lose.
pub fn record_update(_old: Option<&Value>, _new: &mut Value, _manager: &str, _subresource: Option<&str>, _types: &TypeInfo) {}
