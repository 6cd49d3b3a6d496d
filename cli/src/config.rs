//! The config file and how destinations are chosen.
//!
//! ```toml
//! # ~/.config/lifeboat/config.toml
//! [destinations.usb]
//! url = "/mnt/usb/lb"
//!
//! [profiles.default]
//! destinations = ["usb"]          # default: every destination
//! paths = ["~/Documents"]
//! exclude = ["*.tmp"]
//! tags = ["daily"]
//! compression = 3
//! ```
//!
//! Precedence: `-d` flags, else the profile's (or every configured)
//! destination, else the embedded default: one local repository in the user's
//! data directory.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use lifeboat_backends::s3::S3Credentials;
use lifeboat_backends::{Backend, DestinationUrl, RetryBackend, RetryPolicy};
use lifeboat_engine::{DestinationSet, MAX_READS, MAX_UPLOADS};
use serde::Deserialize;

/// The parsed config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Named destinations, in the file's order: the preference order for reads.
    #[serde(default)]
    pub destinations: IndexMap<String, DestinationConfig>,
    /// Named profiles.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    /// Named sources: accounts whose items are backed up beside files.
    #[serde(default)]
    pub sources: BTreeMap<String, crate::sources::SourceConfig>,
}

/// One destination.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Where it is.
    pub url: String,
    /// S3 access key id (else `AWS_ACCESS_KEY_ID`).
    pub aws_access_key_id: Option<String>,
    /// S3 secret access key (else `AWS_SECRET_ACCESS_KEY`); keep the config
    /// file readable by you alone when it holds one.
    pub aws_secret_access_key: Option<String>,
    /// S3 session token for temporary credentials.
    pub aws_session_token: Option<String>,
    /// `"instance"`: with no keys given, let the S3 client ask the cloud
    /// instance-metadata service for the machine's role credentials (off by
    /// default: elsewhere that address answers 403 or hangs).
    pub credentials: Option<String>,
    /// Packs uploaded to this destination at once during a backup (default 2):
    /// raise it for a far provider whose round trips dominate.
    pub uploads: Option<usize>,
    /// Reads kept in flight to this destination by restores, checks, drills
    /// and every walk of a snapshot (default 32): the farther the provider,
    /// the more it takes to fill the link.
    pub reads: Option<usize>,
    /// Attempts per request before a transient failure counts (default 7,
    /// with exponential backoff and jitter between them).
    pub attempts: Option<u32>,
}

/// Secrets print as `<redacted>`: a debug log of the config never shows them.
impl std::fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("DestinationConfig")
            .field("url", &self.url)
            .field("aws_access_key_id", &self.aws_access_key_id)
            .field(
                "aws_secret_access_key",
                &redacted(&self.aws_secret_access_key),
            )
            .field("aws_session_token", &redacted(&self.aws_session_token))
            .field("credentials", &self.credentials)
            .field("uploads", &self.uploads)
            .field("reads", &self.reads)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl DestinationConfig {
    /// The S3 credentials this entry gives, if any.
    ///
    /// # Errors
    /// When only one of the key id and the secret is given.
    pub fn s3_credentials(&self, name: &str) -> Result<Option<S3Credentials>> {
        match (&self.aws_access_key_id, &self.aws_secret_access_key) {
            (None, None) if self.aws_session_token.is_none() => Ok(None),
            (Some(id), Some(secret)) => Ok(Some(S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: self.aws_session_token.clone(),
            })),
            _ => bail!(
                "destination {name:?} in the config file: give both aws_access_key_id and aws_secret_access_key, or neither"
            ),
        }
    }
}

impl DestinationConfig {
    /// The upload and read concurrency and retry attempts this entry sets.
    ///
    /// # Errors
    /// A value outside its range.
    fn limits(&self, name: &str) -> Result<Limits> {
        if let Some(n) = self.uploads {
            if !(1..=MAX_UPLOADS).contains(&n) {
                bail!("destination {name:?} in the config file: uploads must be from 1 to {MAX_UPLOADS}, not {n}");
            }
        }
        if let Some(n) = self.reads {
            if !(1..=MAX_READS).contains(&n) {
                bail!("destination {name:?} in the config file: reads must be from 1 to {MAX_READS}, not {n}");
            }
        }
        if let Some(n) = self.attempts {
            if !(1..=MAX_ATTEMPTS).contains(&n) {
                bail!("destination {name:?} in the config file: attempts must be from 1 to {MAX_ATTEMPTS}, not {n}");
            }
        }
        Ok(Limits {
            uploads: self.uploads,
            reads: self.reads,
            attempts: self.attempts,
        })
    }
}

