//! Helpers the end-to-end benchmark programs share: finding the `lifeboat`
//! binary, timing a command as a whole process (wall time and peak RSS),
//! warming the page cache, sizing a tree, medians.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One measured command: wall seconds and peak resident set in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Peak resident set of the process (and its children), bytes.
    pub peak_rss: u64,
}

/// The `lifeboat` binary: `$LIFEBOAT_BIN`, else the one built next to this
/// program (`target/release/lifeboat`).
///
/// # Errors
/// When neither exists, with the command that builds it.
pub fn lifeboat_program() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("LIFEBOAT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let sibling = exe.with_file_name("lifeboat");
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(format!(
            "{} not found: build it first (cargo build --release -p lifeboat-cli) or set LIFEBOAT_BIN",
            sibling.display()
        ))
    }
}

/// [`measure`] under timeout(1): `None` when `cmd` ran past `cap` seconds
/// and was stopped.
///
/// # Errors
/// As [`measure`], for any other failure.
pub fn measure_capped(cmd: &Command, cap: u64) -> Result<Option<Sample>, String> {
    let mut wrapped = Command::new("timeout");
    wrapped
        .arg(cap.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    match measure(&mut wrapped) {
        Ok(sample) => Ok(Some(sample)),
        // timeout(1) exits 124 when it stopped the command.
        Err(e) if e.contains("(0x7c00)") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `cmd` to completion (stdout discarded, stderr kept for the error)
/// after a `sync`, so no command pays for the previous one's writeback.
///
/// # Errors
/// When it cannot start or exits non-zero, with its stderr.
pub fn measure(cmd: &mut Command) -> Result<Sample, String> {
    let shown = format!("{cmd:?}");
    let _ = Command::new("sync").status();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr;
    // Drain stderr on a thread so a chatty tool cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = std::io::Read::read_to_string(s, &mut text);
        }
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (std's Child is dropped
    // without waiting), and both out-pointers are valid for writes.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    let err_text = reader.join().unwrap_or_default();
    if waited != pid {
        return Err(format!("{shown}: wait4 failed"));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{shown} failed ({status:#x}): {}", err_text.trim()));
    }
    Ok(Sample {
        seconds,
        peak_rss: usage.ru_maxrss as u64 * 1024,
    })
}

/// Calls `visit` with the path and metadata of every regular file under
/// `dir` (symlinks not followed, unreadable entries skipped).
pub fn for_each_file(dir: &Path, mut visit: impl FnMut(&Path, &fs::Metadata)) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                visit(&entry.path(), &meta);
            }
        }
    }
}

/// Reads every regular file under `dir` once, so a measurement starts with
/// the tree in the page cache (borg, for one, evicts what it reads).
pub fn warm(dir: &Path) {
    let mut buf = vec![0u8; 1 << 20];
    for_each_file(dir, |path, _| {
        if let Ok(mut f) = fs::File::open(path) {
            while matches!(std::io::Read::read(&mut f, &mut buf), Ok(n) if n > 0) {}
        }
    });
}

/// Sum of file sizes and count of regular files under `dir`.
pub fn tree_size(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    for_each_file(dir, |_, meta| {
        bytes += meta.len();
        files += 1;
    });
    (bytes, files)
}

/// The median (the mean of the middle two for an even count; NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn a_failing_command_is_an_error_and_a_good_one_is_measured() {
        assert!(measure(&mut Command::new("false")).is_err());
        let sample = measure(&mut Command::new("true")).unwrap();
        assert!(sample.seconds >= 0.0 && sample.peak_rss > 0);
    }
}
