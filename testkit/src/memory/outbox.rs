//! In-memory [`Outbox`].

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{ClaimedItem, Outbox, OutboxError, OutboxItem};

#[derive(Debug)]
struct Entry {
    item: OutboxItem,
    attempts: u32,
    due_ms: i64,
    leased_until: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
}

/// An outbox in a map, in enqueue order.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    state: Mutex<State>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues synchronously (used by the in-memory repo store inside its commit lock).
    pub fn push(&self, item: OutboxItem) -> u64 {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.entries.insert(
            id,
            Entry {
                item,
                attempts: 0,
                due_ms: i64::MIN,
                leased_until: None,
            },
        );
        id
    }

    /// Every pending item, in order (for assertions).
    pub fn items(&self) -> Vec<OutboxItem> {
        self.lock()
            .entries
            .values()
            .map(|e| e.item.clone())
            .collect()
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError> {
        Ok(self.push(item))
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>, OutboxError> {
        let mut s = self.lock();
        let mut out = Vec::new();
        for (id, e) in s.entries.iter_mut() {
            if out.len() >= limit {
                break;
            }
            let free = e.leased_until.is_none_or(|until| until <= now_ms);
            if e.due_ms <= now_ms && free {
                e.leased_until = Some(now_ms.saturating_add(lease_ms));
                out.push(ClaimedItem {
                    id: *id,
                    item: e.item.clone(),
                    attempts: e.attempts,
                });
            }
        }
        Ok(out)
    }

    async fn complete(&self, id: u64) -> Result<(), OutboxError> {
        self.lock()
            .entries
            .remove(&id)
            .map(drop)
            .ok_or(OutboxError::NotClaimed(id))
    }

    async fn fail(&self, id: u64, retry_at_ms: i64) -> Result<(), OutboxError> {
        let mut s = self.lock();
        let e = s.entries.get_mut(&id).ok_or(OutboxError::NotClaimed(id))?;
        e.attempts += 1;
        e.due_ms = retry_at_ms;
        e.leased_until = None;
        Ok(())
    }

    async fn pending(&self) -> Result<usize, OutboxError> {
        Ok(self.lock().entries.len())
    }

    async fn purge(&self, did: &Did) -> Result<(), OutboxError> {
        self.lock()
            .entries
            .retain(|_, e| e.item.did != did.as_str());
        Ok(())
    }
}
