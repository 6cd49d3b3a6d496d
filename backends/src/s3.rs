//! S3-compatible destinations, on the `object_store` crate.
//!
//! `s3://bucket/prefix?endpoint=…&region=…&path_style=…&allow_http=…` names a
//! bucket and a key prefix inside it; every object key is stored under
//! `prefix/`. The query options are:
//!
//! - `endpoint`: the server's base URL (default: AWS for the region);
//! - `region`: the signing region (default: `AWS_REGION` / `AWS_DEFAULT_REGION`,
//!   else `us-east-1`);
//! - `path_style`: `true` for `endpoint/bucket/key` requests (the default with an
//!   explicit endpoint, which is what most S3-compatible servers want), `false`
//!   for virtual-hosted `bucket.endpoint/key` requests (the default on AWS);
//! - `allow_http`: plain HTTP is refused unless the endpoint is a loopback
//!   address or this is `true`, so that no secret or object crosses a network
//!   in clear by accident.
//!
//! The URL's options are checked when it is parsed, into an [`S3Target`];
//! [`S3Backend::new`] adds what only the environment knows (credentials, an
//! endpoint or region from `AWS_*` variables) and builds the client.
//!
//! Credentials never come from the URL: they come from the usual AWS
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! web identity or container credentials), read by
//! `AmazonS3Builder::from_env`, or from the config file.
//!
//! Writes are create-only with a conditional PUT (`If-None-Match: *`, object_store's
//! `PutMode::Create`). Stores that ignore the condition overwrite silently; that is
//! harmless for content-named objects, and locks never rely on it (ARCHITECTURE.md,
//! "Locks").
//!
//! Error policy: object_store does not retry ([`retry_config`]); the
//! `RetryBackend` around every destination does. Failures are sorted into the
//! four [`ErrorKind`]s: 404 → `NotFound`, 409/412 on a create-only put →
//! `AlreadyExists`, connection failures, timeouts, 5xx, 429 and throttling →
//! `Transient`, everything else (403, 416, TLS and certificate errors, a
//! missing bucket, bad input, configuration) → `Permanent`.
//!
//! Credentials come from the environment or the config file only. Without
//! any, a destination fails every call with one line naming the variables to
//! set, instead of letting the client ask the cloud instance-metadata address
//! (which on a laptop answers 403 or hangs); `credentials = "instance"` in the
//! config file opts in to instance credentials.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig,
};

use crate::backend::{validate_key, Backend, ObjectMeta};
use crate::error::{BackendError, ErrorKind, Result, UrlError};

mod classify;
mod credentials;
mod endpoint;
mod target;
#[cfg(test)]
mod tests;

pub use credentials::{S3Credentials, S3Options};
pub use target::S3Target;

use classify::classify;
use endpoint::Endpoint;

/// A repository stored in an S3 bucket, under a key prefix.
#[derive(Debug)]
pub struct S3Backend {
    name: String,
    /// `s3://bucket/prefix` plus the endpoint, for messages (never credentials).
    location: String,
    /// The key prefix inside the bucket, without slashes at either end; may be empty.
    prefix: String,
    store: Arc<AmazonS3>,
    /// Why every call fails at once without a request (no credentials).
    unusable: Option<String>,
}

/// The retry policy handed to object_store: none. Lifeboat's
/// [`crate::RetryBackend`] is the one retry layer (retries stacked on retries
/// made an unreachable server cost ~40 s per command), and it gives up on a
/// refused connection after two tries.
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 0,
        retry_timeout: Duration::from_secs(60),
    }
}

impl S3Backend {
    /// The backend for `target`, with credentials from the environment or
    /// `auth`; see the module documentation. Nothing is sent to the server
    /// until the first call.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] for a plain-HTTP endpoint that is not a loopback
    /// address (without `allow_http=true`), a malformed endpoint, or a
    /// configuration object_store refuses.
    pub fn new(name: &str, target: &S3Target, auth: &S3Options) -> Result<Self, UrlError> {
        let mut builder = AmazonS3Builder::from_env();
        if let Some(credentials) = &auth.credentials {
            builder = credentials.apply(builder);
        }
        Self::open_with(name, target, builder, auth.instance_credentials)
    }

