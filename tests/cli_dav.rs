//! Issue 16: CardDAV and CalDAV accounts backed up beside files, against a
//! real Radicale on loopback filled with generated data: 500 contacts
//! (non-ASCII names, photos), a calendar of events (recurring, in a time

use std::collections::BTreeMap;

use lifeboat_tests::cmd::PASSWORD;
use lifeboat_tests::dav::{contact, event, files_below, task, CuttingProxy, Radicale};
use lifeboat_tests::{Output, Sandbox};
use serde_json::Value;

const ALICE: (&str, &str) = ("alice", "alice-secret-ü");
const CONTACTS: usize = 500;
const EVENTS: usize = 60;
const TASKS: usize = 40;

/// Alice's account: what was stored, by path below the account directory.
fn fill(server: &Radicale) -> BTreeMap<String, Vec<u8>> {
    let mut stored = BTreeMap::new();
    server.make_addressbook(ALICE, "/alice/contacts/", "Contacts — Alice");
    server.make_calendar(ALICE, "/alice/work/", "Travail", &["VEVENT"], "#ff8800ff");
    server.make_calendar(ALICE, "/alice/tasks/", "Tâches", &["VTODO"], "#0088ffff");
    for n in 0..CONTACTS {
        let rel = format!("alice/contacts/contact-{n}.vcf");
        let body = contact(n);
        server.put(ALICE, &format!("/{rel}"), &body);
        stored.insert(rel, body);
    }
    for n in 0..EVENTS {
        let rel = format!("alice/work/event-{n}.ics");
        let body = event(n);
        server.put(ALICE, &format!("/{rel}"), &body);
        stored.insert(rel, body);
    }
    for n in 0..TASKS {
        let rel = format!("alice/tasks/task-{n}.ics");
        let body = task(n);
        server.put(ALICE, &format!("/{rel}"), &body);
        stored.insert(rel, body);
    }
    stored
}

/// A vCard's or iCalendar's content lines, unfolded and sorted: equal for
/// two serializations of the same item.
fn content_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes)
        .replace("\r\n ", "")
        .replace("\r\n\t", "");
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

fn backup(sb: &Sandbox, args: &[&str]) -> Output {
    let mut all = vec!["--json", "backup"];
    all.extend_from_slice(args);
    sb.command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .env("LIFEBOAT_SOURCE_PASSWORD", ALICE.1)
        .args(all)
        .run()
}

/// The `sources` entry of a backup's JSON summary.
fn source_report(out: &Output) -> Value {
    let summary = out.summary();
    summary["sources"][0].clone()
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
}

