//! Where a result download may go. A provider's reply names the URL of a paid result; a lying
//! or compromised provider could point it at the user's own network (a cloud metadata service at
//! 169.254.169.254, a database on loopback) and have evolve fetch it. Unless the provider itself
//! lives at such an address (your own server), downloads reach public addresses only: checked on
//! the URL, on every redirect, and on what a host name resolves to (so that a name cannot
//! rebind to a private address).

use std::net::{IpAddr, SocketAddr};

/// Whether `ip` is outside the public internet: loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast or documentation ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Whether the host of `url` is a private address or a name for one (`localhost`): a provider
/// there is the user's own, and may hand out result URLs on the same network.
pub fn is_private_url(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)) else {
        return false;
    };
    match literal(&host) {
        Some(ip) => is_private(ip),
        None => {
            let name = host.trim_end_matches('.');
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// The address a URL's host names outright (`[::1]` included), if it is one.
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Why a result URL is not downloaded from.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// It does not parse.
    #[error("a result URL that does not parse ({reason}): {url:?}")]
    Unparsable {
        /// The URL as given.
        url: String,
        /// The parser's words.
        reason: String,
    },
    /// It names a private address outright.
    #[error("a result URL at a private address ({0}) refused")]
    PrivateAddress(IpAddr),
    /// It names a host whose every address is private.
    #[error("a result URL at {0}, a name for a private address, refused")]
    PrivateName(String),
}

/// Why `url` may not be downloaded from, if it names a private address outright.
pub fn refuse_literal(url: &reqwest::Url) -> Option<Refused> {
    let ip = literal(url.host_str()?)?;
    is_private(ip).then_some(Refused::PrivateAddress(ip))
}

/// Checks that `url` names a public address, or a name with at least one.
pub async fn check_public(url: &str) -> Result<(), Refused> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| Refused::Unparsable { url: url.to_string(), reason: e.to_string() })?;
    if let Some(why) = refuse_literal(&parsed) {
        return Err(why);
    }
    let Some(host) = parsed.host_str() else { return Ok(()) };
    if literal(host).is_some() {
        return Ok(());
    }
    // A name that does not resolve now fails at the download itself, with the usual retries.
    let Ok(addresses) = tokio::net::lookup_host((host, parsed.port_or_known_default().unwrap_or(443))).await else {
        return Ok(());
    };
    let addresses: Vec<SocketAddr> = addresses.collect();
    if !addresses.is_empty() && addresses.iter().all(|a| is_private(a.ip())) {
        return Err(Refused::PrivateName(host.to_string()));
    }
    Ok(())
}

/// A resolver that drops private addresses, and fails a name that has only those.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                let why = format!("{host} resolves only to private addresses: a result URL there is refused");
                return Err(why.into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
        assert!(is_private_url("http://127.0.0.1:8765/v1"));
        assert!(is_private_url("http://localhost:8765/v1"));
        assert!(!is_private_url("https://api.openai.com/v1"));
    }
}
