//! Running the `lifeboat` binary in a clean environment.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The password every sandbox repository is created with.
pub const PASSWORD: &str = "correct horse battery staple";

/// `init` with the cheapest key derivation (64 KiB, one pass), which the
/// tests may use and a user must ask for (`--insecure-kdf`).
pub const FAST_INIT: [&str; 6] = [
    "init",
    "--kdf-memory",
    "64",
    "--kdf-iterations",
    "1",
    "--insecure-kdf",
];

/// How long one invocation may take before the test fails (debug builds are slow).
const TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The `lifeboat` binary: `$LIFEBOAT_BIN`, else `target/<profile>/lifeboat`
/// next to this test executable (`target/<profile>/deps/<test>-<hash>`).
///
/// # Panics
/// When the binary is missing: it must be built with `cargo build -p lifeboat-cli
/// --features failpoints` (or as scripts/test.sh does) before `cargo test`, since a
/// test crate cannot depend on another package's binary.
pub fn lifeboat_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("LIFEBOAT_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("cannot find the test executable's path");
        let mut dir = exe
            .parent()
            .expect("the test executable has no directory")
            .to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let bin = dir.join("lifeboat");
        assert!(
            bin.is_file(),
            "the lifeboat binary is missing at {}: run `cargo build -p lifeboat-cli --features \
             failpoints` (same profile) before `cargo test -p lifeboat-tests`, or set LIFEBOAT_BIN",
            bin.display()
        );
        bin
    })
}

