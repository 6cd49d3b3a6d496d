//! Destination URLs: a path, `file:///path`, `s3://bucket/prefix?…` or
//! `sftp://user@host:port/path`.
//!
//! Parsing ends in each backend's own typed description ([`S3Target`],
//! [`SftpTarget`]), whose query options the backend's module checks; the
//! backends know nothing of this module. Opening is in `open.rs`.

use std::path::PathBuf;

use crate::error::UrlError;
use crate::s3::S3Target;
use crate::sftp::SftpTarget;

/// A parsed destination address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationUrl {
    /// A directory on a local or mounted filesystem.
    Local(PathBuf),
    /// An S3-compatible bucket, with an optional key prefix and query options.
    S3(S3Target),
    /// A directory on an SFTP server.
    Sftp(SftpTarget),
}

impl DestinationUrl {
    /// Parses a destination as given on the command line or in the config file.
    ///
    /// A relative path is resolved against the current directory.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] for an unknown scheme or a malformed URL.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let invalid = |reason: &str| UrlError::Invalid {
            url: redact(text),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(invalid("empty destination"));
        }
        let Some((scheme, _)) = text.split_once("://") else {
            let path = PathBuf::from(text);
            let path = if path.is_absolute() {
                path
            } else {
                std::env::current_dir()
                    .map_err(|_| invalid("cannot resolve a relative path"))?
                    .join(path)
            };
            return Ok(DestinationUrl::Local(path));
        };
        let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        match scheme {
            "file" => {
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(invalid("file URLs must name a local path (file:///path)"));
                }
                let path = url
                    .to_file_path()
                    .map_err(|_| invalid("not a local path"))?;
                Ok(DestinationUrl::Local(path))
            }
            "s3" => Ok(DestinationUrl::S3(S3Target::from_url(&url)?)),
            "sftp" => Ok(DestinationUrl::Sftp(SftpTarget::from_url(&url)?)),
            other => Err(invalid(&format!(
                "unknown scheme {other:?}; use a path, file://, s3:// or sftp://"
            ))),
        }
    }

    /// A short default name: `local-<dir>`, `s3-<bucket>` or `sftp-<host>`.
    pub fn default_name(&self) -> String {
        match self {
            DestinationUrl::Local(path) => {
                let last = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if last.is_empty() {
                    "local".to_string()
                } else {
                    format!("local-{last}")
                }
            }
            DestinationUrl::S3(s3) => format!("s3-{}", s3.bucket),
            DestinationUrl::Sftp(sftp) => format!("sftp-{}", sftp.host),
        }
    }

    /// The default name made more specific with `extra` more parts of the
    /// location (parent directories, prefix or path components), so that two
    /// destinations whose default names collide (`/mnt/usb/lb` and
    /// `/mnt/nas/lb`, both `local-lb`) get distinct ones (`local-usb-lb`,
    /// `local-nas-lb`). `None` when the location has no more parts.
    pub fn name_with(&self, extra: usize) -> Option<String> {
        if extra == 0 {
            return Some(self.default_name());
        }
        // (prefix of the name, location parts, parts the default name shows)
        let (base, parts, shown): (&str, Vec<String>, usize) = match self {
            DestinationUrl::Local(path) => (
                "local",
                path.components()
                    .filter_map(|c| match c {
                        std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                        _ => None,
                    })
                    .collect(),
                1,
            ),
            DestinationUrl::S3(S3Target { bucket, prefix, .. }) => (
                bucket,
                prefix
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
                0,
            ),
            DestinationUrl::Sftp(SftpTarget { host, path, .. }) => (
                host,
                path.split('/')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
                0,
            ),
        };
        let used = shown + extra;
        if used > parts.len() {
            return None;
        }
        let tail = parts[parts.len() - used..].join("-");
        Some(match self {
            DestinationUrl::Local(_) => format!("local-{tail}"),
            DestinationUrl::S3(_) => format!("s3-{base}-{tail}"),
            DestinationUrl::Sftp(_) => format!("sftp-{base}-{tail}"),
        })
    }

    /// Where the destination is, in one canonical form that does not depend
    /// on how it was written: a local directory's absolute path with its
    /// parent resolved (symlinks, `..`), an S3 endpoint, bucket and prefix,
    /// an SFTP user, host, port and path. Results kept about a destination
    /// (checks, drills) are filed under this, not under its display name.
    pub fn canonical_location(&self) -> String {
        match self {
            DestinationUrl::Local(path) => {
                let resolved = match (path.parent(), path.file_name()) {
                    (Some(parent), Some(name)) => std::fs::canonicalize(parent)
                        .map(|p| p.join(name))
                        .unwrap_or_else(|_| path.clone()),
                    _ => path.clone(),
                };
                format!("file://{}", resolved.display())
            }
            DestinationUrl::S3(S3Target {
                bucket,
                prefix,
                endpoint,
                ..
            }) => {
                let endpoint = endpoint.as_deref().unwrap_or("aws");
                format!("s3://{bucket}/{prefix} at {endpoint}")
            }
            DestinationUrl::Sftp(SftpTarget {
                user,
                host,
                port,
                path,
                ..
            }) => {
                let user = user.as_deref().unwrap_or("");
                format!("sftp://{user}@{host}:{port}{path}")
            }
        }
    }
}

