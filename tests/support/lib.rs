//! Shared helpers for the end-to-end tests of the `lifeboat` binary.
//!
//! - [`lifeboat_bin`] finds the binary that `cargo build -p lifeboat-cli` put
//!   next to the test executables;
//! - [`Sandbox`] is a temporary directory with its own `HOME` and `XDG_*`
//!   directories; every invocation runs with a cleared environment, stdin
//!   closed and a timeout ([`Lb`], [`Output`]);
//! - [`repo`] opens a repository through the engine to find packs and chunks;
//! - [`tree`] generates test trees, compares a source tree with its restored
//!   copy and fingerprints directories.

pub mod cmd;
pub mod dav;
pub mod imap;
pub mod multi;
pub mod repo;
pub mod tree;

pub use cmd::{lifeboat_bin, Lb, Output, Running, Sandbox, FAST_INIT, PASSWORD};

/// True when the tests run as root (uid 0 can read mode-000 files).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of `nobody`, used to run the binary without privileges.
pub const NOBODY: (u32, u32) = (65534, 65534);

#[cfg(test)]
mod selftest;
