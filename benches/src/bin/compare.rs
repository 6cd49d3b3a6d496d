//! Side-by-side comparison of Lifeboat with restic, rustic and borg on the
//! same source tree, in one run: first backup, no-change backup,
//! one-file-changed backup, full restore, repository size and peak RSS.
//!
//! ```text
//! benches/compare.sh [--runs N] [--json] [--keep] [--restore-dir DIR]
//!                    [--tools lifeboat,restic,rustic,borg] [SOURCE]
//! ```
//!
//! Restores go to the work directory (under `$TMPDIR`, default `/tmp`), or
//! under `--restore-dir`: on an ext4 without a journal, creating files
//! scans past every inode freed in the last minutes (`recently_deleted`), so
//! restores on a disk where big trees were just deleted measure that scan
//! more than the tools; a tmpfs such as `/dev/shm` measures the tools alone.
//!
//! The source (default `/usr/share`) is copied once into a work directory so
//! that one file can be changed between the second and third backups without
//! touching the original; the copy also leaves every tool the same warm page
//! cache, and every backup starts with the source read once more (borg evicts
//! what it reads from the cache). Each run gives every tool a fresh repository with a fixed password,
//! its own cache directory, and the same steps in the same order; the table
//! shows the median of the runs. Peers are the tools found on `PATH`; a
//! missing peer is listed as such, never faked.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_benches::process::{
    for_each_file, lifeboat_program, measure, median, tree_size, warm, Sample,
};

const PASSWORD: &str = "benchmark-password";

/// How one tool initializes, backs up and restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tool {
    Lifeboat,
    Restic,
    Rustic,
    Borg,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Lifeboat => "lifeboat",
            Tool::Restic => "restic",
            Tool::Rustic => "rustic",
            Tool::Borg => "borg",
        }
    }

    fn parse(name: &str) -> Option<Tool> {
        [Tool::Lifeboat, Tool::Restic, Tool::Rustic, Tool::Borg]
            .into_iter()
            .find(|t| t.name() == name)
    }

    fn version(self, program: &Path) -> String {
        let flag = if self == Tool::Rustic {
            "--version"
        } else if self == Tool::Restic {
            "version"
        } else {
            "--version"
        };
        Command::new(program)
            .arg(flag)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    }
}

/// Everything one tool needs for a run.
struct Runner {
    tool: Tool,
    program: PathBuf,
    repo: PathBuf,
    env: Vec<(String, OsString)>,
    backups: usize,
}

impl Runner {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn init(&mut self) -> Result<(), String> {
        let mut cmd = self.command();
        match self.tool {
            Tool::Lifeboat => cmd.arg("-q").arg("-d").arg(&self.repo).arg("init"),
            Tool::Restic => cmd.arg("-q").arg("-r").arg(&self.repo).arg("init"),
            Tool::Rustic => cmd.arg("-r").arg(&self.repo).arg("init"),
            Tool::Borg => cmd.args(["init", "-e", "repokey-blake2"]).arg(&self.repo),
        };
        self.backups = 0;
        measure(&mut cmd).map(|_| ())
    }

    fn backup(&mut self, source: &Path) -> Result<Sample, String> {
        warm(source);
        self.backups += 1;
        let mut cmd = self.command();
        match self.tool {
            Tool::Lifeboat => cmd.arg("-q").arg("-d").arg(&self.repo).arg("backup"),
            Tool::Restic => cmd.arg("-q").arg("-r").arg(&self.repo).arg("backup"),
            Tool::Rustic => cmd.arg("-r").arg(&self.repo).arg("backup"),
            Tool::Borg => {
                cmd.arg("create")
                    .arg(format!("{}::backup-{}", self.repo.display(), self.backups))
            }
        };
        cmd.arg(source);
        measure(&mut cmd)
    }

