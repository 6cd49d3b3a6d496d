//! Pulling a cloud account: Lifeboat against the sync tools people use to
//! copy one (vdirsyncer for CardDAV, mbsync for IMAP) on the same servers,
//! same run: 1,000 contacts on Radicale and 1,000 messages on Dovecot, a
//! first run and a run with nothing changed, on loopback and through an
//! imitated internet link.
//!
//! Every tool reaches the server through a counting proxy (and, for the
//! link, the WAN proxy behind it), so requests and bytes are counted the
//! same way for all: bytes each way, and requests as HTTP request lines or
//! IMAP command lines sent. For Lifeboat the fetch phase (first request to
//! the source to the last) is reported apart from the run's fixed cost (key
//! derivation, lock, index, snapshot write).
//!
//! Run with `benches/sources.sh [--rtt-ms N] [--mbit N]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_benches::wan::{self, Link};
use lifeboat_tests::dav::{contact, Radicale};
use lifeboat_tests::imap::{message, Dovecot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONTACTS: usize = 1000;
const MAILBOXES: [(&str, usize); 3] = [("INBOX", 600), ("Archive", 300), ("Sent", 100)];
const USER: (&str, &str) = ("alice", "bench-secret");

/// What the counting proxy saw.
#[derive(Default)]
struct Counts {
    up: AtomicU64,
    down: AtomicU64,
    requests: AtomicU64,
}

impl Counts {
    fn take(&self) -> (u64, u64, u64) {
        (
            self.requests.swap(0, Ordering::Relaxed),
            self.up.swap(0, Ordering::Relaxed),
            self.down.swap(0, Ordering::Relaxed),
        )
    }
}

/// A proxy in front of `upstream` counting bytes and request lines (`needle`
/// occurrences in what clients send).
async fn counting_proxy(
    upstream: SocketAddr,
    counts: Arc<Counts>,
    needle: &'static [u8],
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counts = counts.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up_counts = counts.clone();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        up_counts.up.fetch_add(n as u64, Ordering::Relaxed);
                        tail.extend_from_slice(&buf[..n]);
                        let found = tail.windows(needle.len()).filter(|w| *w == needle).count();
                        up_counts
                            .requests
                            .fetch_add(found as u64, Ordering::Relaxed);
                        let keep = tail.len().saturating_sub(needle.len() - 1);
                        tail.drain(..keep);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    counts.down.fetch_add(n as u64, Ordering::Relaxed);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = cw.shutdown().await;
                let _ = up.await;
            });
        }
    });
    address
}

/// One measured run.
struct Run {
    tool: &'static str,
    pass: &'static str,
    wall: Duration,
    fetch: Option<Duration>,
    requests: u64,
    up: u64,
    down: u64,
    items: Option<u64>,
}

fn run_timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    let out = command.output().expect("run a tool");
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    wall
}

fn lifeboat(repo: &Path, home: &Path, url: &str) -> (Duration, serde_json::Value) {
    let bin = std::env::var("LIFEBOAT_BIN").unwrap_or_else(|_| "target/release/lifeboat".into());
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["--json", "-d"])
        .arg(repo)
        .args(["backup", url])
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("LIFEBOAT_PASSWORD", "bench")
        .env("LIFEBOAT_SOURCE_PASSWORD", USER.1)
        .output()
        .expect("run lifeboat");
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "lifeboat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .expect("a summary line");
    (wall, summary["sources"][0].clone())
}

fn init(repo: &Path, home: &Path) {
    let bin = std::env::var("LIFEBOAT_BIN").unwrap_or_else(|_| "target/release/lifeboat".into());
    let out = Command::new(bin)
        .args(["-d"])
        .arg(repo)
        .args(["init"])
        .env("HOME", home)
        .env("LIFEBOAT_PASSWORD", "bench")
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn measure_lifeboat(url: &str, counts: &Counts, work: &Path) -> Vec<Run> {
    let (repo, home) = (work.join("lb-repo"), work.join("lb-home"));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&home).expect("home");
    init(&repo, &home);
    let mut runs = Vec::new();
    for pass in ["first", "no change"] {
        counts.take();
        let (wall, report) = lifeboat(&repo, &home, url);
        let (requests, up, down) = counts.take();
        runs.push(Run {
            tool: "lifeboat",
            pass,
            wall,
            fetch: report["fetch_ms"].as_u64().map(Duration::from_millis),
            requests,
            up,
            down,
            items: report["items_fetched"].as_u64(),
        });
    }
    runs
}

fn measure_vdirsyncer(port: u16, counts: &Counts, work: &Path) -> Vec<Run> {
    let vdirsyncer = std::env::var("LIFEBOAT_BENCH_VDIRSYNCER").expect("LIFEBOAT_BENCH_VDIRSYNCER");
    let dir = work.join("vdirsyncer");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("contacts")).expect("dir");
    let config = format!(
        "[general]\nstatus_path = \"{d}/status/\"\n\n[pair contacts]\na = \"remote\"\nb = \"local\"\ncollections = [\"from a\"]\nconflict_resolution = \"a wins\"\n\n[storage remote]\ntype = \"carddav\"\nurl = \"http://127.0.0.1:{port}/\"\nusername = \"{u}\"\npassword = \"{p}\"\nread_only = true\n\n[storage local]\ntype = \"filesystem\"\npath = \"{d}/contacts/\"\nfileext = \".vcf\"\n",
        d = dir.display(),
        u = USER.0,
        p = USER.1
    );
    std::fs::write(dir.join("config"), config).expect("config");
    let command = |args: &[&str]| {
        let mut c = Command::new(&vdirsyncer);
        c.arg("-c")
            .arg(dir.join("config"))
            .args(args)
            .env("HOME", &dir);
        c
    };
    // Discovery once beforehand, as its users do (answering yes to creating
    // the local collection); then the runs.
    let mut discover = command(&["discover"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("vdirsyncer discover");
    if let Some(mut stdin) = discover.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(b"y\ny\ny\n");
    }
    assert!(
        discover.wait().is_ok_and(|s| s.success()),
        "vdirsyncer discover failed"
    );
    let mut runs = Vec::new();
    for pass in ["first", "no change"] {
        counts.take();
        let wall = run_timed(&mut command(&["sync"]));
        let (requests, up, down) = counts.take();
        runs.push(Run {
            tool: "vdirsyncer",
            pass,
            wall,
            fetch: None,
            requests,
            up,
            down,
            items: None,
        });
    }
    runs
}