#[test]
fn dav_account_round_trips_and_later_runs_fetch_only_what_changed() {
    let server = Radicale::start(&[ALICE]);
    let stored = fill(&server);
    let sb = Sandbox::new();
    sb.init_repo();
    let files = sb.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("notes.txt"), b"a file beside the account").unwrap();
    let url = server.source_url("alice");
    let all = (CONTACTS + EVENTS + TASKS) as u64;

    // First run: every item downloaded.
    let first = backup(&sb, &[files.to_str().unwrap(), &url]);
    first.success();
    let report = source_report(&first);
    assert_eq!(report["source"], format!("dav://{}/", server.authority()));
    assert_eq!(count(&report, "collections"), 3, "{report}");
    assert_eq!(count(&report, "items"), all, "{report}");
    assert_eq!(count(&report, "items_fetched"), all, "{report}");
    assert_eq!(count(&report, "items_malformed"), 0, "{report}");
    // Multiget: far fewer requests than items.
    assert!(count(&report, "requests") < 40, "{report}");

    // Restored to a directory: every item byte for byte as the server
    // serves it. Radicale normalizes what it is sent (it re-serializes each
    // item: property order, line folding), so against what the test sent
    // the comparison is semantic: the same unfolded content lines.
    let target = sb.join("restored");
    sb.repo_cmd(["restore", "latest", "--target", target.to_str().unwrap()])
        .success();
    let account = target.join("dav").join(server.authority());
    let restored = files_below(&account);
    let served = files_below(&server.storage().join("collection-root"));
    assert_eq!(restored.len(), stored.len());
    for (rel, body) in &stored {
        let got = restored
            .get(rel)
            .unwrap_or_else(|| panic!("{rel} not restored"));
        assert_eq!(
            Some(got),
            served.get(rel),
            "{rel}: not as the server serves it"
        );
        assert_eq!(
            content_lines(got),
            content_lines(body),
            "{rel}: not the item sent"
        );
    }
    let notes = target
        .join(files.strip_prefix("/").unwrap())
        .join("notes.txt");
    assert_eq!(std::fs::read(notes).unwrap(), b"a file beside the account");

    // `ls` lists the items under /dav/<host>/, with their metadata.
    let listing = sb.repo_cmd([
        "--json",
        "ls",
        "latest",
        &format!("dav://{}/alice/work", server.authority()),
    ]);
    let lines: Vec<Value> = listing.success().json_lines();
    assert_eq!(lines.len(), EVENTS + 1, "the collection and its events");
    assert_eq!(lines[0]["source"]["displayname"], "Travail", "{}", lines[0]);
    assert_eq!(lines[0]["source"]["color"], "#ff8800ff", "{}", lines[0]);
    assert_eq!(lines[0]["source"]["components"], "VEVENT", "{}", lines[0]);
    assert!(
        lines[1]["source"]["version"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{}",
        lines[1]
    );

    // A run with nothing changed downloads no item.
    let second = backup(&sb, &[files.to_str().unwrap(), &url]);
    second.success();
    let report = source_report(&second);
    assert_eq!(count(&report, "items"), all, "{report}");
    assert_eq!(count(&report, "items_fetched"), 0, "{report}");
    assert_eq!(count(&report, "items_unchanged"), all, "{report}");
    // Every collection's sync token is unchanged: no listing at all. The
    // homes discovery found last time are listed directly: one request.
    assert_eq!(count(&report, "requests"), 1, "{report}");

    // One contact changed and one task deleted: one download.
    let mut changed = contact(7);
    changed.splice(
        changed.len() - 11..changed.len() - 11,
        b"TITLE:Capitaine\r\n".iter().copied(),
    );
    server.put(ALICE, "/alice/contacts/contact-7.vcf", &changed);
    server.delete(ALICE, "/alice/tasks/task-3.ics");
    let third = backup(&sb, &[files.to_str().unwrap(), &url]);
    third.success();
    let report = source_report(&third);
    assert_eq!(count(&report, "items"), all - 1, "{report}");
    assert_eq!(count(&report, "items_fetched"), 1, "{report}");
    // The two changed collections answered with their changes only
    // (sync-collection), not with every item's ETag again (a listing of the
    // 500 contacts alone is over 60 KB).
    assert!(count(&report, "bytes_received") < 30_000, "{report}");

    // Only the account's contacts, by the source's URL.
    let only = sb.join("only-contacts");
    sb.repo_cmd([
        "restore",
        "latest",
        "--target",
        only.to_str().unwrap(),
        "--include",
        &format!("dav://{}/alice/contacts", server.authority()),
    ])
    .success();
    let contacts = files_below(&only);
    assert_eq!(contacts.len(), CONTACTS, "contacts only");
    let key = format!("dav/{}/alice/contacts/contact-7.vcf", server.authority());
    let got = contacts.get(&key).expect("the changed contact");
    assert_eq!(content_lines(got), content_lines(&changed));

    // check reads every tree of both roots; a drill restores them.
    sb.repo_cmd(["check", "--read-data"]).success();
    let drill = sb.repo_cmd(["drill", "latest"]);
    drill.success();
}

#[test]
fn wrong_source_password_is_one_line_and_commits_nothing() {
    let server = Radicale::start(&[ALICE]);
    server.make_addressbook(ALICE, "/alice/contacts/", "Contacts");
    server.put(ALICE, "/alice/contacts/a.vcf", &contact(1));
    let sb = Sandbox::new();
    sb.init_repo();
    let out = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .env("LIFEBOAT_SOURCE_PASSWORD", "not-the-password")
        .args(["backup", &server.source_url("alice")])
        .run();
    out.assert_code(1);
    out.stderr_has("refused user \"alice\"");
    let stderr = out.stderr.clone();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        !stderr.contains("not-the-password"),
        "the password is never shown"
    );
    assert!(sb.snapshots().is_empty(), "nothing committed");
}

