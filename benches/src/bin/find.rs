//! `find` across many snapshots: Lifeboat against restic (`../find.sh`).
//!
//! A copy of /usr/share is backed up N times (default 30) by both tools,
//! one file changed before each backup, into repositories kept in the
//! benchmark's directory (linked under the SFTP test server's root). Then
//! both search every snapshot for the same pattern, with no local cache (Lifeboat `LIFEBOAT_NO_CACHE=1`, restic
//! `--no-cache`), on loopback (the repository as a local path) and through
//! the latency proxy (the same repository over SFTP); and with each tool's
//! cache warm, on loopback. Before timing, both answers are parsed and the
//! number of (path, snapshot) matches compared, so the tools are known to
//! do the same work. Then both dump one directory of the newest snapshot
//! as tar to a pipe, the same two ways. Medians of `--runs`; a command past
//! `--cap` seconds is stopped and shown as "> cap". A markdown table on
//! stdout.
//!
//! Environment (from `scripts/servers/sftp.sh`): `LIFEBOAT_TEST_SFTP_{HOST,
//! PORT,USER,IDENTITY,KNOWN_HOSTS,ROOT}`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lifeboat_benches::process::{lifeboat_program, measure_capped, median};
use lifeboat_benches::remote::{self, env, Remote};
use lifeboat_benches::wan::{self, Link};

const USAGE: &str = "usage: find [--snapshots N] [--runs N] [--rtt-ms N] [--mbit N] [--pattern GLOB] [--source DIR] [--dump SUBDIR] [--cap SECONDS]";
const PASSWORD: &str = "find-benchmark";

struct Args {
    snapshots: usize,
    runs: usize,
    link: Link,
    pattern: String,
    source: PathBuf,
    /// The directory (below the source) dumped as tar.
    dump: String,
    /// Seconds a command may run before it is stopped and reported as
    /// "more than".
    cap: u64,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        snapshots: 30,
        runs: 3,
        link: Link {
            rtt: Duration::from_millis(40),
            bits_per_second: 100_000_000,
        },
        pattern: "copyright".into(),
        source: PathBuf::from("/usr/share"),
        dump: "zoneinfo".into(),
        cap: 300,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--snapshots" => args.snapshots = number(value()?)? as usize,
            "--runs" => args.runs = number(value()?)?.max(1) as usize,
            "--rtt-ms" => args.link.rtt = Duration::from_millis(number(value()?)?),
            "--mbit" => args.link.bits_per_second = number(value()?)? * 1_000_000,
            "--pattern" => args.pattern = value()?,
            "--source" => args.source = PathBuf::from(value()?),
            "--dump" => args.dump = value()?,
            "--cap" => args.cap = number(value()?)?,
            _ => return Err(USAGE.into()),
        }
    }
    Ok(args)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn lifeboat(dest: &str, cache: Option<&Path>) -> Result<Command, String> {
    let mut cmd = Command::new(lifeboat_program()?);
    cmd.env("LIFEBOAT_PASSWORD", PASSWORD).arg("-d").arg(dest);
    match cache {
        Some(dir) => cmd.env("XDG_CACHE_HOME", dir),
        None => cmd.env("LIFEBOAT_NO_CACHE", "1"),
    };
    Ok(cmd)
}

fn restic(repo: &str, extra: &[String], cache: Option<&Path>) -> Command {
    let mut cmd = Command::new("restic");
    cmd.env("RESTIC_PASSWORD", PASSWORD)
        .arg("-r")
        .arg(repo)
        .args(extra);
    match cache {
        Some(dir) => cmd.arg("--cache-dir").arg(dir),
        None => cmd.arg("--no-cache"),
    };
    cmd
}

