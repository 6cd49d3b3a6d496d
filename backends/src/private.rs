//! Owner-only files and directories: everything Lifeboat creates on a local
//! disk or an SFTP server (repository objects, their directories, the cache,
//! the health record) is readable by its owner alone, as restic does. The
//! contents are sealed anyway, but names, sizes and times are nobody else's
//! business, and a world-readable key file invites an offline password guess.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The mode of every file Lifeboat creates (before the umask).
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory Lifeboat creates (before the umask).
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents, each owner-only. Directories that
/// already exist keep their mode.
///
/// # Errors
/// The first creation that fails.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Creates the single directory `dir`, owner-only.
///
/// # Errors
/// As `mkdir`, `AlreadyExists` included.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(dir)
}

/// Creates (or truncates) the file `path` for writing, owner-only when new.
///
/// # Errors
/// As `open`.
pub fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// The options that create a new file, owner-only, failing when it exists.
pub fn create_new_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(FILE_MODE);
    options
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn what_it_creates_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir_all(&nested).unwrap();
        create_dir(&dir.path().join("c")).unwrap();
        create_file(&nested.join("f")).unwrap();
        create_new_options().open(nested.join("g")).unwrap();
        for path in ["a", "a/b", "c", "a/b/f", "a/b/g"] {
            let mode = std::fs::metadata(dir.path().join(path))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{path}: {mode:o}");
        }
    }
}
