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

/// No transparent huge pages for the process. mimalloc (the operator's allocator, see `main.rs`)
/// is built not to ask for them (its `no_thp` feature); this keeps them out where the kernel
/// gives them unasked (its `always` mode, as on some distributions). A huge page touched again
/// after the allocator gave memory back is cleared whole, 2 MiB at a time: a fifth of the
/// benchmark's API server's CPU went to that, and a few half-used huge pages would be much of the
/// operator's memory. Best effort: a kernel without the setting changes nothing.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag of the process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
