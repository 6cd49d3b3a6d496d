//! Sources on the command line and in the config: which accounts a backup
//! pulls, and each one's password (its `password_file`, else
//! `LIFEBOAT_SOURCE_PASSWORD` when exactly one source needs one, else a
//! prompt naming the source). Passwords are never logged, echoed or put in
//! a URL.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use lifeboat_backends::expand_user;
use lifeboat_engine::source::ItemSource;
use lifeboat_sources::{is_source_url, SourceUrl};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::Profile;

/// One `[sources.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `davs://user@host/…` or `imaps://user@host/…` (no password).
    pub url: String,
    /// A file whose first line is the password (`~` expands).
    pub password_file: Option<String>,
    /// A PEM file of certificate authorities trusted besides the system's.
    pub ca_file: Option<String>,
}

/// A source to pull, with where its secrets come from.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The parsed URL.
    pub url: SourceUrl,
    /// The `password_file`, when configured.
    pub password_file: Option<PathBuf>,
    /// The `ca_file`, when configured.
    pub ca_file: Option<PathBuf>,
}

/// Splits the command line's operands into paths and sources; with no
/// operands, the profile's sources. A source URL that a `[sources.NAME]`
/// table names takes that table's password and CA files.
pub fn split(
    operands: &[PathBuf],
    profile: Option<&Profile>,
    configured: &BTreeMap<String, SourceConfig>,
) -> Result<(Vec<PathBuf>, Vec<SourceSpec>)> {
    let mut paths = Vec::new();
    let mut named: Vec<String> = Vec::new();
    for operand in operands {
        match operand.to_str() {
            Some(text) if is_source_url(text) => named.push(text.to_string()),
            _ => paths.push(operand.clone()),
        }
    }
    if operands.is_empty() {
        if let Some(p) = profile {
            named.extend(p.sources.iter().cloned());
        }
    }
    let mut specs = Vec::new();
    for entry in named {
        let (url_text, config) = match configured.get(&entry) {
            Some(config) => (config.url.clone(), Some(config)),
            None if is_source_url(&entry) => {
                let config = configured.values().find(|c| same_url(&c.url, &entry));
                (entry.clone(), config)
            }
            None => bail!(
                "unknown source {entry:?}: a profile's sources are names of [sources.NAME] tables or dav://, davs://, imap://, imaps:// URLs"
            ),
        };
        let url = SourceUrl::parse(&url_text).map_err(|e| crate::exit::usage(e.to_string()))?;
        let path = |p: &Option<String>| p.as_deref().map(|p| PathBuf::from(expand_user(p)));
        specs.push(SourceSpec {
            url,
            password_file: config.and_then(|c| path(&c.password_file)),
            ca_file: config.and_then(|c| path(&c.ca_file)),
        });
    }
    Ok((paths, specs))
}

