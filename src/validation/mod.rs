//! Domain control validation: the checks a CA makes before it trusts that the order controls a name.

pub mod dns;
pub mod http;
pub mod solver;
