//! End to end through the `lifeboat` binary with several destinations at once:
//! a local directory, S3 (moto, `scripts/servers/s3.sh`) and SFTP (a private
//! sshd, `scripts/servers/sftp.sh`). DESIGN.md invariant 4 and the tests issue 3
//! asks for: restore from any two of three, an S3 server killed in the middle
//! of a backup, a destination unreachable from the start, and a new empty
//! destination seeded by `sync`.
//!
//! Without the servers these tests fail (they never skip): run `./scripts/test.sh`.
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_tests::tree::{self, TreeOptions};
use lifeboat_tests::{Lb, Output, Running, Sandbox, PASSWORD};
use serde_json::Value;

/// The variables the child needs to reach the S3 test server; the sandbox
/// clears the rest of the environment.
const AWS_VARS: &[&str] = &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"];

/// The name `lifeboat` derives for every SFTP destination on 127.0.0.1.
const SFTP_NAME: &str = "sftp-127.0.0.1";

/// A variable the test servers' scripts export.
///
/// # Panics
/// When it is missing: these tests need the servers and never skip.
fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the multi-destination tests need the S3 and SFTP test \
             servers; run ./scripts/test.sh (it starts them and sets the variables)"
        )
    })
}

/// A unique 64-bit tag for prefixes and directory names.
fn tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A fresh prefix in `bucket` on the S3 server at `endpoint` (`s3-<bucket>`).
fn s3_url(endpoint: &str, bucket: &str) -> String {
    format!(
        "s3://{bucket}/multi/{}?endpoint={endpoint}&region=us-east-1",
        tag()
    )
}

/// A fresh prefix on the shared S3 test server.
fn shared_s3_url() -> String {
    s3_url(
        &var("LIFEBOAT_TEST_S3_ENDPOINT"),
        &var("LIFEBOAT_TEST_S3_BUCKET"),
    )
}

/// A fresh directory on the SFTP test server: its URL and its path on this host.
fn sftp_dest() -> (String, PathBuf) {
    let dir = format!("{}/multi-{}", var("LIFEBOAT_TEST_SFTP_ROOT"), tag());
    let url = format!(
        "sftp://{}@127.0.0.1:{}{dir}?known_hosts={}&identity={}",
        var("LIFEBOAT_TEST_SFTP_USER"),
        var("LIFEBOAT_TEST_SFTP_PORT"),
        var("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS"),
        var("LIFEBOAT_TEST_SFTP_IDENTITY"),
    );
    (url, PathBuf::from(dir))
}

/// `lifeboat -d <dest>... ` with the password and the AWS variables.
fn lb(sb: &Sandbox, dests: &[&str]) -> Lb {
    let mut cmd = sb.command().password(PASSWORD);
    for name in AWS_VARS {
        cmd = cmd.env(name, var(name));
    }
    for d in dests {
        cmd = cmd.arg("-d").arg(d);
    }
    cmd.timeout(Duration::from_secs(8 * 60))
}

fn run<I, S>(sb: &Sandbox, dests: &[&str], args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    lb(sb, dests).args(args).run()
}

fn init(sb: &Sandbox, dests: &[&str]) {
    run(
        sb,
        dests,
        ["init", "--kdf-memory", "64", "--kdf-iterations", "1"],
    )
    .success();
}

fn backup_args(src: &Path) -> Vec<OsString> {
    vec!["--json".into(), "backup".into(), src.into()]
}

