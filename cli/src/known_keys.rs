//! The key files that opened a repository on this machine, most recent
//! first (`<state dir>/known-keys`, one hex name per line). `open` tries
//! them before any other key file, so a key file a provider planted with
//! the costliest accepted KDF parameters is never derived before the
//! user's own. Key file names are hashes, unique across repositories, so
//! one list serves them all. Failures to read or write are ignored: the
//! list only orders tries.

use std::io::Write;
use std::path::{Path, PathBuf};

use lifeboat_engine::format::ids::KeyId;

/// How many names the list keeps.
const KEEP: usize = 32;

fn file() -> Option<PathBuf> {
    crate::health::base_dir().map(|dir| dir.join("known-keys"))
}

/// The remembered key files, most recent first.
pub fn load() -> Vec<KeyId> {
    file().map(|path| load_from(&path)).unwrap_or_default()
}

/// Puts `key` first in the list.
pub fn remember(key: KeyId) {
    if let Some(path) = file() {
        if let Err(e) = remember_in(&path, key) {
            tracing::debug!("cannot update {}: {e}", path.display());
        }
    }
}

fn load_from(path: &Path) -> Vec<KeyId> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .take(KEEP)
        .collect()
}

fn remember_in(path: &Path, key: KeyId) -> std::io::Result<()> {
    let mut keys = load_from(path);
    if keys.first() == Some(&key) {
        return Ok(());
    }
    keys.retain(|k| *k != key);
    keys.insert(0, key);
    keys.truncate(KEEP);
    let dir = path.parent().unwrap_or(Path::new("."));
    lifeboat_backends::private::create_dir_all(dir)?;
    // A temporary file renamed over the list: a reader sees the old list
    // or the new one. Concurrent writers may lose an entry, which costs a
    // later open one extra try at most.
    let tmp = dir.join(format!("known-keys.{}.tmp", std::process::id()));
    let written = (|| {
        let mut out = lifeboat_backends::private::create_file(&tmp)?;
        for k in &keys {
            writeln!(out, "{}", k.to_hex())?;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_recent_first_without_repeats_and_bounded() {
        let dir = std::env::temp_dir().join(format!(
            "lifeboat-known-keys-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let path = dir.join("known-keys");
        assert!(load_from(&path).is_empty());
        let key = |n: u8| KeyId([n; 32]);
        for n in 0..40 {
            remember_in(&path, key(n % 35)).expect("write");
        }
        remember_in(&path, key(3)).expect("write");
        let keys = load_from(&path);
        assert_eq!(keys.len(), KEEP);
        assert_eq!(keys[0], key(3));
        assert_eq!(keys[1], key(4));
        assert_eq!(keys.iter().filter(|k| **k == key(3)).count(), 1);
        // Junk lines are skipped, not fatal.
        std::fs::write(&path, format!("junk\n{}\n", key(7).to_hex())).expect("write");
        assert_eq!(load_from(&path), vec![key(7)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
