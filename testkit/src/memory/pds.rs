//! In-memory [`Deliver`]: a PDS's records per account, with switches for the ways a real one
//! fails (down, revoked sessions, refused records, stalls, a scripted answer per call), and
//! checks that one account's writes never overlap.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{OutboxAction, OutboxItem};
use stratos_ports::pds::{Deliver, DeliveryFailure};

/// Decides the answer to one call before the switches do: `Some(failure)` fails it.
pub type Script = Box<dyn FnMut(&OutboxItem) -> Option<DeliveryFailure> + Send>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A PDS in memory. Records are keyed by `(did, collection, rkey)`; every performed write is
/// logged in order.
#[derive(Default)]
pub struct MemoryPds {
    records: Mutex<BTreeMap<(String, String, String), String>>,
    log: Mutex<Vec<OutboxItem>>,
    down: AtomicBool,
    stalled: AtomicBool,
    revoked: Mutex<HashSet<String>>,
    refused: Mutex<HashSet<String>>,
    script: Mutex<Option<Script>>,
    in_flight: Mutex<HashSet<String>>,
    overlaps: AtomicUsize,
    most_at_once: AtomicUsize,
    calls: AtomicUsize,
}

impl std::fmt::Debug for MemoryPds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPds")
            .field("records", &lock(&self.records).len())
            .field("calls", &self.calls.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl MemoryPds {
    /// An empty PDS that accepts every write.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call fails with [`DeliveryFailure::Retry`] while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every call hangs (for an hour) while `stalled`.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// The account's session is revoked (`true`) or restored.
    pub fn set_revoked(&self, did: &Did, revoked: bool) {
        let mut set = lock(&self.revoked);
        if revoked {
            set.insert(did.to_string());
        } else {
            set.remove(did.as_str());
        }
    }

    /// Writes of records with this rkey are refused for good ([`DeliveryFailure::Permanent`]).
    pub fn refuse_rkey(&self, rkey: &str) {
        lock(&self.refused).insert(rkey.to_owned());
    }

    /// Consults `script` first on every call.
    pub fn set_script(&self, script: Script) {
        *lock(&self.script) = Some(script);
    }

    /// The record at `did/collection/rkey`, as atproto JSON text.
    pub fn record(&self, did: &str, collection: &str, rkey: &str) -> Option<String> {
        lock(&self.records)
            .get(&(did.to_owned(), collection.to_owned(), rkey.to_owned()))
            .cloned()
    }

    /// Every record, keyed by `(did, collection, rkey)`.
    pub fn records(&self) -> BTreeMap<(String, String, String), String> {
        lock(&self.records).clone()
    }

    /// Every performed write, in the order performed.
    pub fn log(&self) -> Vec<OutboxItem> {
        lock(&self.log).clone()
    }

    /// Calls so far, failed ones included.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// How often a call for an account started while another call for it was running (0 when
    /// each account's writes are sequential).
    pub fn overlaps(&self) -> usize {
        self.overlaps.load(Ordering::SeqCst)
    }

    /// The most accounts that had a call running at the same time.
    pub fn most_accounts_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::SeqCst)
    }

    fn answer(&self, item: &OutboxItem) -> Result<(), DeliveryFailure> {
        if let Some(script) = lock(&self.script).as_mut()
            && let Some(failure) = script(item)
        {
            return Err(failure);
        }
        if let OutboxAction::EndSession { .. } = item.action {
            // Like the real one: ending a session that is gone already is done, and nothing
            // is written for the account afterwards until it authorises again.
            lock(&self.revoked).insert(item.did.to_string());
            lock(&self.log).push(item.clone());
            return Ok(());
        }
        if lock(&self.revoked).contains(item.did.as_str()) {
            return Err(DeliveryFailure::NeedsReauthorization);
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(DeliveryFailure::Retry("PDS answered 503".into()));
        }
        let (collection, rkey) = match &item.action {
            OutboxAction::PutRecord {
                collection, rkey, ..
            }
            | OutboxAction::DeleteRecord { collection, rkey } => (collection, rkey),
            OutboxAction::EndSession { .. } => return Ok(()),
        };
        if lock(&self.refused).contains(rkey.as_str()) {
            return Err(DeliveryFailure::Permanent(
                "PDS answered 400 InvalidRecord".into(),
            ));
        }
        let key = (
            item.did.to_string(),
            collection.to_string(),
            rkey.to_string(),
        );
        match &item.action {
            OutboxAction::PutRecord { record_json, .. } => {
                lock(&self.records).insert(key, record_json.clone());
            }
            OutboxAction::DeleteRecord { .. } => {
                lock(&self.records).remove(&key);
            }
            OutboxAction::EndSession { .. } => {}
        }
        lock(&self.log).push(item.clone());
        Ok(())
    }
}

#[async_trait]
impl Deliver for MemoryPds {
    async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        {
            let mut running = lock(&self.in_flight);
            if !running.insert(item.did.to_string()) {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            self.most_at_once.fetch_max(running.len(), Ordering::SeqCst);
        }
        // Leaves the running set however the call ends (a timed-out call is dropped).
        let _running = Running(&self.in_flight, item.did.to_string());
        // Let other accounts' calls start, as a network round trip would.
        tokio::task::yield_now().await;
        if self.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
        }
        let answer = self.answer(item);
        tokio::task::yield_now().await;
        answer
    }
}

/// An account's entry in the running set, removed when the call ends or is dropped.
struct Running<'a>(&'a Mutex<HashSet<String>>, String);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(self.0).remove(&self.1);
    }
}
