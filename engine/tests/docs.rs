//! The documents a newcomer reads, against the code.
//!
//! - FORMAT.md: the object kinds of §2, the compression levels of §3.2, the
//!   AAD strings of §3.3, the size limits of §7.4 and the versions of §9 must
//!   be the constants the code uses.
//! - No whole-object read in the engine takes whatever size a provider
//!   reports: every one is bounded (`get_bounded`).
//! - ARCHITECTURE.md: its code map names every source file of the engine,
//!   backends and cli crates, and every path it names exists.
//!
//! A change to either side that forgets the other fails here.

use std::collections::BTreeMap;

use lifeboat_engine::format::config::{CONFIG_AAD, FORMAT_VERSION};
use lifeboat_engine::format::crypto::BLOB_AAD_PREFIX;
use lifeboat_engine::format::crypto::{padme, SEAL_OVERHEAD};
use lifeboat_engine::format::deletion::DeletionRecord;
use lifeboat_engine::format::ids::{ObjectKind, CONFIG_KEY, MAX_CONFIG_LEN};
use lifeboat_engine::format::index::IndexFile;
use lifeboat_engine::format::keys::{
    HEADER_LEN, INFO_AAD, KEY_AAD, KEY_FILE_VERSION, SEALED_KEYS_LEN,
};
use lifeboat_engine::format::lock::LockFile;
use lifeboat_engine::format::pack::{
    HEADER_AAD, HEADER_COMPRESSION, PACK_HEADER_ROOM, PACK_HEADER_VERSION,
};
use lifeboat_engine::format::tree::TREE_VERSION;
use lifeboat_engine::{RepoFile, RepoParams, SealedFile, Snapshot};

/// The workspace root.
fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_path_buf()
}

fn format_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/FORMAT.md");
    std::fs::read_to_string(path).expect("engine/FORMAT.md is readable")
}

/// The text of the section whose heading starts with `heading`, up to the
/// next heading of the same or a higher level.
fn section(doc: &str, heading: &str) -> String {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut out = String::new();
    let mut inside = false;
    for line in doc.lines() {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && line[hashes..].starts_with(' ') {
            if inside && hashes <= level {
                break;
            }
            if line.starts_with(heading) {
                inside = true;
                continue;
            }
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "FORMAT.md has no section {heading:?}");
    out
}

/// The rows of every table in `text`: cells trimmed, header and rule rows
/// left out.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut header_seen = false;
    for line in text.lines().map(str::trim) {
        if !line.starts_with('|') {
            header_seen = false;
            continue;
        }
        // Escaped bars (`\|`) are part of a cell, not separators.
        let cells: Vec<String> = line
            .replace("\\|", "\u{1}")
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().replace('\u{1}', "|"))
            .collect();
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        if !header_seen {
            header_seen = true;
            continue;
        }
        rows.push(cells);
    }
    rows
}

/// The first `"…"` literal of a cell.
fn quoted(cell: &str) -> &str {
    let start = cell.find('"').expect("a quoted AAD") + 1;
    let len = cell[start..].find('"').expect("a closing quote");
    &cell[start..start + len]
}

#[test]
fn object_kinds_match_the_destination_layout() {
    let layout = section(&format_md(), "## 2.");
    let mut documented: Vec<String> = layout
        .lines()
        .filter_map(|l| l.split_once("── ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| !name.starts_with("quarantine"))
        .map(|name| match name.find('/') {
            Some(i) => name[..=i].to_string(),
            None => name.to_string(),
        })
        .collect();
    documented.sort();
    let mut code: Vec<String> = ObjectKind::ALL
        .iter()
        .map(|k| k.prefix().to_string())
        .chain([CONFIG_KEY.to_string()])
        .collect();
    code.sort();
    assert_eq!(
        documented, code,
        "§2 lists other object kinds than ObjectKind"
    );
    let glossary = section(&format_md(), "## 1.");
    let count = ["Six", "Seven", "Eight", "Nine"]
        .iter()
        .position(|n| glossary.contains(&format!("{n} kinds")))
        .map(|i| i + 6)
        .expect("the glossary counts the object kinds");
    assert_eq!(count, code.len(), "the glossary's count of object kinds");
}

#[test]
fn aad_table_matches_the_code() {
    let rows = table_rows(&section(&format_md(), "### 3.3"));
    let code: BTreeMap<&str, (&[u8], usize)> = BTreeMap::from([
        ("blob", (&BLOB_AAD_PREFIX[..], 1 + 32)),
        ("key file `sealed_keys`", (KEY_AAD, 32 + HEADER_LEN)),
        (
            "key file `sealed_info`",
            (INFO_AAD, 32 + HEADER_LEN + SEALED_KEYS_LEN),
        ),
        ("config body", (CONFIG_AAD, 44)),
        ("pack header", (HEADER_AAD, 0)),
        ("index file", (IndexFile::AAD, 0)),
        ("snapshot", (Snapshot::AAD, 0)),
        ("lock", (LockFile::AAD, 0)),
        ("deletion record", (DeletionRecord::AAD, 0)),
    ]);
    let documented: BTreeMap<&str, (&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), (quoted(&r[1]), r[2].as_str())))
        .collect();
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        code.keys().collect::<Vec<_>>(),
        "§3.3 lists other sealed things than the code seals"
    );
    for (thing, (prefix, suffix_len)) in &code {
        let (aad, len) = documented[thing];
        assert_eq!(aad.as_bytes(), *prefix, "AAD of {thing}");
        assert_eq!(
            len,
            (prefix.len() + suffix_len).to_string(),
            "AAD length of {thing}"
        );
    }
}

