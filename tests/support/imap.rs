//! A real IMAP server for the source tests: Dovecot (Debian's
//! `dovecot-imapd`, installed by scripts/servers/imap.sh), one instance per
//! test on a free loopback port, a passwd-file user database and no system
//! users; mailboxes filled by writing Maildir files, as a mail delivery
//! agent would.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A running Dovecot; stopped on drop.
pub struct Dovecot {
    child: Child,
    port: u16,
    imaps_port: u16,
    dir: tempfile::TempDir,
}

/// The mail user every account's files belong to (created by the package).
const MAIL_USER: &str = "dovenull";

impl Dovecot {
    /// Starts a server whose accounts are `users` (name, password).
    ///
    /// # Panics
    /// When `LIFEBOAT_TEST_DOVECOT` is unset (run the tests through
    /// scripts/test.sh) or the server does not answer within 30 s.
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        Self::start_with(users, None)
    }

    /// Starts a server that offers STARTTLS on its IMAP port and implicit
    /// TLS on a second one, with `ca`'s server certificate.
    pub fn start_tls(users: &[(&str, &str)], ca: &crate::dav::LocalCa) -> Dovecot {
        Self::start_with(users, Some(ca))
    }

    fn start_with(users: &[(&str, &str)], tls: Option<&crate::dav::LocalCa>) -> Dovecot {
        let dovecot = std::env::var("LIFEBOAT_TEST_DOVECOT").expect(
            "LIFEBOAT_TEST_DOVECOT is not set: run the tests with scripts/test.sh, which installs dovecot-imapd",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let passwd: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .collect();
        std::fs::write(d.join("users"), passwd).expect("users");
        std::fs::create_dir_all(d.join("home")).expect("home");
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .expect("port")
                .local_addr()
                .expect("addr")
                .port()
        };
        let (port, imaps_port) = (free(), free());
        let ssl = match tls {
            Some(ca) => format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}",
                ca.cert().display(),
                ca.key().display()
            ),
            None => "ssl = no".to_string(),
        };
        let imaps = if tls.is_some() { imaps_port } else { 0 };
        let config = format!(
            r#"protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/log
info_log_path = {d}/log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_USER} home={d}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \Sent
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
service pop3-login {{
  chroot =
}}
service anvil {{
  chroot =
}}
"#,
            d = d.display()
        );
        std::fs::write(d.join("dovecot.conf"), config).expect("config");
        let child = Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dovecot");
        let server = Dovecot {
            child,
            port,
            imaps_port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not answer within 30 s: {}",
                std::fs::read_to_string(server.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port (with `start_tls`).
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// The source URL of `user`'s account.
    pub fn source_url(&self, user: &str) -> String {
        format!("imap://{user}@127.0.0.1:{}/", self.port)
    }

    /// The Maildir directory of `mailbox` (`INBOX`, `Sent`, `Archive/2026`).
    pub fn maildir(&self, user: &str, mailbox: &str) -> PathBuf {
        let root = self.dir.path().join("home").join(user).join("Maildir");
        if mailbox == "INBOX" {
            root
        } else {
            root.join(format!(".{}", mailbox.replace('/', ".")))
        }
    }

    /// Delivers `message` to `mailbox` with Maildir `flags` (`S` seen, `F`
    /// flagged, `R` answered, `D` draft) and `time` as its internal date;
    /// its file name.
    pub fn deliver(
        &self,
        user: &str,
        mailbox: &str,
        n: usize,
        message: &[u8],
        flags: &str,
        time: i64,
    ) -> PathBuf {
        let dir = self.maildir(user, mailbox);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("maildir");
        }
        if mailbox != "INBOX" {
            std::fs::write(dir.join("maildirfolder"), b"").expect("maildirfolder");
        }
        let path = dir
            .join("cur")
            .join(format!("{time}.M{n}P1.lifeboat-test:2,{flags}"));
        std::fs::write(&path, message).expect("write message");
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(time as u64);
        filetime::set_file_mtime(&path, filetime::FileTime::from_system_time(when)).expect("mtime");
        path
    }

    /// Gives every file of the accounts to the mail user (call after
    /// delivering, before the server reads them).
    pub fn settle(&self) {
        let status = Command::new("chown")
            .args(["-R", &format!("{MAIL_USER}:{MAIL_USER}")])
            .arg(self.dir.path().join("home"))
            .status()
            .expect("chown");
        assert!(status.success(), "chown the mail files");
    }

    /// Where the server keeps an account's mail.
    pub fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message: non-ASCII headers (RFC 2047 and raw UTF-8), every fifth one
/// with a base64 attachment; CRLF line ends, as the server serves them.
pub fn message(n: usize) -> Vec<u8> {
    let names = ["Zoë", "Jürgen", "Søren", "Дмитрий", "美咲"];
    let who = names[n % names.len()];
    let mut m = format!(
        "From: {who} <sender{n}@example.org>\r\nTo: alice@example.org\r\nSubject: =?UTF-8?Q?R=C3=A9union_n=C2=B0{n}?=\r\nDate: Sun, 06 Dec 2026 10:{:02}:00 +0100\r\nMessage-ID: <msg-{n}@example.org>\r\nMIME-Version: 1.0\r\n",
        n % 60
    );
    if n.is_multiple_of(5) {
        let attachment: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(n as u32) >> 11) as u8)
            .collect();
        let encoded = base64_lines(&attachment);
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{n}\"\r\n\r\n--b{n}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nPièce jointe n°{n}.\r\n--b{n}\r\nContent-Type: application/octet-stream; name=\"data-{n}.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data-{n}.bin\"\r\n\r\n{encoded}--b{n}--\r\n"
        ));
    } else {
        m.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nBonjour, message n°{n} — ça va ?\r\n"
        ));
    }
    m.into_bytes()
}

fn base64_lines(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    let mut line = 0;
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
        line += 4;
        if line >= 76 {
            out.push_str("\r\n");
            line = 0;
        }
    }
    if line > 0 {
        out.push_str("\r\n");
    }
    out
}

/// Every file below `dir` whose name matches the Maildir pattern, by name.
pub fn maildir_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cur"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}
