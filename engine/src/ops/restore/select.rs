//! Which entries of a snapshot a restore takes (`--include`, `--exclude`)
//! and what it does with entries already in the target (`--overwrite`).
//!
//! Patterns follow the backup's rules (see `backup::Excludes`): `*` and `?`
//! stop at `/`, `**` crosses, a leading `/` anchors at the snapshot's root,
//! otherwise whole components match at any depth, and a match takes
//! everything below it. An entry is restored when it matches an include (or
//! there is none) and no exclude; the directories above it are recreated with
//! their own metadata, as restic does.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};
use crate::ops::backup::{ExcludeOptions, Excludes};

/// What to do with an entry that already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it (a link or file is unlinked, never written through).
    #[default]
    Always,
    /// Replace a file unless it has the snapshot's size and modification time.
    IfChanged,
    /// Replace a file only when the snapshot's is newer.
    IfNewer,
    /// Leave whatever exists as it is.
    Never,
}

impl std::str::FromStr for Overwrite {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "always" => Ok(Overwrite::Always),
            "if-changed" => Ok(Overwrite::IfChanged),
            "if-newer" => Ok(Overwrite::IfNewer),
            "never" => Ok(Overwrite::Never),
            other => Err(format!(
                "{other:?}: use always, if-changed, if-newer or never"
            )),
        }
    }
}

/// The compiled `--include` and `--exclude` patterns.
#[derive(Debug, Default)]
pub(super) struct Selection {
    include: Option<Excludes>,
    /// Per include pattern: its components, when anchored at the root (an
    /// unanchored one may match below any directory).
    anchored: Vec<Option<Vec<GlobMatcher>>>,
    exclude: Option<Excludes>,
}

impl Selection {
    /// Compiles the patterns.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming an invalid pattern.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        let compile = |patterns: &[String]| -> Result<Option<Excludes>> {
            if patterns.is_empty() {
                return Ok(None);
            }
            Excludes::new(&ExcludeOptions {
                patterns: patterns.to_vec(),
                ..Default::default()
            })
            .map(Some)
        };
        let mut anchored = Vec::new();
        for pattern in include {
            let body = pattern.trim().trim_end_matches('/');
            if !body.starts_with('/') {
                anchored.push(None);
                continue;
            }
            let parts = body
                .split('/')
                .filter(|p| !p.is_empty())
                .map(|part| {
                    GlobBuilder::new(part)
                        .literal_separator(true)
                        .backslash_escape(true)
                        .build()
                        .map(|g| g.compile_matcher())
                        .map_err(|e| {
                            Error::InvalidInput(format!(
                                "invalid --include pattern {pattern:?}: {e}"
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            anchored.push(Some(parts));
        }
        Ok(Selection {
            include: compile(include)?,
            anchored,
            exclude: compile(exclude)?,
        })
    }

    /// True when there are include patterns (only what they match is taken).
    pub fn filters(&self) -> bool {
        self.include.is_some()
    }

    /// True when an exclude pattern leaves out `path` (and all below it).
    pub fn excluded(&self, path: &Path) -> bool {
        self.exclude
            .as_ref()
            .is_some_and(|e| e.matching_pattern(path).is_some())
    }

    /// True when `path` itself is taken (everything below it too, but for
    /// excludes).
    pub fn included(&self, path: &Path) -> bool {
        self.include
            .as_ref()
            .is_none_or(|i| i.matching_pattern(path).is_some())
    }

    /// True when something below the directory `dir` may be included, so it
    /// must be walked although it is not included itself.
    pub fn may_contain(&self, dir: &Path) -> bool {
        let parts: Vec<&std::ffi::OsStr> = dir
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(p) => Some(p),
                _ => None,
            })
            .collect();
        self.anchored.iter().any(|pattern| match pattern {
            None => true,
            Some(globs) => {
                for (i, part) in parts.iter().enumerate() {
                    match globs.get(i) {
                        // The pattern ended above `dir`: it matched an
                        // ancestor, which `included` already says.
                        None => return false,
                        Some(g) if g.glob().glob() == "**" => return true,
                        Some(g) if !g.is_match(Path::new(part)) => return false,
                        Some(_) => {}
                    }
                }
                globs.len() > parts.len()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(include: &[&str], exclude: &[&str]) -> Selection {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Selection::new(&owned(include), &owned(exclude)).unwrap()
    }

    #[test]
    fn includes_take_matches_and_walk_toward_them() {
        let s = sel(&["/home/*/docs", "*.txt"], &["*.tmp.txt"]);
        assert!(s.included(Path::new("/home/u/docs")));
        assert!(s.included(Path::new("/home/u/docs/a/b")));
        assert!(s.included(Path::new("/srv/x/notes.txt")));
        assert!(!s.included(Path::new("/home/u/music")));
        assert!(s.excluded(Path::new("/srv/x/a.tmp.txt")));
        let anchored = sel(&["/home/*/docs"], &[]);
        assert!(anchored.may_contain(Path::new("/")));
        assert!(anchored.may_contain(Path::new("/home")));
        assert!(anchored.may_contain(Path::new("/home/u")));
        assert!(!anchored.may_contain(Path::new("/srv")));
        assert!(!anchored.may_contain(Path::new("/home/u/music")));
        assert!(sel(&["/a/**/x"], &[]).may_contain(Path::new("/a/b/c/d")));
        // Unanchored patterns may match anywhere.
        assert!(sel(&["*.txt"], &[]).may_contain(Path::new("/any/where")));
        // No include: everything.
        assert!(sel(&[], &[]).included(Path::new("/x")));
        assert!(!sel(&[], &[]).filters());
    }

    #[test]
    fn overwrite_policies_parse() {
        assert_eq!("if-newer".parse::<Overwrite>(), Ok(Overwrite::IfNewer));
        assert!("sometimes".parse::<Overwrite>().is_err());
    }
}