    fn restore(&self, target: &Path) -> Result<Sample, String> {
        fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
        let mut cmd = self.command();
        match self.tool {
            Tool::Lifeboat => cmd
                .arg("-q")
                .arg("-d")
                .arg(&self.repo)
                .args(["restore", "latest", "--target"])
                .arg(target),
            Tool::Restic => cmd
                .arg("-q")
                .arg("-r")
                .arg(&self.repo)
                .args(["restore", "latest", "--target"])
                .arg(target),
            Tool::Rustic => cmd
                .arg("-r")
                .arg(&self.repo)
                .args(["restore", "latest"])
                .arg(target),
            Tool::Borg => cmd
                .arg("extract")
                .arg(format!("{}::backup-{}", self.repo.display(), self.backups))
                .current_dir(target),
        };
        measure(&mut cmd)
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The file changed between the second and third backups: the first regular
/// file of at least 1 MiB in name order (else the largest), so every tool
/// re-reads a real file, not a trivial one.
fn pick_file_to_change(dir: &Path) -> Option<PathBuf> {
    let mut largest: Option<(u64, PathBuf)> = None;
    let mut candidates = Vec::new();
    for_each_file(dir, |path, meta| {
        if meta.len() >= 1 << 20 {
            candidates.push(path.to_path_buf());
        }
        if largest.as_ref().is_none_or(|(len, _)| meta.len() > *len) {
            largest = Some((meta.len(), path.to_path_buf()));
        }
    });
    candidates.sort();
    candidates.into_iter().next().or(largest.map(|(_, p)| p))
}

/// Overwrites 4 KiB in the middle of `file` with bytes that differ each run.
fn change_file(file: &Path, run: usize) -> Result<(), String> {
    use std::io::{Seek, SeekFrom};
    let len = fs::metadata(file).map_err(|e| e.to_string())?.len();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let patch: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(31) as u8) ^ (run as u8).wrapping_add(0x5a))
        .collect();
    f.seek(SeekFrom::Start(len / 2))
        .map_err(|e| e.to_string())?;
    f.write_all(&patch).map_err(|e| e.to_string())?;
    Ok(())
}

/// Rows of the table, in order: (key, label, unit).
const ROWS: [(&str, &str, &str); 7] = [
    ("first_backup_s", "first backup", "s"),
    ("no_change_backup_s", "no-change backup", "s"),
    ("one_file_changed_backup_s", "one-file-changed backup", "s"),
    ("full_restore_s", "full restore", "s"),
    ("repository_mb", "repository size", "MB"),
    ("peak_rss_backup_mb", "peak RSS, backup", "MB"),
    ("peak_rss_restore_mb", "peak RSS, restore", "MB"),
];

struct Options {
    source: PathBuf,
    runs: usize,
    json: bool,
    tools: Vec<Tool>,
    keep: bool,
    /// Where restores go instead of the work directory.
    restore_dir: Option<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        source: PathBuf::from("/usr/share"),
        runs: 3,
        json: false,
        tools: vec![Tool::Lifeboat, Tool::Restic, Tool::Rustic, Tool::Borg],
        keep: false,
        restore_dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => opts.json = true,
            "--keep" => opts.keep = true,
            "--restore-dir" => {
                opts.restore_dir = Some(PathBuf::from(
                    args.next().ok_or("--restore-dir needs a directory")?,
                ))
            }
            "--runs" => {
                opts.runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a positive number")?
            }
            "--tools" => {
                let list = args.next().ok_or("--tools needs a comma-separated list")?;
                opts.tools = list
                    .split(',')
                    .map(|n| Tool::parse(n).ok_or(format!("unknown tool {n:?}")))
                    .collect::<Result<_, _>>()?;
                if !opts.tools.contains(&Tool::Lifeboat) {
                    opts.tools.insert(0, Tool::Lifeboat);
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: compare [--runs N] [--json] [--keep] [--restore-dir DIR] [--tools lifeboat,restic,rustic,borg] [SOURCE]"
                );
                std::process::exit(0);
            }
            other if other.starts_with('-') => return Err(format!("unknown flag {other}")),
            other => opts.source = PathBuf::from(other),
        }
    }
    Ok(opts)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let opts = parse_args()?;
    if !opts.source.is_dir() {
        return Err(format!("{} is not a directory", opts.source.display()));
    }
    let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let work = base.join(format!("lifeboat-compare.{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let restores = match &opts.restore_dir {
        Some(dir) => dir.join(format!("lifeboat-compare.{}", std::process::id())),
        None => work.join("restores"),
    };
    fs::create_dir_all(&restores).map_err(|e| format!("{}: {e}", restores.display()))?;
    let result = measure_all(&opts, &work, &restores);
    if !opts.keep {
        let _ = fs::remove_dir_all(&restores);
        let _ = fs::remove_dir_all(&work);
    }
    result
}

/// samples[tool][row] = one value per run.
type Samples = BTreeMap<Tool, BTreeMap<&'static str, Vec<f64>>>;

fn record(samples: &mut Samples, tool: Tool, key: &'static str, value: f64) {
    samples
        .entry(tool)
        .or_default()
        .entry(key)
        .or_default()
        .push(value);
}

