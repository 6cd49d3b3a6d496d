//! Connecting and signing in to an IMAP server: implicit TLS (`imaps://`),
//! or STARTTLS (`imap://`), which is required unless the server is on
//! loopback; certificates verified against the system roots plus an
//! optional CA file; every byte received counted.

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lifeboat_engine::source::SourceError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::url::SourceUrl;

/// A byte stream an IMAP session runs over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

/// A signed-in IMAP session.
pub type Session = async_imap::Session<Box<dyn Io>>;

/// Connects, secures and signs in.
///
/// # Errors
/// [`SourceError::Auth`] when the server refuses the credentials;
/// [`SourceError::Failed`] for a connection, TLS or protocol failure, or a
/// remote server without STARTTLS on `imap://`.
pub async fn sign_in(
    url: &SourceUrl,
    password: &str,
    ca_file: Option<&Path>,
    received: Arc<AtomicU64>,
) -> Result<Session, SourceError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        SourceError::Failed(format!("{}: {what}: {e}", url.host_port()).replace(['\r', '\n'], " "))
    };
    let port = url.port.unwrap_or(if url.tls { 993 } else { 143 });
    let host = url
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| fail("connect", &"no answer within 30 s"))?
    .map_err(|e| fail("connect", &e))?;
    // IMAP is a conversation of small commands: without NODELAY each one
    // waits for the previous answer's delayed ACK (40 ms on Linux).
    tcp.set_nodelay(true).map_err(|e| fail("connect", &e))?;
    let counted: Box<dyn Io> = Box::new(Counting {
        inner: tcp,
        received,
    });
    let mut client = if url.tls {
        let tls = tls_connect(counted, &host, ca_file).await?;
        async_imap::Client::new(tls)
    } else {
        async_imap::Client::new(counted)
    };
    client
        .read_response()
        .await
        .map_err(|e| fail("greeting", &e))?
        .ok_or_else(|| fail("greeting", &"the server closed the connection"))?;
    if !url.tls {
        match client.run_command_and_check_ok("STARTTLS", None).await {
            Ok(()) => {
                let plain = client.into_inner();
                client = async_imap::Client::new(tls_connect(plain, &host, ca_file).await?);
            }
            Err(_) if url.is_loopback() => {
                // Loopback: the password does not leave the machine.
            }
            Err(e) => {
                return Err(fail(
                    "STARTTLS refused; not sending the password in clear (use imaps://)",
                    &e,
                ))
            }
        }
    }
    let mut session = client
        .login(&url.user, password)
        .await
        .map_err(|(e, _)| match e {
            async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_) => {
                SourceError::Auth(format!(
                    "the server refused user {:?}; check the source's password (password_file or LIFEBOAT_SOURCE_PASSWORD; providers with two-factor sign-in need an app password)",
                    url.user
                ))
            }
            other => fail("login", &other),
        })?;
    // CONDSTORE, where offered: EXAMINE then reports HIGHESTMODSEQ, so an
    // unchanged mailbox needs no listing (RFC 7162 §3.1).
    let condstore = session
        .capabilities()
        .await
        .map(|c| c.has_str("CONDSTORE"))
        .unwrap_or(false);
    if condstore {
        let _ = session.run_command_and_check_ok("ENABLE CONDSTORE").await;
    }
    Ok(session)
}

/// Wraps `stream` in TLS for `host`.
async fn tls_connect(
    stream: Box<dyn Io>,
    host: &str,
    ca_file: Option<&Path>,
) -> Result<Box<dyn Io>, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra: Vec<CertificateDer<'static>> = Vec::new();
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
            SourceError::Failed(format!("cannot read the CA file {}: {e}", path.display()))
        })?;
        for cert in certs {
            extra.push(cert.map_err(|e| {
                SourceError::Failed(format!("the CA file {} is not PEM: {e}", path.display()))
            })?);
        }
    }
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| SourceError::Failed(format!("cannot set up TLS: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Failed(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| SourceError::Failed(format!("{host}: not a valid TLS server name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| SourceError::Failed(format!("{host}: TLS: {e}")))?;
    Ok(Box::new(tls))
}

/// A stream that counts the bytes it reads.
#[derive(Debug)]
struct Counting<T> {
    inner: T,
    received: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counting<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.received.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counting<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
