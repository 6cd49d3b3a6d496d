//! The bounded channel between a dump's reads (async) and its writer (a
//! thread of its own, since archive encoders and pipes block).

use std::io::{Read, Write};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::format::tree::Node;

/// Messages in flight at most: with [`super::READ_AHEAD`] blobs being read,
/// memory stays at a few dozen blobs.
const DEPTH: usize = 16;

/// What the walk sends the writer.
pub(super) enum Message {
    /// An archive entry; a file's content follows as [`Message::Data`],
    /// exactly its size, unless `link_to` names the entry it is a hard
    /// link to.
    Entry {
        /// Its name in the archive (raw bytes, relative).
        name: Vec<u8>,
        /// Its metadata (a file's content list emptied).
        node: Box<Node>,
        /// The first name of the same file, for a hard link.
        link_to: Option<Vec<u8>>,
    },
    /// Verified content bytes.
    Data(Vec<u8>),
    /// Everything was sent: the archive may be finished. A channel that
    /// closes without it means the walk failed, and the archive is left
    /// without its end (so no reader takes it for complete).
    End,
}

/// The walk's end of the channel.
pub(super) struct Sender(mpsc::Sender<Message>);

impl Sender {
    /// Sends one message, waiting while the writer is behind.
    ///
    /// # Errors
    /// When the writer stopped (its own error is the one reported).
    pub async fn send(&self, message: Message) -> Result<()> {
        self.0
            .send(message)
            .await
            .map_err(|_| Error::internal("the dump's writer stopped"))
    }
}

/// The writer's end: blocking reads.
pub(super) struct Receiver(mpsc::Receiver<Message>);

impl Receiver {
    /// The next message; `None` when the walk is done.
    pub fn next(&mut self) -> Option<Message> {
        self.0.blocking_recv()
    }

    /// A reader of the next `size` content bytes.
    pub fn content(&mut self, size: u64) -> Content<'_> {
        Content {
            rx: self,
            remaining: size,
            buffer: Vec::new(),
            at: 0,
        }
    }
}

/// The writer's thread, until it finishes.
pub(super) struct Writer(oneshot::Receiver<Result<u64>>);

impl Writer {
    /// Waits for the writer; its result (the entries it had to leave out).
    ///
    /// # Errors
    /// The writer's failure.
    pub async fn join(self) -> Result<u64> {
        self.0
            .await
            .unwrap_or_else(|_| Err(Error::internal("the dump's writer panicked")))
    }
}

/// Starts `write` on a thread of its own.
pub(super) fn spawn(
    write: impl FnOnce(Receiver) -> Result<u64> + Send + 'static,
) -> (Sender, Writer) {
    let (tx, rx) = mpsc::channel(DEPTH);
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(write(Receiver(rx)));
    });
    (Sender(tx), Writer(done_rx))
}

/// One file's content as a [`Read`]: exactly the size its header states.
pub(super) struct Content<'a> {
    rx: &'a mut Receiver,
    remaining: u64,
    buffer: Vec<u8>,
    at: usize,
}

impl Read for Content<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buffer.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            match self.rx.next() {
                Some(Message::Data(bytes)) if bytes.len() as u64 <= self.remaining => {
                    self.remaining -= bytes.len() as u64;
                    self.buffer = bytes;
                    self.at = 0;
                }
                _ => {
                    // The walk stopped (a read failed) or sent more than the
                    // header said: the archive must not look complete.
                    return Err(std::io::Error::other("a file's content ended early"));
                }
            }
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A single file's bytes, as they are.
pub(super) fn copy_raw(mut rx: Receiver, mut out: impl Write) -> Result<u64> {
    loop {
        match rx.next() {
            Some(Message::Data(bytes)) => out.write_all(&bytes).map_err(Error::Output)?,
            Some(Message::End) => break,
            Some(Message::Entry { .. }) => {
                return Err(Error::internal("dump: an entry in a raw file"))
            }
            None => return Err(stopped()),
        }
    }
    out.flush().map_err(Error::Output)?;
    Ok(0)
}

/// The error of a writer whose walk stopped before [`Message::End`] (the
/// walk's own error is the one reported).
pub(super) fn stopped() -> Error {
    Error::internal("the dump stopped before its end")
}

/// The output, behind a gate that an aborted archive closes before its
/// encoder is dropped: tar's and zip's encoders write their trailer when
/// dropped, and a failed dump must not end like a complete archive.
pub(super) struct Gated<W> {
    inner: W,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<W: Write> Gated<W> {
    /// `inner` and the handle that closes the gate.
    pub fn new(inner: W) -> (Self, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        (
            Gated {
                inner,
                open: open.clone(),
            },
            open,
        )
    }

    fn check(&self) -> std::io::Result<()> {
        if self.open.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err(std::io::Error::other("dump aborted"))
        }
    }
}

impl<W: Write> Write for Gated<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.check()?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.check()?;
        self.inner.flush()
    }
}