fn measure_mbsync(port: u16, counts: &Counts, work: &Path) -> Vec<Run> {
    let dir = work.join("mbsync");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mail")).expect("dir");
    let config = format!(
        "IMAPAccount bench\nHost 127.0.0.1\nPort {port}\nUser {u}\nPass {p}\nSSLType None\nAuthMechs LOGIN\n\nIMAPStore remote\nAccount bench\n\nMaildirStore local\nPath {d}/mail/\nInbox {d}/mail/INBOX\nSubFolders Verbatim\n\nChannel bench\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\n",
        u = USER.0,
        p = USER.1,
        d = dir.display()
    );
    std::fs::write(dir.join("rc"), config).expect("config");
    let mut runs = Vec::new();
    for pass in ["first", "no change"] {
        counts.take();
        let wall = run_timed(
            Command::new("mbsync")
                .arg("-q")
                .arg("-c")
                .arg(dir.join("rc"))
                .arg("-a"),
        );
        let (requests, up, down) = counts.take();
        runs.push(Run {
            tool: "mbsync",
            pass,
            wall,
            fetch: None,
            requests,
            up,
            down,
            items: None,
        });
    }
    runs
}

fn table(title: &str, runs: &[Run]) {
    println!("\n{title}");
    println!("| tool | run | wall | fetch phase | requests | bytes sent | bytes received | items downloaded |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in runs {
        println!(
            "| {} | {} | {:.2} s | {} | {} | {} | {} | {} |",
            r.tool,
            r.pass,
            r.wall.as_secs_f64(),
            r.fetch
                .map_or("—".to_string(), |f| format!("{:.2} s", f.as_secs_f64())),
            r.requests,
            r.up,
            r.down,
            r.items.map_or("—".to_string(), |n| n.to_string())
        );
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rtt = arg("--rtt-ms", 40);
    let mbit = arg("--mbit", 100);
    let work: PathBuf = std::env::temp_dir().join("lifeboat-bench-sources");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");

    eprintln!("filling Radicale with {CONTACTS} contacts and Dovecot with 1,000 messages...");
    let radicale = Radicale::start(&[USER]);
    radicale.make_addressbook(USER, "/alice/contacts/", "Contacts");
    for n in 0..CONTACTS {
        radicale.put(
            USER,
            &format!("/alice/contacts/contact-{n}.vcf"),
            &contact(n),
        );
    }
    let dovecot = Dovecot::start(&[USER]);
    let mut n = 0;
    for (mailbox, count) in MAILBOXES {
        for _ in 0..count {
            dovecot.deliver(
                USER.0,
                mailbox,
                n,
                &message(n),
                ["S", "", "FS"][n % 3],
                1_780_000_000 + n as i64 * 60,
            );
            n += 1;
        }
    }
    dovecot.settle();

    let links = [
        ("loopback", None),
        (
            "link",
            Some(Link {
                rtt: Duration::from_millis(rtt),
                bits_per_second: mbit * 1_000_000,
            }),
        ),
    ];
    for (name, link) in links {
        let dav_upstream: SocketAddr = format!("127.0.0.1:{}", radicale.port())
            .parse()
            .expect("addr");
        let imap_upstream: SocketAddr = format!("127.0.0.1:{}", dovecot.port())
            .parse()
            .expect("addr");
        let (dav_upstream, imap_upstream) = match link {
            Some(link) => (
                wan::start(dav_upstream, link).await.expect("wan proxy"),
                wan::start(imap_upstream, link).await.expect("wan proxy"),
            ),
            None => (dav_upstream, imap_upstream),
        };
        let dav_counts = Arc::new(Counts::default());
        let imap_counts = Arc::new(Counts::default());
        let dav_port = counting_proxy(dav_upstream, dav_counts.clone(), b" HTTP/1.1\r\n")
            .await
            .port();
        let imap_port = counting_proxy(imap_upstream, imap_counts.clone(), b"\r\n")
            .await
            .port();
        let shown = match link {
            Some(_) => format!("{name}: {rtt} ms round trip, {mbit} Mbit/s"),
            None => name.to_string(),
        };
        let work = work.clone();
        let (dav, imap) = tokio::task::spawn_blocking(move || {
            let mut dav = measure_lifeboat(
                &format!("dav://{}@127.0.0.1:{dav_port}/", USER.0),
                &dav_counts,
                &work,
            );
            dav.extend(measure_vdirsyncer(dav_port, &dav_counts, &work));
            let mut imap = measure_lifeboat(
                &format!("imap://{}@127.0.0.1:{imap_port}/", USER.0),
                &imap_counts,
                &work,
            );
            imap.extend(measure_mbsync(imap_port, &imap_counts, &work));
            (dav, imap)
        })
        .await
        .expect("measure");
        table(&format!("CardDAV, {CONTACTS} contacts ({shown})"), &dav);
        table(
            &format!("IMAP, 1,000 messages in 3 mailboxes ({shown})"),
            &imap,
        );
    }
}
