//! Issue 16: IMAP accounts backed up beside files, against a real Dovecot
//! on loopback: three mailboxes (one nested) holding 1,050 messages with
//! attachments, non-ASCII headers and flags. Round trip to a directory byte
//! for byte, incremental runs that download only new messages while
//! recording changed flags, `?mailbox=`, and a wrong password.

use std::collections::BTreeMap;

use lifeboat_tests::cmd::PASSWORD;
use lifeboat_tests::dav::files_below;
use lifeboat_tests::imap::{message, Dovecot};
use lifeboat_tests::{Output, Sandbox};
use serde_json::Value;

const ALICE: (&str, &str) = ("alice", "alice-imap-ü");
/// (mailbox, messages)
const MAILBOXES: [(&str, usize); 3] = [("INBOX", 600), ("Archive/2026", 300), ("Sent", 150)];
const FLAGS: [&str; 4] = ["S", "", "FS", "RS"];

/// Delivers every mailbox's messages; the bodies by mailbox, sorted.
fn fill(server: &Dovecot) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut bodies = BTreeMap::new();
    let mut n = 0;
    for (mailbox, count) in MAILBOXES {
        let mut list = Vec::new();
        for _ in 0..count {
            let body = message(n);
            server.deliver(
                ALICE.0,
                mailbox,
                n,
                &body,
                FLAGS[n % FLAGS.len()],
                1_780_000_000 + n as i64 * 60,
            );
            list.push(body);
            n += 1;
        }
        list.sort();
        bodies.insert(mailbox.to_string(), list);
    }
    server.settle();
    bodies
}

fn backup(sb: &Sandbox, password: &str, args: &[&str]) -> Output {
    let mut all = vec!["--json", "backup"];
    all.extend_from_slice(args);
    sb.command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .env("LIFEBOAT_SOURCE_PASSWORD", password)
        .args(all)
        .run()
}

fn report(out: &Output) -> Value {
    out.summary()["sources"][0].clone()
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
}

#[test]
fn imap_account_round_trips_and_later_runs_fetch_only_new_messages() {
    let server = Dovecot::start(&[ALICE]);
    let bodies = fill(&server);
    let sb = Sandbox::new();
    sb.init_repo();
    let url = server.source_url(ALICE.0);
    let total: u64 = MAILBOXES.iter().map(|(_, c)| *c as u64).sum();

    let first = backup(&sb, ALICE.1, &[&url]);
    first.success();
    let r = report(&first);
    assert_eq!(
        r["source"],
        format!("imap://alice@127.0.0.1:{}/", server.port())
    );
    assert_eq!(count(&r, "collections"), 3, "{r}");
    assert_eq!(count(&r, "items"), total, "{r}");
    assert_eq!(count(&r, "items_fetched"), total, "{r}");
    assert_eq!(count(&r, "items_malformed"), 0, "{r}");

    // Restored: each mailbox's messages byte for byte (Dovecot serves the
    // Maildir files as delivered), at DIR/imap/<user>@<host>/<mailbox>/.
    let target = sb.join("restored");
    sb.repo_cmd(["restore", "latest", "--target", target.to_str().unwrap()])
        .success();
    let account = target
        .join("imap")
        .join(format!("alice@127.0.0.1:{}", server.port()));
    for (mailbox, expected) in &bodies {
        let restored = files_below(&account.join(mailbox));
        assert!(
            restored.keys().all(|name| name.ends_with(".eml")),
            "{:?}",
            restored.keys()
        );
        let mut got: Vec<Vec<u8>> = restored.into_values().collect();
        got.sort();
        assert_eq!(got.len(), expected.len(), "{mailbox}");
        assert!(got == *expected, "{mailbox}: messages differ");
    }

    // Flags, special use and dates are recorded.
    let sent = sb
        .repo_cmd([
            "--json",
            "ls",
            "latest",
            &format!("imap://alice@127.0.0.1:{}/Sent", server.port()),
        ])
        .success()
        .json_lines();
    assert!(
        sent[0]["source"]["attributes"]
            .as_str()
            .is_some_and(|a| a.contains("\\Sent")),
        "{}",
        sent[0]
    );
    let flagged = sent
        .iter()
        .filter(|v| {
            v["source"]["flags"]
                .as_str()
                .is_some_and(|f| f.contains("\\Flagged"))
        })
        .count();
    assert_eq!(
        flagged,
        150 / 4 + usize::from(150 % 4 > 2),
        "every fourth message from the third is flagged"
    );
    assert!(
        sent[1]["mtime"]
            .as_i64()
            .is_some_and(|t| t >= 1_780_000_000),
        "{}",
        sent[1]
    );

    // Nothing changed: no message downloaded.
    let second = backup(&sb, ALICE.1, &[&url]);
    second.success();
    let r = report(&second);
    assert_eq!(
        (count(&r, "items"), count(&r, "items_fetched")),
        (total, 0),
        "{r}"
    );
    // CONDSTORE: no mailbox changed, so none is listed again (sign-in,
    // LIST and one EXAMINE per mailbox only).
    assert!(count(&r, "bytes_received") < 5_000, "{r}");

    // Two new messages and a flag changed: two downloads, the flag recorded.
    server.deliver(ALICE.0, "INBOX", 5000, &message(5000), "", 1_790_000_000);
    server.deliver(ALICE.0, "Sent", 5001, &message(5001), "S", 1_790_000_060);
    let inbox_cur = server.maildir(ALICE.0, "INBOX").join("cur");
    let unseen = std::fs::read_dir(&inbox_cur)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(":2,") && !p.to_string_lossy().contains("M5000P"))
        .expect("an unseen message");
    let seen_now = format!("{}S", unseen.display());
    std::fs::rename(&unseen, &seen_now).unwrap();
    server.settle();
    let third = backup(&sb, ALICE.1, &[&url]);
    third.success();
    let r = report(&third);
    assert_eq!(
        (count(&r, "items"), count(&r, "items_fetched")),
        (total + 2, 2),
        "{r}"
    );
    let inbox = sb
        .repo_cmd([
            "--json",
            "ls",
            "latest",
            &format!("imap://alice@127.0.0.1:{}/INBOX", server.port()),
        ])
        .success()
        .json_lines();
    let seen = inbox
        .iter()
        .filter(|v| {
            v["source"]["flags"]
                .as_str()
                .is_some_and(|f| f.contains("\\Seen"))
        })
        .count();
    let expected_seen = (0..600).filter(|n| FLAGS[n % 4].contains('S')).count() + 1;
    assert_eq!(
        seen, expected_seen,
        "the changed flag is in the new snapshot"
    );

    sb.repo_cmd(["check", "--read-data"]).success();
}

