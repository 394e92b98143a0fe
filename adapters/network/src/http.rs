//! What the HTTP adapters share: a client that only speaks `https://` (plain `http://` only
//! to loopback hosts when allowed, including on redirects), that can be held to public
//! addresses (checked after DNS resolution and on every redirect hop), bounded body reads, and
//! a small TTL cache.

use std::collections::HashMap;
use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};

use crate::NetworkError;

/// Redirect hops followed per request.
const MAX_REDIRECTS: usize = 3;

/// Which addresses a [`Fetcher`] may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Targets {
    /// Any address: for URLs the operator configured (the PLC directory), or when the operator
    /// allowed private targets (tests, local development).
    Any,
    /// Only publicly routable unicast addresses: for URLs that come from data a caller controls
    /// (DID documents, `did:web` hosts, handles, authorization server metadata), so that an
    /// unauthenticated request cannot make the service reach its own network.
    PublicOnly,
}

impl Targets {
    /// The rule for caller-controlled URLs: public addresses only, unless the operator allowed
    /// private targets.
    pub(crate) fn caller_controlled(allow_private_targets: bool) -> Self {
        if allow_private_targets {
            Self::Any
        } else {
            Self::PublicOnly
        }
    }
}

/// An HTTP client with the https-only rule, the address rule and a body size limit.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    max_bytes: usize,
    allow_http_for_localhost: bool,
    targets: Targets,
}

impl Fetcher {
    /// Builds the client; `host_overrides` pin host names to addresses (tests). Overridden
    /// addresses are held to `targets` like resolved ones.
    pub(crate) fn new(
        timeout: Duration,
        max_bytes: usize,
        allow_http_for_localhost: bool,
        host_overrides: &[(String, SocketAddr)],
        targets: Targets,
        user_agent: &str,
    ) -> Result<Self, NetworkError> {
        if timeout.is_zero() {
            return Err(NetworkError::InvalidConfig(
                "the timeout must be positive".into(),
            ));
        }
        if max_bytes == 0 {
            return Err(NetworkError::InvalidConfig(
                "the response size limit must be positive".into(),
            ));
        }
        let allow_http = allow_http_for_localhost;
        let mut overrides: HashMap<String, Vec<SocketAddr>> = HashMap::new();
        for (host, addr) in host_overrides {
            overrides
                .entry(host.to_ascii_lowercase())
                .or_default()
                .push(*addr);
        }
        ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(Policy::custom(move |attempt| {
                redirect(attempt, allow_http, targets)
            }))
            .dns_resolver(Arc::new(GuardedResolver { overrides, targets }));
        if targets == Targets::PublicOnly {
            // Through a proxy the address rule would only ever see the proxy's address.
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| NetworkError::Client(describe(&e)))?;
        Ok(Self {
            client,
            max_bytes,
            allow_http_for_localhost,
            targets,
        })
    }

    /// Whether plain `http://` is allowed for loopback hosts.
    pub(crate) fn allow_http_for_localhost(&self) -> bool {
        self.allow_http_for_localhost
    }

    /// Whether `url` may be fetched at all (scheme rule).
    pub(crate) fn allowed(&self, url: &Url) -> bool {
        scheme_allowed(url, self.allow_http_for_localhost)
    }

    /// The body of a 2xx answer, `None` when `absent(status)`, an error for any other status.
    pub(crate) async fn fetch(
        &self,
        url: Url,
        accept: &str,
        absent: impl Fn(u16) -> bool,
    ) -> Result<Option<Vec<u8>>, NetworkError> {
        // IP literals never reach the resolver, so they are checked here (and on redirects).
        if let Some(refused) = literal_refused(&url, self.targets) {
            return Err(NetworkError::Refused(refused.to_string()));
        }
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| request_error(&e))?;
        let status = response.status().as_u16();
        if absent(status) {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(NetworkError::Status(status));
        }
        let too_large = NetworkError::TooLarge(self.max_bytes);
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large);
        }
        // Read in chunks so a body without a length still stops at the limit.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| request_error(&e))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// An answer of any status: the OAuth client reads error bodies and headers (`DPoP-Nonce`,
/// `WWW-Authenticate`, `Retry-After`) as well as successes.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    /// A header's value as text, if present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Fetcher {
    /// Sends one request under the same rules as [`Fetcher::fetch`] (scheme, address rule on
    /// the URL, on DNS answers and on every redirect hop; timeout; bounded body) and returns the
    /// answer whatever its status. `body` is `(content type, bytes)`.
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        url: Url,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<RawResponse, NetworkError> {
        if !self.allowed(&url) {
            return Err(NetworkError::InvalidUri(format!(
                "{} is not an allowed URL (https://{})",
                url.origin().ascii_serialization(),
                if self.allow_http_for_localhost {
                    ", or http:// on loopback"
                } else {
                    ""
                }
            )));
        }
        if let Some(refused) = literal_refused(&url, self.targets) {
            return Err(NetworkError::Refused(refused.to_string()));
        }
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((content_type, bytes)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let mut response = request.send().await.map_err(|e| request_error(&e))?;
        let status = response.status().as_u16();
        let too_large = NetworkError::TooLarge(self.max_bytes);
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large);
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| request_error(&e))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

