//! In-process cases: real local backends behind a seeded chaos schedule.

use lifeboat_backends::{Backend, Bytes, Chaos};
use lifeboat_engine::check::ProblemKind;

use super::{full_check, tree_bytes, AsyncCase, Fixture, Outcome, Run};

/// Every in-process case, in table order.
pub const CASES: &[AsyncCase] = &[
    AsyncCase {
        name: "transient storm 30% (all)",
        run: |seed| Box::pin(storm(seed)) as Run,
    },
    AsyncCase {
        name: "provider dies mid-backup",
        run: |seed| Box::pin(provider_dies(seed)) as Run,
    },
    AsyncCase {
        name: "writes cut short, told ok",
        run: |seed| Box::pin(lying_writes(seed)) as Run,
    },
    AsyncCase {
        name: "reads flipped/truncated",
        run: |seed| Box::pin(bad_reads(seed)) as Run,
    },
    AsyncCase {
        name: "calls hang, time out",
        run: |seed| Box::pin(hangs(seed)) as Run,
    },
    AsyncCase {
        name: "rot at rest, each kind, 1 dest",
        run: |seed| Box::pin(rot_one(seed)) as Run,
    },
    AsyncCase {
        name: "rot at rest, a pack, all dests",
        run: |seed| Box::pin(rot_all(seed)) as Run,
    },
    AsyncCase {
        name: "hostile provider",
        run: |seed| Box::pin(hostile(seed)) as Run,
    },
    AsyncCase {
        name: "hostile: links, junk, names",
        run: |seed| Box::pin(links_and_junk(seed)) as Run,
    },
];

/// Two generations backed up calmly.
async fn two_generations(seed: u64) -> Result<Fixture, String> {
    let mut fx = Fixture::new(seed).await?;
    for generation in 0..2 {
        fx.write_source(seed, generation);
        let repo = fx.open().await?;
        fx.backup(&repo).await?;
    }
    Ok(fx)
}

/// The usual ending: heal, check clean, every destination alone restores all.
async fn finish(fx: &Fixture, mut outcome: Outcome) -> Result<Outcome, String> {
    outcome.errors_named += fx.heal_and_check().await?;
    outcome.absorb(fx.verify_each_alone().await);
    Ok(outcome)
}

async fn storm(seed: u64) -> Result<Outcome, String> {
    let mut fx = Fixture::new(seed).await?;
    for c in &fx.chaos {
        c.set_chaos(Chaos {
            seed,
            transient: 0.3,
            ..Default::default()
        });
    }
    for generation in 0..2 {
        fx.write_source(seed, generation);
        let repo = fx.open().await?;
        let done = fx.backup(&repo).await?;
        if !done.missed.is_empty() {
            return Err(format!("the storm dropped destinations: {:?}", done.missed));
        }
    }
    // Restores ride out the storm too.
    let repo = fx.open().await?;
    let during = fx.verify_with(&repo).await;
    let injected: u64 = fx.chaos.iter().map(|c| c.counts().transient).sum();
    if injected < 10 {
        return Err(format!("only {injected} faults injected"));
    }
    finish(&fx, during).await
}

async fn provider_dies(seed: u64) -> Result<Outcome, String> {
    let mut fx = Fixture::new(seed).await?;
    fx.write_source(seed, 0);
    let victim = (seed % 3) as usize;
    fx.chaos[victim].set_chaos(Chaos {
        seed,
        dead_after: Some(3 + seed * 7 % 40),
        ..Default::default()
    });
    let repo = fx.open().await?;
    let done = fx.backup(&repo).await?;
    let victim_name = format!("d{victim}");
    // A provider that died before the snapshot was written is reported.
    let holds_it = fx.plain[victim]
        .stat(&format!(
            "snapshots/{}",
            done.snapshot_id.map(|id| id.to_hex()).unwrap_or_default()
        ))
        .await
        .is_ok();
    if !holds_it && !done.missed.iter().any(|(n, _)| *n == victim_name) {
        return Err(format!("{victim_name} died but is not reported missed"));
    }
    let outcome = Outcome {
        errors_named: done.missed.len() as u64,
        ..Default::default()
    };
    finish(&fx, outcome).await
}

