//! An in-memory kube-apiserver over HTTP, faithful where kube-rs, kube-runtime and kubectl depend on
//! its behaviour, and answering 501 with a message where it does not implement something.
//!
//! Pure building blocks (no I/O), each with its own unit tests:
//! - [`schema`]: CRD structural-schema validation, defaulting and pruning.
//! - [`cel`]: `x-kubernetes-validations` rules.
//! - [`smp`]: strategic merge patch for built-in kinds.
//! - [`ssa`]: server-side apply and `managedFields`.

pub mod cel;
pub mod schema;
pub mod smp;
pub mod ssa;
