//! The backend conformance suite on the SFTP backend, against the OpenSSH server
//! that `scripts/test.sh` starts (`scripts/servers/sftp.sh`), plus what only SFTP
//! has: host-key verification and reconnecting after a dropped connection.
//!
//! Every test works in its own fresh directory under `LIFEBOAT_TEST_SFTP_ROOT`.
//! Without the server's variables the tests fail: they never skip.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use lifeboat_backends::{Backend, Bytes, DestinationUrl, ErrorKind};

/// How to reach the test server, from the `LIFEBOAT_TEST_SFTP_*` variables.
struct Server {
    host: String,
    port: u16,
    user: String,
    identity: String,
    known_hosts: String,
    root: String,
    /// A port where the server refuses `hardlink@openssh.com` and `fsync@openssh.com`.
    port_nolink: u16,
    known_hosts_nolink: String,
}

fn server() -> Server {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the SFTP tests need the OpenSSH test server. \
                 Run ./scripts/test.sh, or `source scripts/servers/sftp.sh` in bash \
                 and run cargo test from that shell"
            )
        })
    };
    Server {
        host: var("LIFEBOAT_TEST_SFTP_HOST"),
        port: var("LIFEBOAT_TEST_SFTP_PORT")
            .parse()
            .expect("LIFEBOAT_TEST_SFTP_PORT is not a port number"),
        user: var("LIFEBOAT_TEST_SFTP_USER"),
        identity: var("LIFEBOAT_TEST_SFTP_IDENTITY"),
        known_hosts: var("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS"),
        root: var("LIFEBOAT_TEST_SFTP_ROOT"),
        port_nolink: var("LIFEBOAT_TEST_SFTP_PORT_NOLINK")
            .parse()
            .expect("LIFEBOAT_TEST_SFTP_PORT_NOLINK is not a port number"),
        known_hosts_nolink: var("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS_NOLINK"),
    }
}

impl Server {
    /// A fresh, not yet existing directory under the server's test root.
    fn fresh_dir(&self) -> String {
        format!("{}/t-{:016x}", self.root, rand::random::<u64>())
    }

    /// `sftp://…` for `dir`, reached on `port`, trusting `known_hosts`.
    fn url(&self, port: u16, dir: &str, host_key: &str) -> String {
        format!(
            "sftp://{}@{}:{port}{dir}?{host_key}&identity={}",
            self.user, self.host, self.identity
        )
    }

    fn open(&self, port: u16, dir: &str, host_key: &str) -> Arc<dyn Backend> {
        let url = self.url(port, dir, host_key);
        DestinationUrl::parse(&url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .open("sftp-test")
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// A backend on a fresh directory that trusts the server's real key.
    fn fresh(&self) -> Arc<dyn Backend> {
        let host_key = format!("known_hosts={}", self.known_hosts);
        self.open(self.port, &self.fresh_dir(), &host_key)
    }

    /// Like [`Server::fresh`], on the port without hard links: puts fall back
    /// to stat-then-rename.
    fn fresh_without_hard_links(&self) -> Arc<dyn Backend> {
        let host_key = format!("known_hosts={}", self.known_hosts_nolink);
        self.open(self.port_nolink, &self.fresh_dir(), &host_key)
    }

    /// The server's host key as `type base64`, from its known_hosts line.
    fn host_key(&self) -> String {
        let line = std::fs::read_to_string(&self.known_hosts).expect("read known_hosts");
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 3, "malformed known_hosts line: {line}");
        format!("{} {}", fields[1], fields[2])
    }
}

mod sftp {
    lifeboat_backends::conformance_suite!(async { super::server().fresh() });
}

mod sftp_without_hard_links {
    lifeboat_backends::conformance_suite!(async { super::server().fresh_without_hard_links() });
}

/// Every key under `prefix`, sorted.
async fn collect_keys(backend: &dyn Backend, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = backend
        .list(prefix)
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .expect("list");
    keys.sort();
    keys
}

/// A temporary known_hosts file.
fn known_hosts_file(dir: &tempfile::TempDir, line: &str) -> PathBuf {
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, format!("{line}\n")).expect("write known_hosts");
    path
}

/// Another ed25519 key: not the test server's.
const WRONG_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqdDBjqNoj465sqXLHsf9D2ZWnuJCaGRGGtviVyUdwy";

