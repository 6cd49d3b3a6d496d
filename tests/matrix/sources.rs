//! Cases with a source beside the files (issue 16): a CardDAV server that
//! dies in the middle of a backup, and one that serves garbage. The files
//! must be committed and restore bit for bit; the source is left out or its
//! bytes kept as served, never a panic or a half-written snapshot; and the
//! next run, with the server healthy, stores every item as the server has it.

use std::ffi::OsStr;

use lifeboat_tests::dav::{contact, files_below, CuttingProxy, GarblingProxy, Radicale};
use lifeboat_tests::Output;

use super::process::{two_local, History};
use super::{Outcome, ProcessCase};

/// The source cases, in table order.
pub const CASES: &[ProcessCase] = &[
    ProcessCase {
        name: "source server dies in backup",
        run: source_dies,
    },
    ProcessCase {
        name: "source serves garbage",
        run: source_garbage,
    },
];

const USER: (&str, &str) = ("alice", "matrix-secret");
const CONTACTS: usize = 40;

fn server() -> Radicale {
    let server = Radicale::start(&[USER]);
    server.make_addressbook(USER, "/alice/contacts/", "Contacts");
    for n in 0..CONTACTS {
        server.put(USER, &format!("/alice/contacts/c{n}.vcf"), &contact(n));
    }
    server
}

/// The `--json` summary line, when the run printed one.
fn summary(out: &Output) -> serde_json::Value {
    out.json_lines()
        .into_iter()
        .rev()
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_default()
}

/// Backs up the files and `url`; records the snapshot when one was made.
fn backup_with(h: &mut History, url: &str) -> Output {
    let out = lifeboat_tests::multi::lb(&h.sb, &h.dest_refs())
        .env("LIFEBOAT_SOURCE_PASSWORD", USER.1)
        .args([
            OsStr::new("--json"),
            OsStr::new("backup"),
            h.src.as_os_str(),
            OsStr::new(url),
        ])
        .run();
    if let Some(id) = summary(&out)["snapshot_id"].as_str() {
        let copy = h.sb.join(format!("copy-{}", h.snapshots.len()));
        super::copy_tree(&h.src, &copy);
        h.snapshots.push((id.to_string(), copy));
    }
    out
}

/// A healthy run after the fault: every item stored as the server has it.
fn healthy_run(h: &mut History, server: &Radicale) -> Result<Outcome, String> {
    let out = backup_with(h, &server.source_url(USER.0));
    if out.code != 0 {
        return Err(format!("healthy backup exit {}: {}", out.code, out.stderr));
    }
    let target = h.sb.join("items");
    let restored = h.run([
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--include"),
        OsStr::new(&format!("/dav/{}", server.authority())),
        OsStr::new("--target"),
        target.as_os_str(),
    ]);
    let mut outcome = Outcome::default();
    if restored.code != 0 {
        outcome.errors_named += 1;
    }
    let got = files_below(&target.join("dav").join(server.authority()));
    let served = files_below(&server.storage().join("collection-root"));
    let items = served
        .iter()
        .filter(|(k, _)| k.ends_with(".vcf") && !k.contains(".Radicale"));
    for (rel, bytes) in items {
        if got.get(rel) != Some(bytes) {
            outcome.bytes_lost += bytes.len() as u64;
        }
    }
    outcome.absorb(h.verify());
    h.check_clean()?;
    Ok(outcome)
}

fn source_dies(seed: u64) -> Result<Outcome, String> {
    let server = server();
    let mut h = two_local();
    h.grow(seed, 0, 2);
    // Cut somewhere in the discovery, the listing or the downloads.
    let budget = 2_000 + (seed as i64 * 7_919) % 60_000;
    let proxy = CuttingProxy::start(server.port(), budget);
    let url = format!("dav://{}@127.0.0.1:{}/", USER.0, proxy.port());
    let out = backup_with(&mut h, &url);
    let mut outcome = Outcome::default();
    match out.code {
        3 => {
            let report = &summary(&out)["sources"][0];
            let named = out.json_lines().iter().any(|v| {
                v["message_type"] == "error"
                    && v["item"].as_str().is_some_and(|i| i.starts_with("dav://"))
            });
            if report["error"].as_str().is_none() || !named || out.stderr.contains("panicked") {
                return Err(format!("the dead source is not named: {}", out.stderr));
            }
            outcome.errors_named += 1;
        }
        0 => {} // the budget sufficed for the whole run
        code => return Err(format!("backup exit {code}: {}", out.stderr)),
    }
    outcome.absorb(healthy_run(&mut h, &server)?);
    Ok(outcome)
}

fn source_garbage(seed: u64) -> Result<Outcome, String> {
    let server = server();
    let mut h = two_local();
    h.grow(seed, 0, 2);
    let after = 500 + (seed as i64 * 4_049) % 40_000;
    let proxy = GarblingProxy::start(server.port(), after, seed + 1);
    let url = format!("dav://{}@127.0.0.1:{}/", USER.0, proxy.port());
    let out = backup_with(&mut h, &url);
    let mut outcome = Outcome::default();
    match out.code {
        0 | 3 if out.stderr.contains("panicked") => {
            return Err(format!("panicked: {}", out.stderr));
        }
        3 => outcome.errors_named += 1,
        0 => {
            let malformed = summary(&out)["sources"][0]["items_malformed"]
                .as_u64()
                .unwrap_or(0);
            outcome.errors_named += malformed;
        }
        code => return Err(format!("backup exit {code}: {}", out.stderr)),
    }
    outcome.absorb(healthy_run(&mut h, &server)?);
    Ok(outcome)
}
