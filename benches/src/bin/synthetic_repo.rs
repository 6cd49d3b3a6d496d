//! Writes a synthetic repository with many blobs, for the prune benchmark:
//!
//!   synthetic-repo DIR BLOBS        (password from LIFEBOAT_PASSWORD)
//!
//! BLOBS tiny files (64 random bytes each, one blob apiece) in directories of
//! 1000, as two snapshots: the first holds every file, the second only the
//! even-numbered directories. Forgetting the first leaves half the blobs
//! unused, which prune must find with bounded memory. Prints the first
//! snapshot's id.

use lifeboat_engine::format::crypto::blob_aad;
use lifeboat_engine::format::ids::ObjectKind;
use lifeboat_engine::format::index::IndexFile;
use lifeboat_engine::format::pack::{BlobType, PackWriter};
use lifeboat_engine::format::tree::{Node, NodeKind, Tree};
use lifeboat_engine::RepoFile;
use lifeboat_engine::{BlobId, DestinationSet, KdfParams, RepoParams, Repository, Snapshot};

const PER_DIR: usize = 1000;
const INDEX_FILE_BLOBS: usize = 100_000;

struct Out {
    repo: Repository,
    data: PackWriter,
    tree: PackWriter,
    index: IndexFile,
}

impl Out {
    async fn blob(&mut self, blob_type: BlobType, plain: &[u8]) -> BlobId {
        let keys = self.repo.keys().clone();
        let id = keys.blob_id(plain);
        let mut sealed = Vec::new();
        keys.seal_blob(
            &blob_aad(blob_type.as_u8(), &id),
            plain,
            Some(3),
            &mut sealed,
        );
        let limit = self.repo.params().pack_size as usize;
        let writer = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        if writer.is_full_for(sealed.len(), limit) {
            self.flush(blob_type).await;
        }
        let writer = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        writer.add(blob_type, id, &sealed, plain.len() as u32);
        id
    }

    async fn flush(&mut self, blob_type: BlobType) {
        let writer = match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        let pack = std::mem::take(writer);
        if pack.is_empty() {
            return;
        }
        let done = pack.finish(self.repo.keys());
        self.repo
            .destinations()
            .put_content(&ObjectKind::Pack.key(&done.id.to_hex()), done.bytes)
            .await
            .expect("write pack");
        self.index.add_pack(done.id, &done.entries);
        if self.index.blob_count() >= INDEX_FILE_BLOBS {
            let full = std::mem::take(&mut self.index);
            self.repo.save_index(&full).await.expect("write index");
        }
    }
}

fn node(name: String, kind: NodeKind, size: u64) -> Node {
    Node {
        name: name.into_bytes(),
        kind,
        size,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        user: "me".into(),
        group: "me".into(),
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        ctime: 1_700_000_000,
        ctime_nsec: 0,
        inode: 0,
        device: 0,
        links: 1,
        extra: Default::default(),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(count)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: synthetic-repo DIR BLOBS  (password from LIFEBOAT_PASSWORD)");
        std::process::exit(2);
    };
    let password = std::env::var("LIFEBOAT_PASSWORD").expect("LIFEBOAT_PASSWORD");
    let url = lifeboat_backends::DestinationUrl::parse(dir).expect("a directory");
    let backend = url.open("synthetic").expect("open the directory");
    let dests = DestinationSet::new(vec![backend]).expect("one destination");
    let repo = Repository::init(
        dests,
        password.as_bytes(),
        RepoParams::default(),
        KdfParams::insecure_for_tests(),
    )
    .await
    .expect("init");
    let mut out = Out {
        repo: repo.clone(),
        data: PackWriter::default(),
        tree: PackWriter::default(),
        index: IndexFile::new(),
    };
    let mut dirs: Vec<(usize, BlobId)> = Vec::new();
    let mut rng = rand::thread_rng();
    for d in 0..count.div_ceil(PER_DIR) {
        let mut files = Vec::with_capacity(PER_DIR);
        for f in 0..PER_DIR.min(count - d * PER_DIR) {
            let mut content = [0u8; 64];
            rand::RngCore::fill_bytes(&mut rng, &mut content);
            let id = out.blob(BlobType::Data, &content).await;
            files.push(node(
                format!("file-{f:04}"),
                NodeKind::File { content: vec![id] },
                64,
            ));
        }
        let tree = out.blob(BlobType::Tree, &Tree::new(files).encode()).await;
        dirs.push((d, tree));
    }
    let mut roots = Vec::new();
    for keep in [|_: usize| true, |d: usize| d.is_multiple_of(2)] {
        let entries: Vec<Node> = dirs
            .iter()
            .filter(|(d, _)| keep(*d))
            .map(|(d, t)| node(format!("dir-{d:05}"), NodeKind::Dir { subtree: *t }, 0))
            .collect();
        let data = out.blob(BlobType::Tree, &Tree::new(entries).encode()).await;
        let root = out
            .blob(
                BlobType::Tree,
                &Tree::new(vec![node(
                    "data".into(),
                    NodeKind::Dir { subtree: data },
                    0,
                )])
                .encode(),
            )
            .await;
        roots.push(root);
    }
    out.flush(BlobType::Data).await;
    out.flush(BlobType::Tree).await;
    let last = std::mem::take(&mut out.index);
    if !last.packs.is_empty() {
        repo.save_index(&last).await.expect("write index");
    }
    let mut first = None;
    for (i, root) in roots.into_iter().enumerate() {
        let mut snapshot = Snapshot::new(root, vec![b"/data".to_vec()], vec![], "synthetic".into());
        snapshot.time += i as i64;
        let id = repo.save_snapshot(&snapshot).await.expect("write snapshot");
        first.get_or_insert(id);
    }
    if let Some(id) = first {
        println!("{}", id.to_hex());
    }
}
