//! Unit tests of the S3 destination: options, the HTTP rule, keys, error classes.
use super::classify::status_in;
use super::endpoint::virtual_hosted_endpoint;
use super::*;

/// Opens with static dummy credentials, whatever the environment holds.
fn open_url(text: &str) -> Result<S3Backend, UrlError> {
    let target = S3Target::from_url(&url::Url::parse(text).expect("url"))?;
    let builder = AmazonS3Builder::new()
        .with_access_key_id("test")
        .with_secret_access_key("test");
    S3Backend::open_with("s3-test", &target, builder, false)
}

#[test]
fn http_only_on_loopback_or_explicit_opt_in() {
    for ok in [
        "s3://b/p?endpoint=http://127.0.0.1:9000",
        "s3://b/p?endpoint=http://localhost:9000",
        "s3://b/p?endpoint=http://[::1]:9000",
        "s3://b/p?endpoint=http://nas.local:9000&allow_http=true",
        "s3://b/p?endpoint=https://s3.example.com",
        "s3://b?region=eu-west-1",
    ] {
        open_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let err = open_url("s3://b/p?endpoint=http://nas.local:9000").expect_err("plain http");
    assert!(err.to_string().contains("allow_http=true"), "{err}");
    let err = open_url("s3://b/p?endpoint=http://nas.local:9000&allow_http=false")
        .expect_err("plain http");
    assert!(matches!(err, UrlError::Invalid { .. }));
}

#[test]
fn refuses_secrets_and_unknown_options() {
    let err = open_url("s3://b/p?secret_access_key=hunter2").expect_err("secret");
    assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = open_url("s3://b/p?endpiont=https://x").expect_err("typo");
    assert!(err.to_string().contains("endpiont"), "{err}");
    assert!(open_url("s3://b/p?path_style=maybe").is_err());
}

#[test]
fn keys_live_under_the_prefix() {
    let s3 = open_url("s3://b/lb/x?endpoint=http://127.0.0.1:1").expect("open");
    assert_eq!(
        s3.path_of("data/ab/cd").expect("path").as_ref(),
        "lb/x/data/ab/cd"
    );
    assert_eq!(
        s3.key_of(&Path::from("lb/x/data/ab/cd")).as_deref(),
        Some("data/ab/cd")
    );
    assert_eq!(s3.key_of(&Path::from("lb/xy/data")), None);
    assert!(s3.path_of("../up").is_err());
    let bare = open_url("s3://b?endpoint=http://127.0.0.1:1").expect("open");
    assert_eq!(bare.path_of("config").expect("path").as_ref(), "config");
    assert!(s3.location().contains("s3://b/lb/x"));
}

#[test]
fn virtual_hosted_endpoints_carry_the_bucket() {
    assert_eq!(
        virtual_hosted_endpoint("https://s3.example.com:8443", "bkt").expect("ok"),
        "https://bkt.s3.example.com:8443"
    );
    assert_eq!(
        virtual_hosted_endpoint("https://bkt.s3.example.com", "bkt").expect("ok"),
        "https://bkt.s3.example.com"
    );
}

#[test]
fn reads_statuses_from_messages() {
    assert_eq!(
        status_in("Server returned non-2xx status code: 503 Service Unavailable: x"),
        Some(503)
    );
    assert_eq!(status_in("no status here"), None);
}

/// A server that answers every request with `status` and counts them.
fn answering(status: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            // Read the request head (HEAD requests carry no body).
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = conn.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (format!("http://127.0.0.1:{port}"), count)
}

#[tokio::test]
async fn server_errors_are_retried_then_transient() {
    let (endpoint, count) = answering("503 Service Unavailable");
    let s3 = open_url(&format!("s3://b/p?endpoint={endpoint}")).expect("open");
    let err = s3.stat("config").await.expect_err("503");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    let tries = count.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(tries, 1 + retry_config().max_retries, "{err}");
}

#[tokio::test]
async fn client_errors_are_permanent_and_not_retried() {
    let (endpoint, count) = answering("400 Bad Request");
    let s3 = open_url(&format!("s3://b/p?endpoint={endpoint}")).expect("open");
    let err = s3.stat("config").await.expect_err("400");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_server_is_transient() {
    // Port 1 on loopback: connection refused at once.
    let s3 = open_url("s3://b/p?endpoint=http://127.0.0.1:1").expect("open");
    let err = s3.stat("config").await.expect_err("nothing listens there");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert_eq!(err.key, "config");
    assert_eq!(err.destination, "s3-test");
}

#[test]
fn config_file_credentials_override_the_environment() {
    let creds = S3Credentials {
        access_key_id: "AKIDCONFIG".into(),
        secret_access_key: "config-secret".into(),
        session_token: Some("tok".into()),
    };
    let builder = creds.apply(AmazonS3Builder::new().with_access_key_id("from-env"));
    assert_eq!(
        builder
            .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
            .as_deref(),
        Some("AKIDCONFIG")
    );
    assert_eq!(
        builder
            .get_config_value(&AmazonS3ConfigKey::SecretAccessKey)
            .as_deref(),
        Some("config-secret")
    );
    assert_eq!(
        builder
            .get_config_value(&AmazonS3ConfigKey::Token)
            .as_deref(),
        Some("tok")
    );
    assert!(
        !format!("{creds:?}").contains("config-secret"),
        "the secret is never printed"
    );
}

#[tokio::test]
async fn without_credentials_calls_fail_at_once_unless_instance_credentials() {
    let url = url::Url::parse("s3://b/p?endpoint=http://127.0.0.1:1").expect("url");
    let target = S3Target::from_url(&url).expect("target");
    let bare = S3Backend::open_with("s3-test", &target, AmazonS3Builder::new(), false)
        .expect("opening makes no request");
    if bare.unusable.is_some() {
        let err = bare.stat("config").await.expect_err("no credentials");
        assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
        assert!(err.detail.contains("no S3 credentials"), "{err}");
    }
    let instance = S3Backend::open_with("s3-test", &target, AmazonS3Builder::new(), true)
        .expect("opening makes no request");
    assert!(instance.unusable.is_none());
}

/// A server announcing a 1 TiB object: the bounded read refuses it on the
/// announced size, before making room for it or reading its body (the
/// unbounded read used to size its buffer from that announcement).
#[tokio::test]
async fn an_announced_size_above_the_limit_is_refused_unread() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = [0u8; 8192];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\n\
              Content-Length: 1099511627776\r\n\
              ETag: \"e\"\r\n\
              Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n\
              only a few bytes follow",
        );
        // Held open a moment, as a server still sending would.
        std::thread::sleep(std::time::Duration::from_millis(200));
    });
    let s3 = open_url(&format!("s3://b/p?endpoint=http://127.0.0.1:{port}")).expect("open");
    let err = s3
        .get_bounded("index/huge", 1 << 20)
        .await
        .expect_err("a 1 TiB object within a 1 MiB limit");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert_eq!(
        err.too_large_info().and_then(|t| t.size),
        Some(1 << 40),
        "{err}"
    );
    assert!(err.to_string().contains("index/huge"), "{err}");
    server.join().expect("server thread");
}
