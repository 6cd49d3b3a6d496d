//! `lifeboat mount` against `restic mount` (`../mount.sh`): one snapshot of
//! the same tree in each tool's repository on the same test server (S3 on
//! moto, or SFTP on OpenSSH), mounted by each tool with no local cache (the
//! new-machine case), then every file of the mounted snapshot read with
//! `tar cf - . | wc -c` (GNU tar skips reading contents when it writes to
//! /dev/null itself), on loopback and through the latency proxy of
//! `wan.sh`. The time is tar's, from the mounted snapshot directory being
//! there to the last byte; the peak RSS is the mount process's.
//!
//! Environment (from `scripts/servers/{s3,sftp}.sh`): as `wan`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_benches::process::{lifeboat_program, measure, tree_size, warm};
use lifeboat_benches::remote::{self, Remote};
use lifeboat_benches::wan::{self, Link};

const USAGE: &str = "usage: mount [--source DIR] [--rtt-ms N] [--mbit N] [--cap SECONDS] [--links loopback,wan] [--protocols s3,sftp] [--tools lifeboat,restic]";
const PASSWORD: &str = "mount-benchmark";
/// How long a mount may take to show the snapshot.
const MOUNT_WAIT: Duration = Duration::from_secs(300);

struct Args {
    source: PathBuf,
    link: Link,
    links: Vec<String>,
    protocols: Vec<String>,
    tools: Vec<String>,
    /// A tar still running after this long is stopped and shown as "> cap".
    cap: u64,
}

fn list(value: Option<String>) -> Result<Vec<String>, String> {
    let v = value.ok_or(USAGE)?;
    Ok(v.split(',').map(str::to_string).collect())
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        source: PathBuf::from("/usr/share"),
        link: Link {
            rtt: Duration::from_millis(40),
            bits_per_second: 100_000_000,
        },
        links: list(Some("loopback,wan".into()))?,
        protocols: list(Some("s3".into()))?,
        tools: list(Some("lifeboat,restic".into()))?,
        cap: 1200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let number = |v: Option<String>| -> Result<u64, String> {
            v.and_then(|v| v.parse().ok())
                .ok_or_else(|| USAGE.to_string())
        };
        match arg.as_str() {
            "--source" => args.source = PathBuf::from(it.next().ok_or(USAGE)?),
            "--rtt-ms" => args.link.rtt = Duration::from_millis(number(it.next())?),
            "--mbit" => args.link.bits_per_second = number(it.next())? * 1_000_000,
            "--links" => args.links = list(it.next())?,
            "--protocols" => args.protocols = list(it.next())?,
            "--tools" => args.tools = list(it.next())?,
            "--cap" => args.cap = number(it.next())?,
            _ => return Err(USAGE.into()),
        }
    }
    if !args.source.is_absolute() {
        return Err("--source must be an absolute path".into());
    }
    Ok(args)
}

/// One tool's repository on one server, reached directly or through the
/// proxy.
struct Repo<'a> {
    tool: &'a str,
    name: String,
    work: &'a Path,
}

impl Repo<'_> {
    /// The command that runs this tool on the repository through `remote`,
    /// with no local cache.
    fn command(&self, remote: &Remote, args: &[&str]) -> Result<Command, String> {
        match self.tool {
            "lifeboat" => {
                let mut c = Command::new(lifeboat_program()?);
                c.env("LIFEBOAT_PASSWORD", PASSWORD)
                    .env("LIFEBOAT_NO_CACHE", "1")
                    .env("LIFEBOAT_STATE_DIR", self.work.join("state"))
                    .args(["-q", "-d", &remote.lifeboat_url(&self.name)?])
                    .args(args);
                Ok(c)
            }
            "restic" => {
                let (repo, options) = remote.restic_repo(&self.name)?;
                let mut c = Command::new("restic");
                c.env("RESTIC_PASSWORD", PASSWORD)
                    .args(["-q", "-r", &repo, "--no-cache"])
                    .args(&options)
                    .args(args);
                Ok(c)
            }
            other => Err(format!("unknown tool {other:?} (lifeboat, restic)")),
        }
    }
}

/// One read of a mounted snapshot.
#[derive(Clone, Copy)]
struct Reading {
    seconds: f64,
    /// The size of tar's output (the same for both tools when both read
    /// everything).
    tar_bytes: u64,
    /// Peak resident set of the mount process, bytes.
    peak_rss: u64,
}

/// True when a file system is mounted exactly at `at`.
fn is_mounted(at: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == at)
}

/// Peak resident set of process `pid`, bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Stops a mount with SIGINT and waits for it (SIGKILL and a lazy unmount
/// if it hangs).
fn stop(mut child: Child, at: &Path) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    if is_mounted(at) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(at)
            .status();
    }
}