/// True for host names that can only mean this machine.
/// rustls needs a process-wide crypto provider and reqwest is built without one of its own (its
/// default, aws-lc-rs, is a long C build): ring, the crypto the domain already uses, is installed
/// unless the embedding process installed a provider first.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An Err means another thread installed one in between: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn scheme_allowed(url: &Url, allow_http_for_localhost: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => allow_http_for_localhost && url.host_str().is_some_and(is_loopback),
        _ => false,
    }
}

/// Follows a few redirects, never to plain HTTP nor to a refused IP literal: a redirect must
/// not undo the https-only or the address rule. (Host names on the way are checked by the
/// resolver when the hop connects.)
fn redirect(
    attempt: Attempt<'_>,
    allow_http_for_localhost: bool,
    targets: Targets,
) -> reqwest::redirect::Action {
    if attempt.previous().len() > MAX_REDIRECTS {
        attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
    } else if !scheme_allowed(attempt.url(), allow_http_for_localhost) {
        let scheme = attempt.url().scheme().to_owned();
        attempt.error(format!("refused a redirect to a {scheme}:// URL"))
    } else if let Some(refused) = literal_refused(attempt.url(), targets) {
        attempt.error(refused)
    } else {
        attempt.follow()
    }
}

/// Why a connection was not attempted: the target is not a public address.
#[derive(Debug)]
pub(crate) struct NonPublicTarget(String);

impl std::fmt::Display for NonPublicTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused to connect to {}: not a public address (private, loopback, link-local, \
             reserved or multicast)",
            self.0
        )
    }
}

impl std::error::Error for NonPublicTarget {}

/// The refusal for a URL whose host is an IP literal outside what `targets` allows.
fn literal_refused(url: &Url, targets: Targets) -> Option<NonPublicTarget> {
    if targets == Targets::Any {
        return None;
    }
    // The URL parser has already normalised IPv4 literals (`0x7f.1` is `127.0.0.1`).
    let ip = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()?;
    (!is_public(ip)).then(|| NonPublicTarget(ip.to_string()))
}

/// A request failure; a refusal by the address rule (from the resolver or a redirect) keeps
/// its own variant, so callers and logs can tell it from a network error.
fn request_error(e: &reqwest::Error) -> NetworkError {
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<NonPublicTarget>() {
            return NetworkError::Refused(refused.to_string());
        }
        source = cause.source();
    }
    NetworkError::Http(describe(e))
}

/// The system resolver (or a test's pinned addresses), with every answer held to the address
/// rule: a host name cannot lead to a private address however its DNS answers, including
/// names reached by a redirect. Of a mixed answer, only the public addresses are used.
struct GuardedResolver {
    overrides: HashMap<String, Vec<SocketAddr>>,
    targets: Targets,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let pinned = self.overrides.get(&host).cloned();
        let targets = self.targets;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match pinned {
                Some(addrs) => addrs,
                // Port 0: the connector puts in the URL's port (or the scheme's).
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let addrs: Vec<SocketAddr> = match targets {
                Targets::Any => addrs,
                Targets::PublicOnly => {
                    let public: Vec<SocketAddr> =
                        addrs.into_iter().filter(|a| is_public(a.ip())).collect();
                    if public.is_empty() {
                        return Err(Box::new(NonPublicTarget(host)) as Box<_>);
                    }
                    public
                }
            };
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is a publicly routable unicast address, the only kind an untrusted URL may
/// lead to. IPv6 addresses that embed an IPv4 address (IPv4-mapped, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`) are judged by the embedded address, so `::ffff:127.0.0.1` is loopback.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

/// IPv4 blocks that are not globally reachable unicast (IANA special-purpose registry, plus
/// multicast and the reserved 240/4), as (network, prefix length).
const V4_NOT_PUBLIC: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", including the unspecified address
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (CGNAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local (cloud metadata services live here)
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 documentation (TEST-NET-1)
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast (deprecated)
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation (TEST-NET-2)
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation (TEST-NET-3)
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, including the broadcast address
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !V4_NOT_PUBLIC
        .iter()
        .any(|&(net, len)| bits >> (32 - len) == net >> (32 - len))
}

/// Blocks inside global unicast `2000::/3` that are not globally reachable or are only for
/// documentation, as (network, prefix length). Everything outside `2000::/3` (loopback, ULA
/// `fc00::/7`, link-local `fe80::/10`, multicast `ff00::/8`, …) is refused anyway.
const V6_NOT_PUBLIC: &[(u128, u32)] = &[
    (0x2001_0000 << 96, 23), // 2001::/23 IETF protocol assignments (Teredo, …)
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation
    (0x3fff_0000 << 96, 20), // 3fff::/20 documentation
];

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let bits = u128::from(ip);
    let global_unicast = bits >> 125 == 0b001;
    global_unicast
        && !V6_NOT_PUBLIC
            .iter()
            .any(|&(net, len)| bits >> (128 - len) == net >> (128 - len))
}

/// The IPv4 address an IPv6 address stands for, when it is one of the translation forms.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let join = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match ip.segments() {
        _ if ip.to_ipv4_mapped().is_some() => ip.to_ipv4_mapped(),
        // 64:ff9b::/96, the NAT64 well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => Some(join(high, low)),
        // 2002:AABB:CCDD::/48, 6to4.
        [0x2002, high, low, ..] => Some(join(high, low)),
        _ => None,
    }
}