/// A wrong host key is refused with a clear error and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_refused() {
    let server = server();
    let dir = server.fresh_dir();
    let tmp = tempfile::tempdir().expect("temp dir");
    let label = format!("[{}]:{}", server.host, server.port);

    // A different key recorded for this host: a possible man in the middle.
    let changed = known_hosts_file(&tmp, &format!("{label} {WRONG_KEY}"));
    let backend = server.open(
        server.port,
        &dir,
        &format!("known_hosts={}", changed.display()),
    );
    for _ in 0..2 {
        let err = backend
            .put("config", Bytes::from_static(b"must not land"))
            .await
            .expect_err("a changed host key must be refused");
        let msg = err.to_string();
        assert_eq!(err.kind, ErrorKind::Permanent, "{msg}");
        assert_eq!(err.key, "config");
        assert!(msg.contains("HOST KEY MISMATCH"), "{msg}");
        assert!(msg.contains(&label), "names the host: {msg}");
        assert!(msg.contains("SHA256:"), "names the fingerprint: {msg}");
    }
    // Concurrent calls share the refusal; none of them gets through.
    let puts = (0..8).map(|i| {
        let backend = Arc::clone(&backend);
        async move {
            backend
                .put(&format!("locks/{i}"), Bytes::from_static(b"x"))
                .await
        }
    });
    for result in futures::future::join_all(puts).await {
        let err = result.expect_err("a changed host key must be refused");
        assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
        assert!(err.to_string().contains("HOST KEY MISMATCH"), "{err}");
    }
    let listed = backend.list("").next().await;
    assert!(
        matches!(&listed, Some(Err(e)) if e.kind == ErrorKind::Permanent),
        "listing must fail too: {listed:?}"
    );

    // A host missing from known_hosts is refused as well, never learned.
    let unknown = known_hosts_file(&tmp, &format!("[other.example]:22 {WRONG_KEY}"));
    let backend = server.open(
        server.port,
        &dir,
        &format!("known_hosts={}", unknown.display()),
    );
    let err = backend
        .put("config", Bytes::from_static(b"x"))
        .await
        .expect_err("an unknown host key must be refused");
    let msg = err.to_string();
    assert_eq!(err.kind, ErrorKind::Permanent, "{msg}");
    assert!(msg.contains("is not in"), "{msg}");
    assert!(msg.contains(&label) && msg.contains("SHA256:"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(&unknown).expect("read"),
        format!("[other.example]:22 {WRONG_KEY}\n"),
        "known_hosts must not be modified"
    );

    // A wrong pinned fingerprint.
    let backend = server.open(
        server.port,
        &dir,
        "fingerprint=SHA256:HWxmqoDgd9iF1RAA9PYjSfNCAK2fLkLIPmlSyCwclf0",
    );
    let err = backend.stat("config").await.expect_err("wrong fingerprint");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("pins SHA256:HWxm"), "{err}");

    // Nothing reached the server.
    let good = server.open(
        server.port,
        &dir,
        &format!("known_hosts={}", server.known_hosts),
    );
    assert!(collect_keys(&*good, "").await.is_empty());
    assert!(!std::path::Path::new(&dir).exists(), "{dir} was created");
}

/// The right pinned fingerprint is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_fingerprint_is_accepted() {
    let server = server();
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&server.known_hosts)
        .output()
        .expect("run ssh-keygen -lf");
    let text = String::from_utf8_lossy(&out.stdout);
    let fingerprint = text
        .split_whitespace()
        .find(|f| f.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
        .to_string();
    let backend = server.open(
        server.port,
        &server.fresh_dir(),
        &format!("fingerprint={fingerprint}"),
    );
    backend
        .put("snapshots/a", Bytes::from_static(b"pinned"))
        .await
        .expect("put with a pinned fingerprint");
    assert_eq!(
        &backend.get("snapshots/a", None).await.expect("get")[..],
        b"pinned"
    );
}

/// A connection dropped under the backend fails at most the calls in flight,
/// as `Transient`, and the next call reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_dropped_connection() {
    let server = server();
    let proxy = Proxy::start(server.port).await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let kh = known_hosts_file(
        &tmp,
        &format!("[{}]:{} {}", server.host, proxy.port, server.host_key()),
    );
    let backend = server.open(
        proxy.port,
        &server.fresh_dir(),
        &format!("known_hosts={}", kh.display()),
    );
    let data = Bytes::from(vec![7u8; 300_000]);
    backend.put("data/aa/one", data.clone()).await.expect("put");
    assert_eq!(proxy.accepted(), 1);

    proxy.cut();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut recovered = false;
    for _ in 0..3 {
        match backend.get("data/aa/one", None).await {
            Ok(got) => {
                assert_eq!(got, data);
                recovered = true;
                break;
            }
            Err(e) => assert_eq!(e.kind, ErrorKind::Transient, "{e}"),
        }
    }
    assert!(recovered, "no reconnect after the connection dropped");
    assert_eq!(proxy.accepted(), 2, "exactly one new connection");
    backend
        .put("data/aa/two", Bytes::from_static(b"after"))
        .await
        .expect("put after reconnect");
}

/// A TCP forwarder to the test server that can cut every connection at once.
struct Proxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            accepted,
            cut,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every connection open now.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// Many objects up and down at once, all intact; prints the throughput (the
/// requests of concurrent calls share the connection without waiting on each other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfer_in_parallel() {
    let backend = server().fresh();
    let objects: Vec<(String, Bytes)> = (0..16u8)
        .map(|i| {
            let data: Vec<u8> = (0..4u32 << 20)
                .map(|j| (j.wrapping_mul(31) as u8) ^ i)
                .collect();
            (format!("data/{i:02x}/{i:064x}"), Bytes::from(data))
        })
        .collect();
    let total: usize = objects.iter().map(|(_, d)| d.len()).sum();
    let started = std::time::Instant::now();
    let puts = objects
        .iter()
        .map(|(key, data)| backend.put(key, data.clone()));
    for result in futures::future::join_all(puts).await {
        result.expect("put");
    }
    let up = started.elapsed();
    let started = std::time::Instant::now();
    let gets = objects.iter().map(|(key, _)| backend.get(key, None));
    let got = futures::future::join_all(gets).await;
    let down = started.elapsed();
    for ((key, data), got) in objects.iter().zip(got) {
        assert!(got.expect("get") == *data, "{key} differs");
    }
    let mb = total as f64 / 1e6;
    println!(
        "sftp: {mb:.0} MB up in {up:.2?} ({:.0} MB/s), down in {down:.2?} ({:.0} MB/s)",
        mb / up.as_secs_f64(),
        mb / down.as_secs_f64()
    );
}

/// Nothing listening: a `Transient` error naming the address, quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_transient() {
    let server = server();
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let backend = server.open(
        port,
        &server.fresh_dir(),
        &format!("known_hosts={}", server.known_hosts),
    );
    let started = std::time::Instant::now();
    let err = backend
        .stat("config")
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains(&format!(":{port}")), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
