//! What an `s3://` URL names: a bucket, a key prefix and the query options,
//! checked once when the URL is parsed. Credentials are never part of it.

use super::endpoint::parse_bool;
use crate::error::UrlError;

/// Query options an `s3://` URL may carry; anything else is refused (typos would
/// otherwise be ignored silently).
const KNOWN_OPTIONS: &[&str] = &["endpoint", "region", "path_style", "allow_http"];

/// Query options that would put a secret in a URL, which ends up in shell
/// history, config files and process listings.
const SECRET_OPTIONS: &[&str] = &[
    "access_key_id",
    "aws_access_key_id",
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "aws_session_token",
    "token",
    "password",
];

/// An S3 destination as its `s3://bucket/prefix?…` URL describes it; see the
/// [module documentation](super) for the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket, without slashes at either end; may be empty.
    pub prefix: String,
    /// `endpoint=`: the server's base URL without a trailing slash; `None`
    /// for the environment's, else AWS.
    pub endpoint: Option<String>,
    /// `region=`: the signing region; `None` for the environment's.
    pub region: Option<String>,
    /// `path_style=`: `None` to decide by whether there is an endpoint.
    pub path_style: Option<bool>,
    /// `allow_http=true`: plain HTTP to a host that is not a loopback address.
    pub allow_http: bool,
}

impl S3Target {
    /// Reads an `s3://` URL.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] for a missing bucket, a secret in the query
    /// string, an unknown option or a malformed boolean.
    pub fn from_url(url: &url::Url) -> Result<Self, UrlError> {
        let bucket = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| UrlError::invalid(url, "missing bucket name"))?;
        let mut target = S3Target {
            bucket: bucket.to_string(),
            prefix: url.path().trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            path_style: None,
            allow_http: false,
        };
        for (key, value) in url.query_pairs() {
            target
                .set_option(&key, &value)
                .map_err(|reason| target.invalid(reason))?;
        }
        Ok(target)
    }

    fn set_option(&mut self, key: &str, value: &str) -> Result<(), String> {
        let key_lc = key.to_ascii_lowercase();
        if SECRET_OPTIONS.contains(&key_lc.as_str()) {
            return Err(format!(
                "credentials are not accepted in URLs (option {key:?}); set \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) instead"
            ));
        }
        match key_lc.as_str() {
            "endpoint" => self.endpoint = Some(value.trim_end_matches('/').to_string()),
            "region" => self.region = Some(value.to_string()),
            "path_style" => self.path_style = Some(parse_bool(key, value)?),
            "allow_http" => self.allow_http = parse_bool(key, value)?,
            _ => {
                return Err(format!(
                    "unknown option {key:?}; known options: {}",
                    KNOWN_OPTIONS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// `s3://bucket` or `s3://bucket/prefix`: how messages name the
    /// destination (the query string is left out, it is not needed to
    /// recognise it).
    pub fn shown(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// A [`UrlError::Invalid`] about this destination.
    pub(crate) fn invalid(&self, reason: String) -> UrlError {
        UrlError::Invalid {
            url: self.shown(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<S3Target, UrlError> {
        S3Target::from_url(&url::Url::parse(text).expect("url"))
    }

    #[test]
    fn reads_the_options() {
        let t =
            parse("s3://b/lb/x/?endpoint=http://h:9000/&Region=eu&path_style=no").expect("valid");
        assert_eq!(
            t,
            S3Target {
                bucket: "b".into(),
                prefix: "lb/x".into(),
                endpoint: Some("http://h:9000".into()),
                region: Some("eu".into()),
                path_style: Some(false),
                allow_http: false,
            }
        );
        assert_eq!(t.shown(), "s3://b/lb/x");
        assert_eq!(parse("s3://b").expect("bare").shown(), "s3://b");
    }

    #[test]
    fn refuses_secrets_typos_and_bad_booleans() {
        let err = parse("s3://b/p?aws_secret_access_key=hunter2").expect_err("secret");
        assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = parse("s3://b/p?endpiont=https://x").expect_err("typo");
        assert!(err.to_string().contains("endpiont"), "{err}");
        assert!(parse("s3://b/p?allow_http=maybe").is_err());
        assert!(parse("s3:///nobucket").is_err());
    }
}