#[test]
fn one_mailbox_by_name_and_a_wrong_password() {
    let server = Dovecot::start(&[ALICE]);
    fill(&server);
    let sb = Sandbox::new();
    sb.init_repo();
    let out = backup(&sb, "wrong", &[&server.source_url(ALICE.0)]);
    out.assert_code(1);
    out.stderr_has("refused user \"alice\"");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(sb.snapshots().is_empty());

    let only = format!("imap://alice@127.0.0.1:{}/?mailbox=Sent", server.port());
    let out = backup(&sb, ALICE.1, &[&only]);
    out.success();
    let r = report(&out);
    assert_eq!(
        (count(&r, "collections"), count(&r, "items")),
        (1, 150),
        "{r}"
    );
    let missing = format!("imap://alice@127.0.0.1:{}/?mailbox=Nope", server.port());
    let out = backup(&sb, ALICE.1, &[&missing]);
    out.assert_code(3);
    out.stderr_has("no mailbox \"Nope\"");
}

#[test]
fn restore_to_puts_a_wiped_mailbox_back_and_fills_a_new_account() {
    const BOB: (&str, &str) = ("bob", "bob-imap");
    let server = Dovecot::start(&[ALICE, BOB]);
    let bodies = fill(&server);
    let sb = Sandbox::new();
    sb.init_repo();
    backup(&sb, ALICE.1, &[&server.source_url(ALICE.0)]).success();
    let account = format!("/imap/alice@127.0.0.1:{}", server.port());
    let restore_to = |url: &str, password: &str| {
        sb.command()
            .password(PASSWORD)
            .dest(&sb.repo())
            .env("LIFEBOAT_SOURCE_PASSWORD", password)
            .args([
                "--json",
                "restore",
                "latest",
                "--include",
                &account,
                "--to",
                url,
            ])
            .run()
    };
    let total: u64 = MAILBOXES.iter().map(|(_, c)| *c as u64).sum();

    // Into a second, empty account, then read back with a backup of it.
    let out = restore_to(&server.source_url(BOB.0), BOB.1);
    let summary = out.success().summary();
    assert_eq!(summary["items_created"], total, "{summary}");
    let check = Sandbox::new();
    check.init_repo();
    backup(&check, BOB.1, &[&server.source_url(BOB.0)]).success();
    let target = check.join("bob");
    check
        .repo_cmd(["restore", "latest", "--target", target.to_str().unwrap()])
        .success();
    let bob = target
        .join("imap")
        .join(format!("bob@127.0.0.1:{}", server.port()));
    for (mailbox, expected) in &bodies {
        let mut got: Vec<Vec<u8>> = files_below(&bob.join(mailbox)).into_values().collect();
        got.sort();
        assert!(
            got == *expected,
            "{mailbox}: messages differ after the upload"
        );
    }
    let sent = check
        .repo_cmd([
            "--json",
            "ls",
            "latest",
            &format!("/imap/bob@127.0.0.1:{}/Sent", server.port()),
        ])
        .success()
        .json_lines();
    let flagged = sent
        .iter()
        .filter(|v| {
            v["source"]["flags"]
                .as_str()
                .is_some_and(|f| f.contains("\\Flagged"))
        })
        .count();
    assert_eq!(
        flagged,
        150 / 4 + usize::from(150 % 4 > 2),
        "flags uploaded"
    );
    let dates: Vec<i64> = sent
        .iter()
        .skip(1)
        .filter_map(|v| v["mtime"].as_i64())
        .collect();
    assert!(
        dates
            .iter()
            .all(|&t| (1_780_000_000..1_790_000_000).contains(&t)),
        "internal dates kept"
    );

    // Again: nothing appended.
    let again = restore_to(&server.source_url(BOB.0), BOB.1);
    let summary = again.success().summary();
    assert_eq!(
        (
            summary["items_created"].as_u64(),
            summary["items_kept"].as_u64()
        ),
        (Some(0), Some(total)),
        "{summary}"
    );

    // The provider loses alice's mail; it comes back.
    std::fs::remove_dir_all(server.home(ALICE.0).join("Maildir")).unwrap();
    let out = restore_to(&server.source_url(ALICE.0), ALICE.1);
    assert_eq!(out.success().summary()["items_created"], total);
    let back = Sandbox::new();
    back.init_repo();
    let r = backup(&back, ALICE.1, &[&server.source_url(ALICE.0)]);
    assert_eq!(count(&report(r.success()), "items"), total);
}
