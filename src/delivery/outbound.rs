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
/// carries or reaches an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-translated
/// `::ffff:0:0:0/96`, IPv4-compatible, NAT64, 6to4, Teredo), whichever IPv4 address it carries:
/// no public service answers with one, and a translator may reach what the filter never saw.
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
    let s = v6.segments();
    !(v6.is_loopback()
        // ::ffff:0:0/96: IPv4-mapped; ::ffff:0:0:0/96: IPv4-translated (SIIT).
        || s[..6] == [0, 0, 0, 0, 0, 0xffff]
        || s[..6] == [0, 0, 0, 0, 0xffff, 0]
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

/// How a name is resolved: the system's resolver, or (in tests) a stand-in.
pub type Lookup = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>
        + Send
        + Sync,
>;

/// The resolver of outbound clients: a lookup (the system's), less every non-public address.
/// The client connects to what it answers, so a name is resolved once per connection and the
/// address checked is the address connected to.
#[derive(Clone)]
pub struct PublicResolver {
    lookup: Lookup,
}

impl PublicResolver {
    /// The system's resolver, less every non-public address.
    pub fn system() -> Self {
        Self::with_lookup(Arc::new(|host: String| {
            Box::pin(
                async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) },
            )
        }))
    }

    /// Another lookup, less every non-public address.
    pub fn with_lookup(lookup: Lookup) -> Self {
        Self { lookup }
    }
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let lookup = (self.lookup)(host.clone());
        Box::pin(async move {
            let found: Vec<SocketAddr> = lookup.await?;
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

/// The resolver of the checks made while a request waits (a push endpoint's host, when a
/// browser registers): asynchronous (no thread waits on a slow DNS server, so none is taken
/// from password hashing), each answer kept for its TTL, and at most `concurrency` lookups at
/// once; a lookup that finds no room within a second is refused as busy.
pub struct Dns {
    resolver: hickory_resolver::TokioResolver,
    permits: tokio::sync::Semaphore,
}

/// Why a name could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Too many lookups wait already.
    #[error("the hub is busy resolving other names")]
    Busy,
    /// The name has no address, or the lookup failed or took longer than its timeout.
    #[error("{0}")]
    Failed(String),
}

impl Dns {
    /// The system's DNS servers (`/etc/resolv.conf`), or the one at `server`.
    pub fn new(
        server: Option<SocketAddr>,
        concurrency: usize,
    ) -> Result<Self, hickory_resolver::ResolveError> {
        use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
        use hickory_resolver::name_server::TokioConnectionProvider;
        let mut builder = match server {
            Some(addr) => hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_parts(
                    None,
                    vec![],
                    NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
                ),
                TokioConnectionProvider::default(),
            ),
            None => hickory_resolver::TokioResolver::builder_tokio()?,
        };
        let options = builder.options_mut();
        // Every address of the name is checked, not only the IPv4 ones: a private AAAA behind
        // a public A is refused too.
        options.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        options.timeout = Duration::from_secs(5);
        options.attempts = 1;
        options.cache_size = 1024;
        Ok(Self {
            resolver: builder.build(),
            permits: tokio::sync::Semaphore::new(concurrency.max(1)),
        })
    }

    /// The addresses of `host`.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let _permit = tokio::time::timeout(Duration::from_secs(1), self.permits.acquire())
            .await
            .map_err(|_| DnsError::Busy)?
            .map_err(|_| DnsError::Busy)?;
        let found = tokio::time::timeout(Duration::from_secs(6), self.resolver.lookup_ip(host))
            .await
            .map_err(|_| DnsError::Failed(format!("{host} did not resolve in time")))?
            .map_err(|_| DnsError::Failed(format!("{host} does not resolve")))?;
        Ok(found.iter().collect())
    }
}

/// An HTTP client with timeouts and without redirects; with `public_only`, it connects to
/// public addresses only.
pub fn client(timeout: Duration, public_only: bool) -> reqwest::Result<reqwest::Client> {
    client_with(timeout, public_only.then(PublicResolver::system))
}

