//! The testbed: an in-memory Kubernetes API server, a test DNS server and a cluster emulation.
pub mod apiserver;
pub mod dns;
