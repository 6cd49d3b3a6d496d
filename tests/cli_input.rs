//! Bad user input end to end through the `lifeboat` binary: each mistake is
//! one line on stderr starting with `error:` that names the problem and what
//! to do, with the documented exit code and never a panic; and odd things in
//! the tree being backed up (special files, names that are not UTF-8, files
//! that grow or vanish during the run) are handled, never a hang.
//!
//! Already covered in cli_errors.rs and not repeated here: unreadable files and
//! directories (exit 3, run as `nobody` when root), exit 11 for a locked
//! repository, the usage errors (exit 2), and that Ctrl-C saves no snapshot and
//! releases the lock.
//!
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_tests::tree;
use lifeboat_tests::{Output, Sandbox, NOBODY, PASSWORD};
use serde_json::Value;

/// Fails the test when the run panicked or was killed by a signal.
#[track_caller]
fn assert_no_panic(out: &Output) {
    let stdout = out.stdout_text();
    for text in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(
            !out.stderr.contains(text) && !stdout.contains(text),
            "the run panicked: {out:?}"
        );
    }
    assert!(out.signal.is_none(), "killed by a signal: {out:?}");
}

/// Asserts exit `code` and exactly one line on stderr, starting with `error:`
/// and containing every one of `needles`; no panic. Returns the line.
#[track_caller]
fn assert_one_line_error(out: &Output, code: i32, needles: &[&str]) -> String {
    assert_no_panic(out);
    out.assert_code(code);
    let lines: Vec<&str> = out.stderr.trim_end().lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "expected one line starting with `error:` on stderr: {out:?}"
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "the error does not mention {needle:?}: {out:?}"
        );
    }
    lines[0].to_string()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `src/` with a few text files.
fn small_tree(sb: &Sandbox) -> PathBuf {
    let src = sb.join("src");
    tree::text_tree(&src);
    src
}

/// Everything in the sandbox except its home (caches) and the repository.
fn outside_state(sb: &Sandbox) -> BTreeMap<PathBuf, String> {
    let mut all = tree::digest_dir(sb.path());
    all.retain(|p, _| !p.starts_with("home") && !p.starts_with("repo"));
    all
}

/// Argument, config, password and snapshot-name mistakes, each one line with
/// its exit code; nothing is written where it should not be.
#[test]
fn bad_arguments_are_one_line_errors() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);

    // A source path that does not exist: named, nothing saved.
    let missing = sb.join("no-such-dir");
    let out = sb.repo_cmd(["backup".as_ref(), missing.as_os_str()]);
    assert_one_line_error(&out, 1, &["cannot back up", &s(&missing)]);
    assert!(sb.snapshots().is_empty(), "a snapshot was saved");

    // A config file with a syntax error, and one with an unknown key: the file,
    // the line and the problem.
    let syntax = sb.join("syntax.toml");
    tree::write(
        &syntax,
        b"# lifeboat\n[destinations.usb\nurl = \"/mnt/usb\"\n",
    );
    let unknown = sb.join("unknown.toml");
    tree::write(
        &unknown,
        b"[destinations.usb]\nurl = \"/mnt/usb\"\nuplods = 4\n",
    );
    for (config, needles) in [
        (&syntax, vec!["line 2", "table header"]),
        (&unknown, vec!["line 3", "unknown field `uplods`"]),
    ] {
        let out = sb
            .command()
            .password(PASSWORD)
            .arg("--config")
            .arg(config)
            .arg("snapshots")
            .run();
        let line = assert_one_line_error(&out, 1, &needles);
        assert!(line.contains(&s(config)), "the file is not named: {line}");
    }

    // A destination URL of an unknown scheme.
    let out = sb.lb(["-d", "foo://x/y", "snapshots"]);
    assert_no_panic(&out);
    assert!(
        out.code == 1 || out.code == 2,
        "unknown scheme: expected exit 1 or 2: {out:?}"
    );
    assert_one_line_error(&out, out.code, &["\"foo\"", "s3://"]);

    // A destination without a repository.
    let empty = sb.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let out = sb
        .command()
        .password(PASSWORD)
        .dest(&empty)
        .arg("snapshots")
        .run();
    assert_one_line_error(&out, 10, &["lifeboat init", &s(&empty)]);

    // No password and no terminal; a wrong password.
    let out = sb.command().dest(&sb.repo()).arg("snapshots").run();
    assert_one_line_error(&out, 1, &["LIFEBOAT_PASSWORD", "--password-file"]);
    let out = sb
        .command()
        .password("not the password")
        .dest(&sb.repo())
        .arg("snapshots")
        .run();
    assert_one_line_error(&out, 12, &["wrong password"]);

    // Snapshot names: unknown, and a prefix two snapshots share.
    sb.backup(&[&src]);
    let id = sb.snapshots()[0]["id"]
        .as_str()
        .expect("snapshot id")
        .to_string();
    let other = if id.starts_with('0') { "1" } else { "0" };
    let unknown_id = format!("{other}{}", &id[1..8]);
    let out = sb.repo_cmd(["ls", &unknown_id]);
    assert_one_line_error(&out, 1, &[&unknown_id, "lifeboat snapshots"]);
    // A second object whose name shares the first 8 hex digits (a copy of the
    // snapshot under another name: only names decide ambiguity).
    let snapshots_dir = sb.repo().join("snapshots");
    let twin = snapshots_dir.join(format!("{}{}", &id[..8], "0".repeat(56)));
    std::fs::copy(snapshots_dir.join(&id), &twin).expect("copy snapshot");
    let out = sb.repo_cmd(["ls", &id[..8]]);
    assert_one_line_error(&out, 1, &[&id[..8], "ambiguous", "more hex digits"]);
    std::fs::remove_file(&twin).expect("remove twin");
    sb.repo_cmd(["ls", &id[..8]]).success();

    // A restore target that is an existing regular file: left as it was.
    let occupied = sb.join("occupied");
    tree::write(&occupied, b"not a directory");
    let before = outside_state(&sb);
    let out = sb.restore_latest(&occupied);
    assert_one_line_error(&out, 1, &[&s(&occupied), "not a directory"]);
    assert_eq!(
        before,
        outside_state(&sb),
        "restore wrote outside its target"
    );
}

