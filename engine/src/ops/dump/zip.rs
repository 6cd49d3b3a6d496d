//! A dump as a zip stream (deflated, with data descriptors, so nothing is
//! sought back): modes, modification times, symlinks. Zip holds no owners,
//! devices or pipes (left out and counted), stores hard links as copies,
//! and names must be UTF-8.

use std::io::Write;

use zip::write::SimpleFileOptions;

use super::channel::{stopped, Gated, Message, Receiver};
use crate::error::{Error, Result};
use crate::format::tree::NodeKind;

/// Writes the entries `rx` brings as a zip stream to `out`; returns the
/// number of entries left out.
pub(super) fn write(mut rx: Receiver, out: impl Write) -> Result<u64> {
    let (gated, gate) = Gated::new(out);
    let mut zip = zip::ZipWriter::new_stream(gated);
    match entries(&mut rx, &mut zip) {
        Ok(skipped) => {
            zip.finish()
                .map_err(zip_error)?
                .into_inner()
                .flush()
                .map_err(Error::Output)?;
            Ok(skipped)
        }
        Err(e) => {
            // No central directory: a reader must see a truncated archive.
            gate.store(false, std::sync::atomic::Ordering::Relaxed);
            drop(zip);
            Err(e)
        }
    }
}

fn entries<W: Write>(
    rx: &mut Receiver,
    zip: &mut zip::ZipWriter<zip::write::StreamWriter<W>>,
) -> Result<u64> {
    let mut skipped = 0;
    loop {
        let (name, node) = match rx.next() {
            Some(Message::Entry { name, node, .. }) => (name, node),
            Some(Message::End) => return Ok(skipped),
            Some(Message::Data(_)) => {
                return Err(Error::internal("dump: content without an entry"))
            }
            None => return Err(stopped()),
        };
        let name = utf8(name)?;
        let options = SimpleFileOptions::default()
            .unix_permissions(node.mode)
            .last_modified_time(zip_time(node.mtime));
        match &node.kind {
            NodeKind::File { .. } => {
                let options = options
                    .compression_method(zip::CompressionMethod::Deflated)
                    .large_file(node.size >= u64::from(u32::MAX));
                zip.start_file(name, options).map_err(zip_error)?;
                std::io::copy(&mut rx.content(node.size), zip).map_err(Error::Output)?;
            }
            NodeKind::Dir { .. } => zip.add_directory(name, options).map_err(zip_error)?,
            NodeKind::Symlink { target } => {
                let target = utf8(target.clone())?;
                zip.add_symlink(name, target, options).map_err(zip_error)?;
            }
            _ => skipped += 1,
        }
    }
}

fn utf8(name: Vec<u8>) -> Result<String> {
    String::from_utf8(name).map_err(|e| {
        Error::InvalidInput(format!(
            "{:?} is not UTF-8, which zip cannot hold; use --archive tar",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })
}

fn zip_error(e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(io) => Error::Output(io),
        other => Error::Output(std::io::Error::other(other)),
    }
}

/// A modification time in zip's DOS form (local 1980-2107, two-second
/// steps); times outside that range become its nearest end.
fn zip_time(seconds: i64) -> zip::DateTime {
    let t = time::OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let clamp = |t: time::OffsetDateTime| {
        zip::DateTime::from_date_and_time(
            t.year().clamp(1980, 2107) as u16,
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
        )
    };
    match t.year() {
        ..1980 => zip::DateTime::default(),
        2108.. => zip::DateTime::from_date_and_time(2107, 12, 31, 23, 59, 58).unwrap_or_default(),
        _ => clamp(t).unwrap_or_default(),
    }
}
