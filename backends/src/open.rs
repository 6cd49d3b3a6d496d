//! Opening a parsed destination: the one place that knows every kind of
//! backend, so that the URL parser and the backends need not know each other.

use std::sync::Arc;

use crate::backend::Backend;
use crate::error::UrlError;
use crate::local::LocalBackend;
use crate::s3::{S3Backend, S3Options};
use crate::sftp::SftpBackend;
use crate::url::DestinationUrl;

impl DestinationUrl {
    /// Opens the destination as a backend called `name`, S3 credentials
    /// coming from the environment.
    ///
    /// # Errors
    /// As [`DestinationUrl::open_with`].
    pub fn open(&self, name: &str) -> Result<Arc<dyn Backend>, UrlError> {
        self.open_with(name, &S3Options::default())
    }

    /// Opens the destination as a backend called `name`; `s3` says where an
    /// S3 destination's credentials come from beyond the environment (other
    /// kinds have no use for it). Nothing is contacted until the first call.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] for what can only be checked now: an S3
    /// endpoint (from the URL or the environment) that is malformed or plain
    /// HTTP to a remote host; an SFTP destination without a user name or a
    /// home directory to find `known_hosts` in.
    pub fn open_with(&self, name: &str, s3: &S3Options) -> Result<Arc<dyn Backend>, UrlError> {
        Ok(match self {
            DestinationUrl::Local(path) => Arc::new(LocalBackend::new(name, path.clone())),
            DestinationUrl::S3(target) => Arc::new(S3Backend::new(name, target, s3)?),
            DestinationUrl::Sftp(target) => Arc::new(SftpBackend::new(name, target)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_opens_as_its_backend_without_contacting_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = DestinationUrl::parse(&dir.path().display().to_string()).expect("path");
        let opened = local.open("usb").expect("local");
        assert_eq!(opened.name(), "usb");
        assert!(opened
            .location()
            .contains(&dir.path().display().to_string()));

        let s3 = DestinationUrl::parse("s3://b/lb?endpoint=http://127.0.0.1:1").expect("s3");
        let opened = s3.open("cloud").expect("s3 opens without a request");
        assert_eq!(opened.location(), "s3://b/lb at http://127.0.0.1:1");

        let sftp = DestinationUrl::parse("sftp://backup@127.0.0.1:1/srv/lb?known_hosts=/kh")
            .expect("sftp");
        let opened = sftp.open("nas").expect("sftp opens without connecting");
        assert_eq!(opened.location(), "sftp://backup@127.0.0.1:1/srv/lb");
    }

    #[test]
    fn a_remote_plain_http_endpoint_is_refused_when_opening() {
        let s3 = DestinationUrl::parse("s3://b/lb?endpoint=http://nas.example:9000").expect("s3");
        let err = s3.open("cloud").expect_err("plain http to a remote host");
        assert!(err.to_string().contains("allow_http=true"), "{err}");
        assert!(matches!(err, UrlError::Invalid { .. }));
    }
}
