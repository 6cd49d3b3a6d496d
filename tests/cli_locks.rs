//! End to end through the `lifeboat` binary: stale locks are ignored and
//! removed, live locks block exclusive commands and survive `unlock` (but not
//! `unlock --force`), and `--retry-lock` waits for a lock to go away. The
//! repository is mirrored to two local destinations; the test process plants
//! and holds locks through the engine.
//!
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_engine::SealedFile;
use lifeboat_tests::FAST_INIT;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_backends::{Backend, Bytes, LocalBackend};
use lifeboat_engine::format::lock::{LockFile, STALE_AFTER_SECS};
use lifeboat_engine::{DestinationSet, ObjectKind, Repository};
use lifeboat_tests::tree;
use lifeboat_tests::{Lb, Output, Sandbox, PASSWORD};
use serde_json::Value;

/// A repository on two local destinations, with one snapshot, also opened
/// through the engine by the test process.
struct Mirror {
    sb: Sandbox,
    a: PathBuf,
    b: PathBuf,
    src: PathBuf,
    rt: tokio::runtime::Runtime,
    repo: Repository,
}

impl Mirror {
    fn new() -> Self {
        let sb = Sandbox::new();
        let (a, b) = (sb.join("dest-a"), sb.join("dest-b"));
        let cmd = || sb.command().password(PASSWORD).dest(&a).dest(&b);
        cmd().args(FAST_INIT).run().success();
        let src = sb.join("src");
        tree::write(&src.join("a.txt"), b"alpha\n");
        tree::write(&src.join("sub/b.txt"), b"beta\n");
        cmd().arg("backup").arg(&src).run().success();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let backends: Vec<Arc<dyn Backend>> = vec![
            Arc::new(LocalBackend::new("a", &a)),
            Arc::new(LocalBackend::new("b", &b)),
        ];
        let dests = DestinationSet::new(backends).expect("destination set");
        let repo = rt
            .block_on(Repository::open(dests, PASSWORD.as_bytes()))
            .expect("open the repository");
        Mirror {
            sb,
            a,
            b,
            src,
            rt,
            repo,
        }
    }

    fn cmd(&self) -> Lb {
        self.sb
            .command()
            .password(PASSWORD)
            .dest(&self.a)
            .dest(&self.b)
    }

    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd().args(args).run()
    }

    fn backup(&self) -> Output {
        self.cmd().arg("backup").arg(&self.src).run()
    }

    /// Writes `lock` (sealed, under a fresh random name) to both
    /// destinations, as a lifeboat process would; returns its name.
    fn plant(&self, lock: &LockFile) -> String {
        self.plant_bytes(lock.seal(self.repo.keys()))
    }

    fn plant_bytes(&self, bytes: Vec<u8>) -> String {
        let name: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        self.rt
            .block_on(
                self.repo
                    .destinations()
                    .put_new(&ObjectKind::Lock.key(&name), Bytes::from(bytes)),
            )
            .expect("plant a lock");
        name
    }

    /// The lock names on each destination (sorted), asserting both agree.
    fn locks(&self) -> Vec<String> {
        let a = lock_names(&self.a);
        assert_eq!(
            a,
            lock_names(&self.b),
            "the destinations hold different locks"
        );
        a
    }
}

fn lock_names(dest: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(dest.join("locks")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| !n.starts_with(".tmp-"))
        .collect();
    names.sort();
    names
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait for true");
    pid
}

/// An exclusive lock of this host whose process is gone.
fn dead_local_lock() -> LockFile {
    let mut lock = LockFile::current(true);
    lock.pid = dead_pid();
    lock
}

/// An exclusive lock of another host, not refreshed for an hour.
fn old_remote_lock() -> LockFile {
    let mut lock = LockFile::current(true);
    lock.hostname = "far-away-host".into();
    lock.pid = 4242;
    lock.time -= STALE_AFTER_SECS * 2;
    lock
}

