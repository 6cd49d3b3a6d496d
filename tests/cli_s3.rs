//! End to end through the `lifeboat` binary with an S3 destination on the test
//! server that `scripts/test.sh` starts (moto, `scripts/servers/s3.sh`): init,
//! back up a generated tree, restore it and compare, `check --read-data`.
//!
//! Without the server these tests fail (they never skip): run `./scripts/test.sh`.
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_tests::FAST_INIT;
use std::time::Duration;

use lifeboat_tests::tree::{self, TreeOptions};
use lifeboat_tests::{Lb, Output, Sandbox, PASSWORD};

/// The variables the child needs to reach the test server; the sandbox clears
/// the rest of the environment.
const PASSED_THROUGH: &[&str] = &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"];

/// An S3 destination on the test server under a fresh random prefix.
struct S3Dest {
    url: String,
}

impl S3Dest {
    /// # Panics
    /// When the test server's variables are missing.
    fn fresh() -> Self {
        let endpoint = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
            panic!(
                "LIFEBOAT_TEST_S3_ENDPOINT is not set: the S3 end-to-end tests need the test \
                 server; run ./scripts/test.sh (it starts moto and sets the variables)"
            )
        });
        let bucket = std::env::var("LIFEBOAT_TEST_S3_BUCKET")
            .unwrap_or_else(|_| "lifeboat-test".to_string());
        let prefix = format!("cli/{:016x}", rand::random::<u64>());
        S3Dest {
            url: format!("s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1"),
        }
    }

    /// `lifeboat -d <this destination>` with the password and the AWS variables.
    fn cmd(&self, sb: &Sandbox) -> Lb {
        let mut cmd = sb.command().password(PASSWORD);
        for var in PASSED_THROUGH {
            let value = std::env::var(var).unwrap_or_else(|_| {
                panic!("{var} is not set: run ./scripts/test.sh, which sets it for the test server")
            });
            cmd = cmd.env(var, value);
        }
        cmd.arg("-d").arg(&self.url)
    }

    fn run<I, S>(&self, sb: &Sandbox, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd(sb)
            .args(args)
            .timeout(Duration::from_secs(5 * 60))
            .run()
    }
}

/// init, backup, restore, compare and `check --read-data` on one S3 destination.
#[test]
fn s3_round_trip_and_check() {
    let sb = Sandbox::new();
    let s3 = S3Dest::fresh();
    s3.run(&sb, FAST_INIT).success();

    let src = sb.join("src");
    let opts = TreeOptions {
        big_file: Some(6 << 20),
        small_files: 300,
        sparse_size: 8 << 20,
        depth: 20,
        fifo: true,
    };
    tree::build_tree(&src, &opts);
    let summary = s3
        .run(&sb, ["--json".as_ref(), "backup".as_ref(), src.as_os_str()])
        .success()
        .summary();
    assert_eq!(summary["errors"].as_u64(), Some(0), "{summary}");

    let target = sb.join("restored");
    s3.run(
        &sb,
        [
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    )
    .success();
    tree::assert_same_tree(&src, &tree::restored(&target, &src));

    s3.run(&sb, ["check", "--read-data"]).success();

    // A second backup of the same tree finds every file unchanged and stores no
    // file data (only the trees of the parents, whose listing changed).
    let again = s3
        .run(&sb, ["--json".as_ref(), "backup".as_ref(), src.as_os_str()])
        .success()
        .summary();
    assert_eq!(again["data_blobs"].as_u64(), Some(0), "{again}");
    assert_eq!(again["files_new"].as_u64(), Some(0), "{again}");
    assert_eq!(again["files_changed"].as_u64(), Some(0), "{again}");
}

/// A second `init` on the same prefix is refused: the create-only write of
/// `config` sees the first one.
#[test]
fn s3_init_twice_is_refused() {
    let sb = Sandbox::new();
    let s3 = S3Dest::fresh();
    let init = FAST_INIT;
    s3.run(&sb, init).success();
    let again = s3.run(&sb, init);
    assert_ne!(again.code, 0, "second init succeeded: {again:?}");
}

/// Plain HTTP to a host that is not a loopback address is refused before any
/// request, with a message naming the way out.
#[test]
fn s3_plain_http_to_remote_host_is_refused() {
    let sb = Sandbox::new();
    let out = sb
        .command()
        .password(PASSWORD)
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .args([
            "-d",
            "s3://bucket/p?endpoint=http://192.0.2.1:9000",
            "init",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
            "--insecure-kdf",
        ])
        .timeout(Duration::from_secs(60))
        .run();
    assert_ne!(out.code, 0, "{out:?}");
    out.stderr_has("allow_http=true");
}
