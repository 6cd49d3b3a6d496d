//! Test trees: generation, comparison of a source with its restored copy, and
//! fingerprints of whole directories.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;

const MIB: usize = 1 << 20;

/// A seeded xorshift64* generator: fast, reproducible, not cryptographic.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        XorShift(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// `len` incompressible pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    XorShift::new(seed).fill(&mut v);
    v
}

/// Fills `buf` so that it compresses to roughly half: of every three 4 KiB
/// pages, one is random, one is text-like (16 letters) and one a repeated phrase.
fn fill_partly_compressible(rng: &mut XorShift, buf: &mut [u8], first_page: usize) {
    rng.fill(buf);
    for (i, page) in buf.chunks_mut(4096).enumerate() {
        match (first_page + i) % 3 {
            0 => {}
            1 => page.iter_mut().for_each(|b| *b = b'a' + (*b & 0x0f)),
            _ => {
                let phrase = b"lifeboat keeps your files afloat; ";
                let start = page[0] as usize;
                for (j, b) in page.iter_mut().enumerate() {
                    *b = phrase[(start + j) % phrase.len()];
                }
            }
        }
    }
}

/// Writes a `len`-byte file of seeded content in 1 MiB blocks: incompressible,
/// or (with `compressible`) compressing to about half.
pub fn write_generated(path: &Path, len: u64, seed: u64, compressible: bool) {
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
    let mut rng = XorShift::new(seed);
    let mut block = vec![0u8; MIB];
    let mut left = len;
    let mut page = 0;
    while left > 0 {
        let n = left.min(MIB as u64) as usize;
        if compressible {
            fill_partly_compressible(&mut rng, &mut block[..n], page);
        } else {
            rng.fill(&mut block[..n]);
        }
        page += n.div_ceil(4096);
        file.write_all(&block[..n]).expect("write generated file");
        left -= n as u64;
    }
    file.sync_all().expect("sync generated file");
}

/// A small tree of text files: `f0.txt`…`f4.txt` and `sub/g.txt`.
pub fn text_tree(root: &Path) {
    for i in 0..5 {
        write(
            &root.join(format!("f{i}.txt")),
            format!("file {i}\n").as_bytes(),
        );
    }
    write(&root.join("sub/g.txt"), b"below");
}

/// Writes `data` to `path`, creating parent directories.
pub fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// Sets permission bits (`chmod`).
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
}

/// Changes the owner without following symlinks (`lchown`).
pub fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {path:?}: {e}"));
}

/// `lchown -R`.
pub fn chown_recursive(root: &Path, uid: u32, gid: u32) {
    for entry in walkdir::WalkDir::new(root).follow_root_links(false) {
        lchown(entry.expect("walk").path(), uid, gid);
    }
}

/// Creates a named pipe.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(
        rc,
        0,
        "mkfifo {path:?}: {}",
        std::io::Error::last_os_error()
    );
}

/// Sets access and modification time by path, of the link itself for symlinks.
///
/// `utimensat(AT_SYMLINK_NOFOLLOW)` works on every file type without opening
/// it (`filetime::set_file_times` opens the file, which blocks on a FIFO).
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t)
        .unwrap_or_else(|e| panic!("set times of {path:?}: {e}"));
}

/// Gives every entry under `root` (root included) a distinct fixed past
/// modification time with nanoseconds, children before their directories.
pub fn fix_times(root: &Path) {
    let entries: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .follow_root_links(false)
        .contents_first(true)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.expect("walk").into_path())
        .collect();
    for (i, path) in entries.iter().enumerate() {
        let i = i as i64;
        set_mtime(
            path,
            1_300_000_000 + i * 3_607,
            ((i * 7_919_113) % 999_999_999) as u32 + 1,
        );
    }
}

/// Where restore recreates `source` below `target`.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap_or(source))
}

/// Bytes actually allocated on disk for `path`.
pub fn allocated_bytes(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").blocks() * 512
}

/// XORs the byte at `offset` of `path` with 0xff, in place.
pub fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path:?}: {e}"));
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset).expect("read byte");
    b[0] ^= 0xff;
    file.write_all_at(&b, offset).expect("write byte");
}

/// Every regular file under `root`.
pub fn regular_files(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .follow_root_links(false)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

/// A fingerprint of every entry under `root`: relative path → kind and content hash.
pub fn digest_dir(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_root_links(false)
        .sort_by_file_name()
    {
        let entry = entry.expect("walk");
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("below root")
            .to_path_buf();
        let ft = entry.file_type();
        let value = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("link:{:?}", fs::read_link(entry.path()).expect("readlink"))
        } else if ft.is_file() {
            let mut hasher = blake3::Hasher::new();
            let mut file = File::open(entry.path()).expect("open");
            std::io::copy(&mut file, &mut hasher).expect("hash");
            format!("file:{}", hasher.finalize().to_hex())
        } else {
            "special".to_string()
        };
        out.insert(rel, value);
    }
    out
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).expect("read") {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// True when the two files hold the same bytes.
pub fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        File::open(a).expect("open a"),
        File::open(b).expect("open b"),
    );
    let (mut ba, mut bb) = (vec![0u8; MIB], vec![0u8; MIB]);
    loop {
        let (na, nb) = (read_full(&mut fa, &mut ba), read_full(&mut fb, &mut bb));
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn scan(root: &Path) -> BTreeMap<PathBuf, fs::Metadata> {
    walkdir::WalkDir::new(root)
        .follow_root_links(false)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk");
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("below root")
                .to_path_buf();
            (rel, e.metadata().expect("lstat"))
        })
        .collect()
}