async fn lying_writes(seed: u64) -> Result<Outcome, String> {
    let mut fx = Fixture::new(seed).await?;
    fx.write_source(seed, 0);
    fx.chaos[1].set_chaos(Chaos {
        seed,
        short_write: 0.8,
        prefix: Some("data/".into()),
        ..Default::default()
    });
    let repo = fx.open().await?;
    fx.backup(&repo).await?;
    // Pack names hold random nonces, so which writes are cut differs from
    // run to run; a few packs can all escape. Back up new generations until
    // one is cut (each is verified like the first).
    for generation in 1..4 {
        if fx.chaos[1].counts().short_writes > 0 {
            break;
        }
        fx.write_source(seed, generation);
        fx.backup(&repo).await?;
    }
    if fx.chaos[1].counts().short_writes == 0 {
        return Err("no write was cut".into());
    }
    fx.calm();
    let repo = fx.open().await?;
    let during = fx.verify_with(&repo).await;
    let report = full_check(&repo).await?;
    if !report
        .problems
        .iter()
        .any(|p| p.destination.as_deref() == Some("d1") && p.healable())
    {
        return Err("check did not name the cut packs on d1".into());
    }
    finish(&fx, during).await
}

async fn bad_reads(seed: u64) -> Result<Outcome, String> {
    let fx = two_generations(seed).await?;
    // The preferred destination returns damaged bytes; reads fail over.
    fx.chaos[0].set_chaos(Chaos {
        seed,
        flip_read: 0.3,
        truncate_read: 0.2,
        ..Default::default()
    });
    let repo = fx.open().await?;
    let during = fx.verify_with(&repo).await;
    if fx.chaos[0].counts().bad_reads == 0 {
        return Err("no read was damaged".into());
    }
    finish(&fx, during).await
}

async fn hangs(seed: u64) -> Result<Outcome, String> {
    let mut fx = Fixture::new(seed).await?;
    fx.chaos[2].set_chaos(Chaos {
        seed,
        hang: 0.1,
        hang_for: std::time::Duration::from_millis(30),
        delay: 0.3,
        max_delay: std::time::Duration::from_millis(20),
        ..Default::default()
    });
    fx.write_source(seed, 0);
    let repo = fx.open().await?;
    fx.backup(&repo).await?;
    let during = fx.verify_with(&repo).await;
    finish(&fx, during).await
}

/// Replaces an object's bytes at rest (a disk that rotted).
async fn damage(backend: &dyn Backend, key: &str, truncate: bool) -> Result<(), String> {
    let bytes = backend.get(key, None).await.map_err(|e| e.to_string())?;
    let mut bad = bytes.to_vec();
    if truncate {
        bad.truncate(bad.len() / 2);
    } else {
        let middle = bad.len() / 2;
        bad[middle] ^= 0x20;
    }
    backend.delete(key).await.map_err(|e| e.to_string())?;
    backend
        .put(key, Bytes::from(bad))
        .await
        .map_err(|e| e.to_string())
}

async fn keys_of(backend: &dyn Backend, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = lifeboat_engine::list_all(backend, prefix)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| !k.contains(".tmp-"))
        .collect();
    keys.sort();
    keys
}

async fn rot_one(seed: u64) -> Result<Outcome, String> {
    let fx = two_generations(seed).await?;
    let victim = &fx.plain[(seed % 3) as usize];
    let mut damaged = 0;
    for (n, prefix) in ["config", "keys/", "index/", "snapshots/", "data/"]
        .iter()
        .enumerate()
    {
        let keys = keys_of(victim.as_ref(), prefix).await;
        let Some(key) = keys.get((seed as usize) % keys.len().max(1)) else {
            return Err(format!("no object under {prefix}"));
        };
        damage(victim.as_ref(), key, (seed + n as u64).is_multiple_of(2)).await?;
        damaged += 1;
    }
    let repo = fx.open().await?;
    let during = fx.verify_with(&repo).await;
    let report = full_check(&repo).await?;
    if (report.problems.len() as u64) < damaged || report.problems.iter().any(|p| !p.healable()) {
        return Err(format!(
            "check should name {damaged} healable problems: {:?}",
            report
                .problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        ));
    }
    finish(&fx, during).await
}

