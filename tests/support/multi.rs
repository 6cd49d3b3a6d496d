//! Helpers for tests with several destinations at once: a local directory,
//! S3 (moto, `scripts/servers/s3.sh`) and SFTP (a private sshd,
//! `scripts/servers/sftp.sh`). Without the servers these helpers panic (tests
//! never skip): run `./scripts/test.sh`.

use crate::FAST_INIT;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::tree::{self, TreeOptions};
use crate::{Lb, Output, Sandbox, PASSWORD};

/// The variables the child needs to reach the S3 test server; the sandbox
/// clears the rest of the environment.
pub const AWS_VARS: &[&str] = &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"];

/// The name `lifeboat` derives for every SFTP destination on 127.0.0.1.
pub const SFTP_NAME: &str = "sftp-127.0.0.1";

/// A variable the test servers' scripts export.
///
/// # Panics
/// When it is missing: these tests need the servers and never skip.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the multi-destination tests need the S3 and SFTP test \
             servers; run ./scripts/test.sh (it starts them and sets the variables)"
        )
    })
}

/// A unique 64-bit tag for prefixes and directory names.
pub fn tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A fresh prefix in `bucket` on the S3 server at `endpoint` (`s3-<bucket>`).
pub fn s3_url(endpoint: &str, bucket: &str) -> String {
    format!(
        "s3://{bucket}/multi/{}?endpoint={endpoint}&region=us-east-1",
        tag()
    )
}

/// A fresh prefix on the shared S3 test server.
pub fn shared_s3_url() -> String {
    s3_url(
        &var("LIFEBOAT_TEST_S3_ENDPOINT"),
        &var("LIFEBOAT_TEST_S3_BUCKET"),
    )
}

/// A fresh directory on the SFTP test server: its URL and its path on this host.
pub fn sftp_dest() -> (String, PathBuf) {
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
pub fn lb(sb: &Sandbox, dests: &[&str]) -> Lb {
    let mut cmd = sb.command().password(PASSWORD);
    for name in AWS_VARS {
        cmd = cmd.env(name, var(name));
    }
    for d in dests {
        cmd = cmd.arg("-d").arg(d);
    }
    cmd.timeout(Duration::from_secs(8 * 60))
}

pub fn run<I, S>(sb: &Sandbox, dests: &[&str], args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    lb(sb, dests).args(args).run()
}

pub fn init(sb: &Sandbox, dests: &[&str]) {
    run(sb, dests, FAST_INIT).success();
}

pub fn backup_args(src: &Path) -> Vec<OsString> {
    vec!["--json".into(), "backup".into(), src.into()]
}

/// `restore latest` from `dests` into a fresh target; asserts it equals `src`.
#[track_caller]
pub fn assert_restores(sb: &Sandbox, dests: &[&str], src: &Path) {
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
pub fn reached(summary: &Value) -> Vec<String> {
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
pub fn missed(summary: &Value) -> Vec<String> {
    let mut names: Vec<String> = summary["destinations_missed"]
        .as_array()
        .unwrap_or_else(|| panic!("no destinations_missed: {summary}"))
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// `snapshots --json`: each snapshot's id and the sorted names of the
/// destinations holding it.
pub fn snapshot_holders(sb: &Sandbox, dests: &[&str]) -> Vec<(String, Vec<String>)> {
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
pub fn status(sb: &Sandbox, dests: &[&str]) -> (Output, Vec<Value>) {
    let out = run(sb, dests, ["--json", "status", "--fail-on-lag"]);
    let v = out.json();
    let list = v["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("status --json without destinations: {v}"))
        .clone();
    (out, list)
}

/// Asserts every destination is reachable, holds the repository and lacks no snapshot.
#[track_caller]
pub fn assert_status_complete(sb: &Sandbox, dests: &[&str]) {
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
pub fn small_tree(sb: &Sandbox) -> PathBuf {
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
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A private `moto_server` this test may kill and restart.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Moto {
    pub fn start(port: u16) -> Self {
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

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` with a plain `PUT /<bucket>` (moto needs no signature).
    pub fn create_bucket(&self, bucket: &str) {
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
    pub fn kill(&mut self) {
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
pub fn files_under(dir: &Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    tree::regular_files(dir).len()
}