/// `root/rel`, or `root` itself (without a trailing `/`) for the empty `rel`.
fn below(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn kind(meta: &fs::Metadata) -> &'static str {
    let ft = meta.file_type();
    match () {
        _ if ft.is_symlink() => "symlink",
        _ if ft.is_dir() => "dir",
        _ if ft.is_file() => "file",
        _ if ft.is_fifo() => "fifo",
        _ if ft.is_socket() => "socket",
        _ if ft.is_block_device() => "block device",
        _ if ft.is_char_device() => "char device",
        _ => "unknown",
    }
}

/// Compares `source` with its restored copy `copy`: the set of names, and for
/// each entry its type, content, symlink target, permission bits, owner (when
/// root), modification time to the nanosecond, and which files share an inode.
/// Returns one line per difference.
pub fn compare_trees(source: &Path, copy: &Path) -> Vec<String> {
    let (a, b) = (scan(source), scan(copy));
    let mut diffs = Vec::new();
    let names_a: BTreeSet<&PathBuf> = a.keys().collect();
    let names_b: BTreeSet<&PathBuf> = b.keys().collect();
    for missing in names_a.difference(&names_b) {
        diffs.push(format!("{missing:?}: missing from the restored tree"));
    }
    for extra in names_b.difference(&names_a) {
        diffs.push(format!(
            "{extra:?}: in the restored tree but not the source"
        ));
    }
    let check_owner = crate::is_root();
    let mut inode_map: HashMap<u64, u64> = HashMap::new();
    let mut inode_back: HashMap<u64, u64> = HashMap::new();
    for (rel, ma) in &a {
        let Some(mb) = b.get(rel) else { continue };
        let (pa, pb) = (below(source, rel), below(copy, rel));
        let mut diff = |what: String| diffs.push(format!("{rel:?}: {what}"));
        if kind(ma) != kind(mb) {
            diff(format!("type {} restored as {}", kind(ma), kind(mb)));
            continue;
        }
        if !ma.file_type().is_symlink() && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            diff(format!(
                "mode {:o} restored as {:o}",
                ma.mode() & 0o7777,
                mb.mode() & 0o7777
            ));
        }
        if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
            diff(format!(
                "mtime {}.{:09} restored as {}.{:09}",
                ma.mtime(),
                ma.mtime_nsec(),
                mb.mtime(),
                mb.mtime_nsec()
            ));
        }
        if check_owner && (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
            diff(format!(
                "owner {}:{} restored as {}:{}",
                ma.uid(),
                ma.gid(),
                mb.uid(),
                mb.gid()
            ));
        }
        if ma.file_type().is_symlink() {
            let (ta, tb) = (fs::read_link(&pa), fs::read_link(&pb));
            if ta.as_ref().ok() != tb.as_ref().ok() {
                diff(format!("symlink target {ta:?} restored as {tb:?}"));
            }
        }
        if ma.is_file() {
            if ma.len() != mb.len() {
                diff(format!("size {} restored as {}", ma.len(), mb.len()));
            } else if !same_content(&pa, &pb) {
                diff("content differs".into());
            }
            // Hard links: the source inode ↔ restored inode relation must be one to one.
            let restored_ino = *inode_map.entry(ma.ino()).or_insert(mb.ino());
            let source_ino = *inode_back.entry(mb.ino()).or_insert(ma.ino());
            if restored_ino != mb.ino() || source_ino != ma.ino() {
                diff(
                    "hard links differ: names sharing an inode in one tree do not in the other"
                        .into(),
                );
            }
            if ma.nlink() != mb.nlink() {
                diff(format!(
                    "link count {} restored as {}",
                    ma.nlink(),
                    mb.nlink()
                ));
            }
        }
    }
    diffs
}

/// What [`build_tree`] puts in the tree.
#[derive(Debug, Clone)]
pub struct TreeOptions {
    /// Size of one large partly compressible file (`big.bin`), if any.
    pub big_file: Option<u64>,
    /// Number of small files.
    pub small_files: usize,
    /// Apparent size of the sparse file (data only in its last 4 KiB).
    pub sparse_size: u64,
    /// Levels of nested directories.
    pub depth: usize,
    /// Whether to include a named pipe (`special/fifo`).
    pub fifo: bool,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            big_file: None,
            small_files: 200,
            sparse_size: 64 << 20,
            depth: 60,
            fifo: true,
        }
    }
}

/// Notable entries of a generated tree.
#[derive(Debug, Clone)]
pub struct BuiltTree {
    /// The sparse file.
    pub sparse: PathBuf,
    /// The large file, if any.
    pub big: Option<PathBuf>,
    /// Number of regular files (hard links counted once per name).
    pub files: usize,
}

