//! The backend conformance suite (`lifeboat_backends::conformance_suite!`) on
//! every backend that needs no server: each check gets a fresh, empty store.

use lifeboat_backends::{Backend, LocalBackend};

/// A [`LocalBackend`] that owns its temporary directory, removed on drop.
struct TempLocal {
    backend: LocalBackend,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TempLocal {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &self.backend
    }
}

/// A local backend rooted at an existing, empty directory.
fn local_in_empty_dir() -> TempLocal {
    let dir = tempfile::tempdir().expect("temp dir");
    TempLocal {
        backend: LocalBackend::new("local", dir.path()),
        _dir: dir,
    }
}

/// A local backend whose root does not exist yet, below a directory that
/// does (as `init -d` on a new path).
fn local_in_missing_dir() -> TempLocal {
    let dir = tempfile::tempdir().expect("temp dir");
    TempLocal {
        backend: LocalBackend::new("local", dir.path().join("not-yet-created")),
        _dir: dir,
    }
}

mod local {
    lifeboat_backends::conformance_suite!(async { super::local_in_empty_dir() });
}

mod local_missing_root {
    lifeboat_backends::conformance_suite!(async { super::local_in_missing_dir() });
}

mod memory {
    use lifeboat_backends::{Backend, MemoryBackend};

    lifeboat_backends::conformance_suite!(async {
        Box::new(MemoryBackend::new("memory")) as Box<dyn Backend>
    });
}

/// A local destination whose parent directory is missing (an unmounted
/// disk, a mistyped path) is never created: a put fails with a permanent
/// error naming the parent, and nothing appears on disk.
#[tokio::test]
async fn a_local_root_under_a_missing_parent_is_never_created() {
    use lifeboat_backends::ErrorKind;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("unmounted/lb");
    let backend = LocalBackend::new("local", &root);
    let err = backend
        .put("data/ab/abcd", lifeboat_backends::Bytes::from_static(b"x"))
        .await
        .expect_err("a put under a missing parent must fail");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("unmounted"), "{err}");
    assert!(!dir.path().join("unmounted").exists());
}
