//! `lifeboat mount MOUNTPOINT`: the snapshots as a read-only file system
//! (FUSE, through `fusermount3`/`fusermount`, or mount(2) when root), until
//! Ctrl-C, SIGTERM or `fusermount -u MOUNTPOINT`.
//!
//! The mount point and FUSE are checked before the password is asked for.
//! The repository is held under a shared lock for as long as it is mounted
//! (as restore does), so a prune waits: the blobs a reader is reading are
//! never swept from under it.

mod fuse;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use lifeboat_engine::mount::{MountFs, MountOptions};
use lifeboat_engine::Repository;

use crate::context::Context;

/// Listing a made-up directory reads the snapshot list again when it is
/// older than this (or than `--refresh`, when shorter): `ls` right after a
/// backup shows it.
const FRESH_ON_LISTING: Duration = Duration::from_secs(5);
/// How long to wait for the session to end after unmounting.
const END_WAIT: Duration = Duration::from_secs(10);

/// Arguments of `mount`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An empty directory to show the snapshots in: snapshots/<time>/,
    /// hosts/<host>/, tags/<tag>/, ids/<id>/ and latest.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// How often to look for new snapshots (and let forgotten ones go).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::duration::parse)]
    pub refresh: Duration,
}

/// Refuses a mount point that does not exist, is not a directory, or is
/// not empty (a file system mounted there already, or files a mount would
/// hide).
fn check_mountpoint(path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(crate::exit::usage(format!(
                "mount point {shown} does not exist; create an empty directory there"
            )))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(crate::exit::usage(format!(
                "mount point {shown}: {e}: a mount that ended without unmounting; \
                 run `fusermount -u {shown}` first"
            )))
        }
        Err(e) => return Err(anyhow!("mount point {shown}: {e}")),
    };
    if !meta.is_dir() {
        return Err(crate::exit::usage(format!(
            "mount point {shown} is not a directory"
        )));
    }
    let mut entries = std::fs::read_dir(path).with_context(|| format!("mount point {shown}"))?;
    if entries.next().is_some() {
        return Err(crate::exit::usage(format!(
            "mount point {shown} is not empty; mount on an empty directory"
        )));
    }
    Ok(())
}

