//! Issue 12, item 6: a restore stays inside its target, whatever the target
//! holds beforehand. Symlinks to directories and files outside, hard links
//! to outside files, dangling links, files and directories are planted where
//! the snapshot has directories, files and links; the restore must never
//! create, change or chmod anything outside the target, and every file it
//! restores must be a regular file with the snapshot's bytes.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_backends::MemoryBackend;
use lifeboat_engine::restore::{restore, RestoreOptions};
use lifeboat_engine::{DestinationSet, Snapshot};
use proptest::prelude::*;

mod common;
use common::*;

/// The source: nested directories, files, an empty file, a symlink and a
/// pair of hard links.
fn build_source(src: &Path) {
    std::fs::create_dir_all(src.join("d1/d2")).unwrap();
    std::fs::write(src.join("f0"), b"top file").unwrap();
    std::fs::write(src.join("e0"), b"").unwrap();
    std::fs::write(src.join("d1/f1"), vec![1u8; 70_000]).unwrap();
    std::fs::write(src.join("d1/d2/f2"), b"deep file").unwrap();
    std::fs::set_permissions(src.join("d1/d2/f2"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(src.join("d1/h1"), b"linked twice").unwrap();
    std::fs::hard_link(src.join("d1/h1"), src.join("d1/h2")).unwrap();
    std::os::unix::fs::symlink("f0", src.join("s0")).unwrap();
}

/// Everything under `dir`: kind, mode, size, mtime, content or link target.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link -> {:?}", std::fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o} {}", meta.mode(), meta.mtime())
            } else {
                let bytes = std::fs::read(&path).unwrap();
                // Not the link count: unlinking a hard link planted in the
                // target lowers it, and that is the target's own entry.
                format!(
                    "file {:o} {} {}",
                    meta.mode(),
                    meta.mtime(),
                    blake3::hash(&bytes).to_hex()
                )
            };
            out.insert(path, what);
        }
    }
    out
}

/// What is planted at one path of the target before the restore.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trap {
    Nothing,
    LinkToOutsideDir,
    LinkToOutsideFile,
    DanglingLinkOutside,
    File,
    Dir,
    HardLinkToOutsideFile,
}

fn trap() -> impl Strategy<Value = Trap> {
    prop_oneof![
        3 => Just(Trap::Nothing),
        2 => Just(Trap::LinkToOutsideDir),
        2 => Just(Trap::LinkToOutsideFile),
        1 => Just(Trap::DanglingLinkOutside),
        1 => Just(Trap::File),
        1 => Just(Trap::Dir),
        2 => Just(Trap::HardLinkToOutsideFile),
    ]
}

