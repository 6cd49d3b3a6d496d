//! End to end through the `lifeboat` binary: `key add`, `key list`,
//! `key remove` and `key passwd` on a repository mirrored to two local
//! destinations, each change made on both.
//!
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_tests::FAST_INIT;
use std::path::{Path, PathBuf};

use lifeboat_tests::tree;
use lifeboat_tests::{Lb, Output, Sandbox, PASSWORD};
use serde_json::Value;

const SECOND: &str = "second password, for the new key";

/// A sandbox with a repository on two local destinations and one snapshot.
struct Mirror {
    sb: Sandbox,
    a: PathBuf,
    b: PathBuf,
}

impl Mirror {
    fn new() -> Self {
        let sb = Sandbox::new();
        let (a, b) = (sb.join("dest-a"), sb.join("dest-b"));
        let mirror = Mirror { sb, a, b };
        mirror.run(PASSWORD, FAST_INIT).success();
        let src = mirror.sb.join("src");
        tree::write(&src.join("a.txt"), b"alpha\n");
        tree::write(&src.join("sub/b.txt"), b"beta\n");
        mirror
            .run(PASSWORD, ["backup".as_ref(), src.as_os_str()])
            .success();
        mirror
    }

    /// `lifeboat -d A -d B` with `password`.
    fn cmd(&self, password: &str) -> Lb {
        self.sb
            .command()
            .password(password)
            .dest(&self.a)
            .dest(&self.b)
    }

    fn run<I, S>(&self, password: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd(password).args(args).run()
    }

    /// `snapshots --json` from one destination alone.
    fn snapshots_from(&self, dest: &Path, password: &str) -> Output {
        self.sb
            .command()
            .password(password)
            .dest(dest)
            .args(["--json", "snapshots"])
            .run()
    }

    /// A file holding `password`, for `--new-password-file`.
    fn password_file(&self, password: &str) -> PathBuf {
        let path = self.sb.join(format!("pw-{}", password.len()));
        std::fs::write(&path, format!("{password}\n")).expect("write password file");
        path
    }

    /// `key add` of `new`, opened with `password`; returns the new key's id.
    fn add(&self, password: &str, new: &str) -> String {
        let file = self.password_file(new);
        let out = self.run(
            password,
            [
                "--json".as_ref(),
                "key".as_ref(),
                "add".as_ref(),
                "--new-password-file".as_ref(),
                file.as_os_str(),
            ],
        );
        let msg = out.success().json();
        assert_eq!(msg["message_type"], "key_added");
        msg["id"].as_str().expect("key id").to_string()
    }

    fn list(&self, password: &str) -> Vec<Value> {
        match self
            .run(password, ["--json", "key", "list"])
            .success()
            .json()
        {
            Value::Array(list) => list,
            other => panic!("key list --json is not an array: {other}"),
        }
    }
}