/// `restore latest` from `dests` into a fresh target; asserts it equals `src`.
#[track_caller]
fn assert_restores(sb: &Sandbox, dests: &[&str], src: &Path) {
    let target = sb.join(format!("restored-{}", tag()));
    run(
        sb,
        dests,
        [
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    )
    .success();
    let diffs = tree::compare_trees(src, &tree::restored(&target, src));
    assert!(
        diffs.is_empty(),
        "restore from {dests:?}: {} differences:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::fs::remove_dir_all(&target).expect("remove restored copy");
}

/// The names in the summary's `destinations_reached`, sorted.
fn reached(summary: &Value) -> Vec<String> {
    let mut names: Vec<String> = summary["destinations_reached"]
        .as_array()
        .unwrap_or_else(|| panic!("no destinations_reached: {summary}"))
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

/// The names in the summary's `destinations_missed`, sorted.
fn missed(summary: &Value) -> Vec<String> {
    let mut names: Vec<String> = summary["destinations_missed"]
        .as_array()
        .unwrap_or_else(|| panic!("no destinations_missed: {summary}"))
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// `snapshots --json`: each snapshot's id and the sorted names of the
/// destinations holding it.
fn snapshot_holders(sb: &Sandbox, dests: &[&str]) -> Vec<(String, Vec<String>)> {
    let out = run(sb, dests, ["--json", "snapshots"]);
    out.success();
    let list = out.json();
    list.as_array()
        .unwrap_or_else(|| panic!("snapshots --json is not an array: {list}"))
        .iter()
        .map(|s| {
            let mut holders: Vec<String> = s["destinations"]
                .as_array()
                .unwrap_or_else(|| panic!("snapshot without destinations: {s}"))
                .iter()
                .map(|d| d.as_str().expect("name").to_string())
                .collect();
            holders.sort();
            (s["id"].as_str().unwrap_or_default().to_string(), holders)
        })
        .collect()
}

/// `status --json` → (exit code, the `destinations` array).
fn status(sb: &Sandbox, dests: &[&str]) -> (Output, Vec<Value>) {
    let out = run(sb, dests, ["--json", "status"]);
    let v = out.json();
    let list = v["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("status --json without destinations: {v}"))
        .clone();
    (out, list)
}

/// Asserts every destination is reachable, holds the repository and lacks no snapshot.
#[track_caller]
fn assert_status_complete(sb: &Sandbox, dests: &[&str]) {
    let (out, list) = status(sb, dests);
    assert_eq!(list.len(), dests.len(), "{list:?}");
    for d in &list {
        assert_eq!(d["reachable"], true, "{d}");
        assert_eq!(d["has_repository"], true, "{d}");
        assert_eq!(d["snapshots_missing"].as_u64(), Some(0), "{d}");
        assert!(d["snapshots"].as_u64().unwrap_or(0) >= 1, "{d}");
    }
    out.success();
}

/// A tree with every kind of entry and a few MiB of data.
fn small_tree(sb: &Sandbox) -> PathBuf {
    let src = sb.join("src");
    let opts = TreeOptions {
        big_file: Some(4 << 20),
        small_files: 200,
        sparse_size: 8 << 20,
        depth: 12,
        fifo: true,
    };
    tree::build_tree(&src, &opts);
    src
}

/// A free port on 127.0.0.1 (nothing listens on it once this returns).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A private `moto_server` this test may kill and restart.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(port: u16) -> Self {
        let bin = var("LIFEBOAT_TEST_MOTO_SERVER");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server on port {port} exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server does not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` with a plain `PUT /<bucket>` (moto needs no signature).
    fn create_bucket(&self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send PUT bucket");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read moto's answer");
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "PUT /{bucket} on moto: {answer}"
        );
    }

    /// SIGKILL: the server vanishes with every open connection.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Number of files under `dir` (0 when it does not exist).
fn files_under(dir: &Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    tree::regular_files(dir).len()
}

/// Backup to local + S3 + SFTP; then each pair of two restores the source
/// alone, and with destinations deleted outright the full list fails over.
#[test]
fn restore_from_any_two_of_three_and_fail_over() {
    let sb = Sandbox::new();
    let local = sb.join("usb");
    let local_url = local.display().to_string();
    let s3 = shared_s3_url();
    let (sftp, sftp_dir) = sftp_dest();
    let all = [local_url.as_str(), s3.as_str(), sftp.as_str()];
    init(&sb, &all);

    let src = small_tree(&sb);
    let out = run(&sb, &all, backup_args(&src));
    out.success();
    let summary = out.summary();
    assert_eq!(summary["errors"].as_u64(), Some(0), "{summary}");
    let s3_name = format!("s3-{}", var("LIFEBOAT_TEST_S3_BUCKET"));
    assert_eq!(
        reached(&summary),
        sorted(&["local-usb", &s3_name, SFTP_NAME]),
        "{summary}"
    );
    assert!(missed(&summary).is_empty(), "{summary}");
    assert_status_complete(&sb, &all);

    // Each destination left out in turn: the other two hold everything.
    for left_out in 0..all.len() {
        let two: Vec<&str> = (0..all.len())
            .filter(|&i| i != left_out)
            .map(|i| all[i])
            .collect();
        assert_restores(&sb, &two, &src);
        run(&sb, &two, ["check", "--read-data"]).success();
    }

    // The first destination in preference order deleted outright: the full
    // list fails over to S3 and SFTP.
    std::fs::remove_dir_all(&local).expect("delete the local destination");
    assert_restores(&sb, &all, &src);
    // And with SFTP deleted too, S3 alone serves the restore.
    std::fs::remove_dir_all(&sftp_dir).expect("delete the SFTP destination");
    assert_restores(&sb, &all, &src);
}

/// Kill the S3 server in the middle of a backup: local and SFTP get the
/// snapshot, the run exits 3 naming S3; a restarted (empty) S3 is seeded by
/// `sync`, after which `status` shows no lag and each destination alone
/// passes `check --read-data`.
#[test]
fn s3_killed_mid_backup_then_synced() {
    const BUCKET: &str = "lifeboat-private";
    let s3_name = format!("s3-{BUCKET}");
    let port = free_port();
    let mut moto = Moto::start(port);
    moto.create_bucket(BUCKET);

    let sb = Sandbox::new();
    let local = sb.join("usb");
    let local_url = local.display().to_string();
    let s3 = s3_url(&moto.endpoint(), BUCKET);
    let (sftp, _sftp_dir) = sftp_dest();
    let all = [local_url.as_str(), s3.as_str(), sftp.as_str()];
    init(&sb, &all);

    // 256 MiB of incompressible data in 8 files: several seconds of uploads.
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    for i in 0..8u64 {
        tree::write_generated(&src.join(format!("big{i}.bin")), 32 << 20, 1000 + i, false);
    }
    tree::text_tree(&src.join("text"));

    let mut running: Running = lb(&sb, &all).args(backup_args(&src)).spawn();
    // Kill moto once uploads are under way (the first packs have landed locally).
    let started = Instant::now();
    while files_under(&local.join("data")) == 0 {
        assert!(
            running.is_running(),
            "the backup ended before any pack reached the local destination: {:?}",
            running.wait()
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no pack after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        running.is_running(),
        "the backup ended before moto could be killed: make the tree bigger"
    );
    moto.kill();
    let out = running.wait();
    out.assert_code(3);
    let summary = out.summary();
    assert!(summary["snapshot_id"].is_string(), "{summary}");
    assert_eq!(missed(&summary), vec![s3_name.clone()], "{summary}");
    assert_eq!(
        reached(&summary),
        sorted(&["local-usb", SFTP_NAME]),
        "{summary}"
    );

    // S3 back on the same port, empty (moto keeps its state in memory).
    let moto = Moto::start(port);
    moto.create_bucket(BUCKET);
    let holders = snapshot_holders(&sb, &all);
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].0, summary["snapshot_id"].as_str().unwrap());
    assert_eq!(
        holders[0].1,
        sorted(&["local-usb", SFTP_NAME]),
        "{holders:?}"
    );
    let (before, list) = status(&sb, &all);
    before.assert_code(3);
    let s3_status = list
        .iter()
        .find(|d| d["name"] == s3_name.as_str())
        .unwrap_or_else(|| panic!("{s3_name} not in status: {list:?}"));
    assert_eq!(s3_status["has_repository"], false, "{s3_status}");

    run(&sb, &all, ["sync"]).success();
    assert_status_complete(&sb, &all);
    let holders = snapshot_holders(&sb, &all);
    assert_eq!(
        holders[0].1,
        sorted(&["local-usb", &s3_name, SFTP_NAME]),
        "{holders:?}"
    );
    for one in all {
        run(&sb, &[one], ["check", "--read-data"]).success();
    }
    assert_restores(&sb, &[s3.as_str()], &src);
    drop(moto);
}

/// An S3 destination on a port where nothing listens: the backup goes on to
/// local and SFTP, exits 3 naming it, and costs no more than the retry budget.
#[test]
fn unreachable_destination_is_bounded_and_reported() {
    let sb = Sandbox::new();
    let src = small_tree(&sb);

    // The same backup to local + SFTP alone, for the time it takes.
    let base_local = sb.join("base");
    let base_local_url = base_local.display().to_string();
    let (base_sftp, _) = sftp_dest();
    let base = [base_local_url.as_str(), base_sftp.as_str()];
    init(&sb, &base);
    let t0 = Instant::now();
    run(&sb, &base, backup_args(&src)).success();
    let baseline = t0.elapsed();

    let local = sb.join("usb");
    let local_url = local.display().to_string();
    let (sftp, _) = sftp_dest();
    init(&sb, &[local_url.as_str(), sftp.as_str()]);
    let dead = format!(
        "s3://unreachable/multi?endpoint=http://127.0.0.1:{}&region=us-east-1",
        free_port()
    );
    let all = [local_url.as_str(), dead.as_str(), sftp.as_str()];
    let t1 = Instant::now();
    let out = run(&sb, &all, backup_args(&src));
    let took = t1.elapsed();
    eprintln!("backup to local + SFTP: {baseline:?}; with an unreachable S3 too: {took:?}");
    out.assert_code(3);
    let summary = out.summary();
    assert!(summary["snapshot_id"].is_string(), "{summary}");
    assert_eq!(missed(&summary), vec!["s3-unreachable"], "{summary}");
    assert_eq!(
        reached(&summary),
        sorted(&["local-usb", SFTP_NAME]),
        "{summary}"
    );
    let error = summary["destinations_missed"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(!error.is_empty(), "no error for the missed one: {summary}");
    assert!(
        took < baseline + Duration::from_secs(30),
        "the backup with an unreachable destination took {took:?}, the same backup \
         without it {baseline:?}: more than the retry budget"
    );

    // The human output names it too.
    let human = run(&sb, &all, ["backup".as_ref(), src.as_os_str()]);
    human.assert_code(3);
    human.stderr_has("s3-unreachable");

    let two = [local_url.as_str(), sftp.as_str()];
    let holders = snapshot_holders(&sb, &two);
    assert_eq!(holders.len(), 2, "{holders:?}");
    for (_, h) in &holders {
        assert_eq!(*h, sorted(&["local-usb", SFTP_NAME]), "{holders:?}");
    }
    assert_restores(&sb, &[sftp.as_str()], &src);
}

/// A new empty destination added to the list is seeded completely by `sync`,
/// then restores and checks alone.
#[test]
fn new_empty_destination_is_seeded_by_sync() {
    let sb = Sandbox::new();
    let local = sb.join("usb");
    let local_url = local.display().to_string();
    let (sftp, _) = sftp_dest();
    init(&sb, &[local_url.as_str(), sftp.as_str()]);
    let src = small_tree(&sb);
    run(&sb, &[local_url.as_str(), sftp.as_str()], backup_args(&src)).success();
    tree::write(&src.join("text/later.txt"), b"a second snapshot");
    run(&sb, &[local_url.as_str(), sftp.as_str()], backup_args(&src)).success();

    // The new destination first in preference order: it holds nothing yet.
    let new = shared_s3_url();
    let all = [new.as_str(), local_url.as_str(), sftp.as_str()];
    let (out, list) = status(&sb, &all);
    out.assert_code(3);
    assert_eq!(list[0]["has_repository"], false, "{list:?}");

    let synced = run(&sb, &all, ["--json", "sync"]);
    synced.success();
    let summary = synced.summary();
    assert!(summary["copied"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert_eq!(
        summary["failed"].as_array().map(Vec::len),
        Some(0),
        "{summary}"
    );
    assert_status_complete(&sb, &all);

    // Idempotent: nothing left to copy.
    let again = run(&sb, &all, ["--json", "sync"]);
    again.success();
    assert_eq!(
        again.summary()["copied"].as_u64(),
        Some(0),
        "{}",
        again.summary()
    );

    let alone = [new.as_str()];
    assert_eq!(snapshot_holders(&sb, &alone).len(), 2);
    assert_restores(&sb, &alone, &src);
    run(&sb, &alone, ["check", "--read-data"]).success();
}