#[test]
fn compression_table_matches_the_code() {
    let rows = table_rows(&section(&format_md(), "### 3.2"));
    let level = |cell: &str| match cell {
        "never" => None,
        n => Some(n.parse::<i32>().expect("a zstd level or `never`")),
    };
    let documented: BTreeMap<&str, &str> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    let code = [
        ("pack header", HEADER_COMPRESSION),
        ("index file", IndexFile::COMPRESSION),
        ("snapshot", Snapshot::COMPRESSION),
        ("deletion record", DeletionRecord::COMPRESSION),
        ("lock", LockFile::COMPRESSION),
        // Sealed without compression by `seal_with` and `seal_body`.
        ("key file `sealed_keys`", None),
        ("key file `sealed_info`", None),
        ("config body", None),
    ];
    for (object, compression) in code {
        let cell = documented
            .get(object)
            .unwrap_or_else(|| panic!("§3.2 does not list {object}"));
        assert_eq!(level(cell), compression, "zstd level of {object}");
    }
    assert_eq!(
        documented.len(),
        code.len() + 1,
        "§3.2 lists objects the code does not seal (besides blobs)"
    );
}

/// The numbers in `cell`, in order (digits with `,` separators allowed).
fn numbers(cell: &str) -> Vec<u64> {
    cell.split(|c: char| !c.is_ascii_digit() && c != ',')
        .map(|n| n.replace(',', ""))
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().expect("a number"))
        .collect()
}

#[test]
fn size_limits_match_the_code() {
    let rows = table_rows(&section(&format_md(), "### 7.4"));
    let documented: BTreeMap<&str, &str> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    let params = RepoParams::default();
    let code = [
        ("`config`", MAX_CONFIG_LEN),
        ("key file", ObjectKind::Key.max_size(&params)),
        ("lock", ObjectKind::Lock.max_size(&params)),
        ("deletion record", ObjectKind::Deletion.max_size(&params)),
        ("index file", ObjectKind::Index.max_size(&params)),
        ("snapshot", ObjectKind::Snapshot.max_size(&params)),
    ];
    for (object, max) in code {
        let cell = documented
            .get(object)
            .unwrap_or_else(|| panic!("§7.4 does not list {object}"));
        let shown = numbers(cell);
        assert_eq!(shown.first(), Some(&max), "§7.4's limit of {object}");
        // The unit in brackets says the same.
        let unit = if max >= 1 << 20 {
            format!("({} MiB)", max >> 20)
        } else {
            format!("({} KiB)", max >> 10)
        };
        assert!(cell.ends_with(&unit), "§7.4's limit of {object}: {cell}");
    }
    // The pack's limit is a formula of the repository's parameters.
    let pack = documented.get("pack").expect("§7.4 lists packs");
    assert_eq!(
        *pack,
        format!(
            "max(`pack_size`, `padme(chunk_max` + {}`)`) + {PACK_HEADER_ROOM}",
            SEAL_OVERHEAD + 4
        ),
        "§7.4's pack limit"
    );
    for (pack_size, chunk_max) in [(16 << 20, 2 << 20), (1 << 20, 16 << 20), (1 << 30, 1024)] {
        let params = RepoParams {
            pack_size,
            chunk_max,
            ..params
        };
        let formula = u64::from(pack_size)
            .max(padme(u64::from(chunk_max) + SEAL_OVERHEAD as u64 + 4))
            + PACK_HEADER_ROOM;
        assert_eq!(ObjectKind::Pack.max_size(&params), formula);
    }
    assert_eq!(
        documented.len(),
        code.len() + 1,
        "§7.4 lists other objects than the code limits"
    );
}

