//! A full disk: a backup into a destination that runs out of space fails with a
//! clear error, leaves no snapshot and no temporary files, and what was
//! written stays consistent. Uses a real 2 MiB tmpfs (the tests run as root in
//! CI; elsewhere mounting fails loudly rather than skipping).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use lifeboat_backends::LocalBackend;
use lifeboat_engine::check::{check, CheckOptions};
use lifeboat_engine::DestinationSet;

mod common;
use common::*;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tiny_tmpfs(dir: &Path) -> Mount {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "mounting a 2 MiB tmpfs failed: this test needs root (as in CI)"
    );
    Mount(dir.to_path_buf())
}

fn files_named(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(entry.path());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_cleanly() {
    let mount_point = tempfile::tempdir().unwrap();
    let _mount = mount_tiny_tmpfs(mount_point.path());
    let repo_dir = mount_point.path().join("repo");
    let backend = Arc::new(LocalBackend::new("tiny", &repo_dir));
    let dests = DestinationSet::new(vec![backend]).unwrap();
    let repo = init_repo(dests).await;

    // 6 MB that does not compress cannot fit in 2 MiB.
    let src = tempfile::tempdir().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..6_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(src.path().join("big.bin"), data).unwrap();

    let err = run_backup(&repo, src.path()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no space left on device"),
        "the error says the disk is full: {text}"
    );
    assert!(
        text.contains("tiny"),
        "the error names the destination: {text}"
    );
    assert!(
        !repo_dir.join("snapshots").exists()
            || files_named(&repo_dir.join("snapshots"), "").is_empty()
    );
    assert!(
        files_named(&repo_dir, ".tmp-").is_empty(),
        "no temporary files left behind"
    );
    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