/// Removes any `user:password@` credentials from a URL before it is shown.
pub fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::HostKeyPolicy;

    #[test]
    fn longer_names_take_more_of_the_location() {
        let usb = DestinationUrl::parse("/mnt/usb/lb").unwrap();
        let nas = DestinationUrl::parse("/mnt/nas/lb").unwrap();
        assert_eq!(usb.name_with(0).unwrap(), nas.name_with(0).unwrap());
        assert_eq!(usb.name_with(1).as_deref(), Some("local-usb-lb"));
        assert_eq!(nas.name_with(1).as_deref(), Some("local-nas-lb"));
        assert_eq!(usb.name_with(2).as_deref(), Some("local-mnt-usb-lb"));
        assert_eq!(usb.name_with(3), None);
        let s3 = DestinationUrl::parse("s3://bucket/one/lb?endpoint=http://x").unwrap();
        assert_eq!(s3.name_with(0).as_deref(), Some("s3-bucket"));
        assert_eq!(s3.name_with(1).as_deref(), Some("s3-bucket-lb"));
        assert_eq!(s3.name_with(2).as_deref(), Some("s3-bucket-one-lb"));
        let sftp = DestinationUrl::parse("sftp://u@nas:2222/srv/lb").unwrap();
        assert_eq!(sftp.name_with(1).as_deref(), Some("sftp-nas-lb"));
    }

    #[test]
    fn canonical_locations_ignore_how_a_path_was_written() {
        let dir = std::env::temp_dir();
        let plain = DestinationUrl::Local(dir.join("lb"));
        let dotted = DestinationUrl::Local(dir.join("x/../lb"));
        std::fs::create_dir_all(dir.join("x")).unwrap();
        assert_eq!(plain.canonical_location(), dotted.canonical_location());
        let a = DestinationUrl::parse("s3://b/p1?endpoint=http://h:9000/").unwrap();
        let b = DestinationUrl::parse("s3://b/p2?endpoint=http://h:9000").unwrap();
        let a2 = DestinationUrl::parse("s3://b/p1?endpoint=http://h:9000&region=x").unwrap();
        assert_ne!(a.canonical_location(), b.canonical_location());
        assert_eq!(a.canonical_location(), a2.canonical_location());
        let sftp = DestinationUrl::parse("sftp://u@h/srv/lb").unwrap();
        assert_eq!(sftp.canonical_location(), "sftp://u@h:22/srv/lb");
    }

    #[test]
    fn parses_paths_and_file_urls() {
        assert_eq!(
            DestinationUrl::parse("/mnt/usb/lb").unwrap(),
            DestinationUrl::Local("/mnt/usb/lb".into())
        );
        assert_eq!(
            DestinationUrl::parse("file:///mnt/usb/lb").unwrap(),
            DestinationUrl::Local("/mnt/usb/lb".into())
        );
        let rel = DestinationUrl::parse("rel/dir").unwrap();
        assert!(
            matches!(rel, DestinationUrl::Local(p) if p.is_absolute() && p.ends_with("rel/dir"))
        );
    }

    #[test]
    fn parses_s3_and_sftp() {
        let s3 = DestinationUrl::parse(
            "s3://bucket/lb/x?endpoint=http://127.0.0.1:9000&region=us-east-1",
        )
        .unwrap();
        assert_eq!(
            s3,
            DestinationUrl::S3(S3Target {
                bucket: "bucket".into(),
                prefix: "lb/x".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("us-east-1".into()),
                path_style: None,
                allow_http: false,
            })
        );
        assert_eq!(s3.default_name(), "s3-bucket");
        let sftp = DestinationUrl::parse("sftp://backup@nas.local:2222/srv/lb").unwrap();
        assert_eq!(
            sftp,
            DestinationUrl::Sftp(SftpTarget {
                user: Some("backup".into()),
                host: "nas.local".into(),
                port: 2222,
                path: "/srv/lb".into(),
                host_key: None,
                identities: vec![],
                channels: 4,
            })
        );
        let fp = "a+b/cdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO";
        let pinned =
            DestinationUrl::parse(&format!("sftp://nas.local/srv/lb?fingerprint=SHA256:{fp}"))
                .unwrap();
        assert!(matches!(
            pinned,
            DestinationUrl::Sftp(SftpTarget {
                host_key: Some(HostKeyPolicy::Fingerprint(ref f)),
                port: 22,
                ..
            }) if f == fp
        ));
    }

    #[test]
    fn options_are_checked_when_parsing() {
        for bad in [
            "sftp://nas.local/srv/lb?bogus=1",
            "sftp://nas.local/srv/lb?known_hosts=/etc/kh&fingerprint=SHA256:abc",
            "s3://bucket/lb?bogus=1",
            "s3://bucket/lb?path_style=maybe",
        ] {
            assert!(
                matches!(DestinationUrl::parse(bad), Err(UrlError::Invalid { .. })),
                "{bad}"
            );
        }
        let err = DestinationUrl::parse("s3://b/p?secret_access_key=hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn rejects_unknown_schemes_and_passwords() {
        assert!(matches!(
            DestinationUrl::parse("ftp://host/x"),
            Err(UrlError::Invalid { .. })
        ));
        let err = DestinationUrl::parse("sftp://u:secret@host/x").unwrap_err();
        assert!(!err.to_string().contains("secret"));
        assert!(matches!(
            DestinationUrl::parse("s3:///nobucket"),
            Err(UrlError::Invalid { .. })
        ));
        assert!(DestinationUrl::parse("").is_err());
    }
}
