//! Issue 16: sources over TLS with a local certificate authority, as a user
//! with a self-hosted server would configure them: `davs://` and `imaps://`
//! verify the server's certificate against the system roots plus the
//! source's `ca_file`; without it the same server is refused; `imap://`
//! upgrades with STARTTLS when offered (and verifies the same way).

use lifeboat_tests::cmd::PASSWORD;
use lifeboat_tests::dav::{contact, LocalCa, Radicale};
use lifeboat_tests::imap::{message, Dovecot};
use lifeboat_tests::{Output, Sandbox};

/// A sandbox whose config names `url` as a source with its password file
/// and, when given, the CA file.
fn sandbox(url: &str, password: &str, ca: Option<&std::path::Path>) -> Sandbox {
    let sb = Sandbox::new();
    sb.init_repo();
    let secret = sb.join("source-password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let mut config = format!(
        "[sources.account]\nurl = \"{url}\"\npassword_file = \"{}\"\n",
        secret.display()
    );
    if let Some(ca) = ca {
        config.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    let dir = sb.config_home().join("lifeboat");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), config).unwrap();
    sb
}

fn backup(sb: &Sandbox, url: &str) -> Output {
    sb.command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .args(["--json", "backup", url])
        .run()
}

#[test]
fn davs_verifies_the_server_against_the_sources_ca_file() {
    let ca = LocalCa::new();
    let alice = ("alice", "tls-secret");
    let server = Radicale::start_tls(&[alice], &ca);
    // Filled over HTTPS with curl trusting the test CA.
    let status = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca.ca())
        .args(["-u", "alice:tls-secret", "-X", "MKCOL"])
        .arg(format!("https://127.0.0.1:{}/alice/book/", server.port()))
        .args(["-H", "Content-Type: application/xml", "--data"])
        .arg(r#"<?xml version="1.0"?><mkcol xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><set><prop><resourcetype><collection/><C:addressbook/></resourcetype></prop></set></mkcol>"#)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "201");
    let card = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(card.path(), contact(4)).unwrap();
    let put = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca.ca())
        .args([
            "-u",
            "alice:tls-secret",
            "-H",
            "Content-Type: text/vcard",
            "-T",
        ])
        .arg(card.path())
        .arg(format!(
            "https://127.0.0.1:{}/alice/book/a.vcf",
            server.port()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&put.stdout), "201");

    let url = format!("davs://alice@127.0.0.1:{}/", server.port());
    let trusted = sandbox(&url, alice.1, Some(&ca.ca()));
    let out = backup(&trusted, &url);
    out.success();
    assert_eq!(out.summary()["sources"][0]["items"], 1);

    // The same server without the CA file: its certificate is refused, the
    // source is left out (exit 3) and named.
    let untrusted = sandbox(&url, alice.1, None);
    let out = backup(&untrusted, &url);
    out.assert_code(3);
    let error = out.summary()["sources"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("tls") || error.contains("ssl"),
        "{error}"
    );
}

#[test]
fn imaps_and_starttls_verify_the_server_against_the_sources_ca_file() {
    let ca = LocalCa::new();
    let alice = ("alice", "imap-tls");
    let server = Dovecot::start_tls(&[alice], &ca);
    for n in 0..20 {
        server.deliver(
            "alice",
            "INBOX",
            n,
            &message(n),
            "S",
            1_780_000_000 + n as i64,
        );
    }
    server.settle();
    let implicit = format!("imaps://alice@127.0.0.1:{}/", server.imaps_port());
    let sb = sandbox(&implicit, alice.1, Some(&ca.ca()));
    let out = backup(&sb, &implicit);
    out.success();
    assert_eq!(out.summary()["sources"][0]["items"], 20);

    // imap:// upgrades with STARTTLS when the server offers it: with the CA
    // file it works, without it the certificate is refused.
    let starttls = format!("imap://alice@127.0.0.1:{}/", server.port());
    let sb = sandbox(&starttls, alice.1, Some(&ca.ca()));
    backup(&sb, &starttls).success();
    let sb = sandbox(&starttls, alice.1, None);
    let out = backup(&sb, &starttls);
    out.assert_code(3);
    let error = out.summary()["sources"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("tls") || error.contains("certificate"),
        "{error}"
    );
}
