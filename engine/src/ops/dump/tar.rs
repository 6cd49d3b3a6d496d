//! A dump as a tar stream: GNU headers (long names, owners' names), modes,
//! owners, modification times, symlinks, hard links, devices and pipes.

use std::io::Write;

use super::channel::{stopped, Gated, Message, Receiver};
use super::name_path;
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};

/// Writes the entries `rx` brings as a tar stream to `out`; returns the
/// number of entries left out (sockets, which tar cannot hold).
pub(super) fn write(mut rx: Receiver, out: impl Write) -> Result<u64> {
    let (gated, gate) = Gated::new(out);
    let mut builder = tar::Builder::new(gated);
    let result = entries(&mut rx, &mut builder);
    match result {
        Ok(skipped) => {
            builder
                .into_inner()
                .and_then(|mut w| w.flush())
                .map_err(Error::Output)?;
            Ok(skipped)
        }
        Err(e) => {
            // No end-of-archive blocks: a reader must see a truncated archive.
            gate.store(false, std::sync::atomic::Ordering::Relaxed);
            drop(builder);
            Err(e)
        }
    }
}

fn entries(rx: &mut Receiver, builder: &mut tar::Builder<impl Write>) -> Result<u64> {
    let mut skipped = 0;
    loop {
        let (name, node, link_to) = match rx.next() {
            Some(Message::Entry {
                name,
                node,
                link_to,
            }) => (name, node, link_to),
            Some(Message::End) => return Ok(skipped),
            Some(Message::Data(_)) => {
                return Err(Error::internal("dump: content without an entry"))
            }
            None => return Err(stopped()),
        };
        let path = name_path(&name);
        let mut header = header(&node);
        if node.mtime_nsec != 0 || node.mtime < 0 {
            // The header holds whole seconds from 1970 on; a PAX record
            // carries the exact time, which GNU tar and bsdtar restore.
            let exact = format!("{}.{:09}", node.mtime, node.mtime_nsec);
            let record = pax_record("mtime", &exact);
            let mut pax = tar::Header::new_ustar();
            pax.set_path("././@PaxHeader").map_err(Error::Output)?;
            pax.set_entry_type(tar::EntryType::XHeader);
            pax.set_mode(0o644);
            pax.set_size(record.len() as u64);
            pax.set_cksum();
            builder
                .append(&pax, record.as_slice())
                .map_err(Error::Output)?;
        }
        let written = match (&node.kind, link_to) {
            (NodeKind::File { .. }, Some(first)) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, path, name_path(&first))
            }
            (NodeKind::File { .. }, None) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(node.size);
                builder.append_data(&mut header, path, rx.content(node.size))
            }
            (NodeKind::Dir { .. }, _) => {
                header.set_entry_type(tar::EntryType::Directory);
                builder.append_data(&mut header, path, std::io::empty())
            }
            (NodeKind::Symlink { target }, _) => {
                header.set_entry_type(tar::EntryType::Symlink);
                builder.append_link(&mut header, path, name_path(target))
            }
            (NodeKind::BlockDevice { rdev }, _) | (NodeKind::CharDevice { rdev }, _) => {
                let block = matches!(node.kind, NodeKind::BlockDevice { .. });
                header.set_entry_type(if block {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Char
                });
                let (major, minor) = split_device(*rdev);
                header.set_device_major(major).map_err(Error::Output)?;
                header.set_device_minor(minor).map_err(Error::Output)?;
                builder.append_data(&mut header, path, std::io::empty())
            }
            (NodeKind::Fifo, _) => {
                header.set_entry_type(tar::EntryType::Fifo);
                builder.append_data(&mut header, path, std::io::empty())
            }
            (NodeKind::Socket, _) => {
                skipped += 1;
                continue;
            }
        };
        written.map_err(Error::Output)?;
    }
}

/// The metadata every entry shares.
fn header(node: &Node) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(node.mode);
    header.set_uid(u64::from(node.uid));
    header.set_gid(u64::from(node.gid));
    // Before 1970 cannot be written in a tar header's octal field.
    header.set_mtime(u64::try_from(node.mtime).unwrap_or(0));
    header.set_size(0);
    // Names too long for the header are left out: the ids are there.
    let _ = header.set_username(&node.user);
    let _ = header.set_groupname(&node.group);
    header
}

/// One PAX extended-header record: `<length> <key>=<value>\n`, where the
/// length counts the whole record, its own digits included.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut length = body + 1;
    while length != body + length.to_string().len() {
        length = body + length.to_string().len();
    }
    format!("{length} {key}={value}\n").into_bytes()
}

/// glibc's split of a device number into major and minor.
fn split_device(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pax_records_count_their_own_length() {
        let r = super::pax_record("mtime", "1700000000.123456789");
        assert_eq!(r, b"30 mtime=1700000000.123456789\n");
        assert_eq!(r.len(), 30);
        // Where the length's digits tip it over a power of ten.
        let v = "x".repeat(94);
        let r = super::pax_record("k", &v);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101 k="));
    }

    #[test]
    fn device_numbers_split_as_glibc_does() {
        // /dev/null is 1:3, /dev/sda1 8:1; a large minor uses the high bits.
        assert_eq!(super::split_device(0x103), (1, 3));
        assert_eq!(super::split_device(0x801), (8, 1));
        let dev = (0x123u64 << 8) | 0x45 | (0xabcu64 << 20);
        assert_eq!(super::split_device(dev), (0x123, 0xabc45));
    }
}