fn same_url(a: &str, b: &str) -> bool {
    match (SourceUrl::parse(a), SourceUrl::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Connects each source (no request is sent yet): passwords read, TLS set
/// up.
pub fn open(specs: &[SourceSpec]) -> Result<Vec<Arc<dyn ItemSource>>> {
    let needing_env = specs.iter().filter(|s| s.password_file.is_none()).count();
    let mut sources = Vec::new();
    for spec in specs {
        let password = password(spec, needing_env)?;
        let source = lifeboat_sources::open(&spec.url, password, spec.ca_file.as_deref())
            .map_err(|e| anyhow::anyhow!("source {}: {e}", spec.url.display()))?;
        sources.push(source as Arc<dyn ItemSource>);
    }
    Ok(sources)
}

/// The account `url` names, to upload to (`restore --to`), with the
/// password and CA file of the `[sources.NAME]` table naming the same URL.
pub fn open_sink(
    url: &str,
    configured: &BTreeMap<String, SourceConfig>,
) -> Result<Arc<dyn lifeboat_engine::source::ItemSink>> {
    let named = match configured.get(url) {
        Some(config) => config.url.clone(),
        None => url.to_string(),
    };
    let (_, specs) = split(&[PathBuf::from(&named)], None, configured)?;
    let spec = specs.first().ok_or_else(|| {
        crate::exit::usage(format!(
            "--to {url}: not a source URL (davs://USER@HOST/ or imaps://USER@HOST/)"
        ))
    })?;
    let password = password(spec, 1)?;
    let account = lifeboat_sources::open(&spec.url, password, spec.ca_file.as_deref())
        .map_err(|e| anyhow::anyhow!("--to {}: {e}", spec.url.display()))?;
    Ok(account)
}

/// One source's password: its file, else the environment when it is the
/// only one needing it, else a prompt.
fn password(spec: &SourceSpec, needing_env: usize) -> Result<Zeroizing<String>> {
    let from_env = std::env::var_os("LIFEBOAT_SOURCE_PASSWORD");
    {
        let shown = spec.url.display();
        let password = match (&spec.password_file, &from_env) {
            (Some(file), _) => {
                let bytes =
                    crate::password::from_file(file).with_context(|| format!("source {shown}"))?;
                text(bytes, &shown)?
            }
            (None, Some(env)) if needing_env == 1 => {
                let bytes = Zeroizing::new(
                    std::os::unix::ffi::OsStrExt::as_bytes(env.as_os_str()).to_vec(),
                );
                if bytes.is_empty() {
                    bail!("LIFEBOAT_SOURCE_PASSWORD is set but empty; set it to the password of {shown}");
                }
                text(bytes, &shown)?
            }
            _ => prompt(&shown, needing_env)?,
        };
        Ok(password)
    }
}

fn text(bytes: Zeroizing<Vec<u8>>, shown: &str) -> Result<Zeroizing<String>> {
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(_) => bail!("the password of source {shown} is not UTF-8 text"),
    }
}

fn prompt(shown: &str, needing: usize) -> Result<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() {
        let why = if needing > 1 {
            "LIFEBOAT_SOURCE_PASSWORD serves only when exactly one source needs a password; give the others a password_file in [sources.NAME]"
        } else {
            "set LIFEBOAT_SOURCE_PASSWORD, or a password_file in a [sources.NAME] table"
        };
        bail!("no password for source {shown} and no terminal to ask on: {why}");
    }
    let p = Zeroizing::new(
        rpassword::prompt_password(format!("Password for {shown}: "))
            .context("cannot read the password")?,
    );
    if p.is_empty() {
        bail!("no password entered for source {shown}");
    }
    Ok(p)
}

/// `dav://host/…` and `imap://user@host/…` in a restore pattern, as the
/// snapshot path they name (`/dav/host/…`, `/imap/user@host/…`); anything
/// else as it is.
pub fn snapshot_pattern(pattern: &str) -> String {
    for (scheme, dir) in [
        ("davs", "dav"),
        ("dav", "dav"),
        ("imaps", "imap"),
        ("imap", "imap"),
    ] {
        let prefix = format!("{scheme}://");
        if let Some(rest) = pattern.strip_prefix(&prefix) {
            return format!("/{dir}/{}", rest.trim_end_matches('/'));
        }
    }
    pattern.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_split_into_paths_and_sources() {
        let mut configured = BTreeMap::new();
        configured.insert(
            "mail".to_string(),
            SourceConfig {
                url: "davs://alice@dav.example.com/".into(),
                password_file: Some("/run/secret".into()),
                ca_file: None,
            },
        );
        let operands = vec![
            PathBuf::from("/home/a"),
            PathBuf::from("davs://alice@dav.example.com/"),
        ];
        let (paths, specs) = split(&operands, None, &configured).unwrap();
        assert_eq!(paths, vec![PathBuf::from("/home/a")]);
        assert_eq!(specs.len(), 1);
        assert_eq!(
            specs[0].password_file,
            Some(PathBuf::from("/run/secret")),
            "the table's file"
        );
        let profile = Profile {
            sources: vec!["mail".into(), "dav://bob@127.0.0.1:5232/".into()],
            ..Profile::default()
        };
        let (paths, specs) = split(&[], Some(&profile), &configured).unwrap();
        assert!(paths.is_empty());
        assert_eq!(specs.len(), 2);
        assert!(specs[1].password_file.is_none());
        let bad = Profile {
            sources: vec!["nope".into()],
            ..Profile::default()
        };
        assert!(split(&[], Some(&bad), &configured).is_err());
    }

    #[test]
    fn source_urls_in_patterns_name_snapshot_paths() {
        assert_eq!(
            snapshot_pattern("dav://h:1/alice/contacts/"),
            "/dav/h:1/alice/contacts"
        );
        assert_eq!(snapshot_pattern("imap://a@h/INBOX"), "/imap/a@h/INBOX");
        assert_eq!(snapshot_pattern("davs://h/x"), "/dav/h/x");
        assert_eq!(snapshot_pattern("/home/x"), "/home/x");
    }
}