#[test]
fn a_source_that_dies_mid_run_is_left_out_and_the_files_are_committed() {
    let server = Radicale::start(&[ALICE]);
    fill(&server);
    let sb = Sandbox::new();
    sb.init_repo();
    let files = sb.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("kept.txt"), b"kept").unwrap();
    // How many bytes a whole run receives on the wire, then a server that
    // dies after a third of them: in the middle of the downloads.
    let probe = Sandbox::new();
    probe.init_repo();
    let counting = CuttingProxy::start(server.port(), i64::MAX / 2);
    let through = format!("dav://alice@127.0.0.1:{}/", counting.port());
    backup(&probe, &[&through]).success();
    let total = counting.forwarded();
    let proxy = CuttingProxy::start(server.port(), total / 3);
    let url = format!("dav://alice@127.0.0.1:{}/", proxy.port());
    let out = backup(&sb, &[files.to_str().unwrap(), &url]);
    out.assert_code(3);
    let report = source_report(&out);
    assert!(report["error"].as_str().is_some(), "{report}");
    let stderr = out.stderr.clone();
    assert!(
        stderr.contains(&format!("dav://127.0.0.1:{}/", proxy.port())),
        "{stderr}"
    );
    // The files are in the snapshot; the account is not.
    let paths = sb.ls_paths("latest");
    assert!(paths.iter().any(|p| p.ends_with("/kept.txt")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/dav")), "{paths:?}");
}

#[test]
fn restore_to_puts_a_wiped_account_back_and_fills_a_new_one() {
    const BOB: (&str, &str) = ("bob", "bob-secret");
    let server = Radicale::start(&[ALICE, BOB]);
    let stored = fill(&server);
    let sb = Sandbox::new();
    sb.init_repo();
    backup(&sb, &[&server.source_url("alice")]).success();
    let before = files_below(&server.storage().join("collection-root").join("alice"));
    let account = format!("/dav/{}", server.authority());

    // The provider loses everything.
    for collection in ["contacts", "work", "tasks"] {
        let code = server.request(
            ALICE,
            "DELETE",
            &format!("/alice/{collection}/"),
            "text/plain",
            b"",
        );
        assert!(code == 200 || code == 204, "DELETE {collection}: {code}");
    }
    assert!(files_below(&server.storage().join("collection-root").join("alice")).is_empty());

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
    let out = restore_to(&server.source_url("alice"), ALICE.1);
    out.success();
    let summary = out.summary();
    assert_eq!(summary["items_created"], stored.len() as u64, "{summary}");
    assert_eq!(summary["collections"], 3, "{summary}");
    let after = files_below(&server.storage().join("collection-root").join("alice"));
    let items = |m: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        m.iter()
            .filter(|(k, _)| !k.contains(".Radicale"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        items(&after),
        items(&before),
        "every item back, byte for byte as the server had it"
    );

    // Again: nothing uploaded, nothing replaced.
    let again = restore_to(&server.source_url("alice"), ALICE.1);
    again.success();
    let summary = again.summary();
    assert_eq!(
        (
            summary["items_created"].as_u64(),
            summary["items_kept"].as_u64()
        ),
        (Some(0), Some(stored.len() as u64)),
        "{summary}"
    );

    // A second, empty account: collections created with their properties.
    restore_to(&server.source_url("bob"), BOB.1).success();
    let bob = files_below(&server.storage().join("collection-root").join("bob"));
    for (rel, body) in &stored {
        let rel = rel.replacen("alice/", "", 1);
        let got = bob
            .get(&rel)
            .unwrap_or_else(|| panic!("{rel} missing in bob's account"));
        assert_eq!(content_lines(got), content_lines(body), "{rel}");
    }
    let check = Sandbox::new();
    check.init_repo();
    check
        .command()
        .password(PASSWORD)
        .dest(&check.repo())
        .env("LIFEBOAT_SOURCE_PASSWORD", BOB.1)
        .args(["backup", &server.source_url("bob")])
        .run()
        .success();
    let work = check
        .repo_cmd(["--json", "ls", "latest", &format!("{account}/bob/work")])
        .success()
        .json_lines();
    assert_eq!(work[0]["source"]["displayname"], "Travail", "{}", work[0]);
    assert_eq!(work[0]["source"]["color"], "#ff8800ff", "{}", work[0]);
    assert_eq!(work[0]["source"]["components"], "VEVENT", "{}", work[0]);

    // An item changed on the server is kept unless --overwrite says so.
    let mut changed = contact(1);
    changed.splice(
        changed.len() - 11..changed.len() - 11,
        b"TITLE:Changed\r\n".iter().copied(),
    );
    server.put(ALICE, "/alice/contacts/contact-1.vcf", &changed);
    let kept = restore_to(&server.source_url("alice"), ALICE.1);
    assert_eq!(kept.success().summary()["items_replaced"], 0);
    let forced = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .env("LIFEBOAT_SOURCE_PASSWORD", ALICE.1)
        .args([
            "--json",
            "restore",
            "latest",
            "--include",
            &format!("{account}/alice/contacts/contact-1.vcf"),
            "--to",
            &server.source_url("alice"),
            "--overwrite",
            "always",
        ])
        .run();
    assert_eq!(forced.success().summary()["items_replaced"], 1);
    let back = files_below(&server.storage().join("collection-root").join("alice"));
    assert_eq!(
        back.get("contacts/contact-1.vcf"),
        before.get("contacts/contact-1.vcf")
    );
}
