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
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig,
};

use crate::backend::{validate_key, Backend, ObjectMeta};
use crate::error::{BackendError, ErrorKind, Result};
use crate::url::{DestinationUrl, UrlError};

mod classify;
mod credentials;
mod endpoint;
#[cfg(test)]
mod tests;

pub use credentials::{S3Credentials, S3Options};

use classify::classify;
use endpoint::{is_loopback, parse_bool, virtual_hosted_endpoint};

/// Query options an `s3://` URL may carry; anything else is refused (typos would
/// otherwise be ignored silently).
const KNOWN_OPTIONS: &[&str] = &["endpoint", "region", "path_style", "allow_http"];

/// Query options that would put a secret in a URL, which ends up in shell
/// history, config files and process listings.
const SECRET_OPTIONS: &[&str] = &[
    "access_key_id",
    "aws_access_key_id",
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "aws_session_token",
    "token",
    "password",
];

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

/// Opens an `s3://` destination with `options`.
///
/// # Errors
/// As [`open`].
pub fn open_with_options(
    name: &str,
    url: &DestinationUrl,
    options: &S3Options,
) -> Result<Arc<dyn Backend>, UrlError> {
    let mut builder = AmazonS3Builder::from_env();
    if let Some(credentials) = &options.credentials {
        builder = credentials.apply(builder);
    }
    let mut backend = S3Backend::open_with(name, url, builder)?;
    if options.instance_credentials {
        backend.unusable = None;
    }
    Ok(Arc::new(backend))
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

/// Opens an `s3://` destination.
///
/// Nothing is sent to the server until the first call.
///
/// # Errors
/// [`UrlError::Invalid`] for an unknown or malformed option, a secret in the
/// URL, a plain-HTTP endpoint that is not a loopback address (without
/// `allow_http=true`) or a configuration object_store refuses.
pub fn open(name: &str, url: &DestinationUrl) -> Result<Arc<dyn Backend>, UrlError> {
    Ok(Arc::new(S3Backend::open(name, url)?))
}

/// Opens an `s3://` destination with credentials from the config file.
///
/// # Errors
/// As [`open`].
pub fn open_with_credentials(
    name: &str,
    url: &DestinationUrl,
    credentials: &S3Credentials,
) -> Result<Arc<dyn Backend>, UrlError> {
    open_with_options(
        name,
        url,
        &S3Options {
            credentials: Some(credentials.clone()),
            instance_credentials: false,
        },
    )
}

impl S3Backend {
    /// Builds the backend for an [`DestinationUrl::S3`] address; see the module
    /// documentation for the options and where credentials come from.
    ///
    /// # Errors
    /// As [`open`].
    pub fn open(name: &str, url: &DestinationUrl) -> Result<Self, UrlError> {
        Self::open_with(name, url, AmazonS3Builder::from_env())
    }

    /// [`S3Backend::open`] on a builder that already holds the credentials
    /// (tests use static ones instead of the environment).
    fn open_with(
        name: &str,
        url: &DestinationUrl,
        mut builder: AmazonS3Builder,
    ) -> Result<Self, UrlError> {
        let DestinationUrl::S3 {
            bucket,
            prefix,
            options,
        } = url
        else {
            return Err(UrlError::Invalid {
                url: format!("{url:?}"),
                reason: "not an s3 URL".into(),
            });
        };
        let shown = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let invalid = |reason: String| UrlError::Invalid {
            url: shown.clone(),
            reason,
        };
        // No keys and no provider in the environment: the client would fall
        // back to the instance-metadata address. Fail every call instead,
        // saying what to set (a call, not `open`, so the other destinations
        // of a run go on).
        let unusable = credentials::missing(&builder);

        let mut endpoint = None;
        let mut region = None;
        let mut path_style = None;
        let mut allow_http = false;
        for (key, value) in options {
            let key_lc = key.to_ascii_lowercase();
            if SECRET_OPTIONS.contains(&key_lc.as_str()) {
                return Err(invalid(format!(
                    "credentials are not accepted in URLs (option {key:?}); set \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) instead"
                )));
            }
            match key_lc.as_str() {
                "endpoint" => endpoint = Some(value.trim_end_matches('/').to_string()),
                "region" => region = Some(value.clone()),
                "path_style" => path_style = Some(parse_bool(key, value).map_err(&invalid)?),
                "allow_http" => allow_http = parse_bool(key, value).map_err(&invalid)?,
                _ => {
                    return Err(invalid(format!(
                        "unknown option {key:?}; known options: {}",
                        KNOWN_OPTIONS.join(", ")
                    )))
                }
            }
        }

        // An endpoint from the environment (AWS_ENDPOINT, AWS_ENDPOINT_URL_S3)
        // counts as well: the same HTTP rule applies to it.
        let endpoint = endpoint
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::S3Endpoint))
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
            .map(|e| e.trim_end_matches('/').to_string());
        let mut http_ok = false;
        if let Some(endpoint) = &endpoint {
            let parsed = url::Url::parse(endpoint)
                .map_err(|e| invalid(format!("invalid endpoint {endpoint:?}: {e}")))?;
            match parsed.scheme() {
                "https" => {}
                "http" if allow_http || is_loopback(&parsed) => http_ok = true,
                "http" => {
                    return Err(invalid(format!(
                        "endpoint {endpoint:?} uses plain HTTP to a host that is not a loopback \
                         address; use https, or add allow_http=true if the network is trusted"
                    )))
                }
                other => {
                    return Err(invalid(format!(
                        "endpoint {endpoint:?}: scheme {other:?} is not http or https"
                    )))
                }
            }
            if parsed.host_str().is_none() {
                return Err(invalid(format!("endpoint {endpoint:?} names no host")));
            }
        }
        // Path style by default with an explicit endpoint (S3-compatible servers),
        // virtual-hosted style on AWS itself.
        let path_style = path_style.unwrap_or(endpoint.is_some());
        if let Some(endpoint) = &endpoint {
            let endpoint = if path_style {
                endpoint.clone()
            } else {
                virtual_hosted_endpoint(endpoint, bucket).map_err(&invalid)?
            };
            // Both keys: object_store prefers the S3-specific one, which
            // AWS_ENDPOINT_URL_S3 may have set, over the generic endpoint.
            builder = builder
                .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint.clone())
                .with_endpoint(endpoint);
        }
        if let Some(region) = region {
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

        // reqwest is built with rustls and no bundled crypto provider, so that
        // nothing compiles aws-lc from C: make ring the process default. An error
        // only means some provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let client = ClientOptions::new()
            .with_allow_http(http_ok)
            .with_connect_timeout(Duration::from_secs(10))
            // A whole request, including the upload of a pack on a slow uplink.
            .with_timeout(Duration::from_secs(300));
        // Over TLS the transport already protects the body, so hashing every
        // pack for the signature is wasted work; over plain HTTP (loopback or
        // an explicit opt-in) the signed hash is what stops a tampered upload.
        let store = builder
            .with_unsigned_payload(!http_ok)
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(!path_style)
            .with_client_options(client)
            .with_retry(retry_config())
            .build()
            .map_err(|e| invalid(format!("cannot configure the S3 client: {e}")))?;

        let location = match &endpoint {
            Some(endpoint) => format!("{shown} at {endpoint}"),
            None => shown.clone(),
        };
        Ok(S3Backend {
            name: name.to_string(),
            location,
            prefix: prefix.trim_matches('/').to_string(),
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
            let result = self
                .store
                .get_opts(&path, GetOptions::default())
                .await
                .map_err(|e| self.err(key, "download failed", e))?;
            let size = result.meta.size;
            let data = result
                .bytes()
                .await
                .map_err(|e| self.err(key, "download failed", e))?;
            if data.len() as u64 != size {
                return Err(BackendError::new(
                    ErrorKind::Transient,
                    &self.name,
                    key,
                    format!("read {} bytes of an object of {size}", data.len()),
                ));
            }
            return Ok(data);
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
