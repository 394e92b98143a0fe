//! What the HTTP adapters share: a client that only speaks `https://` (plain `http://` only
//! to loopback hosts when allowed, including on redirects), bounded body reads, and a small
//! TTL cache.

use std::collections::HashMap;
use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::redirect::{Attempt, Policy};

use crate::NetworkError;

/// Redirect hops followed per request.
const MAX_REDIRECTS: usize = 3;

/// An HTTP client with the https-only rule and a body size limit.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    max_bytes: usize,
    allow_http_for_localhost: bool,
}

impl Fetcher {
    /// Builds the client; `host_overrides` pin host names to addresses (tests).
    pub(crate) fn new(
        timeout: Duration,
        max_bytes: usize,
        allow_http_for_localhost: bool,
        host_overrides: &[(String, SocketAddr)],
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
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("stratos/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(Policy::custom(move |attempt| redirect(attempt, allow_http)));
        for (host, addr) in host_overrides {
            builder = builder.resolve(host, *addr);
        }
        let client = builder
            .build()
            .map_err(|e| NetworkError::Client(describe(&e)))?;
        Ok(Self {
            client,
            max_bytes,
            allow_http_for_localhost,
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
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| NetworkError::Http(describe(&e)))?;
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
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| NetworkError::Http(describe(&e)))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// True for host names that can only mean this machine.
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

/// Follows a few redirects, never to plain HTTP: a redirect must not undo the https-only rule.
fn redirect(attempt: Attempt<'_>, allow_http_for_localhost: bool) -> reqwest::redirect::Action {
    if attempt.previous().len() > MAX_REDIRECTS {
        attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
    } else if scheme_allowed(attempt.url(), allow_http_for_localhost) {
        attempt.follow()
    } else {
        let scheme = attempt.url().scheme().to_owned();
        attempt.error(format!("refused a redirect to a {scheme}:// URL"))
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