/// Backs `source` up `n` times with each tool, one file changed before
/// each run; skipped when the repositories already hold `n` snapshots.
fn prepare(args: &Args, data: &Path, lb_repo: &Path, restic_repo: &Path) -> Result<(), String> {
    let done = lb_repo.join(format!(".bench-{}-snapshots", args.snapshots));
    if done.exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(lb_repo);
    let _ = std::fs::remove_dir_all(restic_repo);
    if !data.exists() {
        eprintln!(
            "copying {} to {} (once)...",
            args.source.display(),
            data.display()
        );
        run(Command::new("cp").arg("-a").arg(&args.source).arg(data))?;
    }
    let lb = lb_repo.display().to_string();
    let rr = restic_repo.display().to_string();
    run(lifeboat(&lb, None)?.arg("init"))?;
    run(restic(&rr, &[], None).arg("init"))?;
    for i in 0..args.snapshots {
        eprintln!("snapshot {}/{}...", i + 1, args.snapshots);
        std::fs::write(
            data.join("lifeboat-bench-changed.txt"),
            format!("change {i}\n"),
        )
        .map_err(|e| e.to_string())?;
        run(lifeboat(&lb, None)?.arg("backup").arg("-q").arg(data))?;
        run(restic(&rr, &[], None).arg("backup").arg("-q").arg(data))?;
    }
    std::fs::write(&done, b"").map_err(|e| e.to_string())?;
    Ok(())
}

/// (path, snapshot) pairs each tool finds: they must agree.
fn agree(lb: &mut Command, restic: &mut Command) -> Result<u64, String> {
    let ours: serde_json::Value =
        serde_json::from_slice(&run(lb)?).map_err(|e| format!("lifeboat find --json: {e}"))?;
    let ours: u64 = ours["matches"]
        .as_array()
        .ok_or("lifeboat find --json: no matches")?
        .iter()
        .map(|m| m["matches"].as_array().map_or(0, |a| a.len() as u64))
        .sum();
    let theirs: serde_json::Value =
        serde_json::from_slice(&run(restic)?).map_err(|e| format!("restic find --json: {e}"))?;
    let theirs: u64 = theirs
        .as_array()
        .ok_or("restic find --json: not an array")?
        .iter()
        .map(|s| s["hits"].as_u64().unwrap_or(0))
        .sum();
    if ours != theirs {
        return Err(format!(
            "the tools disagree: lifeboat found {ours} (path, snapshot) matches, restic {theirs}"
        ));
    }
    Ok(ours)
}

/// The median of `runs` runs; `None` when a run went past `cap` seconds
/// (stopped by timeout(1); the rest are not tried).
fn time(
    runs: usize,
    cap: u64,
    mut make: impl FnMut() -> Result<Command, String>,
) -> Result<Option<f64>, String> {
    let mut seconds = Vec::new();
    for _ in 0..runs {
        match measure_capped(&make()?, cap)? {
            Some(sample) => seconds.push(sample.seconds),
            None => return Ok(None),
        }
    }
    Ok(Some(median(&seconds)))
}

