//! The signing keys of the OAuth authorization server behind an account's PDS.
//!
//! atproto clients reuse the access token the account's PDS authorization server issued them
//! (RFC 9449 DPoP-bound). To verify one, Stratos must know that the token's issuer really is the
//! authorization server of the account's PDS, and must have that server's keys:
//!
//! 1. `GET {pds origin}/.well-known/oauth-protected-resource` (RFC 9728): its
//!    `authorization_servers` must list the issuer exactly;
//! 2. `GET {issuer}/.well-known/oauth-authorization-server` (RFC 8414): its `issuer` must equal
//!    the issuer exactly, and its `jwks_uri` names the key set;
//! 3. `GET {jwks_uri}`: the EC signing keys (others are skipped).
//!
//! The three answers are cached (by default ten minutes). A token whose `kid` is not among the
//! cached keys asks for a refresh (the server rotated its keys), which refetches steps 2–3; a
//! further forced refresh of the same issuer within
//! [`AuthServerConfig::min_refresh_interval`] is answered from the cache, so a stream of
//! made-up `kid`s cannot turn into a stream of fetches. Like identity lookups, everything is `https://`, except
//! loopback hosts when [`AuthServerConfig::allow_http_for_localhost`] is set.
//!
//! Every one of these URLs comes from data an unauthenticated caller controls (the DID document
//! names the PDS, the PDS names the issuer, the issuer names `jwks_uri`), so unless
//! [`AuthServerConfig::allow_private_targets`] is set they may only lead to public addresses:
//! IP literals are checked before a request, host names after DNS resolution, and both again on
//! every redirect hop. Failures (a refused address, an unreachable or misbehaving server, an
//! issuer that is no authorization server) are remembered for
//! [`AuthServerConfig::failure_ttl`], so repeating a hostile token does not repeat the fetches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Url;
use serde_json::Value;
use stratos_domain::auth::{Jwk, JwkSet};
use stratos_ports::env::{AuthorizationServers, EnvError};

use crate::NetworkError;
use crate::http::{Fetcher, Targets, TtlCache, lock};

/// How long metadata and keys are reused unless configured otherwise.
pub const DEFAULT_KEYS_TTL: Duration = Duration::from_secs(600);

/// The shortest time between two forced refreshes of one issuer's keys, unless configured
/// otherwise.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The largest metadata or key-set body accepted.
const MAX_BYTES: usize = 256 * 1024;

/// How authorization servers are discovered and cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthServerConfig {
    /// Limit for one request (> 0).
    pub timeout: Duration,
    /// How long metadata and keys are cached (zero disables caching).
    pub ttl: Duration,
    /// Shortest interval between forced refreshes of one issuer.
    pub min_refresh_interval: Duration,
    /// Entries kept per cache.
    pub cache_capacity: usize,
    /// How long a failed discovery (refused address, network error, bad status or body, an
    /// issuer that is not an authorization server) is remembered (at most
    /// [`crate::identity::MAX_TTL`]; zero disables).
    pub failure_ttl: Duration,
    /// Use `http://` for loopback hosts. Tests and local development only.
    pub allow_http_for_localhost: bool,
    /// Let the PDS, issuer and `jwks_uri` URLs lead to private, loopback, link-local and other
    /// non-public addresses. Tests and local development only: these URLs are chosen by
    /// whoever presents a token.
    pub allow_private_targets: bool,
    /// Host names pinned to socket addresses (tests). Held to the address rule like DNS
    /// answers.
    pub host_overrides: Vec<(String, SocketAddr)>,
    /// The `User-Agent` sent ([`crate::DEFAULT_USER_AGENT`] by default).
    pub user_agent: String,
}