async fn rot_all(seed: u64) -> Result<Outcome, String> {
    let fx = two_generations(seed).await?;
    // The same data pack, damaged everywhere: not healable, and never
    // restored wrong.
    let packs = keys_of(fx.plain[0].as_ref(), "data/").await;
    let mut largest = (0, String::new());
    for key in &packs {
        let size = fx.plain[0].stat(key).await.map(|m| m.size).unwrap_or(0);
        if size > largest.0 {
            largest = (size, key.clone());
        }
    }
    for backend in &fx.plain {
        damage(backend.as_ref(), &largest.1, seed % 2 == 1).await?;
    }
    let repo = fx.open().await?;
    let report = full_check(&repo).await?;
    let lost = report.lost().count() as u64;
    if lost < 3 || report.damaged.is_empty() {
        return Err(format!(
            "the pack lost everywhere is not reported: {} lost",
            lost
        ));
    }
    let damaged: Vec<String> = report
        .damaged
        .iter()
        .flat_map(|d| d.paths.iter().cloned())
        .collect();
    // Restore: damaged files are absent, every other file identical.
    let mut outcome = Outcome {
        errors_named: lost + damaged.len() as u64,
        ..Default::default()
    };
    for (id, copy) in &fx.history {
        let Ok((_, snapshot)) = repo.find_snapshot(&id.to_hex()).await else {
            outcome.bytes_lost += tree_bytes(copy.path());
            continue;
        };
        let target = tempfile::tempdir().map_err(|e| e.to_string())?;
        let options = lifeboat_engine::restore::RestoreOptions {
            target: target.path().into(),
            verify: true,
            ..Default::default()
        };
        let _ = lifeboat_engine::restore::restore(
            &repo,
            &snapshot,
            &options,
            Default::default(),
            Default::default(),
        )
        .await;
        let src = fx.src.path();
        let root = target.path().join(src.strip_prefix("/").unwrap_or(src));
        for file in lifeboat_tests::tree::regular_files(copy.path()) {
            let rel = file.strip_prefix(copy.path()).unwrap_or(&file);
            let shown = src.join(rel).display().to_string();
            let want = std::fs::read(&file).unwrap_or_default();
            match std::fs::read(root.join(rel)) {
                Ok(got) if got == want => {}
                // A named loss is reported, not lost silently.
                Err(_) if damaged.contains(&shown) => {}
                _ => outcome.bytes_lost += want.len() as u64,
            }
        }
        outcome.snapshots_verified += 1;
    }
    if report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::Missing)
    {
        return Err("a damaged pack was called missing".into());
    }
    Ok(outcome)
}

async fn hostile(seed: u64) -> Result<Outcome, String> {
    let fx = two_generations(seed).await?;
    // d0 lists names that do not exist.
    fx.chaos[0].set_chaos(Chaos {
        seed,
        phantom_list: 1.0,
        ..Default::default()
    });
    // d1: a pack whose trailer claims a 4 GiB header.
    let packs = keys_of(fx.plain[1].as_ref(), "data/").await;
    let pack = &packs[(seed as usize) % packs.len()];
    let mut bytes = fx.plain[1]
        .get(pack, None)
        .await
        .map_err(|e| e.to_string())?
        .to_vec();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    fx.plain[1].delete(pack).await.map_err(|e| e.to_string())?;
    fx.plain[1]
        .put(pack, Bytes::from(bytes))
        .await
        .map_err(|e| e.to_string())?;
    // d2 rolled back: it no longer shows the newest snapshot.
    let newest = fx
        .history
        .last()
        .map(|(id, _)| id.to_hex())
        .unwrap_or_default();
    fx.plain[2]
        .delete(&format!("snapshots/{newest}"))
        .await
        .map_err(|e| e.to_string())?;
    let repo = fx.open().await?;
    let (latest, _) = repo
        .find_snapshot("latest")
        .await
        .map_err(|e| format!("latest: {e}"))?;
    if latest.to_hex() != newest {
        return Err("a rolled-back destination hid the newest snapshot".into());
    }
    let during = fx.verify_with(&repo).await;
    if fx.chaos[0].counts().phantoms == 0 {
        return Err("no phantom was listed".into());
    }
    finish(&fx, during).await
}

