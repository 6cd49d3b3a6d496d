//! User and group names for uids and gids, cached (lookups hit NSS).
//!
//! nix's lookups grow their buffer while the C library answers ERANGE, so
//! a group with thousands of members still gets its name (a fixed buffer
//! recorded such groups with an empty one).

use std::collections::HashMap;
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};

static USERS: Mutex<Option<HashMap<u32, String>>> = Mutex::new(None);
static GROUPS: Mutex<Option<HashMap<u32, String>>> = Mutex::new(None);

fn cached(
    cache: &Mutex<Option<HashMap<u32, String>>>,
    id: u32,
    lookup: fn(u32) -> Option<String>,
) -> String {
    let mut guard = cache.lock().unwrap_or_else(|p| p.into_inner());
    guard
        .get_or_insert_with(HashMap::new)
        .entry(id)
        .or_insert_with(|| lookup(id).unwrap_or_default())
        .clone()
}

/// The name of `uid`; `None` when no such user exists or NSS fails (a
/// missing name is recorded as empty, never fatal to a backup).
fn lookup_user(uid: u32) -> Option<String> {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(user) => user.map(|u| u.name),
        Err(e) => {
            tracing::debug!("looking up uid {uid}: {e}");
            None
        }
    }
}

/// The name of `gid`, as [`lookup_user`] for groups.
fn lookup_group(gid: u32) -> Option<String> {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(group) => group.map(|g| g.name),
        Err(e) => {
            tracing::debug!("looking up gid {gid}: {e}");
            None
        }
    }
}

/// The user name of `uid`, or `""` when unknown.
pub fn user_name(uid: u32) -> String {
    cached(&USERS, uid, lookup_user)
}

/// The group name of `gid`, or `""` when unknown.
pub fn group_name(gid: u32) -> String {
    cached(&GROUPS, gid, lookup_group)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Far above any id a test machine hands out, below the reserved -1.
    const NOBODY_HAS: u32 = 4_000_000_000;

    #[test]
    fn root_and_the_current_user_resolve() {
        assert_eq!(lookup_user(0).as_deref(), Some("root"));
        assert_eq!(user_name(0), "root");
        let gid0 = lookup_group(0).expect("gid 0 has a name");
        assert!(!gid0.is_empty());
        let me = nix::unistd::getuid().as_raw();
        let name = lookup_user(me).expect("the current user has a name");
        assert_eq!(user_name(me), name);
        let group = nix::unistd::getgid().as_raw();
        assert_eq!(group_name(group), lookup_group(group).expect("own group"));
    }

    #[test]
    fn unknown_ids_have_no_name() {
        assert_eq!(lookup_user(NOBODY_HAS), None);
        assert_eq!(lookup_group(NOBODY_HAS), None);
        assert_eq!(user_name(NOBODY_HAS), "");
        assert_eq!(group_name(NOBODY_HAS), "");
    }

    #[test]
    fn a_group_larger_than_the_old_fixed_buffer_keeps_its_name() {
        // The old lookup had 4096 bytes for the name and every member; the
        // largest group on this machine shows whether the growing buffer is
        // used. Where no group is that large the check is vacuous.
        let Ok(file) = std::fs::read_to_string("/etc/group") else {
            return;
        };
        for line in file.lines().filter(|l| l.len() > 4096) {
            let mut fields = line.split(':');
            let (Some(name), Some(gid)) = (fields.next(), fields.nth(1)) else {
                continue;
            };
            let Ok(gid) = gid.parse::<u32>() else {
                continue;
            };
            assert_eq!(lookup_group(gid).as_deref(), Some(name));
        }
    }
}
