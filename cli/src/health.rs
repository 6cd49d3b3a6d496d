//! The local health record: when each destination last passed (or failed) a
//! restore drill and a check, kept per repository in the user's state
//! directory so that `status` can show it.
//!
//! `<state>/<repository id>/health.json`, where `<state>` is
//! `$LIFEBOAT_STATE_DIR` when set (tests isolate it so), else
//! `$XDG_STATE_HOME/lifeboat` (`~/.local/state/lifeboat`): history is state,
//! not cache, and must survive clearing the cache. Results are filed under
//! each destination's canonical location (absolute path, bucket and prefix,
//! SFTP host and path), never under its display name, which two destinations
//! can share. It holds locations, names, times, results and short snapshot
//! ids: no secrets. Version 1 kept results by name in the cache directory;
//! such a file is dropped once, with a notice. It is a convenience, never a
//! reason for a command to fail: a missing or unreadable file reads as empty,
//! and a failed write is a warning. Writes go to a temporary file renamed over
//! the old one, under an advisory lock, so concurrent commands never leave a
//! torn file.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use lifeboat_engine::RepoId;
use serde::{Deserialize, Serialize};

/// The record's format version (2: keyed by canonical location).
const VERSION: u32 = 2;

/// What is known about every destination of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Format version (2).
    #[serde(default)]
    pub version: u32,
    /// Per destination, by canonical location.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationHealth>,
}

/// The last drill and checks of one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationHealth {
    /// The name the destination had when last recorded (for people reading
    /// the file; results are found by location).
    #[serde(default)]
    pub name: String,
    /// The most recent drill, whatever its result.
    #[serde(default)]
    pub last_drill: Option<DrillRecord>,
    /// The most recent check, whatever its result.
    #[serde(default)]
    pub last_check: Option<CheckRecord>,
    /// The most recent check that found nothing wrong.
    #[serde(default)]
    pub last_clean_check: Option<CheckRecord>,
    /// When `sync` last completed for it with nothing failed (seconds since
    /// the epoch): a damaged check before that may be healed now.
    #[serde(default)]
    pub last_sync: Option<i64>,
}

/// One drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// When it ended, seconds since the epoch.
    pub time: i64,
    /// Whether the destination alone brought the snapshot back.
    pub passed: bool,
    /// The snapshot drilled (short id), empty when it was not resolved.
    pub snapshot: String,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// When it ended, seconds since the epoch.
    pub time: i64,
    /// True when no problem was found.
    pub clean: bool,
    /// True when every byte was read (`check --read-data`).
    pub read_data: bool,
}

/// `$LIFEBOAT_CACHE_DIR`, else `<user cache dir>/lifeboat`.
fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("LIFEBOAT_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::cache_dir().map(|d| d.join("lifeboat")),
    }
}

/// `$LIFEBOAT_STATE_DIR`, else `<user state dir>/lifeboat`
/// (`$XDG_STATE_HOME/lifeboat`, `~/.local/state/lifeboat`).
pub fn base_dir() -> Option<PathBuf> {
    match std::env::var_os("LIFEBOAT_STATE_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::state_dir()
            .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
            .map(|d| d.join("lifeboat")),
    }
}

/// This repository's directory in the state directory, where its health
/// record and its rollback memory (`seen.json`, kept by the engine's
/// `LocalState`) live.
pub fn state_dir(repo_id: RepoId) -> Option<PathBuf> {
    base_dir().map(|base| base.join(repo_id.to_hex()))
}

/// This repository's directory in the cache, where its metadata cache lives.
pub fn repo_dir(repo_id: RepoId) -> Option<PathBuf> {
    cache_dir().map(|base| base.join(repo_id.to_hex()))
}

/// Drops a version 1 record (by destination name, in the cache directory)
/// once, with a notice: its results may belong to another destination that
/// had the same name.
fn drop_old_record(repo_id: RepoId) {
    let Some(old) = repo_dir(repo_id).map(|d| d.join("health.json")) else {
        return;
    };
    if old.exists() && std::fs::remove_file(&old).is_ok() {
        eprintln!(
            "notice: dropped the old drill and check history in {}: it was kept by destination name, \
             which two destinations can share; results are now kept per destination location in the \
             state directory. Run `lifeboat check` and `lifeboat drill` to record them again.",
            old.display()
        );
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The health record of the repository `repo_id`; empty when there is none
/// or it cannot be read (with a warning for an unreadable one).
pub fn load(repo_id: RepoId) -> Health {
    drop_old_record(repo_id);
    match base_dir() {
        Some(base) => load_in(&base, repo_id),
        None => Health::default(),
    }
}

/// Records a drill of the destination at `location` (its canonical
/// location, see `ConfigFile::locations`), shown as `name`, that `passed` or not on `snapshot` (a
/// short id). Failures to write are warnings only.
pub fn record_drill(repo_id: RepoId, location: &str, name: &str, passed: bool, snapshot: &str) {
    let record = DrillRecord {
        time: now(),
        passed,
        snapshot: snapshot.to_string(),
    };
    update(repo_id, location, |d| {
        d.name = name.to_string();
        d.last_drill = Some(record);
    });
}

/// Records a check of `destination`: `clean` when it found nothing wrong,
/// `read_data` when it read every byte. Failures to write are warnings only.
pub fn record_check(repo_id: RepoId, location: &str, name: &str, clean: bool, read_data: bool) {
    let record = CheckRecord {
        time: now(),
        clean,
        read_data,
    };
    update(repo_id, location, |d| {
        d.name = name.to_string();
        if clean {
            d.last_clean_check = Some(record.clone());
        }
        d.last_check = Some(record);
    });
}

/// Records that `sync` brought the destination at `location` up to date
/// (nothing failed there). Failures to write are warnings only.
pub fn record_sync(repo_id: RepoId, location: &str, name: &str) {
    update(repo_id, location, |d| {
        d.name = name.to_string();
        d.last_sync = Some(now());
    });
}

fn update(repo_id: RepoId, destination: &str, change: impl FnOnce(&mut DestinationHealth)) {
    drop_old_record(repo_id);
    let Some(base) = base_dir() else {
        tracing::warn!("no state directory (set HOME or XDG_STATE_HOME): the drill and check history is not kept");
        return;
    };
    if let Err(e) = update_in(&base, repo_id, destination, change) {
        tracing::warn!(
            "could not update the health record in {}: {e}",
            base.display()
        );
    }
}

fn file_in(base: &Path, repo_id: RepoId) -> PathBuf {
    base.join(repo_id.to_hex()).join("health.json")
}

fn load_in(base: &Path, repo_id: RepoId) -> Health {
    let path = file_in(base, repo_id);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Health::default(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}; treating it as empty", path.display());
            return Health::default();
        }
    };
    match serde_json::from_slice::<Health>(&text) {
        // Older versions filed results by name: not to be trusted.
        Ok(health) if health.version < VERSION => Health::default(),
        Ok(health) => health,
        Err(e) => {
            tracing::warn!("{} is damaged ({e}); treating it as empty", path.display());
            Health::default()
        }
    }
}

