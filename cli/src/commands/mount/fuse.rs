//! The FUSE glue of `mount`: each kernel request becomes one call to the
//! engine's [`MountFs`] and its answer the reply.
//!
//! The session reads requests on its own threads and answers what the
//! engine has in memory on the spot (attributes, links, listings, lookups
//! in a cached directory, reads of cached blobs: nearly every request once
//! read-ahead runs, and no thread hand-off for them). A request that must
//! wait for the repository moves its reply into a task on the command's
//! tokio runtime and is answered from there, so a slow read never holds up
//! the requests behind it.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek,
    ReplyOpen, ReplyXattr, Request,
};
use lifeboat_engine::mount::{Attr, FileKind, FsError, MountFs};

/// Read-ahead the kernel may do on its own within a file, in bytes (it asks
/// for the following pages while the reader consumes these).
const KERNEL_READ_AHEAD: u32 = 1 << 20;
/// Reads the kernel may have outstanding in the background (read-ahead):
/// enough for several files' first reads to be in flight at once.
const BACKGROUND_REQUESTS: u16 = 64;

/// The file system the session serves.
pub struct Fuse {
    fs: MountFs,
    runtime: tokio::runtime::Handle,
    /// Listing a made-up directory reads the snapshot list again when it is
    /// older than this.
    fresh: Duration,
    /// The kernel opens files without asking (zero-message opens): it is
    /// told so by the first open's ENOSYS.
    no_open: bool,
}

impl Fuse {
    /// The glue for `fs`, answering from tasks on `runtime`.
    pub fn new(fs: MountFs, runtime: tokio::runtime::Handle, fresh: Duration) -> Self {
        Fuse {
            fs,
            runtime,
            fresh,
            no_open: false,
        }
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Directory => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

/// A C library `dev_t` in the kernel's 32-bit form (`new_encode_dev`): the
/// minor's low byte, the major, then the minor's high bits.
fn kernel_rdev(dev: u64) -> u32 {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: kernel_rdev(a.rdev),
        blksize: 4096,
        flags: 0,
    }
}

/// The errno for `e`; a repository failure is also logged, since the
/// reader only sees "input/output error".
fn errno(e: &FsError, what: &str) -> Errno {
    if let FsError::Repository(cause) = e {
        tracing::warn!("{what}: {cause}");
    }
    Errno::from_i32(e.errno())
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each is asked for alone: a kernel without one still mounts.
        for wanted in [
            // Listings carry the attributes: `ls -l` and `tar` need no
            // lookup per entry.
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            // A link's target never changes under its inode number.
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(wanted);
        }
        if let Err(most) = config.set_max_readahead(KERNEL_READ_AHEAD) {
            let _ = config.set_max_readahead(most);
        }
        let _ = config.set_max_background(BACKGROUND_REQUESTS);
        // Reads go by inode and a file never changes: where the kernel can
        // open files itself (keeping their cached pages), every open and
        // release it would send is a request saved.
        self.no_open = config
            .capabilities()
            .contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let reply = match self.fs.try_lookup(parent.0, name.as_bytes()) {
            Some(Ok(a)) => return reply.entry(&a.ttl, &file_attr(&a), Generation(0)),
            Some(Err(e)) => return reply.error(errno(&e, &name.to_string_lossy())),
            None => reply,
        };
        let (fs, name) = (self.fs.clone(), name.as_bytes().to_vec());
        self.runtime.spawn(async move {
            match fs.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&a.ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e, &String::from_utf8_lossy(&name))),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&a.ttl, &file_attr(&a)),
            Err(e) => reply.error(errno(&e, "getattr")),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e, "readlink")),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        if self.no_open {
            reply.error(Errno::ENOSYS);
            return;
        }
        match self.fs.open(ino.0) {
            // The content never changes: the kernel keeps its pages from one
            // open to the next.
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e, "open")),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let reply = match self.fs.try_read(ino.0, offset, size) {
            Some(Ok(bytes)) => return reply.data(&bytes),
            Some(Err(e)) => return reply.error(errno(&e, "read")),
            None => reply,
        };
        let fs = self.fs.clone();
        self.runtime.spawn(async move {
            match fs.read(ino.0, offset, size).await {
                Ok(bytes) => reply.data(&bytes),
                Err(e) => reply.error(errno(&e, "read")),
            }
        });
    }

    // What follows answers requests that have nothing to do on a read-only
    // file system without extended attributes, so the library does not log
    // each as "not implemented".

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush; ENOSYS tells the kernel to stop sending them.
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _data: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        // No attributes: an empty list.
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Only the mounting user reaches the file system at all, and the
        // kernel refuses writes on a read-only mount itself.
        reply.ok();
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        // The kernel's own lseek then serves (no SEEK_DATA/SEEK_HOLE map).
        reply.error(Errno::ENOSYS);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let answer = |reply: ReplyOpen, opened: Result<(u64, bool), FsError>| match opened {
            Ok((fh, cacheable)) => {
                // A snapshot's listing never changes: the kernel may keep it.
                let flags = if cacheable {
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags);
            }
            Err(e) => reply.error(errno(&e, "opendir")),
        };
        if let Some(opened) = self.fs.try_opendir(ino.0, self.fresh) {
            return answer(reply, opened);
        }
        let (fs, fresh) = (self.fs.clone(), self.fresh);
        self.runtime
            .spawn(async move { answer(reply, fs.opendir(ino.0, fresh).await) });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.fs.readdir(fh.0, offset, |e| {
            reply.add(
                INodeNo(e.ino),
                e.next,
                file_type(e.kind),
                OsStr::from_bytes(e.name),
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "readdir")),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listed = self.fs.readdirplus(fh.0, offset, |e, a| {
            reply.add(
                INodeNo(e.ino),
                e.next,
                OsStr::from_bytes(e.name),
                &a.ttl,
                &file_attr(a),
                Generation(0),
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "readdirplus")),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_rdev;

    #[test]
    fn device_numbers_in_the_kernels_form() {
        // /dev/null is 1:3, /dev/sda 8:0; a minor past 255 keeps its high bits apart.
        assert_eq!(kernel_rdev(libc::makedev(1, 3)), 0x103);
        assert_eq!(kernel_rdev(libc::makedev(8, 0)), 0x800);
        assert_eq!(kernel_rdev(libc::makedev(259, 0x1234)), 0x0121_0334);
    }
}