fn name(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// Builds a tree under `root` (which must not exist) with every kind of entry a
/// backup must carry, then fixes every modification time in the past.
pub fn build_tree(root: &Path, opts: &TreeOptions) -> BuiltTree {
    fs::create_dir_all(root).expect("mkdir root");
    // Empty files and an empty directory.
    for i in 0..3 {
        write(&root.join(format!("empty/e{i}")), b"");
    }
    fs::create_dir_all(root.join("empty/empty-dir")).expect("mkdir");
    // One large file.
    let big = opts.big_file.map(|len| {
        let path = root.join("big.bin");
        write_generated(&path, len, 0xB16, true);
        path
    });
    // Many small files; every tenth has the same content (deduplicated within the run).
    for i in 0..opts.small_files {
        let len = (i * 37) % 3000;
        let seed = if i % 10 == 0 { 0 } else { i as u64 + 1 };
        write(
            &root.join(format!("small/d{:02}/f{i:04}", i % 20)),
            &random_bytes(len, seed),
        );
    }
    // Names that are not UTF-8, contain a newline, glob characters, or are 255 bytes long.
    let names = root.join("names");
    write(&names.join(name(b"caf\xe9-latin1.txt")), b"latin-1 name");
    write(
        &names.join(name(b"dir-\xff\xfe")).join("inside"),
        b"in a non-UTF-8 directory",
    );
    write(&names.join("line\nbreak.txt"), b"newline in the name");
    write(&names.join("spaces and *?[glob].txt"), b"glob characters");
    write(&names.join("-starts-with-dash"), b"dash");
    write(&names.join("x".repeat(255)), b"longest name");
    // Symlinks: relative, absolute, dangling, to a directory, with a non-UTF-8 target.
    let links = root.join("links");
    fs::create_dir_all(&links).expect("mkdir links");
    let symlink = |target: &OsStr, at: &str| {
        std::os::unix::fs::symlink(target, links.join(at)).expect("symlink");
    };
    symlink(OsStr::new("../empty/e0"), "relative");
    symlink(root.join("names").as_os_str(), "absolute");
    symlink(OsStr::new("does/not/exist"), "dangling");
    symlink(OsStr::new("../small"), "to-dir");
    symlink(name(b"\xff\xfe-not-utf8"), "binary-target");
    // Hard links: in one directory, across directories, and of an empty file.
    write(&root.join("hard/a"), &random_bytes(10_000, 77));
    fs::hard_link(root.join("hard/a"), root.join("hard/b")).expect("link");
    fs::hard_link(root.join("hard/a"), root.join("small/d00/c-link")).expect("link");
    write(&root.join("hard/empty1"), b"");
    fs::hard_link(root.join("hard/empty1"), root.join("hard/empty2")).expect("link");
    // A sparse file: a hole, then 4 KiB of data at the end.
    let sparse = root.join("sparse.img");
    {
        let f = File::create(&sparse).expect("create sparse");
        f.set_len(opts.sparse_size).expect("set_len");
        f.write_all_at(&random_bytes(4096, 5), opts.sparse_size - 4096)
            .expect("write tail");
    }
    // Deep nesting.
    let mut deep = root.join("deep");
    for level in 0..opts.depth {
        deep.push(format!("level{level:02}"));
    }
    write(&deep.join("bottom.txt"), b"at the bottom");
    // A named pipe.
    fs::create_dir_all(root.join("special")).expect("mkdir");
    if opts.fifo {
        mkfifo(&root.join("special/fifo"));
    }
    // Permissions and owners.
    let perms = root.join("perms");
    for (file, mode) in [
        ("f640", 0o640),
        ("f755", 0o755),
        ("f600", 0o600),
        ("f400", 0o400),
    ] {
        write(&perms.join(file), file.as_bytes());
        chmod(&perms.join(file), mode);
    }
    for (dir, mode) in [("d750", 0o750), ("setgid", 0o2775), ("sticky", 0o1777)] {
        write(&perms.join(dir).join("inside"), b"x");
        chmod(&perms.join(dir), mode);
    }
    if crate::is_root() {
        let owned = perms.join("owned-by-4242");
        write(&owned, b"someone else's");
        lchown(&owned, 4242, 4343);
        chmod(&owned, 0o4750);
        lchown(&links.join("relative"), 4242, 4343);
    }
    fix_times(root);
    BuiltTree {
        files: regular_files(root).len(),
        sparse,
        big,
    }
}

/// Asserts that `copy` (a restored tree) equals `source`, listing up to 60 differences.
#[track_caller]
pub fn assert_same_tree(source: &Path, copy: &Path) {
    let diffs = compare_trees(source, copy);
    assert!(
        diffs.is_empty(),
        "{} differences between {source:?} and its restored copy {copy:?}:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Asserts that `root` and everything below it is readable by its owner
/// alone (no group or other permission bits), naming the first that is not.
pub fn assert_owner_only(root: &Path) {
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.expect("a walkable tree");
        let meta = entry.path().symlink_metadata().expect("metadata");
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "{} has mode {mode:o}: not owner-only",
            entry.path().display()
        );
    }
}
