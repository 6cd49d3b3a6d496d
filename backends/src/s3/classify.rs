//! Sorting object_store failures into the backend error classes.

use object_store::client::{HttpError, HttpErrorKind};

use crate::error::{BackendError, ErrorKind};

/// Sorts an object_store failure into an [`ErrorKind`], keeping it as the source.
pub(super) fn classify(
    name: &str,
    key: &str,
    what: &str,
    err: object_store::Error,
) -> BackendError {
    use object_store::Error as E;
    // A missing bucket is a misconfigured destination, not a missing object: a
    // put must not say "not found", nor a listing come back empty.
    if mentions(&err, "NoSuchBucket") {
        return BackendError::new(
            ErrorKind::Permanent,
            name,
            key,
            format!("{what}: the bucket does not exist (create it first)"),
        )
        .with_source(err);
    }
    let kind = match &err {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::AlreadyExists,
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => ErrorKind::Permanent,
        _ => transient_or_permanent(&err),
    };
    let refused = chain_text(&err).contains("Connection refused");
    let detail = match &err {
        _ if refused => {
            format!("{what}: connection refused (is the server running, and the endpoint right?)")
        }
        E::PermissionDenied { .. } => format!("{what}: access denied (check the credentials)"),
        E::Unauthenticated { .. } => {
            format!("{what}: not authenticated (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
        }
        _ => what.to_string(),
    };
    BackendError::new(kind, name, key, detail).with_source(err)
}

/// Looks through the cause chain of an otherwise unclassified error: transport
/// failures (connect, request, timeout, interrupted) and HTTP 5xx / 429 /
/// throttling answers are transient, the rest permanent.
///
/// object_store keeps the HTTP status in a private type, so the status is read
/// from its message ("…status code: 503 …"); this is the one place that parses
/// text, and an unrecognised message errs on the side of `Permanent`.
fn transient_or_permanent(err: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        // TLS and certificate failures (a plain-HTTP server spoken to over
        // https, an untrusted or expired certificate) cannot heal by retrying.
        let text = e.to_string();
        if [
            "certificate",
            "InvalidCertificate",
            "tls handshake",
            "TLS",
            "received corrupt message",
        ]
        .iter()
        .any(|needle| text.contains(needle))
        {
            return ErrorKind::Permanent;
        }
        if let Some(http) = e.downcast_ref::<HttpError>() {
            if has_tls_cause(http) {
                return ErrorKind::Permanent;
            }
            return match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            return match io.kind() {
                Io::Interrupted
                | Io::TimedOut
                | Io::WouldBlock
                | Io::UnexpectedEof
                | Io::ConnectionRefused
                | Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::BrokenPipe => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            };
        }
        if let Some(status) = status_in(&text) {
            return if status >= 500 || status == 429 {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            };
        }
        if text.contains("SlowDown") || text.contains("InternalError") {
            return ErrorKind::Transient;
        }
        cause = e.source();
    }
    ErrorKind::Permanent
}

/// The error and its causes as one line of text.
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        parts.push(e.to_string());
        cause = e.source();
    }
    parts.join(": ")
}

/// True when a TLS failure lies below an HTTP error.
fn has_tls_cause(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = err.source();
    while let Some(e) = cause {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        let text = e.to_string();
        if text.contains("certificate") || text.contains("received corrupt message") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// True when the error or one of its causes says `needle` (an S3 error code).
fn mentions(err: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if e.to_string().contains(needle) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The HTTP status in an object_store message such as
/// "Server returned non-2xx status code: 503 Service Unavailable: …".
pub(super) fn status_in(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status code: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() == 3 {
        digits.parse().ok()
    } else {
        None
    }
}
