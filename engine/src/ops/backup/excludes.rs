//! What a backup leaves out: patterns (`--exclude`, `--iexclude` and their
//! `-file` forms), marked directories (`--exclude-caches`,
//! `--exclude-if-present`) and other file systems (`--one-file-system`).
//!
//! Patterns follow restic's rules, because a pattern that silently drops
//! more than its user wrote is data loss:
//! - `*` and `?` never cross a `/`; `**` matches any number of directories.
//! - A pattern starting with `/` is matched from the root (`/home/*/.cache`
//!   excludes `/home/u/.cache`, not `/home/u/src/x/.cache`).
//! - Any other pattern matches whole path components at any depth
//!   (`Documents/notes` excludes `/home/u/Documents/notes`, `*.tmp`
//!   excludes `/a/b/x.tmp`; `foo` never excludes `/a/foobar`).
//! - A match excludes everything below it too.

use std::fmt;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::patterns::{PathPatterns, Reach};

/// The signature that marks a cache directory's `CACHEDIR.TAG`
/// (<https://bford.info/cachedir/>).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Why an entry was left out: the rule, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExcludeReason {
    /// `--exclude PATTERN` (or a line of `--exclude-file`).
    Pattern(String),
    /// `--iexclude PATTERN` (or a line of `--iexclude-file`).
    CaselessPattern(String),
    /// `--exclude-caches`: the directory holds a valid `CACHEDIR.TAG`.
    CacheDir,
    /// `--exclude-if-present FILE[:HEADER]`.
    IfPresent(String),
    /// `--one-file-system`: on another file system than its backup path.
    OtherFileSystem,
}

impl fmt::Display for ExcludeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExcludeReason::Pattern(p) => write!(f, "--exclude {p:?}"),
            ExcludeReason::CaselessPattern(p) => write!(f, "--iexclude {p:?}"),
            ExcludeReason::CacheDir => f.write_str("--exclude-caches (CACHEDIR.TAG)"),
            ExcludeReason::IfPresent(spec) => write!(f, "--exclude-if-present {spec}"),
            ExcludeReason::OtherFileSystem => f.write_str("--one-file-system"),
        }
    }
}

/// Every rule that leaves entries out of a backup, as given.
#[derive(Debug, Clone, Default)]
pub struct ExcludeOptions {
    /// Case-sensitive patterns.
    pub patterns: Vec<String>,
    /// Case-insensitive patterns.
    pub caseless_patterns: Vec<String>,
    /// Leave out directories holding a valid `CACHEDIR.TAG`.
    pub caches: bool,
    /// Leave out directories holding this file (`NAME`, or `NAME:HEADER`
    /// when the file must also start with `HEADER`).
    pub if_present: Vec<String>,
    /// Stay on the file system of each backup path.
    pub one_file_system: bool,
}

/// A marker file that excludes its directory.
#[derive(Debug, Clone)]
struct Marker {
    name: String,
    header: Option<Vec<u8>>,
    reason: ExcludeReason,
}

/// The compiled rules.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    globs: PathPatterns,
    /// The rule of each pattern of `globs`.
    glob_rules: Vec<ExcludeReason>,
    markers: Vec<Marker>,
    one_file_system: bool,
}

impl Excludes {
    /// Compiles the rules.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming an invalid pattern or marker.
    pub fn new(options: &ExcludeOptions) -> Result<Self> {
        let globs = PathPatterns::new(
            &options.patterns,
            &options.caseless_patterns,
            Reach::Subtree,
            "exclude",
        )?;
        let glob_rules = globs
            .patterns()
            .iter()
            .map(|p| {
                if p.caseless {
                    ExcludeReason::CaselessPattern(p.text.clone())
                } else {
                    ExcludeReason::Pattern(p.text.clone())
                }
            })
            .collect();
        let mut markers = Vec::new();
        if options.caches {
            markers.push(Marker {
                name: "CACHEDIR.TAG".into(),
                header: Some(CACHEDIR_SIGNATURE.to_vec()),
                reason: ExcludeReason::CacheDir,
            });
        }
        for spec in &options.if_present {
            let (name, header) = match spec.split_once(':') {
                Some((name, header)) => (name, Some(header.as_bytes().to_vec())),
                None => (spec.as_str(), None),
            };
            if name.is_empty() || name.contains('/') {
                return Err(Error::InvalidInput(format!(
                    "--exclude-if-present {spec:?}: give a file name (no `/`), optionally \
                     followed by :HEADER"
                )));
            }
            markers.push(Marker {
                name: name.to_string(),
                header,
                reason: ExcludeReason::IfPresent(spec.clone()),
            });
        }
        Ok(Excludes {
            globs,
            glob_rules,
            markers,
            one_file_system: options.one_file_system,
        })
    }

