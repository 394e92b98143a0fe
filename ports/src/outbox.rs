//! A durable outbox for writes to users' PDSes (stub records, enrollment records). Items are
//! enqueued in the same atomic unit as the commit that causes them (see
//! [`crate::repo_store::CommitUnit::outbox`]) or on their own ([`Outbox::enqueue`]), then claimed
//! under a lease, performed and completed by a worker
//! ([`crate::usecases::delivery::Delivery`]), with retries, backoff and dead letters on failure.
//!
//! # Order
//!
//! Items are numbered in the order they are written. A claim hands out an item only when every
//! older live (not dead) item **of the same account in the same store** is handed out in that
//! very claim, before it: so an account's items are never handed out while an older one is
//! pending, leased to someone else or waiting for a retry, and a claim's items of one account
//! come oldest first, to be performed one after the other. A put and a later delete of one stub
//! therefore reach the PDS in that order.
//!
//! What "the same store" means per implementation:
//!
//! | implementation | stores | order guaranteed |
//! |---|---|---|
//! | in memory, PostgreSQL | one table for every item | every item of an account, whatever caused it |
//! | SQLite | commit-caused items (stubs) in each actor's database; items enqueued on their own (the enrollment record) in the service database | among an account's stubs, and among its enrollment-record writes; not between the two |
//!
//! Stubs and the enrollment record are different records on the PDS, so the order between the
//! two families does not matter; what must hold is the order of the writes of one record, and
//! every write of one record lives in one store. Writes of one record are also numbered in the
//! order they happened: commits of one account are serialised by the repository's head
//! compare-and-swap, and the item rows are written after it, in the same transaction.
//!
//! # Leases
//!
//! A claim leases its items until `now + lease` ([`ClaimedItem::lease`]). Other claims skip
//! leased items (and, by the order rule, the account's later items); when the lease runs out
//! without a completion the item is claimable again. [`Outbox::complete`], [`Outbox::fail`] and
//! [`Outbox::release`] take the [`Lease`] and refuse ([`OutboxError::NotClaimed`]) when the item
//! is no longer leased under it — someone else claimed it after the lease ran out — so a worker
//! that overran its lease cannot complete or reschedule another worker's claim. Delivery is at
//! least once: a worker that overruns its lease may perform an item another worker performs
//! again.
//!
//! # Retries and dead letters
//!
//! [`Outbox::fail`] counts the attempt, keeps a short error text and makes the item due again at
//! the retry time; once `max_attempts` attempts have failed (or at once, for a permanent
//! refusal) the item becomes a **dead letter**: it is never claimed again and it blocks nothing
//! (the account's later items go on). A dead put of a stub leaves the stub missing on the PDS
//! until an operator retries it; a later delete of the same record then overtakes it, which
//! leaves the PDS as the record is. Dead letters are kept until an operator retries them
//! ([`Outbox::retry_dead`], which re-queues the item behind the account's newer items) or the
//! account is purged; [`Outbox::dead_count`] and [`Outbox::dead_total`] show how many there are. Delivered items are
//! deleted by [`Outbox::complete`]; nothing else is kept, so the outbox holds live items and
//! dead letters only.
//!
//! A row whose stored item no longer decodes is never handed out: a claim turns it into a dead
//! letter (its error text says why) instead of failing, so one damaged row cannot stop the
//! outbox.

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
    /// Ends the account's OAuth session (revoked at its authorization server, forgotten here).
    /// Queued last when an account leaves, so the deletes of its PDS records, queued before it,
    /// are delivered with the session first. Only a session authorised at or before
    /// `authorized_by` (unix seconds) is ended: one from a later re-enrollment is kept.
    EndSession {
        /// The time the account left, unix seconds.
        authorized_by: i64,
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

/// A claim on one item: its id and the end of the lease it was claimed under. The lease end is
/// also the claim's token: a later claim of the same item (after this lease ran out) always ends
/// later, so an outdated [`Lease`] matches nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Store-assigned item id.
    pub id: u64,
    /// When the lease runs out (ms since the Unix epoch).
    pub until_ms: i64,
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
    /// When this claim's lease runs out.
    pub leased_until_ms: i64,
}

impl ClaimedItem {
    /// The claim, for [`Outbox::complete`], [`Outbox::fail`] and [`Outbox::release`].
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            until_ms: self.leased_until_ms,
        }
    }
}

/// A failed attempt, for [`Outbox::fail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    /// When the attempt failed (the dead letter's time, if it becomes one).
    pub now_ms: i64,
    /// When the item is due again, if it is retried.
    pub retry_at_ms: i64,
    /// The item becomes a dead letter once this many attempts (this one included) have failed.
    pub max_attempts: u32,
    /// A refusal that retrying cannot change: the item becomes a dead letter at once.
    pub permanent: bool,
    /// Why, as short text without secrets (see [`short_error`]).
    pub error: String,
}

/// What [`Outbox::fail`] did with the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It waits for its retry time.
    Retry,
    /// It is a dead letter now.
    Dead,
}

