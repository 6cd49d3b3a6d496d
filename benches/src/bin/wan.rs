//! Lifeboat against restic over an imitated internet link (`../wan.sh`).
//!
//! Starts a latency/bandwidth proxy (`lifeboat_benches::wan`) in front of
//! the S3 server (moto) and the SSH server the test scripts start, then runs
//! both tools through it on each data set, one after the other, with no
//! local metadata cache (Lifeboat `LIFEBOAT_NO_CACHE=1`, restic
//! `--no-cache`): the disaster case of a new machine. Rows: first backup,
//! no-change backup, full restore, check, ls. Wall time and peak RSS of each
//! command; one markdown table per protocol on stdout, progress on stderr.
//!
//! Environment (from `scripts/servers/*.sh`): `LIFEBOAT_TEST_S3_ENDPOINT`,
//! `LIFEBOAT_TEST_S3_BUCKET`, `AWS_*`; `LIFEBOAT_TEST_SFTP_{HOST,PORT,USER,
//! IDENTITY,KNOWN_HOSTS,ROOT}`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lifeboat_benches::process::{
    lifeboat_program, measure, measure_capped, tree_size, warm, Sample,
};
use lifeboat_benches::random_bytes;
use lifeboat_benches::remote::{self, Remote};
use lifeboat_benches::wan::{self, Link};

const USAGE: &str = "usage: wan [--rtt-ms N] [--mbit N] [--cap SECONDS] [--sets doc,dirs,big] [--protocols s3,sftp] [--tools lifeboat,restic] [--serve]";
const ROWS: [&str; 5] = [
    "first backup",
    "no-change backup",
    "full restore",
    "check",
    "ls",
];
const PASSWORD: &str = "wan-benchmark";

struct Args {
    link: Link,
    sets: Vec<String>,
    protocols: Vec<String>,
    tools: Vec<String>,
    /// A command still running after this long is stopped and shown as
    /// "> cap" (a lower bound: restic reads one tree per round trip).
    cap: u64,
    /// Only start the proxies, print their addresses and run until killed.
    serve: bool,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn list(value: Option<String>) -> Result<Vec<String>, String> {
    let v = value.ok_or(USAGE)?;
    Ok(v.split(',').map(str::to_string).collect())
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        link: Link {
            rtt: Duration::from_millis(40),
            bits_per_second: 100_000_000,
        },
        sets: list(Some("doc,dirs,big".into()))?,
        protocols: list(Some("s3,sftp".into()))?,
        tools: list(Some("lifeboat,restic".into()))?,
        serve: false,
        cap: 600,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let number = |v: Option<String>| -> Result<u64, String> {
            v.and_then(|v| v.parse().ok())
                .ok_or_else(|| USAGE.to_string())
        };
        match arg.as_str() {
            "--rtt-ms" => args.link.rtt = Duration::from_millis(number(it.next())?),
            "--mbit" => args.link.bits_per_second = number(it.next())? * 1_000_000,
            "--sets" => args.sets = list(it.next())?,
            "--protocols" => args.protocols = list(it.next())?,
            "--tools" => args.tools = list(it.next())?,
            "--serve" => args.serve = true,
            "--cap" => args.cap = number(it.next())?,
            _ => return Err(USAGE.into()),
        }
    }
    Ok(args)
}

