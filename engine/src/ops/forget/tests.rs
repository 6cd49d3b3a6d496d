use super::*;
use crate::format::ids::BlobId;

/// A snapshot of `host` at `time` (seconds since the epoch), with `tags`.
fn snap(n: u32, time: i64, host: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
    let mut s = Snapshot::new(
        BlobId([0; 32]),
        vec![b"/home/me".to_vec()],
        tags.iter().map(|t| t.to_string()).collect(),
        host.into(),
    );
    s.time = time;
    s.time_nsec = 0;
    let id = SnapshotId(*blake3::hash(&n.to_le_bytes()).as_bytes());
    (id, s)
}

fn at(text: &str) -> i64 {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::PrimitiveDateTime::parse(text, &format)
        .expect("test time")
        .assume_utc()
        .unix_timestamp()
}

fn day(t: i64) -> String {
    let d = OffsetDateTime::from_unix_timestamp(t).expect("time").date();
    format!("{}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// One snapshot a day at noon UTC through 2025.
fn a_year() -> Vec<(SnapshotId, Snapshot)> {
    let start = at("2025-01-01 12:00");
    (0..365)
        .map(|i| snap(i, start + i64::from(i) * 86_400, "laptop", &[]))
        .collect()
}

fn kept_days(decisions: &[Decision]) -> Vec<String> {
    let mut days: Vec<String> = decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| day(d.snapshot.time))
        .collect();
    days.sort();
    days
}

#[test]
fn a_year_of_dailies_with_a_typical_policy() {
    let policy = KeepPolicy {
        daily: 7,
        weekly: 5,
        monthly: 12,
        ..Default::default()
    };
    let groups = plan(a_year(), &policy, GroupBy::default());
    assert_eq!(groups.len(), 1);
    let decisions = &groups[0].1;
    assert_eq!(decisions.len(), 365);
    // By hand: the last 7 days; the newest of the last 5 ISO weeks (2025-12-31
    // is a Wednesday in ISO week 2026-W01, which starts Monday 12-29); the
    // last day of each month.
    let expected: Vec<&str> = vec![
        "2025-01-31",
        "2025-02-28",
        "2025-03-31",
        "2025-04-30",
        "2025-05-31",
        "2025-06-30",
        "2025-07-31",
        "2025-08-31",
        "2025-09-30",
        "2025-10-31",
        "2025-11-30",
        "2025-12-07",
        "2025-12-14",
        "2025-12-21",
        "2025-12-25",
        "2025-12-26",
        "2025-12-27",
        "2025-12-28",
        "2025-12-29",
        "2025-12-30",
        "2025-12-31",
    ];
    assert_eq!(kept_days(decisions), expected);
    // Reasons say which rules kept each one.
    let newest = &decisions[0];
    assert_eq!(day(newest.snapshot.time), "2025-12-31");
    assert_eq!(newest.reasons, ["daily", "weekly", "monthly"]);
    let dec28 = decisions
        .iter()
        .find(|d| day(d.snapshot.time) == "2025-12-28")
        .expect("12-28");
    assert_eq!(dec28.reasons, ["daily", "weekly"]);
    assert!(decisions
        .iter()
        .filter(|d| !d.keep)
        .all(|d| d.reasons.is_empty()));
}

#[test]
fn last_within_tags_and_yearly() {
    let mut year = a_year();
    year[10].1.tags = vec!["important".into()];
    let policy = KeepPolicy {
        last: 3,
        within: Some("1m".parse().expect("duration")),
        tags: vec!["important".into()],
        yearly: 1,
        ..Default::default()
    };
    let decisions = apply(year, &policy);
    let kept = kept_days(&decisions);
    // 2025-11-30 12:00 is one calendar month before 2025-12-31 12:00: 32 days kept,
    // plus the tagged 2025-01-11.
    assert_eq!(kept.len(), 33, "{kept:?}");
    assert_eq!(kept[0], "2025-01-11");
    assert_eq!(kept[1], "2025-11-30");
    let newest = &decisions[0];
    assert_eq!(newest.reasons, ["last", "yearly", "within 1m"]);
}

#[test]
fn hourly_keeps_the_newest_of_each_hour() {
    let base = at("2026-03-01 10:00");
    let snaps: Vec<_> = [0, 600, 1800, 3600, 3700, 7300]
        .iter()
        .enumerate()
        .map(|(i, off)| snap(i as u32, base + off, "h", &[]))
        .collect();
    let policy = KeepPolicy {
        hourly: 2,
        ..Default::default()
    };
    let decisions = apply(snaps, &policy);
    let kept: Vec<i64> = decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.snapshot.time - base)
        .collect();
    // Hours 12 (7300) and 11 (3700, the newest of 3600 and 3700).
    assert_eq!(kept, [7300, 3700]);
}

