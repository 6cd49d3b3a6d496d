//! SFTP destinations (not yet implemented).

use std::sync::Arc;

use crate::backend::Backend;
use crate::url::{DestinationUrl, UrlError};

/// Opens an `sftp://` destination.
///
/// # Errors
/// [`UrlError::Unsupported`] until the SFTP backend lands.
pub fn open(_name: &str, url: &DestinationUrl) -> Result<Arc<dyn Backend>, UrlError> {
    let DestinationUrl::Sftp { host, path, .. } = url else {
        return Err(UrlError::Invalid {
            url: format!("{url:?}"),
            reason: "not an sftp URL".into(),
        });
    };
    Err(UrlError::Unsupported {
        url: format!("sftp://{host}{path}"),
        scheme: "sftp".into(),
    })
}