/// One data set: its name and directory.
fn data_set(name: &str, base: &Path) -> Result<PathBuf, String> {
    let dir = base.join(name);
    match name {
        "doc" => return Ok(PathBuf::from("/usr/share/doc")),
        "dirs" if !dir.exists() => {
            // Latency-bound: 20,000 directories of three small files.
            let tmp = base.join("dirs.tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            for d in 0..20_000u32 {
                let sub = tmp.join(format!("d{:03}/e{:03}", d / 100, d % 100));
                std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
                for f in 0..3 {
                    std::fs::write(
                        sub.join(format!("f{f}")),
                        format!("file {d} {f}\n").repeat(4),
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
            std::fs::rename(&tmp, &dir).map_err(|e| e.to_string())?;
        }
        "big" if !dir.exists() => {
            // Bandwidth-bound: 400 MB of incompressible files.
            let tmp = base.join("big.tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
            for f in 0..50u64 {
                std::fs::write(tmp.join(format!("r{f:02}")), random_bytes(8 << 20, f))
                    .map_err(|e| e.to_string())?;
            }
            std::fs::rename(&tmp, &dir).map_err(|e| e.to_string())?;
        }
        "dirs" | "big" => {}
        other => return Err(format!("unknown data set {other:?} (doc, dirs, big)")),
    }
    Ok(dir)
}

/// Runs `cmd` under `timeout`: `None` when it ran past `cap` seconds (then
/// `unlock` removes the lock the stopped command left).
fn capped(cmd: Command, cap: u64, unlock: impl Fn() -> Command) -> Result<Option<Sample>, String> {
    let sample = measure_capped(&cmd, cap)?;
    if sample.is_none() {
        measure(&mut unlock())?;
    }
    Ok(sample)
}

/// The five rows for one tool: (seconds, peak RSS) each, `None` past the cap.
fn run_tool(
    tool: &str,
    remote: &Remote,
    set: &str,
    source: &Path,
    work: &Path,
    cap: u64,
) -> Result<Vec<Option<Sample>>, String> {
    let repo = format!("wan-{tool}-{set}-{}", std::process::id());
    let restore_to = work.join(format!("restore-{tool}"));
    let _ = std::fs::remove_dir_all(&restore_to);
    let mut samples = Vec::new();
    match tool {
        "lifeboat" => {
            let program = lifeboat_program()?;
            let url = remote.lifeboat_url(&repo)?;
            let lb = |args: &[&str]| {
                let mut c = Command::new(&program);
                c.env("LIFEBOAT_PASSWORD", PASSWORD)
                    .env("LIFEBOAT_NO_CACHE", "1")
                    .env("LIFEBOAT_STATE_DIR", work.join("state"))
                    .args(["-d", &url])
                    .args(args);
                c
            };
            measure(&mut lb(&["init"]))?;
            let src = source.to_str().ok_or("source path is not UTF-8")?;
            let target = restore_to.to_str().ok_or("work path is not UTF-8")?;
            samples.push(capped(lb(&["backup", src]), cap, || lb(&["unlock"]))?);
            if samples[0].is_none() {
                // No snapshot: nothing to compare the other rows on.
                return Ok(vec![None; ROWS.len()]);
            }
            samples.push(capped(lb(&["backup", src]), cap, || lb(&["unlock"]))?);
            samples.push(capped(
                lb(&["restore", "latest", "--target", target]),
                cap,
                || lb(&["unlock"]),
            )?);
            samples.push(capped(lb(&["check"]), cap, || lb(&["unlock"]))?);
            samples.push(capped(lb(&["ls", "latest"]), cap, || lb(&["unlock"]))?);
        }
        "restic" => {
            let (repo, options) = remote.restic_repo(&repo)?;
            let restic = |args: &[&str]| {
                let mut c = Command::new("restic");
                c.env("RESTIC_PASSWORD", PASSWORD)
                    .args(["-r", &repo, "--no-cache"])
                    .args(&options)
                    .args(args);
                c
            };
            measure(&mut restic(&["init"]))?;
            let src = source.to_str().ok_or("source path is not UTF-8")?;
            let target = restore_to.to_str().ok_or("work path is not UTF-8")?;
            samples.push(capped(restic(&["backup", src]), cap, || {
                restic(&["unlock"])
            })?);
            if samples[0].is_none() {
                return Ok(vec![None; ROWS.len()]);
            }
            samples.push(capped(restic(&["backup", src]), cap, || {
                restic(&["unlock"])
            })?);
            samples.push(capped(
                restic(&["restore", "latest", "--target", target]),
                cap,
                || restic(&["unlock"]),
            )?);
            samples.push(capped(restic(&["check"]), cap, || restic(&["unlock"]))?);
            samples.push(capped(restic(&["ls", "latest"]), cap, || {
                restic(&["unlock"])
            })?);
        }
        other => return Err(format!("unknown tool {other:?} (lifeboat, restic)")),
    }
    let _ = std::fs::remove_dir_all(&restore_to);
    Ok(samples)
}

fn real_main() -> Result<(), String> {
    let args = parse()?;
    let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let work = base.join("lifeboat-wan");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let link = args.link;
    println!(
        "WAN benchmark: {} ms round trip, {} Mbit/s each way, no local cache; seconds (peak RSS MB)\n",
        link.rtt.as_millis(),
        link.bits_per_second / 1_000_000
    );
    for protocol in &args.protocols {
        let upstream = remote::upstream(protocol)?;
        let proxy = runtime
            .block_on(wan::start(upstream, link))
            .map_err(|e| format!("proxy: {e}"))?;
        let remote = Remote::new(protocol, proxy, &work)?;
        if args.serve {
            println!(
                "{protocol}: 127.0.0.1:{} -> {upstream}{}",
                proxy.port(),
                remote
                    .known_hosts
                    .as_ref()
                    .map(|k| format!(" (known_hosts {})", k.display()))
                    .unwrap_or_default()
            );
            continue;
        }
        println!("### {protocol}\n");
        print!("| set | row |");
        for tool in &args.tools {
            print!(" {tool} |");
        }
        if args.tools.len() == 2 {
            print!(" ratio |");
        }
        println!();
        println!(
            "|---|---|{}",
            "---:|".repeat(args.tools.len() + usize::from(args.tools.len() == 2))
        );
        for set in &args.sets {
            let source = data_set(set, &work)?;
            let (bytes, files) = tree_size(&source);
            warm(&source);
            eprintln!(
                "{protocol} / {set}: {files} files, {:.0} MB",
                bytes as f64 / 1e6
            );
            let mut columns = Vec::new();
            for tool in &args.tools {
                eprintln!("  {tool}...");
                columns.push(run_tool(tool, &remote, set, &source, &work, args.cap)?);
            }
            for (r, row) in ROWS.iter().enumerate() {
                print!("| {set} | {row} |");
                for column in &columns {
                    if r > 0 && column[0].is_none() {
                        print!(" – (no snapshot) |");
                        continue;
                    }
                    match column[r] {
                        Some(s) => print!(" {:.1} ({:.0}) |", s.seconds, s.peak_rss as f64 / 1e6),
                        None => print!(" > {} |", args.cap),
                    }
                }
                if let [ours, theirs] = &columns[..] {
                    match (ours[r], theirs[r]) {
                        (Some(a), Some(b)) => print!(" {:.2} |", a.seconds / b.seconds),
                        (Some(a), None) => print!(" < {:.3} |", a.seconds / args.cap as f64),
                        _ => print!(" – |"),
                    }
                }
                println!();
            }
            if set == "big" {
                for (tool, column) in args.tools.iter().zip(&columns) {
                    // Past the cap: at most the share the cap allows.
                    let share = |s: Option<Sample>| {
                        let seconds = s.map_or(args.cap as f64, |s| s.seconds);
                        100.0 * bytes as f64 * 8.0 / seconds / link.bits_per_second as f64
                    };
                    println!(
                        "| big | {tool}: link used by backup / restore | {:.0} % / {:.0} % |",
                        share(column[0]),
                        share(column[2])
                    );
                }
            }
        }
        println!();
    }
    if args.serve {
        runtime.block_on(std::future::pending::<()>());
    }
    Ok(())
}
