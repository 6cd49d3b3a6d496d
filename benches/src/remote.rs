//! How the end-to-end benchmarks reach the test servers that
//! `scripts/servers/*.sh` start (S3 on moto, SFTP on OpenSSH): directly, or
//! through the latency proxy of [`crate::wan`], with the repository URL each
//! tool takes.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// A variable the server scripts export.
///
/// # Errors
/// When it is missing: the benchmark was not started by its script.
pub fn env(name: &str) -> Result<String, String> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set: run this through its benches/*.sh script"))
}

fn address(host: &str, port: &str) -> Result<SocketAddr, String> {
    format!("{host}:{port}")
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host}:{port} does not resolve"))
}

/// The test server of `protocol` (`s3` or `sftp`) on loopback.
///
/// # Errors
/// An unknown protocol, or the server's variables missing.
pub fn upstream(protocol: &str) -> Result<SocketAddr, String> {
    match protocol {
        "s3" => {
            let endpoint = env("LIFEBOAT_TEST_S3_ENDPOINT")?;
            let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
            let (host, port) = hostport.rsplit_once(':').ok_or("bad S3 endpoint")?;
            address(host, port)
        }
        "sftp" => address(
            &env("LIFEBOAT_TEST_SFTP_HOST")?,
            &env("LIFEBOAT_TEST_SFTP_PORT")?,
        ),
        other => Err(format!("unknown protocol {other:?} (s3, sftp)")),
    }
}

/// One protocol's server as the tools reach it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `s3` or `sftp`.
    pub protocol: String,
    /// Where to connect: the server, or a proxy in front of it.
    pub address: SocketAddr,
    /// SFTP: a known_hosts file naming `address`.
    pub known_hosts: Option<PathBuf>,
}

impl Remote {
    /// `protocol`'s server reached at `address` (the server itself, or a
    /// proxy in front of it; for SFTP through a proxy, a known_hosts file
    /// naming the proxy's port is written under `work`).
    ///
    /// # Errors
    /// The server's variables missing; the known_hosts file unwritable.
    pub fn new(protocol: &str, address: SocketAddr, work: &Path) -> Result<Remote, String> {
        let known_hosts = match protocol {
            "sftp" if address == upstream("sftp")? => {
                Some(PathBuf::from(env("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS")?))
            }
            "sftp" => {
                // The server's key, under the proxy's port.
                let original = std::fs::read_to_string(env("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS")?)
                    .map_err(|e| e.to_string())?;
                let key = original
                    .lines()
                    .next()
                    .and_then(|l| l.split_once(' '))
                    .map(|(_, key)| key.to_string())
                    .ok_or("empty known_hosts")?;
                let path = work.join(format!("known_hosts-{}", address.port()));
                std::fs::write(&path, format!("[127.0.0.1]:{} {key}\n", address.port()))
                    .map_err(|e| e.to_string())?;
                Some(path)
            }
            _ => None,
        };
        Ok(Remote {
            protocol: protocol.to_string(),
            address,
            known_hosts,
        })
    }

    fn known_hosts(&self) -> String {
        self.known_hosts
            .as_deref()
            .unwrap_or(Path::new(""))
            .display()
            .to_string()
    }

    /// Lifeboat's destination URL for repository `repo`.
    ///
    /// # Errors
    /// The server's variables missing.
    pub fn lifeboat_url(&self, repo: &str) -> Result<String, String> {
        Ok(match self.protocol.as_str() {
            "s3" => format!(
                "s3://{}/{repo}?endpoint=http://{}&region=us-east-1",
                env("LIFEBOAT_TEST_S3_BUCKET")?,
                self.address
            ),
            _ => format!(
                "sftp://{}@127.0.0.1:{}{}/{repo}?known_hosts={}&identity={}",
                env("LIFEBOAT_TEST_SFTP_USER")?,
                self.address.port(),
                env("LIFEBOAT_TEST_SFTP_ROOT")?,
                self.known_hosts(),
                env("LIFEBOAT_TEST_SFTP_IDENTITY")?,
            ),
        })
    }

    /// restic's repository and extra options for repository `repo`.
    ///
    /// # Errors
    /// The server's variables missing.
    pub fn restic_repo(&self, repo: &str) -> Result<(String, Vec<String>), String> {
        Ok(match self.protocol.as_str() {
            "s3" => (
                format!(
                    "s3:http://{}/{}/{repo}",
                    self.address,
                    env("LIFEBOAT_TEST_S3_BUCKET")?
                ),
                Vec::new(),
            ),
            _ => {
                let user = env("LIFEBOAT_TEST_SFTP_USER")?;
                let command = format!(
                    "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes {user}@127.0.0.1 -s sftp",
                    self.address.port(),
                    env("LIFEBOAT_TEST_SFTP_IDENTITY")?,
                    self.known_hosts(),
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
