//! A block cache in front of any [`RepoStore`].
//!
//! Blocks are content-addressed and immutable: the bytes under a CID never change, so a cached
//! block can only become wrong by disappearing — when its actor is destroyed. The decorator
//! therefore needs no invalidation protocol between service instances; it keeps the most
//! recently used blocks per `(did, cid)` up to a capacity counted in blocks
//! (`STRATOS_BLOCK_CACHE_SIZE`, read by the service; [`DEFAULT_CAPACITY`] otherwise).
//!
//! Every other operation passes straight through to the wrapped store.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::repo::RepoHead;
use stratos_domain::syntax::{Did, Nsid, RecordKey};

use crate::repo_store::{
    BlobListQuery, BlobReference, CommitUnit, ListQuery, ReleasedBlob, RepoResult, RepoStore,
    SeqEvent, StoredBlob, StoredRecord,
};

/// Blocks kept when the operator sets no size.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// Stale queue entries tolerated beyond twice the live entries before the queue is rebuilt;
/// keeps tiny caches from rebuilding on every hit.
const COMPACT_SLACK: usize = 1024;

/// A [`RepoStore`] that answers [`RepoStore::get_blocks`] from an LRU of recently used blocks.
///
/// - `get_blocks` returns cached blocks and asks the inner store for the misses only, in one call;
/// - `apply_commit` caches the unit's new blocks once the inner commit succeeded and drops the
///   blocks it removed;
/// - `destroy_actor` drops every cached block of the actor.
///
/// Another service instance destroying an actor is not seen here: its blocks stay cached until
/// evicted. They are only reachable through CIDs read from that actor's head, which is gone, so
/// they are dead weight rather than wrong answers.
pub struct CachedBlocks<R> {
    inner: R,
    capacity: usize,
    lru: Mutex<Lru>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What a [`CachedBlocks`] holds and how well it serves, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheFigures {
    /// Blocks cached now.
    pub blocks: usize,
    /// The most blocks the cache holds.
    pub capacity: usize,
    /// Block reads answered from the cache since it was made.
    pub hits: u64,
    /// Block reads that went to the store since it was made.
    pub misses: u64,
}

impl<R: fmt::Debug> fmt::Debug for CachedBlocks<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedBlocks")
            .field("inner", &self.inner)
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl<R: RepoStore> CachedBlocks<R> {
    /// Wraps `inner`, keeping at most `capacity` blocks (0 disables the cache).
    pub fn new(inner: R, capacity: usize) -> Self {
        Self {
            inner,
            capacity,
            lru: Mutex::new(Lru::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

impl<R> CachedBlocks<R> {
    /// The wrapped store.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The most blocks the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Blocks cached now.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size and hit counts.
    pub fn figures(&self) -> CacheFigures {
        CacheFigures {
            blocks: self.len(),
            capacity: self.capacity,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // Nothing panics while the lock is held; were it poisoned anyway, a cache that keeps
        // serving beats a store that fails every read.
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
struct Slot {
    bytes: Vec<u8>,
    /// The tick of the last use; queue entries with an older tick are stale.
    tick: u64,
}

/// Recency is a queue of `(tick, did, cid)` with one entry per use; an entry is live when the
/// slot still carries its tick. Stale entries are skipped on eviction and dropped by a rebuild
/// once they outnumber the live ones, so every operation is amortised O(1) per block (plus
/// O(log n) for the rebuild's sort) without a linked list.
#[derive(Debug, Default)]
struct Lru {
    actors: HashMap<Arc<str>, HashMap<Cid, Slot>>,
    order: VecDeque<(u64, Arc<str>, Cid)>,
    len: usize,
    tick: u64,
    /// Bumped on every destroy: a read that started before a destroy must not cache what it
    /// fetched from the store the destroy emptied.
    destroy_epoch: u64,
}

impl Lru {
    /// The shared key of `did`'s map, creating the map when the actor has none.
    fn actor_key(&mut self, did: &str) -> Arc<str> {
        if let Some((key, _)) = self.actors.get_key_value(did) {
            return key.clone();
        }
        let key: Arc<str> = Arc::from(did);
        self.actors.insert(key.clone(), HashMap::new());
        key
    }

    /// The cached blocks among `cids` (marked as used) and the CIDs to fetch.
    fn lookup(&mut self, did: &str, cids: &[Cid]) -> (BlockMap, Vec<Cid>) {
        let mut found = BlockMap::new();
        let Some(key) = self.actors.get_key_value(did).map(|(k, _)| k.clone()) else {
            return (found, cids.to_vec());
        };
        let mut misses = Vec::new();
        if let Some(slots) = self.actors.get_mut(&key) {
            for cid in cids {
                match slots.get_mut(cid) {
                    Some(slot) => {
                        self.tick += 1;
                        slot.tick = self.tick;
                        self.order.push_back((self.tick, key.clone(), *cid));
                        found.insert(*cid, slot.bytes.clone());
                    }
                    None => misses.push(*cid),
                }
            }
        }
        self.compact_if_stale();
        (found, misses)
    }

    fn insert(&mut self, did: &str, blocks: impl IntoIterator<Item = (Cid, Vec<u8>)>, cap: usize) {
        for (cid, bytes) in blocks {
            // Looked up per block: evicting an actor's last block removes its map.
            let key = self.actor_key(did);
            self.tick += 1;
            let tick = self.tick;
            if let Some(slots) = self.actors.get_mut(&key) {
                match slots.get_mut(&cid) {
                    // Same CID, same bytes: only the recency changes.
                    Some(slot) => slot.tick = tick,
                    None => {
                        slots.insert(cid, Slot { bytes, tick });
                        self.len += 1;
                    }
                }
            }
            self.order.push_back((tick, key, cid));
            while self.len > cap {
                self.evict_oldest();
            }
        }
        self.compact_if_stale();
    }

    fn evict_oldest(&mut self) {
        while let Some((tick, did, cid)) = self.order.pop_front() {
            let Some(slots) = self.actors.get_mut(&did) else {
                continue;
            };
            if slots.get(&cid).is_some_and(|s| s.tick == tick) {
                slots.remove(&cid);
                self.len -= 1;
                if slots.is_empty() {
                    self.actors.remove(&did);
                }
                return;
            }
        }
    }

    fn remove(&mut self, did: &str, cids: &[Cid]) {
        let Some(slots) = self.actors.get_mut(did) else {
            return;
        };
        for cid in cids {
            if slots.remove(cid).is_some() {
                self.len -= 1;
            }
        }
        if slots.is_empty() {
            self.actors.remove(did);
        }
    }

    fn drop_actor(&mut self, did: &str) {
        self.destroy_epoch += 1;
        if let Some(slots) = self.actors.remove(did) {
            self.len -= slots.len();
        }
    }

    fn compact_if_stale(&mut self) {
        if self.order.len() <= 2 * self.len + COMPACT_SLACK {
            return;
        }
        let mut live: Vec<(u64, Arc<str>, Cid)> = self
            .actors
            .iter()
            .flat_map(|(did, slots)| {
                slots
                    .iter()
                    .map(move |(cid, slot)| (slot.tick, did.clone(), *cid))
            })
            .collect();
        live.sort_unstable_by_key(|(tick, _, _)| *tick);
        self.order = live.into();
    }
}

#[async_trait]
impl<R: RepoStore> RepoStore for CachedBlocks<R> {
    async fn create_actor(&self, did: &Did) -> RepoResult<()> {
        self.inner.create_actor(did).await
    }

    async fn destroy_actor(&self, did: &Did) -> RepoResult<()> {
        let result = self.inner.destroy_actor(did).await;
        // Even a failed destroy may have deleted part of the store: forgetting is always safe.
        self.lock().drop_actor(did.as_str());
        result
    }

    async fn actor_exists(&self, did: &Did) -> RepoResult<bool> {
        self.inner.actor_exists(did).await
    }

    async fn head(&self, did: &Did) -> RepoResult<Option<RepoHead>> {
        self.inner.head(did).await
    }

    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> RepoResult<BlockMap> {
        // An empty request still goes to the store so a missing actor is reported as before.
        if cids.is_empty() || self.capacity == 0 {
            return self.inner.get_blocks(did, cids).await;
        }
        let (mut found, misses, epoch) = {
            let mut lru = self.lock();
            let (found, misses) = lru.lookup(did.as_str(), cids);
            (found, misses, lru.destroy_epoch)
        };
        self.hits.fetch_add(found.len() as u64, Ordering::Relaxed);
        self.misses
            .fetch_add(misses.len() as u64, Ordering::Relaxed);
        if misses.is_empty() {
            return Ok(found);
        }
        let fetched = self.inner.get_blocks(did, &misses).await?;
        {
            let mut lru = self.lock();
            if lru.destroy_epoch == epoch {
                let copies = fetched.iter().map(|(cid, bytes)| (*cid, bytes.to_vec()));
                lru.insert(did.as_str(), copies, self.capacity);
            }
        }
        found.extend(fetched);
        Ok(found)
    }

    async fn apply_commit(&self, did: &Did, unit: CommitUnit) -> RepoResult<u64> {
        if self.capacity == 0 {
            return self.inner.apply_commit(did, unit).await;
        }
        let new_blocks = unit.new_blocks.clone();
        let removed = unit.removed_blocks.clone();
        let epoch = self.lock().destroy_epoch;
        let seq = self.inner.apply_commit(did, unit).await?;
        let mut lru = self.lock();
        // New first, then removed: the order the stores apply them in.
        if lru.destroy_epoch == epoch {
            lru.insert(did.as_str(), new_blocks, self.capacity);
        }
        lru.remove(did.as_str(), &removed);
        Ok(seq)
    }

    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> RepoResult<Option<StoredRecord>> {
        self.inner.get_record(did, collection, rkey).await
    }

    async fn list_records(&self, did: &Did, query: &ListQuery) -> RepoResult<Vec<StoredRecord>> {
        self.inner.list_records(did, query).await
    }

    async fn events_after(
        &self,
        did: &Did,
        cursor: u64,
        limit: usize,
    ) -> RepoResult<Vec<SeqEvent>> {
        self.inner.events_after(did, cursor, limit).await
    }

    async fn latest_seq(&self, did: &Did) -> RepoResult<u64> {
        self.inner.latest_seq(did).await
    }

    async fn all_blocks(&self, did: &Did) -> RepoResult<BlockMap> {
        self.inner.all_blocks(did).await
    }

    async fn track_blob(&self, did: &Did, upload: StoredBlob) -> RepoResult<Option<StoredBlob>> {
        self.inner.track_blob(did, upload).await
    }

    async fn blob(&self, did: &Did, cid: &Cid) -> RepoResult<Option<StoredBlob>> {
        self.inner.blob(did, cid).await
    }

    async fn records_referencing_blob(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> RepoResult<Vec<BlobReference>> {
        self.inner.records_referencing_blob(did, cid).await
    }

    async fn list_blobs(&self, did: &Did, query: &BlobListQuery) -> RepoResult<Vec<Cid>> {
        self.inner.list_blobs(did, query).await
    }

    async fn release_blobs(
        &self,
        did: &Did,
        uploads_before_ms: i64,
    ) -> RepoResult<Vec<ReleasedBlob>> {
        self.inner.release_blobs(did, uploads_before_ms).await
    }
}