    /// [`S3Backend::new`] on a builder that already holds the credentials
    /// (tests use static ones instead of the environment).
    fn open_with(
        name: &str,
        target: &S3Target,
        builder: AmazonS3Builder,
        instance_credentials: bool,
    ) -> Result<Self, UrlError> {
        let invalid = |reason: String| target.invalid(reason);
        let unusable = unusable_without_credentials(&builder, instance_credentials);
        let endpoint = Endpoint::resolve(target, &builder).map_err(invalid)?;
        let builder = address(builder, target, endpoint.as_ref()).map_err(invalid)?;
        let store = build_store(builder, endpoint.as_ref()).map_err(invalid)?;
        Ok(S3Backend {
            name: name.to_string(),
            location: location(target, endpoint.as_ref()),
            prefix: target.prefix.clone(),
            store: Arc::new(store),
            unusable,
        })
    }

    /// The object_store path of `key`, after checking that `key` is well formed.
    fn path_of(&self, key: &str) -> Result<Path> {
        if !validate_key(key) {
            return Err(BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                "invalid object key",
            ));
        }
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| {
            BackendError::new(ErrorKind::Permanent, &self.name, key, "invalid object key")
                .with_source(e)
        })
    }

    /// The backend key of a listed object_store path, or `None` when it lies
    /// outside the prefix.
    fn key_of(&self, location: &Path) -> Option<String> {
        let full = location.as_ref();
        if self.prefix.is_empty() {
            return Some(full.to_string());
        }
        full.strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')
            .map(str::to_string)
    }

    fn err(&self, key: &str, what: &str, err: object_store::Error) -> BackendError {
        classify(&self.name, key, what, err)
    }

    /// Fails at once, before any request, when the destination cannot be
    /// used (no credentials).
    fn usable(&self, key: &str) -> Result<()> {
        match &self.unusable {
            Some(why) => Err(BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                why.clone(),
            )),
            None => Ok(()),
        }
    }
}

impl S3Backend {
    /// Reads the whole object at `path` if it holds at most `limit` bytes:
    /// the size the server announces is checked before any buffer is made
    /// (object_store would otherwise size one from it), and the body is
    /// streamed, never taking in more than `limit` bytes whatever the server
    /// sends.
    async fn get_whole(&self, key: &str, path: &Path, limit: u64) -> Result<Bytes> {
        let result = self
            .store
            .get_opts(path, GetOptions::default())
            .await
            .map_err(|e| self.err(key, "download failed", e))?;
        let size = result.meta.size;
        let announced = result.range.end.saturating_sub(result.range.start);
        if size > limit || announced > limit {
            return Err(BackendError::too_large(
                &self.name,
                key,
                Some(size.max(announced)),
                limit,
            ));
        }
        // Room for what was announced, up to a bound: more grows as it comes.
        let room = usize::try_from(size.min(WHOLE_READ_ROOM)).unwrap_or(0);
        let mut data = BytesMut::with_capacity(room);
        let mut body = result.into_stream();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| self.err(key, "download failed", e))?;
            if (data.len() + piece.len()) as u64 > limit {
                return Err(BackendError::too_large(&self.name, key, None, limit));
            }
            data.extend_from_slice(&piece);
        }
        if data.len() as u64 != size {
            return Err(BackendError::new(
                ErrorKind::Transient,
                &self.name,
                key,
                format!("read {} bytes of an object of {size}", data.len()),
            ));
        }
        Ok(data.freeze())
    }
}

