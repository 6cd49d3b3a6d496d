//! `lifeboat ls`: list the files in a snapshot.

use std::path::PathBuf;

use anyhow::Result;
use lifeboat_engine::{Node, NodeKind};
use serde_json::json;

use crate::context::Context;

/// Arguments of `ls`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot: `latest`, an id, or a unique prefix of one (4+ hex digits).
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// Only this path in the snapshot and what is below it.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Long listing: type and mode, owner, size, modification time.
    #[arg(short, long)]
    pub long: bool,
}

/// The mode as `ls -l` shows it, setuid, setgid and sticky bits included
/// (`s`/`S` in the owner and group execute places, `t`/`T` in the other's).
fn mode_string(node: &Node) -> String {
    mode_text(node.type_char(), node.mode)
}

/// `drwxr-xr-x` from a type letter and permission bits.
pub fn mode_text(kind: char, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind);
    // (shift, special bit, its letter)
    for (shift, special, letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// What a source recorded about an item or a collection (FORMAT.md
/// §4.10), under readable names; `None` for a plain file.
fn source_json(node: &lifeboat_engine::Node) -> Option<serde_json::Value> {
    use lifeboat_engine::format::tags;
    let names = [
        (tags::ITEM_VERSION, "version"),
        (tags::ITEM_HREF, "href"),
        (tags::ITEM_FLAGS, "flags"),
        (tags::ITEM_DATE, "date"),
        (tags::COLLECTION_KIND, "kind"),
        (tags::COLLECTION_NAME, "displayname"),
        (tags::COLLECTION_DESCRIPTION, "description"),
        (tags::COLLECTION_COLOR, "color"),
        (tags::COLLECTION_COMPONENTS, "components"),
        (tags::COLLECTION_SYNC_STATE, "sync_state"),
        (tags::COLLECTION_HREF, "href"),
        (tags::COLLECTION_ATTRIBUTES, "attributes"),
        (tags::COLLECTION_DELIMITER, "delimiter"),
        (tags::ACCOUNT_URL, "url"),
    ];
    let mut map = serde_json::Map::new();
    for (tag, name) in names {
        if let Some(value) = node.extra.get(tag) {
            map.insert(name.into(), json!(String::from_utf8_lossy(value)));
        }
    }
    if node.extra.get(tags::ITEM_MALFORMED).is_some() {
        map.insert("malformed".into(), json!(true));
    }
    (!map.is_empty()).then_some(serde_json::Value::Object(map))
}

/// Runs `ls`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    let (_, snapshot) = repo.find_snapshot(&args.snapshot).await?;
    let index = repo.load_index().await?;
    // A source's items by its URL: `dav://host/…` is `/dav/host/…`.
    let start = match args.path.as_ref().and_then(|p| p.to_str()) {
        Some(text) => PathBuf::from(crate::sources::snapshot_pattern(text)),
        None => args.path.clone().unwrap_or_else(|| PathBuf::from("/")),
    };
    let (json, long) = (ctx.global.json, args.long);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    lifeboat_engine::ls::walk_snapshot(&repo, &index, &snapshot, &start, |path, node| {
        if json {
            let mut v = json!({
                "path": path.to_string_lossy(),
                "type": match node.kind { NodeKind::File { .. } => "file", NodeKind::Dir { .. } => "dir", NodeKind::Symlink { .. } => "symlink", NodeKind::Fifo => "fifo", NodeKind::Socket => "socket", NodeKind::BlockDevice { .. } => "blockdev", NodeKind::CharDevice { .. } => "chardev" },
                "size": node.size,
                "mode": node.mode,
                "uid": node.uid,
                "gid": node.gid,
                "user": node.user,
                "group": node.group,
                "mtime": node.mtime,
                "links": node.links,
            });
            if let NodeKind::Symlink { target } = &node.kind {
                v["target"] = json!(String::from_utf8_lossy(target));
            }
            if let Some(source) = source_json(node) {
                v["source"] = source;
            }
            println!("{v}");
        } else if long {
            let mtime = time::OffsetDateTime::from_unix_timestamp(node.mtime)
                .ok()
                .and_then(|t| t.format(&format).ok())
                .unwrap_or_default();
            let owner = if node.user.is_empty() { node.uid.to_string() } else { node.user.clone() };
            let group = if node.group.is_empty() { node.gid.to_string() } else { node.group.clone() };
            let link = match &node.kind {
                NodeKind::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
                _ => String::new(),
            };
            println!("{} {:>8} {:>8} {:>12} {} {}{link}", mode_string(node), owner, group, node.size, mtime, path.display());
        } else {
            use std::io::Write;
            use std::os::unix::ffi::OsStrExt;
            // Names are bytes: print them as they are, not lossily.
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(path.as_os_str().as_bytes()).and_then(|()| out.write_all(b"\n"));
        }
    })
    .await?;
    Ok(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::mode_text;

    #[test]
    fn modes_read_as_ls_shows_them() {
        assert_eq!(mode_text('d', 0o1777), "drwxrwxrwt");
        assert_eq!(mode_text('-', 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_text('-', 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_text('d', 0o1700), "drwx-----T");
        assert_eq!(mode_text('-', 0o644), "-rw-r--r--");
    }
}