/// An item that will not be tried again until an operator says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Store-assigned id (the cursor of [`Outbox::dead_letters`]).
    pub id: u64,
    /// The account.
    pub did: Did,
    /// The write, or `None` when the stored item does not decode (then `last_error` says so).
    pub item: Option<OutboxItem>,
    /// Failed attempts.
    pub attempts: u32,
    /// The last failure's text.
    pub last_error: String,
    /// When it became a dead letter (ms since the Unix epoch).
    pub dead_at_ms: i64,
}

/// Failures of an [`Outbox`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// No such item leased under this lease (completed, released, never claimed, or claimed
    /// again by someone else after the lease ran out).
    #[error("outbox item {0} is not claimed under this lease")]
    NotClaimed(u64),
    /// No dead letter with this id.
    #[error("outbox item {0} is not a dead letter")]
    NotDead(u64),
    /// A stored row does not decode (reported where it is read).
    #[error("outbox item {id} is corrupt: {reason}")]
    Corrupt {
        /// The row's id.
        id: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend failed.
    #[error("outbox backend failed: {0}")]
    Backend(#[source] crate::Cause),
}

/// The outbox's worker and operator side.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Enqueues an item outside a commit (e.g. an enrollment record write); due at once.
    async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError>;
    /// Claims up to `limit` items that are due at `now_ms`, leasing them until
    /// `now_ms + lease_ms` (`lease_ms` below 1 counts as 1), in the order of the module docs: an
    /// item is handed out only with every older live item of its account in the same store,
    /// after them. Rows that do not decode become dead letters instead of being handed out.
    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>, OutboxError>;
    /// Marks a claimed item done (removes it).
    async fn complete(&self, lease: Lease) -> Result<(), OutboxError>;
    /// Records a failed attempt of a claimed item: one more attempt, the error text kept, the
    /// lease dropped; then either due again at `retry_at_ms` or, once `max_attempts` attempts
    /// have failed or when `permanent`, a dead letter.
    async fn fail(&self, lease: Lease, attempt: FailedAttempt) -> Result<Disposition, OutboxError>;
    /// Gives a claimed item back without counting an attempt, due again at `due_ms` at the
    /// earliest (its due time never moves earlier): items not tried because an older item of
    /// their account failed, or held while the account needs re-authorisation.
    async fn release(&self, lease: Lease, due_ms: i64) -> Result<(), OutboxError>;
    /// Live items (pending, leased or waiting for a retry; dead letters not counted).
    async fn pending(&self) -> Result<usize, OutboxError>;
    /// Up to `limit` dead letters with ids above `cursor` (all with `None`), in id order.
    async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Vec<DeadLetter>, OutboxError>;
    /// Re-queues a dead letter as a new item behind every item of its account, with no failed
    /// attempts; returns the new item's id. [`OutboxError::NotDead`] when `id` is not a dead
    /// letter.
    async fn retry_dead(&self, id: u64) -> Result<u64, OutboxError>;
    /// The number of dead letters of one account (for its `zone.stratos.enrollment.status`).
    async fn dead_count(&self, did: &Did) -> Result<u64, OutboxError>;
    /// The number of dead letters of every account (for operators).
    async fn dead_total(&self) -> Result<u64, OutboxError>;
    /// Drops every item of an account, dead letters included (after unenrollment).
    async fn purge(&self, did: &Did) -> Result<(), OutboxError>;
}

/// The longest error text an outbox keeps, in bytes.
pub const MAX_ERROR_LEN: usize = 300;

/// An error text as an outbox keeps it: anything that looks like a credential — the word after
/// `Bearer`/`DPoP`/`Basic`, a JWT (`x.y.z`), any long unbroken run of token characters — is
/// replaced by `[redacted]`, and the text is cut to [`MAX_ERROR_LEN`] bytes (on a character
/// boundary). Failure texts come from the PDS client; this is the last guard before they are
/// stored and shown to operators.
pub fn short_error(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_ERROR_LEN));
    let mut after_scheme = false;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        let tokenish = bare.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
        });
        let jwt = tokenish && bare.split('.').count() == 3 && bare.len() > 20;
        if after_scheme || jwt || (tokenish && bare.len() >= 32) {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        after_scheme = ["bearer", "dpop", "basic"]
            .iter()
            .any(|s| bare.eq_ignore_ascii_case(s));
    }
    if out.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_are_short_and_hold_no_tokens() {
        assert_eq!(short_error("PDS answered 503"), "PDS answered 503");
        assert_eq!(
            short_error("sent Authorization: DPoP abc.def and failed"),
            "sent Authorization: DPoP [redacted] and failed"
        );
        assert_eq!(
            short_error("token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl expired"),
            "token [redacted] expired"
        );
        assert_eq!(
            short_error("refresh 0123456789abcdef0123456789abcdef0 refused"),
            "refresh [redacted] refused"
        );
        let long = "é".repeat(400);
        let cut = short_error(&long);
        assert!(cut.len() <= MAX_ERROR_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
