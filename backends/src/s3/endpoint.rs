//! The `s3://` URL's endpoint options: booleans, the loopback rule for plain
//! HTTP, and virtual-hosted endpoints.

use std::net::IpAddr;

/// Parses a boolean query option.
pub(super) fn parse_bool(key: &str, value: &str) -> std::result::Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "option {key:?} must be true or false, not {value:?}"
        )),
    }
}

/// True when the URL's host is `localhost` or a loopback IP address.
pub(super) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `https://host:port` → `https://bucket.host:port`, the endpoint object_store
/// expects for virtual-hosted requests.
pub(super) fn virtual_hosted_endpoint(
    endpoint: &str,
    bucket: &str,
) -> std::result::Result<String, String> {
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
