//! What an `sftp://` URL asks for: where to connect, as whom, how to trust the host.

use std::path::PathBuf;

use crate::url::{DestinationUrl, UrlError};

/// Query options an `sftp://` URL may carry.
const KNOWN_OPTIONS: &[&str] = &["known_hosts", "identity", "fingerprint", "channels"];

/// Most SFTP channels opened on one SSH connection.
const MAX_CHANNELS: usize = 32;

/// How the server's host key is checked. Never "accept anything".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKeyPolicy {
    /// The key must be listed for the host in this OpenSSH `known_hosts` file.
    KnownHosts(PathBuf),
    /// The key's SHA256 fingerprint must be this one (base64, no `SHA256:`, no padding).
    Fingerprint(String),
}

/// The parsed, validated settings of one SFTP destination.
#[derive(Debug, Clone)]
pub(crate) struct SftpOptions {
    /// Login name.
    pub user: String,
    /// Host name or address.
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
    /// SFTP channels (each one an independent server-side worker) per connection.
    pub channels: usize,
}

impl SftpOptions {
    /// Reads the options of an `sftp://` destination.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] for an unknown query option, a malformed value, or
    /// no user name in the URL nor in `$USER`/`$LOGNAME`.
    pub fn from_url(url: &DestinationUrl) -> Result<Self, UrlError> {
        let DestinationUrl::Sftp {
            user,
            host,
            port,
            path,
            options,
        } = url
        else {
            return Err(UrlError::Invalid {
                url: format!("{url:?}"),
                reason: "not an sftp URL".into(),
            });
        };
        let shown = format!("sftp://{host}:{port}{path}");
        let invalid = |reason: String| UrlError::Invalid {
            url: shown.clone(),
            reason,
        };
        let mut known_hosts = None;
        let mut fingerprint = None;
        let mut identities = Vec::new();
        let mut channels = 4;
        for (key, value) in options {
            match key.as_str() {
                "known_hosts" => known_hosts = Some(expand_home(value)),
                "identity" => identities.push(expand_home(value)),
                "fingerprint" => {
                    // Base64 has no spaces: a space is a `+` that the query
                    // decoding turned into one (an unescaped `+` in the URL).
                    let value = &value.replace(' ', "+");
                    let fp = value.strip_prefix("SHA256:").unwrap_or(value);
                    let fp = fp.trim_end_matches('=');
                    // 32 bytes of SHA-256 are 43 base64 characters unpadded.
                    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
                    if fp.len() != 43 || !fp.chars().all(base64) || value.starts_with("MD5:") {
                        return Err(invalid(format!(
                            "fingerprint {value:?} is not a SHA256 fingerprint \
                             (as `ssh-keygen -lf KEY` prints it: SHA256:…)"
                        )));
                    }
                    fingerprint = Some(fp.to_string());
                }
                "channels" => {
                    channels = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_CHANNELS).contains(n))
                        .ok_or_else(|| {
                            invalid(format!(
                                "channels must be a number from 1 to {MAX_CHANNELS}"
                            ))
                        })?;
                }
                other => {
                    return Err(invalid(format!(
                        "unknown sftp option {other:?}; known: {}",
                        KNOWN_OPTIONS.join(", ")
                    )))
                }
            }
        }
        let host_key = match (fingerprint, known_hosts) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give either fingerprint= or known_hosts=, not both".into(),
                ))
            }
            (Some(fp), None) => HostKeyPolicy::Fingerprint(fp),
            (None, Some(file)) => HostKeyPolicy::KnownHosts(file),
            (None, None) => HostKeyPolicy::KnownHosts(
                home_dir()
                    .ok_or_else(|| {
                        invalid(
                            "HOME is not set, so ~/.ssh/known_hosts cannot be found; \
                             give known_hosts=FILE or fingerprint=SHA256:…"
                                .into(),
                        )
                    })?
                    .join(".ssh/known_hosts"),
            ),
        };
        let user = match user {
            Some(user) => user.clone(),
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| invalid("no user name: write sftp://USER@host/path".into()))?,
        };
        Ok(SftpOptions {
            user: percent_decode(&user),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: *port,
            root: remote_root(&percent_decode(path)),
            host_key,
            identities,
            channels,
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

/// The user's home directory, from `$HOME`.
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `~/x` → `$HOME/x`; anything else unchanged.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
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
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SftpOptions, UrlError> {
        SftpOptions::from_url(&DestinationUrl::parse(text).unwrap())
    }

    #[test]
    fn roots() {
        assert_eq!(remote_root("/srv/lb/"), "/srv/lb");
        assert_eq!(remote_root("/"), "/");
        assert_eq!(remote_root(""), "");
        assert_eq!(remote_root("/~"), "");
        assert_eq!(remote_root("/~/lb/x/"), "lb/x");
        assert_eq!(percent_decode("/a%20b/%zz%4"), "/a b/%zz%4");
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