/// Prints one timed command and records its seconds under `keys.0` and,
/// when `keys.1` names a row, its peak RSS there.
fn record_sample(
    samples: &mut Samples,
    run: usize,
    tool: Tool,
    label: &str,
    keys: (&'static str, Option<&'static str>),
    s: &Sample,
) {
    let rss_mb = s.peak_rss as f64 / 1e6;
    eprintln!(
        "run {run}: {:<8} {label:<17} {:6.2} s {rss_mb:6.0} MB",
        tool.name(),
        s.seconds
    );
    record(samples, tool, keys.0, s.seconds);
    if let Some(rss) = keys.1 {
        record(samples, tool, rss, rss_mb);
    }
}

fn measure_all(opts: &Options, work: &Path, restores: &Path) -> Result<(), String> {
    let source = work.join("source");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&opts.source)
        .arg(&source)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    // Unreadable files in a system tree make cp exit 1 after copying the rest.
    if !source.is_dir() {
        return Err(format!(
            "copying {} failed ({status})",
            opts.source.display()
        ));
    }
    // Flush the copy now, so its writeback does not slow the first tool measured.
    let _ = Command::new("sync").status();
    let (source_bytes, source_files) = tree_size(&source);
    let changed = pick_file_to_change(&source).ok_or("the source holds no regular file")?;

    let mut runners = Vec::new();
    let mut missing = Vec::new();
    let mut versions = BTreeMap::new();
    for &tool in &opts.tools {
        let program = match tool {
            Tool::Lifeboat => Some(lifeboat_program()?),
            other => find_program(other.name()),
        };
        let Some(program) = program else {
            missing.push(tool.name());
            continue;
        };
        versions.insert(tool.name(), tool.version(&program));
        let dir = work.join(tool.name());
        let env = vec![
            ("LIFEBOAT_PASSWORD".to_string(), PASSWORD.into()),
            ("RESTIC_PASSWORD".to_string(), PASSWORD.into()),
            ("RUSTIC_PASSWORD".to_string(), PASSWORD.into()),
            ("BORG_PASSPHRASE".to_string(), PASSWORD.into()),
            ("RUSTIC_NO_PROGRESS".to_string(), "true".into()),
            ("RESTIC_PROGRESS_FPS".to_string(), "0.001".into()),
            ("XDG_CACHE_HOME".to_string(), dir.join("cache").into()),
            ("BORG_BASE_DIR".to_string(), dir.join("borg-base").into()),
        ];
        runners.push(Runner {
            tool,
            program,
            repo: dir.join("repo"),
            env,
            backups: 0,
        });
    }

    eprintln!(
        "source: {} ({} files, {:.0} MB), copied to {}; {} cores; {} run(s); changed file: {}",
        opts.source.display(),
        source_files,
        source_bytes as f64 / 1e6,
        source.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        opts.runs,
        changed.strip_prefix(&source).unwrap_or(&changed).display(),
    );
    for name in &missing {
        eprintln!("{name}: not found on PATH, left out");
    }

    let mut samples = Samples::new();
    for run in 1..=opts.runs {
        // Each run starts with the next tool, so none is always first (with
        // the coldest caches) or last.
        runners.rotate_left(usize::from(run > 1));
        for r in &mut runners {
            let _ = fs::remove_dir_all(r.repo.parent().unwrap_or(&r.repo));
            fs::create_dir_all(r.repo.parent().unwrap_or(&r.repo)).map_err(|e| e.to_string())?;
            r.init()?;
        }
        // The three backups in turn; the file changes before the third.
        let phases = [
            ("first backup", "first_backup_s"),
            ("no-change backup", "no_change_backup_s"),
            ("one-file backup", "one_file_changed_backup_s"),
        ];
        for (phase, (label, key)) in phases.into_iter().enumerate() {
            if phase == 2 {
                change_file(&changed, run)?;
            }
            for r in &mut runners {
                let s = r.backup(&source)?;
                let rss = (phase == 0).then_some("peak_rss_backup_mb");
                record_sample(&mut samples, run, r.tool, label, (key, rss), &s);
                if phase == 2 {
                    let size = tree_size(&r.repo).0 as f64 / 1e6;
                    record(&mut samples, r.tool, "repository_mb", size);
                }
            }
        }
        // Restores stay until the benchmark is over: ext4 scans past inodes
        // freed in the last minutes when it creates files, so deleting one
        // restore would slow the next one.
        for r in &runners {
            let target = restores.join(format!("{}-{run}", r.tool.name()));
            let s = r.restore(&target)?;
            let keys = ("full_restore_s", Some("peak_rss_restore_mb"));
            record_sample(&mut samples, run, r.tool, "full restore", keys, &s);
            if r.tool == Tool::Lifeboat {
                check_restored(&source, &target)?;
            }
        }
    }

    let medians: BTreeMap<Tool, BTreeMap<&str, f64>> = samples
        .into_iter()
        .map(|(tool, rows)| {
            let rows = rows.into_iter().map(|(k, v)| (k, median(&v))).collect();
            (tool, rows)
        })
        .collect();
    let mut tools: Vec<Tool> = runners.iter().map(|r| r.tool).collect();
    tools.sort();
    if opts.json {
        print_json(
            opts,
            source_bytes,
            source_files,
            &versions,
            &missing,
            &tools,
            &medians,
        );
    } else {
        print_table(&tools, &versions, &medians);
    }
    Ok(())
}

