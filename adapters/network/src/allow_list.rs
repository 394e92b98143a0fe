//! The external enrollment allow-list: a text file of DIDs at a URI (`STRATOS_ALLOW_LIST_URI`,
//! read by the service), one per line.
//!
//! The list is fetched when the adapter starts and then on an interval by a background task;
//! [`AllowList::contains`] answers from the last good copy in memory, so enrollment never waits
//! on the list's server. A failed fetch (network error, non-2xx, oversized body) keeps the
//! previous copy: an unreachable list server must not lock every user out. Each good copy can
//! be mirrored into a shared [`Cache`] set (`STRATOS_ALLOW_LIST_BOOTSTRAP_NAME`, read by the
//! service) for other components that read the set there.

use std::collections::HashSet;
use std::error::Error as _;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use stratos_domain::syntax::Did;
use stratos_ports::env::{AllowList, Cache, EnvError};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::NetworkError;

/// How often the list is fetched again unless configured otherwise (the reference service's
/// interval).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(600);

/// The longest one fetch may take unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest body accepted unless configured otherwise: about two million DIDs, far past any
/// real list, and small enough that a misconfigured URI cannot exhaust memory.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Where the list lives and how it is fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct AllowListConfig {
    /// `http://` or `https://` URI of the list.
    pub uri: String,
    /// Time between background fetches (> 0).
    pub refresh_every: Duration,
    /// Limit for one fetch, connection to last byte.
    pub timeout: Duration,
    /// Largest accepted body in bytes.
    pub max_bytes: usize,
    /// The `User-Agent` sent ([`crate::DEFAULT_USER_AGENT`] by default).
    pub user_agent: String,
}

impl AllowListConfig {
    /// The list at `uri` with the default interval, timeout and size limit.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            refresh_every: DEFAULT_REFRESH,
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            user_agent: crate::DEFAULT_USER_AGENT.to_owned(),
        }
    }
}

impl std::fmt::Debug for AllowListConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URI may carry an access token in its query; it is left out.
        f.debug_struct("AllowListConfig")
            .field("refresh_every", &self.refresh_every)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// A shared cache set that receives every successfully fetched list.
#[derive(Clone)]
pub struct Mirror {
    /// Any [`Cache`] (Valkey in production).
    pub cache: Arc<dyn Cache>,
    /// The set's key.
    pub key: String,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What the refreshes have done so far (for health checks and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowListStatus {
    /// DIDs on the list in memory.
    pub dids: usize,
    /// Lines of the last good fetch that were neither blank, comments nor valid DIDs.
    pub invalid_lines: usize,
    /// Fetches that replaced the list.
    pub successes: u64,
    /// Fetches that failed (the list was kept).
    pub failures: u64,
    /// Why the last fetch failed; cleared by a good fetch.
    pub last_error: Option<String>,
    /// Why mirroring the last good fetch failed, if it did.
    pub mirror_error: Option<String>,
}

/// The outcome of one good fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// DIDs now on the list.
    pub dids: usize,
    /// Lines skipped as invalid.
    pub invalid_lines: usize,
    /// The mirror's failure; the in-memory list was replaced regardless.
    pub mirror_error: Option<EnvError>,
}

/// A fetched list, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedList {
    /// The valid DIDs.
    pub dids: HashSet<String>,
    /// Lines that were neither blank, comments nor valid DIDs.
    pub invalid_lines: usize,
}

/// Parses a list body: one DID per line, surrounding whitespace trimmed, blank lines and lines
/// starting with `#` skipped; other lines that are not valid DIDs are counted and skipped.
pub fn parse_list(body: &str) -> ParsedList {
    let mut parsed = ParsedList::default();
    // Editors on some systems start UTF-8 files with a byte-order mark; it is not whitespace.
    for line in body.trim_start_matches('\u{feff}').lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match Did::parse(line) {
            Ok(did) => {
                parsed.dids.insert(did.to_string());
            }
            Err(_) => parsed.invalid_lines += 1,
        }
    }
    parsed
}

/// The external allow-list over HTTP(S); see the module documentation.
///
/// Dropping it stops the background refresh.
pub struct HttpAllowList {
    shared: Arc<Shared>,
    refresher: JoinHandle<()>,
}