/// A restore target the user cannot write (as `nobody` when the tests run as
/// root): one line, exit 1, nothing written.
#[test]
fn unwritable_restore_target_is_one_line_error() {
    let mut sb = Sandbox::new();
    let src = small_tree(&sb);
    let locked = sb.join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    if lifeboat_tests::is_root() {
        tree::chmod(sb.path(), 0o755);
        tree::chown_recursive(sb.path(), NOBODY.0, NOBODY.1);
        sb.run_as(NOBODY.0, NOBODY.1);
    }
    sb.init_repo();
    sb.backup(&[&src]);
    tree::chmod(&locked, 0o555);
    let before = outside_state(&sb);
    let out = sb.restore_latest(&locked);
    assert_one_line_error(&out, 1, &[&s(&locked), "not writable", "Permission denied"]);
    let below = locked.join("restored");
    let out = sb.restore_latest(&below);
    assert_one_line_error(&out, 1, &[&s(&below), "cannot create", "Permission denied"]);
    assert_eq!(before, outside_state(&sb), "restore wrote something");
    tree::chmod(&locked, 0o755);
}

/// A FIFO (no writer), a Unix socket, device nodes (as root) and names that
/// are not UTF-8: backed up as what they are without being opened, and
/// restored byte-exact. Sockets are listed but not recreated by restore (a
/// socket file is only meaningful to the process that bound it).
#[test]
fn special_files_and_binary_names_round_trip() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    let special = src.join("special");
    std::fs::create_dir_all(&special).expect("mkdir");
    tree::mkfifo(&special.join("fifo"));
    let socket = special.join("socket");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind socket"));
    let root = lifeboat_tests::is_root();
    if root {
        for (name, kind, dev) in [
            ("chardev", libc::S_IFCHR, libc::makedev(1, 3)),
            ("blockdev", libc::S_IFBLK, libc::makedev(7, 0)),
        ] {
            let c =
                std::ffi::CString::new(special.join(name).as_os_str().as_bytes()).expect("no NUL");
            // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
            let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o640, dev) };
            assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
        }
    }
    let names = src.join("names");
    let binary = [
        &b"caf\xe9-latin1.txt"[..],
        b"\xff\xfe-not-utf8",
        b"line\nbreak",
        b"\xc3\x28-bad-utf8-sequence",
    ];
    for name in binary {
        tree::write(&names.join(OsStr::from_bytes(name)), name);
    }
    tree::write(
        &names
            .join(OsStr::from_bytes(b"dir-\x80\x81"))
            .join(OsStr::from_bytes(b"\xfe")),
        b"in a non-UTF-8 directory",
    );
    tree::fix_times(&src);

    let out = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .args(["--json".as_ref(), "backup".as_ref(), src.as_os_str()])
        .timeout(Duration::from_secs(60))
        .run();
    assert_no_panic(&out);
    out.success();
    assert_eq!(out.summary()["errors"], 0, "{out:?}");

    let listed: Vec<Value> = sb
        .repo_cmd(["--json", "ls", "latest"])
        .success()
        .json_lines();
    let kind_of = |name: &str| {
        let path = s(&special.join(name));
        listed
            .iter()
            .find(|e| e["path"] == path.as_str())
            .map(|e| e["type"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("{path} not in the snapshot: {listed:?}"))
    };
    assert_eq!(kind_of("fifo"), "fifo");
    assert_eq!(kind_of("socket"), "socket");
    if root {
        assert_eq!(kind_of("chardev"), "chardev");
        assert_eq!(kind_of("blockdev"), "blockdev");
    }
    // Plain `ls` prints the names as raw bytes.
    let raw = sb.repo_cmd(["ls", "latest"]).success().stdout.clone();
    let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
    let latin1 = names.join(OsStr::from_bytes(b"caf\xe9-latin1.txt"));
    assert!(
        lines.contains(&latin1.as_os_str().as_bytes()),
        "ls does not print {latin1:?} byte-exact"
    );

    let target = sb.join("restored");
    let out = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .args([
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .timeout(Duration::from_secs(60))
        .run();
    assert_no_panic(&out);
    out.success();
    let copy = tree::restored(&target, &src);
    let diffs = tree::compare_trees(&src, &copy);
    let socket_only = format!(
        "{:?}: missing from the restored tree",
        Path::new("special/socket")
    );
    assert!(
        diffs.iter().all(|d| *d == socket_only),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );
    if root {
        for name in ["chardev", "blockdev"] {
            let (a, b) = (
                std::fs::symlink_metadata(special.join(name)).expect("lstat"),
                std::fs::symlink_metadata(copy.join("special").join(name)).expect("lstat"),
            );
            assert_eq!(a.rdev(), b.rdev(), "{name}: device number");
        }
    }
    let fifo = std::fs::symlink_metadata(copy.join("special/fifo")).expect("lstat fifo");
    assert!(fifo.file_type().is_fifo());
    for name in binary {
        let path = copy.join("names").join(OsStr::from_bytes(name));
        assert_eq!(std::fs::read(&path).expect("read restored"), name);
    }
}

/// The paths of the files a process has open (`/proc/<pid>/fd`).
fn open_files(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Files deleted after the walker listed their directory but before they were
/// opened: reported (each by name), skipped, exit 3; the rest is saved.
#[test]
fn files_vanishing_during_backup_are_reported_and_skipped() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // Two large files first in name order keep both file workers busy while
    // the walker, having listed the directory, waits to hand over the rest.
    let big: Vec<PathBuf> = (0..2).map(|i| src.join(format!("a{i}.big"))).collect();
    for (i, path) in big.iter().enumerate() {
        tree::write_generated(path, 24 << 20, 100 + i as u64, false);
    }
    let doomed: Vec<PathBuf> = (0..150).map(|i| src.join(format!("v{i:03}"))).collect();
    for path in &doomed {
        tree::write(path, b"here when listed, gone when read");
    }
    let mut running = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .args([
            "--json".as_ref(),
            "backup".as_ref(),
            "--threads".as_ref(),
            "2".as_ref(),
            src.as_os_str(),
        ])
        .timeout(Duration::from_secs(120))
        .spawn();
    // A worker reading a big file proves the directory was listed.
    let started = Instant::now();
    while !open_files(running.pid()).iter().any(|p| big.contains(p)) {
        assert!(
            running.is_running(),
            "test setup: backup ended before reading"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no read in 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    for path in &doomed {
        std::fs::remove_file(path).expect("remove");
    }
    assert!(
        running.is_running(),
        "test setup: the backup finished before the files vanished"
    );
    let out = running.wait();
    assert_no_panic(&out);
    out.assert_code(3);
    let reported: Vec<PathBuf> = out
        .json_lines()
        .iter()
        .filter(|l| l["message_type"] == "error")
        .filter_map(|l| l["item"].as_str().map(PathBuf::from))
        .collect();
    for path in &doomed {
        assert!(reported.contains(path), "{path:?} not reported: {out:?}");
    }
    assert_eq!(out.summary()["errors"], doomed.len(), "{out:?}");
    let listed = sb.ls_paths("latest");
    for path in &big {
        assert!(listed.contains(&s(path)), "{path:?} not saved");
    }
    assert!(
        !listed.iter().any(|p| p.contains("/v")),
        "a vanished file is in the snapshot"
    );
}

/// A file appended to during the backup: the run ends, and the snapshot holds
/// a consistent prefix of it (at least what was there before the run).
#[test]
fn file_growing_during_backup_is_saved_as_a_prefix() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let log = src.join("growing.log");
    let initial = 24u64 << 20;
    tree::write_generated(&log, initial, 7, false);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open for append");
            let mut rng = tree::XorShift::new(9);
            let mut block = vec![0u8; 16 << 10];
            while !stop.load(Ordering::Relaxed) {
                rng.fill(&mut block);
                file.write_all(&block).expect("append");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let out = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .args(["--json".as_ref(), "backup".as_ref(), src.as_os_str()])
        .timeout(Duration::from_secs(120))
        .run();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    assert_no_panic(&out);
    assert!(
        out.code == 0 || out.code == 3,
        "expected exit 0 or 3: {out:?}"
    );
    if out.code == 0 {
        let target = sb.join("restored");
        sb.restore_latest(&target).success();
        let copy = std::fs::read(tree::restored(&target, &log)).expect("read restored");
        let source = std::fs::read(&log).expect("read source");
        assert!(
            copy.len() as u64 >= initial && copy.len() <= source.len(),
            "restored {} bytes of a file that had {initial} before and {} after",
            copy.len(),
            source.len()
        );
        assert!(
            source[..copy.len()] == copy[..],
            "the restored file is not a prefix of the source"
        );
    } else {
        assert!(out.stdout_text().contains(&s(&log)), "{out:?}");
    }
}

/// Bytes in the repository's `data/` while a backup may be writing it (files
/// appear and are renamed as the walk goes, so errors are skipped).
fn packed_bytes(repo: &Path) -> u64 {
    walkdir::WalkDir::new(repo.join("data"))
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

/// Ctrl-C in the middle of a backup: exit 130, one line, no snapshot; the next
/// backup reuses the packs the interrupted one uploaded.
#[test]
fn interrupted_backup_is_resumed_by_the_next() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let size: u64 = 96 << 20;
    tree::write_generated(&src.join("big.bin"), size, 21, false);
    let running = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .arg("backup")
        .arg(&src)
        .timeout(Duration::from_secs(120))
        .spawn();
    let packed = || packed_bytes(&sb.repo());
    let mut running = running;
    let started = Instant::now();
    while packed() < 32 << 20 {
        assert!(
            running.is_running(),
            "test setup: the backup ended before it could be interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no packs in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    running.signal(libc::SIGINT);
    let out = running.wait();
    assert_one_line_error(&out, 130, &["interrupted", "run the command again"]);
    assert!(
        sb.snapshots().is_empty(),
        "an interrupted backup saved a snapshot"
    );
    let uploaded = packed();

    let summary = sb.backup(&[&src]);
    let added = summary["data_added"].as_u64().expect("data_added");
    assert!(
        added <= size - uploaded / 2,
        "the second backup added {added} of {size} bytes although {uploaded} were uploaded \
         before the interruption: {summary}"
    );
    let total = packed();
    assert!(
        total < size + size / 4,
        "the repository holds {total} bytes of packs for {size} bytes of data: {summary}"
    );
    let target = sb.join("restored");
    sb.restore_latest(&target).success();
    assert!(tree::same_content(
        &src.join("big.bin"),
        &tree::restored(&target, &src.join("big.bin"))
    ));
}
