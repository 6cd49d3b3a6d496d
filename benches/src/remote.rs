//! Reaching the test servers (`scripts/servers/*.sh`) through the
//! latency proxy ([`crate::wan`]): each tool's URL for a repository behind
//! it, and an SSH `known_hosts` naming the proxy's port.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// A server variable the test scripts export.
///
/// # Errors
/// When it is missing, naming the script that sets it.
pub fn env(name: &str) -> Result<String, String> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set: run this through its benches/*.sh script"))
}

/// `host:port` resolved.
///
/// # Errors
/// When it does not resolve.
pub fn address(host: &str, port: &str) -> Result<SocketAddr, String> {
    format!("{host}:{port}")
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host}:{port} does not resolve"))
}

/// A `known_hosts` file in `work` holding the SFTP test server's key under
/// the proxy's port, so both tools verify the host key through the proxy.
///
/// # Errors
/// The server's `known_hosts` unreadable or empty; the file not written.
pub fn proxied_known_hosts(work: &Path, proxy: SocketAddr) -> Result<PathBuf, String> {
    let original = std::fs::read_to_string(env("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS")?)
        .map_err(|e| e.to_string())?;
    let key = original
        .lines()
        .next()
        .and_then(|l| l.split_once(' '))
        .map(|(_, key)| key.to_string())
        .ok_or("empty known_hosts")?;
    let path = work.join(format!("known_hosts-{}", proxy.port()));
    std::fs::write(&path, format!("[127.0.0.1]:{} {key}\n", proxy.port()))
        .map_err(|e| e.to_string())?;
    Ok(path)
}

/// A server behind the proxy.
pub struct Remote {
    /// `s3` or `sftp`.
    pub protocol: String,
    /// The proxy in front of the server.
    pub proxy: SocketAddr,
    /// SFTP: known_hosts naming the proxy's port.
    pub known_hosts: Option<PathBuf>,
}

impl Remote {
    /// Lifeboat's destination URL for `repo` through the proxy.
    ///
    /// # Errors
    /// A server variable missing.
    pub fn lifeboat_url(&self, repo: &str) -> Result<String, String> {
        Ok(match self.protocol.as_str() {
            "s3" => format!(
                "s3://{}/{repo}?endpoint=http://{}&region=us-east-1",
                env("LIFEBOAT_TEST_S3_BUCKET")?,
                self.proxy
            ),
            _ => format!(
                "sftp://{}@127.0.0.1:{}{}/{repo}?known_hosts={}&identity={}",
                env("LIFEBOAT_TEST_SFTP_USER")?,
                self.proxy.port(),
                env("LIFEBOAT_TEST_SFTP_ROOT")?,
                self.known_hosts
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display(),
                env("LIFEBOAT_TEST_SFTP_IDENTITY")?,
            ),
        })
    }

    /// restic's repository and extra options through the proxy.
    ///
    /// # Errors
    /// A server variable missing.
    pub fn restic_repo(&self, repo: &str) -> Result<(String, Vec<String>), String> {
        Ok(match self.protocol.as_str() {
            "s3" => (
                format!(
                    "s3:http://{}/{}/{repo}",
                    self.proxy,
                    env("LIFEBOAT_TEST_S3_BUCKET")?
                ),
                Vec::new(),
            ),
            _ => {
                let user = env("LIFEBOAT_TEST_SFTP_USER")?;
                let command = format!(
                    "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes {user}@127.0.0.1 -s sftp",
                    self.proxy.port(),
                    env("LIFEBOAT_TEST_SFTP_IDENTITY")?,
                    self.known_hosts.as_deref().unwrap_or(Path::new("")).display(),
                );
                (
                    format!(
                        "sftp:{user}@127.0.0.1:{}/{repo}",
                        env("LIFEBOAT_TEST_SFTP_ROOT")?
                    ),
                    vec!["-o".into(), format!("sftp.command={command}")],
                )
            }
        })
    }
}