/// The restored tree must equal the source: `diff -r` on the two.
fn check_restored(source: &Path, target: &Path) -> Result<(), String> {
    let restored = target.join(source.strip_prefix("/").unwrap_or(source));
    let out = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(source)
        .arg(&restored)
        .output()
        .map_err(|e| format!("diff: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "lifeboat's restore differs from the source: {}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
        ))
    }
}

/// Lifeboat's value over the best (smallest) peer value, and that peer.
fn ratio_to_best_peer(
    tools: &[Tool],
    medians: &BTreeMap<Tool, BTreeMap<&str, f64>>,
    key: &str,
) -> Option<(f64, Tool)> {
    let ours = *medians.get(&Tool::Lifeboat)?.get(key)?;
    let (best, peer) = tools
        .iter()
        .filter(|&&t| t != Tool::Lifeboat)
        .filter_map(|&t| Some((*medians.get(&t)?.get(key)?, t)))
        .min_by(|a, b| a.0.total_cmp(&b.0))?;
    Some((ours / best, peer))
}

fn print_table(
    tools: &[Tool],
    versions: &BTreeMap<&str, String>,
    medians: &BTreeMap<Tool, BTreeMap<&str, f64>>,
) {
    for t in tools {
        eprintln!(
            "{:<8} {}",
            t.name(),
            versions.get(t.name()).map_or("", |v| v.as_str())
        );
    }
    let mut header = format!("{:<30}", "median");
    for t in tools {
        header.push_str(&format!("{:>11}", t.name()));
    }
    header.push_str("   lifeboat / best peer");
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for (key, label, unit) in ROWS {
        let mut line = format!("{:<30}", format!("{label} ({unit})"));
        for t in tools {
            let v = medians.get(t).and_then(|m| m.get(key)).copied();
            line.push_str(&match v {
                Some(v) if unit == "s" => format!("{v:>11.2}"),
                Some(v) => format!("{v:>11.1}"),
                None => format!("{:>11}", "-"),
            });
        }
        if let Some((ratio, peer)) = ratio_to_best_peer(tools, medians, key) {
            line.push_str(&format!("   {ratio:>5.2} ({})", peer.name()));
        }
        println!("{line}");
    }
}

fn print_json(
    opts: &Options,
    source_bytes: u64,
    source_files: u64,
    versions: &BTreeMap<&str, String>,
    missing: &[&str],
    tools: &[Tool],
    medians: &BTreeMap<Tool, BTreeMap<&str, f64>>,
) {
    let mut results = serde_json::Map::new();
    for t in tools {
        let mut row = serde_json::Map::new();
        row.insert(
            "version".into(),
            versions.get(t.name()).cloned().unwrap_or_default().into(),
        );
        for (key, _, _) in ROWS {
            if let Some(v) = medians.get(t).and_then(|m| m.get(key)) {
                row.insert(key.into(), (*v).into());
            }
        }
        results.insert(t.name().into(), row.into());
    }
    let mut ratios = serde_json::Map::new();
    for (key, _, _) in ROWS {
        if let Some((ratio, peer)) = ratio_to_best_peer(tools, medians, key) {
            ratios.insert(
                key.into(),
                serde_json::json!({ "ratio": ratio, "best_peer": peer.name() }),
            );
        }
    }
    let doc = serde_json::json!({
        "source": opts.source.display().to_string(),
        "source_bytes": source_bytes,
        "source_files": source_files,
        "runs": opts.runs,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "missing_tools": missing,
        "results": results,
        "lifeboat_to_best_peer": ratios,
    });
    println!("{doc:#}");
}