fn plant(at: &Path, trap: Trap, outside: &Path) {
    match trap {
        Trap::Nothing => {}
        Trap::LinkToOutsideDir => std::os::unix::fs::symlink(outside.join("dir"), at).unwrap(),
        Trap::LinkToOutsideFile => std::os::unix::fs::symlink(outside.join("victim"), at).unwrap(),
        Trap::DanglingLinkOutside => {
            std::os::unix::fs::symlink(outside.join("would-be-created"), at).unwrap()
        }
        Trap::File => std::fs::write(at, b"junk in the target").unwrap(),
        Trap::Dir => {
            std::fs::create_dir(at).unwrap();
            std::fs::write(at.join("junk"), b"junk").unwrap();
        }
        Trap::HardLinkToOutsideFile => std::fs::hard_link(outside.join("linked"), at).unwrap(),
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    repo: lifeboat_engine::Repository,
    snapshot: Snapshot,
    _src_dir: tempfile::TempDir,
    src: PathBuf,
    /// Paths in the target, relative to it, parents first: the source's
    /// ancestors, then its entries.
    paths: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    build_source(&src);
    let dest = MemoryBackend::new("mem");
    let (repo, snapshot) = rt.block_on(async {
        let repo = init_repo(DestinationSet::new(vec![Arc::new(dest)]).unwrap()).await;
        let outcome = run_backup(&repo, &src).await.unwrap();
        (repo, outcome.snapshot)
    });
    let rel_src = src.strip_prefix("/").unwrap().to_path_buf();
    let mut paths: Vec<PathBuf> = rel_src.ancestors().map(Path::to_path_buf).collect();
    paths.retain(|p| !p.as_os_str().is_empty());
    paths.reverse();
    for rel in [
        "f0", "e0", "s0", "d1", "d1/f1", "d1/h1", "d1/h2", "d1/d2", "d1/d2/f2",
    ] {
        paths.push(rel_src.join(rel));
    }
    Fixture {
        rt,
        repo,
        snapshot,
        _src_dir: src_dir,
        src,
        paths,
    }
}

fn check_case(fx: &Fixture, traps: &[Trap]) -> Result<(), TestCaseError> {
    let sandbox = tempfile::tempdir().unwrap();
    let outside = sandbox.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("dir/keep"), b"outside file in a directory").unwrap();
    std::fs::write(outside.join("victim"), b"outside victim").unwrap();
    std::fs::write(outside.join("linked"), b"outside, hard-linked in").unwrap();
    let target = sandbox.path().join("target");
    std::fs::create_dir(&target).unwrap();

    let mut planted: Vec<(PathBuf, Trap)> = Vec::new();
    for (rel, &t) in fx.paths.iter().zip(traps) {
        // Only below real directories: a trap under a planted link would be
        // planted outside by this very test.
        let under_a_trap = planted
            .iter()
            .any(|(p, pt)| rel.starts_with(p) && rel != p && *pt != Trap::Dir);
        if under_a_trap {
            continue;
        }
        let at = target.join(rel);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        if t != Trap::Nothing {
            plant(&at, t, &outside);
            planted.push((rel.clone(), t));
        }
    }
    let before = fingerprint(&outside);
    let options = RestoreOptions {
        target: target.clone(),
        verify: true,
        ..Default::default()
    };
    let outcome = fx.rt.block_on(restore(
        &fx.repo,
        &fx.snapshot,
        &options,
        Default::default(),
        Default::default(),
    ));
    let outcome = outcome.map_err(|e| TestCaseError::fail(format!("restore failed: {e}")))?;
    prop_assert_eq!(
        fingerprint(&outside),
        before,
        "outside changed; traps {:?}",
        planted
    );

    // Every file the restore reports as restored is a regular file with the
    // snapshot's bytes; only a planted directory may stand in its way.
    let rel_src = fx.src.strip_prefix("/").unwrap();
    for rel in ["f0", "e0", "d1/f1", "d1/h1", "d1/h2", "d1/d2/f2"] {
        let blocked = planted
            .iter()
            .any(|(p, t)| *t == Trap::Dir && (rel_src.join(rel) == *p));
        let restored = target.join(rel_src).join(rel);
        let failed = outcome
            .errors
            .iter()
            .any(|(p, _)| p.starts_with(&restored) || restored.starts_with(p));
        if blocked || failed {
            prop_assert!(
                blocked,
                "{rel} failed without a directory in its way: {:?}",
                outcome.errors
            );
            continue;
        }
        let meta = std::fs::symlink_metadata(&restored).unwrap();
        prop_assert!(meta.is_file(), "{rel} is not a regular file");
        prop_assert_eq!(
            std::fs::read(&restored).unwrap(),
            std::fs::read(fx.src.join(rel)).unwrap(),
            "{} differs; traps {:?}",
            rel,
            planted
        );
    }
    let f2 = target.join(rel_src).join("d1/d2/f2");
    if f2.is_file() {
        prop_assert_eq!(std::fs::metadata(&f2).unwrap().mode() & 0o7777, 0o640);
    }
    Ok(())
}

#[test]
fn restore_never_touches_anything_outside_its_target() {
    let fx = fixture();
    let n = fx.paths.len();
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(traps in proptest::collection::vec(trap(), n))| {
        check_case(&fx, &traps)?;
    });
}

/// The hand-written worst case: every directory of the path a symlink to an
/// outside directory, every file a link to an outside file.
#[test]
fn links_everywhere_in_the_target_are_replaced_not_followed() {
    let fx = fixture();
    let traps: Vec<Trap> = fx
        .paths
        .iter()
        .map(|p| {
            if p.extension().is_none()
                && p.file_name()
                    .is_some_and(|n| n.len() == 2 && n.to_string_lossy().starts_with('d'))
            {
                Trap::LinkToOutsideDir
            } else {
                Trap::LinkToOutsideFile
            }
        })
        .collect();
    check_case(&fx, &traps).unwrap();
    // Links at the top of the path only: everything below is restored.
    let mut top = vec![Trap::Nothing; fx.paths.len()];
    top[0] = Trap::LinkToOutsideDir;
    check_case(&fx, &top).unwrap();
}