fn names(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .expect("an array of locks")
        .iter()
        .map(|l| l["name"].as_str().expect("lock name").to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn stale_locks_are_ignored_by_backup_and_removed_by_unlock() {
    let m = Mirror::new();
    let dead = dead_local_lock();
    m.plant(&dead);
    m.plant(&old_remote_lock());
    assert_eq!(m.locks().len(), 2);

    let out = m.run(["unlock"]);
    let text = out.success().stdout_text();
    assert_eq!(text.matches("removed").count(), 2, "{text}");
    assert!(text.contains(&format!("pid {}", dead.pid)), "{text}");
    assert!(text.contains("far-away-host"), "{text}");
    assert!(text.contains("exclusive"), "{text}");
    assert!(text.contains("process no longer exists"), "{text}");
    assert!(!text.contains("kept"), "{text}");
    assert!(m.locks().is_empty(), "{text}");

    // A backup (shared lock) runs beside stale exclusive locks, and removes
    // the one whose holder on this host is gone.
    let dead_name = m.plant(&dead_local_lock());
    let old_name = m.plant(&old_remote_lock());
    m.backup().success();
    assert_eq!(m.locks(), vec![old_name.clone()], "dead {dead_name}");

    let report = m.run(["--json", "unlock"]).success().json();
    assert_eq!(report["message_type"], "unlock");
    assert_eq!(names(&report["removed"]), vec![old_name]);
    assert_eq!(names(&report["kept"]), Vec::<String>::new());
    let removed = &report["removed"][0];
    assert_eq!(removed["hostname"], "far-away-host");
    assert_eq!(removed["pid"], 4242);
    assert_eq!(removed["exclusive"], true);
    assert!(removed["age_secs"]
        .as_i64()
        .is_some_and(|a| a >= STALE_AFTER_SECS * 2));
    assert_eq!(removed["destinations"].as_array().map(Vec::len), Some(2));
    assert!(m.locks().is_empty());
}

#[test]
fn live_locks_block_exclusive_commands_until_forced_away() {
    let m = Mirror::new();
    let me = std::process::id();
    let held =
        m.rt.block_on(lifeboat_engine::acquire_lock(
            m.repo.destinations(),
            m.repo.keys(),
            false,
        ))
        .expect("a shared lock");
    let live = m.locks();
    assert_eq!(live.len(), 1);

    // Exclusive commands are refused, naming the holder; shared ones run.
    m.run(["sync", "--repair"])
        .assert_code(11)
        .stderr_has("locked")
        .stderr_has(&format!("pid {me}"));
    let keys_before = std::fs::read_dir(m.a.join("keys")).expect("keys/").count();
    m.cmd()
        .env("LIFEBOAT_NEW_PASSWORD", "another one")
        .args(["key", "passwd"])
        .run()
        .assert_code(11)
        .stderr_has(&format!("pid {me}"));
    assert_eq!(
        std::fs::read_dir(m.a.join("keys")).expect("keys/").count(),
        keys_before,
        "a locked passwd changed the keys"
    );
    m.backup().success();
    assert_eq!(m.locks(), live, "the refused commands left their locks");

    // unlock keeps the live lock and an unreadable one.
    let unreadable = m.plant_bytes(b"a lock of a newer lifeboat".to_vec());
    let out = m.run(["unlock"]);
    let text = out.success().stdout_text();
    assert_eq!(text.matches("kept").count(), 2, "{text}");
    assert!(text.contains(&format!("pid {me}")), "{text}");
    assert!(text.contains("shared"), "{text}");
    assert!(text.contains("unreadable"), "{text}");
    assert!(!text.contains("removed"), "{text}");
    let mut both = vec![live[0].clone(), unreadable];
    both.sort();
    assert_eq!(m.locks(), both);

    // --force removes them, with a warning.
    let out = m.run(["--json", "unlock", "--force"]);
    out.success().stderr_has("warning").stderr_has("corrupt");
    let report = out.json();
    assert_eq!(names(&report["removed"]), both);
    assert!(m.locks().is_empty());
    m.run(["sync", "--repair"]).success();
    m.rt.block_on(held.release()).expect("release");
}

#[test]
fn retry_lock_waits_for_the_holder_then_gives_up() {
    let m = Mirror::new();
    let take = || {
        m.rt.block_on(lifeboat_engine::acquire_lock(
            m.repo.destinations(),
            m.repo.keys(),
            true,
        ))
        .expect("an exclusive lock")
    };

    // Held for the whole wait: exit 11 after about the duration.
    let held = take();
    let started = Instant::now();
    m.cmd()
        .args(["--retry-lock", "2s", "backup"])
        .arg(&m.src)
        .run()
        .assert_code(11)
        .stderr_has("retrying")
        .stderr_has("locked");
    assert!(started.elapsed() >= Duration::from_secs(2));

    // Released during the wait: the backup goes through.
    let waiting = m
        .cmd()
        .args(["--json", "--retry-lock", "5m", "backup"])
        .arg(&m.src)
        .spawn();
    std::thread::sleep(Duration::from_secs(2));
    let mut waiting = waiting;
    assert!(waiting.is_running(), "the backup did not wait for the lock");
    m.rt.block_on(held.release()).expect("release");
    let done = waiting.wait();
    done.success();
    assert_eq!(done.summary()["message_type"], "summary");
    assert!(m.locks().is_empty());
    m.cmd()
        .args(["--retry-lock", "soon", "snapshots"])
        .run()
        .assert_code(2);
}

/// `sync` takes its lock before it plans: while a prune holds the exclusive
/// lock, it says nothing about what to copy (the plan could be stale by the
/// time it copied) and exits 11, even when there is nothing to copy.
#[test]
fn sync_waits_for_the_lock_before_planning() {
    let m = Mirror::new();
    let held =
        m.rt.block_on(lifeboat_engine::acquire_lock(
            m.repo.destinations(),
            m.repo.keys(),
            true,
        ))
        .expect("an exclusive lock");
    let out = m.run(["sync"]);
    out.assert_code(11).stderr_has("locked");
    let text = out.stdout_text();
    assert!(
        !text.contains("up to date") && !text.contains("to copy"),
        "sync planned before it held its lock: {text}"
    );
    m.rt.block_on(held.release()).expect("release");
    m.run(["sync"])
        .success()
        .stdout_has("every reachable destination is up to date");
}
