//! The local provider's CA. The code lives in [`crate::pki::ca`] (it is pure PKI); this module
//! re-exports it so the provider can say `local::ca::LocalCa`.
pub use crate::pki::ca::{CA_LIFETIME_DAYS, CaError, LocalCa};