/// The most room a whole read makes up front from the size the server
/// announces; a larger object's buffer grows as its bytes arrive.
const WHOLE_READ_ROOM: u64 = 64 << 20;

/// Why every call must fail at once, when `builder` holds no credentials
/// and instance credentials were not asked for: the client would otherwise
/// ask the instance-metadata address. A failing call, not a failing open, so
/// the other destinations of a run go on.
fn unusable_without_credentials(builder: &AmazonS3Builder, instance: bool) -> Option<String> {
    if instance {
        None
    } else {
        credentials::missing(builder)
    }
}

/// Points `builder` at the bucket: the endpoint, the request style and the
/// signing region.
fn address(
    mut builder: AmazonS3Builder,
    target: &S3Target,
    endpoint: Option<&Endpoint>,
) -> std::result::Result<AmazonS3Builder, String> {
    // Path style by default with an explicit endpoint (S3-compatible servers),
    // virtual-hosted style on AWS itself.
    let path_style = target.path_style.unwrap_or(endpoint.is_some());
    if let Some(endpoint) = endpoint {
        let base = if path_style {
            endpoint.url.clone()
        } else {
            endpoint.virtual_hosted(&target.bucket)?
        };
        // Both keys: object_store prefers the S3-specific one, which
        // AWS_ENDPOINT_URL_S3 may have set, over the generic endpoint.
        builder = builder
            .with_config(AmazonS3ConfigKey::S3Endpoint, base.clone())
            .with_endpoint(base);
    }
    if let Some(region) = &target.region {
        builder = builder.with_region(region);
    } else if builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .is_none()
    {
        // from_env knows AWS_DEFAULT_REGION; AWS_REGION is the newer spelling.
        if let Ok(region) = std::env::var("AWS_REGION") {
            builder = builder.with_region(region);
        }
    }
    Ok(builder
        .with_bucket_name(&target.bucket)
        .with_virtual_hosted_style_request(!path_style))
}

/// The HTTP client settings: plain HTTP only where [`Endpoint::resolve`]
/// allowed it, and timeouts that fail a dead link instead of hanging.
fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(Duration::from_secs(10))
        // A whole request, including the upload of a pack on a slow uplink.
        .with_timeout(Duration::from_secs(300))
}

/// Builds the object_store client.
fn build_store(
    builder: AmazonS3Builder,
    endpoint: Option<&Endpoint>,
) -> std::result::Result<AmazonS3, String> {
    // reqwest is built with rustls and no bundled crypto provider, so that
    // nothing compiles aws-lc from C: make ring the process default. An error
    // only means some provider is installed already, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain_http = endpoint.is_some_and(|e| e.plain_http);
    // Over TLS the transport already protects the body, so hashing every
    // pack for the signature is wasted work; over plain HTTP (loopback or
    // an explicit opt-in) the signed hash is what stops a tampered upload.
    builder
        .with_unsigned_payload(!plain_http)
        .with_client_options(client_options(plain_http))
        .with_retry(retry_config())
        .build()
        .map_err(|e| format!("cannot configure the S3 client: {e}"))
}

