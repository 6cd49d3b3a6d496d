//! The conformance suite: checks every [`Backend`] must pass.
//!
//! Each check takes a fresh, empty backend and panics (test-style) on a
//! violation. [`conformance_suite!`](crate::conformance_suite) expands to one
//! `#[tokio::test]` per check, so a backend that runs the macro cannot skip a
//! check added later.

use bytes::Bytes;
use futures::TryStreamExt;

use crate::{Backend, ErrorKind};

async fn keys(backend: &dyn Backend, prefix: &str) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = backend
        .list(prefix)
        .map_ok(|m| (m.key, m.size))
        .try_collect()
        .await
        .expect("list failed");
    all.sort();
    all
}

/// Put then get returns the same bytes; stat reports the size.
pub async fn round_trip(backend: &dyn Backend) {
    let data = Bytes::from(
        (0..100_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    backend
        .put("data/ab/abcdef", data.clone())
        .await
        .expect("put");
    assert_eq!(
        backend.get("data/ab/abcdef", None).await.expect("get"),
        data
    );
    let meta = backend.stat("data/ab/abcdef").await.expect("stat");
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.key, "data/ab/abcdef");
    backend.put("empty", Bytes::new()).await.expect("put empty");
    assert!(backend
        .get("empty", None)
        .await
        .expect("get empty")
        .is_empty());
}

/// Ranged reads return exactly the range; a range past the end is an error.
pub async fn range_edges(backend: &dyn Backend) {
    let data = Bytes::from_static(b"0123456789");
    backend.put("snapshots/r", data).await.expect("put");
    let get = |r: std::ops::Range<u64>| backend.get("snapshots/r", Some(r));
    assert_eq!(&get(0..10).await.expect("full")[..], b"0123456789");
    assert_eq!(&get(3..7).await.expect("middle")[..], b"3456");
    assert_eq!(&get(9..10).await.expect("last")[..], b"9");
    assert!(get(4..4).await.expect("empty").is_empty());
    let past = get(5..11).await.expect_err("range past the end must fail");
    assert_ne!(past.kind, ErrorKind::NotFound);
    assert!(get(11..12).await.is_err(), "range beyond the end must fail");
}

/// A bounded read returns an object within its limit whole, and refuses a
/// larger one with a permanent error naming it, its size and the limit.
pub async fn bounded_reads(backend: &dyn Backend) {
    let data = Bytes::from((0..1000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    backend
        .put("index/bounded", data.clone())
        .await
        .expect("put");
    let read = |limit| backend.get_bounded("index/bounded", limit);
    assert_eq!(read(1000).await.expect("exactly the limit"), data);
    assert_eq!(read(u64::MAX).await.expect("far below the limit"), data);
    let err = read(999)
        .await
        .expect_err("one byte over the limit must fail");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(err.is_too_large(), "{err}");
    assert_eq!(err.key, "index/bounded");
    assert_eq!(err.destination, backend.name());
    let message = err.to_string();
    for part in [
        "index/bounded",
        "1000 bytes",
        "999 bytes",
        "larger than any object",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    let err = backend
        .get_bounded("index/missing", 10)
        .await
        .expect_err("missing");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(!err.is_too_large());
    backend.put("locks/empty", Bytes::new()).await.expect("put");
    assert!(backend
        .get_bounded("locks/empty", 0)
        .await
        .expect("an empty object fits any limit")
        .is_empty());
    assert!(read(0).await.expect_err("limit 0").is_too_large());
}

/// A second put of an existing key fails with AlreadyExists and keeps the first bytes.
pub async fn create_only(backend: &dyn Backend) {
    backend
        .put("locks/x", Bytes::from_static(b"first"))
        .await
        .expect("put");
    let err = backend
        .put("locks/x", Bytes::from_static(b"second!"))
        .await
        .expect_err("second put must fail");
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err}");
    assert_eq!(err.key, "locks/x");
    assert_eq!(
        &backend.get("locks/x", None).await.expect("get")[..],
        b"first"
    );
}

/// Every call on a missing key reports NotFound, naming the key.
pub async fn not_found(backend: &dyn Backend) {
    let err = backend.get("index/missing", None).await.expect_err("get");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.key, "index/missing");
    assert_eq!(err.destination, backend.name());
    let err = backend
        .get("index/missing", Some(0..1))
        .await
        .expect_err("ranged get");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(
        backend.stat("index/missing").await.expect_err("stat").kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        backend
            .delete("index/missing")
            .await
            .expect_err("delete")
            .kind,
        ErrorKind::NotFound
    );
}

/// Listing returns every key under a prefix, nothing else, and empty for no match.
pub async fn listing(backend: &dyn Backend) {
    assert!(keys(backend, "data/").await.is_empty(), "empty listing");
    let mut expected = Vec::new();
    for i in 0..300u32 {
        let key = format!("data/{:02x}/{:064x}", i % 7, i);
        backend
            .put(&key, Bytes::from(vec![1u8; (i % 5) as usize]))
            .await
            .expect("put");
        expected.push((key, u64::from(i % 5)));
    }
    backend
        .put("index/one", Bytes::from_static(b"x"))
        .await
        .expect("put");
    backend
        .put("config", Bytes::from_static(b"cfg"))
        .await
        .expect("put");
    expected.sort();
    assert_eq!(keys(backend, "data/").await, expected);
    assert_eq!(
        keys(backend, "index/").await,
        vec![("index/one".to_string(), 1)]
    );
    let sub: Vec<_> = expected
        .iter()
        .filter(|(k, _)| k.starts_with("data/03/"))
        .cloned()
        .collect();
    assert_eq!(keys(backend, "data/03/").await, sub);
    assert!(keys(backend, "snapshots/").await.is_empty());
    assert_eq!(keys(backend, "").await.len(), 302);
}

/// Delete removes the object; the key can then be written again.
pub async fn delete_then_put(backend: &dyn Backend) {
    backend
        .put("locks/l", Bytes::from_static(b"a"))
        .await
        .expect("put");
    backend.delete("locks/l").await.expect("delete");
    assert_eq!(
        backend.stat("locks/l").await.expect_err("gone").kind,
        ErrorKind::NotFound
    );
    assert!(keys(backend, "locks/").await.is_empty());
    backend
        .put("locks/l", Bytes::from_static(b"b"))
        .await
        .expect("put again");
    assert_eq!(&backend.get("locks/l", None).await.expect("get")[..], b"b");
}

/// Malformed keys are refused before touching storage.
pub async fn invalid_keys(backend: &dyn Backend) {
    for key in ["", "/abs", "a//b", "../escape", "a/../b", "a/./b"] {
        let err = backend
            .put(key, Bytes::from_static(b"x"))
            .await
            .expect_err(key);
        assert_eq!(err.kind, ErrorKind::Permanent, "key {key:?}");
    }
}

/// Concurrent puts of distinct keys all land; concurrent puts of one key let exactly one win.
pub async fn concurrent_puts(backend: &dyn Backend) {
    let distinct = (0..32u32).map(|i| backend.put_owned(format!("data/cc/{i:08x}"), i));
    for result in futures::future::join_all(distinct).await {
        result.expect("distinct put");
    }
    assert_eq!(keys(backend, "data/cc/").await.len(), 32);
    let same = (0..8u32).map(|i| backend.put_owned("snapshots/same".to_string(), i));
    let results = futures::future::join_all(same).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one create-only put may win");
    for err in results.into_iter().filter_map(Result::err) {
        assert_eq!(err.kind, ErrorKind::AlreadyExists);
    }
}

trait PutOwned {
    fn put_owned(
        &self,
        key: String,
        seed: u32,
    ) -> futures::future::BoxFuture<'_, crate::Result<()>>;
}

impl PutOwned for dyn Backend + '_ {
    fn put_owned(
        &self,
        key: String,
        seed: u32,
    ) -> futures::future::BoxFuture<'_, crate::Result<()>> {
        Box::pin(async move {
            self.put(&key, Bytes::from(seed.to_le_bytes().to_vec()))
                .await
        })
    }
}

/// Expands to one `#[tokio::test]` per conformance check.
///
/// `$make` is an async block or expression evaluating to a value that derefs
/// to a fresh, empty `dyn Backend` (for example `Box<dyn Backend>`).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make; round_trip, range_edges, bounded_reads,
            create_only, not_found, listing, delete_then_put, invalid_keys, concurrent_puts);
    };
    (@tests $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let backend = $make.await;
                $crate::conformance::$check(&*backend).await;
            }
        )*
    };
}