/// What one config entry sets of a destination's limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Packs uploaded at once.
    pub uploads: Option<usize>,
    /// Reads kept in flight.
    pub reads: Option<usize>,
    /// Attempts per request.
    pub attempts: Option<u32>,
}

/// The most attempts per request a destination may be given.
const MAX_ATTEMPTS: u32 = 20;

/// A profile: what `backup` does without arguments.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Destination names (default: all).
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Paths to back up when none are given (`~` expands to the home directory).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Exclude patterns added to any given on the command line (`~` and
    /// `$HOME` expand to the home directory).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Case-insensitive exclude patterns.
    #[serde(default)]
    pub iexclude: Vec<String>,
    /// Leave out directories holding one of these files (`FILE[:HEADER]`).
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Leave out directories holding a valid CACHEDIR.TAG.
    #[serde(default)]
    pub exclude_caches: bool,
    /// Stay on the file system of each backup path.
    #[serde(default)]
    pub one_file_system: bool,
    /// Tags added to every snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Sources backed up with the paths: names of `[sources.NAME]` tables,
    /// or source URLs.
    #[serde(default)]
    pub sources: Vec<String>,
    /// zstd level for new data.
    pub compression: Option<i32>,
}

/// The default config file location.
pub fn default_config_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("lifeboat").join("config.toml"))
}

/// The embedded default repository location.
pub fn default_repository_path() -> Result<PathBuf> {
    let data = dirs::data_dir()
        .context("cannot find the user's data directory; set HOME or XDG_DATA_HOME, or pass -d")?;
    Ok(data.join("lifeboat").join("repository"))
}

