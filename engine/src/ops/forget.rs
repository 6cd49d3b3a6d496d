//! Forget: which snapshots a retention policy keeps, and removing the rest.
//!
//! The policy works like restic's: within each group (by default, the same
//! host and paths) snapshots are taken newest first; `last N` keeps the N
//! newest, and each calendar rule (`hourly`, `daily`, `weekly`, `monthly`,
//! `yearly`) keeps the newest snapshot of each of the N most recent periods
//! that have one. `within` keeps everything younger than a duration before the
//! group's newest snapshot; `tags` keeps snapshots with any of the tags.
//! Periods are calendar periods in UTC (weeks are ISO weeks).
//!
//! Removing writes a deletion record first (so destinations that miss the
//! removal still drop those snapshots, and `sync` never copies them back),
//! then deletes the snapshot objects on every reachable destination. The
//! data they referenced stays until `prune`.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::format::deletion::DeletionRecord;
use crate::format::ids::{ObjectKind, SnapshotId};
use crate::format::snapshot::Snapshot;
use crate::repo::deletions;
use crate::repo::Repository;

/// What to keep. Counts of 0 mean "no such rule".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The newest N snapshots.
    pub last: u32,
    /// The newest snapshot of each of the last N hours that have one.
    pub hourly: u32,
    /// … days.
    pub daily: u32,
    /// … ISO weeks.
    pub weekly: u32,
    /// … months.
    pub monthly: u32,
    /// … years.
    pub yearly: u32,
    /// Every snapshot younger than this before the group's newest.
    pub within: Option<Within>,
    /// Every snapshot carrying one of these tags.
    pub tags: Vec<String>,
}

impl KeepPolicy {
    /// True when no rule is set (such a policy would keep nothing).
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// A calendar span as restic's `--keep-within` takes it: numbers with `y`
/// (years), `m` (months), `w` (weeks), `d` (days) and `h` (hours), such as
/// `1y6m`, `2w`, `30d` or `1y5m7d2h`.
///
/// Years and months are calendar ones, counted back with jiff's span
/// arithmetic in UTC: one month before 31 March is 28 (or 29) February,
/// the day clamped to the shorter month, not 3 March as Go's `AddDate`
/// (and so restic) would have it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Weeks.
    pub weeks: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl std::str::FromStr for Within {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidInput(format!(
                "duration {text:?}: use numbers with y, m, w, d and h, for example 1y6m, 2w, 30d or 12h"
            ))
        };
        let mut within = Within::default();
        let mut number = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u32 = number.parse().map_err(|_| bad())?;
            number.clear();
            let field = match c {
                'y' => &mut within.years,
                'm' => &mut within.months,
                'w' => &mut within.weeks,
                'd' => &mut within.days,
                'h' => &mut within.hours,
                _ => return Err(bad()),
            };
            *field = field.checked_add(n).ok_or_else(bad)?;
        }
        // A span jiff cannot represent (tens of thousands of years) is a
        // typo; refusing it here keeps `cutoff` free of that failure.
        if !number.is_empty() || within == Within::default() || within.span().is_err() {
            return Err(bad());
        }
        Ok(within)
    }
}

impl Within {
    /// The span to count back.
    fn span(&self) -> std::result::Result<jiff::Span, jiff::Error> {
        jiff::Span::new()
            .try_years(self.years)?
            .try_months(self.months)?
            .try_weeks(self.weeks)?
            .try_days(self.days)?
            .try_hours(self.hours)
    }

    /// The second (since the epoch) this span before `newest`, in UTC.
    /// When that instant cannot be computed (a span or time outside the
    /// calendar's range), every snapshot counts as within: a keep rule errs
    /// on the side of keeping.
    fn cutoff(&self, newest: i64) -> i64 {
        let Ok(span) = self.span() else {
            return i64::MIN;
        };
        jiff::Timestamp::from_second(newest)
            .ok()
            .and_then(|t| {
                t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .checked_sub(span)
                    .ok()
            })
            .map_or(i64::MIN, |t| t.timestamp().as_second())
    }
}

/// What to group snapshots by before applying the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the set of backed-up paths.
    pub paths: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// Host and paths, as restic does.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = Error;

    /// A comma-separated list of `host`, `paths`, `tags`; empty for one group.
    fn from_str(text: &str) -> Result<Self> {
        let mut by = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => by.host = true,
                "paths" => by.paths = true,
                "tags" => by.tags = true,
                other => {
                    return Err(Error::InvalidInput(format!(
                        "--group-by {other:?}: use host, paths and tags, comma-separated"
                    )))
                }
            }
        }
        Ok(by)
    }
}

/// The key of one group: what its snapshots share.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    /// Host, when grouping by host.
    pub host: Option<String>,
    /// Paths (sorted), when grouping by paths.
    pub paths: Option<Vec<String>>,
    /// Tags (sorted), when grouping by tags.
    pub tags: Option<Vec<String>>,
}

/// The policy's verdict on one snapshot.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its content.
    pub snapshot: Snapshot,
    /// Kept or removed.
    pub keep: bool,
    /// The rules that kept it (`last`, `daily`, `within 30d`, `tag T`, …).
    pub reasons: Vec<String>,
}

