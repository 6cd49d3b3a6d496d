//! Storage destinations for Lifeboat.
//!
//! A destination is anything that can hold flat, write-once objects: the
//! [`Backend`] trait is the only thing the engine knows about storage. This crate
//! has no cryptography: it stores and returns opaque bytes.
//!
//! - [`LocalBackend`]: a directory on a local or mounted filesystem.
//! - [`s3::S3Backend`], [`sftp::SftpBackend`]: S3-compatible buckets and SFTP servers.
//! - [`RetryBackend`]: retries transient failures with backoff and jitter.
//! - [`DestinationUrl`]: parses `/path`, `file:///path`, `s3://…`, `sftp://…`
//!   into each backend's typed description ([`s3::S3Target`],
//!   [`sftp::SftpTarget`]); [`DestinationUrl::open`] builds the backend.
//!
//! With the `testing` feature (for other crates' tests: enable it in their
//! `[dev-dependencies]`, never in a program's dependencies), as object_store
//! does with its in-memory store:
//!
//! - `MemoryBackend`: an in-memory map;
//! - `FaultyBackend` (with a `FaultPlan`): wraps a real backend and fails
//!   chosen calls;
//! - `ChaosBackend` (with `Chaos`): a seeded schedule of failures, delays,
//!   hangs, short writes and damaged reads;
//! - `conformance` and `conformance_suite!`: the checks every backend must pass.
//!
//! ```
//! # tokio_test_block(async {
//! use lifeboat_backends::{Backend, DestinationUrl};
//! let dir = tempfile::tempdir().unwrap();
//! let store = DestinationUrl::parse(&dir.path().display().to_string())
//!     .unwrap()
//!     .open("usb")
//!     .unwrap();
//! store.put("config", bytes::Bytes::from_static(b"hello")).await.unwrap();
//! assert_eq!(&store.get("config", Some(1..3)).await.unwrap()[..], b"el");
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

#![warn(missing_docs)]

mod backend;
#[cfg(any(test, feature = "testing"))]
mod chaos;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod durable_write;
mod error;
#[cfg(any(test, feature = "testing"))]
mod fault;
mod home;
mod local;
#[cfg(any(test, feature = "testing"))]
mod memory;
mod open;
pub mod private;
mod retry;
pub mod s3;
pub mod sftp;
mod url;

pub use backend::{validate_key, Backend, ObjectMeta};
pub use bytes::Bytes;
#[cfg(any(test, feature = "testing"))]
pub use chaos::{Chaos, ChaosBackend, ChaosCounts, Traffic};
pub use error::{BackendError, ErrorKind, Result, TooLarge, UrlError};
#[cfg(any(test, feature = "testing"))]
pub use fault::{FaultPlan, FaultyBackend};
pub use home::expand_user;
pub use local::LocalBackend;
#[cfg(any(test, feature = "testing"))]
pub use memory::MemoryBackend;
pub use retry::{RetryBackend, RetryPolicy};
pub use url::{redact, DestinationUrl};
