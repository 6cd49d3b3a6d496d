//! The backend conformance suite (`lifeboat_backends::conformance_suite!`) on the
//! S3 backend, against the S3-compatible server that `scripts/test.sh` starts
//! (moto, see `scripts/servers/s3.sh`). Each check runs under its own random
//! prefix in the test bucket, so checks are independent and can run at once.
//!
//! Without the server the checks fail (they never skip): run `./scripts/test.sh`.

use std::sync::Arc;

use lifeboat_backends::{Backend, DestinationUrl};

/// The test server's endpoint and bucket, from the variables `scripts/servers/s3.sh` exports.
///
/// # Panics
/// When `LIFEBOAT_TEST_S3_ENDPOINT` is not set: the server is missing.
fn server() -> (String, String) {
    let endpoint = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "LIFEBOAT_TEST_S3_ENDPOINT is not set: the S3 conformance tests need the test \
             server; run ./scripts/test.sh (it starts moto and sets the variables), or source \
             scripts/servers/s3.sh in bash before `cargo test`"
        )
    });
    let bucket =
        std::env::var("LIFEBOAT_TEST_S3_BUCKET").unwrap_or_else(|_| "lifeboat-test".to_string());
    (endpoint, bucket)
}

/// A fresh, empty S3 destination: the test bucket under a new random prefix.
fn fresh_s3() -> Arc<dyn Backend> {
    let (endpoint, bucket) = server();
    let prefix = format!("conformance/{:016x}", rand::random::<u64>());
    let url = format!("s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1");
    DestinationUrl::parse(&url)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .open("s3-test")
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The same bucket without a prefix: keys sit at the bucket root. Each such
/// check gets its own bucket, since the root is shared otherwise.
async fn fresh_s3_bucket_root() -> Arc<dyn Backend> {
    let (endpoint, _) = server();
    let bucket = format!("lifeboat-root-{:016x}", rand::random::<u64>());
    create_bucket(&endpoint, &bucket);
    let url = format!("s3://{bucket}?endpoint={endpoint}&region=us-east-1");
    DestinationUrl::parse(&url)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .open("s3-test")
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Creates a bucket with an unsigned `PUT /bucket` (moto accepts it).
fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let host = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("test endpoint {endpoint} is not http://host:port"));
    // One short blocking exchange with a loopback server.
    let mut conn = std::net::TcpStream::connect(host)
        .unwrap_or_else(|e| panic!("cannot reach the S3 test server at {endpoint}: {e}"));
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes())
        .expect("send create-bucket request");
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .expect("read create-bucket answer");
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "cannot create bucket {bucket}: {answer}"
    );
}

mod s3 {
    lifeboat_backends::conformance_suite!(async { super::fresh_s3() });
}

mod s3_bucket_root {
    lifeboat_backends::conformance_suite!(super::fresh_s3_bucket_root());
}

/// A range past the end is an error even on S3, where the server would answer
/// with the shorter range; and errors name the destination and the key.
#[tokio::test]
async fn errors_name_destination_and_key() {
    let s3 = fresh_s3();
    s3.put("data/00/x", lifeboat_backends::Bytes::from_static(b"abc"))
        .await
        .expect("put");
    let err = s3
        .get("data/00/x", Some(1..4))
        .await
        .expect_err("range past the end");
    assert_eq!(err.destination, "s3-test");
    assert_eq!(err.key, "data/00/x");
    assert_eq!(err.kind, lifeboat_backends::ErrorKind::Permanent, "{err}");
    // A listing of a partial segment filters by string prefix.
    s3.put("data/01/y", lifeboat_backends::Bytes::from_static(b"y"))
        .await
        .expect("put");
    assert_eq!(
        collect_keys(&*s3, "data/0").await,
        vec!["data/00/x".to_string(), "data/01/y".to_string()]
    );
    assert_eq!(
        collect_keys(&*s3, "data/01").await,
        vec!["data/01/y".to_string()]
    );
    assert!(collect_keys(&*s3, "data/02").await.is_empty());
}

/// Every key under `prefix`, sorted.
async fn collect_keys(backend: &dyn Backend, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let mut keys: Vec<String> = backend
        .list(prefix)
        .map_ok(|meta| meta.key)
        .try_collect()
        .await
        .expect("list");
    keys.sort();
    keys
}

/// A bucket that does not exist is a permanent error for a put and a listing,
/// never `NotFound` for a new object nor an empty listing.
#[tokio::test]
async fn missing_bucket_is_permanent() {
    let (endpoint, _) = server();
    let bucket = format!("lifeboat-missing-{:016x}", rand::random::<u64>());
    let url = format!("s3://{bucket}/p?endpoint={endpoint}&region=us-east-1");
    let s3 = DestinationUrl::parse(&url)
        .expect("parse")
        .open("s3-missing")
        .expect("open");
    let err = s3
        .put("config", lifeboat_backends::Bytes::from_static(b"x"))
        .await
        .expect_err("put into a missing bucket");
    assert_eq!(err.kind, lifeboat_backends::ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("bucket does not exist"), "{err}");
    // (A HEAD answer has no body to tell a missing bucket from a missing object,
    // so `stat` says NotFound, which the contract allows for a missing root.)
    s3.stat("config").await.expect_err("stat");
    let listed: Result<Vec<_>, _> = {
        use futures::TryStreamExt;
        s3.list("").try_collect().await
    };
    assert!(
        listed.is_err(),
        "listing a missing bucket must fail: {listed:?}"
    );
}
