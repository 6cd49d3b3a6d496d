//! The HTTP side of a DAV source: one client per account, credentials sent
//! only to the account's own origin, TLS verified against the system roots
//! plus an optional CA file, answers bounded in size, requests and bytes
//! counted.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lifeboat_engine::source::{SourceError, SourceTraffic};
use reqwest::{Method, StatusCode};
use zeroize::Zeroizing;

use crate::url::SourceUrl;

/// Largest answer read from a server; larger ones are refused unread, so a
/// hostile server cannot exhaust memory.
pub const MAX_ANSWER: usize = 256 << 20;
/// Redirects followed within the origin, at most.
const MAX_REDIRECTS: usize = 5;
/// Attempts of a request that failed on the way (connection reset, 5xx).
const ATTEMPTS: usize = 3;

/// A DAV account's HTTP client.
pub struct Http {
    client: reqwest::Client,
    origin: url::Url,
    user: String,
    password: Zeroizing<String>,
    requests: AtomicU64,
    bytes_in: AtomicU64,
}

/// An answer: the URL that gave it (after redirects) and its body.
pub struct Answer {
    /// Where the answer came from, after redirects.
    pub url: url::Url,
    /// The body.
    pub body: Vec<u8>,
}

impl Http {
    /// A client for `url`'s origin.
    ///
    /// # Errors
    /// A CA file that cannot be read, or plain HTTP to a host that is not
    /// loopback (the password would cross the network in clear).
    pub fn new(
        url: &SourceUrl,
        password: Zeroizing<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self, SourceError> {
        if !url.tls && !url.is_loopback() {
            return Err(SourceError::Failed(format!(
                "dav:// would send the password to {} in clear; use davs:// (plain dav:// is for loopback only)",
                url.host
            )));
        }
        // reqwest is built with rustls and no bundled crypto provider: ring,
        // as for the S3 destinations.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                SourceError::Failed(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SourceError::Failed(format!(
                    "the CA file {} holds no PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| SourceError::Failed(format!("cannot set up HTTPS: {e}")))?;
        let scheme = if url.tls { "https" } else { "http" };
        let origin = url::Url::parse(&format!("{scheme}://{}/", url.host_port()))
            .map_err(|e| SourceError::Failed(format!("invalid host: {e}")))?;
        Ok(Http {
            client,
            origin,
            user: url.user.clone(),
            password,
            requests: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        })
    }

    /// The account's origin (`https://host:port/`).
    pub fn origin(&self) -> &url::Url {
        &self.origin
    }

    /// Requests sent and bytes received so far.
    pub fn traffic(&self) -> SourceTraffic {
        SourceTraffic {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
        }
    }

    /// `href` (a path or an absolute URL) resolved against the origin;
    /// refused when it points elsewhere, so credentials stay with the
    /// account's server.
    pub fn resolve(&self, href: &str) -> Result<url::Url, SourceError> {
        let url = self.origin.join(href).map_err(|e| {
            SourceError::Failed(format!("the server sent an invalid href {href:?}: {e}"))
        })?;
        if url.origin() != self.origin.origin() {
            return Err(SourceError::Failed(format!(
                "the server pointed to {}, another server; not following it with this account's password",
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// Sends a WebDAV request (`PROPFIND`, `REPORT`) to `href` and returns the
    /// answer, following redirects within the origin.
    ///
    /// # Errors
    /// [`SourceError::Auth`] on 401 or 403; [`SourceError::Failed`] for other
    /// failures, naming the status.
    pub async fn dav(
        &self,
        method: &str,
        href: &str,
        depth: &str,
        body: &str,
    ) -> Result<Answer, SourceError> {
        let headers = [
            ("Depth", depth),
            ("Content-Type", "application/xml; charset=utf-8"),
        ];
        let (status, answer) = self
            .request(method, href, &headers, body.as_bytes())
            .await?;
        self.check(method, status, &answer.url)?;
        Ok(answer)
    }

    /// Maps a status to the caller's error: 2xx passes, 401/403 is
    /// [`SourceError::Auth`], anything else [`SourceError::Failed`].
    pub fn check(
        &self,
        method: &str,
        status: StatusCode,
        url: &url::Url,
    ) -> Result<(), SourceError> {
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SourceError::Auth(format!(
                "the server refused user {:?} ({status}); check the source's password (password_file or LIFEBOAT_SOURCE_PASSWORD; providers with two-factor sign-in need an app password)",
                self.user
            ))),
            s => Err(SourceError::Failed(format!("{method} {}: the server answered {s}", url.path()))),
        }
    }

    /// Sends any request to `href` with `headers` and `body`, following
    /// redirects within the origin; the final status and answer, whatever
    /// the status.
    ///
    /// # Errors
    /// [`SourceError::Failed`] when no answer came (after retries), or a
    /// redirect left the origin.
    pub async fn request(
        &self,
        method: &str,
        href: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(StatusCode, Answer), SourceError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| SourceError::Failed(format!("invalid method: {e}")))?;
        let mut url = self.resolve(href)?;
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send(&method, &url, headers, body).await?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        SourceError::Failed(format!("{url}: redirect without a location"))
                    })?
                    .to_string();
                let next = url.join(&location).map_err(|e| {
                    SourceError::Failed(format!("{url}: invalid redirect {location:?}: {e}"))
                })?;
                url = self.resolve(next.as_str())?;
                continue;
            }
            let body = self.read_body(response, &url).await?;
            return Ok((status, Answer { url, body }));
        }
        Err(SourceError::Failed(format!(
            "{}: more than {MAX_REDIRECTS} redirects",
            url.path()
        )))
    }

    /// One request, retried when it failed on the way or the server
    /// answered 5xx.
    async fn send(
        &self,
        method: &Method,
        url: &url::Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<reqwest::Response, SourceError> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << (2 * attempt))).await;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .basic_auth(&self.user, Some(self.password.as_str()));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let sent = request.body(body.to_vec()).send().await;
            match sent {
                Ok(r) if r.status().is_server_error() => {
                    last = format!("the server answered {}", r.status());
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    last = one_line(&e);
                    // A certificate the verifier refused stays refused.
                    if last.contains("certificate") {
                        break;
                    }
                }
            }
        }
        Err(SourceError::Failed(format!(
            "{method} {}: {last}",
            url.path()
        )))
    }

    async fn read_body(
        &self,
        mut response: reqwest::Response,
        url: &url::Url,
    ) -> Result<Vec<u8>, SourceError> {
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER as u64)
        {
            return Err(too_large(url));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    self.bytes_in
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if body.len() + chunk.len() > MAX_ANSWER {
                        return Err(too_large(url));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(SourceError::Failed(format!(
                        "{}: the answer broke off: {}",
                        url.path(),
                        one_line(&e)
                    )))
                }
            }
        }
    }
}

fn too_large(url: &url::Url) -> SourceError {
    SourceError::Failed(format!(
        "{}: the answer is larger than {} MiB; refused",
        url.path(),
        MAX_ANSWER >> 20
    ))
}

/// An error and its causes on one line.
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_beyond_loopback() {
        let remote = SourceUrl::parse("dav://alice@dav.example.com/").unwrap();
        let err = Http::new(&remote, Zeroizing::new("pw".into()), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("in clear"), "{err}");
        let local = SourceUrl::parse("dav://alice@127.0.0.1:5232/").unwrap();
        assert!(Http::new(&local, Zeroizing::new("pw".into()), None).is_ok());
    }

    #[test]
    fn credentials_never_follow_an_href_to_another_origin() {
        let url = SourceUrl::parse("davs://alice@dav.example.com/").unwrap();
        let http = Http::new(&url, Zeroizing::new("pw".into()), None).unwrap();
        assert!(http.resolve("/alice/contacts/").is_ok());
        assert!(http.resolve("https://evil.example.net/steal").is_err());
        assert!(http.resolve("http://dav.example.com/downgrade").is_err());
    }
}