/// A temporary directory with its own home; the repository is `<dir>/repo`.
pub struct Sandbox {
    dir: TempDir,
    home: PathBuf,
    user: Option<(u32, u32)>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh sandbox with an empty home directory.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-test-")
            .tempdir()
            .expect("create temp dir");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("create home");
        Sandbox {
            dir,
            home,
            user: None,
        }
    }

    /// The sandbox root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `root/<rel>`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The `HOME` of every invocation.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `XDG_DATA_HOME` of every invocation.
    pub fn data_home(&self) -> PathBuf {
        self.home.join("data")
    }

    /// `XDG_CONFIG_HOME` of every invocation.
    pub fn config_home(&self) -> PathBuf {
        self.home.join("config")
    }

    /// The default repository directory (`-d` of [`Sandbox::repo_cmd`]).
    pub fn repo(&self) -> PathBuf {
        self.join("repo")
    }

    /// Runs every later invocation as this uid and gid (with no supplementary
    /// groups). Only root can do this.
    pub fn run_as(&mut self, uid: u32, gid: u32) {
        self.user = Some((uid, gid));
    }

    /// A command with a cleared environment: `PATH`, `HOME` and `XDG_*` only,
    /// no password, stdin closed, working directory the sandbox root.
    pub fn command(&self) -> Lb {
        let mut cmd = Command::new(lifeboat_bin());
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("XDG_DATA_HOME", self.data_home())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env("XDG_RUNTIME_DIR", self.home.join("run"))
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = self.user {
            // std drops the supplementary groups (setgroups(0)) before setuid.
            cmd.uid(uid).gid(gid);
        }
        Lb {
            cmd,
            shown: vec![OsString::from("lifeboat")],
            timeout: TIMEOUT,
        }
    }

    /// `lifeboat <args>` with `LIFEBOAT_PASSWORD` set.
    pub fn lb<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command().password(PASSWORD).args(args).run()
    }

    /// `lifeboat -d <repo> <args>` with `LIFEBOAT_PASSWORD` set.
    pub fn repo_cmd<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command()
            .password(PASSWORD)
            .dest(&self.repo())
            .args(args)
            .run()
    }

    /// `restore latest --target TARGET` on the sandbox repository.
    pub fn restore_latest(&self, target: &Path) -> Output {
        self.repo_cmd([
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
    }

    /// A command with the password and `-d` for each of `dests`.
    pub fn on(&self, dests: &[&Path]) -> Lb {
        dests
            .iter()
            .fold(self.command().password(PASSWORD), |cmd, d| cmd.dest(d))
    }

    /// Creates one repository on all of `dests` with a cheap KDF.
    pub fn init_on(&self, dests: &[&Path]) {
        self.on(dests).args(FAST_INIT).run().success();
    }

    /// Creates the repository at [`Sandbox::repo`] with a cheap KDF.
    pub fn init_repo(&self) {
        self.repo_cmd(FAST_INIT).success();
    }

    /// Backs up `paths` into the sandbox repository with `--json`; returns the summary.
    pub fn backup(&self, paths: &[&Path]) -> Value {
        let mut args: Vec<OsString> = vec!["--json".into(), "backup".into()];
        args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
        self.repo_cmd(args).success().summary()
    }

    /// `snapshots --json` of the sandbox repository.
    pub fn snapshots(&self) -> Vec<Value> {
        match self.repo_cmd(["--json", "snapshots"]).success().json() {
            Value::Array(list) => list,
            other => panic!("snapshots --json is not an array: {other}"),
        }
    }

    /// `ls --json <snapshot>`: the listed paths.
    pub fn ls_paths(&self, snapshot: &str) -> Vec<String> {
        self.repo_cmd(["--json", "ls", snapshot])
            .success()
            .json_lines()
            .iter()
            .map(|v| {
                v["path"]
                    .as_str()
                    .expect("ls entry without path")
                    .to_string()
            })
            .collect()
    }
}

/// One invocation being built.
pub struct Lb {
    cmd: Command,
    shown: Vec<OsString>,
    timeout: Duration,
}

impl Lb {
    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.shown.push(arg.as_ref().to_owned());
        self.cmd.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// `-d <path>`.
    pub fn dest(self, path: &Path) -> Self {
        self.arg("-d").arg(path)
    }

    /// Sets `LIFEBOAT_PASSWORD`.
    pub fn password(self, password: &str) -> Self {
        self.env("LIFEBOAT_PASSWORD", password)
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Fails the test if the run takes longer than `limit` (default 10 minutes).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Runs to completion (or the timeout) and captures the output.
    ///
    /// # Panics
    /// When the binary cannot start or runs past the timeout.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }

    /// Starts the process; [`Running::wait`] collects it.
    ///
    /// # Panics
    /// When the binary cannot start.
    pub fn spawn(mut self) -> Running {
        let cmdline = self
            .shown
            .iter()
            .map(|a| format!("{:?}", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
        let reader = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        };
        let stdout = reader(Box::new(child.stdout.take().expect("stdout piped")));
        let stderr = reader(Box::new(child.stderr.take().expect("stderr piped")));
        Running {
            child,
            stdout,
            stderr,
            cmdline,
            timeout: self.timeout,
            started: Instant::now(),
        }
    }
}

/// A started invocation.
pub struct Running {
    child: std::process::Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    cmdline: String,
    timeout: Duration,
    started: Instant,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for the end (or the timeout) and captures the output.
    ///
    /// # Panics
    /// When the process runs past the timeout.
    pub fn wait(mut self) -> Output {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for lifeboat") {
                break status;
            }
            if self.started.elapsed() > self.timeout {
                let stuck = kernel_wait_channels(self.child.id());
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not finish within {:?}; its threads were waiting in: {stuck}",
                    self.cmdline, self.timeout
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.join().expect("stdout reader");
        let stderr =
            String::from_utf8_lossy(&self.stderr.join().expect("stderr reader")).into_owned();
        Output {
            cmdline: self.cmdline,
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            signal: status.signal(),
            stdout,
            stderr,
        }
    }
}

/// The result of one invocation.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit status (128 + signal when killed).
    pub code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    /// Raw standard output.
    pub stdout: Vec<u8>,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// Standard output, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "{}\n  exit code: {} (signal {:?})\n  stdout: {}\n  stderr: {}",
            self.cmdline,
            self.code,
            self.signal,
            truncate(&self.stdout_text()),
            truncate(&self.stderr)
        )
    }

    /// Asserts the exit code.
    ///
    /// # Panics
    /// When it differs, showing the whole invocation.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert!(
            self.code == expected && self.signal.is_none(),
            "expected exit code {expected}: {}",
            self.describe()
        );
        self
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn success(&self) -> &Self {
        self.assert_code(0)
    }

    /// Asserts that standard error contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} on stderr: {}",
            self.describe()
        );
        self
    }

    /// Asserts that standard output contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout_text().contains(needle),
            "expected {needle:?} on stdout: {}",
            self.describe()
        );
        self
    }

    /// Standard output parsed as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }

    /// Each non-empty line of standard output parsed as JSON.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice(l).unwrap_or_else(|e| {
                    panic!(
                        "stdout line {:?} is not JSON ({e}): {}",
                        String::from_utf8_lossy(l),
                        self.describe()
                    )
                })
            })
            .collect()
    }

    /// The last JSON line, which must be a `"message_type": "summary"` object.
    #[track_caller]
    pub fn summary(&self) -> Value {
        let last = self
            .json_lines()
            .pop()
            .unwrap_or_else(|| panic!("no JSON on stdout: {}", self.describe()));
        assert_eq!(
            last["message_type"],
            "summary",
            "last line is not a summary: {}",
            self.describe()
        );
        last
    }
}

/// What each thread of a process waits for in the kernel (`/proc/<pid>/task/*/wchan`),
/// e.g. `fifo_open` for an open(2) of a named pipe that has no writer.
fn kernel_wait_channels(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "unknown".into();
    };
    let mut seen: Vec<String> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("wchan")).ok())
        .collect();
    seen.sort();
    seen.dedup();
    seen.join(", ")
}

fn truncate(s: &str) -> String {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &s[..end], s.len() - end)
}