/// Loads the config file: an explicit path must exist; the default may be absent.
pub fn load(explicit: Option<&Path>) -> Result<ConfigFile> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default_config_path() {
            Some(p) => (p, false),
            None => return Ok(ConfigFile::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(ConfigFile::default())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {}", path.display()))
        }
    };
    let config: ConfigFile = toml::from_str(&text).map_err(|e| {
        let place = match e.span() {
            Some(span) => {
                let (line, column) = line_and_column(&text, span.start);
                format!(", line {line} column {column}")
            }
            None => String::new(),
        };
        // The message alone: toml's Display adds a multi-line excerpt of the file.
        let message = e.message().trim().replace('\n', "; ");
        anyhow::anyhow!(
            "config file {}{place}: {message}; fix the file (see README, Config file) or point --config elsewhere",
            path.display()
        )
    })?;
    if config.holds_secrets() && readable_by_others(&path) {
        tracing::warn!(
            "config file {} holds S3 secrets and others can read it; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(config)
}

/// True when group or others may read `path`.
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

impl ConfigFile {
    /// True when some destination carries a secret key or session token.
    fn holds_secrets(&self) -> bool {
        self.destinations
            .values()
            .any(|d| d.aws_secret_access_key.is_some() || d.aws_session_token.is_some())
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The name of the embedded default repository (`-d default` reaches it even
/// when a config file names other destinations).
pub const DEFAULT_NAME: &str = "default";

/// True for a `-d` value that can only be a destination name: no `/` and no
/// scheme. A directory in the current one is written `./name`, so a typo in a
/// configured name never becomes a new directory.
fn is_bare_name(value: &str) -> bool {
    !value.contains('/') && !value.contains(':') && value != "." && value != ".."
}

/// The destinations a command works on.
pub struct Selection {
    /// Opened backends, in preference order.
    pub backends: Vec<Arc<dyn Backend>>,
    /// Per backend: the limits the config file sets.
    pub limits: Vec<Limits>,
    /// Per backend: its canonical location (see
    /// [`DestinationUrl::canonical_location`]).
    pub keys: Vec<String>,
    /// True when this is the embedded default (created on first backup).
    pub embedded_default: bool,
}

impl Selection {
    /// Keeps only the named destination (`--from`).
    ///
    /// # Errors
    /// When no selected destination has that name.
    pub fn only(mut self, name: &str) -> Result<Self> {
        let Some(i) = self.backends.iter().position(|b| b.name() == name) else {
            let names: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
            return Err(crate::exit::usage(format!(
                "--from {name}: no such destination; the destinations are: {}",
                names.join(", ")
            )));
        };
        self.backends = vec![self.backends.swap_remove(i)];
        self.limits = vec![self.limits.swap_remove(i)];
        self.keys = vec![self.keys.swap_remove(i)];
        Ok(self)
    }

    /// The destination set, with each destination's configured limits.
    ///
    /// # Errors
    /// An empty set or two destinations with one name.
    pub fn into_set(self) -> Result<DestinationSet> {
        let names: Vec<String> = self.backends.iter().map(|b| b.name().to_string()).collect();
        let mut set = DestinationSet::new(self.backends)?;
        for (name, limits) in names.iter().zip(self.limits) {
            if let Some(n) = limits.uploads {
                set.set_upload_limit(name, n)?;
            }
            if let Some(n) = limits.reads {
                set.set_read_limit(name, n)?;
            }
        }
        Ok(set)
    }
}

impl ConfigFile {
    /// The named profile, or `default` if present.
    pub fn profile(&self, name: Option<&str>) -> Result<Option<&Profile>> {
        match name {
            Some(n) => match self.profiles.get(n) {
                Some(p) => Ok(Some(p)),
                None => {
                    let names: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
                    Err(crate::exit::usage(format!(
                        "--profile {n}: no such profile in the config file (profiles: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    )))
                }
            },
            None => Ok(self.profiles.get("default")),
        }
    }

    /// Resolves the destinations to use and opens them.
    pub fn select(&self, flags: &[String], profile: Option<&Profile>) -> Result<Selection> {
        let (chosen, embedded_default) = self.resolve(flags, profile)?;
        let mut backends = Vec::new();
        let mut all_limits = Vec::new();
        let mut keys = Vec::new();
        for c in chosen {
            let entry = c.configured.as_ref().and_then(|n| self.destinations.get(n));
            let base = c.configured.as_deref().unwrap_or(&c.name);
            let credentials = match entry {
                Some(entry) => entry.s3_credentials(base)?,
                None => None,
            };
            let limits = entry
                .map(|e| e.limits(base))
                .transpose()?
                .unwrap_or_default();
            let instance = match entry.and_then(|e| e.credentials.as_deref()) {
                None => false,
                Some("instance") => true,
                Some(other) => bail!(
                    "destination {base:?} in the config file: credentials = {other:?} is not known; \
                     the one value is \"instance\" (the cloud instance's role)"
                ),
            };
            let backend = match (&c.url, credentials) {
                (DestinationUrl::S3(_), credentials) => {
                    let options = lifeboat_backends::s3::S3Options {
                        credentials,
                        instance_credentials: instance,
                    };
                    c.url.open_with(&c.name, &options)?
                }
                (_, Some(_)) => bail!(
                    "destination {base:?}: aws_* credentials apply to s3:// destinations only"
                ),
                (_, None) if instance => bail!(
                    "destination {base:?}: credentials = \"instance\" applies to s3:// destinations only"
                ),
                (_, None) => c.url.open(&c.name)?,
            };
            // Transient failures are retried with backoff before a destination
            // is given up on for the run.
            let mut policy = RetryPolicy::default();
            if let Some(n) = limits.attempts {
                policy.attempts = n;
            }
            let retrying = RetryBackend::new(backend, policy);
            backends.push(Arc::new(retrying) as Arc<dyn Backend>);
            all_limits.push(limits);
            keys.push(c.url.canonical_location());
        }
        Ok(Selection {
            backends,
            limits: all_limits,
            keys,
            embedded_default,
        })
    }

    /// Each selected destination's name and canonical location (the key its
    /// check and drill results are filed under), without opening any.
    pub fn locations(
        &self,
        flags: &[String],
        profile: Option<&Profile>,
    ) -> Result<BTreeMap<String, String>> {
        Ok(self
            .resolve(flags, profile)?
            .0
            .into_iter()
            .map(|c| (c.name, c.url.canonical_location()))
            .collect())
    }

    /// Which destinations a command uses, with distinct names, and whether
    /// this is the embedded default.
    fn resolve(&self, flags: &[String], profile: Option<&Profile>) -> Result<(Vec<Chosen>, bool)> {
        // (configured name if any, URL text)
        let mut chosen: Vec<(Option<String>, String)> = Vec::new();
        if !flags.is_empty() {
            for flag in flags {
                match self.destinations.get(flag) {
                    Some(d) => chosen.push((Some(flag.clone()), d.url.clone())),
                    None if flag == DEFAULT_NAME => chosen.push((
                        Some(DEFAULT_NAME.into()),
                        default_repository_path()?.display().to_string(),
                    )),
                    None if is_bare_name(flag) => {
                        let mut names: Vec<&str> =
                            self.destinations.keys().map(String::as_str).collect();
                        names.push(DEFAULT_NAME);
                        return Err(crate::exit::usage(format!(
                            "-d {flag}: no destination is named {flag:?} (configured: {}); \
                             write a directory in the current one as ./{flag}",
                            names.join(", ")
                        )));
                    }
                    None => chosen.push((None, flag.clone())),
                }
            }
        } else if let Some(names) = profile.map(|p| &p.destinations).filter(|d| !d.is_empty()) {
            for name in names {
                let d = self.destinations.get(name).with_context(|| {
                    format!(
                        "profile names destination {name:?}, which the config file does not define"
                    )
                })?;
                chosen.push((Some(name.clone()), d.url.clone()));
            }
        } else {
            chosen.extend(
                self.destinations
                    .iter()
                    .map(|(n, d)| (Some(n.clone()), d.url.clone())),
            );
        }
        let embedded_default = chosen.is_empty()
            || (flags.len() == 1
                && flags[0] == DEFAULT_NAME
                && !self.destinations.contains_key(DEFAULT_NAME));
        if chosen.is_empty() {
            chosen.push((
                Some(DEFAULT_NAME.into()),
                default_repository_path()?.display().to_string(),
            ));
        }
        let mut out: Vec<Chosen> = Vec::new();
        for (configured, text) in chosen {
            let url = DestinationUrl::parse(&crate::selection::expand_user(&text))?;
            let name = match &configured {
                Some(n) => n.clone(),
                None => url.default_name(),
            };
            if let Some(same) = out
                .iter()
                .find(|o| o.url.canonical_location() == url.canonical_location())
            {
                return Err(crate::exit::usage(format!(
                    "destination {} is given twice (as {} and {name}); name each destination once",
                    url.canonical_location(),
                    same.name
                )));
            }
            out.push(Chosen {
                name,
                configured,
                url,
            });
        }
        distinct_names(&mut out);
        Ok((out, embedded_default))
    }
}

/// One destination a command uses.
struct Chosen {
    /// Its name: the config file's, else derived from the URL.
    name: String,
    /// Its name in the config file, if it has one.
    configured: Option<String>,
    url: DestinationUrl,
}

/// Makes derived names distinct: destinations whose names collide take more
/// of their location (`/mnt/usb/lb` and `/mnt/nas/lb` become `local-usb-lb`
/// and `local-nas-lb`), so a result is never shown under another
/// destination's name; numbering is the last resort.
fn distinct_names(chosen: &mut [Chosen]) {
    let colliding = |chosen: &[Chosen]| -> Vec<usize> {
        (0..chosen.len())
            .filter(|&i| {
                chosen[i].configured.is_none()
                    && chosen
                        .iter()
                        .enumerate()
                        .any(|(j, o)| j != i && o.name == chosen[i].name)
            })
            .collect()
    };
    for extra in 1..=16 {
        let clash = colliding(chosen);
        if clash.is_empty() {
            return;
        }
        for i in clash {
            if let Some(name) = chosen[i].url.name_with(extra) {
                chosen[i].name = name;
            }
        }
    }
    let mut used: Vec<String> = Vec::new();
    for c in chosen.iter_mut() {
        let base = c.name.clone();
        let mut n = 2;
        while used.contains(&c.name) {
            c.name = format!("{base}-{n}");
            n += 1;
        }
        used.push(c.name.clone());
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
