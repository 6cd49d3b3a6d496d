//! Storage destinations for Lifeboat.
//!
//! A destination is anything that can hold flat, write-once objects: the
//! [`Backend`] trait is the only thing the engine knows about storage. This crate
//! has no cryptography: it stores and returns opaque bytes.
//!
//! - [`LocalBackend`]: a directory on a local or mounted filesystem.
//! - [`MemoryBackend`]: an in-memory map, for tests.
//! - [`RetryBackend`]: retries transient failures with backoff and jitter.
//! - [`FaultyBackend`]: wraps a real backend and injects failures, for tests.
//! - [`s3::S3Backend`], [`sftp::SftpBackend`]: S3-compatible buckets and SFTP servers.
//! - [`DestinationUrl`]: parses `/path`, `file:///path`, `s3://…`, `sftp://…`
//!   into each backend's typed description ([`s3::S3Target`],
//!   [`sftp::SftpTarget`]); [`DestinationUrl::open`] builds the backend.
//! - [`conformance`]: the checks every backend must pass.
//!
//! ```
//! # tokio_test_block(async {
//! use lifeboat_backends::{Backend, MemoryBackend};
//! let store = MemoryBackend::new("mem");
//! store.put("config", bytes::Bytes::from_static(b"hello")).await.unwrap();
//! assert_eq!(&store.get("config", Some(1..3)).await.unwrap()[..], b"el");
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

#![warn(missing_docs)]

mod backend;
mod chaos;
pub mod conformance;
mod durable_write;
mod error;
mod fault;
mod home;
mod local;
mod memory;
mod open;
mod retry;
pub mod s3;
pub mod sftp;
mod url;

pub use backend::{validate_key, Backend, ObjectMeta};
pub use bytes::Bytes;
pub use chaos::{Chaos, ChaosBackend, ChaosCounts, Traffic};
pub use error::{BackendError, ErrorKind, Result, UrlError};
pub use fault::{FaultPlan, FaultyBackend};
pub use home::expand_user;
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use retry::{RetryBackend, RetryPolicy};
pub use url::{redact, DestinationUrl};
