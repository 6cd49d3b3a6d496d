//! Opening an SSH connection: host-key verification, authentication and the
//! SFTP channels that carry the requests.
//!
//! Host keys follow OpenSSH: the key must be listed for `host` (or
//! `[host]:port`) in a `known_hosts` file, or match a pinned SHA256
//! fingerprint. An unknown or changed key refuses the connection with a message
//! naming the host and the key's fingerprint; it is never accepted or learned
//! silently. Identities: the files named in the URL, else `~/.ssh/id_ed25519`,
//! `id_ecdsa` and `id_rsa`, then the keys of a running ssh-agent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::{Config as SftpConfig, RawSftpSession};
use russh_sftp::extensions;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::options::{HostKeyPolicy, SftpOptions};
use crate::error::{BackendError, ErrorKind};

/// How long a TCP connect, key exchange and login may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one SFTP request may wait for its answer before the connection is
/// considered broken. Generous: a request queues behind others on its channel.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Largest read or write payload per request. OpenSSH allows 255 KiB; the
/// client refuses incoming packets above 256 KiB, headers included.
const MAX_IO_CHUNK: u64 = 255 * 1024;

/// Chunk size when the server does not announce `limits@openssh.com`
/// (the SFTP draft guarantees 32 KiB).
const DEFAULT_IO_CHUNK: u64 = 32 * 1024;

/// One live SSH connection and its SFTP channels.
pub(crate) struct Connection {
    /// Tells connections apart, so a failure on an old one does not drop a new one.
    pub id: u64,
    ssh: Handle<ClientHandler>,
    channels: Vec<(RawSftpSession, Semaphore)>,
    next: AtomicUsize,
    /// The server supports `hardlink@openssh.com` (create-only publish).
    pub hardlink: bool,
    /// The server supports `fsync@openssh.com`.
    pub fsync: bool,
    /// Bytes per read request.
    pub read_chunk: u32,
    /// Bytes per write request.
    pub write_chunk: usize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("channels", &self.channels.len())
            .field("hardlink", &self.hardlink)
            .field("fsync", &self.fsync)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// An SFTP channel for one operation, round-robin. Requests on one channel
    /// are pipelined; the channels run in parallel on the server.
    ///
    /// At most [`OPS_PER_CHANNEL`] operations share a channel at once, which
    /// keeps OpenSSH's handle numbers below 128: russh-sftp decodes handles as
    /// UTF-8 (lossily), so a handle byte of 0x80 or more would be corrupted.
    pub async fn channel(&self) -> Lease<'_> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        let (session, gate) = &self.channels[i];
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = gate.acquire().await.ok();
        Lease {
            session,
            _permit: permit,
        }
    }

    /// True once the SSH transport has ended.
    pub fn is_closed(&self) -> bool {
        self.ssh.is_closed()
    }
}

/// Operations (each holding at most one file handle) sharing one channel at once.
const OPS_PER_CHANNEL: usize = 64;

/// One SFTP channel, lent to one operation.
pub(crate) struct Lease<'a> {
    session: &'a RawSftpSession,
    _permit: Option<SemaphorePermit<'a>>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = RawSftpSession;

    fn deref(&self) -> &RawSftpSession {
        self.session
    }
}

/// Checks the server key; records why it was refused.
struct ClientHandler {
    opts: Arc<SftpOptions>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            self.refuse(format!(
                "host {} presented a host certificate; lifeboat checks plain host keys only \
                 (known_hosts or fingerprint=)",
                self.opts.host_label()
            ));
            return Ok(false);
        };
        let opts = Arc::clone(&self.opts);
        let key = key.clone();
        // known_hosts is a file read: keep it off the async workers.
        let verdict = tokio::task::spawn_blocking(move || verify_host_key(&opts, &key))
            .await
            .unwrap_or_else(|e| Err(format!("host key check failed: {e}")));
        match verdict {
            Ok(()) => Ok(true),
            Err(reason) => {
                self.refuse(reason);
                Ok(false)
            }
        }
    }
}

impl ClientHandler {
    fn refuse(&self, reason: String) {
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(reason);
        }
    }
}

