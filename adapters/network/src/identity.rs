//! Identity resolution over HTTPS: DIDs to DID documents and handles to DIDs, with a small
//! in-memory cache in front.
//!
//! - `did:plc:…` documents come from a PLC directory: `GET {plc_url}/{did}`.
//! - `did:web:{host}` documents come from `https://{host}/.well-known/did.json`. atproto only
//!   supports hostname-level `did:web`: path-based DIDs (`did:web:host:path`) do not resolve, and
//!   a port (`did:web:localhost%3A3100`) is only accepted on `localhost`, the testing and
//!   development case the atproto DID specification allows.
//! - Handles resolve through `https://{handle}/.well-known/atproto-did` only. The DNS method
//!   (a `_atproto.{handle}` TXT record) needs a DNS client this crate does not have, so a handle
//!   published only in DNS resolves to `None` here.
//!
//! A fetched document is returned only when its `id` is the DID asked for: anything else is
//! treated as "does not exist", since a host must not be able to speak for another DID.
//!
//! Plain `http://` is never used, including on redirects, except for loopback hosts
//! (`localhost`, `*.localhost`, `127.0.0.1`, `::1`) when
//! [`IdentityConfig::allow_http_for_localhost`] is set, for tests and local development.
//!
//! The PLC directory is the operator's choice and may be at any address. `did:web` hosts and
//! handles are chosen by whoever presents a DID or handle, so unless
//! [`IdentityConfig::allow_private_targets`] is set they may only lead to public addresses:
//! IP literals are refused before a request, host names after DNS resolution, and both again on
//! every redirect hop.
//!
//! Found and not-found answers are cached (by default five minutes and thirty seconds) so that
//! hot paths, such as checking an AppView's service-auth JWT on every request, do not go to the
//! network each time. Failures (network errors, 5xx, oversized or malformed bodies, refused
//! addresses) of `did:web` and handle lookups are cached for
//! [`IdentityConfig::failure_ttl`] (ten seconds by default), so a caller repeating a hostile
//! identifier does not repeat the fetch; failures of the PLC directory are not cached, so an
//! outage of the operator's directory heals on the next call. After a signature fails to verify
//! against a cached key, [`HttpIdentityResolver::invalidate`] lets the caller retry against a
//! fresh document, in case the key was rotated.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use serde_json::Value;
use stratos_domain::syntax::{Did, Handle, Nsid, RecordKey};
use stratos_ports::env::{EnvError, IdentityResolver, PublicRecords};

// The DID-document readers are pure rules; they live in the domain, where the library's
// authentication reads them too. Re-exported so this crate's callers keep their paths.
pub use stratos_domain::did_doc::{pds_endpoint, signing_key, signing_public_key};

use crate::NetworkError;
use crate::http::{Fetcher, Targets, TtlCache, is_loopback, scheme_allowed};

/// The public PLC directory.
pub const DEFAULT_PLC_URL: &str = "https://plc.directory";

/// The longest one lookup may take unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest body accepted unless configured otherwise: real DID documents are a few KiB.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

/// How long a found document or handle is reused unless configured otherwise.
pub const DEFAULT_POSITIVE_TTL: Duration = Duration::from_secs(300);

/// How long a "does not exist" answer is reused unless configured otherwise; shorter, so a
/// newly created account becomes visible quickly.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// How long a failed lookup of a caller-chosen host (`did:web`, handle, authorization server)
/// is remembered unless configured otherwise: long enough that repeating a hostile identifier
/// costs no fetch, short enough that a real host's outage soon heals.
pub const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(10);

