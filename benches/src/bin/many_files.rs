//! Does backup time grow linearly with the number of files? Generates
//! synthetic trees of small distinct files (1,000 per directory) and times
//! `lifeboat backup` on each: a first backup, then a no-change one.
//!
//! ```text
//! benches/many-files.sh [--keep] [COUNT...]     (default 100000 1000000)
//! ```
//!
//! Each file holds about 100 distinct bytes, so every file is its own chunk
//! and blob: a million files make a million index entries, 1,000 tree blobs
//! of 1,000 entries, and a million file nodes. The trees are generated under
//! `$TMPDIR` (or /tmp) once and reused while `--keep` is given.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lifeboat_benches::process::{lifeboat_program, measure, warm};

const PER_DIR: usize = 1000;

/// Writes `count` files under `root` unless a finished tree is already there.
fn generate(root: &Path, count: usize) -> Result<(), String> {
    let done = root.join(".complete");
    if done.exists() {
        return Ok(());
    }
    let _ = fs::remove_dir_all(root);
    let io = |e: std::io::Error| format!("{}: {e}", root.display());
    for n in 0..count {
        let dir = root.join(format!("d{:05}", n / PER_DIR));
        if n % PER_DIR == 0 {
            fs::create_dir_all(&dir).map_err(io)?;
        }
        let mut f = fs::File::create(dir.join(format!("f{n:07}.txt"))).map_err(io)?;
        writeln!(
            f,
            "file {n}: {:x} {:x}",
            (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            n * 7919
        )
        .and_then(|()| f.write_all(&[b'x'; 64]))
        .map_err(io)?;
    }
    fs::write(&done, b"").map_err(io)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let mut keep = false;
    let mut counts = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!("usage: many_files [--keep] [COUNT...]   (default 100000 1000000)");
                return Ok(());
            }
            n => counts.push(
                n.parse::<usize>()
                    .map_err(|_| format!("not a count: {n}"))?,
            ),
        }
    }
    if counts.is_empty() {
        counts = vec![100_000, 1_000_000];
    }
    let program = lifeboat_program()?;
    let base = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let mut rows = Vec::new();
    for &count in &counts {
        let tree = base.join(format!("lifeboat-many-files-{count}"));
        let started = Instant::now();
        generate(&tree, count)?;
        eprintln!(
            "{count} files ready in {:.1} s at {}",
            started.elapsed().as_secs_f64(),
            tree.display()
        );
        warm(&tree);
        let _ = Command::new("sync").status();
        let work = base.join(format!("lifeboat-many-files-repo.{}", std::process::id()));
        let lb = || {
            let mut cmd = Command::new(&program);
            cmd.env("LIFEBOAT_PASSWORD", "benchmark-password")
                .env("XDG_CACHE_HOME", work.join("cache"))
                .arg("-q")
                .arg("-d")
                .arg(work.join("repo"));
            cmd
        };
        let measured = (|| {
            // init creates the repository directory, never its parent.
            fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
            measure(lb().arg("init"))?;
            let first = measure(lb().arg("backup").arg(&tree))?;
            let again = measure(lb().arg("backup").arg(&tree))?;
            Ok::<_, String>((first, again))
        })();
        let _ = fs::remove_dir_all(&work);
        if !keep {
            let _ = fs::remove_dir_all(&tree);
        }
        let (first, again) = measured?;
        let (first, first_rss, again, again_rss) =
            (first.seconds, first.peak_rss, again.seconds, again.peak_rss);
        eprintln!("{count} files: first {first:.2} s, no-change {again:.2} s");
        rows.push((count, first, first_rss, again, again_rss));
    }
    println!(
        "{:>10} {:>12} {:>12} {:>10} {:>12} {:>12} {:>10}",
        "files", "first (s)", "µs/file", "RSS (MB)", "no-change (s)", "µs/file", "RSS (MB)"
    );
    for &(count, first, first_rss, again, again_rss) in &rows {
        println!(
            "{count:>10} {first:>12.2} {:>12.1} {:>10.0} {again:>12.2} {:>12.1} {:>10.0}",
            first / count as f64 * 1e6,
            first_rss as f64 / 1e6,
            again / count as f64 * 1e6,
            again_rss as f64 / 1e6
        );
    }
    if let (Some(small), Some(large)) = (rows.first(), rows.last()) {
        if large.0 > small.0 {
            let scale = large.0 as f64 / small.0 as f64;
            println!(
                "{}x the files: first backup {:.1}x the time, no-change {:.1}x (linear = {scale:.0}x)",
                scale,
                large.1 / small.1,
                large.3 / small.3
            );
        }
    }
    Ok(())
}
