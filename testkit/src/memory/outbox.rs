//! In-memory [`Outbox`]. Items are kept encoded (`storage_codec`), as the SQL adapters keep them,
//! so a damaged row can be planted ([`MemoryOutbox::push_raw`]) and handled the same way.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{
    ClaimedItem, DeadLetter, Disposition, FailedAttempt, Lease, Outbox, OutboxError, OutboxItem,
    short_error,
};
use stratos_ports::storage_codec::{decode_item, encode_item};

#[derive(Debug)]
struct Entry {
    did: String,
    item: Vec<u8>,
    attempts: u32,
    due_ms: i64,
    leased_until: Option<i64>,
    last_error: Option<String>,
    dead_ms: Option<i64>,
}

impl Entry {
    fn live(&self) -> bool {
        self.dead_ms.is_none()
    }

    /// Live and leased or not yet due at `now`: blocks its account's later items.
    fn blocks(&self, now: i64) -> bool {
        self.live() && (self.due_ms > now || self.leased_until.is_some_and(|u| u > now))
    }

    fn leased_under(&self, lease: Lease) -> bool {
        self.live() && self.leased_until == Some(lease.until_ms)
    }
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
}

impl State {
    fn insert(&mut self, did: String, item: Vec<u8>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.entries.insert(
            id,
            Entry {
                did,
                item,
                attempts: 0,
                due_ms: i64::MIN,
                leased_until: None,
                last_error: None,
                dead_ms: None,
            },
        );
        id
    }

    fn leased(&mut self, lease: Lease) -> Result<&mut Entry, OutboxError> {
        self.entries
            .get_mut(&lease.id)
            .filter(|e| e.leased_under(lease))
            .ok_or(OutboxError::NotClaimed(lease.id))
    }
}

/// An outbox in a map, in enqueue order: one store for every item.
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
        let bytes = encode_item(&item);
        self.lock().insert(item.did.to_string(), bytes)
    }

    /// Enqueues `bytes` as they are for `did` (tests: a row that does not decode).
    pub fn push_raw(&self, did: &Did, bytes: Vec<u8>) -> u64 {
        self.lock().insert(did.to_string(), bytes)
    }

    /// Every live item that decodes, in order (for assertions).
    pub fn items(&self) -> Vec<OutboxItem> {
        self.lock()
            .entries
            .values()
            .filter(|e| e.live())
            .filter_map(|e| decode_item(&e.item).ok())
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
        let until = now_ms.saturating_add(lease_ms.max(1));
        // Accounts with an older live item that is leased or waiting: their later items wait.
        let mut blocked = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (id, e) in s.entries.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if !e.live() || blocked.contains(&e.did) {
                continue;
            }
            if e.blocks(now_ms) {
                blocked.insert(e.did.clone());
                continue;
            }
            match decode_item(&e.item) {
                Ok(item) => {
                    e.leased_until = Some(until);
                    out.push(ClaimedItem {
                        id: *id,
                        item,
                        attempts: e.attempts,
                        leased_until_ms: until,
                    });
                }
                Err(err) => {
                    e.dead_ms = Some(now_ms);
                    e.leased_until = None;
                    e.last_error = Some(short_error(&format!("corrupt item: {err}")));
                }
            }
        }
        Ok(out)
    }

    async fn complete(&self, lease: Lease) -> Result<(), OutboxError> {
        let mut s = self.lock();
        s.leased(lease)?;
        s.entries.remove(&lease.id);
        Ok(())
    }

    async fn fail(&self, lease: Lease, attempt: FailedAttempt) -> Result<Disposition, OutboxError> {
        let mut s = self.lock();
        let e = s.leased(lease)?;
        e.attempts = e.attempts.saturating_add(1);
        e.due_ms = attempt.retry_at_ms;
        e.leased_until = None;
        e.last_error = Some(short_error(&attempt.error));
        if attempt.permanent || e.attempts >= attempt.max_attempts {
            e.dead_ms = Some(attempt.now_ms);
            Ok(Disposition::Dead)
        } else {
            Ok(Disposition::Retry)
        }
    }

    async fn release(&self, lease: Lease, due_ms: i64) -> Result<(), OutboxError> {
        let mut s = self.lock();
        let e = s.leased(lease)?;
        e.leased_until = None;
        e.due_ms = e.due_ms.max(due_ms);
        Ok(())
    }

    async fn pending(&self) -> Result<usize, OutboxError> {
        Ok(self.lock().entries.values().filter(|e| e.live()).count())
    }

    async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        let s = self.lock();
        let after = cursor.unwrap_or(0);
        s.entries
            .range(after.saturating_add(1)..)
            .filter_map(|(id, e)| e.dead_ms.map(|dead| (id, e, dead)))
            .take(limit)
            .map(|(id, e, dead)| {
                Ok(DeadLetter {
                    id: *id,
                    did: Did::parse(&e.did).map_err(|err| OutboxError::Corrupt {
                        id: *id,
                        reason: err.to_string(),
                    })?,
                    item: decode_item(&e.item).ok(),
                    attempts: e.attempts,
                    last_error: e.last_error.clone().unwrap_or_default(),
                    dead_at_ms: dead,
                })
            })
            .collect()
    }

    async fn retry_dead(&self, id: u64) -> Result<u64, OutboxError> {
        let mut s = self.lock();
        match s.entries.get(&id) {
            Some(e) if !e.live() => {}
            _ => return Err(OutboxError::NotDead(id)),
        }
        let Some(dead) = s.entries.remove(&id) else {
            return Err(OutboxError::NotDead(id));
        };
        Ok(s.insert(dead.did, dead.item))
    }

    async fn dead_count(&self, did: &Did) -> Result<u64, OutboxError> {
        let n = self
            .lock()
            .entries
            .values()
            .filter(|e| !e.live() && e.did == did.as_str())
            .count();
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn dead_total(&self) -> Result<u64, OutboxError> {
        let n = self.lock().entries.values().filter(|e| !e.live()).count();
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn purge(&self, did: &Did) -> Result<(), OutboxError> {
        self.lock().entries.retain(|_, e| e.did != did.as_str());
        Ok(())
    }
}
