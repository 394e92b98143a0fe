//! In-memory environment ports: a manual clock, a DID-document table, authorization servers'
//! keys, an allow-list, a cache, a publish/subscribe notifier.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;
use stratos_domain::auth::Jwk;
use stratos_domain::syntax::{Did, Nsid, RecordKey};
use stratos_ports::env::{
    AllowList, AuthorizationServers, Cache, Clock, EnvError, IdentityResolver, Notifier,
    PublicRecords, Subscription,
};
use tokio::sync::broadcast;

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `now_ms`.
    pub fn at(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// DID documents and handles from tables.
#[derive(Debug, Default)]
pub struct MemoryIdentity {
    docs: Mutex<HashMap<String, Value>>,
    handles: Mutex<HashMap<String, Did>>,
}

impl MemoryIdentity {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a DID document.
    pub fn insert_doc(&self, did: &Did, doc: Value) {
        lock(&self.docs).insert(did.to_string(), doc);
    }

    /// Registers a handle.
    pub fn insert_handle(&self, handle: &str, did: Did) {
        lock(&self.handles).insert(handle.to_ascii_lowercase(), did);
    }
}

#[async_trait]
impl IdentityResolver for MemoryIdentity {
    async fn resolve_did(&self, did: &Did) -> Result<Option<Value>, EnvError> {
        Ok(lock(&self.docs).get(did.as_str()).cloned())
    }

    async fn resolve_handle(&self, handle: &str) -> Result<Option<Did>, EnvError> {
        Ok(lock(&self.handles)
            .get(&handle.to_ascii_lowercase())
            .cloned())
    }
}

/// `(did, collection)` → records in order.
type RecordTable = HashMap<(String, String), Vec<(RecordKey, Value)>>;

/// Accounts' public records from a table.
#[derive(Debug, Default)]
pub struct MemoryPublicRecords {
    records: Mutex<RecordTable>,
}

impl MemoryPublicRecords {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `did`'s record `collection/rkey`.
    pub fn put(&self, did: &Did, collection: &Nsid, rkey: RecordKey, value: Value) {
        let mut table = lock(&self.records);
        let list = table
            .entry((did.to_string(), collection.to_string()))
            .or_default();
        list.retain(|(k, _)| k != &rkey);
        list.push((rkey, value));
    }
}

#[async_trait]
impl PublicRecords for MemoryPublicRecords {
    async fn list_records(
        &self,
        did: &Did,
        collection: &Nsid,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Value)>, EnvError> {
        Ok(lock(&self.records)
            .get(&(did.to_string(), collection.to_string()))
            .map(|l| l.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}

/// Authorization servers from a table: `(pds, issuer)` → keys.
#[derive(Debug, Default)]
pub struct MemoryAuthorizationServers {
    servers: Mutex<HashMap<(String, String), Vec<Jwk>>>,
}

impl MemoryAuthorizationServers {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares `issuer` the authorization server of `pds`, signing with `keys`.
    pub fn insert(&self, pds: &str, issuer: &str, keys: Vec<Jwk>) {
        lock(&self.servers).insert((pds.to_owned(), issuer.to_owned()), keys);
    }
}

#[async_trait]
impl AuthorizationServers for MemoryAuthorizationServers {
    async fn issuer_keys(
        &self,
        pds: &str,
        issuer: &str,
        _refresh: bool,
    ) -> Result<Option<Vec<Jwk>>, EnvError> {
        Ok(lock(&self.servers)
            .get(&(pds.to_owned(), issuer.to_owned()))
            .cloned())
    }
}

/// An allow-list in a set.
#[derive(Debug, Default)]
pub struct MemoryAllowList(Mutex<HashSet<String>>);

impl MemoryAllowList {
    /// A list holding `dids`.
    pub fn of<I: IntoIterator<Item = S>, S: Into<String>>(dids: I) -> Self {
        Self(Mutex::new(dids.into_iter().map(Into::into).collect()))
    }
}

#[async_trait]
impl AllowList for MemoryAllowList {
    async fn contains(&self, did: &Did) -> Result<bool, EnvError> {
        Ok(lock(&self.0).contains(did.as_str()))
    }
}

#[derive(Debug, Default)]
struct CacheState {
    values: HashMap<String, (Vec<u8>, i64)>,
    sets: HashMap<String, HashSet<String>>,
}

/// A cache whose entries expire by TTL on the given clock.
#[derive(Debug)]
pub struct MemoryCache<C: Clock> {
    clock: C,
    state: Mutex<CacheState>,
}

impl<C: Clock> MemoryCache<C> {
    /// An empty cache timed by `clock`.
    pub fn new(clock: C) -> Self {
        Self {
            clock,
            state: Mutex::new(CacheState::default()),
        }
    }
}

#[async_trait]
impl<C: Clock> Cache for MemoryCache<C> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EnvError> {
        let now = self.clock.now_ms();
        let mut s = lock(&self.state);
        match s.values.get(key) {
            Some((v, expires)) if *expires > now => Ok(Some(v.clone())),
            Some(_) => {
                s.values.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), EnvError> {
        let expires = self
            .clock
            .now_ms()
            .saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        lock(&self.state)
            .values
            .insert(key.to_owned(), (value.to_vec(), expires));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), EnvError> {
        let mut s = lock(&self.state);
        s.values.remove(key);
        s.sets.remove(key);
        Ok(())
    }

    async fn replace_set(&self, key: &str, members: &[String]) -> Result<(), EnvError> {
        lock(&self.state)
            .sets
            .insert(key.to_owned(), members.iter().cloned().collect());
        Ok(())
    }

    async fn set_contains(&self, key: &str, member: &str) -> Result<bool, EnvError> {
        Ok(lock(&self.state)
            .sets
            .get(key)
            .is_some_and(|s| s.contains(member)))
    }
}

/// Messages a slow subscriber may fall behind by before it starts missing some (the port
/// allows losing notifications; a real server drops them too).
const NOTIFY_BACKLOG: usize = 1024;

/// Publish/subscribe within one process, one broadcast channel per channel name.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    channels: Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>,
}

impl MemoryNotifier {
    /// No channels yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), EnvError> {
        let mut channels = lock(&self.channels);
        if let Some(tx) = channels.get(channel) {
            if tx.receiver_count() == 0 {
                // Every subscriber went away: forget the channel so names do not pile up.
                channels.remove(channel);
            } else {
                // Fails only without receivers, which was just ruled out under the lock.
                let _ = tx.send(payload.to_vec());
            }
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Box<dyn Subscription>, EnvError> {
        let rx = lock(&self.channels)
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(NOTIFY_BACKLOG).0)
            .subscribe();
        Ok(Box::new(MemorySubscription(rx)))
    }
}

#[derive(Debug)]
struct MemorySubscription(broadcast::Receiver<Vec<u8>>);

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            match self.0.recv().await {
                Ok(message) => return Some(message),
                // Missed messages are allowed by the port; carry on with the oldest kept one.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
