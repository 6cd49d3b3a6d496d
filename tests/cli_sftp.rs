//! End to end through the `lifeboat` binary with an SFTP destination on the
//! OpenSSH test server that `scripts/test.sh` starts (`scripts/servers/sftp.sh`):
//! init, back up a generated tree, restore it and compare, `check --read-data`;
//! and a wrong host key refused with nothing written.
//!
//! Without the server these tests fail (they never skip): run `./scripts/test.sh`.
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_tests::FAST_INIT;
use std::path::Path;
use std::time::Duration;

use lifeboat_tests::tree::{self, TreeOptions};
use lifeboat_tests::{Output, Sandbox, PASSWORD};

/// The test server, from the `LIFEBOAT_TEST_SFTP_*` variables.
struct SftpServer {
    port: String,
    user: String,
    identity: String,
    known_hosts: String,
    root: String,
}

impl SftpServer {
    /// # Panics
    /// When the test server's variables are missing.
    fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: the SFTP end-to-end tests need the OpenSSH test \
                     server; run ./scripts/test.sh (it starts sshd and sets the variables)"
                )
            })
        };
        SftpServer {
            port: var("LIFEBOAT_TEST_SFTP_PORT"),
            user: var("LIFEBOAT_TEST_SFTP_USER"),
            identity: var("LIFEBOAT_TEST_SFTP_IDENTITY"),
            known_hosts: var("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS"),
            root: var("LIFEBOAT_TEST_SFTP_ROOT"),
        }
    }

    /// A fresh directory under the server's test root (not created yet).
    fn fresh_dir(&self) -> String {
        format!("{}/cli-{:016x}", self.root, rand::random::<u64>())
    }

    /// The destination URL for `dir`, trusting the host keys in `known_hosts`.
    fn url(&self, dir: &str, known_hosts: &str) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{dir}?known_hosts={known_hosts}&identity={}",
            self.user, self.port, self.identity
        )
    }
}

/// `lifeboat -d <url> <args>` in the sandbox (its environment holds no SSH
/// settings: the URL names the key and the known_hosts file).
fn run<I, S>(sb: &Sandbox, url: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    sb.command()
        .password(PASSWORD)
        .arg("-d")
        .arg(url)
        .args(args)
        .timeout(Duration::from_secs(5 * 60))
        .run()
}

/// init, backup, restore, compare and `check --read-data` on one SFTP destination.
#[test]
fn sftp_round_trip_and_check() {
    let server = SftpServer::from_env();
    let sb = Sandbox::new();
    let dir = server.fresh_dir();
    let url = server.url(&dir, &server.known_hosts);
    run(&sb, &url, FAST_INIT).success();

    let src = sb.join("src");
    let opts = TreeOptions {
        big_file: Some(6 << 20),
        small_files: 300,
        sparse_size: 8 << 20,
        depth: 20,
        fifo: true,
    };
    tree::build_tree(&src, &opts);
    let summary = run(
        &sb,
        &url,
        ["--json".as_ref(), "backup".as_ref(), src.as_os_str()],
    )
    .success()
    .summary();
    assert_eq!(summary["errors"].as_u64(), Some(0), "{summary}");

    let target = sb.join("restored");
    run(
        &sb,
        &url,
        [
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    )
    .success();
    tree::assert_same_tree(&src, &tree::restored(&target, &src));

    run(&sb, &url, ["check", "--read-data"]).success();
    // The server is this machine: what sftp-server created is owner-only.
    tree::assert_owner_only(std::path::Path::new(&dir));

    // A second backup of the same tree stores no new file data (only the
    // trees of directories whose metadata changed, such as the sandbox root).
    let again = run(
        &sb,
        &url,
        ["--json".as_ref(), "backup".as_ref(), src.as_os_str()],
    )
    .success()
    .summary();
    assert_eq!(again["data_blobs"].as_u64(), Some(0), "{again}");
    assert_eq!(again["files_changed"].as_u64(), Some(0), "{again}");
    assert_eq!(again["files_new"].as_u64(), Some(0), "{again}");
}

/// Wrong SSH host key: `init` is refused with an error naming the host and the
/// key's fingerprint, and nothing is written on the server.
#[test]
fn sftp_wrong_host_key_is_refused() {
    let server = SftpServer::from_env();
    let sb = Sandbox::new();
    let wrong = sb.join("known_hosts");
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} ssh-ed25519 \
             AAAAC3NzaC1lZDI1NTE5AAAAIKqdDBjqNoj465sqXLHsf9D2ZWnuJCaGRGGtviVyUdwy\n",
            server.port
        ),
    )
    .expect("write known_hosts");
    let dir = server.fresh_dir();
    let url = server.url(&dir, &wrong.to_string_lossy());
    let out = run(&sb, &url, FAST_INIT);
    assert_ne!(out.code, 0, "init with a wrong host key succeeded: {out:?}");
    let stderr = out.stderr.clone();
    assert!(
        stderr.contains("HOST KEY MISMATCH")
            && stderr.contains(&format!("[127.0.0.1]:{}", server.port))
            && stderr.contains("SHA256:"),
        "the error must name the host and the fingerprint: {stderr}"
    );
    assert!(!Path::new(&dir).exists(), "{dir} was created on the server");
}
