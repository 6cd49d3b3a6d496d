//! What a backup reads: the paths (arguments, `--files-from`, the profile)
//! and what it leaves out (patterns, marker files, other file systems).
//! Pattern rules are the engine's (`lifeboat_engine::backup::Excludes`);
//! this module gathers them from flags, files and the profile, with `~` and
//! `$HOME` expanded wherever a path or pattern is written.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use lifeboat_engine::backup::{ExcludeOptions, Excludes};

use crate::config::Profile;

/// The flags that choose what a backup reads and leaves out.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectionArgs {
    /// Leave out what matches GLOB: `*` and `?` stop at `/`, `**` crosses; with a leading `/`
    /// it matches from the root (`/home/*/.cache`), without it whole path components at any
    /// depth (`*.tmp`, `Documents/notes`). Everything below a match is left out too.
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case.
    #[arg(long = "iexclude", value_name = "GLOB")]
    pub iexcludes: Vec<String>,
    /// Read --exclude patterns from FILE (one per line, # comments).
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Read --iexclude patterns from FILE (one per line, # comments).
    #[arg(long = "iexclude-file", value_name = "FILE")]
    pub iexclude_files: Vec<PathBuf>,
    /// Leave out directories holding a valid CACHEDIR.TAG (browser and build caches).
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out directories holding FILE (`FILE:HEADER`: only when FILE starts with HEADER).
    #[arg(long = "exclude-if-present", value_name = "FILE[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Stay on the file system of each backup path: mount points below it are left out.
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Back up the paths listed in FILE (one per line; blank lines and lines starting with #
    /// are ignored; `-` reads standard input).
    #[arg(long = "files-from", value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Back up the paths listed in FILE separated by NUL bytes, taken exactly as written
    /// (`find -print0`; `-` reads standard input).
    #[arg(long = "files-from-verbatim", value_name = "FILE")]
    pub files_from_verbatim: Vec<PathBuf>,
}

/// `~` and `$HOME` at the start of paths and patterns: the shell does not
/// expand them in config files or in quoted patterns. One definition, shared
/// with the SFTP destination's `known_hosts=` and `identity=` options.
pub use lifeboat_backends::expand_user;

impl SelectionArgs {
    /// The exclude rules from the flags, their files and the profile.
    ///
    /// # Errors
    /// A pattern file that cannot be read.
    pub fn exclude_options(&self, profile: Option<&Profile>) -> Result<ExcludeOptions> {
        let mut patterns: Vec<String> = self.excludes.clone();
        let mut caseless: Vec<String> = self.iexcludes.clone();
        let mut if_present = self.exclude_if_present.clone();
        let (mut caches, mut one_file_system) = (self.exclude_caches, self.one_file_system);
        if let Some(p) = profile {
            patterns.extend(p.exclude.iter().cloned());
            caseless.extend(p.iexclude.iter().cloned());
            if_present.extend(p.exclude_if_present.iter().cloned());
            caches |= p.exclude_caches;
            one_file_system |= p.one_file_system;
        }
        for file in &self.exclude_files {
            patterns.extend(
                Excludes::read_file(file)
                    .with_context(|| format!("--exclude-file {}", file.display()))?,
            );
        }
        for file in &self.iexclude_files {
            caseless.extend(
                Excludes::read_file(file)
                    .with_context(|| format!("--iexclude-file {}", file.display()))?,
            );
        }
        Ok(ExcludeOptions {
            patterns: patterns.iter().map(|p| expand_user(p)).collect(),
            caseless_patterns: caseless.iter().map(|p| expand_user(p)).collect(),
            caches,
            if_present,
            one_file_system,
        })
    }

    /// The paths to back up: the arguments, then those the `--files-from`
    /// lists name; else the profile's.
    ///
    /// # Errors
    /// A list that cannot be read.
    pub fn paths(&self, args: &[PathBuf], profile: Option<&Profile>) -> Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = args.to_vec();
        for file in &self.files_from {
            let text =
                read_list(file).with_context(|| format!("--files-from {}", file.display()))?;
            let text = String::from_utf8(text).with_context(|| {
                format!(
                    "--files-from {}: not UTF-8 text; use --files-from-verbatim with NUL-separated names",
                    file.display()
                )
            })?;
            paths.extend(
                text.lines()
                    .map(str::trim_end)
                    .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                    .map(|l| PathBuf::from(expand_user(l))),
            );
        }
        for file in &self.files_from_verbatim {
            use std::os::unix::ffi::OsStrExt;
            let bytes = read_list(file)
                .with_context(|| format!("--files-from-verbatim {}", file.display()))?;
            paths.extend(
                bytes
                    .split(|&b| b == 0)
                    .filter(|name| !name.is_empty())
                    .map(|name| PathBuf::from(std::ffi::OsStr::from_bytes(name))),
            );
        }
        let listed = !self.files_from.is_empty() || !self.files_from_verbatim.is_empty();
        if paths.is_empty() && !listed {
            if let Some(p) = profile {
                paths = p
                    .paths
                    .iter()
                    .map(|s| PathBuf::from(expand_user(s)))
                    .collect();
            }
        }
        Ok(paths)
    }
}

/// The bytes of a list file, or of standard input for `-`.
fn read_list(file: &Path) -> std::io::Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)?;
        return Ok(bytes);
    }
    std::fs::read(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_name_paths_line_by_line_or_by_nul() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines = dir.path().join("list");
        std::fs::write(&lines, "/a/b\n# a comment\n\n/c d/e  \n").expect("write");
        let nul = dir.path().join("nul");
        std::fs::write(&nul, b"/x\n y\0/z\0").expect("write");
        let args = SelectionArgs {
            files_from: vec![lines],
            files_from_verbatim: vec![nul],
            ..Default::default()
        };
        let paths = args.paths(&[PathBuf::from("/arg")], None).expect("paths");
        let expected: Vec<PathBuf> = ["/arg", "/a/b", "/c d/e", "/x\n y", "/z"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(paths, expected);
    }
}
