//! `lifeboat mount` through the real kernel: FUSE must be there (these
//! tests fail, never skip, without /dev/fuse and fusermount3; the test
//! command installs fuse3). Each test mounts in its own sandbox and
//! unmounts, even when it fails.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lifeboat_tests::tree::{self, TreeOptions};
use lifeboat_tests::{Lb, Output, Running, Sandbox};

/// How long a mount may take to appear (a debug build opening a
/// repository).
const MOUNT_WAIT: Duration = Duration::from_secs(120);

/// True when a file system is mounted exactly at `at`.
fn is_mounted(at: &Path) -> bool {
    let at = at.canonicalize().unwrap_or_else(|_| at.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == at)
}

/// A running `lifeboat mount`; dropped, it is killed and its mount point
/// detached, so a failing test leaves nothing mounted.
struct Mount {
    run: Option<Running>,
    at: PathBuf,
}

impl Mount {
    /// Runs `cmd mount <at> <extra…>` and waits until the file system is there.
    fn start(cmd: Lb, at: &Path, extra: &[&str]) -> Mount {
        let mut run = cmd
            .arg("mount")
            .arg(at)
            .args(extra)
            .timeout(Duration::from_secs(600))
            .spawn();
        let deadline = Instant::now() + MOUNT_WAIT;
        while !is_mounted(at) {
            if !run.is_running() {
                panic!("mount ended before mounting: {:?}", run.wait());
            }
            assert!(
                Instant::now() < deadline,
                "no mount at {at:?} after {MOUNT_WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mount {
            run: Some(run),
            at: at.to_path_buf(),
        }
    }

    /// Sends `signal` and collects the process.
    fn stop(mut self, signal: i32) -> Output {
        let run = self.run.take().expect("running");
        run.signal(signal);
        run.wait()
    }

    /// Waits for the process to end by itself.
    fn wait(mut self) -> Output {
        self.run.take().expect("running").wait()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            run.signal(libc::SIGKILL);
            let _ = run.wait();
        }
        if is_mounted(&self.at) {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

/// `dir/<source path>` where `dir` shows a snapshot's root.
fn inside(dir: &Path, source: &Path) -> PathBuf {
    dir.join(source.strip_prefix("/").expect("absolute source"))
}

/// A new empty mount point in the sandbox.
fn mount_point(sb: &Sandbox, name: &str) -> PathBuf {
    let at = sb.join(name);
    std::fs::create_dir(&at).expect("mkdir mount point");
    at
}

/// The snapshot directories of `dir` (time names), sorted.
fn time_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "latest")
        .collect();
    names.sort();
    names
}

#[test]
fn fuse_is_available_here() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the mount tests need FUSE (modprobe fuse; in a container, pass \
         the device in)"
    );
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .any(|d| d.join("fusermount3").is_file());
    assert!(
        found,
        "fusermount3 is missing: install fuse3 (scripts/test.sh does)"
    );
}

#[test]
fn a_mounted_snapshot_matches_its_source() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    let options = TreeOptions {
        big_file: Some(6 << 20),
        sparse_size: 50 << 20,
        ..TreeOptions::default()
    };
    tree::build_tree(&src, &options);
    // Several chunks of incompressible bytes.
    tree::write(&src.join("random.bin"), &tree::random_bytes(5 << 20, 9));
    let device = src.join("special/null");
    if lifeboat_tests::is_root() {
        let path = std::ffi::CString::new(device.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path; mknod touches no memory of ours.
        let rc = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) };
        assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    }
    sb.init_repo();
    sb.backup(&[&src]);
    let at = mount_point(&sb, "mnt");
    let mount = Mount::start(
        sb.command()
            .password(lifeboat_tests::PASSWORD)
            .dest(&sb.repo()),
        &at,
        &[],
    );
    let copy = inside(&at.join("latest"), &src);
    tree::assert_same_tree(&src, &copy);
    if lifeboat_tests::is_root() {
        let meta = std::fs::symlink_metadata(inside(&at.join("latest"), &device)).unwrap();
        assert_eq!(
            meta.rdev(),
            libc::makedev(1, 3),
            "the device keeps its number"
        );
    }
    // Reads at odd offsets and sizes across blob boundaries.
    let random = std::fs::read(src.join("random.bin")).unwrap();
    let file = std::fs::File::open(copy.join("random.bin")).unwrap();
    for (offset, len) in [
        (0u64, 1usize),
        (1 << 20, 3 << 20),
        (5_000_000, 300_000),
        (5 << 20, 10),
    ] {
        let mut buf = vec![0u8; len];
        let got = std::os::unix::fs::FileExt::read_at(&file, &mut buf, offset).unwrap();
        let want =
            &random[(offset as usize).min(random.len())..(offset as usize + len).min(random.len())];
        assert!(&buf[..got] == want, "bytes at {offset}+{len}");
    }
    // Nothing can be written.
    let err = std::fs::write(copy.join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    mount.stop(libc::SIGINT).success();
}

