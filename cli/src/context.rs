//! What every command shares: the parsed global flags, the config file, the
//! destinations, the password, the output mode and the interrupt flag.

use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use lifeboat_engine::repo::seen::LocalState;
use lifeboat_engine::{Admission, Repository};

use crate::args::GlobalArgs;
use crate::commands::lock_wait::LockWait;
use crate::config::{ConfigFile, Profile, Selection};
use crate::password;

/// Shared state of one invocation.
pub struct Context {
    /// Global flags.
    pub global: GlobalArgs,
    /// The config file (empty when there is none).
    pub config: ConfigFile,
    /// Set by Ctrl-C.
    pub cancel: Arc<AtomicBool>,
    /// How a lock held elsewhere is waited for (`--retry-lock`): every
    /// command takes and releases its lock through this.
    pub lock_wait: LockWait,
}

impl Context {
    /// Loads the config file; the lock wait shares the interrupt flag.
    pub fn new(global: GlobalArgs) -> Result<Self> {
        let config = crate::config::load(global.config.as_deref())?;
        let cancel = Arc::new(AtomicBool::new(false));
        let lock_wait = LockWait::new(&global, cancel.clone());
        Ok(Context {
            global,
            config,
            cancel,
            lock_wait,
        })
    }

    /// The selected profile, if any.
    pub fn profile(&self) -> Result<Option<&Profile>> {
        self.config.profile(self.global.profile.as_deref())
    }

    /// The destinations this invocation works on.
    pub fn selection(&self) -> Result<Selection> {
        self.config.select(&self.global.dest, self.profile()?)
    }

    /// Each selected destination's name and canonical location: the key its
    /// check and drill results are kept under.
    pub fn locations(&self) -> Result<std::collections::BTreeMap<String, String>> {
        self.config.locations(&self.global.dest, self.profile()?)
    }

    /// Opens the repository on the selected destinations.
    pub async fn open(&self) -> Result<Repository> {
        self.open_from(None).await
    }

    /// Opens the repository on one named destination only (`--from`), or on
    /// all selected ones.
    pub async fn open_from(&self, from: Option<&str>) -> Result<Repository> {
        self.open_admitting(from, &Admission::default()).await
    }

    /// Opens the repository on the selected destinations (or `--from` one),
    /// admitting what `admission` allows beside the destinations that prove
    /// to hold this repository. Each destination left out gets one warning
    /// line on stderr.
    pub async fn open_admitting(
        &self,
        from: Option<&str>,
        admission: &Admission,
    ) -> Result<Repository> {
        let mut selection = self.selection()?;
        if let Some(name) = from {
            selection = selection.only(name)?;
        }
        for name in &admission.seed {
            if !selection.backends.iter().any(|b| b.name() == name) {
                let names: Vec<&str> = selection.backends.iter().map(|b| b.name()).collect();
                return Err(crate::exit::usage(format!(
                    "--seed {name}: not one of this run's destinations ({}); name it with -d too",
                    names.join(", ")
                )));
            }
        }
        let dests = selection.into_set()?;
        let password = password::existing(self.global.password_file.as_deref())?;
        let admission = Admission {
            known_keys: crate::known_keys::load(),
            ..admission.clone()
        };
        let repo = Repository::open_with(dests, &password, &admission).await?;
        crate::known_keys::remember(repo.key_id());
        if !self.global.quiet {
            for left in repo.destinations().left_out() {
                eprintln!("warning: {}", left.message());
            }
        }
        Ok(self.with_local_state(with_metadata_cache(repo)))
    }

    /// Attaches the rollback memory of the repository (`seen.json` in its
    /// state directory), each destination filed under its canonical
    /// location; a rolled-back destination gets one warning line on stderr
    /// (unless quiet).
    pub fn with_local_state(&self, repo: Repository) -> Repository {
        let Some(dir) = crate::health::state_dir(repo.id()) else {
            tracing::warn!(
                "no state directory (set HOME or XDG_STATE_HOME): destinations rolled back to an \
                 older copy cannot be detected"
            );
            return repo;
        };
        let identities = self.locations().unwrap_or_default();
        let quiet = self.global.quiet;
        let state = LocalState::new(dir)
            .with_identities(identities)
            .on_rollback(move |rollback| {
                if !quiet {
                    eprintln!("warning: {rollback}");
                }
            });
        repo.with_local_state(state)
    }

    /// True when progress bars should be drawn: a terminal, no --json, no -q.
    pub fn show_progress(&self) -> bool {
        !self.global.json && !self.global.quiet && std::io::stderr().is_terminal()
    }

    /// True when periodic status lines go to stderr on a non-terminal (-v).
    pub fn status_lines(&self) -> bool {
        !self.global.json
            && !self.global.quiet
            && self.global.verbose > 0
            && !std::io::stderr().is_terminal()
    }

    /// Prints a human result (a summary, a table) on stdout unless quiet or
    /// JSON: `lifeboat backup > log` keeps it.
    pub fn say(&self, message: impl std::fmt::Display) {
        if !self.global.quiet && !self.global.json {
            println!("{message}");
        }
    }

    /// Prints a human note about the run (progress, advice) on stderr
    /// unless quiet or JSON.
    pub fn note(&self, message: impl std::fmt::Display) {
        if !self.global.quiet && !self.global.json {
            eprintln!("{message}");
        }
    }
}

/// Attaches the local metadata cache (index files, snapshots, trees) unless
/// `LIFEBOAT_NO_CACHE` is set.
pub fn with_metadata_cache(repo: Repository) -> Repository {
    if std::env::var_os("LIFEBOAT_NO_CACHE").is_some_and(|v| !v.is_empty()) {
        return repo;
    }
    match crate::health::repo_dir(repo.id()) {
        Some(dir) => repo.with_cache(lifeboat_engine::repo::cache::MetadataCache::new(
            dir.join("metadata"),
        )),
        None => repo,
    }
}
