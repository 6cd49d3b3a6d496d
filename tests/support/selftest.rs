//! Tests of the helpers themselves: a comparison that sees no difference must
//! be able to see one.

use std::fs;
use std::path::Path;

use crate::tree::{self, TreeOptions};

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp -a");
    assert!(status.success(), "cp -a failed");
}

fn small() -> TreeOptions {
    TreeOptions {
        small_files: 20,
        depth: 4,
        sparse_size: 1 << 20,
        ..TreeOptions::default()
    }
}

#[test]
fn compare_trees_sees_each_kind_of_difference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (src, copy) = (dir.path().join("src"), dir.path().join("copy"));
    tree::build_tree(&src, &small());
    copy_tree(&src, &copy);
    assert_eq!(tree::compare_trees(&src, &copy), Vec::<String>::new());

    let expect = |what: &str, change: &dyn Fn(), undo: &dyn Fn()| {
        change();
        let diffs = tree::compare_trees(&src, &copy);
        assert!(
            diffs.iter().any(|d| d.contains(what)),
            "no {what:?} difference found: {diffs:?}"
        );
        undo();
        assert_eq!(
            tree::compare_trees(&src, &copy),
            Vec::<String>::new(),
            "after {what}"
        );
    };
    let f = copy.join("small/d03/f0003");
    let original = fs::read(&f).expect("read");
    let mtime = fs::symlink_metadata(&f).expect("stat");
    let restore_time = |p: &Path, m: &fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        tree::set_mtime(p, m.mtime(), m.mtime_nsec() as u32);
    };
    expect(
        "content differs",
        &|| {
            let mut changed = original.clone();
            changed[0] ^= 1;
            fs::write(&f, changed).expect("write");
            restore_time(&f, &mtime);
        },
        &|| {
            fs::write(&f, &original).expect("write");
            restore_time(&f, &mtime);
        },
    );
    expect(
        "mtime",
        &|| {
            use std::os::unix::fs::MetadataExt;
            tree::set_mtime(&f, mtime.mtime(), mtime.mtime_nsec() as u32 + 1);
        },
        &|| restore_time(&f, &mtime),
    );
    expect("mode", &|| tree::chmod(&f, 0o604), &|| {
        tree::chmod(&f, 0o644)
    });
    let link = copy.join("links/dangling");
    let link_meta = fs::symlink_metadata(&link).expect("lstat");
    let links_meta = fs::symlink_metadata(copy.join("links")).expect("lstat");
    expect(
        "symlink target",
        &|| {
            fs::remove_file(&link).expect("rm");
            std::os::unix::fs::symlink("elsewhere", &link).expect("symlink");
            restore_time(&link, &link_meta);
            restore_time(&copy.join("links"), &links_meta);
        },
        &|| {
            fs::remove_file(&link).expect("rm");
            std::os::unix::fs::symlink("does/not/exist", &link).expect("symlink");
            restore_time(&link, &link_meta);
            restore_time(&copy.join("links"), &links_meta);
        },
    );
    let b = copy.join("hard/b");
    let b_meta = fs::symlink_metadata(&b).expect("stat");
    let parent_meta = fs::symlink_metadata(copy.join("hard")).expect("stat");
    expect(
        "hard links",
        &|| {
            fs::remove_file(&b).expect("rm");
            fs::copy(copy.join("hard/a"), &b).expect("copy");
            restore_time(&b, &b_meta);
            restore_time(&copy.join("hard"), &parent_meta);
        },
        &|| {
            fs::remove_file(&b).expect("rm");
            fs::hard_link(copy.join("hard/a"), &b).expect("link");
            restore_time(&copy.join("hard"), &parent_meta);
        },
    );
    fs::remove_file(copy.join("names/-starts-with-dash")).expect("rm");
    let diffs = tree::compare_trees(&src, &copy);
    assert!(diffs.iter().any(|d| d.contains("missing")), "{diffs:?}");
}

#[test]
fn generated_content_is_reproducible_and_partly_compressible() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    tree::write_generated(&a, 3 << 20, 7, true);
    tree::write_generated(&b, 3 << 20, 7, true);
    assert!(tree::same_content(&a, &b));
    let bytes = fs::read(&a).expect("read");
    assert_eq!(bytes.len(), 3 << 20);
    let distinct: std::collections::HashSet<&[u8]> = bytes.chunks(4096).collect();
    assert!(
        distinct.len() > 500,
        "content repeats too much: {} distinct pages",
        distinct.len()
    );
    assert_ne!(tree::random_bytes(64, 1), tree::random_bytes(64, 2));
}