/// Entries kept per cache (documents, handles) unless configured otherwise.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// The longest accepted cache TTL: identities change (key rotation, PDS moves), and a day-old
/// answer is already stale.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// How identities are resolved and cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Base URL of the PLC directory (`https://`; `http://` only on loopback with
    /// `allow_http_for_localhost`).
    pub plc_url: String,
    /// Limit for one request, connection to last byte (> 0).
    pub timeout: Duration,
    /// Largest accepted body in bytes (> 0).
    pub max_bytes: usize,
    /// How long found documents and handles are cached (at most [`MAX_TTL`]; zero disables).
    pub positive_ttl: Duration,
    /// How long "does not exist" answers are cached (at most [`MAX_TTL`]; zero disables).
    pub negative_ttl: Duration,
    /// How long failed `did:web` and handle lookups are cached (at most [`MAX_TTL`]; zero
    /// disables). PLC directory failures are never cached.
    pub failure_ttl: Duration,
    /// Entries kept in each of the two caches (documents, handles); zero disables caching.
    pub cache_capacity: usize,
    /// Use `http://` for loopback hosts (`localhost`, `*.localhost`, `127.0.0.1`, `::1`).
    /// For tests and local development only; other hosts are always `https://`.
    pub allow_http_for_localhost: bool,
    /// Let `did:web` hosts and handles lead to private, loopback, link-local and other
    /// non-public addresses. For tests and local development only: those hosts are chosen by
    /// whoever presents the DID or handle. The PLC directory is never restricted.
    pub allow_private_targets: bool,
    /// Host names pinned to socket addresses instead of being looked up in DNS, like curl's
    /// `--resolve`. A non-zero port is used when the URL names none (handles and `did:web`
    /// without a port), so tests can serve `https?://alice.localhost/…` from any local port.
    /// Pinned addresses are held to the address rule like DNS answers.
    pub host_overrides: Vec<(String, SocketAddr)>,
    /// The `User-Agent` sent ([`crate::DEFAULT_USER_AGENT`] by default).
    pub user_agent: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            plc_url: DEFAULT_PLC_URL.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            positive_ttl: DEFAULT_POSITIVE_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            failure_ttl: DEFAULT_FAILURE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            allow_http_for_localhost: false,
            allow_private_targets: false,
            host_overrides: Vec::new(),
            user_agent: crate::DEFAULT_USER_AGENT.to_owned(),
        }
    }
}

/// Resolves DIDs and handles over HTTPS; see the module documentation.
pub struct HttpIdentityResolver {
    /// For the PLC directory, which the operator chose.
    directory: Fetcher,
    /// For `did:web` hosts and handles, which callers choose.
    web: Fetcher,
    /// Validated, without a trailing `/`.
    plc_url: String,
    allow_http_for_localhost: bool,
    positive_ttl: Duration,
    negative_ttl: Duration,
    failure_ttl: Duration,
    docs: TtlCache<Option<Value>>,
    handles: TtlCache<Option<Did>>,
    /// DID or handle (distinct: a handle has no `:`) → why its last lookup of a caller-chosen
    /// host failed.
    failures: TtlCache<NetworkError>,
}

impl std::fmt::Debug for HttpIdentityResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpIdentityResolver")
            .field("plc_url", &self.plc_url)
            .field("allow_http_for_localhost", &self.allow_http_for_localhost)
            .field("cached_documents", &self.docs.len())
            .field("cached_handles", &self.handles.len())
            .finish_non_exhaustive()
    }
}

impl HttpIdentityResolver {
    /// Validates `config` and builds the HTTP client. Nothing is fetched yet, and no runtime is
    /// needed until the first lookup.
    pub fn new(config: IdentityConfig) -> Result<Self, NetworkError> {
        let allow_http = config.allow_http_for_localhost;
        let plc =
            Url::parse(&config.plc_url).map_err(|e| NetworkError::InvalidUri(e.to_string()))?;
        if !scheme_allowed(&plc, allow_http) {
            return Err(NetworkError::InvalidUri(format!(
                "the PLC directory must be https:// (http:// only on loopback with \
                 allow_http_for_localhost), got {:?}",
                plc.scheme()
            )));
        }
        if plc.query().is_some() || plc.fragment().is_some() {
            return Err(NetworkError::InvalidUri(
                "the PLC directory URL must not have a query or fragment".into(),
            ));
        }
        if [config.positive_ttl, config.negative_ttl, config.failure_ttl]
            .iter()
            .any(|ttl| *ttl > MAX_TTL)
        {
            return Err(NetworkError::InvalidConfig(format!(
                "cache TTLs must be at most {} s",
                MAX_TTL.as_secs()
            )));
        }
        let fetcher = |targets| {
            Fetcher::new(
                config.timeout,
                config.max_bytes,
                allow_http,
                &config.host_overrides,
                targets,
                &config.user_agent,
            )
        };
        Ok(Self {
            directory: fetcher(Targets::Any)?,
            web: fetcher(Targets::caller_controlled(config.allow_private_targets))?,
            plc_url: plc.as_str().trim_end_matches('/').to_owned(),
            allow_http_for_localhost: allow_http,
            positive_ttl: config.positive_ttl,
            negative_ttl: config.negative_ttl,
            failure_ttl: config.failure_ttl,
            docs: TtlCache::new(config.cache_capacity),
            handles: TtlCache::new(config.cache_capacity),
            failures: TtlCache::new(config.cache_capacity),
        })
    }