/// [`client`], resolving through `resolver` when one is given.
pub fn client_with(
    timeout: Duration,
    resolver: Option<PublicResolver>,
) -> reqwest::Result<reqwest::Client> {
    // reqwest's rustls, with the ring provider (installed once per process).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tickethub/", env!("CARGO_PKG_VERSION")));
    match resolver {
        // No proxy from the environment either: a proxy would resolve the destination itself,
        // past the check.
        Some(resolver) => builder.no_proxy().dns_resolver(Arc::new(resolver)).build(),
        None => builder.build(),
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
/// POSTs `body` as JSON with a bearer token; answers the status, the `Retry-After` and the
/// answer's text (its first bytes).
pub async fn post_json_bearer(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> Result<(reqwest::StatusCode, Option<String>, String), TransportError> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(crate::delivery::network_error)?;
    let status = response.status();
    let retry_after = header(&response, reqwest::header::RETRY_AFTER);
    Ok((status, retry_after, answer_text(response).await))
}

pub async fn answer_text(response: reqwest::Response) -> String {
    match read_limited(response, MAX_ANSWER_BYTES).await {
        Ok(body) => String::from_utf8_lossy(&body).into_owned(),
        Err(e) => format!("({e})"),
    }
}

/// A response header's value, if it is there and is text.
pub fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
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
            "::ffff:93.184.216.34",
            "::ffff:0:0",
            "::ffff:0:7f00:1",
            "::ffff:0:5db8:d822",
            "::ffff:0:0:0",
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
        ] {
            assert!(is_public(&ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_what_is_not_public() {
        use reqwest::dns::Resolve;
        let err = PublicResolver::system()
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is not public");
        assert!(err.downcast_ref::<NotPublic>().is_some(), "{err}");
    }

    /// A name whose answers change between lookups (DNS rebinding): public to whoever checks
    /// first, then a private address. The client looks it up once per connection, through the
    /// resolver that drops private addresses, so a private answer is never connected to,
    /// whenever it comes; a mixed answer is connected only at its public part.
    #[tokio::test]
    async fn a_name_that_rebinds_to_a_private_address_is_never_connected_to() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // A server on loopback that counts the connections it gets.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let private = listener.local_addr().unwrap();
        let reached = Arc::new(AtomicUsize::new(0));
        tokio::spawn({
            let reached = reached.clone();
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    reached.fetch_add(1, Ordering::SeqCst);
                    drop(socket);
                }
            }
        });
        // Public first, private next, then both at once.
        let public: SocketAddr = "93.184.216.34:0".parse().unwrap();
        let answers = Arc::new(std::sync::Mutex::new(vec![
            vec![public, private],
            vec![private],
            vec![public],
        ]));
        let lookups = Arc::new(AtomicUsize::new(0));
        let lookup: Lookup = {
            let (answers, lookups) = (answers.clone(), lookups.clone());
            Arc::new(move |_host: String| {
                lookups.fetch_add(1, Ordering::SeqCst);
                let answer = answers.lock().unwrap().pop().unwrap_or_default();
                Box::pin(async move { Ok(answer) })
            })
        };
        let client = client_with(
            Duration::from_millis(300),
            Some(PublicResolver::with_lookup(lookup)),
        )
        .unwrap();
        let url = format!("http://rebinding.example:{}/hook", private.port());
        // 1: public (unreachable here, so it fails as a network error), looked up once.
        let first = client.post(&url).send().await.unwrap_err();
        assert!(
            matches!(request_error(first), TransportError::Retryable { .. }),
            "a public address is tried"
        );
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            1,
            "one lookup per connection"
        );
        // 2: the name now answers the private address: refused for good, never connected.
        let second = client.post(&url).send().await.unwrap_err();
        assert!(
            matches!(request_error(second), TransportError::Permanent(ref e) if e.contains("non-public")),
            "a private answer is refused"
        );
        // 3: both: only the public one is tried.
        let third = client.post(&url).send().await.unwrap_err();
        assert!(matches!(
            request_error(third),
            TransportError::Retryable { .. }
        ));
        assert_eq!(lookups.load(Ordering::SeqCst), 3);
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "the private server was reached"
        );
    }
}
