//! Writes to a user's PDS: the port the outbox's delivery
//! ([`crate::usecases::delivery::Delivery`]) performs each item through.
//!
//! An implementation finds the account's OAuth session, refreshes its token when needed and
//! calls `com.atproto.repo.putRecord` / `deleteRecord` on the account's PDS with a DPoP-bound
//! token; it says how an attempt failed so delivery can retry, give up or wait for the user.
//! The in-memory `stratos_testkit::memory::MemoryPds` stands in for it in tests.

use async_trait::async_trait;

use crate::outbox::OutboxItem;

/// How an attempt to perform an item on the PDS failed. The texts are kept in the outbox and
/// shown to operators: they must never hold a token or a key (the outbox also passes them
/// through [`crate::outbox::short_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryFailure {
    /// Worth trying again later: the PDS is down or answered 5xx or 429, the request timed
    /// out, the token expired and could not be refreshed yet.
    #[error("{0}")]
    Retry(String),
    /// The PDS will always refuse this write (a 4xx such as an invalid record): the item
    /// becomes a dead letter at once.
    #[error("{0}")]
    Permanent(String),
    /// The account's OAuth session is revoked or gone: nothing can be written until the user
    /// authorises Stratos again. The account's items wait, with no attempt counted.
    #[error("the account must authorise Stratos again")]
    NeedsReauthorization,
}

/// Performs outbox items on users' PDSes.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Performs one item (`putRecord` with the item's rkey, so a repeat never duplicates;
    /// `deleteRecord`, which succeeds when the record is already gone).
    async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryFailure>;
}
