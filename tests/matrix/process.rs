//! Cases that drive the real binary: SIGKILL at many points of a backup and
//! of a prune, full disks (destination and restore target), and the S3
//! server killed during sync and during prune.

use lifeboat_tests::FAST_INIT;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_tests::multi::{free_port, lb, Moto};
use lifeboat_tests::{tree, Output, Sandbox};

use super::{tree_bytes, Outcome, ProcessCase};

/// Every process case, in table order.
pub const CASES: &[ProcessCase] = &[
    ProcessCase {
        name: "client SIGKILL x10 in backup",
        run: kill_backup,
    },
    ProcessCase {
        name: "client SIGKILL x10 in prune",
        run: kill_prune,
    },
    ProcessCase {
        name: "full disk: destination",
        run: full_destination,
    },
    ProcessCase {
        name: "full disk: restore target",
        run: full_target,
    },
    ProcessCase {
        name: "S3 server killed in sync",
        run: s3_killed_in_sync,
    },
    ProcessCase {
        name: "S3 server killed in prune",
        run: s3_killed_in_prune,
    },
];

/// A repository on some destinations, the source, and a copy of the source
/// for each snapshot.
pub(super) struct History {
    pub(super) sb: Sandbox,
    pub(super) dests: Vec<String>,
    pub(super) src: PathBuf,
    pub(super) snapshots: Vec<(String, PathBuf)>,
}

impl History {
    fn new(dests: Vec<String>) -> History {
        let sb = Sandbox::new();
        let src = sb.join("src");
        std::fs::create_dir_all(&src).expect("mkdir src");
        let history = History {
            sb,
            dests,
            src,
            snapshots: Vec::new(),
        };
        history.run(FAST_INIT).success();
        history
    }

    pub(super) fn dest_refs(&self) -> Vec<&str> {
        self.dests.iter().map(String::as_str).collect()
    }

    pub(super) fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        lb(&self.sb, &self.dest_refs()).args(args).run()
    }

    /// A new generation of the source: fresh random data of `mib` MiB.
    pub(super) fn grow(&self, seed: u64, generation: u64, mib: u64) {
        tree::write_generated(
            &self.src.join(format!("gen-{generation}.bin")),
            mib << 20,
            10_000 + 2 * (seed * 1000 + generation),
            false,
        );
        tree::write(
            &self.src.join("notes.txt"),
            format!("seed {seed} generation {generation}\n")
                .repeat(500)
                .as_bytes(),
        );
    }

    /// Backs up to completion and remembers a copy of the source.
    fn backup(&mut self) -> Result<(), String> {
        let out = self.run(["--json".as_ref(), "backup".as_ref(), self.src.as_os_str()]);
        if out.code != 0 {
            return Err(format!("backup exit {}: {}", out.code, out.stderr));
        }
        let summary = out.summary();
        let id = summary["snapshot_id"]
            .as_str()
            .ok_or_else(|| format!("no snapshot id: {summary}"))?
            .to_string();
        let copy = self.sb.join(format!("copy-{}", self.snapshots.len()));
        super::copy_tree(&self.src, &copy);
        self.snapshots.push((id, copy));
        Ok(())
    }

    /// Restores every remembered snapshot still listed; compares bit for bit.
    pub(super) fn verify(&self) -> Outcome {
        let mut outcome = Outcome::default();
        let listed = self.run(["--json", "snapshots"]);
        let ids: Vec<String> = listed
            .json()
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for (id, copy) in &self.snapshots {
            if !ids.contains(id) {
                outcome.bytes_lost += tree_bytes(copy);
                continue;
            }
            let target = self.sb.join(format!("restore-{}", rand::random::<u32>()));
            let out = self.run([
                "restore".as_ref(),
                OsStr::new(id),
                "--target".as_ref(),
                target.as_os_str(),
            ]);
            if out.code != 0 {
                outcome.errors_named += 1;
            }
            let root = tree::restored(&target, &self.src);
            for file in tree::regular_files(copy) {
                let rel = file.strip_prefix(copy).unwrap_or(&file);
                let want = std::fs::read(&file).unwrap_or_default();
                if std::fs::read(root.join(rel)).ok().as_deref() != Some(&want[..]) {
                    outcome.bytes_lost += want.len() as u64;
                }
            }
            let _ = std::fs::remove_dir_all(&target);
            outcome.snapshots_verified += 1;
        }
        outcome
    }

    /// `check --read-data` must be clean.
    pub(super) fn check_clean(&self) -> Result<(), String> {
        let out = self.run(["check", "--read-data"]);
        if out.code == 0 {
            Ok(())
        } else {
            Err(format!("check exit {}: {}", out.code, out.stderr))
        }
    }
}

/// A uniform number in [0, 1) for (seed, n).
fn dice(seed: u64, n: u64) -> f64 {
    let h = blake3::hash(format!("{seed}:{n}").as_bytes());
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(eight) >> 11) as f64 / (1u64 << 53) as f64
}

