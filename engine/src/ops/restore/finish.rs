//! A restore's last steps, once every file's content is written: the
//! count of files restored, hard links, and the metadata of specials and
//! directories (deepest first, so setting a child never changes a parent's
//! times afterwards).

use super::files::{self, Files, Meta};
use super::plan::Failures;
use super::RestoreOutcome;

/// Counts the files restored and removes those that failed (a file whose
/// content could not be verified is never left with wrong bytes).
pub(super) fn count_files(files: &Files, failures: &Failures, outcome: &mut RestoreOutcome) {
    for (n, plan) in files.plans.iter().enumerate() {
        if let Some(reason) = failures.get(&n) {
            let path = files.path(n);
            let _ = files.remove(n);
            outcome
                .errors
                .push((path, format!("{reason}; file not restored")));
            continue;
        }
        outcome.files += 1;
        outcome.bytes += plan.meta.size;
        // Files completed by a writer have theirs already.
        files.set_metadata(n, None);
    }
    outcome.errors.extend(files.take_metadata_errors());
}

/// Creates the extra names of hard-linked files whose first name restored.
pub(super) fn link(
    files: &Files,
    links: Vec<(u32, Box<[u8]>, usize)>,
    failures: &Failures,
    outcome: &mut RestoreOutcome,
) {
    for (dir, name, first) in links {
        // Never left silently: a name whose content failed is an error too.
        if let Some(reason) = failures.get(&first) {
            outcome.errors.push((
                files.dirs.path_of(dir, &name),
                format!("hard link of a file that failed ({reason}); not restored"),
            ));
            continue;
        }
        match files.link(first, dir, &name) {
            Ok(()) => outcome.hardlinks += 1,
            Err(e) => outcome
                .errors
                .push((files.dirs.path_of(dir, &name), format!("hard link: {e}"))),
        }
    }
}

/// Sets the metadata of symlinks, pipes and devices.
pub(super) fn specials_metadata(
    files: &Files,
    specials: &[(u32, Box<[u8]>, Meta)],
    outcome: &mut RestoreOutcome,
) {
    let is_root = files.is_root();
    for (dir, name, meta) in specials {
        outcome.specials += 1;
        let applied = files
            .dirs
            .dir(*dir)
            .and_then(|fd| files::apply_metadata_at(&fd, name, meta, is_root));
        if let Err(e) = applied {
            outcome.errors.push((
                files.dirs.path_of(*dir, name),
                format!("setting metadata: {e}"),
            ));
        }
    }
}

/// Sets directories' metadata, children before parents.
pub(super) fn dirs_metadata(files: &Files, dirs: &[(u32, Meta)], outcome: &mut RestoreOutcome) {
    let is_root = files.is_root();
    for (dir, meta) in dirs.iter().rev() {
        outcome.dirs += 1;
        if let Err(e) = files::apply_dir_metadata(&files.dirs, *dir, meta, is_root) {
            outcome.errors.push((
                files.dirs.path(*dir).to_path_buf(),
                format!("setting metadata: {e}"),
            ));
        }
    }
}