    /// Reads patterns from a file: one per line, `#` comments and blank
    /// lines ignored.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect())
    }

    /// The pattern that excludes the entry at absolute `path`, if any.
    pub fn matching_pattern(&self, path: &Path) -> Option<&ExcludeReason> {
        self.glob_rules.get(self.globs.matching_index(path)?)
    }

    /// The marker that excludes the directory at `dir`, if any: a file of
    /// that name in it (not a link), starting with the marker's header when
    /// it has one.
    pub fn marked_directory(&self, dir: &Path) -> Option<&ExcludeReason> {
        self.markers.iter().find_map(|m| {
            let file = dir.join(&m.name);
            let meta = std::fs::symlink_metadata(&file).ok()?;
            if !meta.is_file() {
                return None;
            }
            if let Some(header) = &m.header {
                let mut start = vec![0u8; header.len()];
                let mut f = open_no_follow(&file).ok()?;
                f.read_exact(&mut start).ok()?;
                if &start != header {
                    return None;
                }
            }
            Some(&m.reason)
        })
    }

    /// True with `--one-file-system`.
    pub fn one_file_system(&self) -> bool {
        self.one_file_system
    }

    /// True when there are marker files to look for in each directory.
    pub fn has_markers(&self) -> bool {
        !self.markers.is_empty()
    }
}

fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Excludes {
        Excludes::new(&ExcludeOptions {
            patterns: list.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    /// The pattern rules against a fixed set of paths, restic's examples
    /// among them: (pattern, path, excluded?).
    #[test]
    fn pattern_rules_table() {
        let table: &[(&str, &str, bool)] = &[
            // A name at any depth, whole components only.
            ("*.tmp", "/a/b/x.tmp", true),
            ("*.tmp", "/a/b/x.tmpl", false),
            ("foo", "/dir/foo", true),
            ("foo", "/dir1/foo/dir2/file", true),
            ("foo", "/dir/foobar", false),
            ("foo", "/dir/xfoo", false),
            // Several components without a leading `/`: at any depth.
            ("Documents/notes", "/home/u/Documents/notes", true),
            ("Documents/notes", "/home/u/Documents/notes/a.txt", true),
            ("Documents/notes", "/home/u/Documents/notes2", false),
            ("Documents/notes", "/home/u/notes", false),
            // `*` stops at `/`.
            ("/home/*/.cache", "/home/u/.cache", true),
            ("/home/*/.cache", "/home/u/.cache/x/y", true),
            ("/home/*/.cache", "/home/u/src/x/.cache", false),
            ("/home/*/.cache", "/srv/home/u/.cache", false),
            ("*/x", "/a/x", true),
            ("/a/*", "/a/b", true),
            ("/a/*", "/a", false),
            ("/a/?", "/a/bc", false),
            // `**` crosses.
            ("/home/**/.cache", "/home/u/src/x/.cache", true),
            ("/home/**/.cache", "/home/.cache", true),
            ("src/**/*.o", "/p/src/a/b/c.o", true),
            ("src/**/*.o", "/p/lib/a/b/c.o", false),
            // Anchored patterns are whole paths from the root.
            ("/tmp", "/tmp/x", true),
            ("/tmp", "/var/tmp", false),
            // A trailing `/` is the same pattern.
            ("node_modules/", "/p/node_modules", true),
            // Escapes and classes.
            ("[ab].txt", "/x/a.txt", true),
            ("[ab].txt", "/x/c.txt", false),
            ("\\*.txt", "/x/*.txt", true),
            ("\\*.txt", "/x/a.txt", false),
        ];
        for &(pattern, path, excluded) in table {
            let ex = patterns(&[pattern]);
            assert_eq!(
                ex.matching_pattern(Path::new(path)).is_some(),
                excluded,
                "{pattern:?} on {path:?}"
            );
        }
    }

    #[test]
    fn caseless_patterns_and_the_rule_that_matched() {
        let ex = Excludes::new(&ExcludeOptions {
            patterns: vec!["*.log".into()],
            caseless_patterns: vec!["*.TMP".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            ex.matching_pattern(Path::new("/a/x.tmp")),
            Some(&ExcludeReason::CaselessPattern("*.TMP".into()))
        );
        assert_eq!(
            ex.matching_pattern(Path::new("/a/x.log")),
            Some(&ExcludeReason::Pattern("*.log".into()))
        );
        assert_eq!(ex.matching_pattern(Path::new("/a/x.LOG")), None);
        assert!(Excludes::new(&ExcludeOptions {
            patterns: vec!["a[".into()],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn marker_files_exclude_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let fake = dir.path().join("fake");
        let marked = dir.path().join("marked");
        for d in [&cache, &fake, &marked] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(
            cache.join("CACHEDIR.TAG"),
            b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache",
        )
        .unwrap();
        std::fs::write(fake.join("CACHEDIR.TAG"), b"not a signature").unwrap();
        std::fs::write(marked.join(".nobackup"), b"").unwrap();
        let ex = Excludes::new(&ExcludeOptions {
            caches: true,
            if_present: vec![".nobackup".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ex.marked_directory(&cache), Some(&ExcludeReason::CacheDir));
        assert_eq!(ex.marked_directory(&fake), None);
        assert_eq!(
            ex.marked_directory(&marked),
            Some(&ExcludeReason::IfPresent(".nobackup".into()))
        );
        let headed = Excludes::new(&ExcludeOptions {
            if_present: vec!["CACHEDIR.TAG:Signature".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(headed.marked_directory(&cache).is_some());
        assert!(headed.marked_directory(&fake).is_none());
        assert!(Excludes::new(&ExcludeOptions {
            if_present: vec!["a/b".into()],
            ..Default::default()
        })
        .is_err());
    }
}