/// Two local destinations in the sandbox.
pub(super) fn two_local() -> History {
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-matrix-")
        .tempdir()
        .expect("tempdir")
        .keep();
    History::new(vec![
        dir.join("a").display().to_string(),
        dir.join("b").display().to_string(),
    ])
}

/// Spawns `args`, kills it with SIGKILL after `delay` (if still running).
fn kill_after(h: &History, args: &[&OsStr], delay: Duration) -> bool {
    let mut running = lb(&h.sb, &h.dest_refs()).args(args).spawn();
    std::thread::sleep(delay);
    let alive = running.is_running();
    if alive {
        running.signal(libc::SIGKILL);
    }
    let _ = running.wait();
    alive
}

fn kill_backup(seed: u64) -> Result<Outcome, String> {
    let mut h = two_local();
    h.grow(seed, 0, 2);
    h.backup()?;
    let mut killed = 0;
    for n in 0..10 {
        // New content every run: a backup that was not killed leaves the
        // next one nothing to do (it would finish at once and never be killed).
        tree::write_generated(
            &h.src.join("gen-1.bin"),
            24 << 20,
            50_000 + seed * 100 + n,
            false,
        );
        // Up to ~0.75 of the time a 24 MiB backup takes here (about 1.3 s).
        let delay = Duration::from_millis(30 + (dice(seed, n) * 950.0) as u64);
        if kill_after(&h, &["backup".as_ref(), h.src.as_os_str()], delay) {
            killed += 1;
        }
    }
    if killed < 5 {
        return Err(format!(
            "only {killed} of 10 backups were still running when killed"
        ));
    }
    h.backup()?;
    h.check_clean()?;
    let mut outcome = h.verify();
    // The leftovers of the killed runs go at the next prune; nothing else does.
    let pruned = h.run(["prune", "--grace", "0s"]);
    if pruned.code != 0 {
        return Err(format!("prune after kills: {}", pruned.stderr));
    }
    h.check_clean()?;
    outcome.absorb(h.verify());
    outcome.errors_named += killed;
    Ok(outcome)
}

fn kill_prune(seed: u64) -> Result<Outcome, String> {
    let mut h = two_local();
    h.grow(seed, 0, 2);
    h.backup()?;
    let points = [
        Some("prune-during-repack"),
        Some("prune-after-index"),
        Some("prune-after-record"),
        Some("prune-during-sweep"),
        None,
        None,
        None,
        None,
        None,
        None,
    ];
    let mut killed = 0;
    for (n, point) in points.iter().enumerate() {
        // New data, and the oldest snapshot forgotten: work for this prune.
        h.grow(seed, 10 + n as u64, 3);
        h.backup()?;
        let oldest = h.snapshots.remove(0);
        let forgot = h.run(["forget", oldest.0.as_str()]);
        if forgot.code != 0 {
            return Err(format!("forget: {}", forgot.stderr));
        }
        let args: Vec<&OsStr> = ["prune", "--grace", "0s", "--max-unused", "0%"]
            .iter()
            .map(OsStr::new)
            .collect();
        match point {
            Some(point) => {
                let out = lb(&h.sb, &h.dest_refs())
                    .env("LIFEBOAT_FAILPOINT", point)
                    .args(&args)
                    .run();
                if out.signal == Some(libc::SIGKILL) {
                    killed += 1;
                }
            }
            None => {
                let delay = Duration::from_millis(20 + (dice(seed, n as u64) * 600.0) as u64);
                if kill_after(&h, &args, delay) {
                    killed += 1;
                }
            }
        }
        // Every kept snapshot restores after each kill.
        let interim = h.verify();
        if interim.bytes_lost > 0 {
            return Ok(interim);
        }
    }
    if killed < 4 {
        return Err(format!("only {killed} prunes were killed"));
    }
    let done = h.run(["prune", "--grace", "0s"]);
    if done.code != 0 {
        return Err(format!("final prune: {}", done.stderr));
    }
    h.check_clean()?;
    let mut outcome = h.verify();
    outcome.errors_named += killed;
    Ok(outcome)
}

