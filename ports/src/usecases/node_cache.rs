//! A per-actor cache of MST nodes for the synchronous repository core.
//!
//! Each actor has its own map (writers on one DID are serialised, so its lock is uncontended),
//! nodes that a commit removes are dropped at once so the cache tracks the live trees, and the
//! least recently used actors are evicted when the byte budget is exceeded. A CID always names
//! the same bytes, so the cache can never serve stale data, only save round trips.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use stratos_domain::Cid;
use stratos_domain::blocks::BlockMap;
use stratos_domain::repo::RepoHead;

/// Default byte budget across all actors.
pub const DEFAULT_NODE_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// One actor's cached nodes.
#[derive(Debug, Default)]
pub(crate) struct ActorNodes {
    pub(crate) blocks: BlockMap,
    bytes: usize,
    /// The head after this process's last commit; a stale value only costs a lost
    /// compare-and-swap, after which it is re-read.
    pub(crate) head: Option<RepoHead>,
}

#[derive(Debug)]
struct Slot {
    last_use: u64,
    nodes: Arc<Mutex<ActorNodes>>,
}

/// The cache.
#[derive(Debug)]
pub(crate) struct NodeCache {
    actors: Mutex<HashMap<String, Slot>>,
    total: AtomicUsize,
    tick: AtomicU64,
    budget: usize,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeCache {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            actors: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            tick: AtomicU64::new(0),
            budget,
        }
    }

    /// The actor's node map (created empty when absent).
    pub(crate) fn actor(&self, did: &str) -> Arc<Mutex<ActorNodes>> {
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut actors = lock(&self.actors);
        let slot = actors.entry(did.to_owned()).or_insert_with(|| Slot {
            last_use: now,
            nodes: Arc::new(Mutex::new(ActorNodes::default())),
        });
        slot.last_use = now;
        slot.nodes.clone()
    }

    /// Adds new nodes and drops removed ones for one actor (recording the head after a commit,
    /// when given), then enforces the budget.
    pub(crate) fn update(
        &self,
        did: &str,
        added: BlockMap,
        removed: &[Cid],
        head: Option<RepoHead>,
    ) {
        let nodes = self.actor(did);
        {
            let mut n = lock(&nodes);
            if head.is_some() {
                n.head = head;
            }
            for cid in removed {
                if let Some(bytes) = n.blocks.remove(cid) {
                    n.bytes -= bytes.len();
                    self.total.fetch_sub(bytes.len(), Ordering::Relaxed);
                }
            }
            for (cid, bytes) in added.iter() {
                if !n.blocks.contains(cid) {
                    n.bytes += bytes.len();
                    self.total.fetch_add(bytes.len(), Ordering::Relaxed);
                }
            }
            n.blocks.extend(added);
        }
        self.enforce_budget(did);
    }

    fn enforce_budget(&self, keep: &str) {
        while self.total.load(Ordering::Relaxed) > self.budget {
            let mut actors = lock(&self.actors);
            let victim = actors
                .iter()
                .filter(|(did, _)| did.as_str() != keep)
                .min_by_key(|(_, slot)| slot.last_use)
                .map(|(did, _)| did.clone());
            let Some(victim) = victim else {
                // Only the current actor is cached: let it exceed the budget rather than thrash.
                return;
            };
            if let Some(slot) = actors.remove(&victim) {
                let freed = lock(&slot.nodes).bytes;
                self.total.fetch_sub(freed, Ordering::Relaxed);
            }
        }
    }

    /// Forgets an actor (e.g. when its repository is destroyed).
    pub(crate) fn forget(&self, did: &str) {
        if let Some(slot) = lock(&self.actors).remove(did) {
            let freed = lock(&slot.nodes).bytes;
            self.total.fetch_sub(freed, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn block(i: u8, len: usize) -> (Cid, Vec<u8>) {
        let bytes = vec![i; len];
        (stratos_domain::cid::dag_cbor(&bytes), bytes)
    }

    #[test]
    fn removed_nodes_leave_and_the_lru_actor_is_evicted() {
        let cache = NodeCache::new(250);
        let (c1, b1) = block(1, 100);
        let (c2, b2) = block(2, 100);
        let mut m = BlockMap::new();
        m.insert(c1, b1.clone());
        cache.update("a", m, &[], None);
        let mut m = BlockMap::new();
        m.insert(c2, b2.clone());
        cache.update("b", m, &[], None);
        assert_eq!(cache.total(), 200);
        cache.update("a", BlockMap::new(), &[c1], None);
        assert_eq!(cache.total(), 100);
        // `b` was used last; adding 200 bytes to `c` evicts `a` first, then `b`.
        let (c3, b3) = block(3, 200);
        let mut m = BlockMap::new();
        m.insert(c3, b3);
        cache.update("c", m, &[], None);
        assert!(cache.total() <= 250);
        assert!(lock(&cache.actor("c")).blocks.contains(&c3));
        cache.forget("c");
        assert_eq!(cache.total(), 0);
    }
}
