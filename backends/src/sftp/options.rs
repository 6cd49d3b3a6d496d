//! What an `sftp://` URL asks for: where to connect, as whom, how to trust the host.

use std::path::PathBuf;

use crate::error::UrlError;
use crate::home::expand_user;

/// Query options an `sftp://` URL may carry.
const KNOWN_OPTIONS: &[&str] = &["known_hosts", "identity", "fingerprint", "channels"];

/// Most SFTP channels opened on one SSH connection.
const MAX_CHANNELS: usize = 32;

/// How the server's host key is checked. Never "accept anything".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The key must be listed for the host in this OpenSSH `known_hosts` file.
    KnownHosts(PathBuf),
    /// The key's SHA256 fingerprint must be this one (base64, no `SHA256:`, no padding).
    Fingerprint(String),
}

/// An SFTP destination as its `sftp://USER@HOST[:PORT]/PATH?…` URL describes
/// it, checked once when the URL is parsed. What depends on the environment
/// (the login name when the URL has none, `~/.ssh/known_hosts`) is settled
/// when the backend is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpTarget {
    /// Login name as written in the URL (still percent-encoded), if any.
    pub user: Option<String>,
    /// Host name or address, as the URL writes it (`[::1]` for IPv6).
    pub host: String,
    /// TCP port (22 when not given).
    pub port: u16,
    /// Remote directory as written in the URL (still percent-encoded); `/~/…`
    /// is relative to the login directory.
    pub path: String,
    /// `known_hosts=` or `fingerprint=`; `None` for `~/.ssh/known_hosts`.
    pub host_key: Option<HostKeyPolicy>,
    /// `identity=` (repeatable): private keys to log in with; when empty, the
    /// usual `~/.ssh/id_*` files.
    pub identities: Vec<PathBuf>,
    /// `channels=`: SFTP channels (each one an independent server-side worker)
    /// per connection.
    pub channels: usize,
}

impl SftpTarget {
    /// Reads an `sftp://` URL.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] for a missing host, a password in the URL, an
    /// unknown query option or a malformed value.
    pub fn from_url(url: &url::Url) -> Result<Self, UrlError> {
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UrlError::invalid(url, "missing host"))?;
        if url.password().is_some() {
            return Err(UrlError::invalid(
                url,
                "passwords in sftp URLs are not accepted; use an SSH key or ssh-agent",
            ));
        }
        let mut target = SftpTarget {
            user: Some(url.username())
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            host: host.to_string(),
            port: url.port().unwrap_or(22),
            path: url.path().to_string(),
            host_key: None,
            identities: Vec::new(),
            channels: 4,
        };
        let mut known_hosts = None;
        let mut fingerprint = None;
        for (key, value) in url.query_pairs() {
            let invalid = |reason: String| target.invalid(reason);
            match key.as_ref() {
                "known_hosts" => known_hosts = Some(PathBuf::from(expand_user(&value))),
                "identity" => target.identities.push(PathBuf::from(expand_user(&value))),
                "fingerprint" => fingerprint = Some(parse_fingerprint(&value).map_err(invalid)?),
                "channels" => target.channels = parse_channels(&value).map_err(invalid)?,
                other => {
                    return Err(invalid(format!(
                        "unknown sftp option {other:?}; known: {}",
                        KNOWN_OPTIONS.join(", ")
                    )))
                }
            }
        }
        target.host_key = match (fingerprint, known_hosts) {
            (Some(_), Some(_)) => {
                return Err(
                    target.invalid("give either fingerprint= or known_hosts=, not both".into())
                )
            }
            (Some(fp), None) => Some(HostKeyPolicy::Fingerprint(fp)),
            (None, Some(file)) => Some(HostKeyPolicy::KnownHosts(file)),
            (None, None) => None,
        };
        Ok(target)
    }

    /// `sftp://host:port/path`: how messages name the destination (the user
    /// and the query string are not needed to recognise it).
    pub fn shown(&self) -> String {
        format!("sftp://{}:{}{}", self.host, self.port, self.path)
    }

    fn invalid(&self, reason: String) -> UrlError {
        UrlError::Invalid {
            url: self.shown(),
            reason,
        }
    }
}

/// The SHA256 fingerprint of a `fingerprint=` option, as [`HostKeyPolicy`]
/// keeps it.
fn parse_fingerprint(value: &str) -> Result<String, String> {
    // Base64 has no spaces: a space is a `+` that the query decoding turned
    // into one (an unescaped `+` in the URL).
    let value = &value.replace(' ', "+");
    let fp = value.strip_prefix("SHA256:").unwrap_or(value);
    let fp = fp.trim_end_matches('=');
    // 32 bytes of SHA-256 are 43 base64 characters unpadded.
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if fp.len() != 43 || !fp.chars().all(base64) || value.starts_with("MD5:") {
        return Err(format!(
            "fingerprint {value:?} is not a SHA256 fingerprint \
             (as `ssh-keygen -lf KEY` prints it: SHA256:…)"
        ));
    }
    Ok(fp.to_string())
}

fn parse_channels(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CHANNELS).contains(n))
        .ok_or_else(|| format!("channels must be a number from 1 to {MAX_CHANNELS}"))
}

