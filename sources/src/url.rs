//! Source URLs: `dav://`, `davs://`, `imap://`, `imaps://`, parsed and
//! checked before anything connects.

use lifeboat_engine::source::{SourceKind, SourceRoot};

/// Why a source URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source {url}: {reason}")]
pub struct SourceUrlError {
    /// The URL as given, without any password.
    pub url: String,
    /// What is wrong and what to do.
    pub reason: String,
}

/// A parsed source URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl {
    /// DAV or IMAP.
    pub kind: SourceKind,
    /// TLS from the first byte (`davs://`, `imaps://`).
    pub tls: bool,
    /// The user name to sign in with.
    pub user: String,
    /// Host name or address, as given.
    pub host: String,
    /// The port, when not the scheme's default.
    pub port: Option<u16>,
    /// The path (`/` when none): where DAV discovery starts.
    pub path: String,
    /// IMAP: the mailboxes to back up (`?mailbox=`, repeatable); empty: all.
    pub mailboxes: Vec<String>,
}

/// True when `s` looks like a source URL rather than a path.
pub fn is_source_url(s: &str) -> bool {
    ["dav://", "davs://", "imap://", "imaps://"]
        .iter()
        .any(|scheme| s.len() > scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme))
}

impl SourceUrl {
    /// Parses `text`.
    ///
    /// # Errors
    /// A scheme other than the four, a password in the URL, no user name, no
    /// host, or a query other than IMAP's `mailbox=`.
    pub fn parse(text: &str) -> Result<Self, SourceUrlError> {
        let fail = |reason: &str| SourceUrlError {
            url: redacted(text),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(text).map_err(|e| fail(&format!("not a valid URL ({e})")))?;
        let (kind, tls) = match url.scheme() {
            "dav" => (SourceKind::Dav, false),
            "davs" => (SourceKind::Dav, true),
            "imap" => (SourceKind::Imap, false),
            "imaps" => (SourceKind::Imap, true),
            other => {
                return Err(fail(&format!(
                    "unknown scheme {other:?}; sources are dav://, davs://, imap:// or imaps://"
                )))
            }
        };
        if url.password().is_some() {
            return Err(fail(
                "a password in the URL would end up in shell history and process lists; put it in the source's password_file or LIFEBOAT_SOURCE_PASSWORD",
            ));
        }
        let user = percent_encoding::percent_decode_str(url.username())
            .decode_utf8()
            .map_err(|_| fail("the user name is not UTF-8"))?
            .into_owned();
        if user.is_empty() {
            return Err(fail(
                "no user name: write it before the host, as in davs://alice@dav.example.com/",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| fail("no host"))?
            .to_string();
        let mut mailboxes = Vec::new();
        for (key, value) in url.query_pairs() {
            match (kind, key.as_ref()) {
                (SourceKind::Imap, "mailbox") => mailboxes.push(value.into_owned()),
                _ => {
                    return Err(fail(&format!(
                        "unknown option {key:?} in the URL{}",
                        if kind == SourceKind::Imap {
                            "; IMAP takes ?mailbox=NAME (repeatable)"
                        } else {
                            ""
                        }
                    )))
                }
            }
        }
        let path = match url.path() {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        Ok(SourceUrl {
            kind,
            tls,
            user,
            host,
            port: url.port(),
            path,
            mailboxes,
        })
    }

    /// `host` or `host:port`, as in a URL's authority.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// Where the account's items go in the snapshot: `dav/<host[:port]>`,
    /// `imap/<user>@<host[:port]>`. No credentials, no scheme: `dav://` and
    /// `davs://` to the same server are the same account.
    pub fn root(&self) -> SourceRoot {
        let account = match self.kind {
            SourceKind::Dav => self.host_port(),
            SourceKind::Imap => format!("{}@{}", self.user, self.host_port()),
        };
        SourceRoot {
            kind: self.kind,
            account: account.replace('/', "%2F"),
        }
    }

    /// The name the user knows the source by, for prompts and errors
    /// (scheme, user, host; never a password).
    pub fn display(&self) -> String {
        let scheme = match (self.kind, self.tls) {
            (SourceKind::Dav, false) => "dav",
            (SourceKind::Dav, true) => "davs",
            (SourceKind::Imap, false) => "imap",
            (SourceKind::Imap, true) => "imaps",
        };
        format!("{scheme}://{}@{}{}", self.user, self.host_port(), self.path)
    }

    /// True when the host is a loopback address or `localhost`: the only
    /// place a password may travel without TLS.
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `text` with any password replaced, for error messages.
fn redacted(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("REDACTED"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => match text.split_once('@') {
            Some((_, rest)) => format!("…@{rest}"),
            None => text.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme_and_names_the_account() {
        let dav = SourceUrl::parse("davs://alice@dav.example.com/").unwrap();
        assert_eq!(
            (dav.kind, dav.tls, dav.user.as_str()),
            (SourceKind::Dav, true, "alice")
        );
        assert_eq!(dav.root().display(), "dav://dav.example.com/");
        assert_eq!(dav.root().snapshot_path(), "/dav/dav.example.com");
        let local = SourceUrl::parse("dav://bob@127.0.0.1:5232/bob/").unwrap();
        assert_eq!(local.root().account, "127.0.0.1:5232");
        assert_eq!(local.path, "/bob/");
        assert!(local.is_loopback());
        let imap = SourceUrl::parse(
            "imaps://alice%40example.com@mail.example.com/?mailbox=INBOX&mailbox=Sent",
        )
        .unwrap();
        assert_eq!(imap.user, "alice@example.com");
        assert_eq!(imap.mailboxes, vec!["INBOX", "Sent"]);
        assert_eq!(
            imap.root().display(),
            "imap://alice@example.com@mail.example.com/"
        );
        assert!(!imap.is_loopback());
        assert!(is_source_url("DAVS://a@b/"));
        assert!(!is_source_url("/home/dav://x"));
        assert!(!is_source_url("s3://bucket"));
    }

    #[test]
    fn refuses_passwords_missing_users_and_unknown_options() {
        let err = SourceUrl::parse("davs://alice:hunter2@dav.example.com/").unwrap_err();
        assert!(err.reason.contains("password_file"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = SourceUrl::parse("davs://dav.example.com/").unwrap_err();
        assert!(err.reason.contains("no user name"), "{err}");
        let err = SourceUrl::parse("davs://a@dav.example.com/?mailbox=x").unwrap_err();
        assert!(err.reason.contains("unknown option"), "{err}");
        let err = SourceUrl::parse("ftp://a@b/").unwrap_err();
        assert!(err.reason.contains("unknown scheme"), "{err}");
    }
}
