//! S3-compatible destinations (not yet implemented).

use std::sync::Arc;

use crate::backend::Backend;
use crate::url::{DestinationUrl, UrlError};

/// Opens an `s3://` destination.
///
/// # Errors
/// [`UrlError::Unsupported`] until the S3 backend lands.
pub fn open(_name: &str, url: &DestinationUrl) -> Result<Arc<dyn Backend>, UrlError> {
    let DestinationUrl::S3 { bucket, prefix, .. } = url else {
        return Err(UrlError::Invalid {
            url: format!("{url:?}"),
            reason: "not an s3 URL".into(),
        });
    };
    Err(UrlError::Unsupported {
        url: format!("s3://{bucket}/{prefix}"),
        scheme: "s3".into(),
    })
}
