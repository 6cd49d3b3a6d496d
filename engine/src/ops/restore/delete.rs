//! `restore --delete`: what a restored directory holds that the snapshot's
//! directory does not is removed, so the target ends up as the snapshot.
//! Only directories restored whole are cleaned (never one walked only to
//! reach an `--include`), and removal goes through directory descriptors
//! without following links, like every other change a restore makes.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::target::TargetDirs;
use super::RestoreOutcome;

/// Removes from each directory in `names` (by number) every entry whose name
/// is not listed there.
pub(super) fn delete_extras(
    dirs: &TargetDirs,
    names: &HashMap<u32, Vec<Box<[u8]>>>,
    outcome: &mut RestoreOutcome,
) {
    for (&n, keep) in names {
        let keep: HashSet<&[u8]> = keep.iter().map(|k| &k[..]).collect();
        let extras = dirs.dir(n).and_then(|fd| Ok((list(&fd)?, fd)));
        let (entries, fd) = match extras {
            Ok(found) => found,
            Err(e) => {
                outcome
                    .errors
                    .push((dirs.path(n).to_path_buf(), format!("--delete: {e}")));
                continue;
            }
        };
        for name in entries.iter().filter(|name| !keep.contains(&name[..])) {
            match remove_tree(&fd, name) {
                Ok(()) => outcome.deleted += 1,
                Err(e) => outcome
                    .errors
                    .push((dirs.path_of(n, name), format!("--delete: {e}"))),
            }
        }
    }
}

/// The names in the open directory `dir` (not `.` and `..`).
fn list(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

/// Removes `name` from `dir`, and everything below it when it is a
/// directory; a link is removed, never followed.
fn remove_tree(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in list(&sub)? {
        remove_tree(&sub, &child)?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}