/// `s3://bucket/prefix`, and the endpoint when it is not AWS: how messages
/// name the destination.
fn location(target: &S3Target, endpoint: Option<&Endpoint>) -> String {
    match endpoint {
        Some(endpoint) => format!("{} at {}", target.shown(), endpoint.url),
        None => target.shown(),
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.usable(key)?;
        let path = self.path_of(key)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(data), opts)
            .await
        {
            Ok(_) => Ok(()),
            // A create-only PUT refused by the store: 412 (If-None-Match) or 409
            // (a concurrent conditional write of the same key).
            Err(
                e @ (object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }),
            ) => {
                Err(BackendError::new(ErrorKind::AlreadyExists, &self.name, key, "").with_source(e))
            }
            Err(e) => Err(self.err(key, "upload failed", e)),
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.usable(key)?;
        let path = self.path_of(key)?;
        let Some(range) = range else {
            return self.get_whole(key, &path, u64::MAX).await;
        };
        let outside = |size: Option<u64>| {
            let of = size.map_or_else(String::new, |s| format!(" of {s} bytes"));
            BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                format!("range {}..{} outside object{of}", range.start, range.end),
            )
        };
        if range.start > range.end {
            return Err(outside(None));
        }
        if range.start == range.end {
            // HTTP cannot ask for zero bytes: check that the object exists and
            // that the (empty) range lies inside it.
            let meta = self.stat(key).await?;
            return if range.end <= meta.size {
                Ok(Bytes::new())
            } else {
                Err(outside(Some(meta.size)))
            };
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&path, opts).await {
            Ok(result) => result,
            Err(e @ object_store::Error::NotFound { .. }) => {
                return Err(self.err(key, "download failed", e))
            }
            // The server answers 416 for a range starting past the end, and
            // object_store refuses a 206 that covers less than was asked for.
            Err(e) => {
                let err = self.err(key, "ranged download failed", e);
                return Err(if err.kind == ErrorKind::Transient {
                    err
                } else {
                    BackendError {
                        detail: format!(
                            "cannot read range {}..{} (past the end?)",
                            range.start, range.end
                        ),
                        ..err
                    }
                });
            }
        };
        if result.range != range || result.meta.size < range.end {
            return Err(outside(Some(result.meta.size)));
        }
        let data = result
            .bytes()
            .await
            .map_err(|e| self.err(key, "download failed", e))?;
        if data.len() as u64 != range.end - range.start {
            return Err(BackendError::new(
                ErrorKind::Transient,
                &self.name,
                key,
                format!(
                    "short read: {} bytes for range {}..{}",
                    data.len(),
                    range.start,
                    range.end
                ),
            ));
        }
        Ok(data)
    }

    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes> {
        self.usable(key)?;
        let path = self.path_of(key)?;
        self.get_whole(key, &path, limit).await
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        self.usable(key)?;
        let path = self.path_of(key)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|e| self.err(key, "stat failed", e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: meta.size,
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        if let Err(e) = self.usable(prefix) {
            return Box::pin(futures::stream::once(async move { Err(e) }));
        }
        // object_store lists whole path segments: list the directory the prefix
        // names (everything before its last '/') and filter by the rest.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let full_dir = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, _) => dir.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{dir}", self.prefix),
        };
        let list_root = if full_dir.is_empty() {
            None
        } else {
            match Path::parse(&full_dir) {
                Ok(path) => Some(path),
                Err(e) => {
                    let err = BackendError::new(
                        ErrorKind::Permanent,
                        &self.name,
                        prefix,
                        "invalid listing prefix",
                    )
                    .with_source(e);
                    return futures::stream::once(async { Err(err) }).boxed();
                }
            }
        };
        // Pages are fetched as the stream is polled (object_store's paginated
        // LIST); nothing is collected here.
        self.store
            .list(list_root.as_ref())
            .filter_map(move |item| {
                let out = match item {
                    Ok(meta) => self
                        .key_of(&meta.location)
                        .filter(|key| key.starts_with(prefix))
                        .map(|key| {
                            Ok(ObjectMeta {
                                key,
                                size: meta.size,
                            })
                        }),
                    Err(e) => Some(Err(self.err(prefix, "listing failed", e))),
                };
                futures::future::ready(out)
            })
            .boxed()
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.usable(key)?;
        let path = self.path_of(key)?;
        // S3 deletes of a missing key succeed; the contract wants NotFound, so
        // look first. (A concurrent delete between the two calls is not detected,
        // which only prune does, under its exclusive lock.)
        self.store
            .head(&path)
            .await
            .map_err(|e| self.err(key, "delete failed", e))?;
        self.store
            .delete(&path)
            .await
            .map_err(|e| self.err(key, "delete failed", e))
    }
}