/// Groups `snapshots` and applies `policy` to each group; groups come in
/// key order, snapshots newest first.
pub fn plan(
    snapshots: Vec<(SnapshotId, Snapshot)>,
    policy: &KeepPolicy,
    group_by: GroupBy,
) -> Vec<(GroupKey, Vec<Decision>)> {
    let mut groups: BTreeMap<GroupKey, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
    for (id, s) in snapshots {
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let key = GroupKey {
            host: group_by.host.then(|| s.hostname.clone()),
            paths: group_by.paths.then(|| {
                sorted(
                    s.paths
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect(),
                )
            }),
            tags: group_by.tags.then(|| sorted(s.tags.clone())),
        };
        groups.entry(key).or_default().push((id, s));
    }
    groups
        .into_iter()
        .map(|(key, group)| (key, apply(group, policy)))
        .collect()
}

/// Applies `policy` to one group.
pub fn apply(mut group: Vec<(SnapshotId, Snapshot)>, policy: &KeepPolicy) -> Vec<Decision> {
    // Newest first; ties broken by id so the result never depends on listing order.
    group.sort_by(|(ia, a), (ib, b)| (b.time, b.time_nsec, ib).cmp(&(a.time, a.time_nsec, ia)));
    let mut decisions: Vec<Decision> = group
        .into_iter()
        .map(|(id, snapshot)| Decision {
            id,
            snapshot,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    let when = |d: &Decision| {
        OffsetDateTime::from_unix_timestamp(d.snapshot.time).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    for (i, d) in decisions.iter_mut().enumerate() {
        if (i as u64) < u64::from(policy.last) {
            d.reasons.push("last".into());
        }
    }
    type Bucket = fn(OffsetDateTime) -> (i32, u32, u32, u32);
    let rules: [(&str, u32, Bucket); 5] = [
        ("hourly", policy.hourly, |t| {
            (t.year(), t.ordinal().into(), t.hour().into(), 0)
        }),
        ("daily", policy.daily, |t| {
            (t.year(), t.ordinal().into(), 0, 0)
        }),
        ("weekly", policy.weekly, |t| {
            let (year, week, _) = t.to_iso_week_date();
            (year, week.into(), 0, 0)
        }),
        ("monthly", policy.monthly, |t| {
            (t.year(), u8::from(t.month()).into(), 0, 0)
        }),
        ("yearly", policy.yearly, |t| (t.year(), 0, 0, 0)),
    ];
    for (name, count, bucket) in rules {
        let mut left = count;
        let mut last = None;
        for d in decisions.iter_mut() {
            if left == 0 {
                break;
            }
            let b = bucket(when(d));
            if last != Some(b) {
                d.reasons.push(name.into());
                last = Some(b);
                left -= 1;
            }
        }
    }
    if let (Some(within), Some(newest)) = (policy.within, decisions.first()) {
        let cutoff = within.cutoff(newest.snapshot.time);
        for d in decisions.iter_mut() {
            if d.snapshot.time >= cutoff {
                d.reasons.push(format!("within {}", describe(within)));
            }
        }
    }
    for d in decisions.iter_mut() {
        for tag in &policy.tags {
            if d.snapshot.tags.contains(tag) {
                d.reasons.push(format!("tag {tag}"));
            }
        }
        d.keep = !d.reasons.is_empty();
    }
    decisions
}

fn describe(w: Within) -> String {
    let mut out = String::new();
    for (n, unit) in [
        (w.years, 'y'),
        (w.months, 'm'),
        (w.weeks, 'w'),
        (w.days, 'd'),
        (w.hours, 'h'),
    ] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// The result of removing snapshots.
#[derive(Debug, Clone, Default)]
pub struct ForgetOutcome {
    /// Snapshots removed.
    pub removed: usize,
    /// Destinations reached.
    pub reached: Vec<String>,
    /// Destinations missed, with why (they drop the snapshots at the next
    /// prune or sync; the deletion record reaches them by sync).
    pub missed: Vec<(String, String)>,
}

/// Removes `ids` from every reachable destination: a deletion record first,
/// then the snapshot objects. The caller holds an exclusive lock.
///
/// # Errors
/// When the deletion record cannot be written anywhere.
pub async fn forget(repo: &Repository, ids: &[SnapshotId]) -> Result<ForgetOutcome> {
    if ids.is_empty() {
        return Ok(ForgetOutcome::default());
    }
    let keys: Vec<String> = ids
        .iter()
        .map(|id| ObjectKind::Snapshot.key(&id.to_hex()))
        .collect();
    deletions::write(repo, &DeletionRecord::new("forget", keys.clone())).await?;
    repo.reload_tombstones().await;
    // Gone by a record: no destination is to be called rolled back for it.
    repo.note_forgotten(ids);
    let dests = repo.destinations();
    for key in &keys {
        for backend in dests.healthy() {
            match backend.delete(key).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => dests.drop_destination(backend.name(), &e.to_string()),
            }
        }
    }
    Ok(ForgetOutcome {
        removed: ids.len(),
        reached: dests.reached(),
        missed: dests.missed(),
    })
}

#[cfg(test)]
mod tests;
