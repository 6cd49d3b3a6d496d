//! The S3 server a destination talks to: booleans of the URL's options, the
//! loopback rule for plain HTTP, and virtual-hosted endpoints.

use std::net::IpAddr;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use super::target::S3Target;

/// An explicit S3 endpoint that passed the plain-HTTP rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The base URL, without a trailing slash.
    pub url: String,
    /// It is `http://`: to a loopback address, or with `allow_http=true`.
    pub plain_http: bool,
}

impl Endpoint {
    /// The endpoint of `target`, else one from the environment
    /// (`AWS_ENDPOINT`, `AWS_ENDPOINT_URL_S3`, which `builder` read), else
    /// `None` for AWS. Plain HTTP is refused unless the host is a loopback
    /// address or the URL says `allow_http=true`, so that no secret or object
    /// crosses a network in clear by accident; the rule applies to an endpoint
    /// from the environment as well.
    pub fn resolve(target: &S3Target, builder: &AmazonS3Builder) -> Result<Option<Self>, String> {
        let Some(url) = target
            .endpoint
            .clone()
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::S3Endpoint))
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
            .map(|e| e.trim_end_matches('/').to_string())
        else {
            return Ok(None);
        };
        let parsed = url::Url::parse(&url).map_err(|e| format!("invalid endpoint {url:?}: {e}"))?;
        let plain_http = match parsed.scheme() {
            "https" => false,
            "http" if target.allow_http || is_loopback(&parsed) => true,
            "http" => {
                return Err(format!(
                    "endpoint {url:?} uses plain HTTP to a host that is not a loopback \
                     address; use https, or add allow_http=true if the network is trusted"
                ))
            }
            other => {
                return Err(format!(
                    "endpoint {url:?}: scheme {other:?} is not http or https"
                ))
            }
        };
        if parsed.host_str().is_none() {
            return Err(format!("endpoint {url:?} names no host"));
        }
        Ok(Some(Endpoint { url, plain_http }))
    }

    /// The endpoint for virtual-hosted requests to `bucket`.
    pub fn virtual_hosted(&self, bucket: &str) -> Result<String, String> {
        virtual_hosted_endpoint(&self.url, bucket)
    }
}

/// Parses a boolean query option.
pub(super) fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "option {key:?} must be true or false, not {value:?}"
        )),
    }
}

/// True when the URL's host is `localhost` or a loopback IP address.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `https://host:port` → `https://bucket.host:port`, the endpoint object_store
/// expects for virtual-hosted requests.
pub(super) fn virtual_hosted_endpoint(endpoint: &str, bucket: &str) -> Result<String, String> {
    let mut url =
        url::Url::parse(endpoint).map_err(|e| format!("invalid endpoint {endpoint:?}: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("endpoint {endpoint:?} names no host"))?
        .to_string();
    if host.starts_with(&format!("{bucket}.")) {
        return Ok(endpoint.to_string());
    }
    url.set_host(Some(&format!("{bucket}.{host}")))
        .map_err(|e| format!("cannot use virtual-hosted requests on {endpoint:?}: {e}"))?;
    Ok(url.as_str().trim_end_matches('/').to_string())
}
