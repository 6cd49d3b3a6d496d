//! Path patterns: the one compiler of the glob rules that `backup
//! --exclude`, `find` and `rewrite --exclude` share (restic's rules; README,
//! *Patterns*):
//! - `*` and `?` never cross a `/`; `**` matches any number of directories.
//! - A pattern starting with `/` is matched from the root.
//! - Any other pattern matches whole path components at any depth.
//!
//! Whether a match also covers everything below the matching entry is the
//! caller's choice ([`Reach`]): an exclude drops the whole subtree, while
//! `find` reports the entry that matched and not its contents.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// What a match covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The matching entry only.
    Entry,
    /// The matching entry and everything below it.
    Subtree,
}

/// One pattern as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern, trimmed.
    pub text: String,
    /// Matched ignoring case.
    pub caseless: bool,
}

/// Compiled patterns.
#[derive(Debug, Clone, Default)]
pub struct PathPatterns {
    set: Option<GlobSet>,
    /// The pattern behind each glob of `set`.
    rules: Vec<usize>,
    patterns: Vec<Pattern>,
}

impl PathPatterns {
    /// Compiles `patterns` (case-sensitive) and `caseless` ones; blank
    /// patterns are skipped. `what` names the flag in error messages
    /// (`exclude`, `find`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the invalid pattern.
    pub fn new(patterns: &[String], caseless: &[String], reach: Reach, what: &str) -> Result<Self> {
        let mut set = GlobSetBuilder::new();
        let mut rules = Vec::new();
        let mut kept = Vec::new();
        let all = patterns
            .iter()
            .map(|p| (p, false))
            .chain(caseless.iter().map(|p| (p, true)));
        for (pattern, caseless) in all {
            let trimmed = pattern.trim();
            let body = trimmed.trim_end_matches('/');
            if body.is_empty() {
                continue;
            }
            let anchored = if body.starts_with('/') {
                body.to_string()
            } else {
                format!("**/{body}")
            };
            let globs = match reach {
                Reach::Entry => vec![anchored],
                Reach::Subtree => vec![anchored.clone(), format!("{anchored}/**")],
            };
            for glob in globs {
                let compiled = GlobBuilder::new(&glob)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .case_insensitive(caseless)
                    .build()
                    .map_err(|e| {
                        Error::InvalidInput(format!(
                            "invalid {what} pattern {trimmed:?}: {e}; see README, Patterns"
                        ))
                    })?;
                set.add(compiled);
                rules.push(kept.len());
            }
            kept.push(Pattern {
                text: trimmed.to_string(),
                caseless,
            });
        }
        let set = if rules.is_empty() {
            None
        } else {
            Some(
                set.build()
                    .map_err(|e| Error::InvalidInput(format!("invalid {what} patterns: {e}")))?,
            )
        };
        Ok(PathPatterns {
            set,
            rules,
            patterns: kept,
        })
    }

    /// The patterns, in the order given (blank ones left out).
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// True when there is no pattern.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The first pattern (in the order given) matching the absolute `path`.
    pub fn matching(&self, path: &Path) -> Option<&Pattern> {
        self.patterns.get(self.matching_index(path)?)
    }

    /// The position in [`PathPatterns::patterns`] of the first pattern
    /// matching the absolute `path`.
    pub fn matching_index(&self, path: &Path) -> Option<usize> {
        let set = self.set.as_ref()?;
        let first = set.matches(path).into_iter().min()?;
        self.rules.get(first).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_reach_matches_the_entry_not_its_contents() {
        let p = PathPatterns::new(&["docs".into()], &[], Reach::Entry, "find").unwrap();
        assert!(p.matching(Path::new("/home/u/docs")).is_some());
        assert!(p.matching(Path::new("/home/u/docs/a.txt")).is_none());
        let s = PathPatterns::new(&["docs".into()], &[], Reach::Subtree, "exclude").unwrap();
        assert!(s.matching(Path::new("/home/u/docs/a.txt")).is_some());
    }

    #[test]
    fn caseless_and_first_match_wins() {
        let p =
            PathPatterns::new(&["*.pdf".into()], &["TAXES*".into()], Reach::Entry, "find").unwrap();
        assert_eq!(
            p.matching(Path::new("/a/taxes-2024.pdf"))
                .map(|m| m.text.as_str()),
            Some("*.pdf")
        );
        let hit = p.matching(Path::new("/a/taxes-2024.txt")).unwrap();
        assert!(hit.caseless);
        assert!(p.matching(Path::new("/a/other.txt")).is_none());
    }

    #[test]
    fn bad_pattern_names_itself() {
        let e = PathPatterns::new(&["a[".into()], &[], Reach::Entry, "find").unwrap_err();
        assert!(e.to_string().contains("\"a[\""), "{e}");
    }
}
