//! The backup's stage threads, started together and joined together: the
//! walker (with the parent's tree stream), the progress scan, the file
//! workers, the tree builder, the sealers and the packer, while the calling
//! thread drives the uploader on the runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::pipeline::{self, Shared, Stop};
use super::pull::{self, Pulled};
use super::walker::SkippedEntry;
use super::{builder, parent, scan, uploader, walker, BackupOptions, RunSettings};
use crate::error::{panic_message, Error, Result};
use crate::format::ids::BlobId;
use crate::repo::Repository;

/// What the stages returned: each stage's result (the tree builder's holds
/// the root tree), the uploader's, and the entries skipped as unreadable.
pub(super) struct Finished {
    stages: Vec<std::result::Result<Option<BlobId>, Stop>>,
    upload: std::result::Result<(), Stop>,
    skipped: Vec<SkippedEntry>,
    pulled: std::result::Result<Pulled, Stop>,
}

/// The parent snapshot's roots, compared with to skip what did not change.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ParentRoots {
    /// Its file system tree.
    pub files: Option<BlobId>,
    /// Its sources tree.
    pub sources: Option<BlobId>,
}

impl Finished {
    /// The snapshot's root tree and the skipped entries, or the run's root
    /// cause of failure: an interruption first, then the first real failure.
    pub(super) fn into_root_tree(
        self,
        cancel: &AtomicBool,
    ) -> Result<(BlobId, Vec<SkippedEntry>, Pulled)> {
        let mut root = None;
        let mut failure = None;
        let mut pulled = None;
        let pull = match self.pulled {
            Ok(p) => {
                pulled = Some(p);
                Ok(None)
            }
            Err(stop) => Err(stop),
        };
        let results = std::iter::once(self.upload.map(|()| None))
            .chain(std::iter::once(pull))
            .chain(self.stages);
        for result in results {
            match result {
                Ok(Some(id)) => root = Some(id),
                Ok(None) | Err(Stop::Closed) => {}
                Err(Stop::Failed(Error::Interrupted)) => return Err(Error::Interrupted),
                Err(Stop::Failed(e)) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let root =
            root.ok_or_else(|| Error::internal("backup pipeline stopped without a root tree"))?;
        let pulled =
            pulled.ok_or_else(|| Error::internal("source stage stopped without a result"))?;
        Ok((root, self.skipped, pulled))
    }
}

/// Runs every stage to its end. Blocks the calling runtime worker
/// (`block_in_place`, so the caller checked for the multi-thread runtime).
pub(super) fn run(
    repo: &Repository,
    options: &BackupOptions,
    run: &RunSettings,
    shared: &Shared,
    parent_roots: ParentRoots,
) -> Finished {
    let parent_root = parent_roots.files;
    let threads = run.threads;
    let skipped = Arc::new(Mutex::new(Vec::new()));
    let (file_tx, file_rx) = crossbeam_channel::bounded(threads * 8);
    let (dir_tx, dir_rx) = crossbeam_channel::bounded(1024);
    let (seal_tx, seal_rx) = crossbeam_channel::bounded(threads * 2);
    let (sealed_tx, sealed_rx) = crossbeam_channel::bounded(threads * 2);
    let (upload_tx, upload_rx) = tokio::sync::mpsc::channel(1);
    let runtime = tokio::runtime::Handle::current();
    let pack_size = repo.params().pack_size as usize;
    let scan_stop = &AtomicBool::new(false);
    let (stages, upload, pulled) = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            {
                let (files, dirs, skipped) = (file_tx, dir_tx, skipped.clone());
                let runtime = runtime.clone();
                let (excludes, observer) = (&run.excludes, options.observer.as_ref());
                let target_tree = &run.target_tree;
                handles.push(scope.spawn(move || {
                    let parent_trees = parent_root.map(|root| {
                        parent::ParentTrees::start(repo, shared.index.clone(), root, &runtime)
                    });
                    let mut walker = walker::Walker {
                        shared,
                        repo,
                        runtime,
                        excludes,
                        observer,
                        files,
                        dirs,
                        skipped,
                        parent_trees,
                    };
                    let walked = walker.walk_root(target_tree, parent_root).map(|()| None);
                    scan_stop.store(true, Ordering::Relaxed);
                    walked
                }));
            }
            // The progress total, counted beside the walk.
            {
                let (paths, excludes) = (&run.abs_paths, &run.excludes);
                scope.spawn(move || scan::scan(paths, excludes, &shared.progress, scan_stop));
            }
            // Sources are pulled beside the walk, on their own thread.
            let pulled = {
                let (seal, skipped, runtime) = (seal_tx.clone(), skipped.clone(), runtime.clone());
                scope.spawn(move || {
                    if options.sources.is_empty() {
                        return Ok(Pulled {
                            root: None,
                            reports: Vec::new(),
                        });
                    }
                    let puller = pull::Puller {
                        shared,
                        repo,
                        runtime,
                        seal,
                        skipped,
                    };
                    puller.pull(&options.sources, parent_roots.sources)
                })
            };
            for _ in 0..threads {
                let (jobs, seal) = (file_rx.clone(), seal_tx.clone());
                handles.push(
                    scope.spawn(move || pipeline::file_worker(shared, jobs, seal).map(|()| None)),
                );
            }
            drop(file_rx);
            {
                let (seal, skipped) = (seal_tx, skipped.clone());
                handles.push(
                    scope.spawn(move || {
                        builder::build_trees(shared, dir_rx, seal, &skipped).map(Some)
                    }),
                );
            }
            for _ in 0..threads {
                let (jobs, out) = (seal_rx.clone(), sealed_tx.clone());
                handles
                    .push(scope.spawn(move || pipeline::sealer(shared, jobs, out).map(|()| None)));
            }
            drop((seal_rx, sealed_tx));
            let keys = shared.keys.clone();
            handles.push(scope.spawn(move || {
                pipeline::packer(&keys, pack_size, sealed_rx, upload_tx).map(|()| None)
            }));
            // This thread is outside the runtime's workers, so it may block on the uploader.
            let upload = runtime.block_on(uploader::upload_packs(
                repo,
                upload_rx,
                options.dry_run,
                &shared.progress,
            ));
            let stages: Vec<_> = handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|panic| {
                        Err(Stop::Failed(Error::task_failed(
                            "a backup worker thread panicked",
                            panic_message(&panic),
                        )))
                    })
                })
                .collect();
            let pulled = pulled.join().unwrap_or_else(|panic| {
                Err(Stop::Failed(Error::task_failed(
                    "the source puller thread panicked",
                    panic_message(&panic),
                )))
            });
            (stages, upload, pulled)
        })
    });
    let skipped = std::mem::take(&mut *skipped.lock().unwrap_or_else(|p| p.into_inner()));
    Finished {
        stages,
        upload,
        skipped,
        pulled,
    }
}