/// The key file names under `dest/keys`, sorted.
fn key_files(dest: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dest.join("keys"))
        .expect("read keys/")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn ids_in_use(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter(|k| k["in_use"] == true)
        .map(|k| k["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn key_add_lets_either_password_open_every_destination() {
    let m = Mirror::new();
    let first = key_files(&m.a);
    assert_eq!(first.len(), 1);
    let added = m.add(PASSWORD, SECOND);
    assert!(!first.contains(&added));

    let mut both = vec![first[0].clone(), added.clone()];
    both.sort();
    assert_eq!(key_files(&m.a), both, "destination a");
    assert_eq!(key_files(&m.b), both, "destination b");

    // Each password opens each destination on its own.
    for dest in [&m.a, &m.b] {
        for password in [PASSWORD, SECOND] {
            let list = m.snapshots_from(dest, password).success().json();
            assert_eq!(list.as_array().map(Vec::len), Some(1), "{dest:?}");
        }
        m.snapshots_from(dest, "not the password")
            .assert_code(12)
            .stderr_has("wrong password");
    }

    // key list: both keys, the one opened marked in use.
    let by_first = m.list(PASSWORD);
    assert_eq!(by_first.len(), 2);
    assert_eq!(ids_in_use(&by_first), vec![first[0].clone()]);
    let by_second = m.list(SECOND);
    assert_eq!(ids_in_use(&by_second), vec![added.clone()]);
    for key in &by_second {
        assert_eq!(key["version"], 3);
        assert_eq!(
            key["kdf"]["memory_kib"], 64,
            "a new key keeps the costs in use"
        );
        assert_eq!(key["kdf"]["iterations"], 1);
        assert_eq!(key["kdf"]["parallelism"], 4);
        assert!(
            key["hostname"].as_str().is_some_and(|h| !h.is_empty()),
            "{key}"
        );
        assert!(
            key["created"].as_str().is_some_and(|t| t.starts_with("20")),
            "{key}"
        );
        assert_eq!(
            key["destinations"].as_array().map(Vec::len),
            Some(2),
            "{key}"
        );
        assert_eq!(key["problem"], Value::Null);
    }
    let table = m.run(SECOND, ["key", "list"]);
    let text = table.success().stdout_text();
    let marked: Vec<&str> = text.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(marked.len(), 1, "{text}");
    assert!(marked[0].contains(&added[..8]), "{text}");

    // No new password and no terminal: refused, nothing added.
    m.run(PASSWORD, ["key", "add"])
        .assert_code(1)
        .stderr_has("LIFEBOAT_NEW_PASSWORD");
    assert_eq!(key_files(&m.b).len(), 2);
}

#[test]
fn key_remove_keeps_the_last_key_and_the_key_in_use() {
    let m = Mirror::new();
    let first = key_files(&m.a).remove(0);
    for force in [false, true] {
        let mut args = vec!["key", "remove", &first[..8]];
        if force {
            args.push("--force");
        }
        m.run(PASSWORD, args)
            .assert_code(1)
            .stderr_has("last usable key");
    }
    assert_eq!(key_files(&m.a), vec![first.clone()]);

    let added = m.add(PASSWORD, SECOND);
    m.run(PASSWORD, ["key", "remove", &first[..6]])
        .assert_code(1)
        .stderr_has("--force");
    // Naming no key of this repository is a usage mistake (exit 2).
    m.run(PASSWORD, ["key", "remove", "ffffffffffff"])
        .assert_code(2)
        .stderr_has("no key matches");
    m.run(PASSWORD, ["key", "remove", "not-hex"])
        .assert_code(2)
        .stderr_has("not a key id");
    assert_eq!(key_files(&m.a).len(), 2);
    assert_eq!(key_files(&m.b).len(), 2);

    let out = m.run(PASSWORD, ["--json", "key", "remove", &added[..8]]);
    let msg = out.success().json();
    assert_eq!(msg["message_type"], "key_removed");
    assert_eq!(msg["id"], added.as_str());
    assert_eq!(key_files(&m.a), vec![first.clone()]);
    assert_eq!(key_files(&m.b), vec![first.clone()]);
    for dest in [&m.a, &m.b] {
        m.snapshots_from(dest, SECOND).assert_code(12);
        m.snapshots_from(dest, PASSWORD).success();
    }
}

#[test]
fn key_passwd_replaces_the_password_on_every_destination() {
    let m = Mirror::new();
    let first = key_files(&m.a).remove(0);
    let out = m
        .cmd(PASSWORD)
        .env("LIFEBOAT_NEW_PASSWORD", SECOND)
        .args(["--json", "key", "passwd"])
        .run();
    let msg = out.success().json();
    assert_eq!(msg["message_type"], "password_changed");
    assert_eq!(msg["removed"], first.as_str());
    let added = msg["added"].as_str().expect("added id").to_string();
    for dest in [&m.a, &m.b] {
        assert_eq!(key_files(dest), vec![added.clone()], "{dest:?}");
        m.snapshots_from(dest, PASSWORD)
            .assert_code(12)
            .stderr_has("wrong password");
        let list = m.snapshots_from(dest, SECOND).success().json();
        assert_eq!(list.as_array().map(Vec::len), Some(1));
    }
    assert_eq!(ids_in_use(&m.list(SECOND)), vec![added]);
}

#[test]
fn key_changes_need_every_destination() {
    let m = Mirror::new();
    let first = key_files(&m.a);
    // Destination b's keys/ cannot be listed (a file stands in its place).
    let moved = m.sb.join("b-keys");
    std::fs::rename(m.b.join("keys"), &moved).expect("move keys/");
    std::fs::write(m.b.join("keys"), b"not a directory").expect("write");

    let file = m.password_file(SECOND);
    let add: [&std::ffi::OsStr; 4] = [
        "key".as_ref(),
        "add".as_ref(),
        "--new-password-file".as_ref(),
        file.as_os_str(),
    ];
    m.run(PASSWORD, add)
        .assert_code(1)
        .stderr_has("local-dest-b")
        .stderr_has("nothing was changed");
    let passwd: [&std::ffi::OsStr; 4] = [
        "key".as_ref(),
        "passwd".as_ref(),
        "--new-password-file".as_ref(),
        file.as_os_str(),
    ];
    m.run(PASSWORD, passwd)
        .assert_code(1)
        .stderr_has("nothing was changed");
    assert_eq!(key_files(&m.a), first, "a half-done change was left on a");

    std::fs::remove_file(m.b.join("keys")).expect("remove");
    std::fs::rename(&moved, m.b.join("keys")).expect("restore keys/");
    m.add(PASSWORD, SECOND);
    assert_eq!(key_files(&m.a).len(), 2);
    assert_eq!(key_files(&m.b).len(), 2);
}