/// A hostile disk and a hostile provider at once. On d0 a pack is replaced
/// by a symlink to a host file (a private key, say) and a pack directory by a
/// symlink to a host directory; on d1 junk objects whose bytes match their
/// names but open with no key of the repository (a snapshot, an index file,
/// a deletion record, a key file) and names that are no object's. Every
/// command runs, nothing panics, the newest snapshot stays the newest, the
/// link is healed by replacing it, and the host file's bytes reach no
/// destination.
async fn links_and_junk(seed: u64) -> Result<Outcome, String> {
    use std::os::unix::fs::symlink;
    let fx = two_generations(seed).await?;
    let host = tempfile::tempdir().map_err(|e| e.to_string())?;
    let secret_path = host.path().join("id_ed25519");
    let secret: Vec<u8> = format!("-----BEGIN OPENSSH PRIVATE KEY----- {seed:016x} ")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(4096)
        .collect();
    std::fs::write(&secret_path, &secret).map_err(|e| e.to_string())?;
    let host_dir = host.path().join("documents");
    std::fs::create_dir(&host_dir).map_err(|e| e.to_string())?;

    // d0: one pack a link to the host file; another pack's directory a link
    // to a host directory (whatever is written "into" it must not land there).
    let packs = keys_of(fx.plain[0].as_ref(), "data/").await;
    if packs.len() < 2 {
        return Err("the fixture has fewer than two packs".into());
    }
    let linked = &packs[(seed as usize) % packs.len()];
    let pack_path = fx.dir(0).join(linked);
    std::fs::remove_file(&pack_path).map_err(|e| e.to_string())?;
    symlink(&secret_path, &pack_path).map_err(|e| e.to_string())?;
    let other = packs.iter().find(|k| k[..7] != linked[..7]).cloned();
    if let Some(other) = &other {
        let sub = fx.dir(0).join(&other[..7]);
        let aside = fx.dir(0).join(format!("{}-aside", &other[..7]));
        std::fs::rename(&sub, &aside).map_err(|e| e.to_string())?;
        symlink(&host_dir, &sub).map_err(|e| e.to_string())?;
        // Whatever the destination lost there comes back from the others.
        std::fs::remove_dir_all(&aside).map_err(|e| e.to_string())?;
    }

    // d1: junk under valid names, and names that are no object's.
    for prefix in ["snapshots/", "index/", "deletions/", "keys/"] {
        let junk: Vec<u8> = (0..200u32).map(|i| (i as u64 * 31 + seed) as u8).collect();
        let name = blake3::hash(&junk).to_hex().to_string();
        fx.plain[1]
            .put(&format!("{prefix}{name}"), Bytes::from(junk))
            .await
            .map_err(|e| e.to_string())?;
    }
    for odd in [
        "data/ab/\u{20ac}uro",
        "snapshots/not-an-id",
        "index/\u{00e9}t\u{00e9}",
    ] {
        fx.plain[1]
            .put(odd, Bytes::from_static(b"odd"))
            .await
            .map_err(|e| e.to_string())?;
    }

    let newest = fx
        .history
        .last()
        .map(|(id, _)| id.to_hex())
        .unwrap_or_default();
    let repo = fx.open().await?;
    let (latest, _) = repo
        .find_snapshot("latest")
        .await
        .map_err(|e| format!("latest: {e}"))?;
    if latest.to_hex() != newest {
        return Err("junk changed which snapshot is the newest".into());
    }
    let during = fx.verify_with(&repo).await;
    let report = full_check(&repo).await?;
    let foreign: Vec<&String> = report
        .destinations
        .iter()
        .flat_map(|d| d.foreign.iter())
        .collect();
    if foreign.len() < 3 {
        return Err(format!(
            "check named {foreign:?} as foreign, not the three odd names"
        ));
    }
    if other.is_some() {
        // The linked directory is never written through: healing fails
        // there, naming the link, until the user moves it out of the way.
        match fx.heal_and_check().await {
            Err(why) if why.contains("symlink") => {}
            Err(why) => return Err(format!("healing failed, but not on the link: {why}")),
            Ok(_) => return Err("healing wrote through a linked directory".into()),
        }
        if let Some(other) = &other {
            std::fs::remove_file(fx.dir(0).join(&other[..7])).map_err(|e| e.to_string())?;
        }
    }
    let outcome = finish(&fx, during).await?;
    // The link was replaced by the real pack; the host file and directory
    // are as they were, and the host file's bytes are on no destination.
    let meta = std::fs::symlink_metadata(&pack_path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("the linked pack was not replaced by a regular file".into());
    }
    if std::fs::read(&secret_path).map_err(|e| e.to_string())? != secret {
        return Err("the host file changed".into());
    }
    let written = std::fs::read_dir(&host_dir)
        .map_err(|e| e.to_string())?
        .count();
    if written != 0 {
        return Err(format!(
            "{written} files were written through the linked directory"
        ));
    }
    let marker = &secret[..40];
    for n in 0..fx.plain.len() {
        if let Some(path) = file_containing(fx.dir(n), marker) {
            return Err(format!("the host file's bytes reached {}", path.display()));
        }
    }
    Ok(outcome)
}

/// A regular file under `dir` (links not followed) whose bytes contain `needle`.
fn file_containing(dir: &std::path::Path, needle: &[u8]) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let kind = entry.file_type().ok()?;
        let path = entry.path();
        if kind.is_dir() {
            if let Some(found) = file_containing(&path, needle) {
                return Some(found);
            }
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Some(path);
            }
        }
    }
    None
}
