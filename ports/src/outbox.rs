//! A durable outbox for writes to users' PDSes (stub records, enrollment records). Items are
//! enqueued in the same atomic unit as the commit that causes them (see
//! [`crate::repo_store::CommitUnit::outbox`]), then claimed, performed and completed by a worker,
//! with retries and backoff on failure.

use async_trait::async_trait;
use stratos_domain::syntax::{Did, Nsid, RecordKey};

/// What to do on the user's PDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxAction {
    /// `com.atproto.repo.putRecord` of `record` (atproto JSON) at `collection/rkey`. Used for
    /// creates and updates alike (the original used createRecord for updates, defect D15).
    PutRecord {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
        /// The record as atproto JSON text.
        record_json: String,
    },
    /// `com.atproto.repo.deleteRecord` at `collection/rkey`.
    DeleteRecord {
        /// Collection NSID.
        collection: Nsid,
        /// Record key.
        rkey: RecordKey,
    },
}

/// One queued PDS write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// The account whose PDS is written.
    pub did: Did,
    /// The write.
    pub action: OutboxAction,
}

/// A claimed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedItem {
    /// Store-assigned id.
    pub id: u64,
    /// The item.
    pub item: OutboxItem,
    /// How many attempts failed before this claim.
    pub attempts: u32,
}

/// Failures of an [`Outbox`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// No such claimed item.
    #[error("outbox item {0} is not claimed")]
    NotClaimed(u64),
    /// The backend failed.
    #[error("outbox backend failed: {0}")]
    Backend(#[source] crate::Cause),
}

/// The outbox's worker side.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Enqueues an item outside a commit (e.g. an enrollment record write).
    async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError>;
    /// Claims up to `limit` items that are due at `now_ms`, for `lease_ms`; a claimed item is not
    /// handed out again until the lease expires.
    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>, OutboxError>;
    /// Marks an item done (removes it).
    async fn complete(&self, id: u64) -> Result<(), OutboxError>;
    /// Records a failed attempt; the item becomes due again at `retry_at_ms`.
    async fn fail(&self, id: u64, retry_at_ms: i64) -> Result<(), OutboxError>;
    /// Items not yet completed.
    async fn pending(&self) -> Result<usize, OutboxError>;
    /// Drops every item of an account (after unenrollment).
    async fn purge(&self, did: &Did) -> Result<(), OutboxError>;
}

/// Exponential backoff for the `attempts`-th failure: 1 s, 2 s, 4 s … capped at 15 min.
pub fn backoff_ms(attempts: u32) -> i64 {
    const CAP: i64 = 15 * 60 * 1000;
    let exp = attempts.min(20);
    (1000_i64 << exp).min(CAP)
}