/// Accepts `key` for the destination's host, or says why not.
fn verify_host_key(opts: &SftpOptions, key: &PublicKey) -> Result<(), String> {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let host = opts.host_label();
    let algo = key.algorithm();
    match &opts.host_key {
        HostKeyPolicy::Fingerprint(pinned) => {
            let offered = fingerprint.trim_start_matches("SHA256:");
            if offered == pinned {
                Ok(())
            } else {
                Err(format!(
                    "host key verification failed: {host} offered {algo} key {fingerprint}, \
                     but the destination pins SHA256:{pinned}; refusing to connect \
                     (the server was re-keyed or someone is intercepting the connection)"
                ))
            }
        }
        HostKeyPolicy::KnownHosts(file) if !file.exists() => Err(format!(
            "host key verification failed: the known_hosts file {} does not exist; add the \
             server's key to it (ssh-keyscan{port} {h} >> {f}) or pin it with ?fingerprint={fingerprint}",
            file.display(),
            port = if opts.port == 22 {
                String::new()
            } else {
                format!(" -p {}", opts.port)
            },
            h = opts.host,
            f = file.display(),
        )),
        HostKeyPolicy::KnownHosts(file) => {
            match russh::keys::check_known_hosts_path(&opts.host, opts.port, key, file) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!(
                    "host key verification failed: {host} offered {algo} key {fingerprint}, \
                     which is not in {file}; refusing to connect. If that is the server's key, \
                     add it (ssh-keyscan{port} {h} >> {file}) or pin it with \
                     ?fingerprint={fingerprint}",
                    file = file.display(),
                    port = if opts.port == 22 {
                        String::new()
                    } else {
                        format!(" -p {}", opts.port)
                    },
                    h = opts.host,
                )),
                Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                    "HOST KEY MISMATCH: {host} offered {algo} key {fingerprint}, which differs \
                     from the key recorded for it at {}:{line}; refusing to connect (someone \
                     may be intercepting the connection, or the host key was changed)",
                    file.display()
                )),
                Err(e) => Err(format!(
                    "host key verification failed: cannot check {host} ({algo} key \
                     {fingerprint}) against {}: {e}",
                    file.display()
                )),
            }
        }
    }
}

/// Connects, verifies the host, logs in and opens the SFTP channels.
///
/// # Errors
/// `Permanent` for a refused host key, failed authentication or a server without
/// SFTP; `Transient` for network failures and timeouts. Errors carry key `""`.
pub(crate) async fn connect(
    name: &str,
    opts: &Arc<SftpOptions>,
    id: u64,
) -> Result<Connection, BackendError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(name, opts, id)).await {
        Ok(result) => result,
        Err(elapsed) => Err(BackendError::new(
            ErrorKind::Transient,
            name,
            "",
            format!(
                "connecting to {} timed out after {} s",
                opts.host_label(),
                CONNECT_TIMEOUT.as_secs()
            ),
        )
        .with_source(elapsed)),
    }
}

async fn connect_inner(
    name: &str,
    opts: &Arc<SftpOptions>,
    id: u64,
) -> Result<Connection, BackendError> {
    let err = |kind: ErrorKind, detail: String| BackendError::new(kind, name, "", detail);
    let config = client::Config {
        // Notice a dead peer within a minute instead of hanging on it.
        keepalive_interval: Some(Duration::from_secs(20)),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        // AES-GCM first: with AES instructions it costs a fraction of
        // ChaCha20-Poly1305's CPU on bulk transfers (OpenSSH offers both).
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::AES_256_GCM,
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_CTR,
            ]),
            ..russh::Preferred::DEFAULT
        },
        ..Default::default()
    };
    let refusal = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        opts: Arc::clone(opts),
        refusal: Arc::clone(&refusal),
    };
    let addr = (opts.host.as_str(), opts.port);
    let mut ssh = match client::connect(Arc::new(config), addr, handler).await {
        Ok(handle) => handle,
        Err(e) => {
            let refused = refusal.lock().ok().and_then(|mut r| r.take());
            if let Some(reason) = refused {
                return Err(err(ErrorKind::Permanent, reason).with_source(e));
            }
            let kind = ssh_error_kind(&e);
            return Err(err(
                kind,
                format!("cannot connect to {}: {e}", opts.host_label()),
            )
            .with_source(e));
        }
    };
    authenticate(&mut ssh, opts)
        .await
        .map_err(|(kind, detail)| err(kind, detail))?;

    let sftp_config = SftpConfig {
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..SftpConfig::default()
    };
    let mut channels = Vec::with_capacity(opts.channels);
    let mut hardlink = false;
    let mut fsync = false;
    let mut limits = Limits::default();
    for n in 0..opts.channels {
        let channel = ssh.channel_open_session().await.map_err(|e| {
            err(
                ssh_error_kind(&e),
                format!("cannot open an SSH channel: {e}"),
            )
            .with_source(e)
        })?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| {
            err(
                ErrorKind::Permanent,
                format!("the server refused the sftp subsystem: {e}"),
            )
            .with_source(e)
        })?;
        let mut session =
            RawSftpSession::new_with_config(channel.into_stream(), sftp_config.clone());
        let version = session.init().await.map_err(|e| {
            err(
                ErrorKind::Transient,
                format!("SFTP handshake with {} failed: {e}", opts.host_label()),
            )
            .with_source(e)
        })?;
        if n == 0 {
            let has = |ext: &str, ver: &str| version.extensions.get(ext).is_some_and(|v| v == ver);
            hardlink = has(extensions::HARDLINK, "1");
            fsync = has(extensions::FSYNC, "1");
            if has(extensions::LIMITS, "1") {
                if let Ok(reply) = session.limits().await {
                    limits = Limits::from(reply);
                }
            }
        }
        session.set_limits(limits);
        channels.push((session, Semaphore::new(OPS_PER_CHANNEL)));
    }
    let chunk = |limit: Option<u64>| limit.unwrap_or(DEFAULT_IO_CHUNK).clamp(1024, MAX_IO_CHUNK);
    Ok(Connection {
        id,
        ssh,
        channels,
        next: AtomicUsize::new(0),
        hardlink,
        fsync,
        read_chunk: u32::try_from(chunk(limits.read_len)).unwrap_or(32 * 1024),
        write_chunk: usize::try_from(chunk(limits.write_len)).unwrap_or(32 * 1024),
    })
}