#[test]
fn groups_are_by_host_and_paths_unless_told() {
    let snaps = vec![
        snap(1, at("2026-01-01 00:00"), "a", &[]),
        snap(2, at("2026-01-02 00:00"), "a", &[]),
        snap(3, at("2026-01-01 00:00"), "b", &[]),
    ];
    let policy = KeepPolicy {
        last: 1,
        ..Default::default()
    };
    let by_host = plan(snaps.clone(), &policy, GroupBy::default());
    assert_eq!(by_host.len(), 2);
    assert_eq!(
        by_host
            .iter()
            .flat_map(|(_, d)| d)
            .filter(|d| d.keep)
            .count(),
        2
    );
    let one_group = plan(snaps, &policy, "".parse().expect("empty"));
    assert_eq!(one_group.len(), 1);
    assert_eq!(one_group[0].1.iter().filter(|d| d.keep).count(), 1);
}

#[test]
fn durations_parse_in_restic_syntax() {
    let w: Within = "1y2m3d4h".parse().expect("parses");
    assert_eq!((w.years, w.months, w.days, w.hours), (1, 2, 3, 4));
    let w: Within = "1y5m7d2h".parse().expect("restic's example");
    assert_eq!((w.years, w.months, w.days, w.hours), (1, 5, 7, 2));
    let w: Within = "2w".parse().expect("weeks");
    assert_eq!((w.weeks, w.days), (2, 0));
    // A unit given twice adds up, as restic's parser does.
    let w: Within = "1d1d".parse().expect("parses");
    assert_eq!(w.days, 2);
    for bad in [
        "",
        "5",
        "3x",
        "d",
        "1.5d",
        "-1d",
        "0d",
        "1 d",
        "99999y",
        "4294967295y1y",
    ] {
        assert!(bad.parse::<Within>().is_err(), "{bad:?}");
    }
    assert!("tags,host".parse::<GroupBy>().expect("parses").tags);
    assert!("colour".parse::<GroupBy>().is_err());
}

/// The cutoff `span` before `from`, both as `YYYY-MM-DD HH:MM` (UTC).
fn cutoff(span: &str, from: &str) -> String {
    let within: Within = span.parse().expect("span");
    let t = OffsetDateTime::from_unix_timestamp(within.cutoff(at(from))).expect("time");
    format!(
        "{} {:02}:{:02}",
        day(t.unix_timestamp()),
        t.hour(),
        t.minute()
    )
}

#[test]
fn calendar_spans_clamp_to_month_ends() {
    // A month before the 31st is the last day of the shorter month.
    assert_eq!(cutoff("1m", "2025-03-31 12:00"), "2025-02-28 12:00");
    assert_eq!(cutoff("1m", "2024-03-31 12:00"), "2024-02-29 12:00");
    assert_eq!(cutoff("1m", "2025-05-31 08:30"), "2025-04-30 08:30");
    assert_eq!(cutoff("1y", "2024-02-29 00:00"), "2023-02-28 00:00");
    // Across a leap year: 13 months back from 31 March 2025.
    assert_eq!(cutoff("1y1m", "2025-03-31 12:00"), "2024-02-29 12:00");
    assert_eq!(cutoff("18m", "2025-12-31 12:00"), "2024-06-30 12:00");
    // Calendar units first, then days, then hours.
    assert_eq!(cutoff("1y5m7d2h", "2025-12-31 12:00"), "2024-07-24 10:00");
    assert_eq!(cutoff("2w", "2026-01-10 00:00"), "2025-12-27 00:00");
    assert_eq!(cutoff("36h", "2026-03-01 06:00"), "2026-02-27 18:00");
}

#[test]
fn within_keeps_the_cutoff_itself_and_nothing_older() {
    let newest = at("2026-01-15 12:00");
    let snaps: Vec<_> = [0, 14 * 86_400, 14 * 86_400 + 1, 40 * 86_400]
        .iter()
        .enumerate()
        .map(|(i, age)| snap(i as u32, newest - age, "h", &[]))
        .collect();
    let policy = KeepPolicy {
        within: Some("2w".parse().expect("span")),
        ..Default::default()
    };
    let ages: Vec<i64> = apply(snaps, &policy)
        .iter()
        .filter(|d| d.keep)
        .map(|d| newest - d.snapshot.time)
        .collect();
    assert_eq!(ages, [0, 14 * 86_400]);
}

#[test]
fn a_span_past_the_calendar_keeps_everything() {
    // Fields set by hand can exceed what jiff represents; keeping is the
    // safe answer.
    let huge = Within {
        years: u32::MAX,
        ..Default::default()
    };
    assert_eq!(huge.cutoff(at("2025-01-01 00:00")), i64::MIN);
    let policy = KeepPolicy {
        within: Some(huge),
        ..Default::default()
    };
    assert!(apply(a_year(), &policy).iter().all(|d| d.keep));
}

#[test]
fn an_empty_policy_keeps_nothing_and_says_so() {
    assert!(KeepPolicy::default().is_empty());
    let decisions = apply(a_year(), &KeepPolicy::default());
    assert!(decisions.iter().all(|d| !d.keep));
}
