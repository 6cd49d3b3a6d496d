//! Issue 16: the engine's side of sources, with an in-memory source whose
//! answers the test chooses (a real server cannot be made to serve garbage
//! or hostile names on demand; tests/cli_dav.rs runs against Radicale):
//! items stored as file nodes below the sources tree, garbage kept as
//! served and counted, invalid names left out, unchanged items not fetched
//! again, a source failing mid-run left out while the files are committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lifeboat_backends::{Backend, MemoryBackend};
use lifeboat_engine::backup::{backup, BackupOptions};
use lifeboat_engine::format::extra::Extra;
use lifeboat_engine::format::tags;
use lifeboat_engine::source::{
    Collection, FetchedItem, ItemEntry, ItemSource, PreviousState, SourceError, SourceKind,
    SourceRoot, SourceTraffic,
};
use lifeboat_engine::{DestinationSet, KdfParams, NodeKind, RepoParams, Repository};

/// (name, version, body)
type Item = (Vec<u8>, Vec<u8>, Vec<u8>);

struct FakeSource {
    items: Mutex<Vec<Item>>,
    fetched: AtomicU64,
    fail_fetch: bool,
}

impl FakeSource {
    fn new(items: &[(&[u8], &[u8], &[u8])], fail_fetch: bool) -> Arc<Self> {
        Arc::new(FakeSource {
            items: Mutex::new(
                items
                    .iter()
                    .map(|(n, v, b)| (n.to_vec(), v.to_vec(), b.to_vec()))
                    .collect(),
            ),
            fetched: AtomicU64::new(0),
            fail_fetch,
        })
    }
}

#[async_trait::async_trait]
impl ItemSource for FakeSource {
    fn root(&self) -> SourceRoot {
        SourceRoot {
            kind: SourceKind::Dav,
            account: "dav.example.com".into(),
        }
    }

    async fn collections(&self, _: &dyn PreviousState) -> Result<Vec<Collection>, SourceError> {
        let mut extra = Extra::new();
        extra.set(tags::COLLECTION_NAME, b"Contacts".to_vec());
        let items: Vec<ItemEntry> = self
            .items
            .lock()
            .unwrap()
            .iter()
            .map(|(name, version, _)| ItemEntry {
                name: name.clone(),
                version: version.clone(),
                mtime: 1_700_000_000,
                size: 0,
                extra: Extra::new(),
            })
            .collect();
        Ok(vec![Collection {
            path: vec![b"alice".to_vec(), b"contacts".to_vec()],
            extra,
            items,
        }])
    }

    async fn fetch(
        &self,
        _: &Collection,
        wanted: &[usize],
    ) -> Result<Vec<FetchedItem>, SourceError> {
        if self.fail_fetch {
            return Err(SourceError::Failed(
                "connection reset in the middle of the run".into(),
            ));
        }
        let items = self.items.lock().unwrap();
        self.fetched
            .fetch_add(wanted.len() as u64, Ordering::Relaxed);
        Ok(wanted
            .iter()
            .map(|&i| FetchedItem {
                index: i,
                body: items[i].2.clone(),
                malformed: !items[i].2.starts_with(b"BEGIN:VCARD"),
            })
            .collect())
    }

    fn traffic(&self) -> SourceTraffic {
        SourceTraffic::default()
    }
}

async fn repo() -> Repository {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new("m"));
    Repository::init(
        DestinationSet::new(vec![backend]).unwrap(),
        b"pw",
        RepoParams::default(),
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_become_file_nodes_garbage_is_kept_and_unchanged_items_are_not_fetched() {
    let repo = repo().await;
    let source = FakeSource::new(
        &[
            (b"a.vcf", b"\"1\"", b"BEGIN:VCARD\r\nFN:A\r\nEND:VCARD\r\n"),
            (b"b.vcf", b"\"1\"", b"<html>502 Bad Gateway</html>"),
            (b"../escape.vcf", b"\"1\"", b"BEGIN:VCARD\r\nEND:VCARD\r\n"),
            (b"a.vcf", b"\"2\"", b"listed twice"),
        ],
        false,
    );
    let options = BackupOptions {
        sources: vec![source.clone()],
        ..Default::default()
    };
    let first = backup(&repo, &options, Default::default(), Default::default())
        .await
        .unwrap();
    let report = &first.sources[0];
    assert_eq!(
        (report.items, report.fetched, report.malformed),
        (2, 2, 1),
        "{report:?}"
    );
    assert_eq!(
        first.skipped.len(),
        2,
        "the invalid and the repeated name: {:?}",
        first.skipped
    );
    assert_eq!(first.snapshot.paths_lossy(), vec!["dav://dav.example.com/"]);
    // The items are ordinary files below /dav/<account>/, garbage as served.
    let index = repo.load_index().await.unwrap();
    let tree = first.snapshot.sources_tree().expect("a sources tree");
    let node = lifeboat_engine::ls::find_node(
        &repo,
        &index,
        tree,
        "/dav/dav.example.com/alice/contacts/b.vcf".as_ref(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(node.extra.get(tags::ITEM_MALFORMED).is_some());
    assert_eq!(node.extra.get(tags::ITEM_VERSION), Some(&b"\"1\""[..]));
    let NodeKind::File { content } = node.kind else {
        panic!("not a file")
    };
    let mut body = Vec::new();
    for id in content {
        body.extend(repo.read_blob(&index, &id).await.unwrap());
    }
    assert_eq!(body, b"<html>502 Bad Gateway</html>");
    let dir = lifeboat_engine::ls::find_node(
        &repo,
        &index,
        tree,
        "/dav/dav.example.com/alice/contacts".as_ref(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(dir.extra.get(tags::COLLECTION_NAME), Some(&b"Contacts"[..]));

    // Second run: the good item is not fetched again; the malformed one is
    // (what was served may have been damaged on the way), and still kept.
    let second = backup(&repo, &options, Default::default(), Default::default())
        .await
        .unwrap();
    let report = &second.sources[0];
    assert_eq!(
        (
            report.items,
            report.fetched,
            report.unchanged,
            report.malformed
        ),
        (2, 1, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        second.snapshot.sources_tree(),
        first.snapshot.sources_tree(),
        "same tree"
    );
    assert_eq!(source.fetched.load(Ordering::Relaxed), 3);

    // One item's version changed: that one is fetched.
    source.items.lock().unwrap()[0].1 = b"\"9\"".to_vec();
    let third = backup(&repo, &options, Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(
        third.sources[0].fetched, 2,
        "the changed item and the malformed one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_failing_mid_run_is_left_out_and_the_files_are_committed() {
    let repo = repo().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kept.txt"), b"kept").unwrap();
    let source = FakeSource::new(&[(b"a.vcf", b"1", b"BEGIN:VCARD\r\nEND:VCARD\r\n")], true);
    let options = BackupOptions {
        paths: vec![dir.path().to_path_buf()],
        sources: vec![source],
        ..Default::default()
    };
    let outcome = backup(&repo, &options, Default::default(), Default::default())
        .await
        .unwrap();
    assert!(outcome.snapshot_id.is_some(), "committed");
    assert!(outcome.is_incomplete(), "exit 3");
    assert!(outcome.sources[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("connection reset")));
    assert!(outcome.snapshot.sources_tree().is_none());
    assert_eq!(outcome.snapshot.summary.total_files, 1);
}
