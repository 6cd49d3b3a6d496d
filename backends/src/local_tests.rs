//! The local destination on a hostile disk: symlinks and special files
//! planted under the repository are never followed, read or listed.

use std::os::unix::fs::symlink;

use super::*;

const SECRET: &[u8] = b"the user's private key, outside the repository";

/// A repository directory, and a secret file beside it (not in it).
fn setup() -> (tempfile::TempDir, LocalBackend, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let backend = LocalBackend::new("usb", dir.path().join("repo"));
    (dir, backend, secret)
}

async fn listed(backend: &LocalBackend, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = backend.list(prefix).map(|m| m.unwrap().key).collect().await;
    keys.sort();
    keys
}

#[tokio::test]
async fn a_symlinked_object_is_never_read_listed_or_written_through() {
    let (_dir, backend, secret) = setup();
    backend
        .put("data/ab/real", Bytes::from_static(b"object"))
        .await
        .unwrap();
    symlink(&secret, backend.root().join("data/ab/planted")).unwrap();

    assert_eq!(listed(&backend, "data/").await, vec!["data/ab/real"]);
    for err in [
        backend.get("data/ab/planted", None).await.unwrap_err(),
        backend.stat("data/ab/planted").await.unwrap_err(),
    ] {
        assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    }
    // Writing the object replaces the link itself; the target is untouched.
    backend
        .put("data/ab/planted", Bytes::from_static(b"healed"))
        .await
        .unwrap();
    assert_eq!(
        &backend.get("data/ab/planted", None).await.unwrap()[..],
        b"healed"
    );
    assert_eq!(std::fs::read(&secret).unwrap(), SECRET);
    // Deleting removes a link, never what it points to.
    symlink(&secret, backend.root().join("data/ab/again")).unwrap();
    backend.delete("data/ab/again").await.unwrap();
    assert_eq!(std::fs::read(&secret).unwrap(), SECRET);
}

#[tokio::test]
async fn a_symlinked_directory_is_never_entered() {
    let (dir, backend, _secret) = setup();
    backend
        .put("config", Bytes::from_static(b"c"))
        .await
        .unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("host-file"), SECRET).unwrap();
    symlink(&outside, backend.root().join("index")).unwrap();

    assert!(listed(&backend, "index/").await.is_empty());
    assert!(listed(&backend, "").await.iter().all(|k| k == "config"));
    let err = backend.get("index/host-file", None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    // A write below it fails instead of landing outside the repository.
    let err = backend
        .put("index/new", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(!outside.join("new").exists());
}

#[tokio::test]
async fn a_fifo_under_an_object_name_reads_as_missing_without_hanging() {
    let (_dir, backend, _secret) = setup();
    backend
        .put("keys/k", Bytes::from_static(b"key"))
        .await
        .unwrap();
    let fifo = backend.root().join("keys/fifo");
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let err = backend.get("keys/fifo", None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(listed(&backend, "keys/").await, vec!["keys/k"]);
}

#[tokio::test]
async fn a_huge_sparse_object_is_refused_before_any_allocation() {
    let (_dir, backend, _secret) = setup();
    backend
        .put("snapshots/real", Bytes::from_static(b"snapshot"))
        .await
        .unwrap();
    // 64 GiB that take no disk: reading it whole would need 64 GiB of memory.
    let planted = backend.root().join("snapshots/huge");
    std::fs::File::create(&planted)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let started = std::time::Instant::now();
    let err = backend
        .get_bounded("snapshots/huge", 1 << 20)
        .await
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    let size = err.too_large_info().and_then(|t| t.size);
    assert_eq!(size, Some(64 << 30), "{err}");
    let message = err.to_string();
    for part in [
        "usb",
        "snapshots/huge",
        "68719476736 bytes",
        "1048576 bytes",
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    // Within its limit the object reads whole, and its neighbours still do.
    assert_eq!(
        &backend.get_bounded("snapshots/real", 8).await.unwrap()[..],
        b"snapshot"
    );
    assert!(backend
        .get_bounded("snapshots/real", 7)
        .await
        .unwrap_err()
        .is_too_large());
    // A symlink to the huge file is not followed, so not read either.
    symlink(&planted, backend.root().join("snapshots/link")).unwrap();
    let err = backend
        .get_bounded("snapshots/link", 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}