impl std::fmt::Debug for HttpAllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAllowList")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Drop for HttpAllowList {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl HttpAllowList {
    /// Validates `config`, fetches the list once and starts refreshing it every
    /// `config.refresh_every` on the current tokio runtime.
    ///
    /// A failed first fetch is not an error here: the list starts empty (nobody is admitted by
    /// it), [`HttpAllowList::status`] says why, and the background task keeps trying. Only a
    /// configuration that can never work is refused.
    pub async fn start(
        config: AllowListConfig,
        mirror: Option<Mirror>,
    ) -> Result<Self, NetworkError> {
        let url = Url::parse(&config.uri).map_err(|e| NetworkError::InvalidUri(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NetworkError::InvalidUri(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        if config.refresh_every.is_zero() {
            return Err(NetworkError::InvalidConfig(
                "the refresh interval must be positive".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetworkError::NoRuntime)?;
        crate::http::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.as_str())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| NetworkError::Client(describe(e)))?;
        let shared = Arc::new(Shared {
            client,
            url,
            max_bytes: config.max_bytes,
            mirror,
            dids: RwLock::new(Arc::new(HashSet::new())),
            status: Mutex::new(AllowListStatus::default()),
            one_fetch: tokio::sync::Mutex::new(()),
        });
        // The outcome is in the status (see above) and, when it failed, in the log: the service
        // starts with an empty list rather than not at all.
        if let Err(e) = shared.refresh().await {
            tracing::warn!(error = %e, "external allow-list: the first fetch failed");
        }
        let refresher = runtime.spawn(refresh_forever(shared.clone(), config.refresh_every));
        Ok(Self { shared, refresher })
    }

    /// Fetches the list now (as the background task does), replacing it on success.
    pub async fn refresh(&self) -> Result<FetchReport, NetworkError> {
        self.shared.refresh().await
    }

    /// What the refreshes have done so far.
    pub fn status(&self) -> AllowListStatus {
        lock(&self.shared.status).clone()
    }

    /// DIDs on the list.
    pub fn len(&self) -> usize {
        self.shared.current().len()
    }

    /// True when no DID is on the list.
    pub fn is_empty(&self) -> bool {
        self.shared.current().is_empty()
    }
}

#[async_trait]
impl AllowList for HttpAllowList {
    async fn contains(&self, did: &Did) -> Result<bool, EnvError> {
        Ok(self.shared.current().contains(did.as_str()))
    }
}

struct Shared {
    client: reqwest::Client,
    url: Url,
    max_bytes: usize,
    mirror: Option<Mirror>,
    /// Swapped whole on each good fetch, so readers never wait for a parse.
    dids: RwLock<Arc<HashSet<String>>>,
    status: Mutex<AllowListStatus>,
    /// A manual refresh and the background one must not race: the slower, older fetch could
    /// otherwise overwrite the newer list.
    one_fetch: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn current(&self) -> Arc<HashSet<String>> {
        self.dids.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn refresh(&self) -> Result<FetchReport, NetworkError> {
        let _one = self.one_fetch.lock().await;
        let body = match self.fetch().await {
            Ok(body) => body,
            Err(e) => {
                let mut status = lock(&self.status);
                status.failures += 1;
                status.last_error = Some(e.to_string());
                return Err(e);
            }
        };
        let parsed = parse_list(&body);
        let members: Vec<String> = match &self.mirror {
            Some(_) => parsed.dids.iter().cloned().collect(),
            None => Vec::new(),
        };
        let dids = parsed.dids.len();
        *self.dids.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(parsed.dids);
        let mirror_error = match &self.mirror {
            Some(m) => m.cache.replace_set(&m.key, &members).await.err(),
            None => None,
        };
        let mut status = lock(&self.status);
        status.dids = dids;
        status.invalid_lines = parsed.invalid_lines;
        status.successes += 1;
        status.last_error = None;
        status.mirror_error = mirror_error.as_ref().map(ToString::to_string);
        Ok(FetchReport {
            dids,
            invalid_lines: parsed.invalid_lines,
            mirror_error,
        })
    }

    async fn fetch(&self) -> Result<String, NetworkError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| NetworkError::Http(describe(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(NetworkError::Status(status.as_u16()));
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
            .map_err(|e| NetworkError::Http(describe(e)))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        // Invalid UTF-8 only spoils the lines it sits on, which then count as invalid.
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

async fn refresh_forever(shared: Arc<Shared>, every: Duration) {
    let start = tokio::time::Instant::now() + every;
    let mut ticks = tokio::time::interval_at(start, every);
    // After a slow fetch, wait a full interval again rather than fetching in a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Failures are counted in the status (and `/metrics`) and the list is kept; the next
        // tick retries. The error names no URL (it may carry a token).
        if let Err(e) = shared.refresh().await {
            tracing::warn!(error = %e, "external allow-list refresh failed; the previous list is kept");
        }
    }
}

/// The error and its causes, without the URL (which may carry a token).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    #[test]
    fn lines_are_trimmed_and_comments_blanks_and_invalid_lines_skipped() {
        let body = "\u{feff}did:plc:first\r\n\n  did:web:example.com  \n# a comment\n   # indented comment\nnot a did\ndid:plc:first\ndid:\n\tdid:plc:last";
        let parsed = parse_list(body);
        let mut dids: Vec<_> = parsed.dids.iter().map(String::as_str).collect();
        dids.sort_unstable();
        assert_eq!(
            dids,
            ["did:plc:first", "did:plc:last", "did:web:example.com"]
        );
        assert_eq!(parsed.invalid_lines, 2);
    }

    #[test]
    fn an_empty_body_is_an_empty_list() {
        assert_eq!(parse_list(""), ParsedList::default());
        assert_eq!(parse_list("\n\n# only comments\n"), ParsedList::default());
    }
}