/// Mounts `repo` through `remote`, reads the snapshot of `source` with tar,
/// unmounts; `None` when tar ran past `cap` seconds.
fn read_mounted(
    repo: &Repo<'_>,
    remote: &Remote,
    source: &Path,
    cap: u64,
) -> Result<Option<Reading>, String> {
    let at = repo.work.join(format!("mnt-{}", repo.tool));
    if is_mounted(&at) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&at)
            .status();
    }
    std::fs::create_dir_all(&at).map_err(|e| e.to_string())?;
    let at = at.canonicalize().map_err(|e| e.to_string())?;
    let log = repo.work.join(format!("mount-{}.log", repo.tool));
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut cmd = repo.command(remote, &["mount", &at.to_string_lossy()])?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let relative = source.strip_prefix("/").map_err(|e| e.to_string())?;
    let dir = at.join("snapshots/latest").join(relative);
    let deadline = Instant::now() + MOUNT_WAIT;
    // The snapshot's directory, seen through the mount (not the empty
    // mount point).
    while !(is_mounted(&at) && dir.is_dir()) {
        if Instant::now() > deadline {
            stop(child, &at);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{} mount did not show {dir:?}: {text}", repo.tool));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id();
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg(cap.to_string())
        .args(["sh", "-c", "tar cf - -C \"$1\" . | wc -c", "sh"])
        .arg(&dir)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("tar: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss(pid);
    stop(child, &at);
    // timeout(1) exits 124 when it stopped tar.
    if out.status.code() == Some(124) {
        return Ok(None);
    }
    let tar_bytes = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("tar through {}'s mount failed: {:?}", repo.tool, out))?;
    Ok(Some(Reading {
        seconds,
        tar_bytes,
        peak_rss: peak,
    }))
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let args = parse()?;
    let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let work = base.join("lifeboat-mount-bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let (bytes, files) = tree_size(&args.source);
    warm(&args.source);
    println!(
        "Reading every file of a mounted snapshot of {} ({files} files, {:.0} MB) with \
         `tar cf - . | wc -c`; no local cache; seconds (peak RSS of the mount process, MB)\n",
        args.source.display(),
        bytes as f64 / 1e6
    );
    for protocol in &args.protocols {
        let upstream = remote::upstream(protocol)?;
        let proxy = runtime
            .block_on(wan::start(upstream, args.link))
            .map_err(|e| format!("proxy: {e}"))?;
        let direct = Remote::new(protocol, upstream, &work)?;
        let far = Remote::new(protocol, proxy, &work)?;
        let repos: Vec<Repo<'_>> = args
            .tools
            .iter()
            .map(|tool| Repo {
                tool,
                name: format!("mount-bench-{tool}-{}", std::process::id()),
                work: &work,
            })
            .collect();
        for repo in &repos {
            eprintln!(
                "{protocol}: {} backup of {}...",
                repo.tool,
                args.source.display()
            );
            measure(&mut repo.command(&direct, &["init"])?)?;
            let source = args.source.to_string_lossy();
            measure(&mut repo.command(&direct, &["backup", &source])?)?;
        }
        println!("### {protocol}\n");
        print!("| link |");
        for tool in &args.tools {
            print!(" {tool} |");
        }
        if args.tools.len() == 2 {
            print!(" ratio |");
        }
        println!();
        println!(
            "|---|{}",
            "---:|".repeat(args.tools.len() + usize::from(args.tools.len() == 2))
        );
        for link in &args.links {
            let (remote, shown) = match link.as_str() {
                "loopback" => (&direct, "loopback".to_string()),
                "wan" => (
                    &far,
                    format!(
                        "{} ms, {} Mbit/s",
                        args.link.rtt.as_millis(),
                        args.link.bits_per_second / 1_000_000
                    ),
                ),
                other => return Err(format!("unknown link {other:?} (loopback, wan)")),
            };
            let mut readings = Vec::new();
            for repo in &repos {
                eprintln!("{protocol} / {link}: tar through {}'s mount...", repo.tool);
                readings.push(read_mounted(repo, remote, &args.source, args.cap)?);
            }
            print!("| {shown} |");
            for reading in &readings {
                match reading {
                    Some(r) => print!(" {:.1} ({:.0}) |", r.seconds, r.peak_rss as f64 / 1e6),
                    None => print!(" > {} |", args.cap),
                }
            }
            if let [ours, theirs] = &readings[..] {
                match (ours, theirs) {
                    (Some(a), Some(b)) => print!(" {:.3} |", a.seconds / b.seconds),
                    (Some(a), None) => print!(" < {:.3} |", a.seconds / args.cap as f64),
                    _ => print!(" – |"),
                }
            }
            println!();
            let sizes: Vec<u64> = readings.iter().flatten().map(|r| r.tar_bytes).collect();
            if sizes.windows(2).any(|w| w[0] != w[1]) {
                println!("\n(tar's output differs in size between the tools: {sizes:?})\n");
            }
        }
        println!();
    }
    Ok(())
}