#[test]
fn versions_match_the_code() {
    let versioning = section(&format_md(), "## 9.");
    let documented: BTreeMap<String, String> = table_rows(&versioning)
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let code = BTreeMap::from([
        ("PackHeader".to_string(), PACK_HEADER_VERSION),
        ("IndexFile".to_string(), IndexFile::VERSION),
        ("Tree".to_string(), TREE_VERSION),
        ("Snapshot".to_string(), Snapshot::VERSION),
        ("LockFile".to_string(), LockFile::VERSION),
        ("DeletionRecord".to_string(), DeletionRecord::VERSION),
    ]);
    let code: BTreeMap<String, String> =
        code.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    assert_eq!(documented, code, "§9's versions");
    assert!(
        versioning.contains(&format!("public u32 LE: **{FORMAT_VERSION}**")),
        "§9's repository format version"
    );
    assert!(
        versioning.contains(&format!(
            "`KeyFile.version` (public,\n  **{KEY_FILE_VERSION}**"
        )),
        "§9's key file version"
    );
}

/// Every `.rs` file below `dir`, relative to the workspace root, except
/// test modules (`tests.rs`, `*_tests.rs`).
fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("a source directory")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            let relative = path.strip_prefix(root()).expect("below the root");
            out.push(relative.to_string_lossy().into_owned());
        }
    }
}

/// The paths ARCHITECTURE.md names in backquotes (`engine/src/…`,
/// `backends/src/s3/`, `cli/src/commands/*.rs`).
fn architecture_paths(doc: &str) -> Vec<String> {
    let prefixes = [
        "engine/",
        "backends/",
        "cli/",
        "tests/",
        "benches/",
        "fuzz/",
        "scripts/",
    ];
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| prefixes.iter().any(|p| s.starts_with(p)) && !s.contains(' '))
        .map(str::to_string)
        .collect()
}

#[test]
fn architecture_names_every_source_file_and_nothing_else() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md is readable");
    let named = architecture_paths(&doc);
    for path in &named {
        // A glob names its directory.
        let on_disk = match path.find('*') {
            Some(star) => root().join(&path[..path[..star].rfind('/').map_or(0, |i| i + 1)]),
            None => root().join(path),
        };
        assert!(
            on_disk.exists(),
            "ARCHITECTURE.md names {path}, which does not exist"
        );
    }
    // Short paths in the invariants table are relative to engine/src.
    for short in doc.split('`').skip(1).step_by(2).filter(|s| {
        ["ops/", "repo/", "format/"]
            .iter()
            .any(|d| s.starts_with(d))
            && !s.contains(' ')
            && !named.iter().any(|n| n == s)
    }) {
        assert!(
            root().join("engine/src").join(short).exists(),
            "ARCHITECTURE.md names {short}, which is not in engine/src"
        );
    }
    let mut files = Vec::new();
    for krate in ["engine/src", "backends/src", "cli/src"] {
        sources(&root().join(krate), &mut files);
    }
    // Only the code map's rows cover files (a heading naming `engine/`
    // covers nothing).
    let rows: String = doc
        .lines()
        .filter(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let mapped = architecture_paths(&rows);
    for file in files {
        let covered = mapped.iter().any(|n| {
            *n == file
                || (n.ends_with('/') && file.starts_with(n.as_str()))
                || n.strip_suffix("*.rs").is_some_and(|dir| {
                    file.strip_prefix(dir)
                        .is_some_and(|rest| !rest.contains('/'))
                })
        });
        assert!(covered, "ARCHITECTURE.md's code map does not name {file}");
    }
}

/// The code lines (comments left out) of every source file below `dir`.
fn code_lines(dir: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    sources(&root().join(dir), &mut files);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(root().join(&file)).expect("a readable source");
        for line in text.lines() {
            let code = line.trim_start();
            if !code.starts_with("//") {
                out.push((file.clone(), code.to_string()));
            }
        }
    }
    out
}

/// Every whole-object read of the engine is bounded: none asks a backend
/// for a whole object (`get(key, None)`), which would take whatever size the
/// provider reports.
#[test]
fn whole_reads_in_the_engine_are_bounded() {
    for (file, line) in code_lines("engine/src") {
        assert!(
            !(line.contains(".get(") && line.contains(", None)")),
            "{file} reads a whole object without a bound (use get_bounded): {line}"
        );
    }
}

#[test]
fn layers_only_depend_downwards() {
    let rules: [(&str, &[&str]); 3] = [
        // Formats turn bytes into values: no I/O, no repository, no command.
        (
            "engine/src/format",
            &["crate::repo", "crate::ops", "tokio", "lifeboat_backends"],
        ),
        // Repository access serves the operations, never the reverse.
        ("engine/src/repo", &["crate::ops"]),
        // Storage knows nothing of the repository.
        ("backends/src", &["lifeboat_engine"]),
    ];
    for (dir, forbidden) in rules {
        for (file, line) in code_lines(dir) {
            for word in forbidden {
                assert!(
                    !line.contains(word),
                    "{file} uses {word}, which ARCHITECTURE.md forbids there: {line}"
                );
            }
        }
    }
}
