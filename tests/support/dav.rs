//! A real CardDAV/CalDAV server for the source tests: Radicale (installed by
//! scripts/servers/dav.sh), one instance per test on a free loopback port
//! with its own accounts and storage, filled over HTTP with generated data;
//! and a TCP proxy that cuts the connection after a byte budget.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running Radicale; killed on drop.
pub struct Radicale {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Radicale {
    /// Starts a server whose accounts are `users` (name, password).
    ///
    /// # Panics
    /// When `LIFEBOAT_TEST_RADICALE` is unset (run the tests through
    /// scripts/test.sh) or the server does not answer within 30 s.
    pub fn start(users: &[(&str, &str)]) -> Radicale {
        Self::start_with(users, None)
    }

    /// Starts a server that speaks HTTPS with `ca`'s server certificate.
    pub fn start_tls(users: &[(&str, &str)], ca: &LocalCa) -> Radicale {
        Self::start_with(users, Some(ca))
    }

    fn start_with(users: &[(&str, &str)], tls: Option<&LocalCa>) -> Radicale {
        let radicale = std::env::var("LIFEBOAT_TEST_RADICALE").expect(
            "LIFEBOAT_TEST_RADICALE is not set: run the tests with scripts/test.sh, which installs Radicale",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let htpasswd: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        std::fs::write(dir.path().join("users"), htpasswd).expect("write users");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let mut command = Command::new(radicale);
        if let Some(ca) = tls {
            command
                .arg("--server-ssl")
                .arg("--server-certificate")
                .arg(ca.cert())
                .arg("--server-key")
                .arg(ca.key());
        }
        let child = command
            .arg("--server-hosts")
            .arg(format!("127.0.0.1:{port}"))
            .args([
                "--auth-type",
                "htpasswd",
                "--auth-htpasswd-encryption",
                "plain",
            ])
            .arg("--auth-htpasswd-filename")
            .arg(dir.path().join("users"))
            .arg("--storage-filesystem-folder")
            .arg(dir.path().join("collections"))
            .args(["--logging-level", "warning", "--auth-delay", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start radicale");
        let server = Radicale { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "radicale did not answer within 30 s: {}",
                std::fs::read_to_string(server.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `host:port`.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The source URL of `user`'s account, discovered from the bare host.
    pub fn source_url(&self, user: &str) -> String {
        format!("dav://{user}@127.0.0.1:{}/", self.port)
    }

    /// Where Radicale keeps its collections on disk.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("collections")
    }

    /// Stops the server.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends one request with `curl`; its status code.
    pub fn request(
        &self,
        (user, password): (&str, &str),
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> u16 {
        let body_file = self.dir.path().join(format!("body-{}", std::process::id()));
        std::fs::write(&body_file, body).expect("write body");
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
            .arg("-u")
            .arg(format!("{user}:{password}"))
            .arg("-H")
            .arg(format!("Content-Type: {content_type}"))
            .arg("--data-binary")
            .arg(format!("@{}", body_file.display()))
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Creates an address book.
    pub fn make_addressbook(&self, auth: (&str, &str), path: &str, name: &str) {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><mkcol xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><set><prop><resourcetype><collection/><C:addressbook/></resourcetype><displayname>{name}</displayname><C:addressbook-description>generated by the tests</C:addressbook-description></prop></set></mkcol>"#
        );
        let code = self.request(auth, "MKCOL", path, "application/xml", body.as_bytes());
        assert_eq!(code, 201, "MKCOL {path}");
    }

    /// Creates a calendar holding `components` (`VEVENT`, `VTODO`).
    pub fn make_calendar(
        &self,
        auth: (&str, &str),
        path: &str,
        name: &str,
        components: &[&str],
        color: &str,
    ) {
        let comps: String = components
            .iter()
            .map(|c| format!(r#"<C:comp name="{c}"/>"#))
            .collect();
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:A="http://apple.com/ns/ical/"><set><prop><displayname>{name}</displayname><A:calendar-color>{color}</A:calendar-color><C:supported-calendar-component-set>{comps}</C:supported-calendar-component-set></prop></set></C:mkcalendar>"#
        );
        let code = self.request(auth, "MKCALENDAR", path, "application/xml", body.as_bytes());
        assert_eq!(code, 201, "MKCALENDAR {path}");
    }

    /// Stores one item (201 created or 204 replaced).
    pub fn put(&self, auth: (&str, &str), path: &str, body: &[u8]) {
        let content_type = if path.ends_with(".ics") {
            "text/calendar; charset=utf-8"
        } else {
            "text/vcard; charset=utf-8"
        };
        let code = self.request(auth, "PUT", path, content_type, body);
        assert!(code == 201 || code == 204, "PUT {path}: {code}");
    }

    /// Deletes one item.
    pub fn delete(&self, auth: (&str, &str), path: &str) {
        let code = self.request(auth, "DELETE", path, "text/plain", b"");
        assert!(code == 200 || code == 204, "DELETE {path}: {code}");
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A contact with a non-ASCII name and, for every third one, a photo.
pub fn contact(n: usize) -> Vec<u8> {
    let names = [
        "Zoë",
        "Åsa",
        "Jürgen",
        "Élodie",
        "Łukasz",
        "Søren",
        "Ngọc",
        "Дмитрий",
        "美咲",
        "Ana",
    ];
    let given = names[n % names.len()];
    let mut card = format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:contact-{n}\r\nFN:{given} Número{n}\r\nN:Número{n};{given};;;\r\nEMAIL;TYPE=INTERNET:person{n}@example.org\r\nTEL;TYPE=CELL:+33 6 {:02} {:02} {:02} {:02}\r\nNOTE:Généré pour le test n°{n}\r\n",
        n % 100,
        (n / 100) % 100,
        (n * 7) % 100,
        (n * 13) % 100
    );
    if n.is_multiple_of(3) {
        // A small photo: base64 of pseudo-random bytes, folded at 75 octets.
        let bytes: Vec<u8> = (0..1500u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(n as u32) >> 13) as u8)
            .collect();
        let encoded = base64(&bytes);
        let line = format!("PHOTO;ENCODING=b;TYPE=JPEG:{encoded}");
        let mut folded = String::new();
        let chars: Vec<char> = line.chars().collect();
        for (i, chunk) in chars.chunks(74).enumerate() {
            if i > 0 {
                folded.push_str("\r\n ");
            }
            folded.extend(chunk);
        }
        card.push_str(&folded);
        card.push_str("\r\n");
    }
    card.push_str("END:VCARD\r\n");
    card.into_bytes()
}

/// An event: every fourth one weekly recurring, every fifth one in a time
/// zone of its own.
pub fn event(n: usize) -> Vec<u8> {
    let day = 1 + n % 28;
    let mut cal =
        String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//lifeboat//tests//EN\r\n");
    let (start, end) = if n.is_multiple_of(5) {
        cal.push_str("BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n");
        (
            format!("DTSTART;TZID=Europe/Paris:202701{day:02}T090000"),
            format!("DTEND;TZID=Europe/Paris:202701{day:02}T100000"),
        )
    } else {
        (
            format!("DTSTART:202701{day:02}T140000Z"),
            format!("DTEND:202701{day:02}T150000Z"),
        )
    };
    cal.push_str(&format!(
        "BEGIN:VEVENT\r\nUID:event-{n}\r\nDTSTAMP:20261201T000000Z\r\n{start}\r\n{end}\r\nSUMMARY:Réunion n°{n}\r\n"
    ));
    if n.is_multiple_of(4) {
        cal.push_str("RRULE:FREQ=WEEKLY;COUNT=10\r\n");
    }
    cal.push_str("END:VEVENT\r\nEND:VCALENDAR\r\n");
    cal.into_bytes()
}

/// A task, every other one done.
pub fn task(n: usize) -> Vec<u8> {
    let status = if n.is_multiple_of(2) {
        "COMPLETED"
    } else {
        "NEEDS-ACTION"
    };
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//lifeboat//tests//EN\r\nBEGIN:VTODO\r\nUID:task-{n}\r\nDTSTAMP:20261201T000000Z\r\nDUE:20270115T120000Z\r\nSUMMARY:Tâche {n}\r\nSTATUS:{status}\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
    .into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A loopback TCP proxy to `port` that forwards at most `budget` bytes from
/// the server, then cuts every connection and refuses new ones: a server
/// that dies in the middle of a run.
pub struct CuttingProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    budget: i64,
    left: Arc<AtomicI64>,
}

impl CuttingProxy {
    /// Starts the proxy.
    pub fn start(port: u16, budget: i64) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let proxy_port = listener.local_addr().expect("proxy address").port();
        let left = Arc::new(AtomicI64::new(budget));
        let left_for_caller = left.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                if left.load(Ordering::Relaxed) <= 0 {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                std::thread::spawn(move || pipe(c2, s2, None));
                let left = left.clone();
                std::thread::spawn(move || pipe(server, client, Some(left)));
            }
        });
        CuttingProxy {
            port: proxy_port,
            stop,
            budget,
            left: left_for_caller,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes the server sent through the proxy so far (as on the wire).
    pub fn forwarded(&self) -> i64 {
        self.budget - self.left.load(Ordering::Relaxed)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, budget: Option<Arc<AtomicI64>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(left) = &budget {
            if left.fetch_sub(n as i64, Ordering::Relaxed) - (n as i64) < 0 {
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Every file below `dir`, relative path to bytes.
pub fn files_below(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .expect("below")
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(e.path()).expect("read"))
        })
        .collect()
}

/// A certificate authority made for one test, and a server certificate it
/// signed for `127.0.0.1` and `localhost`.
pub struct LocalCa {
    dir: tempfile::TempDir,
}

impl LocalCa {
    /// Makes the authority and the server's key and certificate (openssl).
    pub fn new() -> LocalCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=lifeboat test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            d.join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
        std::fs::set_permissions(d.join("server.key"), perms).expect("chmod key");
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod dir");
        LocalCa { dir }
    }

    /// The authority's certificate (PEM): what a source's `ca_file` names.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate (PEM).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

impl Default for LocalCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A loopback TCP proxy to `port` that passes the first `after` bytes the
/// server sends, then replaces every later byte with noise: a provider
/// serving garbage.
pub struct GarblingProxy {
    port: u16,
}

impl GarblingProxy {
    /// Starts the proxy.
    pub fn start(port: u16, after: i64, seed: u64) -> GarblingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let proxy_port = listener.local_addr().expect("proxy address").port();
        let passed = Arc::new(AtomicI64::new(after));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                std::thread::spawn(move || pipe(c2, s2, None));
                let passed = passed.clone();
                std::thread::spawn(move || garble(server, client, passed, seed));
            }
        });
        GarblingProxy { port: proxy_port }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn garble(mut from: TcpStream, mut to: TcpStream, passed: Arc<AtomicI64>, seed: u64) {
    let mut buf = [0u8; 16 * 1024];
    let mut state = seed | 1;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let before = passed.fetch_sub(n as i64, Ordering::Relaxed);
        let clean = before.clamp(0, n as i64) as usize;
        for byte in &mut buf[clean..n] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}