    /// Forgets the cached answer for `did`, so the next lookup fetches the document again (after
    /// a signature failed against a cached key, say).
    pub fn invalidate(&self, did: &Did) {
        self.docs.remove(did.as_str());
        self.failures.remove(did.as_str());
    }

    /// Forgets the cached answer for `handle` (compared case-insensitively).
    pub fn invalidate_handle(&self, handle: &str) {
        let handle = handle.to_ascii_lowercase();
        self.handles.remove(&handle);
        self.failures.remove(&handle);
    }

    /// Where the document of `did` is fetched from; `None` for DIDs that cannot resolve
    /// (unsupported methods, malformed `did:plc`, path-based `did:web`, a port off localhost).
    /// The flag says whether the URL is on the operator's PLC directory.
    fn document_url(&self, did: &Did) -> Option<(Url, bool)> {
        let (method, id) = did.as_str().strip_prefix("did:")?.split_once(':')?;
        match method {
            "plc" => {
                // The directory would answer 404 for these anyway; refusing them here keeps
                // malformed DIDs off the network.
                let valid =
                    id.len() == 24 && id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
                valid
                    .then(|| Url::parse(&format!("{}/{did}", self.plc_url)).ok())
                    .flatten()
                    .map(|url| (url, true))
            }
            "web" => {
                let (host, port) = did_web_host(id)?;
                self.host_url(&host, port, "/.well-known/did.json")
                    .map(|url| (url, false))
            }
            _ => None,
        }
    }

    fn host_url(&self, host: &str, port: Option<u16>, path: &str) -> Option<Url> {
        let scheme = if self.allow_http_for_localhost && is_loopback(host) {
            "http"
        } else {
            "https"
        };
        let url = match port {
            Some(port) => format!("{scheme}://{host}:{port}{path}"),
            None => format!("{scheme}://{host}{path}"),
        };
        Url::parse(&url).ok()
    }

    async fn fetch_document(
        &self,
        did: &Did,
        url: Url,
        fetcher: &Fetcher,
    ) -> Result<Option<Value>, NetworkError> {
        let absent = |status: u16| matches!(status, 404 | 410);
        let accept = "application/did+ld+json, application/json";
        let Some(body) = fetcher.fetch(url, accept, absent).await? else {
            return Ok(None);
        };
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| NetworkError::InvalidBody(format!("DID document: {e}")))?;
        let id_matches = doc.get("id").and_then(Value::as_str) == Some(did.as_str());
        Ok(id_matches.then_some(doc))
    }

    async fn fetch_handle(&self, handle: &Handle) -> Result<Option<Did>, NetworkError> {
        let Some(url) = self.host_url(handle.as_str(), None, "/.well-known/atproto-did") else {
            return Ok(None);
        };
        // A host without the well-known file answers some 4xx; timeouts and rate limits are
        // failures to retry, not answers.
        let absent = |status: u16| (400..500).contains(&status) && !matches!(status, 408 | 429);
        let Some(body) = self.web.fetch(url, "text/plain", absent).await? else {
            return Ok(None);
        };
        // Anything but a single valid DID means the handle points nowhere.
        Ok(std::str::from_utf8(&body)
            .ok()
            .and_then(|text| Did::parse(text.trim()).ok()))
    }

    fn ttl<T>(&self, found: &Option<T>) -> Duration {
        if found.is_some() {
            self.positive_ttl
        } else {
            self.negative_ttl
        }
    }
}

#[async_trait]
impl IdentityResolver for HttpIdentityResolver {
    /// The document of a `did:plc` or hostname-level `did:web` DID whose `id` matches; `None`
    /// when it does not exist, does not match, or cannot resolve (other methods, path-based
    /// `did:web`). Network failures, unexpected statuses, oversized or non-JSON bodies and
    /// refused addresses are errors, cached for the failure TTL except on the PLC directory.
    async fn resolve_did(&self, did: &Did) -> Result<Option<Value>, EnvError> {
        let failed = |e: NetworkError| {
            EnvError::Backend(stratos_ports::Cause::message(format!(
                "resolving {did}: {e}"
            )))
        };
        if let Some(cached) = self.docs.get(did.as_str()) {
            return Ok(cached);
        }
        if let Some(e) = self.failures.get(did.as_str()) {
            return Err(failed(e));
        }
        let Some((url, on_directory)) = self.document_url(did) else {
            return Ok(None);
        };
        let fetcher = if on_directory {
            &self.directory
        } else {
            &self.web
        };
        match self.fetch_document(did, url, fetcher).await {
            Ok(doc) => {
                self.docs
                    .insert(did.to_string(), doc.clone(), self.ttl(&doc));
                Ok(doc)
            }
            Err(e) => {
                if !on_directory {
                    self.failures
                        .insert(did.to_string(), e.clone(), self.failure_ttl);
                }
                Err(failed(e))
            }
        }
    }