#[test]
fn files_read_at_once_are_both_right() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    let (a, b) = (
        tree::random_bytes(12 << 20, 1),
        tree::random_bytes(12 << 20, 2),
    );
    tree::write(&src.join("one/a.bin"), &a);
    tree::write(&src.join("two/b.bin"), &b);
    tree::text_tree(&src.join("text"));
    sb.init_repo();
    sb.backup(&[&src]);
    let at = mount_point(&sb, "mnt");
    let mount = Mount::start(
        sb.command()
            .password(lifeboat_tests::PASSWORD)
            .dest(&sb.repo()),
        &at,
        &[],
    );
    let root = inside(&at.join("latest"), &src);
    let read = |rel: &'static str, want: Vec<u8>, root: PathBuf| {
        std::thread::spawn(move || {
            for _ in 0..2 {
                let got = std::fs::read(root.join(rel)).expect("read");
                assert!(got == want, "{rel}: wrong bytes");
            }
        })
    };
    let ta = read("one/a.bin", a, root.clone());
    let tb = read("two/b.bin", b, root.clone());
    // And a walk of the rest meanwhile.
    let walker = {
        let (root, text) = (root.clone(), src.join("text"));
        std::thread::spawn(move || {
            assert_eq!(
                tree::digest_dir(&text),
                tree::digest_dir(&root.join("text"))
            )
        })
    };
    for t in [ta, tb, walker] {
        t.join().expect("a reader failed");
    }
    mount.stop(libc::SIGTERM).success();
}

#[test]
fn the_layout_and_new_snapshots_while_mounted() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    tree::write(&src.join("f.txt"), b"first");
    sb.init_repo();
    sb.repo_cmd([
        "backup".as_ref(),
        "--tag".as_ref(),
        "t1".as_ref(),
        src.as_os_str(),
    ])
    .success();
    let first = sb.snapshots().remove(0);
    let host = first["hostname"].as_str().expect("hostname").to_string();
    let short = first["short_id"].as_str().expect("short id").to_string();
    let at = mount_point(&sb, "mnt");
    let mount = Mount::start(
        sb.command()
            .password(lifeboat_tests::PASSWORD)
            .dest(&sb.repo()),
        &at,
        &["--refresh", "1s"],
    );
    let mut top: Vec<String> = std::fs::read_dir(&at)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["hosts", "ids", "latest", "snapshots", "tags"]);
    let times = time_entries(&at.join("snapshots"));
    assert_eq!(times.len(), 1, "{times:?}");
    let t1 = &times[0];
    assert_eq!(
        std::fs::read_link(at.join("latest")).unwrap(),
        Path::new("snapshots").join(t1)
    );
    assert_eq!(
        std::fs::read_link(at.join("snapshots/latest")).unwrap(),
        Path::new(t1)
    );
    for dir in [
        at.join("snapshots").join(t1),
        at.join("hosts").join(&host).join(t1),
        at.join("hosts").join(&host).join("latest"),
        at.join("tags/t1").join(t1),
        at.join("ids").join(&short),
    ] {
        let file = inside(&dir, &src).join("f.txt");
        assert_eq!(
            std::fs::read(&file).unwrap_or_else(|e| panic!("{file:?}: {e}")),
            b"first"
        );
    }

    // A backup while mounted (both hold shared locks) shows up.
    tree::write(&src.join("f.txt"), b"second");
    sb.repo_cmd([
        "backup".as_ref(),
        "--tag".as_ref(),
        "t2".as_ref(),
        src.as_os_str(),
    ])
    .success();
    let deadline = Instant::now() + Duration::from_secs(30);
    while time_entries(&at.join("snapshots")).len() < 2 {
        assert!(Instant::now() < deadline, "the new snapshot did not appear");
        std::thread::sleep(Duration::from_millis(200));
    }
    let times = time_entries(&at.join("snapshots"));
    let t2 = times.last().expect("two snapshots");
    // `latest` moves on within its one-second lifetime in the kernel.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(at.join("latest")).unwrap() != Path::new("snapshots").join(t2) {
        assert!(
            Instant::now() < deadline,
            "latest still names the old snapshot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        std::fs::read(inside(&at.join("latest"), &src).join("f.txt")).unwrap(),
        b"second"
    );
    assert_eq!(time_entries(&at.join("tags/t2")), std::slice::from_ref(t2));
    assert_eq!(time_entries(&at.join("hosts").join(&host)).len(), 2);
    assert_eq!(
        std::fs::read(inside(&at.join("tags/t1/latest"), &src).join("f.txt")).unwrap(),
        b"first",
        "the older snapshot is still there"
    );
    mount.stop(libc::SIGINT).success();
}