/// A shell command line: `sh -c "…"` (for a dump's redirection).
fn shell(line: String) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(line);
    cmd
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn real_main() -> Result<(), String> {
    let args = parse()?;
    let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let work = base.join("lifeboat-bench-find");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let data = work.join("share");
    let (lb_repo, restic_repo) = (work.join("repo-lifeboat"), work.join("repo-restic"));
    prepare(&args, &data, &lb_repo, &restic_repo)?;
    // Linked under the SFTP server's root (a new directory each start): the
    // same files are a local path and, through the proxy, a remote one.
    let root = PathBuf::from(env("LIFEBOAT_TEST_SFTP_ROOT")?);
    for (repo, name) in [
        (&lb_repo, "find-bench-lifeboat"),
        (&restic_repo, "find-bench-restic"),
    ] {
        let link = root.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(repo, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    }

    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let proxy = runtime
        .block_on(wan::start(remote::upstream("sftp")?, args.link))
        .map_err(|e| format!("proxy: {e}"))?;
    let remote = Remote::new("sftp", proxy, &work)?;
    let lb_local = lb_repo.display().to_string();
    let rr_local = restic_repo.display().to_string();
    let lb_remote = remote.lifeboat_url("find-bench-lifeboat")?;
    let (rr_remote, rr_extra) = remote.restic_repo("find-bench-restic")?;
    let pattern = args.pattern.clone();
    let lb_find = |dest: &str, cache: Option<&Path>| -> Result<Command, String> {
        let mut cmd = lifeboat(dest, cache)?;
        cmd.args(["find", &pattern]);
        Ok(cmd)
    };
    let restic_find = |repo: &str, extra: &[String], cache: Option<&Path>| {
        let mut cmd = restic(repo, extra, cache);
        cmd.args(["find", &pattern]);
        cmd
    };

    let hits = agree(
        lb_find(&lb_local, None)?.arg("--json"),
        restic_find(&rr_local, &[], None).arg("--json"),
    )?;
    let (lb_cache, restic_cache) = (work.join("cache-lifeboat"), work.join("cache-restic"));
    let _ = std::fs::remove_dir_all(&lb_cache);
    let _ = std::fs::remove_dir_all(&restic_cache);
    // Fill both caches once.
    run(&mut lb_find(&lb_local, Some(&lb_cache))?)?;
    run(&mut restic_find(&rr_local, &[], Some(&restic_cache)))?;

    println!(
        "find {:?} over {} snapshots of {} ({hits} (path, snapshot) matches); median of {} runs, seconds\n",
        args.pattern,
        args.snapshots,
        args.source.display(),
        args.runs
    );
    println!("| case | lifeboat | restic | ratio |");
    println!("|---|---:|---:|---:|");
    let cap = args.cap;
    let row = |name: &str, ours: Option<f64>, theirs: Option<f64>| {
        let show = |v: Option<f64>| v.map_or(format!("> {cap}"), |v| format!("{v:.2}"));
        let ratio = match (ours, theirs) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            (Some(a), None) => format!("< {:.3}", a / cap as f64),
            _ => "–".into(),
        };
        println!("| {name} | {} | {} | {ratio} |", show(ours), show(theirs));
    };
    let link = format!(
        "SFTP, {} ms, {} Mbit/s",
        args.link.rtt.as_millis(),
        args.link.bits_per_second / 1_000_000
    );
    eprintln!("find, loopback, no cache...");
    let ours = time(args.runs, cap, || lb_find(&lb_local, None))?;
    let theirs = time(args.runs, cap, || Ok(restic_find(&rr_local, &[], None)))?;
    row("find, loopback, no cache", ours, theirs);
    eprintln!("find, loopback, warm cache...");
    let ours = time(args.runs, cap, || lb_find(&lb_local, Some(&lb_cache)))?;
    let theirs = time(args.runs, cap, || {
        Ok(restic_find(&rr_local, &[], Some(&restic_cache)))
    })?;
    row("find, loopback, warm cache", ours, theirs);
    eprintln!("find, through the proxy, no cache...");
    let ours = time(args.runs, cap, || lb_find(&lb_remote, None))?;
    let theirs = time(args.runs, cap, || {
        Ok(restic_find(&rr_remote, &rr_extra, None))
    })?;
    row(&format!("find, {link}, no cache"), ours, theirs);

    // dump of a directory of the newest snapshot as tar, to a pipe.
    let dir = data.join(&args.dump);
    let lb_dump = |dest: &str| -> Result<Command, String> {
        let cmd = lifeboat(dest, None)?;
        let envs: String = cmd
            .get_envs()
            .filter_map(|(k, v)| {
                Some(format!(
                    "{}={} ",
                    k.to_string_lossy(),
                    quoted(&v?.to_string_lossy())
                ))
            })
            .collect();
        Ok(shell(format!(
            "{envs}{} -d {} dump latest {} | cat >/dev/null",
            quoted(&lifeboat_program()?.to_string_lossy()),
            quoted(dest),
            quoted(&dir.to_string_lossy())
        )))
    };
    let restic_dump = |repo: &str, extra: &[String]| -> Command {
        let options: String = extra.iter().map(|o| format!("{} ", quoted(o))).collect();
        shell(format!(
            "RESTIC_PASSWORD={PASSWORD} restic -r {} {options}--no-cache dump latest {} | cat >/dev/null",
            quoted(repo),
            quoted(&dir.to_string_lossy())
        ))
    };
    eprintln!("dump, loopback...");
    let ours = time(args.runs, cap, || lb_dump(&lb_local))?;
    let theirs = time(args.runs, cap, || Ok(restic_dump(&rr_local, &[])))?;
    row(
        &format!("dump {} (tar), loopback, no cache", args.dump),
        ours,
        theirs,
    );
    eprintln!("dump, through the proxy...");
    let ours = time(args.runs, cap, || lb_dump(&lb_remote))?;
    let theirs = time(args.runs, cap, || Ok(restic_dump(&rr_remote, &rr_extra)))?;
    row(
        &format!("dump {} (tar), {link}, no cache", args.dump),
        ours,
        theirs,
    );
    Ok(())
}