/// Mounts a tmpfs of `size` at `dir` (root only); unmounts on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !status.success() {
            return Err(format!(
                "cannot mount a tmpfs at {} (the full-disk cases need root)",
                dir.display()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

pub(super) fn one_line_error(out: &Output) -> bool {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    !lines.is_empty() && !out.stderr.contains("panicked")
}

fn full_destination(seed: u64) -> Result<Outcome, String> {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let small = Tmpfs::mount(&root.path().join("small"), "6m")?;
    let other = root.path().join("roomy");
    let mut h = History::new(vec![
        small.0.join("lb").display().to_string(),
        other.display().to_string(),
    ]);
    h.grow(seed, 0, 1);
    h.backup()?;
    // 12 MiB more cannot fit on 6 MiB: the small disk is dropped, the other
    // destination commits, nothing is half-written.
    h.grow(seed, 1, 12);
    let out = h.run(["--json".as_ref(), "backup".as_ref(), h.src.as_os_str()]);
    if out.code != 3 {
        return Err(format!(
            "a full destination should exit 3, got {}: {}",
            out.code, out.stderr
        ));
    }
    let summary = out.summary();
    if let Some(id) = summary["snapshot_id"].as_str() {
        let copy = h.sb.join("copy-full");
        super::copy_tree(&h.src, &copy);
        h.snapshots.push((id.to_string(), copy));
    }
    let mut outcome = h.verify();
    outcome.errors_named += 1;
    // Each destination alone: the full one still restores the first snapshot.
    let alone = lb(&h.sb, &[h.dests[0].as_str()])
        .args(["check", "--read-data"])
        .run();
    if alone.code != 0 {
        return Err(format!("the full destination is damaged: {}", alone.stderr));
    }
    drop(small);
    Ok(outcome)
}

fn full_target(seed: u64) -> Result<Outcome, String> {
    let mut h = two_local();
    h.grow(seed, 0, 4);
    h.backup()?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tiny = Tmpfs::mount(&root.path().join("tiny"), "1m")?;
    let out = h.run([
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        tiny.0.as_os_str(),
    ]);
    if out.code == 0 || !one_line_error(&out) {
        return Err(format!(
            "a full restore target must fail with an error: exit {}: {}",
            out.code, out.stderr
        ));
    }
    drop(tiny);
    let mut outcome = h.verify();
    outcome.errors_named += 1;
    Ok(outcome)
}

/// A private S3 server and a local destination.
fn with_private_s3(seed: u64) -> Result<(History, Moto, String), String> {
    let moto = Moto::start(free_port());
    let bucket = format!("matrix{seed}");
    moto.create_bucket(&bucket);
    let s3 = format!(
        "s3://{bucket}/lb?endpoint={}&region=us-east-1",
        moto.endpoint()
    );
    let local = tempfile::tempdir()
        .map_err(|e| e.to_string())?
        .keep()
        .join("local");
    let h = History::new(vec![local.display().to_string(), s3.clone()]);
    Ok((h, moto, bucket))
}

fn restart(moto: &mut Moto, bucket: &str) {
    moto.kill();
    *moto = Moto::start(moto.port);
    moto.create_bucket(bucket);
}

fn s3_killed_in_sync(seed: u64) -> Result<Outcome, String> {
    let (mut h, mut moto, bucket) = with_private_s3(seed)?;
    h.grow(seed, 0, 8);
    h.backup()?;
    // S3 comes back empty (moto keeps nothing) and is seeded by sync; the
    // server dies in the middle of that sync.
    restart(&mut moto, &bucket);
    let seed_name = format!("s3-{bucket}");
    let seed_args = ["sync", "--seed", seed_name.as_str()];
    let sync = lb(&h.sb, &h.dest_refs()).args(seed_args).spawn();
    std::thread::sleep(Duration::from_millis(100 + (dice(seed, 0) * 400.0) as u64));
    moto.kill();
    // Whether it finished before the kill or not, the next sync completes.
    let _ = sync.wait();
    restart(&mut moto, &bucket);
    // Empty again (or half seeded, with no config yet): named to be seeded.
    let again = h.run(seed_args);
    if again.code != 0 {
        return Err(format!("sync after restart: {}", again.stderr));
    }
    h.check_clean()?;
    let mut outcome = h.verify();
    outcome.absorb(verify_alone(&h, 1));
    Ok(outcome)
}

fn s3_killed_in_prune(seed: u64) -> Result<Outcome, String> {
    let (mut h, mut moto, bucket) = with_private_s3(seed)?;
    h.grow(seed, 0, 4);
    h.backup()?;
    h.grow(seed, 1, 4);
    h.backup()?;
    let oldest = h.snapshots.remove(0);
    h.run(["forget", oldest.0.as_str()]).success();
    let prune = lb(&h.sb, &h.dest_refs())
        .args(["prune", "--grace", "0s", "--max-unused", "0%"])
        .spawn();
    std::thread::sleep(Duration::from_millis(50 + (dice(seed, 1) * 300.0) as u64));
    moto.kill();
    let out = prune.wait();
    if out.code != 0 && out.code != 3 {
        return Err(format!(
            "prune with S3 gone: exit {}: {}",
            out.code, out.stderr
        ));
    }
    restart(&mut moto, &bucket);
    let seed_name = format!("s3-{bucket}");
    let synced = h.run(["sync", "--seed", seed_name.as_str()]);
    if synced.code != 0 {
        return Err(format!("sync: {}", synced.stderr));
    }
    let again = h.run(["prune", "--grace", "0s"]);
    if again.code != 0 {
        return Err(format!("prune after restart: {}", again.stderr));
    }
    h.check_clean()?;
    let mut outcome = h.verify();
    outcome.absorb(verify_alone(&h, 1));
    Ok(outcome)
}

/// Restores every snapshot from destination `n` alone.
fn verify_alone(h: &History, n: usize) -> Outcome {
    let alone = History {
        sb: Sandbox::new(),
        dests: vec![h.dests[n].clone()],
        src: h.src.clone(),
        snapshots: h.snapshots.clone(),
    };
    alone.verify()
}