/// Sorts an SSH-level failure: network trouble is worth a retry, the rest is not.
fn ssh_error_kind(e: &russh::Error) -> ErrorKind {
    use russh::Error as E;
    match e {
        E::IO(_)
        | E::Disconnect
        | E::HUP
        | E::ConnectionTimeout
        | E::KeepaliveTimeout
        | E::InactivityTimeout
        | E::SendError
        | E::RecvError
        | E::Elapsed(_)
        | E::Pending => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// Tries the URL's identities (or the default ones), then the ssh-agent.
async fn authenticate(
    ssh: &mut Handle<ClientHandler>,
    opts: &SftpOptions,
) -> Result<(), (ErrorKind, String)> {
    let user = opts.user.as_str();
    let explicit = !opts.identities.is_empty();
    let candidates: Vec<PathBuf> = if explicit {
        opts.identities.clone()
    } else {
        dirs::home_dir()
            .map(|home| {
                ["id_ed25519", "id_ecdsa", "id_rsa"]
                    .iter()
                    .map(|f| home.join(".ssh").join(f))
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default()
    };
    let transport = |e: russh::Error| {
        (
            ssh_error_kind(&e),
            format!(
                "authentication as {user} on {} failed: {e}",
                opts.host_label()
            ),
        )
    };
    let mut tried = Vec::new();
    for path in &candidates {
        let key = match load_key(path).await {
            Ok(key) => key,
            Err(reason) if explicit => {
                return Err((
                    ErrorKind::Permanent,
                    format!("cannot use identity {}: {reason}", path.display()),
                ))
            }
            Err(reason) => {
                tried.push(format!("{} ({reason})", path.display()));
                continue;
            }
        };
        let hash = if key.algorithm().is_rsa() {
            ssh.best_supported_rsa_hash()
                .await
                .map_err(transport)?
                .flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        match ssh
            .authenticate_publickey(user, key)
            .await
            .map_err(transport)?
        {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure { .. } => tried.push(format!("{} (refused)", path.display())),
        }
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for identity in identities {
                    let AgentIdentity::PublicKey { key, .. } = identity else {
                        continue;
                    };
                    let hash = if key.algorithm().is_rsa() {
                        ssh.best_supported_rsa_hash()
                            .await
                            .map_err(transport)?
                            .flatten()
                    } else {
                        None
                    };
                    let fingerprint = key.fingerprint(HashAlg::Sha256);
                    match ssh
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                    {
                        Ok(AuthResult::Success) => return Ok(()),
                        Ok(AuthResult::Failure { .. }) => {
                            tried.push(format!("agent key {fingerprint} (refused)"));
                        }
                        Err(e) => tried.push(format!("agent key {fingerprint} ({e})")),
                    }
                }
            }
            Err(e) => tried.push(format!("ssh-agent ({e})")),
        }
    }
    let tried = if tried.is_empty() {
        "no identity found: give ?identity=FILE, create ~/.ssh/id_ed25519 or start ssh-agent"
            .to_string()
    } else {
        format!("tried {}", tried.join(", "))
    };
    Err((
        ErrorKind::Permanent,
        format!(
            "authentication as {user} on {} failed; {tried}",
            opts.host_label()
        ),
    ))
}

/// Reads an unencrypted OpenSSH private key (encrypted keys belong in ssh-agent).
async fn load_key(path: &Path) -> Result<russh::keys::PrivateKey, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| e.to_string())?;
    russh::keys::decode_secret_key(&text, None).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => {
            "the key is passphrase-protected; load it into ssh-agent instead".to_string()
        }
        e => e.to_string(),
    })
}
