//! CRD structural schemas (`openAPIV3Schema`, as JSON): validation, defaulting and pruning.
use serde_json::Value;

/// One field error, as kube-apiserver reports it in a 422 `Invalid` status's `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `reason` of the cause: `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueTooMany`, `FieldValueTooLong`, `FieldValueForbidden`, `FieldValueDuplicate`, `FieldValueTypeInvalid`.
    pub reason: String,
    /// Dotted path as kube-apiserver prints it, e.g. `spec.domains[0]`, `spec.organization`.
    pub field: String,
    /// Human message, e.g. `Unsupported value: "X": supported values: "DV", "OV", "EV"`.
    pub message: String,
}

/// Removes fields the schema does not declare (honouring `x-kubernetes-preserve-unknown-fields`,
/// `additionalProperties`, and never touching `apiVersion`, `kind` or the contents of `metadata` at
/// the root). Returns the paths it removed, so `fieldValidation=Strict` can refuse them.
pub fn prune(_schema: &Value, _obj: &mut Value) -> Vec<String> {
    Vec::new()
}

/// Fills `default` values, recursively, as kube-apiserver does after pruning.
pub fn apply_defaults(_schema: &Value, _obj: &mut Value) {}

/// Checks the object against the schema (types, required, enum, formats, min/max, lengths,
/// items, patterns, nullable, ...). Does not run CEL rules (see [`super::cel`]).
pub fn validate(_schema: &Value, _obj: &Value) -> Vec<FieldError> {
    Vec::new()
}
