//! Progress display and formatting shared by the commands.
//!
//! On a terminal a progress bar is drawn on stderr; with `-v` on a pipe a
//! status line is printed every few seconds; with `--json` a status object is
//! printed on stdout every second; otherwise nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lifeboat_engine::{Snapshot, SnapshotId, SnapshotSummary};
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::Context;

/// One reading of a long task's counters.
pub struct Tick {
    /// Position (bytes or items).
    pub pos: u64,
    /// Total, when known.
    pub len: Option<u64>,
    /// A short human message.
    pub message: String,
    /// The JSON status object (for --json).
    pub json: Value,
}

/// A background task that shows progress until finished.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Ticker {
    /// Starts showing progress from `read`, as fits the output mode.
    pub fn start(ctx: &Context, bytes: bool, read: impl Fn() -> Tick + Send + 'static) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let (bar, lines, json) = (ctx.show_progress(), ctx.status_lines(), ctx.global.json);
        if !bar && !lines && !json {
            return Ticker { stop, handle: None };
        }
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let pb = bar.then(|| {
                let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                let template = if bytes {
                    "{spinner} [{elapsed_precise}] {bar:25} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {wide_msg}"
                } else {
                    "{spinner} [{elapsed_precise}] {bar:25} {pos}/{len} ETA {eta} {wide_msg}"
                };
                if let Ok(style) = ProgressStyle::with_template(template) {
                    pb.set_style(style);
                }
                pb
            });
            let started = Instant::now();
            let mut last_line = Instant::now();
            let mut last_json = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let tick = read();
                if let Some(pb) = &pb {
                    if let Some(len) = tick.len {
                        pb.set_length(len);
                    }
                    pb.set_position(tick.pos);
                    pb.set_message(tick.message.clone());
                }
                if lines && last_line.elapsed() >= Duration::from_secs(5) {
                    last_line = Instant::now();
                    eprintln!(
                        "[{}] {}",
                        indicatif::HumanDuration(started.elapsed()),
                        tick.message
                    );
                }
                if json && last_json.elapsed() >= Duration::from_secs(1) {
                    last_json = Instant::now();
                    println!("{}", tick.json);
                }
            }
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
        });
        Ticker {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and clears the display.
    pub async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

/// Progress of a walk over snapshot trees of unknown total: a counter the
/// engine adds to, shown as `N <what>`.
pub fn tree_ticker(ctx: &Context, what: String) -> (Ticker, Arc<std::sync::atomic::AtomicU64>) {
    let trees = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = trees.clone();
    let ticker = Ticker::start(ctx, false, move || {
        let n = seen.load(Ordering::Relaxed);
        Tick {
            pos: n,
            len: None,
            message: format!("{n} {what}"),
            json: json!({"message_type": "status", "trees_read": n}),
        }
    });
    (ticker, trees)
}

/// Bytes as a human figure (binary units).
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// RFC 3339 time of a snapshot.
pub fn rfc3339(s: &Snapshot) -> String {
    s.datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A snapshot's time for tables: `2026-11-25 23:59:01` (UTC).
pub fn table_time(s: &Snapshot) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    s.datetime().format(&format).unwrap_or_default()
}

/// Seconds since the epoch as `2026-11-25 23:59:01` (UTC), for tables.
pub fn table_seconds(seconds: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| seconds.to_string())
}

/// Seconds since the epoch as `2026-11-25 23:59:01 UTC`, for messages.
pub fn utc_time(seconds: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .map_or_else(|| seconds.to_string(), |t| format!("{t} UTC"))
}

/// Seconds since the epoch as RFC 3339 (UTC); empty when out of range.
pub fn time(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A snapshot's figures as JSON: one set of keys for the summary line of
/// `backup --json` and the `summary` of each snapshot in `snapshots --json`.
/// The names are restic's (`total_files_processed`, `total_duration` in
/// seconds), so scripts written for restic's backup summary read ours.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryJson {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose metadata changed since the parent.
    pub files_changed: u64,
    /// Files skipped as unchanged.
    pub files_unmodified: u64,
    /// Directories not in the parent.
    pub dirs_new: u64,
    /// Directories whose listing changed.
    pub dirs_changed: u64,
    /// Directories unchanged.
    pub dirs_unmodified: u64,
    /// Data blobs written.
    pub data_blobs: u64,
    /// Tree blobs written.
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Stored bytes of new packs.
    pub data_added_packed: u64,
    /// Files in the snapshot.
    pub total_files_processed: u64,
    /// Bytes of file content in the snapshot.
    pub total_bytes_processed: u64,
    /// Entries left out because they could not be read.
    pub errors: u64,
    /// Wall time of the backup, seconds.
    pub total_duration: f64,
}

impl From<&SnapshotSummary> for SummaryJson {
    fn from(s: &SnapshotSummary) -> Self {
        SummaryJson {
            files_new: s.files_new,
            files_changed: s.files_changed,
            files_unmodified: s.files_unmodified,
            dirs_new: s.dirs_new,
            dirs_changed: s.dirs_changed,
            dirs_unmodified: s.dirs_unmodified,
            data_blobs: s.data_blobs,
            tree_blobs: s.tree_blobs,
            data_added: s.data_added,
            data_added_packed: s.data_added_packed,
            total_files_processed: s.total_files,
            total_bytes_processed: s.total_bytes,
            errors: s.errors,
            total_duration: s.duration_ms as f64 / 1000.0,
        }
    }
}

/// The JSON object describing a snapshot.
pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> Value {
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": rfc3339(s),
        "hostname": s.hostname,
        "username": s.username,
        "paths": s.paths_lossy(),
        "tags": s.tags,
        "parent": s.parent.map(|p| p.to_hex()),
        "original": s.original().map(|o| o.to_hex()),
        "tree": s.tree.to_hex(),
        "program_version": s.program_version,
        "summary": SummaryJson::from(&s.summary),
    })
}

/// Reports the destinations a writing run missed: those left out when the
/// repository was opened (already warned about, named once more here) and
/// those dropped during the run, each with its reason and `consequence`.
pub fn report_missed(
    ctx: &crate::context::Context,
    dests: &lifeboat_engine::DestinationSet,
    missed: &[(String, String)],
    consequence: &str,
) {
    let left_out: Vec<&str> = dests.left_out().iter().map(|l| l.backend.name()).collect();
    if !left_out.is_empty() {
        ctx.say(format!(
            "left out: {} (see the warnings above)",
            left_out.join(", ")
        ));
    }
    for (name, error) in missed {
        if !left_out.contains(&name.as_str()) {
            eprintln!("warning: destination {name} was missed ({error}); {consequence}");
        }
    }
}

/// `1 snapshot`, `2 snapshots`, `2 entries`: a count with its noun in the
/// right number.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_one_set_of_keys() {
        let summary = SnapshotSummary {
            files_new: 1,
            total_files: 3,
            duration_ms: 2500,
            ..Default::default()
        };
        let value = serde_json::to_value(SummaryJson::from(&summary)).expect("serializes");
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "data_added",
                "data_added_packed",
                "data_blobs",
                "dirs_changed",
                "dirs_new",
                "dirs_unmodified",
                "errors",
                "files_changed",
                "files_new",
                "files_unmodified",
                "total_bytes_processed",
                "total_duration",
                "total_files_processed",
                "tree_blobs",
            ]
        );
        assert_eq!(value["total_duration"], 2.5);
        assert_eq!(value["total_files_processed"], 3);
    }
}