impl Default for AuthServerConfig {
    fn default() -> Self {
        Self {
            timeout: crate::identity::DEFAULT_TIMEOUT,
            ttl: DEFAULT_KEYS_TTL,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            cache_capacity: crate::identity::DEFAULT_CACHE_CAPACITY,
            failure_ttl: crate::identity::DEFAULT_FAILURE_TTL,
            allow_http_for_localhost: false,
            allow_private_targets: false,
            host_overrides: Vec::new(),
            user_agent: crate::DEFAULT_USER_AGENT.to_owned(),
        }
    }
}

/// Discovers and caches authorization servers' keys; see the module documentation.
pub struct HttpAuthorizationServers {
    fetcher: Fetcher,
    ttl: Duration,
    min_refresh_interval: Duration,
    failure_ttl: Duration,
    /// PDS origin → the authorization servers it names, or why they could not be learnt.
    resources: TtlCache<Result<Vec<String>, NetworkError>>,
    /// Issuer → its keys.
    keys: TtlCache<Vec<Jwk>>,
    /// Issuer → why its keys could not be fetched (`None`: it is no authorization server).
    key_failures: TtlCache<Option<NetworkError>>,
    /// Issuer → when a forced refresh last fetched its keys.
    forced_at: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for HttpAuthorizationServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthorizationServers")
            .field("ttl", &self.ttl)
            .field("cached_resources", &self.resources.len())
            .field("cached_key_sets", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl HttpAuthorizationServers {
    /// Builds the HTTP client; nothing is fetched yet.
    pub fn new(config: AuthServerConfig) -> Result<Self, NetworkError> {
        if config.ttl > crate::identity::MAX_TTL || config.failure_ttl > crate::identity::MAX_TTL {
            return Err(NetworkError::InvalidConfig(format!(
                "the cache TTL must be at most {} s",
                crate::identity::MAX_TTL.as_secs()
            )));
        }
        Ok(Self {
            fetcher: Fetcher::new(
                config.timeout,
                MAX_BYTES,
                config.allow_http_for_localhost,
                &config.host_overrides,
                Targets::caller_controlled(config.allow_private_targets),
                &config.user_agent,
            )?,
            ttl: config.ttl,
            min_refresh_interval: config.min_refresh_interval,
            failure_ttl: config.failure_ttl,
            resources: TtlCache::new(config.cache_capacity),
            keys: TtlCache::new(config.cache_capacity),
            key_failures: TtlCache::new(config.cache_capacity),
            forced_at: Mutex::new(HashMap::new()),
        })
    }

    /// An `http(s)` URL this client may fetch, without userinfo, query or fragment.
    fn server_url(&self, text: &str) -> Result<Url, NetworkError> {
        let url = Url::parse(text).map_err(|e| NetworkError::InvalidUri(e.to_string()))?;
        if !self.fetcher.allowed(&url)
            || url.host_str().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(NetworkError::InvalidUri(format!(
                "{text:?} is not a usable server URL (https://, no credentials, query or \
                 fragment{})",
                if self.fetcher.allow_http_for_localhost() {
                    "; http:// only on loopback"
                } else {
                    ""
                }
            )));
        }
        Ok(url)
    }

    async fn json(&self, url: Url) -> Result<Option<Value>, NetworkError> {
        let absent = |status: u16| matches!(status, 404 | 410);
        let Some(body) = self.fetcher.fetch(url, "application/json", absent).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| NetworkError::InvalidBody(format!("not JSON: {e}")))
    }

    /// The authorization servers the PDS at `pds` names; answers and failures are cached.
    async fn resource_servers(&self, pds: &Url) -> Result<Vec<String>, NetworkError> {
        let origin = pds.origin().ascii_serialization();
        if let Some(cached) = self.resources.get(&origin) {
            return cached;
        }
        let found = self.fetch_resource_servers(&origin).await;
        let ttl = if found.is_ok() {
            self.ttl
        } else {
            self.failure_ttl
        };
        self.resources.insert(origin, found.clone(), ttl);
        found
    }