fn update_in(
    base: &Path,
    repo_id: RepoId,
    destination: &str,
    change: impl FnOnce(&mut DestinationHealth),
) -> std::io::Result<()> {
    let path = file_in(base, repo_id);
    let dir = path.parent().unwrap_or(base);
    lifeboat_backends::private::create_dir_all(dir)?;
    // Serialises read-modify-write between concurrent lifeboat processes;
    // released when the file is closed.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(lifeboat_backends::private::FILE_MODE)
        .open(dir.join("health.lock"))?;
    // SAFETY: flock on a descriptor we own for the duration of the call.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut health = load_in(base, repo_id);
    health.version = VERSION;
    change(
        health
            .destinations
            .entry(destination.to_string())
            .or_default(),
    );
    let json = serde_json::to_vec_pretty(&health).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("health.json.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = lifeboat_backends::private::create_file(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drop(lock);
    written
}

/// How long ago `then` was, seen at `now`: `just now`, `5 min ago`,
/// `2 h ago`, `3 days ago`.
pub fn ago(then: i64, now: i64) -> String {
    let secs = now.saturating_sub(then);
    match secs {
        s if s < 60 => "just now".into(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// The time as RFC 3339, for JSON.
pub fn rfc3339(time: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(time)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// `passed 3 days ago`, `FAILED 2 h ago` or `never`.
pub fn describe_drill(record: Option<&DrillRecord>) -> String {
    match record {
        None => "never".into(),
        Some(r) => {
            let result = if r.passed { "passed" } else { "FAILED" };
            format!("{result} {}", ago(r.time, now()))
        }
    }
}

/// `clean 3 days ago`, `DAMAGED 2 h ago`, `damaged, synced since` or
/// `never`: a damaged result that a later sync may have healed says so
/// rather than alarm forever.
pub fn describe_check(health: &DestinationHealth) -> String {
    match &health.last_check {
        None => "never".into(),
        Some(r) if !r.clean && health.last_sync.is_some_and(|s| s >= r.time) => {
            "damaged, synced since".into()
        }
        Some(r) => {
            let result = if r.clean { "clean" } else { "DAMAGED" };
            format!("{result} {}", ago(r.time, now()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lifeboat-health-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    }

    #[test]
    fn records_round_trip_per_destination() {
        let base = scratch();
        let id = RepoId([7; 32]);
        assert_eq!(load_in(&base, id), Health::default());
        update_in(&base, id, "usb", |d| {
            d.last_drill = Some(DrillRecord {
                time: 100,
                passed: true,
                snapshot: "1a2b3c4d".into(),
            })
        })
        .expect("write");
        update_in(&base, id, "nas", |d| {
            d.last_check = Some(CheckRecord {
                time: 200,
                clean: false,
                read_data: true,
            })
        })
        .expect("write");
        let health = load_in(&base, id);
        assert_eq!(health.version, VERSION);
        assert!(health.destinations["usb"]
            .last_drill
            .as_ref()
            .is_some_and(|d| d.passed));
        assert!(health.destinations["usb"].last_check.is_none());
        assert_eq!(
            health.destinations["nas"]
                .last_check
                .as_ref()
                .map(|c| c.clean),
            Some(false)
        );
        // Another repository has its own record.
        assert_eq!(load_in(&base, RepoId([8; 32])), Health::default());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_damaged_file_reads_as_empty_and_is_replaced() {
        let base = scratch();
        let id = RepoId([9; 32]);
        let path = file_in(&base, id);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        std::fs::write(&path, b"{\"destinations\": [not json").expect("write");
        assert_eq!(load_in(&base, id), Health::default());
        update_in(&base, id, "usb", |d| {
            d.last_drill = Some(DrillRecord {
                time: 1,
                passed: false,
                snapshot: String::new(),
            })
        })
        .expect("write over the damaged file");
        assert!(load_in(&base, id).destinations["usb"]
            .last_drill
            .as_ref()
            .is_some_and(|d| !d.passed));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(1000, 1010), "just now");
        assert_eq!(ago(1000, 1000 + 5 * 60), "5 min ago");
        assert_eq!(ago(0, 2 * 3600 + 59), "2 h ago");
        assert_eq!(ago(0, 3 * 86_400 + 5), "3 days ago");
        assert_eq!(ago(500, 100), "just now");
    }
}