/// The `fusermount3` or `fusermount` the mount and unmount would run, where
/// the FUSE library looks for it (the `PATH`, then `/bin` and `/sbin`).
fn fusermount() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/bin"), PathBuf::from("/sbin")])
        .collect();
    ["fusermount3", "fusermount"].iter().find_map(|name| {
        dirs.iter().map(|d| d.join(name)).find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Refuses to start where FUSE cannot work: no `/dev/fuse`, or (unless
/// root, which mounts with mount(2) itself) no `fusermount3`/`fusermount`.
fn check_fuse() -> Result<()> {
    if !Path::new("/dev/fuse").exists() {
        return Err(anyhow!(
            "FUSE is not available: /dev/fuse is missing (load the module with `modprobe fuse`; \
             in a container, pass the device in)"
        ));
    }
    if !is_root() && fusermount().is_none() {
        return Err(anyhow!(
            "FUSE is not available: neither fusermount3 nor fusermount is installed \
             (Debian and Ubuntu: apt install fuse3)"
        ));
    }
    Ok(())
}

/// The session's settings: read-only, no devices or set-user-id programs
/// from a backup, several threads reading requests.
fn session_config() -> fuser::Config {
    use fuser::MountOption;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::FSName("lifeboat".into()),
        MountOption::Subtype("lifeboat".into()),
    ];
    config.n_threads = Some(2);
    config.clone_fd = true;
    config
}

/// Runs `mount`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    check_mountpoint(&args.mountpoint)?;
    check_fuse()?;
    let repo = ctx.open().await?;
    ctx.lock_wait
        .locked(&repo, false, serve(ctx, &repo, &args))
        .await
}

/// Mounts, serves until told to stop or unmounted, unmounts.
async fn serve(ctx: &Context, repo: &Repository, args: &Args) -> Result<i32> {
    // Listening before mounting: a signal that comes as soon as the mount
    // is visible must still unmount it.
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let options = MountOptions {
        uid,
        gid,
        ..MountOptions::default()
    };
    let fs = MountFs::new(repo.clone(), options).await?;
    let glue = fuse::Fuse::new(
        fs.clone(),
        tokio::runtime::Handle::current(),
        FRESH_ON_LISTING.min(args.refresh),
    );
    let mountpoint = args.mountpoint.clone();
    let shown = mountpoint.display().to_string();
    // The session mounts, then reads requests on its own threads until the
    // file system is unmounted.
    let (mounted_tx, mounted) = tokio::sync::oneshot::channel();
    let (ended_tx, mut ended) = tokio::sync::oneshot::channel();
    let at = mountpoint.clone();
    std::thread::Builder::new()
        .name("fuse".into())
        .spawn(
            move || match fuser::Session::new(glue, &at, &session_config()) {
                Err(e) => {
                    let _ = mounted_tx.send(Err(e));
                }
                Ok(mut session) => {
                    let _ = mounted_tx.send(Ok(session.unmount_callable()));
                    let _ = ended_tx.send(session.run());
                }
            },
        )
        .context("cannot start the FUSE session thread")?;
    let mut unmounter = mounted
        .await
        .map_err(|_| anyhow!("the FUSE session ended before mounting"))?
        .map_err(|e| anyhow!("cannot mount on {shown}: {e}"))?;
    ctx.note(format!(
        "mounted {} snapshots at {shown}; unmount with `fusermount -u {shown}` or Ctrl-C",
        fs.snapshot_count()
    ));
    let refresher = tokio::spawn({
        let (fs, every) = (fs.clone(), args.refresh.max(Duration::from_millis(100)));
        async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                fs.refresh_if_older(every / 2).await;
            }
        }
    });
    let stop = tokio::select! {
        _ = interrupt.recv() => true,
        _ = terminate.recv() => true,
        _ = &mut ended => false,
    };
    refresher.abort();
    if stop {
        let at = mountpoint.clone();
        let unmounted = tokio::task::spawn_blocking(move || unmount(&mut unmounter, &at)).await;
        if let Ok(Err(e)) = unmounted {
            eprintln!("warning: {e}");
        }
        // The session ends once the kernel lets go of the mount; past the
        // wait, exiting closes the FUSE device, which ends it anyway.
        if tokio::time::timeout(END_WAIT, &mut ended).await.is_err() {
            tracing::warn!("the FUSE session did not end after unmounting {shown}");
        }
    } else if let Ok(Err(e)) = ended.try_recv() {
        return Err(anyhow!("the FUSE session on {shown} failed: {e}"));
    }
    ctx.note(format!("unmounted {shown}"));
    Ok(crate::exit::OK)
}

/// Unmounts; when the mount is busy (a shell's working directory inside),
/// detaches it instead, so it is gone from the directory tree at once and
/// ends when the last user lets go.
fn unmount(unmounter: &mut fuser::SessionUnmounter, at: &Path) -> Result<()> {
    let Err(first) = unmounter.unmount() else {
        return Ok(());
    };
    let lazily = if is_root() {
        detach(at)
    } else {
        let tool = fusermount().ok_or_else(|| anyhow!("no fusermount to detach with"))?;
        let status = std::process::Command::new(tool)
            .args(["-u", "-z", "--"])
            .arg(at)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(anyhow!("fusermount -u -z exited with {status}"))
        }
    };
    lazily.map_err(|e| {
        anyhow!(
            "cannot unmount {}: {first}; detaching failed too: {e}",
            at.display()
        )
    })?;
    eprintln!(
        "warning: {} was busy ({first}); it was detached and ends when the last program \
         using it lets go",
        at.display()
    );
    Ok(())
}

/// umount2(MNT_DETACH) on `at`.
fn detach(at: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(at.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; umount2 touches no memory of ours.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_must_be_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let message = crate::exit::one_line(&check_mountpoint(&missing).unwrap_err());
        assert!(message.contains("does not exist"), "{message}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let message = crate::exit::one_line(&check_mountpoint(&file).unwrap_err());
        assert!(message.contains("not a directory"), "{message}");
        let message = crate::exit::one_line(&check_mountpoint(dir.path()).unwrap_err());
        assert!(message.contains("not empty"), "{message}");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        check_mountpoint(&empty).unwrap();
    }
}