#[test]
fn a_destination_failing_mid_read_falls_over() {
    let sb = Sandbox::new();
    let (d1, d2) = (sb.join("d1"), sb.join("d2"));
    let src = sb.join("src");
    let (a, b) = (
        tree::random_bytes(3 << 20, 11),
        tree::random_bytes(3 << 20, 12),
    );
    tree::write(&src.join("one/a.bin"), &a);
    tree::write(&src.join("two/b.bin"), &b);
    sb.init_on(&[&d1, &d2]);
    sb.on(&[&d1, &d2])
        .args(["backup".as_ref(), src.as_os_str()])
        .run()
        .success();
    let at = mount_point(&sb, "mnt");
    let mount = Mount::start(sb.on(&[&d1, &d2]), &at, &[]);
    let root = inside(&at.join("latest"), &src);
    // `two/` first: reading ahead runs forward in the snapshot's order, so
    // `one/a.bin` is not read before it is asked for.
    assert!(std::fs::read(root.join("two/b.bin")).unwrap() == b);
    // Every pack on the first destination turns to garbage while mounted.
    let mut damaged = 0;
    for entry in walkdir::WalkDir::new(d1.join("data")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let len = entry.metadata().unwrap().len() as usize;
            std::fs::write(entry.path(), vec![0x5a; len]).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "no pack on the first destination");
    assert!(
        std::fs::read(root.join("one/a.bin")).unwrap() == a,
        "a file not read before the damage reads right from the second destination"
    );
    let out = mount.stop(libc::SIGINT);
    // The damaged copies were read, found bad and named.
    out.success().stderr_has("d1").stderr_has("pack");
}

#[test]
fn ctrl_c_sigterm_and_fusermount_end_it_cleanly() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    tree::write(&src.join("f.txt"), b"x");
    sb.init_repo();
    sb.backup(&[&src]);
    let at = mount_point(&sb, "mnt");
    let cmd = || {
        sb.command()
            .password(lifeboat_tests::PASSWORD)
            .dest(&sb.repo())
    };
    let unmounted = |at: &Path| {
        assert!(!is_mounted(at), "still mounted");
        assert!(at.is_dir(), "the mount point is a directory again");
        assert_eq!(std::fs::read_dir(at).unwrap().count(), 0, "and empty");
    };

    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mount = Mount::start(cmd(), &at, &[]);
        let out = mount.stop(signal);
        out.success().stderr_has("unmounted");
        unmounted(&at);
    }

    let mount = Mount::start(cmd(), &at, &[]);
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&at)
        .status()
        .expect("run fusermount3");
    assert!(status.success(), "fusermount3 -u: {status}");
    mount.wait().success();
    unmounted(&at);
}

#[test]
fn a_mount_point_that_is_not_an_empty_directory_is_refused() {
    let sb = Sandbox::new();
    sb.init_repo();
    let cmd = || {
        sb.command()
            .password(lifeboat_tests::PASSWORD)
            .dest(&sb.repo())
    };
    let one_line = |out: &Output| {
        assert_ne!(out.code, 0, "{out:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out:?}");
    };
    let out = cmd().arg("mount").arg(sb.join("missing")).run();
    one_line(&out);
    out.stderr_has("does not exist");
    let full = sb.join("full");
    tree::write(&full.join("f"), b"x");
    let out = cmd().arg("mount").arg(&full).run();
    one_line(&out);
    out.stderr_has("not empty");
    let file = sb.join("file");
    tree::write(&file, b"x");
    let out = cmd().args([OsStr::new("mount"), file.as_os_str()]).run();
    one_line(&out);
    out.stderr_has("not a directory");
}
