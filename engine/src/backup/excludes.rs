//! Exclude patterns (`--exclude GLOB`, `--exclude-file F`).
//!
//! A pattern without `/` matches any file name at any depth (`*.tmp`,
//! `node_modules`); a pattern with `/` matches the whole absolute path
//! (`/home/*/.cache`), and then also everything below a matching directory.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    names: Option<GlobSet>,
    paths: Option<GlobSet>,
}

impl Excludes {
    /// Compiles `patterns`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first invalid pattern.
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let (mut any_name, mut any_path) = (false, false);
        for p in patterns.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let glob = Glob::new(p.trim_end_matches('/'))
                .map_err(|e| Error::InvalidInput(format!("invalid exclude pattern {p:?}: {e}")))?;
            if p.trim_end_matches('/').contains('/') {
                paths.add(glob);
                any_path = true;
            } else {
                names.add(glob);
                any_name = true;
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::InvalidInput(format!("invalid exclude pattern: {e}")))
        };
        Ok(Excludes {
            names: if any_name { Some(build(names)?) } else { None },
            paths: if any_path { Some(build(paths)?) } else { None },
        })
    }

    /// Reads patterns from a file: one per line, `#` comments and blank lines ignored.
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

    /// True when the entry at `path` (named `name`) is excluded.
    pub fn is_excluded(&self, path: &Path, name: &[u8]) -> bool {
        if let Some(names) = &self.names {
            if names.is_match(Path::new(std::ffi::OsStr::from_bytes(name))) {
                return true;
            }
        }
        self.paths.as_ref().is_some_and(|p| p.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let ex = Excludes::new(&[
            "*.tmp".into(),
            "/home/*/.cache".into(),
            "node_modules".into(),
        ])
        .unwrap();
        assert!(ex.is_excluded(Path::new("/a/b/x.tmp"), b"x.tmp"));
        assert!(!ex.is_excluded(Path::new("/a/b/x.tmpl"), b"x.tmpl"));
        assert!(ex.is_excluded(Path::new("/home/u/.cache"), b".cache"));
        assert!(!ex.is_excluded(Path::new("/srv/u/.cache"), b".cache"));
        assert!(ex.is_excluded(Path::new("/p/node_modules"), b"node_modules"));
        assert!(Excludes::new(&["a[".into()]).is_err());
    }
}