/// The settings of one SFTP destination once the environment is consulted:
/// what the connection and the paths use.
#[derive(Debug, Clone)]
pub(crate) struct SftpOptions {
    /// Login name.
    pub user: String,
    /// Host name or address (no brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Remote repository directory: absolute (`/srv/lb`), relative to the login
    /// directory (`lb`), `""` for the login directory itself, or `/`.
    pub root: String,
    /// How the host key is verified.
    pub host_key: HostKeyPolicy,
    /// Private keys named in the URL; when empty, the usual `~/.ssh/id_*` files.
    pub identities: Vec<PathBuf>,
    /// SFTP channels per connection.
    pub channels: usize,
}

impl SftpOptions {
    /// Settles what `target` leaves to the environment: the login name
    /// (`$USER`, `$LOGNAME`) and the known_hosts file (`~/.ssh/known_hosts`).
    ///
    /// # Errors
    /// [`UrlError::Invalid`] when there is no user name, or no home
    /// directory to find known_hosts in.
    pub fn resolve(target: &SftpTarget) -> Result<Self, UrlError> {
        let host_key = match &target.host_key {
            Some(policy) => policy.clone(),
            None => HostKeyPolicy::KnownHosts(
                dirs::home_dir()
                    .ok_or_else(|| {
                        target.invalid(
                            "no home directory, so ~/.ssh/known_hosts cannot be found; \
                             give known_hosts=FILE or fingerprint=SHA256:…"
                                .into(),
                        )
                    })?
                    .join(".ssh/known_hosts"),
            ),
        };
        let user = match &target.user {
            Some(user) => percent_decode(user),
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| {
                    target.invalid("no user name: write sftp://USER@host/path".into())
                })?,
        };
        Ok(SftpOptions {
            user,
            host: target
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: target.port,
            root: remote_root(&percent_decode(&target.path)),
            host_key,
            identities: target.identities.clone(),
            channels: target.channels,
        })
    }

    /// `sftp://user@host:port/path`, for messages.
    pub fn location(&self) -> String {
        let path = if self.root.starts_with('/') {
            self.root.clone()
        } else {
            format!("/~/{}", self.root)
        };
        format!("sftp://{}@{}:{}{}", self.user, self.host, self.port, path)
    }

    /// The host as OpenSSH names it in `known_hosts`: `host`, or `[host]:port`.
    pub fn host_label(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

/// The remote root for a URL path: `/~/lb` and `/~` are relative to the login
/// directory (`lb`, `""`); trailing slashes go.
fn remote_root(path: &str) -> String {
    let rel = if path == "/~" || path.is_empty() {
        Some("")
    } else {
        path.strip_prefix("/~/")
    };
    match rel {
        Some(rel) => rel.trim_matches('/').to_string(),
        None => {
            let trimmed = path.trim_end_matches('/');
            if trimmed.is_empty() {
                "/".to_string()
            } else {
                trimmed.to_string()
            }
        }
    }
}

/// Decodes `%XX` escapes of a URL component (invalid escapes stay as they are).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SftpOptions, UrlError> {
        let url = url::Url::parse(text).expect("url");
        SftpOptions::resolve(&SftpTarget::from_url(&url)?)
    }

    #[test]
    fn roots() {
        assert_eq!(remote_root("/srv/lb/"), "/srv/lb");
        assert_eq!(remote_root("/"), "/");
        assert_eq!(remote_root(""), "");
        assert_eq!(remote_root("/~"), "");
        assert_eq!(remote_root("/~/lb/x/"), "lb/x");
        assert_eq!(percent_decode("/a%20b/%zz%4"), "/a b/%zz%4");
        assert_eq!(percent_decode("caf%C3%A9%2"), "café%2");
    }

    #[test]
    fn options() {
        let o = parse("sftp://me@h:2222/srv/lb?known_hosts=/kh&identity=/id&channels=2").unwrap();
        assert_eq!(o.user, "me");
        assert_eq!(o.host_label(), "[h]:2222");
        assert_eq!(o.host_key, HostKeyPolicy::KnownHosts("/kh".into()));
        assert_eq!(o.identities, vec![PathBuf::from("/id")]);
        assert_eq!(o.channels, 2);
        assert_eq!(o.location(), "sftp://me@h:2222/srv/lb");
        let fp = "a+b/cdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO";
        let o = parse(&format!("sftp://me@h/~/lb?fingerprint=SHA256:{fp}%3D")).unwrap();
        assert_eq!(o.host_key, HostKeyPolicy::Fingerprint(fp.into()));
        assert_eq!(o.root, "lb");
        assert_eq!(o.host_label(), "h");
        assert!(parse("sftp://me@h/x?nope=1").is_err());
        assert!(parse("sftp://me@h/x?channels=0").is_err());
        assert!(parse("sftp://me@h/x?fingerprint=MD5:aa").is_err());
        // Too short, or not base64: a typo, not a key.
        assert!(parse("sftp://me@h/x?fingerprint=SHA256:abc").is_err());
        let bad = format!("sftp://me@h/x?fingerprint=SHA256:{}", "!".repeat(43));
        assert!(parse(&bad).is_err());
        assert!(parse("sftp://me@h/x?fingerprint=SHA256:a&known_hosts=/k").is_err());
    }
}
