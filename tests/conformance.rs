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

/// A local backend whose root does not exist yet (as `-d` on a new path).
fn local_in_missing_dir() -> TempLocal {
    let dir = tempfile::tempdir().expect("temp dir");
    TempLocal {
        backend: LocalBackend::new("local", dir.path().join("not/yet/created")),
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
