//! User and group names for uids and gids, cached (lookups hit NSS).

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Mutex;

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

fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for the given lengths; result is checked before use.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r.
    Some(
        unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn lookup_group(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as for lookup_user.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: gr_name points into buf, NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The user name of `uid`, or `""` when unknown.
pub fn user_name(uid: u32) -> String {
    cached(&USERS, uid, lookup_user)
}

/// The group name of `gid`, or `""` when unknown.
pub fn group_name(gid: u32) -> String {
    cached(&GROUPS, gid, lookup_group)
}