/// The error and its causes.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A bounded map of answers that expire. The lock is only held for map operations, never
/// across a fetch.
pub(crate) struct TtlCache<V> {
    entries: Mutex<HashMap<String, Entry<V>>>,
    capacity: usize,
}

struct Entry<V> {
    value: V,
    expires: Instant,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<V> {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some(entry) if entry.expires > now => Some(entry.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: String, value: V, ttl: Duration) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        // TTLs are bounded by MAX_TTL at construction, so this only fails on a broken clock.
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        let mut entries = lock(&self.entries);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.expires > now);
            // Evicting what expires soonest drops negative answers before positive ones, so a
            // flood of lookups for DIDs that do not exist cannot push out the hot, real ones.
            if entries.len() >= self.capacity
                && let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.expires)
                    .map(|(key, _)| key.clone())
            {
                entries.remove(&soonest);
            }
        }
        entries.insert(key, Entry { value, expires });
    }

    pub(crate) fn remove(&self, key: &str) {
        lock(&self.entries).remove(key);
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    fn public(ip: &str) -> bool {
        is_public(ip.parse().unwrap())
    }

    #[test]
    fn ipv4_special_purpose_blocks_are_not_public() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254", // cloud metadata
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
    }

    #[test]
    fn ordinary_ipv4_addresses_are_public_including_the_neighbours_of_blocks() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(public(ip), "{ip} must be public");
        }
    }

    #[test]
    fn ipv6_outside_global_unicast_and_its_special_blocks_are_not_public() {
        for ip in [
            "::",
            "::1",
            "::127.0.0.1",  // IPv4-compatible (deprecated)
            "::8.8.8.8",    // IPv4-compatible, even of a public address
            "64:ff9b:1::1", // local-use NAT64
            "100::1",       // discard-only
            "2001::1",      // Teredo
            "2001:2::1",    // benchmarking
            "2001:db8::1",  // documentation
            "3fff::1",      // documentation
            "5f00::1",      // SRv6 SIDs
            "fc00::1",      // unique local
            "fd12:3456:789a::1",
            "fe80::1", // link-local
            "fec0::1", // site-local (deprecated)
            "ff02::1", // multicast
            "ff0e::1",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "3ffe::1",
        ] {
            assert!(public(ip), "{ip} must be public");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_judged_by_the_ipv4_address() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "64:ff9b::127.0.0.1",
            "64:ff9b::c0a8:101", // 192.168.1.1
            "2002:7f00:1::",     // 6to4 of 127.0.0.1
            "2002:a00:1::1",     // 6to4 of 10.0.0.1
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(public(ip), "{ip} must be public");
        }
    }

    #[test]
    fn ip_literal_hosts_are_refused_only_when_held_to_public_addresses() {
        let refused = |url: &str, targets| literal_refused(&Url::parse(url).unwrap(), targets);
        for url in [
            "http://127.0.0.1:8080/x",
            "https://[::1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://169.254.169.254/latest/meta-data",
            // The URL parser normalises other spellings of an IPv4 address first.
            "https://0x7f.1/x",
            "https://2130706433/x",
            "https://0177.0.0.1/x",
        ] {
            assert!(refused(url, Targets::PublicOnly).is_some(), "{url}");
            assert!(refused(url, Targets::Any).is_none(), "{url}");
        }
        for url in [
            "https://8.8.8.8/x",
            "https://example.com/x",
            "https://localhost/x",
        ] {
            // Names are the resolver's to judge.
            assert!(refused(url, Targets::PublicOnly).is_none(), "{url}");
        }
    }
}