    /// Fetches the protected-resource metadata of `origin` (no cache).
    async fn fetch_resource_servers(&self, origin: &str) -> Result<Vec<String>, NetworkError> {
        let url = self.server_url(&format!("{origin}/.well-known/oauth-protected-resource"))?;
        let servers = match self.json(url).await? {
            None => Vec::new(),
            Some(doc) => {
                // RFC 9728 §3.3: the metadata must be about the resource it was fetched for.
                if let Some(resource) = doc.get("resource").and_then(Value::as_str)
                    && resource.trim_end_matches('/') != origin
                {
                    return Err(NetworkError::InvalidBody(format!(
                        "protected-resource metadata of {origin} is about {resource:?}"
                    )));
                }
                doc.get("authorization_servers")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        Ok(servers)
    }

    /// Fetches `issuer`'s metadata and key set (no cache).
    async fn fetch_keys(&self, issuer: &str) -> Result<Option<Vec<Jwk>>, NetworkError> {
        let base = self.server_url(issuer)?;
        // RFC 8414 §3.1: the well-known segment goes between the host and any issuer path.
        let path = base.path().trim_end_matches('/');
        let metadata_url = self.server_url(&format!(
            "{}/.well-known/oauth-authorization-server{path}",
            base.origin().ascii_serialization()
        ))?;
        let Some(metadata) = self.json(metadata_url).await? else {
            return Ok(None);
        };
        // RFC 8414 §3.3: a server may only speak for the issuer it is.
        if metadata.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Ok(None);
        }
        let jwks_uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| NetworkError::InvalidBody("metadata without jwks_uri".into()))?;
        let jwks_url = self.server_url(jwks_uri)?;
        let Some(jwks) = self.json(jwks_url).await? else {
            return Err(NetworkError::InvalidBody(format!(
                "the key set {jwks_uri} does not exist"
            )));
        };
        let set = JwkSet::from_value(&jwks)
            .map_err(|e| NetworkError::InvalidBody(format!("key set: {e}")))?;
        Ok(Some(set.keys))
    }
}

#[async_trait]
impl AuthorizationServers for HttpAuthorizationServers {
    async fn issuer_keys(
        &self,
        pds: &str,
        issuer: &str,
        refresh: bool,
    ) -> Result<Option<Vec<Jwk>>, EnvError> {
        let backend = |e: NetworkError| {
            EnvError::Backend(stratos_ports::Cause::message(format!(
                "authorization server: {e}"
            )))
        };
        let pds = self.server_url(pds).map_err(backend)?;
        let servers = self.resource_servers(&pds).await.map_err(backend)?;
        if !servers.iter().any(|s| s == issuer) {
            return Ok(None);
        }
        let recently_forced = lock(&self.forced_at)
            .get(issuer)
            .is_some_and(|at| at.elapsed() < self.min_refresh_interval);
        if let Some(cached) = self.keys.get(issuer)
            && (!refresh || recently_forced)
        {
            return Ok(Some(cached));
        }
        // A recent failure stands for its (short) TTL, forced refresh or not.
        if let Some(failure) = self.key_failures.get(issuer) {
            return failure.map_or(Ok(None), |e| Err(backend(e)));
        }
        let fetched = self.fetch_keys(issuer).await;
        if refresh {
            let mut forced = lock(&self.forced_at);
            let cooldown = self.min_refresh_interval;
            forced.retain(|_, at| at.elapsed() < cooldown);
            forced.insert(issuer.to_owned(), Instant::now());
        }
        match fetched {
            Ok(Some(keys)) => {
                self.keys.insert(issuer.to_owned(), keys.clone(), self.ttl);
                Ok(Some(keys))
            }
            Ok(None) => {
                self.key_failures
                    .insert(issuer.to_owned(), None, self.failure_ttl);
                Ok(None)
            }
            Err(e) => {
                self.key_failures
                    .insert(issuer.to_owned(), Some(e.clone()), self.failure_ttl);
                Err(backend(e))
            }
        }
    }
}
