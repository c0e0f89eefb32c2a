//! What the hub sends to addresses others chose (webhook URLs, and later push endpoints): only
//! to the public internet, resolved once and pinned, and read back within a bound.
//!
//! A destination's name is resolved by the client's own resolver, which drops every address
//! that is not public, so the address checked is the address connected to: a name that
//! answers a public address to a check and a private one to the connection (DNS rebinding)
//! never reaches the private one. An IP literal is checked before the request, as no resolver
//! sees it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tickethub_actors::ports::TransportError;

/// Whether an address is on the public internet: not private, loopback, link-local, shared
/// (CGNAT), benchmarking, reserved, multicast or documentation space, and not an IPv6 form that
/// carries or reaches an IPv4 address (IPv4-mapped and -compatible, NAT64, 6to4, Teredo).
pub fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: &Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        // 100.64.0.0/10: shared address space (carrier-grade NAT).
        || (o[0] == 100 && (64..128).contains(&o[1]))
        // 192.0.0.0/24: IETF protocol assignments; 192.88.99.0/24: 6to4 relays.
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
        // 198.18.0.0/15: benchmarking.
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        // 240.0.0.0/4: reserved.
        || o[0] >= 240)
}

fn is_public_v6(v6: &Ipv6Addr) -> bool {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_public_v4(&v4);
    }
    let s = v6.segments();
    !(v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        // ::/96: IPv4-compatible (deprecated), which embeds an IPv4 address.
        || (s[..6] == [0; 6])
        // fc00::/7: unique local; fe80::/10: link-local; fec0::/10: site-local.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // 64:ff9b::/96 and 64:ff9b:1::/48: NAT64, which reach IPv4 addresses.
        || (s[0] == 0x64 && s[1] == 0xff9b)
        // 100::/64: discard.
        || (s[0] == 0x100 && s[1..4] == [0; 3])
        // 2001::/32: Teredo; 2001:db8::/32: documentation; 2002::/16: 6to4.
        || (s[0] == 0x2001 && (s[1] == 0 || s[1] == 0xdb8))
        || s[0] == 0x2002)
}

/// A name that resolved only to addresses the hub does not send to.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to non-public addresses ({first})")]
pub struct NotPublic {
    host: String,
    first: IpAddr,
}

/// The resolver of outbound clients: the system's, less every non-public address.
#[derive(Debug, Clone, Copy)]
pub struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| is_public(&a.ip()))
                .collect();
            match (public.is_empty(), found.first()) {
                (false, _) => Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs),
                (true, Some(first)) => Err(Box::new(NotPublic {
                    host,
                    first: first.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                (true, None) => Err(format!("{host} has no address").into()),
            }
        })
    }
}

/// An HTTP client with timeouts and without redirects; with `public_only`, it connects to
/// public addresses only.
pub fn client(timeout: Duration, public_only: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tickethub/", env!("CARGO_PKG_VERSION")));
    if public_only {
        builder.dns_resolver(Arc::new(PublicResolver)).build()
    } else {
        builder.build()
    }
}

/// Refuses a URL whose host is a non-public IP literal (names are checked as they resolve).
pub fn check_literal(url: &reqwest::Url) -> Result<(), TransportError> {
    let host = url
        .host_str()
        .ok_or_else(|| TransportError::Permanent(format!("`{url}` has no host")))?;
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        if !is_public(&ip) {
            return Err(TransportError::Permanent(format!(
                "refusing {host}: a non-public address"
            )));
        }
    }
    Ok(())
}

/// A request that failed: permanent if its destination resolved only to non-public addresses,
/// otherwise a network failure worth retrying.
pub fn request_error(e: reqwest::Error) -> TransportError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<NotPublic>() {
            return TransportError::Permanent(format!("refusing {refused}"));
        }
        source = err.source();
    }
    super::network_error(e)
}

/// The largest answer read from a provider or receiver; an answer past it is cut there (only
/// its beginning is ever kept, as the error text of a failed attempt).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Reads at most `limit` bytes of an answer's body; more is an error, and is not read.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("the answer is larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An answer's text for the record: at most [`MAX_ANSWER_BYTES`], and a note instead of a
/// larger one.
pub async fn answer_text(response: reqwest::Response) -> String {
    match read_limited(response, MAX_ANSWER_BYTES).await {
        Ok(body) => String::from_utf8_lossy(&body).into_owned(),
        Err(e) => format!("({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.8",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fec0::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!is_public(&ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "198.20.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:93.184.216.34",
        ] {
            assert!(is_public(&ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_what_is_not_public() {
        use reqwest::dns::Resolve;
        let err = PublicResolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is not public");
        assert!(err.downcast_ref::<NotPublic>().is_some(), "{err}");
    }
}