    /// The DID served at `https://{handle}/.well-known/atproto-did` (trimmed); `None` for an
    /// invalid handle, a 4xx answer or a body that is not a DID. DNS TXT records are not
    /// consulted (see the module documentation).
    async fn resolve_handle(&self, handle: &str) -> Result<Option<Did>, EnvError> {
        let Ok(handle) = Handle::parse(handle) else {
            return Ok(None);
        };
        let handle = handle.normalized();
        let failed = |e: NetworkError| {
            EnvError::Backend(stratos_ports::Cause::message(format!(
                "resolving handle {handle}: {e}"
            )))
        };
        if let Some(cached) = self.handles.get(handle.as_str()) {
            return Ok(cached);
        }
        if let Some(e) = self.failures.get(handle.as_str()) {
            return Err(failed(e));
        }
        match self.fetch_handle(&handle).await {
            Ok(did) => {
                self.handles
                    .insert(handle.to_string(), did.clone(), self.ttl(&did));
                Ok(did)
            }
            Err(e) => {
                self.failures
                    .insert(handle.to_string(), e.clone(), self.failure_ttl);
                Err(failed(e))
            }
        }
    }
}

/// Records per `listRecords` page asked of a PDS (its maximum).
const LIST_PAGE: usize = 100;

#[async_trait]
impl PublicRecords for HttpIdentityResolver {
    /// Pages through `com.atproto.repo.listRecords` on the PDS of `did`'s document, with the
    /// rules of `did:web` hosts (https only, public addresses only unless allowed, bounded
    /// bodies): the PDS's address is the account's choice. A PDS answering 400 (no such
    /// repository) or 404 has none.
    async fn list_records(
        &self,
        did: &Did,
        collection: &Nsid,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Value)>, EnvError> {
        let failed = |e: NetworkError| {
            EnvError::Backend(stratos_ports::Cause::message(format!(
                "listing {collection} of {did}: {e}"
            )))
        };
        let Some(doc) = self.resolve_did(did).await? else {
            return Ok(Vec::new());
        };
        let Some(pds) = pds_endpoint(&doc) else {
            return Ok(Vec::new());
        };
        let base = Url::parse(&pds).map_err(|e| failed(NetworkError::InvalidUri(e.to_string())))?;
        if !self.web.allowed(&base) {
            return Err(failed(NetworkError::InvalidUri(format!(
                "the PDS {pds} is not an allowed URL"
            ))));
        }
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        while out.len() < limit {
            let mut url = base.clone();
            url.set_path("/xrpc/com.atproto.repo.listRecords");
            url.set_query(None);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("repo", did.as_str());
                q.append_pair("collection", collection.as_str());
                q.append_pair("limit", &(limit - out.len()).min(LIST_PAGE).to_string());
                if let Some(c) = &cursor {
                    q.append_pair("cursor", c);
                }
            }
            let Some(body) = self
                .web
                .fetch(url, "application/json", |s| s == 400 || s == 404)
                .await
                .map_err(failed)?
            else {
                break;
            };
            let page: Value = serde_json::from_slice(&body)
                .map_err(|e| failed(NetworkError::InvalidBody(e.to_string())))?;
            let records = page["records"]
                .as_array()
                .ok_or_else(|| failed(NetworkError::InvalidBody("no `records` array".into())))?;
            for record in records {
                // `at://did/collection/rkey`; a record whose URI is not one is skipped.
                let rkey = record["uri"]
                    .as_str()
                    .and_then(|u| u.rsplit('/').next())
                    .and_then(|k| RecordKey::parse(k).ok());
                if let Some(rkey) = rkey {
                    out.push((rkey, record["value"].clone()));
                }
            }
            cursor = page["cursor"].as_str().map(str::to_owned);
            if records.is_empty() || cursor.is_none() {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// The host and port of a hostname-level `did:web` identifier (the part after `did:web:`), or
/// `None` when atproto does not support it.
fn did_web_host(id: &str) -> Option<(String, Option<u16>)> {
    // A raw ':' separates path segments, which atproto does not support.
    if id.contains(':') {
        return None;
    }
    let decoded = id.replace("%3A", ":").replace("%3a", ":");
    // Any other escape could only smuggle characters a host name cannot have.
    if decoded.contains('%') {
        return None;
    }
    let (host, port) = match decoded.split_once(':') {
        None => (decoded.to_ascii_lowercase(), None),
        Some((host, port)) => {
            let host = host.to_ascii_lowercase();
            // Ports are for local testing only (atproto DID specification).
            if host != "localhost" || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
            (host, Some(port))
        }
    };
    // The same host names as handles, plus bare `localhost` for development.
    (host == "localhost" || Handle::parse(&host).is_ok()).then_some((host, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
mod tests {
    use super::*;

    fn resolver(allow_http: bool) -> HttpIdentityResolver {
        HttpIdentityResolver::new(IdentityConfig {
            allow_http_for_localhost: allow_http,
            ..IdentityConfig::default()
        })
        .unwrap()
    }

    fn url_of(r: &HttpIdentityResolver, did: &str) -> Option<String> {
        r.document_url(&Did::parse(did).unwrap())
            .map(|(u, _)| u.to_string())
    }

    #[test]
    fn did_plc_goes_to_the_directory_and_malformed_ones_nowhere() {
        let r = resolver(false);
        assert_eq!(
            url_of(&r, "did:plc:ewvi7nxzyoun6zhxrhs64oiz").as_deref(),
            Some("https://plc.directory/did:plc:ewvi7nxzyoun6zhxrhs64oiz")
        );
        for bad in [
            "did:plc:short",
            "did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ",
            "did:plc:ewvi7nxzyoun6zhxrhs64oi1",
            "did:plc:ewvi7nxzyoun6zhxrhs64oizz",
        ] {
            assert_eq!(url_of(&r, bad), None, "{bad}");
        }
        assert_eq!(
            url_of(
                &r,
                "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"
            ),
            None
        );
    }

    #[test]
    fn did_web_is_hostname_level_and_ports_are_for_localhost() {
        let r = resolver(false);
        assert_eq!(
            url_of(&r, "did:web:Example.com").as_deref(),
            Some("https://example.com/.well-known/did.json")
        );
        assert_eq!(
            url_of(&r, "did:web:localhost%3A3100").as_deref(),
            Some("https://localhost:3100/.well-known/did.json"),
            "https unless allowed"
        );
        for bad in [
            "did:web:example.com:user:alice",
            "did:web:example.com%3A8443",
            "did:web:localhost%3A0",
            "did:web:localhost%3A99999",
            "did:web:localhost%3A-80",
            "did:web:localhost%3A",
            "did:web:example.com%2Fpath",
            "did:web:example%2ecom",
            "did:web:127.0.0.1",
            "did:web:com",
            "did:web:-bad.example",
        ] {
            assert_eq!(url_of(&r, bad), None, "{bad}");
        }

        let dev = resolver(true);
        assert_eq!(
            url_of(&dev, "did:web:localhost%3a3100").as_deref(),
            Some("http://localhost:3100/.well-known/did.json")
        );
        assert_eq!(
            url_of(&dev, "did:web:example.com").as_deref(),
            Some("https://example.com/.well-known/did.json"),
            "never http off loopback"
        );
    }

    #[test]
    fn loopback_names() {
        for yes in [
            "localhost",
            "LOCALHOST",
            "alice.localhost",
            "127.0.0.1",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "example.com",
            "localhost.example",
            "10.0.0.1",
            "[::2]",
            "localhostx",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_what_expires_soonest() {
        let cache = TtlCache::new(2);
        cache.insert("long".into(), 1, Duration::from_secs(60));
        cache.insert("short".into(), 2, Duration::from_secs(1));
        cache.insert("new".into(), 3, Duration::from_secs(60));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("short"), None);
        assert_eq!(cache.get("long"), Some(1));
        assert_eq!(cache.get("new"), Some(3));
        // Replacing a present key never evicts another.
        cache.insert("new".into(), 4, Duration::from_secs(60));
        assert_eq!((cache.get("long"), cache.get("new")), (Some(1), Some(4)));

        let off = TtlCache::new(0);
        off.insert("k".into(), 1, Duration::from_secs(60));
        assert_eq!(off.get("k"), None);
    }

    #[test]
    fn expired_entries_are_not_served() {
        let cache = TtlCache::new(4);
        cache.insert("k".into(), 1, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get("k"), None);
        assert_eq!(cache.len(), 0);
    }
}
