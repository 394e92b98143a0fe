//! Small ports to the environment: time, identity resolution, OAuth authorization servers'
//! keys, the external allow-list, a
//! shared cache and publish/subscribe notifications between service instances.

use async_trait::async_trait;
use serde_json::Value;
use stratos_domain::auth::Jwk;
use stratos_domain::syntax::{Did, Nsid, RecordKey};

/// Wall-clock time, injectable for tests.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock: the production [`Clock`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Failures of environment ports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend failed.
    #[error("backend failed: {0}")]
    Backend(#[source] crate::Cause),
}

/// Resolves DIDs to DID documents and handles to DIDs.
#[async_trait]
pub trait IdentityResolver: Send + Sync {
    /// The DID document, `None` when the DID does not exist.
    async fn resolve_did(&self, did: &Did) -> Result<Option<Value>, EnvError>;
    /// The DID a handle points at, `None` when it points nowhere.
    async fn resolve_handle(&self, handle: &str) -> Result<Option<Did>, EnvError>;
}

/// An account's public records, read from the PDS its DID document names (for discovering its
/// `zone.stratos.actor.enrollment` records). The PDS's address comes from data the account
/// controls, so implementations hold it to the same address rule as `did:web` hosts.
#[async_trait]
pub trait PublicRecords: Send + Sync {
    /// Up to `limit` records of `collection` in `did`'s repository, as (record key, value in
    /// atproto JSON), in the PDS's order. An account that does not exist, or has no PDS, has
    /// none.
    async fn list_records(
        &self,
        did: &Did,
        collection: &Nsid,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Value)>, EnvError>;
}

/// The OAuth authorization servers that issue accounts' DPoP-bound access tokens.
#[async_trait]
pub trait AuthorizationServers: Send + Sync {
    /// The signing keys of `issuer`, provided it is an authorization server of the PDS at
    /// `pds` (the PDS's protected-resource metadata names it and the server's own metadata
    /// declares that issuer). `None` when it is not, so a token from an unrelated issuer can
    /// never authenticate an account. `refresh` skips cached keys (an unknown `kid`: the
    /// server rotated its keys).
    async fn issuer_keys(
        &self,
        pds: &str,
        issuer: &str,
        refresh: bool,
    ) -> Result<Option<Vec<Jwk>>, EnvError>;
}

/// The external enrollment allow-list.
#[async_trait]
pub trait AllowList: Send + Sync {
    /// True when the DID is on the list.
    async fn contains(&self, did: &Did) -> Result<bool, EnvError>;
}

/// A small shared cache (Valkey in production), values are opaque bytes.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EnvError>;
    /// Stores `value` under `key` for `ttl_ms`.
    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), EnvError>;
    /// Removes `key`.
    async fn delete(&self, key: &str) -> Result<(), EnvError>;
    /// Replaces the set stored under `key` with `members`.
    async fn replace_set(&self, key: &str, members: &[String]) -> Result<(), EnvError>;
    /// True when `member` is in the set under `key`.
    async fn set_contains(&self, key: &str, member: &str) -> Result<bool, EnvError>;
}

/// Publish/subscribe notifications between service instances (Valkey in production), e.g.
/// "actor X sequenced a new event" so every instance wakes its live subscribers.
///
/// Delivery is at most once: a subscriber that is slow, reconnecting or not yet subscribed
/// misses messages. Notifications are hints; the durable truth stays in the store, and a
/// subscriber catches up from there (`RepoStore::events_after`) after it wakes.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `payload` to every current subscriber of `channel`; succeeds with no subscriber.
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), EnvError>;
    /// Subscribes to `channel`. Once this returns, every later publish on the channel reaches
    /// the subscription, in publish order; earlier ones never do.
    async fn subscribe(&self, channel: &str) -> Result<Box<dyn Subscription>, EnvError>;
}

/// One subscriber's stream of messages on one channel.
#[async_trait]
pub trait Subscription: Send {
    /// The next message, waiting for it; `None` once the subscription is closed (the
    /// connection dropped or the notifier went away), after which the caller subscribes again
    /// and catches up from the store.
    async fn next(&mut self) -> Option<Vec<u8>>;
}
