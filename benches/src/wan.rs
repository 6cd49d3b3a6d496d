//! A TCP proxy that makes a loopback server look like one across the
//! internet: every byte is delayed by half the round trip each way, and
//! each direction is one shared pipe of a set bandwidth (all connections
//! through the proxy queue for it, as they would for a home uplink).
//!
//! Bytes are read in chunks; a chunk leaves the pipe once the bytes queued
//! before it have (bandwidth) and arrives half a round trip later (latency).
//! A connection queues at most [`QUEUED_CHUNKS`] chunks per direction, so a
//! fast sender is held back by TCP flow control as it would be by a real
//! link, not buffered without bound.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks waiting in one direction of one connection, at most.
pub const QUEUED_CHUNKS: usize = 16;
/// The largest chunk read at once.
const CHUNK: usize = 16 * 1024;

/// The link the proxy imitates.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Round-trip time added.
    pub rtt: Duration,
    /// Bandwidth of each direction, bits per second.
    pub bits_per_second: u64,
}

/// One direction of the link, shared by every connection.
struct Pipe {
    /// When the pipe finishes sending what is queued.
    free_at: Mutex<Instant>,
    link: Link,
}

impl Pipe {
    /// When `bytes` queued now arrive at the other end.
    fn arrival(&self, bytes: usize) -> Instant {
        let sending =
            Duration::from_secs_f64(bytes as f64 * 8.0 / self.link.bits_per_second as f64);
        let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let start = if *free_at > now { *free_at } else { now };
        *free_at = start + sending;
        *free_at + self.link.rtt / 2
    }
}

/// Starts a proxy on 127.0.0.1 (a free port) in front of `upstream`, on the
/// current tokio runtime; returns its address. It runs until the runtime
/// stops.
///
/// # Errors
/// When no port can be bound.
pub async fn start(upstream: SocketAddr, link: Link) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let up = Arc::new(Pipe {
        free_at: Mutex::new(Instant::now()),
        link,
    });
    let down = Arc::new(Pipe {
        free_at: Mutex::new(Instant::now()),
        link,
    });
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (up, down) = (up.clone(), down.clone());
            tokio::spawn(async move {
                // A new connection costs a round trip (the handshake) before
                // its first bytes can go out.
                tokio::time::sleep(link.rtt).await;
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    carry(client_read, server_write, up),
                    carry(server_read, client_write, down),
                );
            });
        }
    });
    Ok(address)
}

/// Moves bytes from `from` to `to` through `pipe`, closing `to`'s write
/// side once `from` ends.
async fn carry(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    pipe: Arc<Pipe>,
) {
    let (queue, mut arrivals) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let at = pipe.arrival(n);
            if queue.send((at, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = arrivals.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
