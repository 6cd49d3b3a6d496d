//! Writing a new file durably: the whole content, then `fsync`.
//!
//! Large objects (packs) are written with `O_DIRECT` where the file system
//! allows it: the bytes go from an aligned buffer straight to the device
//! instead of being copied into the page cache first. A backup writes each
//! pack once and does not read it again, so the copy only cost CPU (it was a
//! tenth of a first backup's CPU on a VM whose fresh page-cache pages are
//! expensive) and evicted the user's working set. File systems without
//! `O_DIRECT` (tmpfs, some FUSE and network mounts) get buffered writes.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::io::AsRawFd;

use rustix::fs::{AtFlags, Mode, OFlags};

/// Objects at least this large are written with `O_DIRECT` when possible.
const DIRECT_MIN: usize = 1 << 20;
/// Alignment of buffer, offsets and lengths for `O_DIRECT` (covers 512-byte
/// and 4 KiB logical blocks).
const ALIGN: usize = 4096;
/// Bytes copied into the aligned buffer and written per call.
const PIECE: usize = 4 << 20;

/// Creates `name` in the directory `dir` (it must not exist, and a symlink
/// there is never followed), owner-only, writes `data` and syncs it.
pub(crate) fn write_new_file_at(dir: impl AsFd, name: &str, data: &[u8]) -> std::io::Result<()> {
    let dir = dir.as_fd();
    if data.len() >= DIRECT_MIN {
        match write_direct(create_at(dir, name, OFlags::DIRECT)?, data) {
            Ok(()) => return Ok(()),
            // Not supported here: start again with a buffered write.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
            }
            Err(e) => return Err(e),
        }
    }
    let mut file = create_at(dir, name, OFlags::empty())?;
    file.write_all(data)?;
    file.sync_all()
}

/// A new file `name` in `dir`: create-only, never through a symlink,
/// owner-only.
fn create_at(dir: std::os::fd::BorrowedFd<'_>, name: &str, extra: OFlags) -> std::io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(crate::private::FILE_MODE);
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags | extra,
        mode,
    )?))
}

fn write_direct(mut file: File, data: &[u8]) -> std::io::Result<()> {
    let aligned = data.len() / ALIGN * ALIGN;
    // An aligned window inside a plain Vec: no unsafe allocation needed.
    let mut raw = vec![0u8; PIECE.min(aligned) + ALIGN];
    let start = raw.as_ptr().align_offset(ALIGN);
    let buf = &mut raw[start..start + PIECE.min(aligned)];
    for piece in data[..aligned].chunks(buf.len()) {
        buf[..piece.len()].copy_from_slice(piece);
        file.write_all(&buf[..piece.len()])?;
    }
    // The unaligned tail goes through the page cache.
    clear_direct(&file)?;
    file.write_all(&data[aligned..])?;
    file.sync_all()
}

fn clear_direct(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            DIRECT_MIN - 1,
            DIRECT_MIN,
            DIRECT_MIN + 123,
            PIECE,
            PIECE + ALIGN + 7,
            3 * PIECE - 1,
        ];
        for (n, size) in sizes.into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 + n) as u8).collect();
            let name = format!("f{n}");
            let fd = File::open(dir.path()).unwrap();
            write_new_file_at(&fd, &name, &data).unwrap();
            let path = dir.path().join(&name);
            assert_eq!(std::fs::read(&path).unwrap(), data, "size {size}");
            // Never over an existing file.
            assert!(write_new_file_at(&fd, &name, &data).is_err());
        }
    }
}
