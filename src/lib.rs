//! certorder: a Kubernetes operator that buys, validates, installs and renews commercial TLS
//! certificates. See DESIGN in the README for the flow; `main.rs` only parses and wires.

pub mod api;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod crdgen;
pub mod duration;
pub mod lifecycle;
pub mod pki;
pub mod provider;
pub mod validation;
