//! The testbed: an in-memory Kubernetes API server, a test DNS server and a cluster emulation.
pub mod apiserver;
pub mod bind;
pub mod cluster;
pub mod dns;
pub mod ussl;

pub use apiserver::{ApiServer, FaultAnswer, FaultMatch, Faults, Options as ApiServerOptions};
